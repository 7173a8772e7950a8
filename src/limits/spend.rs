//! Spend and usage per key per budget period.
//!
//! Periods are fixed windows of `budget_period` aligned to the Unix epoch (a `30d` budget resets
//! every 30 days counted from 1970-01-01). With Redis, every replica adds to one hash per key and
//! period (`aigw:usage:{key}:{period_start}`: spend, requests, input and output tokens) and the
//! budget check reads it inside the rate-limit script. Without Redis, totals are kept in process
//! and written to the embedded store once a second (and at shutdown), so at most a second of
//! spend can be lost by a crash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::{REDIS_TIMEOUT, Redis};
use crate::store::{Store, Table};
use crate::usage::Usage;

pub use crate::config::DEFAULT_BUDGET_PERIOD as DEFAULT_PERIOD;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub spend_usd: f64,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

use crate::clock::unix_ms;

/// Start (unix ms) and end of the period containing now.
pub fn period_bounds(period: Duration) -> (u64, u64) {
    let p = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    let now = unix_ms();
    let start = now - now % p;
    (start, start.saturating_add(p))
}

/// Milliseconds until the current period ends.
pub fn until_period_end(period: Duration) -> u64 {
    period_bounds(period).1.saturating_sub(unix_ms())
}

/// Add one answer's spend and usage to the key's hash of the period: `HINCRBYFLOAT spend`,
/// three `HINCRBY`, `EXPIRE` (two periods).
pub fn push_record(
    pipe: &mut redis::Pipeline,
    key_id: &str,
    period: Duration,
    usage: Usage,
    cost: f64,
) {
    let k = redis_key(key_id, period);
    let ttl = period.as_secs().saturating_mul(2).max(60);
    pipe.cmd("HINCRBYFLOAT")
        .arg(&k)
        .arg("spend")
        .arg(cost)
        .ignore();
    pipe.cmd("HINCRBY").arg(&k).arg("requests").arg(1).ignore();
    pipe.cmd("HINCRBY")
        .arg(&k)
        .arg("input_tokens")
        .arg(usage.input)
        .ignore();
    pipe.cmd("HINCRBY")
        .arg(&k)
        .arg("output_tokens")
        .arg(usage.output)
        .ignore();
    pipe.cmd("EXPIRE").arg(&k).arg(ttl).ignore();
}

/// Add one usage hash to another and drop it (keeping its expiry when the target has none).
static CARRY: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
for i = 1, #h, 2 do redis.call('HINCRBYFLOAT', KEYS[2], h[i], h[i + 1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 and redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

pub fn redis_key(key_id: &str, period: Duration) -> String {
    format!("aigw:usage:{key_id}:{}", period_bounds(period).0)
}

fn local_key(key_id: &str, period: Duration) -> String {
    // Made on every answer of a key: no `format!` (docs/benchmarks.md, "What changed what").
    let mut n = itoa::Buffer::new();
    let start = n.format(period_bounds(period).0);
    let mut s = String::with_capacity(key_id.len() + 1 + start.len());
    s.push_str(key_id);
    s.push(':');
    s.push_str(start);
    s
}

pub struct Spend {
    redis: Option<Arc<Redis>>,
    store: Option<Store>,
    local: Mutex<rustc_hash::FxHashMap<String, Totals>>,
    dirty: AtomicBool,
}

impl Spend {
    pub fn new(redis: Option<Arc<Redis>>, store: Option<Store>) -> Self {
        Self {
            redis,
            store,
            local: Mutex::new(rustc_hash::FxHashMap::default()),
            dirty: AtomicBool::new(false),
        }
    }

    /// Load the embedded store's totals (embedded mode, at start).
    pub async fn load(&self) {
        let Some(store) = &self.store else { return };
        match store.scan(Table::Usage, String::new()).await {
            Ok(rows) => {
                if let Ok(mut m) = self.local.lock() {
                    for (k, v) in rows {
                        if let Ok(t) = serde_json::from_str::<Totals>(&v) {
                            m.insert(k, t);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read spend from the embedded store"),
        }
    }

    /// At start: the current period's totals recorded under an id a key no longer has
    /// (`(old id, new id, period)`) are added to its id's and dropped. Redis: one script per key
    /// (atomic, so replicas starting together move them once). Embedded store: one transaction,
    /// before [`Spend::load`].
    pub async fn carry_over(&self, moves: &[(String, String, Duration)]) {
        if let Some(redis) = &self.redis
            && let Some(mut conn) = redis.conn()
        {
            for (old, new, period) in moves {
                let mut inv = CARRY.prepare_invoke();
                inv.key(redis_key(old, *period))
                    .key(redis_key(new, *period));
                match tokio::time::timeout(REDIS_TIMEOUT * 4, inv.invoke_async::<i64>(&mut conn))
                    .await
                {
                    Ok(Ok(1)) => {
                        tracing::info!(from = %old, to = %new, "spend of the period carried to the key's id")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot carry spend over to a key's id")
                    }
                    Err(_) => tracing::warn!("cannot carry spend over to a key's id: timed out"),
                }
            }
        }
        let Some(store) = &self.store else { return };
        let moves: Vec<(String, String)> = moves
            .iter()
            .map(|(old, new, period)| (local_key(old, *period), local_key(new, *period)))
            .collect();
        let moved = store
            .transact(Table::Usage, move |t| {
                use redb::ReadableTable;
                let read =
                    |t: &redb::Table<&str, &str>, k: &str| -> Result<Option<Totals>, String> {
                        Ok(t.get(k)
                            .map_err(|e| e.to_string())?
                            .and_then(|v| serde_json::from_str(v.value()).ok()))
                    };
                let mut moved = 0usize;
                for (old, new) in &moves {
                    let Some(from) = read(t, old)? else { continue };
                    let mut to = read(t, new)?.unwrap_or_default();
                    to.spend_usd += from.spend_usd;
                    to.requests += from.requests;
                    to.input_tokens += from.input_tokens;
                    to.output_tokens += from.output_tokens;
                    let json = serde_json::to_string(&to).map_err(|e| e.to_string())?;
                    t.insert(new.as_str(), json.as_str())
                        .map_err(|e| e.to_string())?;
                    t.remove(old.as_str()).map_err(|e| e.to_string())?;
                    moved += 1;
                }
                Ok(moved)
            })
            .await;
        match moved {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "spend of the period carried to the keys' ids"),
            Err(e) => tracing::warn!(error = %e, "cannot carry spend over to the keys' ids"),
        }
    }

    /// Write changed totals to the embedded store (run once a second and at shutdown).
    pub async fn flush(&self) {
        let Some(store) = &self.store else { return };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let rows: Vec<(String, Option<String>)> = match self.local.lock() {
            Ok(m) => m
                .iter()
                .filter_map(|(k, t)| serde_json::to_string(t).ok().map(|v| (k.clone(), Some(v))))
                .collect(),
            Err(_) => return,
        };
        if let Err(e) = store.put_many(Table::Usage, rows).await {
            self.dirty.store(true, Ordering::Release);
            tracing::warn!(error = %e, "cannot write spend to the embedded store");
        }
    }

    /// Add one answer's usage and cost to the key's current period.
    pub async fn record(&self, key_id: &str, period: Duration, usage: Usage, cost: f64) {
        self.record_local(key_id, period, usage, cost);
        if let Some(redis) = &self.redis
            && let Some(mut conn) = redis.conn()
        {
            let mut pipe = redis::pipe();
            push_record(&mut pipe, key_id, period, usage, cost);
            match tokio::time::timeout(REDIS_TIMEOUT * 4, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => redis.report_error("spend", &e, e.is_io_error()),
                Err(_) => redis.report_error("spend", &"timed out", true),
            }
        }
    }

    /// The Redis spend is written to, if any.
    pub fn redis(&self) -> Option<&Arc<Redis>> {
        self.redis.as_ref()
    }

    /// Add to this process's totals (always kept: the budget check's fallback and, without
    /// Redis, what the embedded store is written from).
    pub fn record_local(&self, key_id: &str, period: Duration, usage: Usage, cost: f64) {
        if let Ok(mut m) = self.local.lock() {
            let t = m.entry(local_key(key_id, period)).or_default();
            t.spend_usd += cost;
            t.requests += 1;
            t.input_tokens += usage.input;
            t.output_tokens += usage.output;
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Totals of the key's current period (Redis when it answers, else this process's).
    pub async fn totals(&self, key_id: &str, period: Duration) -> Totals {
        if let Some(redis) = &self.redis
            && let Some(mut conn) = redis.conn()
        {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(redis_key(key_id, period));
            let fut = cmd.query_async::<HashMap<String, String>>(&mut conn);
            if let Ok(Ok(h)) = tokio::time::timeout(REDIS_TIMEOUT, fut).await {
                let f = |k: &str| h.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                return Totals {
                    spend_usd: f("spend"),
                    requests: f("requests") as u64,
                    input_tokens: f("input_tokens") as u64,
                    output_tokens: f("output_tokens") as u64,
                };
            }
        }
        self.local_totals(key_id, period)
    }

    /// This process's view (the embedded mode's truth).
    pub fn local_totals(&self, key_id: &str, period: Duration) -> Totals {
        self.local
            .lock()
            .ok()
            .and_then(|m| m.get(&local_key(key_id, period)).copied())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spend_under_a_former_id_is_added_to_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = DEFAULT_PERIOD;
        let totals = |spend, requests| {
            serde_json::to_string(&Totals {
                spend_usd: spend,
                requests,
                input_tokens: 1,
                output_tokens: 2,
            })
            .unwrap()
        };
        store
            .put_many(
                Table::Usage,
                vec![
                    (local_key("cfg_app", p), Some(totals(2.5, 7))),
                    (local_key("cfg_new", p), Some(totals(1.0, 1))),
                ],
            )
            .await
            .unwrap();
        let spend = Spend::new(None, Some(store.clone()));
        let moves = [("cfg_app".to_owned(), "cfg_new".to_owned(), p)];
        spend.carry_over(&moves).await;
        spend.load().await;
        let t = spend.local_totals("cfg_new", p);
        assert_eq!((t.spend_usd, t.requests, t.input_tokens), (3.5, 8, 2));
        assert_eq!(spend.local_totals("cfg_app", p), Totals::default());
        // Once moved, a second start moves nothing.
        spend.carry_over(&moves).await;
        let again = Spend::new(None, Some(store));
        again.load().await;
        assert_eq!(again.local_totals("cfg_new", p).spend_usd, 3.5);
    }
}
