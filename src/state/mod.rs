//! Connections to the shared state services of `state:` in the configuration (Redis here; NATS
//! in `crate::jobs::nats`).
//!
//! Redis is optional and never on the critical path: every call is bounded by a short timeout,
//! a background task connects (and reconnects) and pings once a second, and while Redis is down
//! callers skip it at once instead of waiting. Errors are logged at most once per interval.
//!
//! The topology is one server (`redis_url`), a Redis Cluster (`redis_cluster_urls`) or the
//! primary the sentinels of `redis_sentinel` name (asked again every second, so a failover is
//! followed within about a second). Callers see one handle, [`RedisConn`], whatever it is; the
//! key names they use follow the hash-tag rule of [`keys`].

mod conn;
pub mod keys;
pub mod nats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;

pub use conn::RedisConn;

use crate::config::{StateConfig, redact_url};

/// The timeout of every Redis call made on behalf of a request.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(150);
const LOG_EVERY_MS: u64 = 10_000;

enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    Sentinel {
        sentinels: conn::Sentinels,
        /// The primary the current connection goes to.
        primary: std::sync::Mutex<Option<(String, u16)>>,
    },
}

/// A Redis connection shared by the cache, limits and keys.
pub struct Redis {
    /// The topology, without credentials, for logs.
    url_for_logs: String,
    target: Target,
    conn: ArcSwapOption<RedisConn>,
    healthy: AtomicBool,
    /// Names of an earlier version moved to the tagged ones (once per process).
    migrated: AtomicBool,
    last_error_log_ms: AtomicU64,
    errors: AtomicU64,
}

impl Redis {
    /// One server at `url`; connecting happens in the background (see [`Redis::maintain`]).
    pub fn new(url: &str) -> Result<Arc<Self>, String> {
        let state = StateConfig {
            redis_url: Some(url.to_owned()),
            ..StateConfig::default()
        };
        Self::from_config(&state)?.ok_or_else(|| "state.redis_url is empty".to_owned())
    }

    /// The Redis of `state:` (one server, a cluster or a sentinel's primary), if any.
    pub fn from_config(s: &StateConfig) -> Result<Option<Arc<Self>>, String> {
        let tls = conn::Tls::from_config(s)?;
        let topology = crate::config::redis_topology(s);
        let target = if let Some(url) = &s.redis_url {
            let info = conn::parse(url, "state.redis_url")?;
            Target::Single(
                tls.client(info)
                    .map_err(|e| format!("state.redis_url: {e}"))?,
            )
        } else if !s.redis_cluster_urls.is_empty() {
            Target::Cluster(conn::cluster_client(&s.redis_cluster_urls, &tls)?)
        } else if !s.redis_sentinel.urls.is_empty() {
            Target::Sentinel {
                sentinels: conn::Sentinels::new(s, &tls)?,
                primary: std::sync::Mutex::new(None),
            }
        } else {
            return Ok(None);
        };
        if s.redis_tls.insecure_skip_verify {
            tracing::warn!(
                "state.redis_tls.insecure_skip_verify is on: Redis's TLS certificate is NOT checked (for tests only)"
            );
        }
        Ok(Some(Arc::new(Self {
            url_for_logs: topology.unwrap_or_default(),
            target,
            conn: ArcSwapOption::empty(),
            healthy: AtomicBool::new(false),
            migrated: AtomicBool::new(false),
            last_error_log_ms: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })))
    }

    /// Whether the last ping succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// What it connects to, without credentials (`redis cluster via 3 seed node(s) …`).
    pub fn topology(&self) -> &str {
        &self.url_for_logs
    }

    /// A connection to use now, or `None` while Redis is down (callers skip Redis).
    pub fn conn(&self) -> Option<RedisConn> {
        if !self.is_healthy() {
            return None;
        }
        self.conn.load_full().map(|c| (*c).clone())
    }

    /// Count and (at most once per interval) log a failed Redis call; marks Redis unhealthy on
    /// a timeout or connection error so other requests stop waiting for it. On a cluster, one
    /// node failing is not all of Redis failing: the cluster client follows the failover, and
    /// the once-a-second ping decides whether Redis is down.
    pub fn report_error(&self, what: &str, err: &dyn std::fmt::Display, fatal: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if fatal && !self.is_cluster() {
            self.healthy.store(false, Ordering::Relaxed);
        }
        let now = crate::clock::monotonic_ms();
        let last = self.last_error_log_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= LOG_EVERY_MS)
            && self
                .last_error_log_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                redis = %self.url_for_logs, during = what, error = %redact_in(&err.to_string()),
                errors_so_far = self.errors.load(Ordering::Relaxed),
                "redis call failed; going on without it"
            );
        }
    }

    async fn connect(&self) -> Result<RedisConn, String> {
        match &self.target {
            Target::Single(client) => conn::manager(client.clone()).await.map(RedisConn::Single),
            Target::Cluster(client) => conn::cluster_connection(client)
                .await
                .map(RedisConn::Cluster),
            Target::Sentinel { sentinels, primary } => {
                let addr = sentinels.primary().await?;
                let client = sentinels.primary_client(addr.clone())?;
                let c = conn::manager(client).await?;
                let before = primary
                    .lock()
                    .ok()
                    .and_then(|mut p| p.replace(addr.clone()));
                if before.as_ref().is_some_and(|b| *b != addr) {
                    tracing::warn!(
                        redis = %self.url_for_logs,
                        from = %fmt_addr(before.as_ref()), to = %fmt_addr(Some(&addr)),
                        "redis primary changed (sentinel failover); connected to the new one"
                    );
                }
                Ok(RedisConn::Single(c))
            }
        }
    }

    /// With sentinels: whether they name another primary than the one connected to now.
    async fn primary_moved(&self) -> bool {
        let Target::Sentinel { sentinels, primary } = &self.target else {
            return false;
        };
        match sentinels.primary().await {
            Ok(now) => primary
                .lock()
                .ok()
                .is_some_and(|p| p.as_ref() != Some(&now)),
            Err(e) => {
                self.report_error("sentinel", &e, false);
                false
            }
        }
    }

    /// One round of upkeep: connect if needed (again, when the sentinels name a new primary),
    /// then ping. Run once a second by the app.
    pub async fn maintain(&self) {
        if self.primary_moved().await {
            self.conn.store(None);
            self.healthy.store(false, Ordering::Relaxed);
        }
        let conn = match self.conn.load_full() {
            Some(c) => (*c).clone(),
            None => match self.connect().await {
                Ok(c) => {
                    self.conn.store(Some(Arc::new(c.clone())));
                    c
                }
                Err(e) => {
                    self.report_error("connect", &e, true);
                    self.healthy.store(false, Ordering::Relaxed);
                    crate::metrics::dependency_up("redis", false);
                    return;
                }
            },
        };
        let mut c = conn;
        let ping: Result<Result<String, redis::RedisError>, _> =
            tokio::time::timeout(Duration::from_secs(1), ping(&mut c)).await;
        match ping {
            Ok(Ok(_)) => {
                if !self.migrated.load(Ordering::Relaxed) && !self.is_cluster() {
                    match keys::migrate_legacy(&mut c).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            names = n,
                            "redis names of an earlier version moved to hash-tagged ones"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot move redis names of an earlier version (retrying)");
                            return;
                        }
                    }
                    self.migrated.store(true, Ordering::Relaxed);
                }
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(redis = %self.url_for_logs, "redis reachable");
                }
            }
            Ok(Err(e)) => {
                self.report_error("ping", &e, true);
                self.healthy.store(false, Ordering::Relaxed);
            }
            Err(_) => {
                self.report_error("ping", &"timed out", true);
                self.healthy.store(false, Ordering::Relaxed);
            }
        }
        crate::metrics::dependency_up("redis", self.is_healthy());
    }
}

/// PING; on a cluster, to one node at random (one node down is not the cluster down).
async fn ping(c: &mut RedisConn) -> Result<String, redis::RedisError> {
    match c {
        RedisConn::Single(_) => redis::cmd("PING").query_async(c).await,
        RedisConn::Cluster(cc) => {
            use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
            let v = cc
                .route_command(
                    redis::cmd("PING"),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await?;
            Ok(redis::from_redis_value(v)?)
        }
    }
}

fn fmt_addr(a: Option<&(String, u16)>) -> String {
    a.map(|(h, p)| format!("{h}:{p}")).unwrap_or_default()
}

/// An error text with any URL in it redacted (a client error may repeat the address it used).
fn redact_in(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains("://") {
                redact_url(w)
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_in("cannot reach redis://:pw@host:6379/0 now"),
            "cannot reach redis://host:6379/0 now"
        );
        assert_eq!(
            crate::config::redact_url("nats://u:p@a:4222,nats://u:p@b:4222"),
            "nats://a:4222,nats://b:4222"
        );
    }
}
