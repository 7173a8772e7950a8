//! The request log in `state.data_dir/requests.redb`: one row per written batch (key: the
//! sequence number of its first entry; value: the batch's entries, [`postcard`]-encoded, prefixed
//! by their count), and the counters. Every call runs on a blocking thread.
//!
//! A batch is one append (a sequential key: cheap copy-on-write) and its commit goes without a
//! sync (`Durability::None`), with a synced commit at most once a second and when the writer goes
//! idle: a crash loses at most the last second. Entries are numbered in order; those older than
//! the newest `max_entries` are hidden at once and removed with their batch once all of it is
//! older. There is no index by request id: a cursor or an entry by id is found by reading back
//! from the newest batch, admin reads being rare.
//!
//! The first version kept one JSON row per entry (table `log`): its rows cost a B-tree insert and
//! a JSON encoding each, most of the log's cost at 25,000 calls a second (docs/benchmarks.md). A
//! file of that version has its `log` table dropped when opened (the counters are kept).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use super::counters::{self, Deltas, Hash, SEP};
use super::{Entry, Page, Query, ReadError};

/// The first version's table of entries (dropped when found).
const LOG_V1: TableDefinition<u64, &str> = TableDefinition::new("log");
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
const COUNTERS: TableDefinition<&str, f64> = TableDefinition::new("counters");
/// redb's page cache for the log (its default, 1 GiB, would grow with every entry written: the
/// writes are appends and the reads rare).
const CACHE_BYTES: usize = 8 * 1024 * 1024;

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
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|err| format!("{}: {err}", path.display()))?;
        let txn = db.begin_write().map_err(e)?;
        let next = {
            // Dropping a table that is not there is a no-op (`Ok(false)`).
            txn.delete_table(LOG_V1).map_err(e)?;
            let log = txn.open_table(BATCHES).map_err(e)?;
            txn.open_table(COUNTERS).map_err(e)?;
            let last = log.last().map_err(e)?;
            last.map_or(1, |(k, v)| k.value() + u64::from(count(v.value())))
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

    /// Write a batch (its [`encode`]d row) and its counters in one transaction; trim to
    /// `max_entries`.
    pub async fn write(&self, row: Vec<u8>, deltas: Deltas) -> Result<(), String> {
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
                let mut log = txn.open_table(BATCHES).map_err(e)?;
                let n = count(&row);
                let first = next.fetch_add(u64::from(n), Ordering::Relaxed);
                log.insert(first, row.as_slice()).map_err(e)?;
                // Batches whose every entry is past the newest `max` go.
                let cut = (first + u64::from(n)).saturating_sub(max);
                let mut gone = Vec::new();
                for item in log.iter().map_err(e)? {
                    let (k, v) = item.map_err(e)?;
                    if k.value() + u64::from(count(v.value())) > cut {
                        break;
                    }
                    gone.push(k.value());
                }
                for k in gone {
                    log.remove(k).map_err(e)?;
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
        let oldest = self.oldest();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(e)?;
            let log = txn.open_table(BATCHES).map_err(e)?;
            let end = match &q.after {
                None => u64::MAX,
                Some(id) => match find(&log, oldest, id)? {
                    Some((seq, _)) => seq,
                    None => return Ok(Err(ReadError::UnknownCursor)),
                },
            };
            let mut data = Vec::new();
            let mut has_more = false;
            'batches: for item in log.range(..end).map_err(e)?.rev() {
                let (k, v) = item.map_err(e)?;
                for (seq, entry) in decode(k.value(), v.value()).into_iter().rev() {
                    if seq >= end || seq < oldest || !q.matches(&entry) {
                        continue;
                    }
                    if data.len() == q.limit {
                        has_more = true;
                        break 'batches;
                    }
                    data.push(entry);
                }
            }
            Ok(Ok(Page { data, has_more }))
        })
        .await
        .map_err(ReadError::Store)?
    }

    pub async fn get(&self, id: String) -> Result<Option<Entry>, String> {
        let oldest = self.oldest();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(e)?;
            let log = txn.open_table(BATCHES).map_err(e)?;
            Ok(find(&log, oldest, &id)?.map(|(_, entry)| entry))
        })
        .await
    }

    /// The sequence number of the oldest entry shown (the newest `max_entries`).
    fn oldest(&self) -> u64 {
        self.next
            .load(Ordering::Relaxed)
            .saturating_sub(self.max_entries)
            .max(1)
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

/// An entry as stored: [`Entry`]'s fields in order, every one written (postcard is positional;
/// `Entry`'s own `Serialize` leaves out absent bodies).
#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    created_at: u64,
    endpoint: &'a str,
    key: Option<&'a str>,
    model: Option<&'a str>,
    provider: Option<&'a str>,
    deployment_model: Option<&'a str>,
    status: u16,
    latency_ms: u64,
    ttft_ms: Option<u64>,
    attempts: Option<u32>,
    cache: Option<&'a str>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
    error: Option<&'a str>,
    request: Option<&'a str>,
    response: Option<&'a str>,
}

impl<'a> Row<'a> {
    fn of<S: std::ops::Deref<Target = str>>(x: &'a Entry<S>) -> Self {
        Self {
            id: &x.id,
            created_at: x.created_at,
            endpoint: &x.endpoint,
            key: x.key.as_deref(),
            model: x.model.as_deref(),
            provider: x.provider.as_deref(),
            deployment_model: x.deployment_model.as_deref(),
            status: x.status,
            latency_ms: x.latency_ms,
            ttft_ms: x.ttft_ms,
            attempts: x.attempts,
            cache: x.cache.as_deref(),
            input_tokens: x.input_tokens,
            output_tokens: x.output_tokens,
            cost_usd: x.cost_usd,
            error: x.error.as_deref(),
            request: x.request.as_deref(),
            response: x.response.as_deref(),
        }
    }
}

/// A batch's row: the entries' count, then each entry. Made on the writer's task, so the
/// entries are freed by the thread that made them and their vector is used again.
pub fn encode<S: std::ops::Deref<Target = str>>(entries: &[Entry<S>]) -> Result<Vec<u8>, String> {
    let n = u32::try_from(entries.len()).map_err(e)?;
    let mut row = Vec::with_capacity(entries.len() * 128 + 4);
    row.extend_from_slice(&n.to_le_bytes());
    for entry in entries {
        row = postcard::to_extend(&Row::of(entry), row).map_err(e)?;
    }
    Ok(row)
}

/// The number of entries in a batch's row.
fn count(row: &[u8]) -> u32 {
    row.get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// A batch's entries with their sequence numbers, oldest first (a row that does not decode ends
/// where it stops decoding).
fn decode(first: u64, row: &[u8]) -> Vec<(u64, Entry)> {
    let n = count(row);
    let mut rest = row.get(4..).unwrap_or_default();
    let mut out = Vec::with_capacity(n as usize);
    for seq in first..first + u64::from(n) {
        // Read back as [`Entry`] itself: its derived `Deserialize` takes the fields in the same
        // order, and only its `Serialize` skips any (hence [`Row`] to write them).
        match postcard::take_from_bytes::<Entry>(rest) {
            Ok((entry, tail)) => {
                out.push((seq, entry));
                rest = tail;
            }
            Err(_) => break,
        }
    }
    out
}

/// The newest entry shown with this request id, and its sequence number.
fn find(
    log: &ReadOnlyTable<u64, &[u8]>,
    oldest: u64,
    id: &str,
) -> Result<Option<(u64, Entry)>, String> {
    for item in log.iter().map_err(e)?.rev() {
        let (k, v) = item.map_err(e)?;
        let hit = decode(k.value(), v.value())
            .into_iter()
            .rev()
            .take_while(|(seq, _)| *seq >= oldest)
            .find(|(_, entry)| entry.id == id);
        if hit.is_some() {
            return Ok(hit);
        }
        if k.value() < oldest {
            return Ok(None);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_row_decodes_to_its_entries() {
        let a = Entry {
            id: "r1".into(),
            created_at: 7,
            endpoint: "/v1/chat/completions".into(),
            key: Some("k".into()),
            status: 200,
            cost_usd: Some(0.25),
            response: Some("{}".into()),
            ..Entry::default()
        };
        let b = Entry {
            id: "r2".into(),
            status: 500,
            error: Some("boom".into()),
            ..Entry::default()
        };
        let row = encode(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(count(&row), 2);
        assert_eq!(decode(10, &row), vec![(10, a.clone()), (11, b)]);
        // A cut row keeps what decodes.
        let cut = &row[..row.len() - 3];
        assert_eq!(decode(10, cut), vec![(10, a)]);
        assert!(decode(1, &[1]).is_empty());
    }

    /// What the writer is given (labels shared with the request) is stored as the same bytes,
    /// and read back as the same entry, as the entry read back (plain strings).
    #[test]
    fn an_entry_of_labels_is_stored_and_read_as_its_strings() {
        use crate::record::Label;
        // One entry, its texts made by `text`.
        fn entry<S>(text: impl Fn(&'static str) -> S) -> Entry<S> {
            Entry {
                id: text("r1"),
                created_at: 7,
                endpoint: text("/v1/chat/completions"),
                key: Some(text("team-a")),
                model: Some(text("gpt-4o-mini")),
                provider: Some(text("openai-eu")),
                deployment_model: Some(text("gpt-4o-mini-2024")),
                status: 200,
                latency_ms: 12,
                ttft_ms: Some(3),
                attempts: Some(2),
                cache: Some(text("MISS")),
                input_tokens: Some(10),
                output_tokens: Some(20),
                cost_usd: Some(0.5),
                error: None,
                request: Some("{}".into()),
                response: None,
            }
        }
        // Names known at compile time (the endpoint, x-cache) static, the others shared.
        let labelled = entry(|s| {
            if s.starts_with('/') || s == "MISS" {
                Label::Static(s)
            } else {
                Label::Shared(s.into())
            }
        });
        let plain = entry(str::to_owned);
        assert_eq!(plain.provider.as_deref(), Some("openai-eu"));
        let row = encode(std::slice::from_ref(&labelled)).unwrap();
        assert_eq!(row, encode(std::slice::from_ref(&plain)).unwrap());
        assert_eq!(decode(1, &row), vec![(1, plain.clone())]);
        // And as JSON (the Redis store's stream).
        assert_eq!(
            serde_json::to_string(&labelled).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
    }
}
