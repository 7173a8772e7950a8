//! A per-deployment circuit breaker on atomics (no lock on the request path).
//!
//! Closed → Open after `failure_threshold` consecutive failures → after `open_for`, Half-open:
//! exactly one request (the probe, elected by compare-and-swap) goes through → Closed on its
//! success, Open again on its failure. Times are milliseconds on a monotonic clock passed in by
//! the caller, so the state machine is tested without sleeping.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

/// What `admit` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go.
    Yes,
    /// This request is the half-open probe.
    Probe,
    /// Open (or a probe is already out): `retry_in_ms` until it may half-open.
    No { retry_in_ms: u64 },
}

#[derive(Debug)]
pub struct Breaker {
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    opened_at_ms: AtomicU64,
    threshold: u32,
    open_for_ms: u64,
}

impl Breaker {
    pub fn new(threshold: u32, open_for_ms: u64) -> Self {
        Self {
            state: AtomicU8::new(CircuitState::Closed as u8),
            consecutive_failures: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            threshold: threshold.max(1),
            open_for_ms,
        }
    }

    pub fn state(&self) -> CircuitState {
        match self.state.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            1 => CircuitState::HalfOpen,
            _ => CircuitState::Open,
        }
    }

    /// Without changing anything: would a request be let through now?
    pub fn would_admit(&self, now_ms: u64) -> bool {
        match self.state() {
            CircuitState::Closed => true,
            CircuitState::HalfOpen => false,
            CircuitState::Open => {
                now_ms.saturating_sub(self.opened_at_ms.load(Ordering::Acquire)) >= self.open_for_ms
            }
        }
    }

    /// Milliseconds until an open circuit may half-open (0 when it may now or is closed).
    pub fn retry_in_ms(&self, now_ms: u64) -> u64 {
        match self.state() {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => self.open_for_ms.min(1000),
            CircuitState::Open => {
                let since = now_ms.saturating_sub(self.opened_at_ms.load(Ordering::Acquire));
                self.open_for_ms.saturating_sub(since)
            }
        }
    }

    pub fn admit(&self, now_ms: u64) -> Admission {
        match self.state() {
            CircuitState::Closed => Admission::Yes,
            CircuitState::HalfOpen => Admission::No {
                retry_in_ms: self.retry_in_ms(now_ms),
            },
            CircuitState::Open => {
                let wait = self.retry_in_ms(now_ms);
                if wait > 0 {
                    return Admission::No { retry_in_ms: wait };
                }
                match self.state.compare_exchange(
                    CircuitState::Open as u8,
                    CircuitState::HalfOpen as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => Admission::Probe,
                    Err(_) => Admission::No {
                        retry_in_ms: self.retry_in_ms(now_ms),
                    },
                }
            }
        }
    }

    pub fn on_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.state
            .store(CircuitState::Closed as u8, Ordering::Release);
    }

    /// Record a failure; returns true when this failure opened the circuit.
    pub fn on_failure(&self, now_ms: u64) -> bool {
        if self.state() == CircuitState::HalfOpen {
            self.opened_at_ms.store(now_ms, Ordering::Release);
            self.state
                .store(CircuitState::Open as u8, Ordering::Release);
            return true;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold && self.state() == CircuitState::Closed {
            self.opened_at_ms.store(now_ms, Ordering::Release);
            self.state
                .store(CircuitState::Open as u8, Ordering::Release);
            return true;
        }
        false
    }

    /// A probe that ended without a verdict (e.g. the caller's own 4xx): let the next one try.
    pub fn release_probe(&self) {
        let _ = self.state.compare_exchange(
            CircuitState::HalfOpen as u8,
            CircuitState::Open as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_through_one_probe() {
        let b = Breaker::new(3, 1000);
        assert_eq!(b.admit(0), Admission::Yes);
        assert!(!b.on_failure(10));
        assert!(!b.on_failure(20));
        assert!(b.on_failure(30));
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.admit(500), Admission::No { retry_in_ms: 530 });
        assert!(!b.would_admit(1029));
        assert!(b.would_admit(1030));
        assert_eq!(b.admit(1030), Admission::Probe);
        // Only one probe at a time.
        assert!(matches!(b.admit(1031), Admission::No { .. }));
        b.on_success();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.admit(1032), Admission::Yes);
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, 100);
        assert!(b.on_failure(0));
        assert_eq!(b.admit(100), Admission::Probe);
        assert!(b.on_failure(150));
        assert_eq!(b.state(), CircuitState::Open);
        assert!(matches!(b.admit(200), Admission::No { retry_in_ms: 50 }));
        assert_eq!(b.admit(250), Admission::Probe);
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(2, 100);
        b.on_failure(0);
        b.on_success();
        assert!(!b.on_failure(1));
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
