//! The admin request log and the usage report (`request_log:` in the configuration).
//!
//! Every model call (an API call, an async job's run, a batch line) ends in `api::run_call` or
//! `api::serve_request`; there [`tap`] wraps the answer's body, and when that body ends (a stream
//! included) or is dropped the call's [`Entry`] is handed to [`RequestLog::record`]: a `try_send`
//! on a bounded channel, never a wait (a full channel drops the entry and counts it). One
//! background task drains the channel in batches (gathered for up to [`LINGER`]) and writes each
//! batch with its counters:
//!
//! - embedded (`state.data_dir/requests.redb`, one transaction per batch), or
//! - Redis when `state.redis_url` is set: a capped stream (`XADD MAXLEN ~`) shared by every
//!   replica, and the usage and overview counters as hashes (`HINCRBY`/`HINCRBYFLOAT`), so
//!   totals over replicas are exact (see [`counters`]).

pub mod counters;
/// Public for `benches/request_log.rs`.
pub mod embedded;
mod redis_store;
pub mod tap;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::RequestLogConfig;
pub use crate::record::Label;
use crate::state::Redis;

pub use tap::{Start, tap};

/// Entries waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 16_384;
/// Entries written in one batch at most.
const BATCH: usize = 2048;
/// How long the writer lets a batch gather after its first entry: one commit (or one Redis round
/// trip) then carries many calls' entries instead of a few (docs/benchmarks.md, "The request log").
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);
/// Bodies kept at most this long each (with `request_log.bodies`).
pub const BODY_MAX: usize = 32 * 1024;

/// One request-log entry: the fields of `GET /admin/requests`. Read back with `String`s; made
/// for the writer with [`Label`]s, the request's labels shared rather than copied (written out
/// the same way).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Entry<S = String> {
    /// The request id (`x-request-id`).
    pub id: S,
    /// Unix seconds when the call started.
    pub created_at: u64,
    pub endpoint: S,
    /// The key's name (`null` on a gateway without keys).
    pub key: Option<S>,
    pub model: Option<S>,
    pub provider: Option<S>,
    pub deployment_model: Option<S>,
    pub status: u16,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub attempts: Option<u32>,
    pub cache: Option<S>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response: Option<String>,
}

/// A query of the log: newest first, after the entry `after`, matching the filters.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub limit: usize,
    pub after: Option<String>,
    pub key: Option<String>,
    pub model: Option<String>,
    pub status: Option<StatusFilter>,
}

/// `status=`: an exact code (`429`), a class (`4xx`), `error` (400 and up) or `ok` (below 400).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatusFilter {
    Exact(u16),
    Class(u16),
    Error,
    Ok,
}

impl StatusFilter {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "error" | "errors" => Some(Self::Error),
            "ok" | "success" => Some(Self::Ok),
            _ if s.len() == 3 && s.ends_with("xx") => {
                let c = s.as_bytes()[0];
                (b'1'..=b'5')
                    .contains(&c)
                    .then(|| Self::Class(u16::from(c - b'0')))
            }
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(Self::Exact),
        }
    }

    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Exact(c) => status == c,
            Self::Class(c) => status / 100 == c,
            Self::Error => status >= 400,
            Self::Ok => status < 400,
        }
    }
}

impl Query {
    pub fn matches(&self, e: &Entry) -> bool {
        self.key.as_ref().is_none_or(|k| e.key.as_ref() == Some(k))
            && self
                .model
                .as_ref()
                .is_none_or(|m| e.model.as_ref() == Some(m))
            && self.status.is_none_or(|s| s.matches(e.status))
    }
}

/// A page of the log.
pub struct Page {
    pub data: Vec<Entry>,
    pub has_more: bool,
}

/// Why a log read failed.
#[derive(Debug)]
pub enum ReadError {
    /// `after` names no entry (never logged, or trimmed since).
    UnknownCursor,
    Store(String),
}

enum Backend {
    Embedded(embedded::Embedded),
    Redis(redis_store::RedisLog),
}

/// The request log of this process: the writer's queue and the store it reads.
pub struct RequestLog {
    tx: mpsc::Sender<Entry<Label>>,
    backend: Arc<Backend>,
    dropped: AtomicU64,
}

impl RequestLog {
    /// Open the store and start the writer (on the current runtime). `None` when the log is off.
    pub fn start(
        cfg: &RequestLogConfig,
        redis: Option<Arc<Redis>>,
        data_dir: &std::path::Path,
    ) -> Result<Option<Arc<Self>>, String> {
        if !cfg.enabled {
            return Ok(None);
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("the request log needs an async runtime; it is off");
            return Ok(None);
        };
        let retention_days = (cfg.usage_retention.get().as_secs() / 86_400).max(1);
        let backend = Arc::new(match redis {
            Some(r) => Backend::Redis(redis_store::RedisLog::new(
                r,
                cfg.max_entries,
                retention_days,
            )),
            None => Backend::Embedded(embedded::Embedded::open(
                data_dir,
                cfg.max_entries,
                retention_days,
            )?),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let log = Arc::new(Self {
            tx,
            backend: backend.clone(),
            dropped: AtomicU64::new(0),
        });
        crate::tasks::service_on(&rt, write_loop(rx, backend));
        Ok(Some(log))
    }

    /// Queue an entry for the writer; never waits (a full queue drops it, counted).
    pub fn record(&self, e: Entry<Label>) {
        if self.tx.try_send(e).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!("ai_gateway_request_log_dropped_total").increment(1);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped_so_far = n,
                    "request log: the writer is behind; entries dropped"
                );
            }
        }
    }

    /// Entries dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A page of the log, newest first.
    pub async fn list(&self, q: Query) -> Result<Page, ReadError> {
        match &*self.backend {
            Backend::Embedded(s) => s.list(q).await,
            Backend::Redis(s) => s.list(q).await,
        }
    }

    /// One entry by request id (the newest with that id).
    pub async fn get(&self, id: String) -> Result<Option<Entry>, String> {
        match &*self.backend {
            Backend::Embedded(s) => s.get(id).await,
            Backend::Redis(s) => s.get(id).await,
        }
    }

    /// The counter hashes named (see [`counters`]), each as field → value.
    pub async fn counters(&self, hashes: Vec<String>) -> Result<Vec<counters::Hash>, String> {
        match &*self.backend {
            Backend::Embedded(s) => s.counters(hashes).await,
            Backend::Redis(s) => s.counters(hashes).await,
        }
    }
}

/// The writer: waits for an entry, lets others gather for [`LINGER`] (unless a full batch is
/// already queued), takes what is queued (up to [`BATCH`]), writes them and their counters in one
/// go.
async fn write_loop(mut rx: mpsc::Receiver<Entry<Label>>, backend: Arc<Backend>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_sweep = 0u64;
    let mut unsynced = false;
    loop {
        // Idle for a second after unsynced writes: sync them (embedded store).
        let got = if unsynced {
            match tokio::time::timeout(
                std::time::Duration::from_secs(1),
                rx.recv_many(&mut batch, BATCH),
            )
            .await
            {
                Ok(n) => n,
                Err(_) => {
                    if let Backend::Embedded(s) = &*backend
                        && let Err(e) = s.sync().await
                    {
                        tracing::warn!(error = %e, "request log: sync failed");
                    }
                    unsynced = false;
                    continue;
                }
            }
        } else {
            rx.recv_many(&mut batch, BATCH).await
        };
        if got == 0 {
            return;
        }
        if batch.len() < BATCH {
            // Let the batch gather, then take what came (without waiting for more).
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
        }
        unsynced = matches!(&*backend, Backend::Embedded(_));
        let deltas = counters::deltas(&batch);
        let result = match &*backend {
            Backend::Embedded(s) => match embedded::encode(&batch) {
                Ok(row) => s.write(row, deltas).await,
                Err(e) => Err(e),
            },
            Backend::Redis(s) => s.write(&batch, deltas).await,
        };
        // Freed here, where they were made; the vector's room kept for the next batch.
        batch.clear();
        if let Err(e) = result {
            tracing::warn!(error = %e, "request log: a batch was not written");
        }
        // Old counters out, every 10 minutes.
        let now = crate::clock::unix_secs();
        if now.saturating_sub(last_sweep) >= 600 {
            last_sweep = now;
            if let Backend::Embedded(s) = &*backend
                && let Err(e) = s.sweep(now).await
            {
                tracing::warn!(error = %e, "request log: the old counters were not removed");
            }
        }
    }
}
