//! Connections to the shared state services of `state:` in the configuration (Redis now).
//!
//! Redis is optional and never on the critical path: every call is bounded by a short timeout,
//! a background task connects (and reconnects) and pings once a second, and while Redis is down
//! callers skip it at once instead of waiting. Errors are logged at most once per interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;

/// The timeout of every Redis call made on behalf of a request.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(150);
const LOG_EVERY_MS: u64 = 10_000;

/// A Redis connection shared by the cache, limits and keys.
pub struct Redis {
    url_for_logs: String,
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    healthy: AtomicBool,
    last_error_log_ms: AtomicU64,
    errors: AtomicU64,
}

impl Redis {
    /// Parse the URL; connecting happens in the background (see [`Redis::maintain`]).
    pub fn new(url: &str) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("state.redis_url: {e}"))?;
        let url_for_logs = crate::config::redact_url(url);
        Ok(Arc::new(Self {
            url_for_logs,
            client,
            conn: ArcSwapOption::empty(),
            healthy: AtomicBool::new(false),
            last_error_log_ms: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }))
    }

    /// Whether the last ping succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A connection to use now, or `None` while Redis is down (callers skip Redis).
    pub fn conn(&self) -> Option<ConnectionManager> {
        if !self.is_healthy() {
            return None;
        }
        self.conn.load_full().map(|c| (*c).clone())
    }

    /// Count and (at most once per interval) log a failed Redis call; marks Redis unhealthy on
    /// a timeout or connection error so other requests stop waiting for it.
    pub fn report_error(&self, what: &str, err: &dyn std::fmt::Display, fatal: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if fatal {
            self.healthy.store(false, Ordering::Relaxed);
        }
        let now = crate::clock::monotonic_ms();
        let last = self.last_error_log_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= LOG_EVERY_MS)
            && self
                .last_error_log_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                redis = %self.url_for_logs, during = what, error = %err,
                errors_so_far = self.errors.load(Ordering::Relaxed),
                "redis call failed; going on without it"
            );
        }
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        tokio::time::timeout(
            Duration::from_secs(2),
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())
    }

    /// One round of upkeep: connect if needed, then ping. Run once a second by the app.
    pub async fn maintain(&self) {
        let conn = match self.conn.load_full() {
            Some(c) => (*c).clone(),
            None => match self.connect().await {
                Ok(c) => {
                    self.conn.store(Some(Arc::new(c.clone())));
                    c
                }
                Err(e) => {
                    self.report_error("connect", &e, true);
                    crate::metrics::dependency_up("redis", false);
                    return;
                }
            },
        };
        let mut c = conn;
        let ping: Result<Result<String, redis::RedisError>, _> = tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("PING").query_async(&mut c),
        )
        .await;
        match ping {
            Ok(Ok(_)) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(redis = %self.url_for_logs, "redis reachable");
                }
            }
            Ok(Err(e)) => self.report_error("ping", &e, true),
            Err(_) => self.report_error("ping", &"timed out", true),
        }
        crate::metrics::dependency_up("redis", self.is_healthy());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            crate::config::redact_url("redis://:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            crate::config::redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
