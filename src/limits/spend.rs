//! Spend and usage per key per budget period.
//!
//! Periods are fixed windows of `budget_period` aligned to the Unix epoch (a `30d` budget resets
//! every 30 days counted from 1970-01-01). With Redis, every replica adds to one hash per key and
//! period (`aigw:usage:{limits}:<key id>:<period start>`, in the rate limits' hash slot: spend, requests, input and output tokens) and the
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

use crate::state::keys::CARRY;

pub fn redis_key(key_id: &str, period: Duration) -> String {
    crate::state::keys::usage(key_id, period_bounds(period).0)
}

fn local_key(key_id: &str, period: Duration) -> String {
    let mut s = String::new();
    write_local_key(&mut s, key_id, period);
    s
}

/// `{key id}:{period start}` into `s` (no `format!`: named on every answer of a key).
fn write_local_key(s: &mut String, key_id: &str, period: Duration) {
    let mut n = itoa::Buffer::new();
    let start = n.format(period_bounds(period).0);
    s.reserve(key_id.len() + 1 + start.len());
    s.push_str(key_id);
    s.push(':');
    s.push_str(start);
}

/// This process's totals by `{key id}:{period start}`, and a buffer to name one in: an answer
/// adds to its key's totals without an allocation (docs/benchmarks.md, "What changed what").
#[derive(Default)]
struct Local {
    totals: rustc_hash::FxHashMap<String, Totals>,
    name: String,
}

impl Local {
    /// `key_id`'s totals of its current period, if it has any.
    fn get(&mut self, key_id: &str, period: Duration) -> Option<Totals> {
        self.name.clear();
        write_local_key(&mut self.name, key_id, period);
        self.totals.get(self.name.as_str()).copied()
    }

    /// Change `key_id`'s totals of its current period (made when absent).
    fn add(&mut self, key_id: &str, period: Duration, f: impl FnOnce(&mut Totals)) {
        self.name.clear();
        write_local_key(&mut self.name, key_id, period);
        match self.totals.get_mut(self.name.as_str()) {
            Some(t) => f(t),
            None => {
                let mut t = Totals::default();
                f(&mut t);
                self.totals.insert(self.name.clone(), t);
            }
        }
    }
}

pub struct Spend {
    redis: Option<Arc<Redis>>,
    store: Option<Store>,
    local: Mutex<Local>,
    dirty: AtomicBool,
}

impl Spend {
    pub fn new(redis: Option<Arc<Redis>>, store: Option<Store>) -> Self {
        Self {
            redis,
            store,
            local: Mutex::new(Local::default()),
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
                            m.totals.insert(k, t);
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
                .totals
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
            m.add(key_id, period, |t| {
                t.spend_usd += cost;
                t.requests += 1;
                t.input_tokens += usage.input;
                t.output_tokens += usage.output;
            });
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
            .and_then(|mut m| m.get(key_id, period))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_add_up_by_key_in_the_current_period() {
        let spend = Spend::new(None, None);
        let p = DEFAULT_PERIOD;
        let usage = |input, output| Usage {
            input,
            output,
            ..Usage::default()
        };
        spend.record_local("key_a", p, usage(10, 20), 0.5);
        spend.record_local("key_a", p, usage(1, 2), 0.25);
        spend.record_local("key_b", p, usage(3, 4), 1.0);
        let a = spend.local_totals("key_a", p);
        assert_eq!(
            (a.spend_usd, a.requests, a.input_tokens, a.output_tokens),
            (0.75, 2, 11, 22)
        );
        assert_eq!(spend.local_totals("key_b", p).requests, 1);
        assert_eq!(spend.local_totals("key_c", p), Totals::default());
    }

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
