//! The worker pool, one loop for both backends: up to as many items at a time as `slots` allows
//! (for jobs the process's job slots, `jobs.workers`), taken from a [`Queue`] until `stop`;
//! running ones then finish, or (jobs) are given back when `hard` fires (the shutdown grace
//! passed). JetStream's webhook deliveries run in it too. What becomes of a job after a run is
//! decided once, by [`settle`]; each backend records it its own way (the embedded store's queue
//! table, or JetStream's acknowledgements and the KV record).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;

use super::worker::{Outcome, retry_delay};
use super::{Job, JobStatus};
use crate::jobs::host::SharedHost as SharedState;
use crate::slots::Slots;

/// Most jobs asked for at once.
const MOST_AT_ONCE: usize = 256;

/// Whether the pool goes on taking jobs.
pub enum Flow {
    Go,
    Stop,
}

/// Where a pool's work comes from: jobs from the embedded store or JetStream, webhook
/// deliveries from JetStream.
pub trait Queue: Send + Sync + 'static {
    /// A job taken from the queue, as the backend hands it over.
    type Taken: Send + 'static;

    /// The log line when the pool stops with work still running (`None`: none).
    const DRAINING: Option<&'static str>;

    /// Take up to `permits.len()` jobs, and `start` each with a permit as it comes; the permits
    /// not used are dropped (before waiting for work, so the slots are free meanwhile).
    /// `Flow::Stop` when `stop` fired while waiting.
    fn take_jobs(
        &self,
        permits: Vec<OwnedSemaphorePermit>,
        stop: &mut watch::Receiver<bool>,
        start: &mut (dyn FnMut(Self::Taken, OwnedSemaphorePermit) + Send),
    ) -> impl Future<Output = Flow> + Send;

    /// Run one taken job and record how it went (see [`settle`]).
    fn run_job(
        self: Arc<Self>,
        state: SharedState,
        taken: Self::Taken,
        hard: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send;
}

/// Run `queue`'s work, as much at a time as `slots` allows, until `stop`; then wait for what
/// runs.
pub async fn run<Q: Queue>(
    queue: Arc<Q>,
    slots: &Slots,
    state: SharedState,
    mut stop: watch::Receiver<bool>,
    hard: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
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
        while permits.len() < MOST_AT_ONCE {
            match slots.try_acquire() {
                Some(p) => permits.push(p),
                None => break,
            }
        }
        let mut start = |taken: Q::Taken, permit: OwnedSemaphorePermit| {
            let job = queue.clone().run_job(state.clone(), taken, hard.clone());
            tasks.spawn(async move {
                job.await;
                drop(permit);
            });
        };
        if let Flow::Stop = queue.take_jobs(permits, &mut stop, &mut start).await {
            break;
        }
    }
    let running = tasks.len();
    if let Some(line) = Q::DRAINING
        && running > 0
    {
        tracing::info!(running, "{line}");
    }
    while tasks.join_next().await.is_some() {}
}

/// What becomes of a job after a run.
pub enum Settled {
    /// The shutdown grace passed while it ran: back to the queue now, the attempt not counted.
    Release,
    /// A retryable failure with attempts left: back to the queue, due after this delay.
    Retry(Duration),
    /// It ended (succeeded, or failed for good): its result or error is set.
    End,
}

/// Settle `job` after one run (`None`: the shutdown grace passed first), with `max_attempts`
/// attempts allowed. The job is changed to match: its status, attempts, result or error.
pub fn settle(
    state: &SharedState,
    job: &mut Job,
    outcome: Option<Outcome>,
    max_attempts: u32,
) -> Settled {
    match outcome {
        None => {
            job.status = JobStatus::Queued;
            job.attempts = job.attempts.saturating_sub(1);
            Settled::Release
        }
        Some(Outcome::Succeeded(raw)) => {
            job.finish(JobStatus::Succeeded, Some(raw), None);
            Settled::End
        }
        Some(Outcome::Failed { error, retryable }) if retryable && job.attempts < max_attempts => {
            let delay = retry_delay(state, job.attempts);
            tracing::info!(job = %job.id, attempts = job.attempts, delay_ms = delay.as_millis() as u64, "job attempt failed; retrying");
            job.status = JobStatus::Queued;
            job.error = Some(error);
            Settled::Retry(delay)
        }
        Some(Outcome::Failed { error, .. }) => {
            job.finish(JobStatus::Failed, None, Some(error));
            Settled::End
        }
    }
}
