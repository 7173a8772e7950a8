//! What the router knows of each deployment at run time: its breaker, a latency EWMA, in-flight
//! and request counts, and a one-minute window of requests and tokens for its `rpm`/`tpm`
//! capacity. All atomics: reading or updating it takes no lock. States are kept across
//! configuration reloads (keyed by provider and upstream model) so a reload does not forget that a
//! deployment is failing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::breaker::Breaker;
use crate::error::LimitReason;

/// EWMA weight of a new latency sample.
const EWMA_ALPHA: f64 = 0.2;

#[derive(Debug)]
pub struct DeploymentState {
    pub breaker: Breaker,
    /// f64 bits of the latency EWMA in milliseconds; 0 = no sample yet.
    ewma_ms: AtomicU64,
    in_flight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    window_minute: AtomicU64,
    window_requests: AtomicU64,
    window_tokens: AtomicU64,
    /// Shared capacity (Redis): at its limit until this time (ms), for requests (0) or tokens (1).
    full_until_ms: AtomicU64,
    full_reason: std::sync::atomic::AtomicU8,
    /// Names of its shared capacity buckets (`d:<provider>:<model>:rpm`, `…:tpm`), made once.
    bucket_keys: OnceLock<(std::sync::Arc<str>, std::sync::Arc<str>)>,
}

impl DeploymentState {
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            breaker: Breaker::new(
                failure_threshold,
                u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX),
            ),
            ewma_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            window_minute: AtomicU64::new(0),
            window_requests: AtomicU64::new(0),
            window_tokens: AtomicU64::new(0),
            full_until_ms: AtomicU64::new(0),
            full_reason: std::sync::atomic::AtomicU8::new(0),
            bucket_keys: OnceLock::new(),
        }
    }

    /// The shared capacity bucket names of this deployment.
    pub fn bucket_keys(
        &self,
        provider: &str,
        model: &str,
    ) -> &(std::sync::Arc<str>, std::sync::Arc<str>) {
        self.bucket_keys.get_or_init(|| {
            (
                format!("d:{provider}:{model}:rpm").into(),
                format!("d:{provider}:{model}:tpm").into(),
            )
        })
    }

    /// Found at its shared limit: skipped until `until_ms`.
    pub fn mark_full(&self, until_ms: u64, reason: LimitReason) {
        self.full_reason
            .store(u8::from(reason == LimitReason::Tokens), Ordering::Relaxed);
        self.full_until_ms.store(until_ms, Ordering::Release);
    }

    /// Which shared limit it is at now, if any.
    pub fn full(&self, now_ms: u64) -> Option<LimitReason> {
        (self.full_until_ms.load(Ordering::Acquire) > now_ms).then(|| {
            if self.full_reason.load(Ordering::Relaxed) == 1 {
                LimitReason::Tokens
            } else {
                LimitReason::Requests
            }
        })
    }

    /// Latency EWMA in ms (`None` before the first sample).
    pub fn latency_ms(&self) -> Option<f64> {
        let v = f64::from_bits(self.ewma_ms.load(Ordering::Relaxed));
        (v > 0.0).then_some(v)
    }

    pub fn record_latency(&self, d: Duration) {
        let sample = d.as_secs_f64() * 1000.0;
        let sample = sample.max(0.001);
        let old = f64::from_bits(self.ewma_ms.load(Ordering::Relaxed));
        let new = if old > 0.0 {
            old * (1.0 - EWMA_ALPHA) + sample * EWMA_ALPHA
        } else {
            sample
        };
        // A lost race loses one sample; that is fine for an average.
        self.ewma_ms.store(new.to_bits(), Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Count a request going out; the guard counts it back in when dropped.
    pub fn start(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn record_failure(&self, now_ms: u64) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.breaker.on_failure(now_ms)
    }

    fn roll_window(&self, minute: u64) {
        let cur = self.window_minute.load(Ordering::Acquire);
        if cur != minute
            && self
                .window_minute
                .compare_exchange(cur, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.window_requests.store(0, Ordering::Release);
            self.window_tokens.store(0, Ordering::Release);
        }
    }

    /// Which of the deployment's `rpm`/`tpm` one more request of `tokens` would go over this
    /// minute (`rpm` first), or `None` when it fits.
    pub fn over_capacity(
        &self,
        rpm: Option<u64>,
        tpm: Option<u64>,
        tokens: u64,
        now_ms: u64,
    ) -> Option<LimitReason> {
        if rpm.is_none() && tpm.is_none() {
            return None;
        }
        self.roll_window(now_ms / 60_000);
        if rpm.is_some_and(|r| self.window_requests.load(Ordering::Acquire) >= r) {
            Some(LimitReason::Requests)
        } else if tpm.is_some_and(|t| self.window_tokens.load(Ordering::Acquire) + tokens > t) {
            Some(LimitReason::Tokens)
        } else {
            None
        }
    }

    /// Count a request of `tokens` against this minute's capacity.
    pub fn reserve(&self, tokens: u64, now_ms: u64) {
        self.roll_window(now_ms / 60_000);
        self.window_requests.fetch_add(1, Ordering::AcqRel);
        self.window_tokens.fetch_add(tokens, Ordering::AcqRel);
    }
}

/// Decrements the in-flight count when the request (or its stream) ends.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<DeploymentState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_moves_toward_samples() {
        let s = DeploymentState::new(5, Duration::from_secs(1));
        assert_eq!(s.latency_ms(), None);
        s.record_latency(Duration::from_millis(100));
        assert_eq!(s.latency_ms(), Some(100.0));
        for _ in 0..50 {
            s.record_latency(Duration::from_millis(10));
        }
        let l = s.latency_ms().unwrap();
        assert!(l < 11.0, "{l}");
    }

    #[test]
    fn capacity_window() {
        let s = DeploymentState::new(5, Duration::from_secs(1));
        assert_eq!(s.over_capacity(Some(2), None, 0, 0), None);
        s.reserve(10, 0);
        s.reserve(10, 1);
        assert_eq!(
            s.over_capacity(Some(2), None, 0, 2),
            Some(LimitReason::Requests)
        );
        assert_eq!(s.over_capacity(Some(2), None, 0, 60_000), None);
        assert_eq!(
            s.over_capacity(None, Some(5), 6, 60_000),
            Some(LimitReason::Tokens)
        );
        assert_eq!(s.over_capacity(None, Some(5), 5, 60_000), None);
    }

    #[test]
    fn in_flight_guard() {
        let s = std::sync::Arc::new(DeploymentState::new(5, Duration::from_secs(1)));
        let g = s.start();
        assert_eq!(s.in_flight(), 1);
        drop(g);
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.requests(), 1);
    }
}
