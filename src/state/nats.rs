//! How the gateway reaches NATS (`state.nats_url`, `nats_credentials_file`, `nats_tls`) and the
//! one rule for what it creates in JetStream: **every stream, KV bucket and object store has
//! `state.jetstream_replicas` replicas**, made or brought to that count by [`ensure_stream`] /
//! [`ensure_object_store`] (never silently left at another count). Code that adds a stream, a
//! bucket or an object store (jobs, batch files…) calls these. A read that must see the latest
//! write (a record made a moment ago) goes to the stream's leader: object stores are made without
//! direct gets, and KV entries are read with [`leader_entry`].
//!
//! `nats_url` may list several servers, comma-separated; the client connects to one, learns the
//! rest of the cluster from it and fails over between them. `tls://` (or a CA file in
//! `nats_tls`) means TLS; `nats://user:password@host` and a `.creds` file authenticate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream::{self, kv, object_store, stream};
use async_nats::{ClientError, ConnectErrorKind, ConnectOptions, Event, ServerAddr, ServerError};

use crate::config::{StateConfig, redact_url};

/// A user and its password.
type UserPass = (String, String);

/// The servers of `nats_url`, parsed; the user and password of the first one that has them.
pub fn servers(url: &str) -> Result<(Vec<ServerAddr>, Option<UserPass>), String> {
    let mut addrs = Vec::new();
    let mut auth = None;
    for (i, one) in url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let addr: ServerAddr = one.parse().map_err(|e| {
            format!(
                "state.nats_url: server {} ({}) is not a NATS URL: {e}",
                i + 1,
                redact_url(one)
            )
        })?;
        if auth.is_none() && addr.has_user_pass() {
            auth = Some((
                addr.username().unwrap_or_default().to_owned(),
                addr.password().unwrap_or_default().to_owned(),
            ));
        }
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return Err("state.nats_url: no server".to_owned());
    }
    Ok((addrs, auth))
}

/// Connect options of `state:` (auth and TLS); the caller adds its own timeouts. A `.creds` file
/// that cannot be read or parsed is an error naming the file (never its content); credentials
/// the server refuses are logged as a warning naming where they come from (see [`on_event`]).
pub async fn options(s: &StateConfig, name: &str) -> Result<ConnectOptions, String> {
    let url = s.nats_url.as_deref().unwrap_or_default();
    let (_, auth) = servers(url)?;
    let mut o = match &s.nats_credentials_file {
        Some(f) => ConnectOptions::with_credentials_file(f)
            .await
            .map_err(|e| format!("state.nats_credentials_file {f}: {e}"))?,
        None => ConnectOptions::new(),
    };
    o = o
        .name(name)
        .event_callback(on_event(refused(s, auth.is_some())));
    if let Some((u, p)) = auth {
        o = o.user_and_password(u, p);
    }
    if let Some(ca) = &s.nats_tls.ca_file {
        o = o
            .add_root_certificates(std::path::PathBuf::from(ca))
            .require_tls(true);
    }
    Ok(o)
}

/// What a refusal by the server says: where the credentials it refused come from (never them).
fn refused(s: &StateConfig, url_user: bool) -> String {
    match &s.nats_credentials_file {
        Some(f) => format!("NATS refused the credentials of state.nats_credentials_file ({f})"),
        None if url_user => "NATS refused the user and password of state.nats_url".to_owned(),
        None => "NATS refused a connection without credentials (set state.nats_credentials_file or a user in state.nats_url)".to_owned(),
    }
}

/// The client's event callback: a refusal of the credentials (the client keeps retrying on its
/// own, so nothing else would say why NATS stays down) is the warning `refused`, which names
/// where the credentials come from, once until the next successful connection.
fn on_event(refused: String) -> impl Fn(Event) -> std::future::Ready<()> + Send + Sync + 'static {
    let warned = Arc::new(AtomicBool::new(false));
    move |event| {
        let refusal = match &event {
            Event::Connected => {
                warned.store(false, Ordering::Relaxed);
                false
            }
            Event::ServerError(ServerError::AuthorizationViolation) => true,
            Event::ClientError(ClientError::Other(e)) => {
                e.contains("authorization violation") || e.contains("failed signing nonce")
            }
            _ => false,
        };
        if refusal && !warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %event,
                "{refused}; the client keeps retrying"
            );
        }
        std::future::ready(())
    }
}

/// Connect to `state.nats_url` with `options` (see [`options`]).
pub async fn connect(s: &StateConfig, o: ConnectOptions) -> Result<async_nats::Client, String> {
    let url = s.nats_url.as_deref().unwrap_or_default();
    let (addrs, auth) = servers(url)?;
    o.connect(addrs).await.map_err(|e| {
        let why = match e.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                format!(" ({})", refused(s, auth.is_some()))
            }
            _ => String::new(),
        };
        format!("state.nats_url ({}): {e}{why}", redact_url(url))
    })
}

/// The replica count of everything the gateway creates in JetStream.
pub fn replicas(s: &StateConfig) -> usize {
    usize::try_from(s.jetstream_replicas.max(1)).unwrap_or(1)
}

/// The stream of `config` with `replicas` replicas: created if missing; an existing one whose
/// replica count (or, when `update_if` says so, another setting) differs is updated, and when
/// the server refuses, the error says what differs.
pub async fn ensure_stream(
    js: &jetstream::Context,
    mut config: stream::Config,
    replicas: usize,
    update_if: impl Fn(&stream::Config) -> bool,
) -> Result<stream::Stream, String> {
    config.num_replicas = replicas;
    let name = config.name.clone();
    match js.get_stream(&name).await {
        Ok(st) => {
            let have = st.cached_info().config.clone();
            let replicas_differ = have.num_replicas.max(1) != replicas;
            if !replicas_differ && !update_if(&have) {
                return Ok(st);
            }
            js.update_stream(&config).await.map_err(|e| {
                if replicas_differ {
                    format!(
                        "stream {name} has {} replica(s) but state.jetstream_replicas is {replicas}, and the server refused to change it: {e}",
                        have.num_replicas.max(1)
                    )
                } else {
                    format!("stream {name}: {e}")
                }
            })?;
            if replicas_differ {
                settle(js, &name, replicas).await?;
                tracing::info!(
                    stream = %name, from = have.num_replicas.max(1), to = replicas,
                    "JetStream stream brought to state.jetstream_replicas"
                );
            }
            js.get_stream(&name)
                .await
                .map_err(|e| format!("stream {name}: {e}"))
        }
        Err(_) => match js.create_stream(config.clone()).await {
            Ok(st) => Ok(st),
            // Made by another replica meanwhile.
            Err(e) => js
                .get_stream(&name)
                .await
                .map_err(|_| format!("stream {name}: {e}")),
        },
    }
}

/// After a change of replicas: wait (up to 20 s) until the stream has a leader and every replica
/// is current, so that what is set up next does not meet it while it moves.
async fn settle(js: &jetstream::Context, name: &str, replicas: usize) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(mut st) = js.get_stream(name).await
            && let Ok(info) = st.info().await
            && let Some(c) = &info.cluster
            && (replicas <= 1 || c.leader.is_some())
            && c.replicas.len() + 1 >= replicas
            && c.replicas.iter().all(|p| p.current && !p.offline)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "stream {name}: its {replicas} replicas were not all current 20 s after the change"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The object store of `config` with `replicas` replicas (its stream `OBJ_<bucket>` brought to
/// that count when it exists with another), read through its stream's leader: the client makes
/// object stores with direct gets, which any replica answers, so on a cluster an object just
/// stored could be "not found" for a moment; the stream is updated to turn them off.
pub async fn ensure_object_store(
    js: &jetstream::Context,
    mut config: object_store::Config,
    replicas: usize,
) -> Result<object_store::ObjectStore, String> {
    config.num_replicas = replicas;
    let bucket = config.bucket.clone();
    let name = format!("OBJ_{bucket}");
    let have = match js.get_stream(&name).await {
        Ok(st) => st.cached_info().config.clone(),
        Err(_) => {
            let made = js.create_object_store(config).await.map(|_| ());
            match js.get_stream(&name).await {
                Ok(st) => st.cached_info().config.clone(),
                Err(e) => {
                    let e = made.err().map_or_else(|| e.to_string(), |m| m.to_string());
                    return Err(format!("object store {bucket}: {e}"));
                }
            }
        }
    };
    let replicas_differ = have.num_replicas.max(1) != replicas;
    if replicas_differ || have.allow_direct {
        let mut want = have.clone();
        want.num_replicas = replicas;
        want.allow_direct = false;
        js.update_stream(&want).await.map_err(|e| {
            if replicas_differ {
                format!(
                    "object store {bucket} has {} replica(s) but state.jetstream_replicas is {replicas}, and the server refused to change it: {e}",
                    have.num_replicas.max(1)
                )
            } else {
                format!("object store {bucket}: {e}")
            }
        })?;
        if replicas_differ {
            settle(js, &name, replicas).await?;
            tracing::info!(
                object_store = %bucket, from = have.num_replicas.max(1), to = replicas,
                "JetStream object store brought to state.jetstream_replicas"
            );
        }
    }
    js.get_object_store(&bucket)
        .await
        .map_err(|e| format!("object store {bucket}: {e}"))
}

/// One entry of a KV bucket, as [`leader_entry`] reads it.
pub struct LeaderEntry {
    pub value: bytes::Bytes,
    /// The entry's sequence in the bucket's stream (what compare-and-set updates name).
    pub revision: u64,
    pub operation: kv::Operation,
}

/// The last entry of `key` in KV bucket `bucket`, read from the bucket stream's leader
/// (`STREAM.MSG.GET`), `None` when there is none. A KV store of the client reads with direct
/// gets, which any replica answers: on a cluster a follower that has not applied the latest
/// write yet says "no such key" for a record made a moment ago. Asked on the core client, not
/// through the JetStream context, whose debug log prints every API answer (here the value).
pub async fn leader_entry(
    client: &async_nats::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<LeaderEntry>, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        message: Option<Stored>,
        error: Option<ApiError>,
    }
    #[derive(serde::Deserialize)]
    struct Stored {
        seq: u64,
        hdrs: Option<String>,
        data: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ApiError {
        err_code: Option<u64>,
        description: Option<String>,
    }
    /// JetStream's "no message found".
    const NO_MESSAGE: u64 = 10037;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let request = serde_json::json!({ "last_by_subj": format!("$KV.{bucket}.{key}") });
    let reply = client
        .request(
            format!("$JS.API.STREAM.MSG.GET.KV_{bucket}"),
            request.to_string().into(),
        )
        .await
        .map_err(|e| format!("reading {key} of {bucket}: {e}"))?;
    let answer: Answer = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("reading {key} of {bucket}: {e}"))?;
    if let Some(e) = answer.error {
        if e.err_code == Some(NO_MESSAGE) {
            return Ok(None);
        }
        return Err(format!(
            "reading {key} of {bucket}: {}",
            e.description.unwrap_or_default()
        ));
    }
    let Some(m) = answer.message else {
        return Ok(None);
    };
    let decode = |v: Option<String>| {
        b64.decode(v.unwrap_or_default())
            .map_err(|e| format!("reading {key} of {bucket}: {e}"))
    };
    let headers = decode(m.hdrs)?;
    let operation = String::from_utf8_lossy(&headers)
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("KV-Operation")
                .then(|| match value.trim() {
                    "DEL" => kv::Operation::Delete,
                    "PURGE" => kv::Operation::Purge,
                    _ => kv::Operation::Put,
                })
        })
        .unwrap_or(kv::Operation::Put);
    Ok(Some(LeaderEntry {
        value: decode(m.data)?.into(),
        revision: m.seq,
        operation,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn several_servers_and_the_credentials_of_the_url() {
        let (addrs, auth) =
            super::servers("nats://gw:s3cret@a:4222, nats://b:4222,tls://c:4443").unwrap();
        assert_eq!(addrs.len(), 3);
        assert_eq!(auth, Some(("gw".to_owned(), "s3cret".to_owned())));
        assert!(addrs[2].tls_required());
        let e = super::servers("nats://u:pw@a:4222,http://[::1").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }
}
