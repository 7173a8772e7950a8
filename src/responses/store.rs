//! Where stored responses live: Redis (`aigw:resp:{id}`, expiring with `responses.store_ttl`)
//! when `state.redis_url` is set, else the embedded store `data_dir/responses.redb` (opened on
//! first use; expired records are not served and are swept every ten minutes).
//!
//! A write is one command or one transaction, run on a task of its own so the answer never waits
//! for it; in the embedded store the records that arrive while a transaction syncs go together
//! in the next one (group commit). Until it is done the record is kept in this process (`pending`), so a request that
//! names the response here right after its answer (a `GET`, or the next turn's
//! `previous_response_id`) finds it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::state::Redis;
use crate::store::{Store, Table};

/// How long a Redis read may take (a request waits for it).
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a Redis write may take (no request waits for it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the embedded store drops expired records.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How many times, and how far apart, a Redis miss is asked again (see [`ResponseStore::get`]).
const MISS_RETRIES: u32 = 4;
const MISS_RETRY_GAP: Duration = Duration::from_millis(25);
/// Records written in this process whose write has not finished, at most this many.
const PENDING_MAX: u64 = 100_000;

enum Backend {
    Redis(Arc<Redis>),
    Embedded {
        dir: PathBuf,
        db: tokio::sync::OnceCell<Store>,
        /// Records waiting for the next transaction (group commit: see [`ResponseStore::put`]).
        queue: std::sync::Mutex<Vec<(String, Option<String>)>>,
        /// Held by the task writing a transaction.
        writing: tokio::sync::Mutex<()>,
    },
}

/// The stored responses of this gateway.
pub struct ResponseStore {
    backend: Backend,
    pending: moka::sync::Cache<String, Arc<str>>,
}

/// One stored response written to Redis, expiring after `ttl`.
async fn write_redis(redis: &Redis, id: &str, record: &str, ttl: Duration) -> Result<(), Error> {
    let mut conn = redis.conn().ok_or_else(|| unavailable("redis is down"))?;
    let mut cmd = redis::cmd("SET");
    cmd.arg(redis_key(id))
        .arg(record)
        .arg("PX")
        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
    match tokio::time::timeout(WRITE_TIMEOUT, cmd.query_async::<()>(&mut conn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            redis.report_error("stored response write", &e, e.is_io_error());
            Err(unavailable(e))
        }
        Err(_) => Err(unavailable("timed out")),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("the response store is unavailable: {e}"))
}

fn redis_key(id: &str) -> String {
    let mut k = String::with_capacity(10 + id.len());
    k.push_str("aigw:resp:");
    k.push_str(id);
    k
}

/// The expiry time stored in a record's text, without parsing the rest of it.
fn expires_at(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Exp {
        expires_at: u64,
    }
    serde_json::from_str::<Exp>(text).ok().map(|e| e.expires_at)
}

impl ResponseStore {
    /// Redis when given, else `data_dir/responses.redb` (opened when first needed).
    pub fn new(redis: Option<Arc<Redis>>, data_dir: &str) -> Self {
        let backend = match redis {
            Some(r) => Backend::Redis(r),
            None => Backend::Embedded {
                dir: PathBuf::from(data_dir),
                db: tokio::sync::OnceCell::new(),
                queue: std::sync::Mutex::new(Vec::new()),
                writing: tokio::sync::Mutex::new(()),
            },
        };
        Self {
            backend,
            pending: moka::sync::Cache::builder()
                .max_capacity(PENDING_MAX)
                .time_to_live(WRITE_TIMEOUT * 2)
                .build(),
        }
    }

    async fn embedded(
        dir: &std::path::Path,
        db: &tokio::sync::OnceCell<Store>,
    ) -> Result<Store, Error> {
        db.get_or_try_init(|| async {
            let dir = dir.to_path_buf();
            let store = tokio::task::spawn_blocking(move || {
                Store::open_file(&dir, "responses.redb", &[Table::Responses])
            })
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
            let sweeper = store.clone();
            crate::tasks::service(async move {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    if let Err(e) = sweep(&sweeper).await {
                        tracing::warn!(error = %e, "sweeping expired stored responses failed");
                    }
                }
            });
            Ok(store)
        })
        .await
        .cloned()
    }

    /// The record of response `id` (its text), if stored and not expired.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<str>>, Error> {
        if let Some(p) = self.pending.get(id) {
            return Ok(Some(p));
        }
        let text = match &self.backend {
            Backend::Redis(redis) => {
                // Another replica's write of a response it has just answered may still be on
                // its way: a miss is asked again a few times before it is believed.
                let mut text = redis_get(redis, id).await?;
                for _ in 0..MISS_RETRIES {
                    if text.is_some() {
                        break;
                    }
                    tokio::time::sleep(MISS_RETRY_GAP).await;
                    text = redis_get(redis, id).await?;
                }
                text
            }
            Backend::Embedded { dir, db, .. } => {
                let store = Self::embedded(dir, db).await?;
                store
                    .get(Table::Responses, id.to_owned())
                    .await
                    .map_err(unavailable)?
            }
        };
        let now = crate::clock::unix_ms();
        Ok(text
            .filter(|t| expires_at(t).is_some_and(|e| e > now))
            .map(Arc::from))
    }

    /// Keep `record` as response `id` for `ttl`: at once for this process, in the store by a
    /// task of its own (the caller does not wait; a failed write is logged).
    pub fn put(self: &Arc<Self>, id: String, record: String, ttl: Duration) {
        let record: Arc<str> = Arc::from(record);
        self.pending.insert(id.clone(), record.clone());
        let this = self.clone();
        crate::tasks::spawn(async move {
            let Backend::Redis(redis) = &this.backend else {
                this.write_grouped(id, &record).await;
                return;
            };
            if let Err(e) = write_redis(redis, &id, &record, ttl).await {
                tracing::warn!(response_id = %id, error = %e, "a response could not be stored");
            }
            this.pending.invalidate(&id);
        });
    }

    /// The embedded store's group commit: the record joins the queue; one task at a time takes
    /// the whole queue and writes it in one transaction (one sync), so under load a commit carries
    /// every record that came while the last one was syncing. A task whose record an earlier
    /// writer took has nothing left to do.
    async fn write_grouped(&self, id: String, record: &str) {
        let Backend::Embedded {
            dir,
            db,
            queue,
            writing,
        } = &self.backend
        else {
            return;
        };
        lock(queue).push((id, Some(record.to_owned())));
        let _writer = writing.lock().await;
        let batch = std::mem::take(&mut *lock(queue));
        if batch.is_empty() {
            return;
        }
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let written = match Self::embedded(dir, db).await {
            Ok(store) => store
                .put_many(Table::Responses, batch)
                .await
                .map_err(unavailable),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(responses = ids.len(), error = %e, "responses could not be stored");
        }
        for id in &ids {
            self.pending.invalidate(id);
        }
    }

    /// Remove response `id`.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        self.pending.invalidate(id);
        match &self.backend {
            Backend::Redis(redis) => {
                let mut conn = redis.conn().ok_or_else(|| unavailable("redis is down"))?;
                let mut cmd = redis::cmd("DEL");
                cmd.arg(redis_key(id));
                match tokio::time::timeout(READ_TIMEOUT, cmd.query_async::<i64>(&mut conn)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        redis.report_error("stored response delete", &e, e.is_io_error());
                        Err(unavailable(e))
                    }
                    Err(_) => Err(unavailable("timed out")),
                }
            }
            Backend::Embedded { dir, db, .. } => {
                let store = Self::embedded(dir, db).await?;
                store
                    .put_many(Table::Responses, vec![(id.to_owned(), None)])
                    .await
                    .map_err(unavailable)
            }
        }
    }
}

async fn redis_get(redis: &Redis, id: &str) -> Result<Option<String>, Error> {
    let mut conn = redis.conn().ok_or_else(|| unavailable("redis is down"))?;
    let mut cmd = redis::cmd("GET");
    cmd.arg(redis_key(id));
    match tokio::time::timeout(READ_TIMEOUT, cmd.query_async::<Option<String>>(&mut conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            redis.report_error("stored response read", &e, e.is_io_error());
            Err(unavailable(e))
        }
        Err(_) => {
            redis.report_error("stored response read", &"timed out", true);
            Err(unavailable("timed out"))
        }
    }
}

/// Drop the expired records of the embedded store (one transaction).
async fn sweep(store: &Store) -> Result<usize, String> {
    let now = crate::clock::unix_ms();
    store
        .transact(Table::Responses, move |t| {
            use redb::ReadableTable;
            let expired: Vec<String> = t
                .iter()
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .filter(|(_, v)| expires_at(v.value()).is_none_or(|e| e <= now))
                .map(|(k, _)| k.value().to_owned())
                .collect();
            for k in &expired {
                t.remove(k.as_str()).map_err(|e| e.to_string())?;
            }
            Ok(expired.len())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_at: u64) -> String {
        super::super::record_text("k", expires_at, b"{}", "[]", b"[]", b"[]")
    }

    #[tokio::test]
    async fn embedded_keeps_expires_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let later = crate::clock::unix_ms() + 60_000;
        let s = Arc::new(ResponseStore::new(None, data_dir));
        {
            s.put("resp_a".into(), record(later), Duration::from_secs(60));
            // Served from this process at once, whether or not the write finished.
            assert!(s.get("resp_a").await.unwrap().is_some());
            // Written directly (not through `put`, which would keep it in `pending`).
            s.write_grouped("resp_old".into(), &record(1)).await;
            for _ in 0..500 {
                if s.pending.get("resp_a").is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(s.pending.get("resp_a").is_none(), "the write finished");
        }
        // Now from the file.
        assert!(s.get("resp_a").await.unwrap().is_some());
        // Past its expiry: not served, and swept.
        assert!(s.get("resp_old").await.unwrap().is_none());
        let Backend::Embedded { dir, db, .. } = &s.backend else {
            unreachable!()
        };
        let store = ResponseStore::embedded(dir, db).await.unwrap();
        assert_eq!(sweep(&store).await.unwrap(), 1);
        s.delete("resp_a").await.unwrap();
        assert!(s.get("resp_a").await.unwrap().is_none());
        assert!(s.get("resp_missing").await.unwrap().is_none());
    }
}
