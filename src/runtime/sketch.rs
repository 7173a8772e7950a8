//! A bounded, lock-free sketch of a model's recent latencies, for `hedge.after: p95` and the
//! like.
//!
//! Latencies (in microseconds) fall into log-linear buckets: eight buckets per power of two, so
//! a bucket is at most 12.5 % wide, from 1 µs to about 18 minutes (bigger values share the last
//! bucket). Two windows of counts: samples go into the current one; when it holds [`WINDOW`]
//! samples the other one is cleared and becomes current. A quantile is read over both, so it
//! reflects the last `WINDOW` to `2 × WINDOW` samples, and the memory is fixed (2 × 240 counters).
//! Recording is an index computation and two relaxed atomic additions; a quantile is a scan of
//! the buckets, done at most once per [`REFRESH`] samples (its result is kept).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two (as bits).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered: 2^0 .. 2^30 µs.
const POWERS: usize = 30;
const BUCKETS: usize = POWERS * SUB;
/// Samples per window.
pub const WINDOW: u32 = 512;
/// Fewest samples before a quantile is given (below this, no hedge goes out on a percentile).
pub const MIN_SAMPLES: u32 = 20;
/// Samples between two quantile computations.
const REFRESH: u32 = 16;

#[derive(Debug)]
pub struct Sketch {
    windows: [Box<[AtomicU32]>; 2],
    /// Which window is current (0 or 1) in the low bit; the samples in it above.
    current: AtomicU64,
    /// Cached quantile in µs (0: none yet) and the sample count when it was computed.
    cached: AtomicU64,
    cached_at: AtomicU32,
    total: AtomicU32,
    q: f64,
}

fn window() -> Box<[AtomicU32]> {
    (0..BUCKETS).map(|_| AtomicU32::new(0)).collect()
}

/// The bucket of a latency in µs.
#[inline]
pub fn bucket(us: u64) -> usize {
    let v = us.max(1);
    let power = 63 - v.leading_zeros() as usize;
    if power >= POWERS {
        return BUCKETS - 1;
    }
    // The three bits after the leading one (fewer for the smallest powers, where the buckets
    // repeat: 1, 2 and 3 µs have fewer than eight distinct values).
    let sub = if power >= SUB_BITS as usize {
        ((v >> (power - SUB_BITS as usize)) as usize) & (SUB - 1)
    } else {
        ((v << (SUB_BITS as usize - power)) as usize) & (SUB - 1)
    };
    power * SUB + sub
}

/// The upper edge of a bucket, in µs.
fn upper(b: usize) -> u64 {
    let power = b / SUB;
    let sub = (b % SUB) as u64;
    let base = 1u64 << power;
    // base × (1 + (sub + 1) / 8)
    base + ((base * (sub + 1)) >> SUB_BITS)
}

impl Sketch {
    /// A sketch answering quantile `q` (0 < q < 1).
    pub fn new(q: f64) -> Self {
        Self {
            windows: [window(), window()],
            current: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            cached_at: AtomicU32::new(0),
            total: AtomicU32::new(0),
            q,
        }
    }

    /// Record one latency.
    #[inline]
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let cur = self.current.fetch_add(2, Ordering::Relaxed);
        let w = (cur & 1) as usize;
        if let Some(c) = self.windows[w].get(bucket(us)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        if (cur >> 1) + 1 >= u64::from(WINDOW) {
            self.rotate(cur);
        }
    }

    /// Clear the other window and make it current. One thread wins the swap; samples recorded
    /// meanwhile may land in either window, which a sketch can afford.
    #[cold]
    fn rotate(&self, seen: u64) {
        let next = (seen & 1) ^ 1;
        let after = seen + 2;
        if self
            .current
            .compare_exchange(after, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            for c in self.windows[next as usize].iter() {
                c.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The quantile of the recent samples, or `None` before [`MIN_SAMPLES`].
    pub fn quantile(&self) -> Option<Duration> {
        let total = self.total.load(Ordering::Relaxed);
        if total < MIN_SAMPLES {
            return None;
        }
        let at = self.cached_at.load(Ordering::Relaxed);
        let cached = self.cached.load(Ordering::Relaxed);
        if cached > 0 && total.wrapping_sub(at) < REFRESH {
            return Some(Duration::from_micros(cached));
        }
        let us = self.compute()?;
        self.cached.store(us, Ordering::Relaxed);
        self.cached_at.store(total, Ordering::Relaxed);
        Some(Duration::from_micros(us))
    }

    fn compute(&self) -> Option<u64> {
        let counts = |b: usize| -> u64 {
            self.windows
                .iter()
                .map(|w| u64::from(w.get(b).map_or(0, |c| c.load(Ordering::Relaxed))))
                .sum()
        };
        let n: u64 = (0..BUCKETS).map(counts).sum();
        if n == 0 {
            return None;
        }
        // The smallest bucket whose cumulative count reaches q × n; its upper edge.
        let rank = ((self.q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for b in 0..BUCKETS {
            seen += counts(b);
            if seen >= rank {
                return Some(upper(b));
            }
        }
        Some(upper(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for us in [1u64, 2, 3, 5, 8, 9, 100, 1000, 1_234_567, 1 << 29, u64::MAX] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            if (8..1 << 29).contains(&us) {
                let up = upper(b);
                assert!(up > us, "{us} < {up}");
                assert!(
                    (up - us) as f64 <= us as f64 * 0.126,
                    "{us}: bucket edge {up} too far"
                );
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let s = Sketch::new(0.95);
        assert_eq!(s.quantile(), None);
        // 1..=100 ms: p95 is 95 ms, within a bucket's width above.
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms));
        }
        let p = s.quantile().unwrap();
        assert!(
            p >= Duration::from_millis(95) && p <= Duration::from_millis(107),
            "{p:?}"
        );
        let median = Sketch::new(0.5);
        for ms in 1..=100u64 {
            median.record(Duration::from_millis(ms));
        }
        let p = median.quantile().unwrap();
        assert!(
            p >= Duration::from_millis(50) && p <= Duration::from_millis(57),
            "{p:?}"
        );
    }

    #[test]
    fn old_samples_age_out() {
        let s = Sketch::new(0.5);
        for _ in 0..WINDOW * 2 {
            s.record(Duration::from_secs(5));
        }
        for _ in 0..WINDOW * 2 {
            s.record(Duration::from_millis(10));
        }
        let p = s.quantile().unwrap();
        assert!(p < Duration::from_millis(12), "{p:?}");
    }
}
