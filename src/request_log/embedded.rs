//! The request log in `state.data_dir/requests.redb`: entries by sequence number (newest last),
//! each stored as `{request id}\x1f{entry JSON}`, and the counters. Every call runs on a
//! blocking thread.
//!
//! Writes are append-only (sequential keys: cheap copy-on-write) and committed without a sync
//! (`Durability::None`), with a synced commit at most once a second and when the writer goes
//! idle: a crash loses at most the last second. There is no index by request id (its random-order
//! inserts would cost more than the rest of the write): a cursor or an entry by id is found by
//! reading back from the newest entry and comparing the id prefix, admin reads being rare.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::counters::{self, Deltas, Hash, SEP};
use super::{Entry, Page, Query, ReadError};

const LOG: TableDefinition<u64, &str> = TableDefinition::new("log");
const COUNTERS: TableDefinition<&str, f64> = TableDefinition::new("counters");

pub struct Embedded {
    db: Arc<Database>,
    max_entries: u64,
    retention_days: u64,
    next: Arc<AtomicU64>,
    /// When the last synced commit was (unix ms).
    synced_ms: Arc<AtomicU64>,
}

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

impl Embedded {
    pub fn open(data_dir: &Path, max_entries: u64, retention_days: u64) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|err| format!("state.data_dir {}: {err}", data_dir.display()))?;
        let path = data_dir.join("requests.redb");
        let db = Database::create(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        let txn = db.begin_write().map_err(e)?;
        let next = {
            let log = txn.open_table(LOG).map_err(e)?;
            txn.open_table(COUNTERS).map_err(e)?;
            log.last().map_err(e)?.map_or(1, |(k, _)| k.value() + 1)
        };
        txn.commit().map_err(e)?;
        Ok(Self {
            db: Arc::new(db),
            max_entries,
            retention_days,
            next: Arc::new(AtomicU64::new(next)),
            synced_ms: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|err| format!("request log task failed: {err}"))?
    }

    /// Write a batch and its counters in one transaction; trim to `max_entries`.
    pub async fn write(&self, entries: Vec<Entry>, deltas: Deltas) -> Result<(), String> {
        let max = self.max_entries;
        let next = self.next.clone();
        let synced = self.synced_ms.clone();
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(e)?;
            let now = crate::clock::unix_ms();
            let sync = now.saturating_sub(synced.load(Ordering::Relaxed)) >= 1000;
            txn.set_durability(if sync {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(e)?;
            {
                let mut log = txn.open_table(LOG).map_err(e)?;
                let mut row = String::new();
                for entry in &entries {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    row.clear();
                    row.push_str(&entry.id);
                    row.push(SEP);
                    row.push_str(&serde_json::to_string(entry).map_err(e)?);
                    log.insert(seq, row.as_str()).map_err(e)?;
                }
                let len = log.len().map_err(e)?;
                if len > max {
                    let cut = log
                        .first()
                        .map_err(e)?
                        .map_or(0, |(k, _)| k.value())
                        .saturating_add(len - max);
                    log.retain_in(..cut, |_, _| false).map_err(e)?;
                }
                let mut c = txn.open_table(COUNTERS).map_err(e)?;
                for ((hash, field), v) in deltas.ints {
                    add(&mut c, &hash, &field, v as f64)?;
                }
                for ((hash, field), v) in deltas.floats {
                    add(&mut c, &hash, &field, v)?;
                }
            }
            txn.commit().map_err(e)?;
            if sync {
                synced.store(now, Ordering::Relaxed);
            }
            Ok(())
        })
        .await
    }

    /// A synced commit, when something was written since the last one (the writer went idle).
    pub async fn sync(&self) -> Result<(), String> {
        let synced = self.synced_ms.clone();
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(e)?;
            txn.set_durability(Durability::Immediate).map_err(e)?;
            txn.commit().map_err(e)?;
            synced.store(crate::clock::unix_ms(), Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    /// Remove the counters past their keeping time.
    pub async fn sweep(&self, now: u64) -> Result<(), String> {
        let retention_days = self.retention_days;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(e)?;
            {
                let mut c = txn.open_table(COUNTERS).map_err(e)?;
                let oldest_day = counters::day_string(
                    i64::try_from(now / 86_400).unwrap_or(0)
                        - i64::try_from(retention_days).unwrap_or(0),
                );
                let cut_m = now.saturating_sub(counters::MINUTE_KEEP_SECS);
                let cut_h = now.saturating_sub(counters::HOUR_KEEP_SECS);
                c.retain(|k, _| {
                    let hash = k.split(SEP).next().unwrap_or("");
                    if let Some(day) = hash.strip_prefix("d:") {
                        return day >= oldest_day.as_str();
                    }
                    let start = |p: &str| hash.strip_prefix(p).and_then(|s| s.parse::<u64>().ok());
                    match (start("m:"), start("h:")) {
                        (Some(m), _) => m >= cut_m,
                        (_, Some(h)) => h >= cut_h,
                        _ => true,
                    }
                })
                .map_err(e)?;
            }
            txn.commit().map_err(e)
        })
        .await
    }

    pub async fn list(&self, q: Query) -> Result<Page, ReadError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(e)?;
            let log = txn.open_table(LOG).map_err(e)?;
            let end = match &q.after {
                None => u64::MAX,
                Some(id) => match find(&log, id)? {
                    Some((seq, _)) => seq,
                    None => return Ok(Err(ReadError::UnknownCursor)),
                },
            };
            let mut data = Vec::new();
            let mut has_more = false;
            for item in log.range(..end).map_err(e)?.rev() {
                let (_, v) = item.map_err(e)?;
                let Some(entry) = parse(v.value()) else {
                    continue;
                };
                if !q.matches(&entry) {
                    continue;
                }
                if data.len() == q.limit {
                    has_more = true;
                    break;
                }
                data.push(entry);
            }
            Ok(Ok(Page { data, has_more }))
        })
        .await
        .map_err(ReadError::Store)?
    }

    pub async fn get(&self, id: String) -> Result<Option<Entry>, String> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(e)?;
            let log = txn.open_table(LOG).map_err(e)?;
            Ok(find(&log, &id)?.map(|(_, entry)| entry))
        })
        .await
    }

    pub async fn counters(&self, hashes: Vec<String>) -> Result<Vec<Hash>, String> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(e)?;
            let c = txn.open_table(COUNTERS).map_err(e)?;
            let mut out = Vec::with_capacity(hashes.len());
            for h in hashes {
                let prefix = format!("{h}{SEP}");
                let mut hash = Hash::new();
                for item in c.range(prefix.as_str()..).map_err(e)? {
                    let (k, v) = item.map_err(e)?;
                    let Some(field) = k.value().strip_prefix(prefix.as_str()) else {
                        break;
                    };
                    hash.insert(field.to_owned(), v.value());
                }
                out.push(hash);
            }
            Ok(out)
        })
        .await
    }
}

fn add(
    c: &mut redb::Table<'_, &'static str, f64>,
    hash: &str,
    field: &str,
    v: f64,
) -> Result<(), String> {
    let k = format!("{hash}{SEP}{field}");
    let old = c.get(k.as_str()).map_err(e)?.map_or(0.0, |v| v.value());
    c.insert(k.as_str(), old + v).map_err(e)?;
    Ok(())
}

/// An entry of the log (`{id}\x1f{json}`).
fn parse(row: &str) -> Option<Entry> {
    serde_json::from_str(row.split_once(SEP)?.1).ok()
}

/// The newest entry with this request id, and its sequence number.
fn find(log: &ReadOnlyTable<u64, &str>, id: &str) -> Result<Option<(u64, Entry)>, String> {
    for item in log.iter().map_err(e)?.rev() {
        let (k, v) = item.map_err(e)?;
        let row = v.value();
        if row.split_once(SEP).is_some_and(|(rid, _)| rid == id) {
            return Ok(parse(row).map(|entry| (k.value(), entry)));
        }
    }
    Ok(None)
}
