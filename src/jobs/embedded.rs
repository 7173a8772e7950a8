//! The embedded job store: one redb file, `DATA_DIR/jobs.redb`, for a single gateway process.
//!
//! Every write goes to one writer thread that takes all waiting operations, applies them in one
//! transaction and commits it (fsync) before answering any of them: group commit, so a 202 is
//! sent only once its job is on disk, at thousands of submissions per second. Reads run on
//! tokio's blocking pool against redb's MVCC snapshots. The queue itself is a table ordered by
//! (due time, sequence), read from the front a batch at a time, so memory does not grow with
//! queue depth.
//!
//! Tables: `records` (id → job JSON), `bodies` (id → request body, removed when the job ends),
//! `queue` ((due ms, seq) → id), `running` (ids being run: re-queued at start after a crash),
//! `idempotency` (key id NUL Idempotency-Key → id), `expiry` ((ms, id): records to drop after
//! `jobs.result_ttl`), `webhooks` ((due ms, id): pending deliveries), `meta`.

mod queue;
mod writer;

use std::any::Any;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;

use bytes::Bytes;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use tokio::sync::{Notify, oneshot};

use super::{Cancel, Job, JobStatus, NewJob, StoreError, Submitted, WebhookStatus};
use crate::auth::Caller;
use crate::clock::unix_ms;
use crate::config::Config;
use queue::end_job;
use writer::{Cmd, Op, writer};

pub(super) const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("bodies");
const QUEUE: TableDefinition<(u64, u64), &str> = TableDefinition::new("queue");
const RUNNING: TableDefinition<&str, ()> = TableDefinition::new("running");
pub(super) const IDEM: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
const WEBHOOKS: TableDefinition<(u64, &str), ()> = TableDefinition::new("webhooks");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// redb's page cache: bounded, so RSS does not follow the queue depth.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

pub struct Embedded {
    db: Arc<Database>,
    tx: mpsc::Sender<Cmd>,
    next_seq: AtomicU64,
    /// Jobs waiting in the queue table (the `ai_gateway_jobs_queued` gauge).
    queued: AtomicI64,
    /// Woken when a job is queued.
    pub work: Notify,
    /// Woken when a webhook is scheduled.
    pub webhook_work: Notify,
    pub path: PathBuf,
}

/// An `Idempotency-Key` in the scope of the key (by its id) that sent it.
pub(super) fn scoped_idem(owner_id: &str, key: &str) -> String {
    format!("{owner_id}\u{0}{key}")
}

pub(super) fn read_job(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Job>, redb::Error> {
    Ok(t.get(id)?.and_then(|v| Job::from_slice(v.value())))
}

impl Embedded {
    /// Open (or create) the store, re-queue jobs that were running when the last process
    /// stopped, and start the writer thread.
    pub async fn open(cfg: &Config) -> Result<Arc<Self>, String> {
        let dir = PathBuf::from(&cfg.state.data_dir);
        let max_attempts = cfg.jobs.max_attempts;
        let ttl_ms = u64::try_from(cfg.jobs.result_ttl.get().as_millis()).unwrap_or(u64::MAX);
        let path = dir.join("jobs.redb");
        let p2 = path.clone();
        let auth = crate::auth::Auth::from_config(cfg.auth.as_ref())?;
        let (db, seq, queued) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("state.data_dir {}: cannot create it: {e}", dir.display()))?;
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&p2)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => format!(
                        "{}: the job store is in use by another ai-gateway process; give each process its own state.data_dir, or use state.nats_url to share jobs",
                        p2.display()
                    ),
                    other => format!("{}: cannot open the job store: {other}", p2.display()),
                })?;
            let (seq, queued) = recover(&db, max_attempts, ttl_ms, &auth)
                .map_err(|e| format!("{}: cannot recover the job store: {e}", p2.display()))?;
            Ok::<_, String>((Arc::new(db), seq, queued))
        })
        .await
        .map_err(|e| format!("job store: {e}"))??;
        let (tx, rx) = mpsc::channel();
        let wdb = db.clone();
        std::thread::Builder::new()
            .name("jobs-store-writer".into())
            .spawn(move || writer(wdb, rx))
            .map_err(|e| format!("cannot start the job store writer: {e}"))?;
        metrics::gauge!(crate::metrics::JOBS_QUEUED).set(queued as f64);
        tracing::info!(path = %path.display(), queued, "embedded job store open");
        Ok(Arc::new(Self {
            db,
            tx,
            next_seq: AtomicU64::new(seq),
            queued: AtomicI64::new(queued),
            work: Notify::new(),
            webhook_work: Notify::new(),
            path,
        }))
    }

    fn adjust_queued(&self, delta: i64) {
        let v = self.queued.fetch_add(delta, Ordering::Relaxed) + delta;
        metrics::gauge!(crate::metrics::JOBS_QUEUED).set(v.max(0) as f64);
    }

    fn seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Run `f` in the next committed batch; its value once the batch is on disk.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let op: Op = Box::new(move |txn| f(txn).map(|v| Box::new(v) as Box<dyn Any + Send>));
        self.tx
            .send(Cmd { op, reply })
            .map_err(|_| StoreError::new("the job store writer stopped"))?;
        let v = rx
            .await
            .map_err(|_| StoreError::new("the job store writer stopped"))??;
        v.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StoreError::new("internal: job store reply type"))
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(redb::Error::from)?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::new(format!("job store read: {e}")))?
        .map_err(|e| StoreError::new(format!("job store read: {e}")))
    }

    pub async fn submit(&self, new: NewJob) -> Result<Submitted, StoreError> {
        let NewJob { mut job, body } = new;
        let slot = (unix_ms(), self.seq());
        job.slot = Some(slot);
        let out = self
            .write(move |txn| {
                let mut records = txn.open_table(RECORDS)?;
                if let Some(k) = &job.idempotency_key {
                    let mut idem = txn.open_table(IDEM)?;
                    let scoped = scoped_idem(&job.caller_id, k);
                    let existing = idem.get(scoped.as_str())?.map(|v| v.value().to_owned());
                    if let Some(id) = existing
                        && let Some(j) = read_job(&records, &id)?
                    {
                        return Ok(Submitted {
                            job: j,
                            replayed: true,
                        });
                    }
                    idem.insert(scoped.as_str(), job.id.as_str())?;
                }
                records.insert(job.id.as_str(), job.to_bytes().as_ref())?;
                txn.open_table(BODIES)?
                    .insert(job.id.as_str(), body.as_ref())?;
                txn.open_table(QUEUE)?.insert(slot, job.id.as_str())?;
                Ok(Submitted {
                    job,
                    replayed: false,
                })
            })
            .await?;
        if !out.replayed {
            self.adjust_queued(1);
            self.work.notify_one();
        }
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_owned();
        self.read(move |txn| {
            let t = txn.open_table(RECORDS)?;
            read_job(&t, &id)
        })
        .await
    }

    /// Up to `n` webhook deliveries due now (skipping those in `busy`), and the next due time.
    pub async fn webhooks_due(
        &self,
        n: usize,
        busy: HashSet<String>,
    ) -> Result<(Vec<(u64, Job)>, Option<u64>), StoreError> {
        let now = unix_ms();
        self.read(move |txn| {
            let hooks = txn.open_table(WEBHOOKS)?;
            let records = txn.open_table(RECORDS)?;
            let mut out = Vec::new();
            let mut next = None;
            for item in hooks.iter()? {
                let (k, _) = item?;
                let (due, id) = k.value();
                if due > now || out.len() >= n {
                    next = Some(due);
                    break;
                }
                if busy.contains(id) {
                    continue;
                }
                if let Some(job) = read_job(&records, id)? {
                    out.push((due, job));
                }
            }
            Ok((out, next))
        })
        .await
    }

    /// Record a delivery attempt: the job's new webhook state, and the next due time if another
    /// attempt follows.
    pub async fn webhook_done(
        &self,
        id: &str,
        old_due: u64,
        state: super::WebhookState,
        next_due: Option<u64>,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |txn| {
            let mut hooks = txn.open_table(WEBHOOKS)?;
            hooks.remove((old_due, id.as_str()))?;
            let mut records = txn.open_table(RECORDS)?;
            if let Some(mut job) = read_job(&records, &id)? {
                job.webhook = Some(state);
                records.insert(id.as_str(), job.to_bytes().as_ref())?;
                if let Some(d) = next_due {
                    hooks.insert((d, id.as_str()), ())?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Drop records whose `result_ttl` passed (and their idempotency keys). How many.
    pub async fn expire(&self) -> Result<usize, StoreError> {
        let now = unix_ms();
        self.write(move |txn| {
            let mut exp = txn.open_table(EXPIRY)?;
            let mut due = Vec::new();
            for item in exp.iter()? {
                let (k, _) = item?;
                let (at, id) = k.value();
                if at > now || due.len() >= 1000 {
                    break;
                }
                due.push((at, id.to_owned()));
            }
            let mut records = txn.open_table(RECORDS)?;
            let mut idem = txn.open_table(IDEM)?;
            let mut hooks = txn.open_table(WEBHOOKS)?;
            for (at, id) in &due {
                exp.remove((*at, id.as_str()))?;
                if let Some(job) = read_job(&records, id)? {
                    if let Some(k) = &job.idempotency_key {
                        idem.remove(scoped_idem(&job.caller_id, k).as_str())?;
                    }
                    if job
                        .webhook
                        .as_ref()
                        .is_some_and(|w| w.status == WebhookStatus::Pending)
                    {
                        // Forget a delivery still retrying when its record goes.
                        let stale: Vec<(u64, String)> = hooks
                            .iter()?
                            .filter_map(Result::ok)
                            .map(|(k, _)| (k.value().0, k.value().1.to_owned()))
                            .filter(|(_, i)| i == id)
                            .collect();
                        for (d, i) in stale {
                            hooks.remove((d, i.as_str()))?;
                        }
                    }
                }
                records.remove(id.as_str())?;
            }
            Ok(due.len())
        })
        .await
    }

    /// The webhook secret an earlier version kept in the `meta` table, if any.
    pub async fn legacy_webhook_secret(&self) -> Result<Option<Vec<u8>>, String> {
        self.read(|txn| {
            let meta = txn.open_table(META)?;
            Ok(meta.get(super::secret::KEY)?.map(|v| v.value().to_vec()))
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Drop that secret (once it is in its file).
    pub async fn forget_legacy_webhook_secret(&self) -> Result<(), String> {
        self.write(|txn| {
            txn.open_table(META)?.remove(super::secret::KEY)?;
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
    }
}

/// At start: create the tables, rescope old idempotency entries, put jobs that were running back
/// in the queue (or fail them when their attempts are used up). Returns the next queue sequence
/// and the queue length.
fn recover(
    db: &Database,
    max_attempts: u32,
    ttl_ms: u64,
    auth: &crate::auth::Auth,
) -> Result<(u64, i64), redb::Error> {
    let txn = db.begin_write()?;
    let rescoped = super::legacy::rescope_embedded(&txn, auth)?;
    if rescoped > 0 {
        tracing::info!(
            entries = rescoped,
            "idempotency keys of earlier jobs rescoped to their key's id"
        );
    }
    let (seq, queued) = {
        let mut records = txn.open_table(RECORDS)?;
        let _ = txn.open_table(BODIES)?;
        let _ = txn.open_table(IDEM)?;
        let _ = txn.open_table(EXPIRY)?;
        let _ = txn.open_table(WEBHOOKS)?;
        let _ = txn.open_table(META)?;
        let mut queue = txn.open_table(QUEUE)?;
        let mut seq = queue
            .last()?
            .map(|(k, _)| k.value().1.saturating_add(1))
            .unwrap_or(1);
        let mut running = txn.open_table(RUNNING)?;
        let ids: Vec<String> = running
            .iter()?
            .filter_map(Result::ok)
            .map(|(k, _)| k.value().to_owned())
            .collect();
        let now = unix_ms();
        let (mut requeued, mut failed) = (0, 0);
        for id in &ids {
            running.remove(id.as_str())?;
            let Some(mut job) = read_job(&records, id)? else {
                continue;
            };
            if job.status != JobStatus::Running {
                continue;
            }
            if job.attempts >= max_attempts {
                job.finish(
                    JobStatus::Failed,
                    None,
                    Some(super::worker::interrupted_error(job.attempts)),
                );
                end_job(&txn, &mut records, &job, ttl_ms)?;
                metrics::counter!(crate::metrics::JOBS, "status" => "failed").increment(1);
                failed += 1;
            } else {
                job.status = JobStatus::Queued;
                let slot = (now, seq);
                seq += 1;
                job.slot = Some(slot);
                records.insert(id.as_str(), job.to_bytes().as_ref())?;
                queue.insert(slot, id.as_str())?;
                requeued += 1;
            }
        }
        if requeued + failed > 0 {
            tracing::warn!(
                requeued,
                failed,
                "jobs that were running when the gateway stopped: re-queued (or failed, their attempts used up)"
            );
        }
        (seq, i64::try_from(queue.len()?).unwrap_or(i64::MAX))
    };
    txn.commit()?;
    Ok((seq, queued))
}
