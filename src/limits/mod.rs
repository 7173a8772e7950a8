//! Requests- and tokens-per-minute limits and spend budgets.
//!
//! Every limit is a GCRA bucket ("generic cell rate algorithm": one theoretical arrival time per
//! bucket) of `limit` units per minute with a burst of a whole minute's worth. A request takes 1
//! unit from each requests bucket and its estimated tokens from each tokens bucket — the caller
//! key's `rpm`/`tpm` and the model's `rate_limits.models` ceiling — all or nothing. Token buckets
//! are corrected with the real usage when the answer ends ([`Limiter::adjust`]).
//!
//! With `rate_limits.shared` and Redis, buckets live in Redis and one Lua script checks and takes
//! from all of a request's buckets, and reads its key's spend, in one round trip. Otherwise (or
//! while Redis fails, with `on_redis_error: local`) buckets live in process, in sharded maps.

pub mod spend;

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::monotonic_ms as now_ms;
use crate::config::{OnRedisError, RateLimitsConfig};
use crate::error::{Error, LimitReason};
use crate::state::{REDIS_TIMEOUT, Redis};

/// The window every limit is expressed over.
pub const PERIOD_MS: u64 = 60_000;
const SHARDS: usize = 32;

/// One bucket a request takes from.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Its name (`k:<key id>:rpm`, `m:<model>:tpm` ...): shared, as a key's names are made once.
    pub key: Arc<str>,
    pub limit: u64,
    pub cost: u64,
    pub reason: LimitReason,
}

/// The state of one bucket after a check.
#[derive(Debug, Clone, Copy, Default)]
pub struct BucketState {
    pub remaining: u64,
    pub reset_ms: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub allowed: bool,
    pub retry_after_ms: u64,
    /// The bucket that refused (index into the buckets given).
    pub denied: Option<usize>,
    pub budget_exceeded: bool,
    pub states: Vec<BucketState>,
}

pub struct Limiter {
    shards: Vec<Mutex<FxHashMap<Arc<str>, f64>>>,
    /// The process's Redis; buckets live there while `shared` is on.
    redis: Option<Arc<Redis>>,
    /// `rate_limits.shared` and `on_redis_error`: a reload changes them ([`Limiter::set_mode`]).
    shared: AtomicBool,
    on_error: AtomicU8,
    fallback_logged: AtomicBool,
    gcra: redis::Script,
    adjust: redis::Script,
}

impl Limiter {
    pub fn new(cfg: &RateLimitsConfig, redis: Option<Arc<Redis>>) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
            redis,
            shared: AtomicBool::new(cfg.shared),
            on_error: AtomicU8::new(cfg.on_redis_error as u8),
            fallback_logged: AtomicBool::new(false),
            gcra: redis::Script::new(include_str!("gcra.lua")),
            adjust: redis::Script::new(include_str!("adjust.lua")),
        }
    }

    /// Whether buckets are counted in Redis (all replicas together).
    pub fn is_shared(&self) -> bool {
        self.shared_redis().is_some()
    }

    /// Apply a reloaded `rate_limits.shared` and `on_redis_error`. Turning `shared` on or off
    /// moves counting between Redis and this process: the buckets on the other side are not
    /// carried over (each starts from its own state).
    pub fn set_mode(&self, cfg: &RateLimitsConfig) {
        self.shared.store(cfg.shared, Ordering::Relaxed);
        self.on_error
            .store(cfg.on_redis_error as u8, Ordering::Relaxed);
    }

    fn on_redis_error(&self) -> OnRedisError {
        match self.on_error.load(Ordering::Relaxed) {
            x if x == OnRedisError::Deny as u8 => OnRedisError::Deny,
            x if x == OnRedisError::Allow as u8 => OnRedisError::Allow,
            _ => OnRedisError::Local,
        }
    }

    fn shard(&self, key: &str) -> &Mutex<FxHashMap<Arc<str>, f64>> {
        let mut h: usize = 0;
        for b in key.bytes() {
            h = h.wrapping_mul(31).wrapping_add(usize::from(b));
        }
        &self.shards[h % SHARDS]
    }

    /// Check (and on success take from) every bucket. `budget`: (usage hash key in Redis, budget
    /// USD, spend so far as known locally).
    pub async fn check(
        &self,
        buckets: &[Bucket],
        budget: Option<(&str, f64, f64)>,
    ) -> Result<Verdict, Error> {
        if buckets.is_empty() && budget.is_none() {
            return Ok(Verdict {
                allowed: true,
                ..Verdict::default()
            });
        }
        if let Some(redis) = self.shared_redis() {
            match redis.conn() {
                Some(conn) => match self.check_redis(conn, buckets, budget).await {
                    Ok(v) => return Ok(v),
                    Err(e) => redis.report_error("rate limit", &e, true),
                },
                None => redis.report_error("rate limit", &"redis is down", false),
            }
            match self.on_redis_error() {
                OnRedisError::Deny => {
                    return Err(Error::Unavailable {
                        message: "rate limits cannot be checked (Redis is unreachable)".into(),
                        retry_after: Duration::from_secs(1),
                    });
                }
                OnRedisError::Allow => {
                    return Ok(Verdict {
                        allowed: true,
                        states: vec![BucketState::default(); buckets.len()],
                        ..Verdict::default()
                    });
                }
                OnRedisError::Local => {
                    if !self.fallback_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "Redis unreachable: rate limits fall back to counting in this process"
                        );
                    }
                }
            }
        }
        if let Some((_, limit, spent)) = budget
            && spent >= limit
        {
            return Ok(Verdict {
                budget_exceeded: true,
                ..Verdict::default()
            });
        }
        Ok(self.check_local(buckets, now_ms() as f64))
    }

    /// Check and take from `buckets` in Redis only (a deployment's shared capacity): `None` when
    /// they are not shared or Redis failed, and the caller counts in its own process.
    pub async fn check_shared(&self, buckets: &[Bucket]) -> Option<Verdict> {
        let redis = self.shared_redis()?;
        let conn = redis.conn()?;
        match self.check_redis(conn, buckets, None).await {
            Ok(v) => Some(v),
            Err(e) => {
                redis.report_error("deployment capacity", &e, true);
                None
            }
        }
    }

    async fn check_redis(
        &self,
        mut conn: crate::state::RedisConn,
        buckets: &[Bucket],
        budget: Option<(&str, f64, f64)>,
    ) -> Result<Verdict, String> {
        let mut inv = self.gcra.prepare_invoke();
        for b in buckets {
            inv.key(crate::state::keys::rate_limit(&b.key));
        }
        inv.arg(PERIOD_MS).arg(buckets.len());
        for b in buckets {
            inv.arg(b.limit.max(1)).arg(b.cost);
        }
        if let Some((usage_key, limit, _)) = budget {
            inv.key(usage_key).arg(limit);
        }
        let res: Vec<i64> = tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let get = |i: usize| res.get(i).copied().unwrap_or(0).max(0) as u64;
        if get(3) == 1 {
            return Ok(Verdict {
                budget_exceeded: true,
                ..Verdict::default()
            });
        }
        let denied = get(2) as usize;
        Ok(Verdict {
            allowed: get(0) == 1,
            retry_after_ms: get(1),
            denied: (denied > 0).then(|| denied - 1),
            budget_exceeded: false,
            states: (0..buckets.len())
                .map(|i| BucketState {
                    remaining: get(4 + 2 * i),
                    reset_ms: get(5 + 2 * i),
                })
                .collect(),
        })
    }

    /// The same algorithm in process.
    pub fn check_local(&self, buckets: &[Bucket], now: f64) -> Verdict {
        let period = PERIOD_MS as f64;
        let mut v = Verdict {
            allowed: true,
            ..Verdict::default()
        };
        // (the bucket's shard, current TAT, TAT if this request is taken)
        let mut tats = Vec::with_capacity(buckets.len());
        for (i, b) in buckets.iter().enumerate() {
            let emission = period / b.limit.max(1) as f64;
            let shard = self.shard(&b.key);
            let tat = shard
                .lock()
                .map(|m| m.get(&b.key).copied().unwrap_or(0.0))
                .unwrap_or(0.0)
                .max(now);
            let new_tat = tat + emission * b.cost as f64;
            let allow_at = new_tat - period;
            if allow_at > now {
                let wait = (allow_at - now).ceil() as u64;
                if v.allowed || wait > v.retry_after_ms {
                    v.retry_after_ms = wait;
                    v.denied = Some(i);
                }
                v.allowed = false;
            }
            tats.push((shard, tat, new_tat));
        }
        for (b, (shard, tat, new_tat)) in buckets.iter().zip(&tats) {
            let kept = if v.allowed { *new_tat } else { *tat };
            let emission = period / b.limit.max(1) as f64;
            v.states.push(BucketState {
                remaining: ((period - (kept - now)) / emission).floor().max(0.0) as u64,
                reset_ms: (kept - now).ceil().max(0.0) as u64,
            });
            if v.allowed
                && let Ok(mut m) = shard.lock()
            {
                match m.get_mut(&b.key) {
                    Some(t) => *t = kept,
                    None => {
                        m.insert(b.key.clone(), kept);
                    }
                }
            }
        }
        v
    }

    /// Give back (negative) or take (positive) tokens once the real usage is known.
    pub async fn adjust(&self, bucket: &Bucket, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Some(redis) = self.shared_redis()
            && let Some(mut conn) = redis.conn()
        {
            let mut inv = self.adjust.prepare_invoke();
            inv.key(crate::state::keys::rate_limit(&bucket.key))
                .arg(PERIOD_MS)
                .arg(bucket.limit.max(1))
                .arg(delta);
            match tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<i64>(&mut conn)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => redis.report_error("rate limit adjust", &e, e.is_io_error()),
                Err(_) => redis.report_error("rate limit adjust", &"timed out", true),
            }
        }
        self.adjust_local(bucket, delta);
    }

    /// The Redis the buckets live in (`rate_limits.shared`), if any.
    pub fn shared_redis(&self) -> Option<&Arc<Redis>> {
        self.redis
            .as_ref()
            .filter(|_| self.shared.load(Ordering::Relaxed))
    }

    /// Add the correction of `bucket` by `delta` tokens to `pipe` (an `EVALSHA` of the adjust
    /// script, which must be loaded: a `NOSCRIPT` answer means [`Limiter::adjust`] again).
    pub fn push_adjust(&self, pipe: &mut redis::Pipeline, bucket: &Bucket, delta: i64) {
        let mut inv = self.adjust.prepare_invoke();
        inv.key(crate::state::keys::rate_limit(&bucket.key))
            .arg(PERIOD_MS)
            .arg(bucket.limit.max(1))
            .arg(delta);
        pipe.invoke_script(&inv).ignore();
    }

    /// The correction in this process's buckets (no Redis, or Redis failed).
    pub fn adjust_local(&self, bucket: &Bucket, delta: i64) {
        let emission = PERIOD_MS as f64 / bucket.limit.max(1) as f64;
        if let Ok(mut m) = self.shard(&bucket.key).lock()
            && let Some(tat) = m.get_mut(&bucket.key)
        {
            *tat += emission * delta as f64;
        }
    }
}

/// A duration in OpenAI's `x-ratelimit-reset-*` form: `850ms`, `6s`, `1m30s`, `6m0s`.
pub fn openai_duration(ms: u64) -> String {
    String::from_utf8_lossy(duration_text(ms).as_bytes()).into_owned()
}

/// [`openai_duration`] as a header value, inline (it is on every request with a limit, twice).
pub fn openai_duration_header(ms: u64) -> crate::headers::OwnValue {
    crate::headers::OwnValue::inline(duration_text(ms))
}

/// An OpenAI duration written with itoa into a fixed buffer (`u64::MAX` ms is 19 bytes).
fn duration_text(ms: u64) -> crate::headers::InlineText {
    let mut d = crate::headers::InlineText::new();
    let mut n = itoa::Buffer::new();
    if ms < 1000 {
        d.push(n.format(ms).as_bytes());
        d.push(b"ms");
        return d;
    }
    let secs = ms.div_ceil(1000);
    if secs >= 60 {
        d.push(n.format(secs / 60).as_bytes());
        d.push(b"m");
    }
    d.push(n.format(secs % 60).as_bytes());
    d.push(b"s");
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter {
        Limiter::new(&RateLimitsConfig::default(), None)
    }

    fn b(key: &str, limit: u64, cost: u64, reason: LimitReason) -> Bucket {
        Bucket {
            key: key.into(),
            limit,
            cost,
            reason,
        }
    }

    #[test]
    fn exactly_the_limit_per_minute() {
        let l = limiter();
        let rpm = [b("k:rpm", 10, 1, LimitReason::Requests)];
        let mut ok = 0;
        for _ in 0..25 {
            if l.check_local(&rpm, 1_000.0).allowed {
                ok += 1;
            }
        }
        assert_eq!(ok, 10);
        let v = l.check_local(&rpm, 1_000.0);
        assert!(!v.allowed);
        assert_eq!(v.retry_after_ms, 6_000);
        // One emission interval later, one more.
        assert!(l.check_local(&rpm, 7_000.0).allowed);
        assert!(!l.check_local(&rpm, 7_000.0).allowed);
    }

    #[test]
    fn all_or_nothing_and_tokens() {
        let l = limiter();
        let both = [
            b("k:rpm", 100, 1, LimitReason::Requests),
            b("k:tpm", 1000, 600, LimitReason::Tokens),
        ];
        let v = l.check_local(&both, 0.0);
        assert!(v.allowed);
        assert_eq!(v.states[1].remaining, 400);
        let v = l.check_local(&both, 0.0);
        assert!(!v.allowed);
        assert_eq!(v.denied, Some(1));
        // The refused request took nothing from the requests bucket.
        assert_eq!(v.states[0].remaining, 99);
    }

    #[tokio::test]
    async fn adjust_gives_tokens_back() {
        let l = limiter();
        let tpm = [b("k:tpm", 1000, 900, LimitReason::Tokens)];
        assert!(l.check_local(&tpm, 0.0).allowed);
        l.adjust(&tpm[0], -800).await;
        let again = [b("k:tpm", 1000, 800, LimitReason::Tokens)];
        assert!(l.check_local(&again, 0.0).allowed);
    }

    #[test]
    fn openai_durations() {
        assert_eq!(openai_duration(850), "850ms");
        assert_eq!(openai_duration(6_000), "6s");
        assert_eq!(openai_duration(360_000), "6m0s");
        assert_eq!(openai_duration(61_500), "1m2s");
        assert_eq!(openai_duration(u64::MAX), "307445734561825m52s");
        assert_eq!(openai_duration_header(61_500), "1m2s");
        assert_eq!(openai_duration_header(0), "0ms");
        assert_eq!(crate::headers::number(0), "0");
        assert_eq!(crate::headers::number(u64::MAX), "18446744073709551615");
    }
}
