//! How the gateway reaches Redis: one server (`redis_url`), a Redis Cluster
//! (`redis_cluster_urls`) or the primary a set of sentinels names (`redis_sentinel`), each over
//! TCP or TLS (`rediss://`, `redis_tls`). [`RedisConn`] is the one handle every caller uses,
//! whatever the topology: a multiplexed connection manager (one server, a sentinel-found
//! primary) or a cluster connection (slots, MOVED/ASK, failovers followed by the client).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisFuture, TlsCertificates};

use crate::config::StateConfig;
use crate::config::redact_url;

/// A connection to use for one or more commands; cheap to clone (a handle to a multiplexed
/// connection). Scripts and pipelines must keep their keys in one hash slot (see
/// [`super::keys`]): on a cluster they go to the node owning it.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, or the primary the sentinels named.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// `state.redis_tls` read once: the CA file's PEM, and whether certificates are checked.
#[derive(Clone, Default)]
pub(super) struct Tls {
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
}

impl Tls {
    pub(super) fn from_config(s: &StateConfig) -> Result<Self, String> {
        let ca_pem = match &s.redis_tls.ca_file {
            Some(f) => {
                Some(std::fs::read(f).map_err(|e| format!("state.redis_tls.ca_file {f}: {e}"))?)
            }
            None => None,
        };
        Ok(Self {
            ca_pem,
            insecure: s.redis_tls.insecure_skip_verify,
        })
    }

    fn certs(&self) -> Option<TlsCertificates> {
        self.ca_pem.as_ref().map(|pem| TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        })
    }

    /// `info` with this TLS applied when its address is TLS (`rediss://`).
    fn apply(&self, info: ConnectionInfo) -> ConnectionInfo {
        match info.addr().clone() {
            ConnectionAddr::TcpTls { host, port, .. } => info.set_addr(ConnectionAddr::TcpTls {
                host,
                port,
                insecure: self.insecure,
                tls_params: None,
            }),
            _ => info,
        }
    }

    pub(super) fn client(&self, info: ConnectionInfo) -> Result<redis::Client, redis::RedisError> {
        let info = self.apply(info);
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        match self.certs() {
            Some(certs) if tls => redis::Client::build_with_tls(info, certs),
            _ => redis::Client::open(info),
        }
    }
}

/// The parsed URL, with an error that names the key and not the URL (it may hold a password).
pub(super) fn parse(url: &str, key: &str) -> Result<ConnectionInfo, String> {
    url.into_connection_info().map_err(|e| {
        format!(
            "{key}: {} is not a usable Redis URL ({})",
            redact_url(url),
            e
        )
    })
}

/// Timeouts of the connection manager (one server, a sentinel's primary).
pub(super) async fn manager(client: redis::Client) -> Result<ConnectionManager, String> {
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1);
    tokio::time::timeout(
        Duration::from_secs(2),
        ConnectionManager::new_with_config(client, cfg),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())
}

/// The cluster client of `state.redis_cluster_urls`.
pub(super) fn cluster_client(
    urls: &[String],
    tls: &Tls,
) -> Result<redis::cluster::ClusterClient, String> {
    let nodes = urls
        .iter()
        .enumerate()
        .map(|(i, u)| parse(u, &format!("state.redis_cluster_urls[{i}]")).map(|n| tls.apply(n)))
        .collect::<Result<Vec<_>, _>>()?;
    let is_tls = nodes
        .iter()
        .any(|n| matches!(n.addr(), ConnectionAddr::TcpTls { .. }));
    let mut b = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200);
    if is_tls && let Some(certs) = tls.certs() {
        b = b.certs(certs);
    }
    b.build()
        .map_err(|e| format!("state.redis_cluster_urls: {}", e))
}

pub(super) async fn cluster_connection(
    client: &redis::cluster::ClusterClient,
) -> Result<ClusterConnection, String> {
    tokio::time::timeout(Duration::from_secs(3), client.get_async_connection())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())
}

/// The sentinels of `state.redis_sentinel` and what connecting to the primary they name takes.
pub(super) struct Sentinels {
    pub(super) master: String,
    /// Per sentinel: its client as configured, and (when its URL has credentials) one without
    /// them, for sentinels that have no password while the primary has one.
    nodes: Vec<(redis::Client, Option<redis::Client>)>,
    /// The sentinel URLs' credentials, database and scheme, for the primary.
    primary_template: ConnectionInfo,
    tls: Tls,
    /// The last sentinel connection that answered.
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Sentinels {
    pub(super) fn new(s: &StateConfig, tls: &Tls) -> Result<Self, String> {
        let mut nodes = Vec::new();
        let mut template = None;
        for (i, u) in s.redis_sentinel.urls.iter().enumerate() {
            let info = parse(u, &format!("state.redis_sentinel.urls[{i}]"))?;
            let bare = (info.redis_settings().password().is_some()
                || info.redis_settings().username().is_some())
            .then(|| {
                let r = redis::RedisConnectionInfo::default();
                tls.client(info.clone().set_redis_settings(r))
            })
            .transpose()
            .map_err(|e| format!("state.redis_sentinel.urls[{i}]: {}", e))?;
            let client = tls
                .client(info.clone())
                .map_err(|e| format!("state.redis_sentinel.urls[{i}]: {}", e))?;
            template.get_or_insert(info);
            nodes.push((client, bare));
        }
        Ok(Self {
            master: s.redis_sentinel.master_name.clone(),
            nodes,
            primary_template: template.ok_or("state.redis_sentinel.urls is empty")?,
            tls: tls.clone(),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The primary's address as the sentinels know it now (`SENTINEL get-master-addr-by-name`).
    pub(super) async fn primary(&self) -> Result<(String, u16), String> {
        let mut cached = self.conn.lock().await;
        let mut last_err = "no sentinel answered".to_owned();
        if let Some(c) = cached.as_mut() {
            match self.ask(c).await {
                Ok(a) => return Ok(a),
                Err(e) => last_err = e,
            }
            *cached = None;
        }
        for (client, bare) in &self.nodes {
            for c in std::iter::once(client).chain(bare.as_ref()) {
                let conn = tokio::time::timeout(
                    Duration::from_secs(1),
                    c.get_multiplexed_async_connection(),
                )
                .await;
                let mut conn = match conn {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        last_err = e.to_string();
                        continue;
                    }
                    Err(_) => {
                        last_err = "sentinel connect timed out".to_owned();
                        continue;
                    }
                };
                match self.ask(&mut conn).await {
                    Ok(a) => {
                        *cached = Some(conn);
                        return Ok(a);
                    }
                    Err(e) => last_err = e,
                }
            }
        }
        Err(last_err)
    }

    async fn ask(&self, c: &mut MultiplexedConnection) -> Result<(String, u16), String> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg(&self.master);
        let v: Option<(String, u16)> =
            tokio::time::timeout(Duration::from_secs(1), cmd.query_async(c))
                .await
                .map_err(|_| "sentinel timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        v.ok_or_else(|| {
            format!(
                "the sentinels do not know a primary named {:?}",
                self.master
            )
        })
    }

    /// A client for the primary at `addr`, with the sentinel URLs' credentials, database and TLS.
    pub(super) fn primary_client(
        &self,
        (host, port): (String, u16),
    ) -> Result<redis::Client, String> {
        let addr = match self.primary_template.addr() {
            ConnectionAddr::TcpTls { .. } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        self.tls
            .client(self.primary_template.clone().set_addr(addr))
            .map_err(|e| e.to_string())
    }
}
