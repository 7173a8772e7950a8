//! Wall-clock Unix time, for timestamps that leave the process (`created`, records, periods).
//! Intervals and deadlines use tokio's monotonic clock instead ([`monotonic_ms`]).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds on a monotonic clock (tokio's, so paused-time tests move it).
pub fn monotonic_ms() -> u64 {
    monotonic_ms_at(tokio::time::Instant::now())
}

/// [`monotonic_ms`] of an instant already read (one clock read less).
pub fn monotonic_ms_at(at: tokio::time::Instant) -> u64 {
    static BASE: OnceLock<tokio::time::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(|| at);
    u64::try_from(at.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX)
}
