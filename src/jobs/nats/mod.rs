//! The JetStream backend (`state.nats_url`), shared by every replica.
//!
//! - Stream `AIGW_JOBS` (subject `aigw.jobs.run`, file storage, work-queue retention, `discard:
//!   new` so a full stream refuses submissions instead of dropping jobs, 2 min duplicate window):
//!   one message per job, the request body, `Nats-Msg-Id` = job id.
//! - Durable pull consumer `workers` shared by all replicas: explicit acks, `AckWait` 10 s kept
//!   alive by in-progress acks every 3 s while a job runs, unlimited deliveries: the record's
//!   `attempts` decides when a job has had enough, so a worker that dies on the last delivery
//!   cannot leave a job `running` forever.
//! - Job records are read from their stream's leader, not by direct gets (which a follower
//!   lagging by a write answers with "not found" on a cluster), and the object store has direct
//!   gets off; a message whose record is missing is dropped only after three deliveries that all
//!   miss it.
//! - KV bucket `aigw_jobs` (history 1, `max_age` = `jobs.result_ttl`): `j.{id}` the record,
//!   `i.{sha256(key id, Idempotency-Key)}` the job id of an idempotent submission. Every state
//!   change is a compare-and-set on the record's revision, so a job redelivered to a second worker
//!   while the first still runs ends once.
//! - Stream `AIGW_WEBHOOKS` + consumer `webhooks`: one message per delivery, retried by a NAK
//!   delayed by the backoff, so the schedule survives any restart.
//! - KV bucket `aigw_meta`: the generated webhook secret when none is configured; `idem_scope`
//!   once idempotency entries made before they were scoped by key id are rescoped.
//! - Object store `aigw_objects`: bodies and results too large for one message (`max_payload`).
//!
//! The client reconnects by itself; JetStream set-up is retried in the background until it
//! succeeds, and until then async endpoints answer 503 and `/ready` says `nats: down`.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_nats::jetstream::{self, AckKind, consumer, kv, object_store, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::pool::{Flow, Queue, Settled, settle};
use super::worker::{count_end, deliver_webhook, execute, interrupted_error};
use super::{
    Cancel, Job, JobStatus, Jobs, NewJob, StoreError, SubmitError, Submitted, WebhookStatus,
};
use crate::auth::Caller;
use crate::config::Config;
use crate::jobs::host::SharedHost as SharedState;
use crate::slots::Slots;
use crate::state::nats::LeaderEntry;

mod setup;
mod work;

pub(crate) use setup::ensure_bucket;
use setup::*;
use work::*;

const JOBS_STREAM: &str = "AIGW_JOBS";
const JOBS_SUBJECT: &str = "aigw.jobs.run";
const HOOKS_STREAM: &str = "AIGW_WEBHOOKS";
const HOOKS_SUBJECT: &str = "aigw.webhooks";
const BUCKET: &str = "aigw_jobs";
const META_BUCKET: &str = "aigw_meta";
const OBJECTS_BUCKET: &str = "aigw_objects";
const JOB_HEADER: &str = "Aigw-Job-Id";
/// Set on a job message whose body is in the object store (too large for one message).
const BODY_HEADER: &str = "Aigw-Body";
/// How long a delivered job may go without an ack before JetStream hands it to another worker.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// Deliveries in a row that find no record before a job or webhook message is dropped.
const MISSING_RECORD_DELIVERIES: i64 = 3;
/// How long one pull request waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Room for headers and protocol framing next to a body in one message.
const MESSAGE_OVERHEAD: usize = 1024;

struct Inner {
    /// The core client: records are read from their stream's leader on it.
    client: async_nats::Client,
    js: jetstream::Context,
    kv: kv::Store,
    meta: kv::Store,
    /// Bodies and results larger than one message (`body.{id}`, `result.{id}`).
    objects: object_store::ObjectStore,
    jobs: consumer::PullConsumer,
    hooks: consumer::PullConsumer,
}

pub struct Nats {
    client: async_nats::Client,
    inner: ArcSwapOption<Inner>,
    ready: watch::Sender<bool>,
}

impl Inner {
    /// An entry of the `aigw_jobs` bucket, read from its stream's leader: never a follower's
    /// answer that misses a record made a moment ago (see [`crate::state::nats::leader_entry`]).
    async fn entry(&self, key: &str) -> Result<Option<LeaderEntry>, String> {
        crate::state::nats::leader_entry(&self.client, BUCKET, key).await
    }

    /// The value of `key` in `aigw_jobs` (`None`: none, or deleted), read from the leader.
    async fn value(&self, key: &str) -> Result<Option<Bytes>, String> {
        Ok(self
            .entry(key)
            .await?
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| e.value))
    }
}

pub(super) fn record_key(id: &str) -> String {
    format!("j.{id}")
}

/// An `Idempotency-Key` in the scope of the key (by its id) that sent it.
pub(super) fn idem_key(owner_id: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(owner_id.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    format!("i.{}", hex::encode(h.finalize()))
}

fn store_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("NATS {what}: {e}"))
}

impl Nats {
    /// Connect (in the background if NATS is down) and set JetStream up; waits up to 5 s for it.
    pub async fn connect(cfg: &Config) -> Result<Arc<Self>, String> {
        let options = crate::state::nats::options(&cfg.state, "ai-gateway")
            .await?
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(5)))
            .max_reconnects(None);
        let client = crate::state::nats::connect(&cfg.state, options).await?;
        let (ready, mut ready_rx) = watch::channel(false);
        let me = Arc::new(Self {
            client,
            inner: ArcSwapOption::empty(),
            ready,
        });
        let bg = me.clone();
        let cfg = cfg.clone();
        crate::tasks::service(async move {
            let mut logged = false;
            loop {
                match setup(&bg.client, &cfg).await {
                    Ok(inner) => {
                        let inner = Arc::new(inner);
                        bg.inner.store(Some(inner.clone()));
                        let _ = bg.ready.send(true);
                        let info = bg.client.server_info();
                        tracing::info!(
                            server = %info.server_name,
                            cluster = %info.cluster.as_deref().unwrap_or("none"),
                            cluster_servers = info.connect_urls.len().max(1),
                            tls = info.tls_required,
                            jetstream_replicas = crate::state::nats::replicas(&cfg.state),
                            "NATS JetStream ready: job queue, records and webhook schedule"
                        );
                        match super::legacy::rescope_nats(&inner.kv, &inner.meta, &cfg).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(
                                entries = n,
                                "idempotency keys of earlier jobs rescoped to their key's id"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot rescope earlier idempotency keys (the next start retries)")
                            }
                        }
                        return;
                    }
                    Err(e) => {
                        if !logged {
                            tracing::warn!(error = %e, "NATS JetStream not ready; retrying every second (async endpoints answer 503 meanwhile)");
                            logged = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx.wait_for(|v| *v)).await;
        Ok(me)
    }

    fn inner(&self) -> Result<Arc<Inner>, StoreError> {
        self.inner
            .load_full()
            .ok_or_else(|| StoreError::new("NATS JetStream is not reachable yet"))
    }

    async fn wait_inner(&self, stop: &mut watch::Receiver<bool>) -> Option<Arc<Inner>> {
        let mut rx = self.ready.subscribe();
        tokio::select! {
            _ = rx.wait_for(|v| *v) => self.inner.load_full(),
            _ = stop.wait_for(|v| *v) => None,
        }
    }

    /// The JetStream context once set up (files and batches keep their own buckets on it).
    pub fn jetstream(&self) -> Option<jetstream::Context> {
        self.inner.load().as_ref().map(|i| i.js.clone())
    }

    /// The last entry of `key` in KV bucket `bucket`, read from the bucket stream's leader (files
    /// and batches read their records so, as the jobs do: see
    /// [`crate::state::nats::leader_entry`]).
    pub async fn leader_entry(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<LeaderEntry>, String> {
        crate::state::nats::leader_entry(&self.client, bucket, key).await
    }

    /// Connected and set up.
    pub fn is_ready(&self) -> bool {
        self.inner.load().is_some()
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The webhook secret stored in `aigw_meta`, made now if there is none (then `true`). Waits
    /// for JetStream.
    pub async fn webhook_secret(&self) -> Result<(Vec<u8>, bool), String> {
        let mut never = watch::channel(false).1;
        loop {
            let Some(inner) = self.wait_inner(&mut never).await else {
                continue;
            };
            match inner.meta.get(super::secret::KEY).await {
                Ok(Some(v)) => return Ok((v.to_vec(), false)),
                Ok(None) => {
                    let key = crate::webhooks::generate_secret();
                    match inner
                        .meta
                        .create(super::secret::KEY, Bytes::from(key.clone()))
                        .await
                    {
                        Ok(_) => return Ok((key, true)),
                        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot store the webhook secret; retrying")
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the webhook secret; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let inner = self.inner()?;
        let v = inner
            .value(&record_key(id))
            .await
            .map_err(|e| store_err("read", e))?;
        let Some(mut job) = v.and_then(|b| Job::from_slice(&b)) else {
            return Ok(None);
        };
        hydrate(&inner, &mut job).await?;
        Ok(Some(job))
    }

    pub async fn submit(&self, new: NewJob) -> Result<Submitted, SubmitError> {
        let inner = self.inner().map_err(SubmitError::Store)?;
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(SubmitError::Store(StoreError::new("NATS is not connected")));
        }
        let NewJob { mut job, body } = new;
        let max = self.client.server_info().max_payload;
        let large = body.len() + MESSAGE_OVERHEAD > max;
        let ikey = job
            .idempotency_key
            .as_ref()
            .map(|k| idem_key(&job.caller_id, k));
        if let Some(ik) = &ikey {
            match inner.kv.create(ik, Bytes::from(job.id.clone())).await {
                Ok(_) => {}
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let existing = inner
                        .value(ik)
                        .await
                        .map_err(|e| SubmitError::Store(store_err("read", e)))?
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    if let Some(id) = existing {
                        if let Some(rec) = self.get(&id).await.map_err(SubmitError::Store)? {
                            return Ok(Submitted {
                                job: rec,
                                replayed: true,
                            });
                        }
                        // The first submission stopped before storing its record: finish it
                        // with this one's body, under the same id.
                        job.id = id;
                    }
                }
                Err(e) => return Err(SubmitError::Store(store_err("write", e))),
            }
        }
        let key = record_key(&job.id);
        match inner.kv.create(&key, job.to_bytes()).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                if let Some(rec) = self.get(&job.id).await.map_err(SubmitError::Store)? {
                    return Ok(Submitted {
                        job: rec,
                        replayed: true,
                    });
                }
                return Err(SubmitError::Store(StoreError::new(
                    "job record race; retry",
                )));
            }
            Err(e) => return Err(SubmitError::Store(store_err("write", e))),
        }
        let mut publish = jetstream::message::PublishMessage::build()
            .message_id(&job.id)
            .header(JOB_HEADER, job.id.as_str());
        if large {
            // Too large for one message: the body goes to the object store (chunked).
            if let Err(e) = inner
                .objects
                .put(format!("body.{}", job.id).as_str(), &mut body.as_ref())
                .await
            {
                let _ = inner.kv.delete(&key).await;
                if let Some(ik) = &ikey {
                    let _ = inner.kv.delete(ik).await;
                }
                return Err(SubmitError::Store(store_err("object store", e)));
            }
            publish = publish.header(BODY_HEADER, "object");
        } else {
            publish = publish.payload(body);
        }
        let sent = match inner.js.send_publish(JOBS_SUBJECT, publish).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            // Not queued: forget the record so a retry with the same Idempotency-Key starts over.
            let _ = inner.kv.delete(&key).await;
            if let Some(ik) = &ikey {
                let _ = inner.kv.delete(ik).await;
            }
            return Err(SubmitError::Store(store_err("publish", e)));
        }
        Ok(Submitted {
            job,
            replayed: false,
        })
    }

    pub async fn cancel(&self, id: &str, caller: &Caller) -> Result<Cancel, StoreError> {
        let inner = self.inner()?;
        let key = record_key(id);
        for _ in 0..10 {
            let Some(entry) = inner.entry(&key).await.map_err(|e| store_err("read", e))? else {
                return Ok(Cancel::NotFound);
            };
            let Some(mut job) = (entry.operation == kv::Operation::Put)
                .then(|| Job::from_slice(&entry.value))
                .flatten()
            else {
                return Ok(Cancel::NotFound);
            };
            if !job.visible_to(caller) {
                return Ok(Cancel::NotFound);
            }
            if job.status != JobStatus::Queued {
                return Ok(Cancel::Conflict(job));
            }
            job.finish(JobStatus::Cancelled, None, None);
            match inner.kv.update(&key, job.to_bytes(), entry.revision).await {
                Ok(_) => {
                    if job.webhook.is_some()
                        && let Err(e) = enqueue_webhook(&inner, &job.id).await
                    {
                        tracing::warn!(job = %job.id, error = %e, "cannot queue the webhook of a cancelled job");
                    }
                    return Ok(Cancel::Cancelled(job));
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(store_err("write", e)),
            }
        }
        Err(StoreError::new(
            "the job changed too often to cancel; retry",
        ))
    }
}
