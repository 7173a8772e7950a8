//! Driving batches: a scanner finds unfinished batches and claims them, one task per batch
//! validates its lines, submits them as jobs (at most `batches.concurrency` in flight), follows
//! them to their end, and finalises.
//!
//! Progress is kept in the record as a watermark: every line below `next_line` has ended, and
//! `done_completed`/`done_failed` count them; lines at or above it were submitted with a
//! derived job id and an `Idempotency-Key`, so after a restart the runner submits the window
//! again (replays, nothing runs twice) and reads their state. With NATS a runner holds a lease on
//! the record (renewed with every write); another replica takes a batch over when it expires.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::lines::{LineReader, check, validate};
use super::{Batch, BatchStatus, Batches, line_job_id};
use crate::auth::Caller;
use crate::clock::{unix_ms as now_unix_ms, unix_secs as now_unix};
use crate::jobs::host::SharedHost as SharedState;
use crate::jobs::{Job, JobStatus, NewJob, StoreError};

/// How long a runner's claim on a batch holds without being renewed (NATS).
const LEASE_MS: u64 = 15_000;
/// How often progress is written (and the lease renewed).
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// How often a runner reads the state of all its lines in flight (besides those it saw end).
const FULL_POLL_EVERY: Duration = Duration::from_millis(200);
/// How often the scanner looks for unclaimed batches.
const SCAN_EVERY: Duration = Duration::from_secs(2);

/// Run the scanner until `stop`; batch tasks stop with it (their records stay, and the next
/// start or another replica continues them).
pub async fn run(state: SharedState, batches: Arc<Batches>, mut stop: watch::Receiver<bool>) {
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        match batches.records.list().await {
            Ok(list) => {
                let now = now_unix_ms();
                for b in list {
                    if b.status.is_terminal()
                        || running.lock().map(|r| r.contains(&b.id)).unwrap_or(true)
                        || (batches.shared() && b.lease_owner != batches.me && b.lease_until > now)
                    {
                        continue;
                    }
                    if let Ok(mut r) = running.lock() {
                        r.insert(b.id.clone());
                    }
                    let (state, batches, running, id) = (
                        state.clone(),
                        batches.clone(),
                        running.clone(),
                        b.id.clone(),
                    );
                    tasks.spawn(async move {
                        if let Err(e) = drive(&state, &batches, &id).await {
                            tracing::warn!(batch = %id, error = %e, "batch runner stopped; it is taken up again");
                        }
                        if let Ok(mut r) = running.lock() {
                            r.remove(&id);
                        }
                    });
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot list batches"),
        }
        tokio::select! {
            () = batches.wake.notified() => {}
            () = tokio::time::sleep(SCAN_EVERY) => {}
            _ = stop.changed() => break,
        }
    }
    tasks.shutdown().await;
}

/// A batch being driven: its record and revision, written through [`Driver::save`].
struct Driver<'a> {
    state: &'a SharedState,
    batches: &'a Batches,
    batch: Batch,
    rev: u64,
}

#[derive(Debug)]
enum Lost {
    /// Another process holds the batch.
    Lease,
    Store(StoreError),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lease => f.write_str("another process holds the batch"),
            Self::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for Lost {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Driver<'_> {
    /// Write the record (renewing the lease); on a conflict take a cancel made meanwhile and
    /// write again, or give up when another process took the batch.
    async fn save(&mut self) -> Result<(), Lost> {
        loop {
            self.batch.lease_owner.clone_from(&self.batches.me);
            self.batch.lease_until = now_unix_ms() + LEASE_MS;
            if let Some(rev) = self.batches.records.update(&self.batch, self.rev).await? {
                self.rev = rev;
                return Ok(());
            }
            let Some((cur, rev)) = self.batches.records.get(&self.batch.id).await? else {
                return Err(Lost::Lease);
            };
            if self.batches.shared()
                && cur.lease_owner != self.batches.me
                && cur.lease_until > now_unix_ms()
            {
                return Err(Lost::Lease);
            }
            if cur.status == BatchStatus::Cancelling
                && matches!(
                    self.batch.status,
                    BatchStatus::InProgress | BatchStatus::Validating
                )
            {
                self.batch.status = BatchStatus::Cancelling;
                self.batch.cancelling_at = cur.cancelling_at;
            }
            self.rev = rev;
        }
    }

    /// Save, retrying store failures (NATS down) every second.
    async fn save_retrying(&mut self) -> Result<(), Lost> {
        loop {
            match self.save().await {
                Err(Lost::Store(e)) => {
                    tracing::debug!(batch = %self.batch.id, error = %e, "cannot write the batch; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }
}

/// Drive one batch until it ends (or another process takes it).
async fn drive(state: &SharedState, batches: &Batches, id: &str) -> Result<(), Lost> {
    let Some((batch, rev)) = batches.records.get(id).await? else {
        return Ok(());
    };
    let mut d = Driver {
        state,
        batches,
        batch,
        rev,
    };
    // Claim it.
    d.save().await?;
    loop {
        match d.batch.status {
            BatchStatus::Validating => validating(&mut d).await?,
            BatchStatus::InProgress | BatchStatus::Cancelling => running(&mut d).await?,
            BatchStatus::Finalizing => {
                super::output::finalize(state, batches, &mut d.batch).await?;
                d.save_retrying().await?;
                tracing::info!(batch = %d.batch.id, status = d.batch.status.as_str(), total = d.batch.total, completed = d.batch.completed, failed = d.batch.failed, "batch ended");
            }
            _ => return Ok(()),
        }
    }
}

/// The key a batch runs as (`None`: gone, revoked or expired).
async fn caller(state: &SharedState, b: &Batch) -> Result<Option<Caller>, StoreError> {
    state
        .keys()
        .caller_by_id(&state.runtime().auth, &b.owner_id)
        .await
        .map_err(|e| StoreError::new(e.client_message()))
}

async fn open_input(
    batches: &Batches,
    b: &Batch,
) -> Result<crate::jobs::files::Reader, StoreError> {
    batches
        .files
        .open(&b.input_file_id)
        .await?
        .ok_or_else(|| StoreError::new("the input file is gone"))
}

fn line_cap(state: &SharedState) -> usize {
    usize::try_from(state.runtime().config.server.max_body_size.0)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024)
}

fn fail(b: &mut Batch, code: &str, message: String) {
    b.status = BatchStatus::Failed;
    b.failed_at = Some(now_unix());
    b.errors = Some(vec![
        serde_json::json!({"code": code, "message": message, "param": null, "line": null}),
    ]);
}

async fn validating(d: &mut Driver<'_>) -> Result<(), Lost> {
    let caller = match caller(d.state, &d.batch).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            fail(
                &mut d.batch,
                "invalid_api_key",
                "the key that created this batch no longer exists, is revoked or expired".into(),
            );
            return d.save_retrying().await;
        }
        Err(e) => return Err(e.into()),
    };
    let reader = match d.batches.files.open(&d.batch.input_file_id).await? {
        Some(r) => r,
        None => {
            fail(
                &mut d.batch,
                "file_not_found",
                "the input file is gone".into(),
            );
            return d.save_retrying().await;
        }
    };
    let rt = d.state.runtime();
    let v = validate(
        tokio::io::BufReader::with_capacity(64 * 1024, reader),
        &d.batch.endpoint,
        &rt,
        &caller,
    )
    .await
    .map_err(|e| StoreError::new(format!("reading the input file: {e}")))?;
    d.batch.total = v.total;
    if v.errors.is_empty() {
        d.batch.status = if d.batch.status == BatchStatus::Cancelling {
            BatchStatus::Cancelling
        } else {
            BatchStatus::InProgress
        };
        d.batch.in_progress_at = Some(now_unix());
    } else {
        tracing::info!(batch = %d.batch.id, invalid = v.errors.len(), "batch failed validation");
        d.batch.status = BatchStatus::Failed;
        d.batch.failed_at = Some(now_unix());
        d.batch.errors = Some(v.errors);
    }
    d.save_retrying().await
}

/// A line in flight.
struct Slot {
    job_id: String,
    /// `Some(true)`: answered 2xx; `Some(false)`: failed; counted once ended.
    ended: Option<bool>,
    /// Cancelled before it ran (counted in neither).
    skipped: bool,
}

/// The line's job: its body as validated, run as the batch's key.
fn line_job(b: &Batch, index: u64, model: String) -> Job {
    Job {
        id: line_job_id(&b.id, index),
        status: JobStatus::Queued,
        endpoint: b.endpoint.clone(),
        model,
        caller: b.owner_name.clone(),
        caller_id: b.owner_id.clone(),
        request_id: crate::ids::random_id("req_"),
        created_at: now_unix(),
        started_at: None,
        finished_at: None,
        attempts: 0,
        result: None,
        error: None,
        webhook: None,
        headers: Vec::new(),
        idempotency_key: Some(format!("{} line {index}", b.id)),
        result_in_object_store: false,
        slot: None,
    }
}

fn error_code(job: &Job) -> Option<&str> {
    let e = job.error.as_ref()?;
    e.get("code")
        .and_then(Value::as_str)
        .or_else(|| e.get("type").and_then(Value::as_str))
}

async fn running(d: &mut Driver<'_>) -> Result<(), Lost> {
    let Some(jobs) = d.state.jobs() else {
        return Err(StoreError::new("the job system is not running").into());
    };
    let Some(caller) = caller(d.state, &d.batch).await? else {
        d.batch.stop = Some("invalid_api_key".into());
        d.batch.status = BatchStatus::Finalizing;
        d.batch.finalizing_at = Some(now_unix());
        return d.save_retrying().await;
    };
    let conc = d.state.runtime().config.batches.concurrency.max(1) as u64;
    let ttl = d.state.runtime().config.jobs.result_ttl.get();
    let mut input = LineReader::new(
        tokio::io::BufReader::with_capacity(64 * 1024, open_input(d.batches, &d.batch).await?),
        line_cap(d.state),
    );
    let mut window: VecDeque<Slot> = VecDeque::new();
    let mut next_submit = d.batch.next_line;
    // Skip to the watermark.
    if d.batch.next_line > 0 {
        loop {
            match input.next().await {
                Ok(Some(l)) if l.index + 1 >= d.batch.next_line => break,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(StoreError::new(e).into()),
            }
        }
    }
    let mut cancelled_queued = false;
    let mut last_save = tokio::time::Instant::now();
    let mut ended_here: Vec<&'static str> = Vec::new();
    let mut to_submit: Vec<(Job, bytes::Bytes)> = Vec::new();
    let mut ended_rx = crate::jobs::JOB_ENDED.subscribe();
    let mut ended_ids: HashSet<String> = HashSet::new();
    let mut full_poll = true;
    let mut last_full = tokio::time::Instant::now();
    loop {
        let now = now_unix();
        if d.batch.stop.is_none() && now >= d.batch.expires_at {
            d.batch.stop = Some("batch_expired".into());
        }
        let stopping = d.batch.status == BatchStatus::Cancelling || d.batch.stop.is_some();
        if stopping && !cancelled_queued {
            // Queued lines are cancelled; running ones finish.
            for s in window.iter_mut().filter(|s| s.ended.is_none()) {
                if let Ok(crate::jobs::Cancel::Cancelled(_)) =
                    jobs.queue.cancel(&s.job_id, &caller, ttl).await
                {
                    s.skipped = true;
                }
            }
            cancelled_queued = true;
        }
        // Fill the window. After a restart the first `conc` lines above the watermark may be in
        // the queue already: their submission replays.
        while !stopping && (window.len() as u64) < conc && next_submit < d.batch.total {
            let line = match input.next().await {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => return Err(StoreError::new(e).into()),
            };
            let rt = d.state.runtime();
            let checked = line
                .text
                .as_deref()
                .ok_or_else(|| ("request_too_large", String::new()))
                .and_then(|t| check(t, &d.batch.endpoint, &rt, &caller));
            let job_id = line_job_id(&d.batch.id, line.index);
            let ended = match checked {
                Ok(c) => {
                    to_submit.push((line_job(&d.batch, line.index, c.model), c.body));
                    None
                }
                // The key lost a model since validation: the line fails without running (the
                // output writer reports it from the missing job).
                Err(_) => Some(false),
            };
            window.push_back(Slot {
                job_id,
                ended,
                skipped: false,
            });
            next_submit = line.index + 1;
        }
        // Submitted together, so the embedded store commits them in one transaction.
        while !to_submit.is_empty() {
            let results = futures_util::future::join_all(to_submit.iter().map(|(job, body)| {
                jobs.queue.submit(NewJob {
                    job: job.clone(),
                    body: body.clone(),
                })
            }))
            .await;
            let mut failed = Vec::new();
            for (item, r) in to_submit.drain(..).zip(results) {
                if let Err(e) = r {
                    tracing::debug!(batch = %d.batch.id, error = %e, "cannot submit a line; retrying");
                    failed.push(item);
                }
            }
            to_submit = failed;
            if !to_submit.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // After a restart while stopping: the lines already in the queue are still followed.
        if stopping && window.is_empty() && next_submit == d.batch.next_line {
            let mut i = d.batch.next_line;
            while i < d.batch.total && i < d.batch.next_line + conc {
                let job_id = line_job_id(&d.batch.id, i);
                if jobs.queue.get(&job_id).await?.is_some() {
                    window.push_back(Slot {
                        job_id,
                        ended: None,
                        skipped: false,
                    });
                    i += 1;
                } else {
                    break;
                }
            }
            next_submit = i;
            cancelled_queued = false;
            if !window.is_empty() {
                continue;
            }
        }
        // Follow the lines in flight: those this process saw end, and all of them now and then
        // (lines run by another replica, a lagging listener).
        loop {
            match ended_rx.try_recv() {
                Ok(id) => {
                    ended_ids.insert(id);
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => full_poll = true,
                Err(_) => break,
            }
        }
        if last_full.elapsed() >= FULL_POLL_EVERY {
            full_poll = true;
        }
        let to_poll: Vec<usize> = window
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ended.is_none() && (full_poll || ended_ids.contains(&s.job_id)))
            .map(|(i, _)| i)
            .collect();
        if full_poll {
            last_full = tokio::time::Instant::now();
        }
        full_poll = false;
        ended_ids.clear();
        let got = if to_poll.is_empty() {
            Ok(Vec::new())
        } else {
            jobs.queue
                .get_many(to_poll.iter().map(|&i| window[i].job_id.clone()).collect())
                .await
        };
        let got = match got {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(batch = %d.batch.id, error = %e, "cannot read the lines' jobs");
                full_poll = true;
                Vec::new()
            }
        };
        for (i, r) in to_poll.into_iter().zip(got) {
            let s = &mut window[i];
            match r {
                Some(job) if job.status.is_terminal() => {
                    let ok = job.status == JobStatus::Succeeded;
                    if job.status == JobStatus::Cancelled {
                        s.skipped = true;
                    }
                    if !ok && error_code(&job) == Some("budget_exceeded") && d.batch.stop.is_none()
                    {
                        d.batch.stop = Some("budget_exceeded".into());
                    }
                    s.ended = Some(ok);
                    if !s.skipped {
                        ended_here.push(if ok { "succeeded" } else { "failed" });
                    }
                }
                _ => {}
            }
        }
        for status in ended_here.drain(..) {
            metrics::counter!(crate::metrics::BATCH_LINES, "status" => status).increment(1);
        }
        while let Some(front) = window.front() {
            let Some(ok) = front.ended else { break };
            if !front.skipped {
                if ok {
                    d.batch.done_completed += 1;
                } else {
                    d.batch.done_failed += 1;
                }
            }
            window.pop_front();
            d.batch.next_line += 1;
        }
        let (mut c, mut f) = (d.batch.done_completed, d.batch.done_failed);
        for s in window.iter().filter(|s| !s.skipped) {
            match s.ended {
                Some(true) => c += 1,
                Some(false) => f += 1,
                None => {}
            }
        }
        d.batch.completed = c;
        d.batch.failed = f;
        let finished = window.is_empty() && (stopping || next_submit >= d.batch.total);
        if finished {
            if d.batch.status == BatchStatus::Cancelling && d.batch.stop.is_none() {
                d.batch.stop = Some("batch_cancelled".into());
            }
            d.batch.status = BatchStatus::Finalizing;
            d.batch.finalizing_at = Some(now_unix());
            d.batch.next_line = d.batch.next_line.max(next_submit);
            return d.save_retrying().await;
        }
        if last_save.elapsed() >= SAVE_EVERY {
            match d.save().await {
                Ok(()) => {}
                Err(Lost::Lease) => return Err(Lost::Lease),
                Err(Lost::Store(e)) => {
                    tracing::debug!(batch = %d.batch.id, error = %e, "cannot write batch progress");
                }
            }
            last_save = tokio::time::Instant::now();
        }
        if window.iter().all(|s| s.ended.is_some())
            && !stopping
            && (window.len() as u64) < conc
            && next_submit < d.batch.total
        {
            continue;
        }
        match tokio::time::timeout(FULL_POLL_EVERY, ended_rx.recv()).await {
            Ok(Ok(id)) => {
                ended_ids.insert(id);
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => full_poll = true,
            Ok(Err(_)) | Err(_) => full_poll = true,
        }
    }
}
