//! The queue: due jobs taken (running, one more attempt), finished, put back, cancelled.

use super::*;

impl Embedded {
    /// Take up to `n` due jobs: each becomes `running` with one more attempt. Also returns the
    /// due time (unix ms) of the next queued job, if any.
    pub async fn take(&self, n: usize) -> Result<(Vec<(Job, Bytes)>, Option<u64>), StoreError> {
        let now = unix_ms();
        let (taken, next) = self
            .write(move |txn| {
                let mut queue = txn.open_table(QUEUE)?;
                let mut records = txn.open_table(RECORDS)?;
                let mut running = txn.open_table(RUNNING)?;
                let bodies = txn.open_table(BODIES)?;
                let mut keys = Vec::new();
                let mut next = None;
                for item in queue.iter()? {
                    let (k, v) = item?;
                    let key = k.value();
                    if key.0 > now || keys.len() >= n {
                        next = Some(key.0);
                        break;
                    }
                    keys.push((key, v.value().to_owned()));
                }
                let mut out = Vec::with_capacity(keys.len());
                for (key, id) in keys {
                    queue.remove(key)?;
                    let Some(mut job) = read_job(&records, &id)? else {
                        continue;
                    };
                    if job.status != JobStatus::Queued {
                        continue;
                    }
                    let body = bodies
                        .get(id.as_str())?
                        .map(|b| Bytes::copy_from_slice(b.value()))
                        .unwrap_or_default();
                    job.status = JobStatus::Running;
                    job.attempts += 1;
                    job.started_at = Some(crate::clock::unix_secs());
                    job.slot = None;
                    records.insert(id.as_str(), job.to_bytes().as_ref())?;
                    running.insert(id.as_str(), ())?;
                    out.push((job, body));
                }
                Ok((out, next))
            })
            .await?;
        if !taken.is_empty() {
            self.adjust_queued(-(taken.len() as i64));
        }
        Ok((taken, next))
    }

    /// Store a job's final record (unless it already ended) and schedule its webhook. Whether
    /// this call ended it.
    pub async fn finish(&self, job: Job, ttl_ms: u64) -> Result<bool, StoreError> {
        let ended = self
            .write(move |txn| {
                let mut records = txn.open_table(RECORDS)?;
                if read_job(&records, &job.id)?.is_some_and(|j| j.status.is_terminal()) {
                    txn.open_table(RUNNING)?.remove(job.id.as_str())?;
                    return Ok(false);
                }
                end_job(txn, &mut records, &job, ttl_ms)?;
                Ok(true)
            })
            .await?;
        if ended {
            self.webhook_work.notify_one();
        }
        Ok(ended)
    }

    /// Put a running job back in the queue, due at `due_ms` (a retry, or a release at shutdown).
    pub async fn requeue(&self, mut job: Job, due_ms: u64) -> Result<(), StoreError> {
        let slot = (due_ms, self.seq());
        job.status = JobStatus::Queued;
        job.slot = Some(slot);
        self.write(move |txn| {
            txn.open_table(RECORDS)?
                .insert(job.id.as_str(), job.to_bytes().as_ref())?;
            txn.open_table(RUNNING)?.remove(job.id.as_str())?;
            txn.open_table(QUEUE)?.insert(slot, job.id.as_str())?;
            Ok(())
        })
        .await?;
        self.adjust_queued(1);
        self.work.notify_one();
        Ok(())
    }

    pub async fn cancel(
        &self,
        id: &str,
        caller: &Caller,
        ttl_ms: u64,
    ) -> Result<Cancel, StoreError> {
        let id = id.to_owned();
        let caller = caller.clone();
        let out = self
            .write(move |txn| {
                let mut records = txn.open_table(RECORDS)?;
                let Some(mut job) = read_job(&records, &id)? else {
                    return Ok(Cancel::NotFound);
                };
                if !job.visible_to(&caller) {
                    return Ok(Cancel::NotFound);
                }
                if job.status != JobStatus::Queued {
                    return Ok(Cancel::Conflict(job));
                }
                if let Some(slot) = job.slot {
                    txn.open_table(QUEUE)?.remove(slot)?;
                }
                job.finish(JobStatus::Cancelled, None, None);
                end_job(txn, &mut records, &job, ttl_ms)?;
                Ok(Cancel::Cancelled(job))
            })
            .await?;
        if matches!(out, Cancel::Cancelled(_)) {
            self.adjust_queued(-1);
            self.webhook_work.notify_one();
        }
        Ok(out)
    }
}

/// Write a job's terminal record, forget its body and running mark, schedule its expiry and its
/// webhook.
pub(super) fn end_job(
    txn: &WriteTransaction,
    records: &mut redb::Table<&str, &[u8]>,
    job: &Job,
    ttl_ms: u64,
) -> Result<(), redb::Error> {
    let id = job.id.as_str();
    records.insert(id, job.to_bytes().as_ref())?;
    txn.open_table(RUNNING)?.remove(id)?;
    txn.open_table(BODIES)?.remove(id)?;
    let now = unix_ms();
    txn.open_table(EXPIRY)?
        .insert((now.saturating_add(ttl_ms), id), ())?;
    if job
        .webhook
        .as_ref()
        .is_some_and(|w| w.status == WebhookStatus::Pending)
    {
        txn.open_table(WEBHOOKS)?.insert((now, id), ())?;
    }
    Ok(())
}
