//! Async jobs: `POST /v1/async/…` stores a request as a job, workers run it through the same
//! pipeline as a synchronous request, `GET /v1/jobs/{id}` shows the record, and a webhook is
//! POSTed when it ends.
//!
//! Two backends with one set of semantics ([`JobQueue`]):
//! - [`nats`]: JetStream when `state.nats_url` is set. The request body is a message on a
//!   work-queue stream consumed by one durable pull consumer shared by every replica; records live
//!   in a KV bucket (`max_age` = `jobs.result_ttl`), state changes are compare-and-set on the
//!   record's revision; webhooks are messages on their own work-queue stream, retried by delayed
//!   NAKs.
//! - [`embedded`]: a redb file in `state.data_dir`, written by one thread that commits batches
//!   (group commit, fsync per commit), for a single process.
//!
//! Invariants of both: a job is stored before its 202 goes out; a job message is acknowledged
//! only after its final record is stored; the record's status decides what a redelivered job
//! does (terminal: nothing; `attempts` used up: it fails); a job ends once. Upstream calls are
//! not idempotent, so a crash can repeat a call: at most the jobs that were running, each counted
//! in `attempts`.

pub mod batches;
pub mod embedded;
pub mod files;
pub mod host;
mod legacy;
pub mod nats;
pub mod pool;
pub mod secret;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use tokio::sync::watch;

use self::host::SharedHost as SharedState;
use crate::auth::Caller;
use crate::clock::{unix_ms, unix_secs};
use crate::config::Config;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Where a job's webhook delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookState {
    pub url: String,
    pub status: WebhookStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix seconds of the next attempt while pending after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
}

/// A job record, as stored. [`Job::public`] is what clients see.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    /// The synchronous endpoint the body is for: `/v1/chat/completions`, `/v1/embeddings`,
    /// `/v1/messages`.
    pub endpoint: String,
    pub model: String,
    /// The name of the key that created it ("" with auth off): a label, never compared.
    pub caller: String,
    /// The id of that key (`cfg_…` from the file, `key_…` from the admin API): only that key
    /// sees the job, its `Idempotency-Key` is scoped by it, and the job runs as it.
    #[serde(default)]
    pub caller_id: String,
    pub request_id: String,
    pub created_at: u64,
    #[serde(default)]
    pub started_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub webhook: Option<WebhookState>,
    /// Request headers the pipeline reads (cache control, trace context), replayed by the worker.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The caller's `Idempotency-Key` (internal: to forget it with the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// NATS backend: the result is too large for a KV message and lives in the object store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_in_object_store: bool,
    /// Embedded backend: the job's slot in the queue table while queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<(u64, u64)>,
}

impl Job {
    /// The job as `GET /v1/jobs/{id}` shows it.
    pub fn public(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "job",
            "status": self.status.as_str(),
            "endpoint": self.endpoint,
            "model": self.model,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
            "request_id": self.request_id,
            "status_url": format!("/v1/jobs/{}", self.id),
        });
        if let Some(r) = &self.result
            && let Ok(val) = serde_json::from_str::<Value>(r.get())
        {
            v["result"] = val;
        }
        if let Some(e) = &self.error {
            v["error"] = e.clone();
        }
        if let Some(w) = &self.webhook {
            let mut wv = json!({
                "url": w.url,
                "status": w.status,
                "attempts": w.attempts,
            });
            if let Some(e) = &w.last_error {
                wv["last_error"] = Value::String(e.clone());
            }
            if let Some(t) = w.next_attempt_at {
                wv["next_attempt_at"] = Value::from(t);
            }
            v["webhook"] = wv;
        }
        v
    }

    /// Whether `caller` may see this job: the key whose id it carries. With auth off every job
    /// is visible.
    pub fn visible_to(&self, caller: &Caller) -> bool {
        caller.owns(&self.caller_id)
    }

    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }

    /// End the job with an outcome (the caller stores it).
    pub fn finish(
        &mut self,
        status: JobStatus,
        result: Option<Box<RawValue>>,
        error: Option<Value>,
    ) {
        self.status = status;
        self.result = result;
        self.error = error;
        self.finished_at = Some(unix_secs());
        self.slot = None;
    }
}

/// A submission, validated, with the body to run.
pub struct NewJob {
    pub job: Job,
    pub body: Bytes,
}

/// The answer to a submission: the job, and whether an earlier submission with the same
/// `Idempotency-Key` made it.
pub struct Submitted {
    pub job: Job,
    pub replayed: bool,
}

/// What `DELETE /v1/jobs/{id}` found.
pub enum Cancel {
    Cancelled(Job),
    /// Running or ended: cannot be cancelled.
    Conflict(Job),
    NotFound,
}

/// A failure of the job store itself (answered 503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(msg: impl std::fmt::Display) -> Self {
        Self(msg.to_string())
    }
}

/// The queue and record store: JetStream or the embedded file.
pub enum JobQueue {
    Embedded(Arc<embedded::Embedded>),
    Nats(Arc<nats::Nats>),
}

impl JobQueue {
    pub async fn submit(&self, new: NewJob) -> Result<Submitted, SubmitError> {
        match self {
            Self::Embedded(e) => e.submit(new).await.map_err(SubmitError::Store),
            Self::Nats(n) => n.submit(new).await,
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        match self {
            Self::Embedded(e) => e.get(id).await,
            Self::Nats(n) => n.get(id).await,
        }
    }

    /// Cancel a queued job that `caller` may see. `ttl` is how long its record is kept.
    pub async fn cancel(
        &self,
        id: &str,
        caller: &Caller,
        ttl: Duration,
    ) -> Result<Cancel, StoreError> {
        match self {
            Self::Embedded(e) => {
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                e.cancel(id, caller, ttl_ms).await
            }
            Self::Nats(n) => n.cancel(id, caller).await,
        }
    }
}

/// Why a submission was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the job store is unavailable: {0}")]
    Store(StoreError),
}

/// The job system of one process: its queue, the webhook signer and client.
pub struct Jobs {
    pub queue: JobQueue,
    pub webhooks: crate::webhooks::Webhooks,
    /// Files and batches (`/v1/files`, `/v1/batches`), whose lines run through the jobs'
    /// pipeline.
    pub batches: Arc<crate::jobs::batches::Batches>,
}

impl Jobs {
    /// Open the embedded store or connect to NATS (connection and JetStream set-up continue in
    /// the background when NATS is down), and settle the webhook secret: the configured one, or
    /// one generated once and stored where only the gateway's user reads it ([`secret`]), so
    /// every replica and every restart signs with the same key. It is never logged.
    pub async fn start(cfg: &Config) -> Result<Arc<Self>, String> {
        let queue = match &cfg.state.nats_url {
            Some(_) => JobQueue::Nats(nats::Nats::connect(cfg).await?),
            None => JobQueue::Embedded(embedded::Embedded::open(cfg).await?),
        };
        let webhooks = crate::webhooks::Webhooks::new(cfg.jobs.webhook.allow_private_networks)?;
        let batches = crate::jobs::batches::Batches::open(cfg, &queue)?;
        let jobs = Arc::new(Self {
            queue,
            webhooks,
            batches,
        });
        match &cfg.jobs.webhook.secret {
            Some(s) => jobs.webhooks.set_key(crate::webhooks::decode_secret(s)?),
            None => match &jobs.queue {
                JobQueue::Embedded(e) => jobs.webhooks.set_key(secret::embedded(cfg, e).await?),
                JobQueue::Nats(n) => {
                    let (n, j) = (n.clone(), jobs.clone());
                    crate::tasks::spawn(async move {
                        if let Ok((key, created)) = n.webhook_secret().await {
                            secret::log_nats(created);
                            j.webhooks.set_key(key);
                        }
                    });
                }
            },
        }
        Ok(jobs)
    }

    /// Run this process's workers, webhook dispatcher and upkeep until `stop`; running jobs
    /// finish, or are released when `hard` fires (the shutdown grace passed).
    pub fn run(
        self: &Arc<Self>,
        state: SharedState,
        stop: watch::Receiver<bool>,
        hard: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let jobs = self.clone();
        crate::tasks::service(async move {
            match &jobs.queue {
                JobQueue::Embedded(e) => {
                    let slots = state.job_slots().clone();
                    tokio::join!(
                        crate::jobs::batches::runner::run(
                            state.clone(),
                            jobs.batches.clone(),
                            stop.clone()
                        ),
                        pool::run(e.clone(), &slots, state.clone(), stop.clone(), hard),
                        worker::run_embedded_webhooks(state, jobs.clone(), e.clone(), stop.clone()),
                        worker::run_embedded_expiry(e.clone(), stop),
                    );
                }
                JobQueue::Nats(n) => {
                    tokio::join!(
                        crate::jobs::batches::runner::run(
                            state.clone(),
                            jobs.batches.clone(),
                            stop.clone()
                        ),
                        n.clone().run_workers(state.clone(), stop.clone(), hard),
                        n.clone().run_webhooks(state, jobs.clone(), stop.clone()),
                        n.clone().run_gauge(stop),
                    );
                }
            }
        })
    }

    /// `ok`, `down` or `unused` for `/ready`.
    pub fn nats_state(&self) -> &'static str {
        match &self.queue {
            JobQueue::Nats(n) => {
                if n.is_ready() {
                    "ok"
                } else {
                    "down"
                }
            }
            JobQueue::Embedded(_) => "unused",
        }
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `job_` + a ULID: 48 bits of unix milliseconds and 80 random bits in Crockford base32 (26
/// characters), so ids sort by creation time.
pub fn new_job_id() -> String {
    let ms = u128::from(unix_ms() & 0xFFFF_FFFF_FFFF);
    let rnd: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let v = (ms << 80) | rnd;
    let mut out = String::with_capacity(30);
    out.push_str("job_");
    for i in (0..26).rev() {
        let idx = ((v >> (i * 5)) & 0x1F) as usize;
        out.push(char::from(CROCKFORD[idx]));
    }
    out
}

/// Whether a string looks like one of our job ids (so a path segment can go into a store key).
pub fn valid_job_id(id: &str) -> bool {
    id.len() == 30 && id.starts_with("job_") && id[4..].bytes().all(|b| CROCKFORD.contains(&b))
}

/// The delay before retry `n` (1-based) of a job or a webhook delivery: `initial · 2^(n-1)` capped
/// at `max`, at a random point in its upper half.
pub fn backoff(n: u32, initial: Duration, max: Duration) -> Duration {
    crate::backoff::delay(
        n.saturating_sub(1),
        initial,
        max,
        crate::backoff::Jitter::UpperHalf,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sortable_and_valid() {
        let a = new_job_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_job_id();
        assert!(valid_job_id(&a), "{a}");
        assert!(a < b, "{a} {b}");
        assert!(!valid_job_id("job_../../etc"));
        assert!(!valid_job_id("nope"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(1);
        for n in 1..20 {
            let b = backoff(n, i, m);
            let step = i.checked_mul(1 << (n - 1).min(30)).unwrap_or(m).min(m);
            assert!(b >= step / 2 && b <= step, "n={n} b={b:?}");
        }
    }

    #[test]
    fn public_view_hides_internals() {
        let job = Job {
            id: new_job_id(),
            status: JobStatus::Queued,
            endpoint: "/v1/chat/completions".into(),
            model: "m".into(),
            caller: "secret-key-name".into(),
            caller_id: "cfg_secret-key-name".into(),
            request_id: "req_1".into(),
            created_at: 1,
            started_at: None,
            finished_at: None,
            attempts: 0,
            result: None,
            error: None,
            webhook: None,
            headers: vec![("traceparent".into(), "x".into())],
            idempotency_key: Some("k".into()),
            result_in_object_store: false,
            slot: Some((1, 2)),
        };
        let v = job.public();
        assert_eq!(v["object"], "job");
        assert_eq!(v["status"], "queued");
        assert!(v.get("caller").is_none());
        assert!(v.get("headers").is_none());
        assert!(v.get("idempotency_key").is_none());
        assert_eq!(v["status_url"], format!("/v1/jobs/{}", job.id));
    }
}
