//! Wrong master keys slow down the client that sends them: after [`FREE_FAILURES`] failed
//! sign-ins from one address (the TCP peer), each further attempt must wait — 30 s after the
//! fifth failure, doubling with each next failure up to 15 minutes — and is answered 429 with
//! `retry-after` meanwhile, even with the right key. The count is forgotten after 15 minutes
//! without a failure, or on a successful sign-in. Kept in this process's memory (per replica).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed sign-ins allowed from one address before it has to wait.
pub const FREE_FAILURES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Quiet time after which an address's failures are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most (beyond it, the ones forgotten anyway are dropped, then the oldest).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Default)]
pub struct Throttle {
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
}

/// How long an address with `count` failures waits after its last one.
fn wait_for(count: u32) -> Duration {
    if count < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES).min(10);
    FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT)
}

impl Throttle {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(wait)` while `addr` must wait before trying again.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.map();
        let Some(f) = map.get(&addr) else {
            return Ok(());
        };
        let until = f.last + wait_for(f.count);
        if now < until {
            Err(until - now)
        } else {
            Ok(())
        }
    }

    /// A wrong key from `addr`; how long it must now wait (zero while it has free attempts).
    pub fn failed(&self, addr: IpAddr, now: Instant) -> Duration {
        let mut map = self.map();
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last).map(|(a, _)| *a)
            {
                map.remove(&oldest);
            }
        }
        let f = map.entry(addr).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        wait_for(f.count)
    }

    /// A successful sign-in: the address's failures are forgotten.
    pub fn succeeded(&self, addr: IpAddr) {
        self.map().remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_free_failures_then_doubling_waits() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(t.failed(a, t0), Duration::ZERO);
            assert!(t.check(a, t0).is_ok());
        }
        assert_eq!(t.failed(a, t0), Duration::from_secs(30));
        assert_eq!(t.check(a, t0), Err(Duration::from_secs(30)));
        assert!(t.check(b, t0).is_ok(), "other addresses are not slowed");
        let t1 = t0 + Duration::from_secs(31);
        assert!(t.check(a, t1).is_ok());
        assert_eq!(t.failed(a, t1), Duration::from_secs(60));
        assert_eq!(wait_for(40), MAX_WAIT);
        t.succeeded(a);
        assert!(t.check(a, t1).is_ok());
        // Forgotten after a quiet while.
        for _ in 0..5 {
            t.failed(b, t0);
        }
        assert_eq!(t.failed(b, t0 + FORGET_AFTER), Duration::ZERO);
    }
}
