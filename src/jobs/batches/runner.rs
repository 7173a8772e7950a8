//! Driving batches: a scanner finds unfinished batches and claims them, one task per batch
//! validates its lines, runs them (at most `batches.concurrency` in flight, each also holding
//! one of the process's `jobs.workers` slots), and finalises.
//!
//! Progress is the lines' recorded answers ([`super::answers`], written in groups by
//! [`Recorder`]): after a restart the runner reads which lines have one and runs only the others,
//! so a recorded line never runs again; the lines that were running or not yet recorded at a
//! crash (at most `batches.concurrency` plus the larger of it and 512) run again. The record keeps the live counts, written about twice a second. With NATS a
//! runner holds a lease on the record (renewed with every write); another replica takes a batch
//! over when it expires.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::answers::Answer;
use super::exec::{LineRun, Recorder, error_code, run_line};
use super::lines::{LineReader, Problem, prepare, validate};
use super::output::{Seen, failed_line};
use super::{Batch, BatchStatus, Batches};
use crate::auth::Caller;
use crate::clock::{unix_ms as now_unix_ms, unix_secs as now_unix};
use crate::jobs::StoreError;
use crate::jobs::host::SharedHost as SharedState;

/// How long a runner's claim on a batch holds without being renewed (NATS).
const LEASE_MS: u64 = 15_000;
/// How often progress is written (and the lease renewed).
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// Lines of a batch that may be running or ended without their answer recorded yet, beyond the
/// `batches.concurrency` that may run (or as many again, when more): about the lines that end
/// during one group's fsync (~4 ms on this project's hosts) at ~100k lines/s, so lines need not
/// wait for the writer. (The bound was twice the concurrency: 128 lines per ~4 ms fsync capped a batch of
/// concurrency 64 at ~32k lines/s.)
const ENDED_UNRECORDED: usize = 512;
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
            // Cancelled before its lines were counted and checked: they are, so that the
            // output still holds one line per input line (each `batch_cancelled`).
            BatchStatus::Cancelling if d.batch.in_progress_at.is_none() => {
                validating(&mut d).await?;
            }
            BatchStatus::InProgress | BatchStatus::Cancelling => running(&mut d).await?,
            BatchStatus::Finalizing => {
                super::output::finalize(state, batches, &mut d.batch).await?;
                d.save_retrying().await?;
                if let Err(e) = batches.answers.forget(&d.batch.id).await {
                    tracing::warn!(batch = %d.batch.id, error = %e, "cannot drop the batch's recorded answers");
                }
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
    let v = validate(
        tokio::io::BufReader::with_capacity(64 * 1024, reader),
        &d.batch.endpoint,
        d.state.runtime(),
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

/// Fires once a line's answer is stored.
type Stored = oneshot::Receiver<()>;

/// How a line ended: answered 2xx or not, and whether its key's budget ran out.
struct Ended {
    ok: bool,
    budget: bool,
}

/// Which lines of `b` have a recorded answer, and how many of those answered 2xx / not.
async fn recorded(batches: &Batches, b: &Batch) -> Result<(Seen, u64, u64), StoreError> {
    let mut seen = Seen::new(b.total);
    let (mut ok, mut failed) = (0, 0);
    let mut cursor = batches.answers.cursor(&b.id);
    while let Some(group) = cursor.next().await? {
        for e in group {
            if seen.insert(e.index) {
                if e.ok {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    Ok((seen, ok, failed))
}

/// A line that fails without running (it was valid when checked, but cannot be read now): its
/// error line.
fn refused(batch_id: &str, index: u64, (code, message): Problem) -> Answer {
    let error = serde_json::json!({"message": message, "type": "invalid_request_error", "param": null, "code": code});
    Answer {
        index,
        ok: false,
        line: failed_line(&super::line_job_id(batch_id, index), "", "", &error),
    }
}

/// What every line of a running batch shares.
struct Ctx {
    state: SharedState,
    slots: Arc<crate::slots::Slots>,
    recorder: Recorder,
    batch_id: String,
    endpoint: String,
    owner_id: String,
    owner_name: String,
}

/// One line: its body taken from the line (on a worker thread, not the runner's), run with one
/// of the process's job slots, and its answer handed to the recorder.
async fn line_task(
    ctx: Arc<Ctx>,
    index: u64,
    text: Option<Vec<u8>>,
) -> Result<(Ended, Stored), StoreError> {
    let prepared = match text {
        Some(t) => prepare(t),
        None => Err((
            "request_too_large",
            "this line is longer than the gateway's server.max_body_size".to_owned(),
        )),
    };
    let (answer, ended) = match prepared {
        Ok(p) => {
            let permit = ctx.slots.acquire().await;
            let run = LineRun {
                batch_id: &ctx.batch_id,
                endpoint: &ctx.endpoint,
                owner_id: &ctx.owner_id,
                owner_name: &ctx.owner_name,
                index,
                custom_id: &p.custom_id,
                model: p.model,
            };
            let (answer, error) = run_line(&ctx.state, run, p.body).await;
            drop(permit);
            let ended = Ended {
                ok: answer.ok,
                budget: error.as_ref().and_then(error_code) == Some("budget_exceeded"),
            };
            (answer, ended)
        }
        Err(p) => (
            refused(&ctx.batch_id, index, p),
            Ended {
                ok: false,
                budget: false,
            },
        ),
    };
    Ok((ended, ctx.recorder.record(answer)?))
}

async fn running(d: &mut Driver<'_>) -> Result<(), Lost> {
    if caller(d.state, &d.batch).await?.is_none() {
        d.batch.stop = Some("invalid_api_key".into());
        d.batch.status = BatchStatus::Finalizing;
        d.batch.finalizing_at = Some(now_unix());
        return d.save_retrying().await;
    }
    let (seen, ok, failed) = recorded(d.batches, &d.batch).await?;
    d.batch.completed = ok;
    d.batch.failed = failed;
    let conc = d.state.runtime().config.batches.concurrency.max(1) as usize;
    let ctx = Arc::new(Ctx {
        state: d.state.clone(),
        slots: d.state.job_slots().clone(),
        recorder: Recorder::start(d.batches.answers.clone(), d.batch.id.clone()),
        batch_id: d.batch.id.clone(),
        endpoint: d.batch.endpoint.clone(),
        owner_id: d.batch.owner_id.clone(),
        owner_name: d.batch.owner_name.clone(),
    });
    let mut input = LineReader::new(
        tokio::io::BufReader::with_capacity(64 * 1024, open_input(d.batches, &d.batch).await?),
        line_cap(d.state),
    );
    // Lines running, and lines ended whose answer is being written: at most `conc` running and
    // `window` not yet recorded (those run again after a crash).
    let window = conc + conc.max(ENDED_UNRECORDED);
    let mut tasks: JoinSet<Result<(Ended, Stored), StoreError>> = JoinSet::new();
    let mut recording = FuturesUnordered::new();
    let mut eof = false;
    let mut save = tokio::time::interval(SAVE_EVERY);
    save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    save.tick().await;
    loop {
        if d.batch.stop.is_none() && now_unix() >= d.batch.expires_at {
            d.batch.stop = Some("batch_expired".into());
        }
        let stopping = d.batch.status == BatchStatus::Cancelling || d.batch.stop.is_some();
        while !stopping && !eof && tasks.len() < conc && tasks.len() + recording.len() < window {
            let Some(line) = input.next().await.map_err(StoreError::new)? else {
                eof = true;
                break;
            };
            if seen.contains(line.index) {
                continue;
            }
            tasks.spawn(line_task(ctx.clone(), line.index, line.text));
        }
        if tasks.is_empty() && recording.is_empty() && (stopping || eof) {
            if d.batch.status == BatchStatus::Cancelling && d.batch.stop.is_none() {
                d.batch.stop = Some("batch_cancelled".into());
            }
            d.batch.status = BatchStatus::Finalizing;
            d.batch.finalizing_at = Some(now_unix());
            return d.save_retrying().await;
        }
        tokio::select! {
            Some(r) = tasks.join_next() => {
                let (e, stored) = match r {
                    Ok(r) => r?,
                    Err(e) => return Err(StoreError::new(format!("a batch line stopped: {e}")).into()),
                };
                if e.budget && d.batch.stop.is_none() {
                    d.batch.stop = Some("budget_exceeded".into());
                }
                recording.push(async move {
                    stored
                        .await
                        .map(|()| e)
                        .map_err(|_| StoreError::new("the batch's answer writer stopped"))
                });
            }
            Some(r) = recording.next() => {
                let e = r?;
                if e.ok {
                    d.batch.completed += 1;
                } else {
                    d.batch.failed += 1;
                }
                let status = if e.ok { "succeeded" } else { "failed" };
                metrics::counter!(crate::metrics::BATCH_LINES, "status" => status).increment(1);
            }
            _ = save.tick() => match d.save().await {
                Ok(()) => {}
                Err(Lost::Lease) => return Err(Lost::Lease),
                Err(Lost::Store(e)) => {
                    tracing::debug!(batch = %d.batch.id, error = %e, "cannot write batch progress");
                }
            },
        }
    }
}
