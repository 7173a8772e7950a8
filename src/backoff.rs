//! Exponential backoff with jitter: the one schedule of router retries, job retries and webhook
//! redeliveries.

use std::time::Duration;

/// How a step's delay is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Anywhere in `[0, step)` ("full jitter"): retries of one request spread widest.
    Full,
    /// In the step's upper half `[step/2, step)`: never less than half the step, so a schedule
    /// stays predictable, never in lock step with another.
    UpperHalf,
}

/// The delay before retry `step` (0-based): `initial · 2^step` capped at `max`, jittered.
pub fn delay(step: u32, initial: Duration, max: Duration, jitter: Jitter) -> Duration {
    let exp = initial
        .checked_mul(1u32.checked_shl(step.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let r = rand::random::<f64>();
    match jitter {
        Jitter::Full => exp.mul_f64(r),
        Jitter::UpperHalf => exp.mul_f64(0.5 + r * 0.5),
    }
}
