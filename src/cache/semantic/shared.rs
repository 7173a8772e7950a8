//! The semantic index shared by replicas through a capped Redis stream (stock Redis 7 has no
//! vector search; each replica keeps its own in-process index and they exchange entries).
//!
//! - Every insert is also appended to `aigw:semantic:v1` (`XADD … MAXLEN ~ max_entries`; fields
//!   `p` partition, `k` exact-cache key, `e` expiry in Unix ms, `o` the writing index's random
//!   origin id, `v` the vector as little-endian f32 bytes), in the background.
//! - Every replica reads the stream from where it is (`XRANGE key (last-id + COUNT 500`, every
//!   200 ms, at once again while batches come full): from the start (the last `max_entries`
//!   entries) when it starts, then only what is new. Entries of its own origin are skipped (they
//!   were applied when inserted), expired ones too.
//! - Redis down or slow: writes and reads are skipped (the connection's "skip while down"); the
//!   local index goes on working, and reading resumes from the last id seen once Redis is back
//!   (entries written meanwhile are still in the stream unless trimmed).
//!
//! The answers themselves are not in the stream: they are in the exact cache's L2, under the
//! exact key each entry names.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::streams::{StreamId, StreamRangeReply};

use super::index::{Index, NewEntry};
use crate::clock::unix_ms;
use crate::state::{REDIS_TIMEOUT, Redis};

/// The stream's key (the version changes with the fields' format).
pub const STREAM_KEY: &str = "aigw:semantic:v1";
const POLL: Duration = Duration::from_millis(200);
const BATCH: usize = 500;
/// Reading a batch of vectors is background work: a longer bound than a request's calls.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// This replica's end of the stream.
pub struct Stream {
    redis: Arc<Redis>,
    origin: String,
    max_len: usize,
}

impl Stream {
    pub fn new(redis: Arc<Redis>, max_len: usize) -> Self {
        Self {
            redis,
            origin: format!("{:016x}", fastrand::u64(..)),
            max_len: max_len.max(1),
        }
    }

    /// Append an entry, in the background (nothing when Redis is down or there is no runtime).
    pub fn publish(&self, e: &NewEntry) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(mut conn) = self.redis.conn() else {
            return;
        };
        let vector: Vec<u8> = e.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        let ttl_ms = e.expires_ms.saturating_sub(unix_ms()).max(1);
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(STREAM_KEY)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg("p")
            .arg(&e.partition[..])
            .arg("k")
            .arg(&e.exact_key[..])
            .arg("e")
            .arg(e.expires_ms)
            .arg("o")
            .arg(&self.origin)
            .arg("v")
            .arg(vector)
            .ignore()
            // An idle stream goes away with its last entry.
            .cmd("PEXPIRE")
            .arg(STREAM_KEY)
            .arg(ttl_ms)
            .ignore();
        let redis = self.redis.clone();
        crate::tasks::spawn_on(&rt, async move {
            match tokio::time::timeout(REDIS_TIMEOUT * 4, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => redis.report_error("semantic cache write", &e, e.is_io_error()),
                Err(_) => redis.report_error("semantic cache write", &"timed out", true),
            }
        });
    }

    /// Feed `index` from the stream until it is dropped.
    pub async fn tail(self: Arc<Self>, index: Weak<Index>) {
        // Exclusive start of the next read: "-" (everything) until the first entry is seen.
        let mut after: Option<String> = None;
        loop {
            let full = match self.read(after.as_deref()).await {
                Some(batch) => {
                    let full = batch.len() >= BATCH;
                    if let Some(last) = batch.last() {
                        after = Some(last.id.clone());
                    }
                    let entries = self.entries(&batch);
                    let Some(index) = index.upgrade() else {
                        return;
                    };
                    if !entries.is_empty() {
                        // An insert costs up to milliseconds of CPU: off the runtime.
                        let _ = tokio::task::spawn_blocking(move || {
                            entries.into_iter().for_each(|e| index.insert_now(e));
                        })
                        .await;
                    }
                    full
                }
                None => false,
            };
            if !full {
                tokio::time::sleep(POLL).await;
            }
            if index.strong_count() == 0 {
                return;
            }
        }
    }

    /// The next batch after `after`; `None` when Redis is down or failed.
    async fn read(&self, after: Option<&str>) -> Option<Vec<StreamId>> {
        let mut conn = self.redis.conn()?;
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(STREAM_KEY)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(BATCH);
        match tokio::time::timeout(READ_TIMEOUT, cmd.query_async::<StreamRangeReply>(&mut conn))
            .await
        {
            Ok(Ok(reply)) => Some(reply.ids),
            Ok(Err(e)) => {
                self.redis
                    .report_error("semantic cache read", &e, e.is_io_error());
                None
            }
            Err(_) => {
                self.redis
                    .report_error("semantic cache read", &"timed out", true);
                None
            }
        }
    }

    /// The batch's entries written by other replicas and not expired.
    fn entries(&self, batch: &[StreamId]) -> Vec<NewEntry> {
        let now = unix_ms();
        batch
            .iter()
            .filter(|id| id.get::<String>("o").as_deref() != Some(self.origin.as_str()))
            .filter_map(decode)
            .filter(|e| e.expires_ms > now)
            .collect()
    }
}

/// A stream entry back into an insert; `None` when a field is missing or malformed.
fn decode(id: &StreamId) -> Option<NewEntry> {
    let partition = id.get::<Vec<u8>>("p")?.try_into().ok()?;
    let exact_key = id.get::<Vec<u8>>("k")?.try_into().ok()?;
    let expires_ms = id.get::<u64>("e")?;
    let bytes = id.get::<Vec<u8>>("v")?;
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return None;
    }
    let vector = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(NewEntry {
        partition,
        vector,
        exact_key,
        expires_ms,
    })
}
