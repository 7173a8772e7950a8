//! The JetStream backend (`state.nats_url`), shared by every replica.
//!
//! - Stream `AIGW_JOBS` (subject `aigw.jobs.run`, file storage, work-queue retention, `discard:
//!   new` so a full stream refuses submissions instead of dropping jobs, 2 min duplicate window):
//!   one message per job, the request body, `Nats-Msg-Id` = job id.
//! - Durable pull consumer `workers` shared by all replicas: explicit acks, `AckWait` 10 s kept
//!   alive by in-progress acks every 3 s while a job runs, unlimited deliveries: the record's
//!   `attempts` decides when a job has had enough, so a worker that dies on the last delivery
//!   cannot leave a job `running` forever.
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
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::worker::{Outcome, count_end, deliver_webhook, execute, interrupted_error, retry_delay};
use super::{
    Cancel, Job, JobStatus, Jobs, NewJob, StoreError, SubmitError, Submitted, WebhookStatus,
};
use crate::auth::Caller;
use crate::config::Config;
use crate::jobs::host::SharedHost as SharedState;

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
/// How long one pull request waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Room for headers and protocol framing next to a body in one message.
const MESSAGE_OVERHEAD: usize = 1024;

struct Inner {
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

async fn setup(client: &async_nats::Client, cfg: &Config) -> Result<Inner, String> {
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .backpressure_on_inflight(true)
        .build(client.clone());
    let replicas = crate::state::nats::replicas(&cfg.state);
    let work_queue = |name: &str, subject: &str| stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let ensure = |c| crate::state::nats::ensure_stream(&js, c, replicas, |_| false);
    let jobs_stream = ensure(work_queue(JOBS_STREAM, JOBS_SUBJECT)).await?;
    let hooks_stream = ensure(work_queue(HOOKS_STREAM, HOOKS_SUBJECT)).await?;
    let kv = ensure_bucket(&js, BUCKET, cfg.jobs.result_ttl.get(), replicas).await?;
    let meta = ensure_bucket(&js, META_BUCKET, Duration::ZERO, replicas).await?;
    let objects = crate::state::nats::ensure_object_store(
        &js,
        object_store::Config {
            bucket: OBJECTS_BUCKET.to_owned(),
            description: Some(
                "ai-gateway: job bodies and results too large for one message".to_owned(),
            ),
            max_age: cfg.jobs.result_ttl.get(),
            storage: stream::StorageType::File,
            ..Default::default()
        },
        replicas,
    )
    .await?;
    let jobs: consumer::PullConsumer = jobs_stream
        .get_or_create_consumer(
            "workers",
            consumer::pull::Config {
                durable_name: Some("workers".to_owned()),
                description: Some("ai-gateway job workers (all replicas)".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: -1,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer workers: {e}"))?;
    let hook_wait = (cfg.jobs.webhook.timeout.get() * 2).max(Duration::from_secs(60));
    let hooks: consumer::PullConsumer = hooks_stream
        .get_or_create_consumer(
            "webhooks",
            consumer::pull::Config {
                durable_name: Some("webhooks".to_owned()),
                description: Some("ai-gateway webhook deliveries (all replicas)".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: hook_wait,
                max_deliver: -1,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer webhooks: {e}"))?;
    Ok(Inner {
        js,
        kv,
        meta,
        objects,
        jobs,
        hooks,
    })
}

/// A KV bucket, made through its stream so it works with nats-server 2.9 too (the client's
/// `create_key_value` reads account fields that 2.9 does not send). `max_age` zero = forever;
/// a changed `jobs.result_ttl` updates the bucket.
pub(crate) async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, String> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    crate::state::nats::ensure_stream(js, config, replicas, |have| have.max_age != max_age)
        .await
        .map_err(|e| format!("key-value bucket {bucket}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| format!("key-value bucket {bucket}: {e}"))
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
            .kv
            .get(record_key(id))
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
                        .kv
                        .get(ik)
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
            let Some(entry) = inner
                .kv
                .entry(&key)
                .await
                .map_err(|e| store_err("read", e))?
            else {
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

    /// This process's share of the workers: up to `jobs.workers` jobs at a time (the process's
    /// job slots) from the shared consumer until `stop`; running jobs then finish, or are
    /// released (NAK) when `hard` fires.
    pub async fn run_workers(
        self: Arc<Self>,
        state: SharedState,
        mut stop: watch::Receiver<bool>,
        hard: watch::Receiver<bool>,
    ) {
        let slots = state.job_slots().clone();
        let mut tasks = JoinSet::new();
        let Some(inner) = self.wait_inner(&mut stop).await else {
            return;
        };
        loop {
            while tasks.try_join_next().is_some() {}
            if *stop.borrow() {
                break;
            }
            let first = tokio::select! {
                p = slots.acquire() => p,
                _ = stop.changed() => break,
            };
            let mut permits = vec![first];
            while permits.len() < 256 {
                match slots.try_acquire() {
                    Some(p) => permits.push(p),
                    None => break,
                }
            }
            let batch = inner
                .jobs
                .batch()
                .max_messages(permits.len())
                .expires(PULL_EXPIRES)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    drop(permits);
                    tracing::debug!(error = %e, "cannot pull jobs; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => break,
                    }
                    continue;
                }
            };
            // A pull request lost with the connection never ends by itself: bound it here.
            let until = tokio::time::Instant::now() + PULL_EXPIRES + Duration::from_secs(1);
            while let Ok(Some(item)) = tokio::time::timeout_at(until, batch.next()).await {
                let msg = match item {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(error = %e, "job pull ended with an error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                let Some(permit) = permits.pop() else {
                    // More than asked for: give it back for another worker.
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    continue;
                };
                let (me, state, inner, hard) =
                    (self.clone(), state.clone(), inner.clone(), hard.clone());
                tasks.spawn(async move {
                    me.handle_job(&state, &inner, msg, hard).await;
                    drop(permit);
                });
            }
        }
        let running = tasks.len();
        if running > 0 {
            tracing::info!(
                running,
                "job workers stopped taking jobs; waiting for running ones"
            );
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn handle_job(
        &self,
        state: &SharedState,
        inner: &Inner,
        msg: jetstream::Message,
        mut hard: watch::Receiver<bool>,
    ) {
        let Some(id) = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(JOB_HEADER))
            .map(|v| v.as_str().to_owned())
        else {
            tracing::warn!("a job message without a job id; dropping it");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        };
        let key = record_key(&id);
        let max_attempts = state.runtime().config.jobs.max_attempts;
        // Mark it running (compare-and-set on the record).
        let mut tries = 0;
        let (mut job, revision) = loop {
            tries += 1;
            let entry = match inner.kv.entry(&key).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => e,
                Ok(_) => {
                    // No record: it expired, or its submission failed after publishing.
                    let _ = msg.ack().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot read a job record; redelivering later");
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    return;
                }
            };
            let Some(mut job) = Job::from_slice(&entry.value) else {
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            };
            if job.status.is_terminal() {
                // Ended before (a redelivery after the ack was lost): make sure its webhook was
                // queued, then drop the message.
                if job
                    .webhook
                    .as_ref()
                    .is_some_and(|w| w.status == WebhookStatus::Pending && w.attempts == 0)
                {
                    let _ = enqueue_webhook(inner, &job.id).await;
                }
                let _ = msg.ack().await;
                return;
            }
            if job.attempts >= max_attempts {
                job.finish(
                    JobStatus::Failed,
                    None,
                    Some(interrupted_error(job.attempts)),
                );
                self.end(inner, &msg, &key, job, entry.revision).await;
                return;
            }
            job.status = JobStatus::Running;
            job.attempts += 1;
            job.started_at = Some(crate::clock::unix_secs());
            match inner.kv.update(&key, job.to_bytes(), entry.revision).await {
                Ok(rev) => break (job, rev),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision && tries < 5 => {}
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot mark a job running; redelivering later");
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    return;
                }
            }
        };
        let in_object_store = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(BODY_HEADER))
            .is_some_and(|v| v.as_str() == "object");
        let body = if in_object_store {
            match read_object(inner, &format!("body.{id}")).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot read a job body from the object store; redelivering later");
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    return;
                }
            }
        } else {
            msg.payload.clone()
        };
        let outcome = {
            let exec = execute(state, &job, body);
            tokio::pin!(exec);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            loop {
                let tick_now = tokio::select! {
                    o = &mut exec => break Some(o),
                    _ = hard.wait_for(|v| *v) => break None,
                    _ = tick.tick() => true,
                };
                if tick_now {
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            }
        };
        match outcome {
            None => {
                // Shutdown grace passed: release it to another worker (this attempt does not count).
                job.status = JobStatus::Queued;
                job.attempts = job.attempts.saturating_sub(1);
                let _ = inner.kv.update(&key, job.to_bytes(), revision).await;
                let _ = msg.ack_with(AckKind::Nak(None)).await;
            }
            Some(Outcome::Succeeded(raw)) => {
                job.finish(JobStatus::Succeeded, Some(raw), None);
                self.end(inner, &msg, &key, job, revision).await;
            }
            Some(Outcome::Failed { error, retryable })
                if retryable && job.attempts < max_attempts =>
            {
                let delay = retry_delay(state, job.attempts);
                tracing::info!(job = %id, attempts = job.attempts, delay_ms = delay.as_millis() as u64, "job attempt failed; retrying");
                job.status = JobStatus::Queued;
                job.error = Some(error);
                let _ = inner.kv.update(&key, job.to_bytes(), revision).await;
                let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            }
            Some(Outcome::Failed { error, .. }) => {
                job.finish(JobStatus::Failed, None, Some(error));
                self.end(inner, &msg, &key, job, revision).await;
            }
        }
    }

    /// Store a job's terminal record (retrying through a NATS outage), queue its webhook, then
    /// acknowledge its message. If another worker ended it first, that record stays.
    async fn end(
        &self,
        inner: &Inner,
        msg: &jetstream::Message,
        key: &str,
        job: Job,
        mut revision: u64,
    ) {
        let mut job = job;
        let max = self.client.server_info().max_payload;
        if job.to_bytes().len() + MESSAGE_OVERHEAD > max
            && let Some(result) = job.result.take()
        {
            // A record is one KV message: a larger result goes to the object store.
            let mut wait = Duration::from_millis(100);
            loop {
                match inner
                    .objects
                    .put(
                        format!("result.{}", job.id).as_str(),
                        &mut result.get().as_bytes(),
                    )
                    .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(job = %job.id, error = %e, "cannot store a large result yet; retrying");
                        let _ = msg.ack_with(AckKind::Progress).await;
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
            job.result_in_object_store = true;
        }
        let bytes = job.to_bytes();
        let mut wait = Duration::from_millis(100);
        loop {
            match inner.kv.update(key, bytes.clone(), revision).await {
                Ok(_) => break,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    match inner.kv.entry(key).await {
                        Ok(Some(cur)) if cur.operation == kv::Operation::Put => {
                            if cur.value == bytes {
                                // Our own write landed; only its answer was lost.
                                break;
                            }
                            if Job::from_slice(&cur.value).is_none_or(|j| j.status.is_terminal()) {
                                let _ = msg.ack().await;
                                return;
                            }
                            revision = cur.revision;
                            continue;
                        }
                        Ok(_) => {
                            let _ = msg.ack().await;
                            return;
                        }
                        Err(_) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "cannot store a job's result yet; retrying");
                }
            }
            let _ = msg.ack_with(AckKind::Progress).await;
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        count_end(&job);
        if msg
            .headers
            .as_ref()
            .and_then(|h| h.get(BODY_HEADER))
            .is_some()
        {
            let _ = inner.objects.delete(format!("body.{}", job.id)).await;
        }
        if job.webhook.is_some() {
            let mut wait = Duration::from_millis(100);
            while let Err(e) = enqueue_webhook(inner, &job.id).await {
                tracing::warn!(job = %job.id, error = %e, "cannot queue a webhook yet; retrying");
                let _ = msg.ack_with(AckKind::Progress).await;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
        for _ in 0..5 {
            if msg.double_ack().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The record says it ended: a redelivery only acknowledges it.
    }

    /// Deliver webhooks from the shared consumer (at most 64 at a time here) until `stop`.
    pub async fn run_webhooks(
        self: Arc<Self>,
        state: SharedState,
        jobs: Arc<Jobs>,
        mut stop: watch::Receiver<bool>,
    ) {
        let sem = Arc::new(Semaphore::new(64));
        let mut tasks = JoinSet::new();
        let Some(inner) = self.wait_inner(&mut stop).await else {
            return;
        };
        loop {
            while tasks.try_join_next().is_some() {}
            if *stop.borrow() {
                break;
            }
            let first = tokio::select! {
                p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = stop.changed() => break,
            };
            let mut permits = vec![first];
            while let Ok(p) = sem.clone().try_acquire_owned() {
                permits.push(p);
            }
            let mut batch = match inner
                .hooks
                .batch()
                .max_messages(permits.len())
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(b) => b,
                Err(_) => {
                    drop(permits);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => break,
                    }
                    continue;
                }
            };
            let until = tokio::time::Instant::now() + PULL_EXPIRES + Duration::from_secs(1);
            while let Ok(Some(item)) = tokio::time::timeout_at(until, batch.next()).await {
                let Ok(msg) = item else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                };
                let Some(permit) = permits.pop() else {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    continue;
                };
                let (state, jobs, inner) = (state.clone(), jobs.clone(), inner.clone());
                tasks.spawn(async move {
                    handle_hook(&state, &jobs, &inner, msg).await;
                    drop(permit);
                });
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Keep `ai_gateway_jobs_queued` at the consumer's pending count.
    pub async fn run_gauge(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(inner) = self.wait_inner(&mut stop).await else {
            return;
        };
        loop {
            if let Ok(info) = inner.jobs.get_info().await {
                metrics::gauge!(crate::metrics::JOBS_QUEUED).set(info.num_pending as f64);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn read_object(inner: &Inner, name: &str) -> Result<Bytes, String> {
    use tokio::io::AsyncReadExt;
    let mut obj = inner.objects.get(name).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    obj.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// Load a result kept in the object store into the record.
async fn hydrate(inner: &Inner, job: &mut Job) -> Result<(), StoreError> {
    if job.result_in_object_store && job.result.is_none() {
        let b = read_object(inner, &format!("result.{}", job.id))
            .await
            .map_err(|e| store_err("object store", e))?;
        let raw = serde_json::from_slice(&b).map_err(|e| store_err("object store", e))?;
        job.result = Some(raw);
        job.result_in_object_store = false;
    }
    Ok(())
}

async fn enqueue_webhook(inner: &Inner, id: &str) -> Result<(), String> {
    let publish = jetstream::message::PublishMessage::build()
        .payload(Bytes::from(id.to_owned()))
        .message_id(format!("wh.{id}"));
    inner
        .js
        .send_publish(HOOKS_SUBJECT, publish)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn handle_hook(state: &SharedState, jobs: &Jobs, inner: &Inner, msg: jetstream::Message) {
    let id = String::from_utf8_lossy(&msg.payload).into_owned();
    let key = record_key(&id);
    let entry = match inner.kv.entry(&key).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => e,
        Ok(_) => {
            let _ = msg.ack().await;
            return;
        }
        Err(_) => {
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
    };
    let Some(job) = Job::from_slice(&entry.value) else {
        let _ = msg.ack().await;
        return;
    };
    let mut shown = job.clone();
    if hydrate(inner, &mut shown).await.is_err() {
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        return;
    }
    let Some((w, next)) = deliver_webhook(state, jobs, &shown).await else {
        let _ = msg.ack().await;
        return;
    };
    // Record the attempt (compare-and-set; only the webhook part changes).
    let mut cur = (job, entry.revision);
    for _ in 0..10 {
        let mut j = cur.0.clone();
        j.webhook = Some(w.clone());
        match inner.kv.update(&key, j.to_bytes(), cur.1).await {
            Ok(_) => break,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                match inner.kv.entry(&key).await {
                    Ok(Some(e)) if e.operation == kv::Operation::Put => {
                        let Some(j) = Job::from_slice(&e.value) else {
                            break;
                        };
                        cur = (j, e.revision);
                    }
                    _ => break,
                }
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot record a webhook attempt");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    match next {
        Some(delay) => {
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
        }
        None => {
            let _ = msg.double_ack().await;
        }
    }
}
