//! The five routing strategies: given the deployments that may take this request (circuit not
//! open, capacity left, not yet tried), pick one. Pure functions over a snapshot of the
//! deployments' state, with the random source passed in so tests can seed it.

use rand::{Rng, RngExt};

use crate::config::RoutingStrategy;

/// What a strategy sees of one candidate deployment.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Index into the model's deployments.
    pub index: usize,
    pub priority: i32,
    pub weight: u32,
    pub latency_ms: Option<f64>,
    pub in_flight: u32,
    /// Estimated cost of this request on this deployment (USD); `None` when unpriced.
    pub cost: Option<f64>,
}

/// Share of latency-routed requests sent to a random candidate, so a slow deployment is
/// measured again and can win back traffic when it recovers.
pub const LATENCY_EXPLORE: f64 = 0.05;

/// Pick one of `c` (non-empty) by `strategy`; returns the chosen `Candidate::index`.
pub fn pick<R: Rng + ?Sized>(
    strategy: RoutingStrategy,
    c: &[Candidate],
    rng: &mut R,
) -> Option<usize> {
    let first = c.first()?;
    if c.len() == 1 {
        return Some(first.index);
    }
    let chosen = match strategy {
        RoutingStrategy::Priority => c.iter().min_by_key(|d| d.priority).unwrap_or(first),
        RoutingStrategy::Weighted => {
            let total: u64 = c.iter().map(|d| u64::from(d.weight)).sum();
            if total == 0 {
                &c[rng.random_range(0..c.len())]
            } else {
                let mut x = rng.random_range(0..total);
                c.iter()
                    .find(|d| {
                        let w = u64::from(d.weight);
                        if x < w {
                            true
                        } else {
                            x -= w;
                            false
                        }
                    })
                    .unwrap_or(first)
            }
        }
        RoutingStrategy::Latency => {
            // Untried deployments first, so every one gets measured.
            if let Some(fresh) = c.iter().find(|d| d.latency_ms.is_none()) {
                fresh
            } else if rng.random::<f64>() < LATENCY_EXPLORE {
                &c[rng.random_range(0..c.len())]
            } else {
                // Power of two choices: two distinct random candidates, the faster wins.
                let a = rng.random_range(0..c.len());
                let mut b = rng.random_range(0..c.len() - 1);
                if b >= a {
                    b += 1;
                }
                let la = c[a].latency_ms.unwrap_or(f64::MAX);
                let lb = c[b].latency_ms.unwrap_or(f64::MAX);
                if lb < la { &c[b] } else { &c[a] }
            }
        }
        RoutingStrategy::Cost => c
            .iter()
            .min_by(|a, b| {
                let ca = a.cost.unwrap_or(f64::MAX);
                let cb = b.cost.unwrap_or(f64::MAX);
                ca.total_cmp(&cb).then(a.priority.cmp(&b.priority))
            })
            .unwrap_or(first),
        RoutingStrategy::LeastBusy => {
            // One of the least busy at random, counted and found again rather than collected
            // (no allocation per request).
            let min = c.iter().map(|d| d.in_flight).min().unwrap_or(0);
            let idle = || c.iter().filter(move |d| d.in_flight == min);
            let n = idle().count();
            idle().nth(rng.random_range(0..n.max(1))).unwrap_or(first)
        }
    };
    Some(chosen.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::estimate_cost;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn cand(index: usize) -> Candidate {
        Candidate {
            index,
            priority: index as i32,
            weight: 1,
            latency_ms: Some(10.0),
            in_flight: 0,
            cost: None,
        }
    }

    #[test]
    fn priority_takes_the_lowest() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut c = vec![cand(0), cand(1), cand(2)];
        c[0].priority = 5;
        assert_eq!(pick(RoutingStrategy::Priority, &c, &mut rng), Some(1));
    }

    #[test]
    fn weighted_converges_to_the_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut c = vec![cand(0), cand(1), cand(2)];
        c[0].weight = 1;
        c[1].weight = 3;
        c[2].weight = 6;
        let mut counts = [0u32; 3];
        let n = 100_000;
        for _ in 0..n {
            counts[pick(RoutingStrategy::Weighted, &c, &mut rng).unwrap()] += 1;
        }
        for (i, expected) in [0.1, 0.3, 0.6].iter().enumerate() {
            let share = f64::from(counts[i]) / f64::from(n);
            assert!(
                (share - expected).abs() < 0.01,
                "deployment {i}: {share} vs {expected}"
            );
        }
    }

    #[test]
    fn latency_prefers_fast_but_explores() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = vec![cand(0), cand(1)];
        c[0].latency_ms = Some(200.0);
        c[1].latency_ms = Some(5.0);
        let mut slow = 0;
        for _ in 0..10_000 {
            if pick(RoutingStrategy::Latency, &c, &mut rng) == Some(0) {
                slow += 1;
            }
        }
        // Only exploration reaches the slow one: about LATENCY_EXPLORE / 2 of the traffic.
        assert!(slow > 100 && slow < 500, "{slow}");
        c[0].latency_ms = None;
        assert_eq!(pick(RoutingStrategy::Latency, &c, &mut rng), Some(0));
    }

    #[test]
    fn cost_picks_the_cheapest_priced() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut c = vec![cand(0), cand(1), cand(2)];
        c[0].cost = Some(0.002);
        c[1].cost = Some(0.0005);
        c[2].cost = None;
        assert_eq!(pick(RoutingStrategy::Cost, &c, &mut rng), Some(1));
        assert_eq!(
            estimate_cost(1000, 1000, Some(0.15), Some(0.60)),
            Some(0.00075)
        );
        assert_eq!(estimate_cost(1000, 1000, None, None), None);
    }

    #[test]
    fn least_busy_picks_the_idle() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut c = vec![cand(0), cand(1), cand(2)];
        c[0].in_flight = 3;
        c[1].in_flight = 1;
        c[2].in_flight = 2;
        assert_eq!(pick(RoutingStrategy::LeastBusy, &c, &mut rng), Some(1));
    }
}
