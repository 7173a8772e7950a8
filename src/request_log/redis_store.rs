//! The request log in Redis, shared by every replica:
//! (One hash tag, `{reqlog}`, for all of them: a write's pipeline touches several, and on a Redis
//! Cluster they share a slot; see `state/keys.rs`.)
//! - `aigw:{reqlog}:stream`: a stream capped at `max_entries` (`XADD MAXLEN ~`), one field `e` with the
//!   entry's JSON;
//! - `aigw:{reqlog}:ids`: a sorted set request id → the millisecond part of its stream id (the
//!   newest entry of that id), capped at `max_entries` members, to find an entry (and a page's
//!   cursor) by request id;
//! - `aigw:{reqlog}:report:<hash>`: the counters (see `counters`), `HINCRBY`/`HINCRBYFLOAT`, with expiry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::StreamRangeReply;

use super::counters::{Deltas, Hash, Keep};
use super::{Entry, Page, Query, ReadError};
use crate::state::Redis;

const STREAM: &str = "aigw:{reqlog}:stream";
const IDS: &str = "aigw:{reqlog}:ids";
const COUNTERS: &str = "aigw:{reqlog}:report:";
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries read per `XREVRANGE` while filtering.
const CHUNK: usize = 500;

pub struct RedisLog {
    redis: Arc<Redis>,
    max_entries: u64,
    retention_days: u64,
}

async fn run<T: redis::FromRedisValue>(
    redis: &Redis,
    what: &str,
    timeout: Duration,
    pipe: &redis::Pipeline,
) -> Result<T, String> {
    let Some(mut conn) = redis.conn() else {
        return Err("redis is down".to_owned());
    };
    match tokio::time::timeout(timeout, pipe.query_async::<T>(&mut conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(err)) => {
            redis.report_error(what, &err, err.is_io_error());
            Err(err.to_string())
        }
        Err(_) => {
            redis.report_error(what, &"timed out", true);
            Err("redis timed out".to_owned())
        }
    }
}

impl RedisLog {
    pub fn new(redis: Arc<Redis>, max_entries: u64, retention_days: u64) -> Self {
        Self {
            redis,
            max_entries,
            retention_days,
        }
    }

    /// The entries (one round trip for the stream, one for the index and the counters).
    pub async fn write<S: serde::Serialize + std::ops::Deref<Target = str> + Sync>(
        &self,
        entries: &[Entry<S>],
        deltas: Deltas,
    ) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for entry in entries {
            let json = serde_json::to_string(entry).map_err(|err| err.to_string())?;
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_entries)
                .arg("*")
                .arg("e")
                .arg(json);
        }
        let ids: Vec<String> = run(&self.redis, "request log", WRITE_TIMEOUT, &pipe).await?;
        let mut pipe = redis::pipe();
        for (entry, sid) in entries.iter().zip(&ids) {
            let ms: u64 = sid
                .split('-')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            pipe.cmd("ZADD").arg(IDS).arg(ms).arg(&*entry.id).ignore();
        }
        let cap = i64::try_from(self.max_entries).unwrap_or(i64::MAX);
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(IDS)
            .arg(0)
            .arg(-cap - 1)
            .ignore();
        for ((hash, field), v) in &deltas.ints {
            pipe.cmd("HINCRBY")
                .arg(format!("{COUNTERS}{hash}"))
                .arg(field)
                .arg(*v)
                .ignore();
        }
        for ((hash, field), v) in &deltas.floats {
            pipe.cmd("HINCRBYFLOAT")
                .arg(format!("{COUNTERS}{hash}"))
                .arg(field)
                .arg(*v)
                .ignore();
        }
        for (hash, keep) in &deltas.keep {
            let secs = match keep {
                Keep::Retention => (self.retention_days + 1) * 86_400,
                Keep::Secs(s) => *s,
            };
            pipe.cmd("EXPIRE")
                .arg(format!("{COUNTERS}{hash}"))
                .arg(secs)
                .ignore();
        }
        run::<()>(&self.redis, "request log", WRITE_TIMEOUT, &pipe).await
    }

    /// The stream id of the newest entry with this request id.
    async fn locate(&self, id: &str) -> Result<Option<(String, Entry)>, String> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZSCORE").arg(IDS).arg(id);
        let (score,): (Option<f64>,) = run(&self.redis, "request log", READ_TIMEOUT, &pipe).await?;
        let Some(ms) = score.map(|s| s as u64) else {
            return Ok(None);
        };
        let mut pipe = redis::pipe();
        pipe.cmd("XREVRANGE")
            .arg(STREAM)
            .arg(format!("{ms}-{}", u64::MAX))
            .arg(format!("{ms}-0"));
        let (reply,): (StreamRangeReply,) =
            run(&self.redis, "request log", READ_TIMEOUT, &pipe).await?;
        Ok(reply.ids.into_iter().find_map(|s| {
            let e = parse(&s.map)?;
            (e.id == id).then_some((s.id, e))
        }))
    }

    pub async fn get(&self, id: String) -> Result<Option<Entry>, String> {
        Ok(self.locate(&id).await?.map(|(_, e)| e))
    }

    pub async fn list(&self, q: Query) -> Result<Page, ReadError> {
        let mut end = match &q.after {
            None => "+".to_owned(),
            Some(id) => match self.locate(id).await.map_err(ReadError::Store)? {
                Some((sid, _)) => format!("({sid}"),
                None => return Err(ReadError::UnknownCursor),
            },
        };
        let mut data = Vec::new();
        let mut scanned = 0u64;
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("XREVRANGE")
                .arg(STREAM)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(CHUNK);
            let (reply,): (StreamRangeReply,) =
                run(&self.redis, "request log", READ_TIMEOUT, &pipe)
                    .await
                    .map_err(ReadError::Store)?;
            let n = reply.ids.len();
            for s in reply.ids {
                end = format!("({}", s.id);
                let Some(e) = parse(&s.map) else { continue };
                if !q.matches(&e) {
                    continue;
                }
                if data.len() == q.limit {
                    return Ok(Page {
                        data,
                        has_more: true,
                    });
                }
                data.push(e);
            }
            scanned += n as u64;
            if n < CHUNK || scanned >= self.max_entries.saturating_mul(2) {
                return Ok(Page {
                    data,
                    has_more: false,
                });
            }
        }
    }

    pub async fn counters(&self, hashes: Vec<String>) -> Result<Vec<Hash>, String> {
        let mut out = Vec::with_capacity(hashes.len());
        // A year of days in pipelines of 100.
        for part in hashes.chunks(100) {
            let mut pipe = redis::pipe();
            for h in part {
                pipe.cmd("HGETALL").arg(format!("{COUNTERS}{h}"));
            }
            let got: Vec<HashMap<String, String>> =
                run(&self.redis, "usage report", READ_TIMEOUT, &pipe).await?;
            out.extend(got.into_iter().map(|m| {
                m.into_iter()
                    .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k, v)))
                    .collect::<Hash>()
            }));
        }
        Ok(out)
    }
}

fn parse(map: &HashMap<String, redis::Value>) -> Option<Entry> {
    match map.get("e")? {
        redis::Value::BulkString(b) => serde_json::from_slice(b).ok(),
        redis::Value::SimpleString(s) => serde_json::from_str(s).ok(),
        _ => None,
    }
}
