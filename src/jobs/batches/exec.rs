//! Running one line, and recording answers in groups.
//!
//! A line runs through the same synchronous pipeline a job does ([`worker::execute`]: routing,
//! fallbacks, the cache, limits, spend, usage, the access log under the line's own request id),
//! with the jobs' rules: a rate limit waits for its `retry-after` (inside `execute`), 5xx and
//! timeouts are tried again after a backoff up to `jobs.max_attempts`, anything else ends it.
//!
//! The [`Recorder`] of a batch takes answers from its lines as they end and writes all those
//! waiting in one group ([`Answers::append`]: one redb transaction, or one JetStream message),
//! telling each line once its group is stored. Lines go on running while a group is written (the
//! runner bounds the lines run but not yet recorded to `batches.concurrency` plus the larger of
//! it and 512), so the fsync or the JetStream round trip is paid once per group, not once per
//! line.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::answers::{Answer, Answers};
use super::output::{failed_line, ok_line, status_of};
use crate::clock::unix_secs;
use crate::jobs::host::SharedHost as SharedState;
use crate::jobs::worker::{Outcome, execute, retry_delay};
use crate::jobs::{Job, JobStatus, StoreError};

/// Most answers written in one group.
const GROUP_MAX: usize = 1024;

/// What a line runs as: the batch's key, endpoint and ids.
pub struct LineRun<'a> {
    pub batch_id: &'a str,
    pub endpoint: &'a str,
    pub owner_id: &'a str,
    pub owner_name: &'a str,
    pub index: u64,
    pub custom_id: &'a str,
    pub model: String,
}

/// The code of a failed line's error (`budget_exceeded` stops the batch).
pub fn error_code(e: &Value) -> Option<&str> {
    e.get("code")
        .and_then(Value::as_str)
        .or_else(|| e.get("type").and_then(Value::as_str))
}

/// Run one line (retrying as a job would) and render its answer. Also the error, when it failed.
pub async fn run_line(state: &SharedState, l: LineRun<'_>, body: Bytes) -> (Answer, Option<Value>) {
    let mut job = Job {
        id: super::line_job_id(l.batch_id, l.index),
        status: JobStatus::Running,
        endpoint: l.endpoint.to_owned(),
        model: l.model,
        caller: l.owner_name.to_owned(),
        caller_id: l.owner_id.to_owned(),
        request_id: crate::ids::random_id("req_"),
        created_at: unix_secs(),
        started_at: Some(unix_secs()),
        finished_at: None,
        attempts: 0,
        result: None,
        error: None,
        webhook: None,
        headers: Vec::new(),
        idempotency_key: None,
        result_in_object_store: false,
        slot: None,
    };
    let max_attempts = state.runtime().config.jobs.max_attempts.max(1);
    let started = std::time::Instant::now();
    loop {
        job.attempts += 1;
        let (line, error) = match execute(state, &job, body.clone()).await {
            Outcome::Succeeded(raw) => (ok_line(&job.id, l.custom_id, &job.request_id, &raw), None),
            Outcome::Failed { retryable, .. } if retryable && job.attempts < max_attempts => {
                let delay = retry_delay(state, job.attempts);
                tracing::info!(job = %job.id, attempts = job.attempts, delay_ms = delay.as_millis() as u64, "batch line attempt failed; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            Outcome::Failed { error, .. } => (
                failed_line(&job.id, l.custom_id, &job.request_id, &error),
                Some(error),
            ),
        };
        // The access log's line for it, as for a request that came over HTTP (the key's name,
        // never the key; no provider or token columns: the request log has them).
        tracing::info!(
            target: "access",
            request_id = %job.request_id,
            method = "POST",
            path = %job.endpoint,
            status = error.as_ref().map_or(200, status_of),
            model = %job.model,
            key = %job.caller,
            batch = %l.batch_id,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        let answer = Answer {
            index: l.index,
            ok: error.is_none(),
            line,
        };
        return (answer, error);
    }
}

type Pending = (Answer, oneshot::Sender<()>);

/// A batch's group writer (a task; it stops when the last handle is dropped).
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Recorder {
    pub fn start(answers: Answers, batch_id: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        crate::tasks::spawn(write_groups(answers, batch_id, rx));
        Self { tx }
    }

    /// Hand an answer over; the receiver fires once it is stored.
    pub fn record(&self, a: Answer) -> Result<oneshot::Receiver<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((a, reply))
            .map_err(|_| StoreError::new("the batch's answer writer stopped"))?;
        Ok(rx)
    }
}

/// Write what waits, in one group, until every sender is gone; a failed write (NATS down) is
/// tried again every second, the lines waiting meanwhile.
async fn write_groups(
    answers: Answers,
    batch_id: String,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let mut group = Vec::new();
    let mut replies = Vec::new();
    while let Some((a, reply)) = rx.recv().await {
        group.push(a);
        replies.push(reply);
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok((a, reply)) => {
                    group.push(a);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        while let Err(e) = answers.append(&batch_id, &group).await {
            tracing::warn!(batch = %batch_id, error = %e, "cannot record batch lines; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        group.clear();
        for r in replies.drain(..) {
            let _ = r.send(());
        }
    }
}
