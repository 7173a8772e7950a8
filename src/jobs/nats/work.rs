//! The workers on JetStream: pulling jobs, running them, recording their end, delivering
//! webhooks, and the queued-jobs gauge.

use super::*;

impl Nats {
    /// This process's share of the workers: up to `jobs.workers` jobs at a time (the process's
    /// job slots) from the shared consumer until `stop`; running jobs then finish, or are
    /// released (NAK) when `hard` fires.
    pub async fn run_workers(
        self: Arc<Self>,
        state: SharedState,
        mut stop: watch::Receiver<bool>,
        hard: watch::Receiver<bool>,
    ) {
        let Some(inner) = self.wait_inner(&mut stop).await else {
            return;
        };
        let queue = Arc::new(Workers { nats: self, inner });
        let slots = state.job_slots().clone();
        crate::jobs::pool::run(queue, &slots, state, stop, hard).await;
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
            let entry = match inner.entry(&key).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => e,
                Ok(_) => {
                    drop_without_record(&msg, &id, "a job message").await;
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
        match settle(state, &mut job, outcome, max_attempts) {
            Settled::Release => {
                // Released to another worker (this attempt does not count).
                let _ = inner.kv.update(&key, job.to_bytes(), revision).await;
                let _ = msg.ack_with(AckKind::Nak(None)).await;
            }
            Settled::Retry(delay) => {
                let _ = inner.kv.update(&key, job.to_bytes(), revision).await;
                let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            }
            Settled::End => self.end(inner, &msg, &key, job, revision).await,
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
                    match inner.entry(key).await {
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

    /// Deliver webhooks from the shared consumer (at most 64 at a time here) until `stop`;
    /// deliveries in flight then finish (each is bounded by `jobs.webhook.timeout`).
    pub async fn run_webhooks(
        self: Arc<Self>,
        state: SharedState,
        jobs: Arc<Jobs>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Some(inner) = self.wait_inner(&mut stop).await else {
            return;
        };
        let slots = Slots::new(64);
        // Nothing cuts a delivery short: the pool's `hard` signal is never looked at.
        let hard = stop.clone();
        crate::jobs::pool::run(Arc::new(Hooks { inner, jobs }), &slots, state, stop, hard).await;
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

pub(super) async fn read_object(inner: &Inner, name: &str) -> Result<Bytes, String> {
    use tokio::io::AsyncReadExt;
    let mut obj = inner.objects.get(name).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    obj.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// Load a result kept in the object store into the record.
pub(super) async fn hydrate(inner: &Inner, job: &mut Job) -> Result<(), StoreError> {
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

pub(super) async fn enqueue_webhook(inner: &Inner, id: &str) -> Result<(), String> {
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

/// A job or webhook message (`what`) whose record `id` is not there: it expired, or its
/// submission failed after publishing — or a read met a stream leader that just changed (a record
/// is always written before its message is published). Dropped once the record was missing on
/// [`MISSING_RECORD_DELIVERIES`] deliveries a second apart; until then redelivered.
async fn drop_without_record(msg: &jetstream::Message, id: &str, what: &str) {
    let delivered = msg.info().map_or(i64::MAX, |i| i.delivered);
    if delivered < MISSING_RECORD_DELIVERIES {
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        return;
    }
    tracing::warn!(job = %id, deliveries = delivered, "{what} without a job record (expired, or its submission failed); dropping it");
    let _ = msg.ack().await;
}

pub(super) async fn handle_hook(
    state: &SharedState,
    jobs: &Jobs,
    inner: &Inner,
    msg: jetstream::Message,
) {
    let id = String::from_utf8_lossy(&msg.payload).into_owned();
    let key = record_key(&id);
    let entry = match inner.entry(&key).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => e,
        Ok(_) => {
            drop_without_record(&msg, &id, "a webhook delivery").await;
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
                match inner.entry(&key).await {
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

/// JetStream as the worker pool's queue (`pool::run`): jobs pulled from the shared consumer.
struct Workers {
    nats: Arc<Nats>,
    inner: Arc<Inner>,
}

impl Queue for Workers {
    type Taken = jetstream::Message;
    const DRAINING: Option<&'static str> =
        Some("job workers stopped taking jobs; waiting for running ones");

    async fn take_jobs(
        &self,
        permits: Vec<OwnedSemaphorePermit>,
        stop: &mut watch::Receiver<bool>,
        start: &mut (dyn FnMut(Self::Taken, OwnedSemaphorePermit) + Send),
    ) -> Flow {
        pull(
            &self.inner.jobs,
            Some(("cannot pull jobs; retrying", "job pull ended with an error")),
            permits,
            stop,
            start,
        )
        .await
    }

    async fn run_job(
        self: Arc<Self>,
        state: SharedState,
        msg: Self::Taken,
        hard: watch::Receiver<bool>,
    ) {
        self.nats.handle_job(&state, &self.inner, msg, hard).await;
    }
}

/// JetStream's webhook stream as a worker pool's queue (`pool::run`): deliveries pulled from the
/// shared consumer.
struct Hooks {
    inner: Arc<Inner>,
    jobs: Arc<Jobs>,
}

impl Queue for Hooks {
    type Taken = jetstream::Message;
    const DRAINING: Option<&'static str> = None;

    async fn take_jobs(
        &self,
        permits: Vec<OwnedSemaphorePermit>,
        stop: &mut watch::Receiver<bool>,
        start: &mut (dyn FnMut(Self::Taken, OwnedSemaphorePermit) + Send),
    ) -> Flow {
        pull(&self.inner.hooks, None, permits, stop, start).await
    }

    async fn run_job(
        self: Arc<Self>,
        state: SharedState,
        msg: Self::Taken,
        _hard: watch::Receiver<bool>,
    ) {
        handle_hook(&state, &self.jobs, &self.inner, msg).await;
    }
}

/// One pull of up to `permits.len()` messages from `consumer`, each started with a permit as it
/// arrives (more than asked for are given back for another worker). `debug`: the debug log
/// lines of a pull that failed and of one that ended with an error (`None`: no log).
async fn pull(
    consumer: &consumer::PullConsumer,
    debug: Option<(&str, &str)>,
    mut permits: Vec<OwnedSemaphorePermit>,
    stop: &mut watch::Receiver<bool>,
    start: &mut (dyn FnMut(jetstream::Message, OwnedSemaphorePermit) + Send),
) -> Flow {
    let batch = consumer
        .batch()
        .max_messages(permits.len())
        .expires(PULL_EXPIRES)
        .messages()
        .await;
    let mut batch = match batch {
        Ok(b) => b,
        Err(e) => {
            drop(permits);
            if let Some((failed, _)) = debug {
                tracing::debug!(error = %e, "{failed}");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return Flow::Stop,
            }
            return Flow::Go;
        }
    };
    // A pull request lost with the connection never ends by itself: bound it here.
    let until = tokio::time::Instant::now() + PULL_EXPIRES + Duration::from_secs(1);
    while let Ok(Some(item)) = tokio::time::timeout_at(until, batch.next()).await {
        let msg = match item {
            Ok(m) => m,
            Err(e) => {
                if let Some((_, ended)) = debug {
                    tracing::debug!(error = %e, "{ended}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        };
        let Some(permit) = permits.pop() else {
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            continue;
        };
        start(msg, permit);
    }
    Flow::Go
}
