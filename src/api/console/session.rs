//! Console sessions: a random token in the browser's cookie, the session record (its CSRF token,
//! when it was opened and last used, which master key opened it) kept by the gateway under the
//! token's SHA-256 — never the token itself.
//!
//! With `state.redis_url` the records live in Redis (`aigw:console:session:{sha256 hex}`, expiring
//! after the idle time, renewed on each use), so every replica knows every session. Without Redis,
//! or while it cannot be reached, they live in this process's memory: a replica behind a load
//! balancer without sticky sessions then needs its own sign-in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{REDIS_TIMEOUT, Redis};

/// A session ends this long after sign-in at the latest, however often it is used.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// The idle time after which a session ends, when `auth.console_session_idle` is not set.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions are kept in memory (the oldest-used go first beyond it).
const MAX_LOCAL: usize = 10_000;

/// One signed-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Sent back by the console in `x-csrf-token` on every change.
    pub csrf_token: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub last_used_ms: u64,
    /// Hex of [`crate::auth::Auth::master_fingerprint`] at sign-in.
    pub master: String,
}

type TokenHash = [u8; 32];

pub struct Sessions {
    redis: Option<Arc<Redis>>,
    local: Mutex<HashMap<TokenHash, Session>>,
}

/// 32 bytes from the OS's random source, base64url without padding.
pub fn random_token() -> String {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

fn redis_key(h: &TokenHash) -> String {
    format!("aigw:console:session:{}", hex::encode(h))
}

fn now_ms() -> u64 {
    crate::clock::unix_ms()
}

impl Sessions {
    pub fn new(redis: Option<Arc<Redis>>) -> Self {
        Self {
            redis,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Session>> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open a session for the holder of the master key with this fingerprint; its token (for
    /// the cookie) and record.
    pub async fn create(&self, master: &[u8; 32], idle: Duration) -> (String, Session) {
        let token = random_token();
        let now = now_ms();
        let session = Session {
            csrf_token: random_token(),
            created_ms: now,
            last_used_ms: now,
            master: hex::encode(master),
        };
        let h = token_hash(&token);
        if !self.redis_set(&h, &session, idle).await {
            let mut local = self.local();
            if local.len() >= MAX_LOCAL {
                let cutoff = now.saturating_sub(duration_ms(idle));
                local.retain(|_, s| s.last_used_ms >= cutoff);
                if local.len() >= MAX_LOCAL
                    && let Some(oldest) = local
                        .iter()
                        .min_by_key(|(_, s)| s.last_used_ms)
                        .map(|(k, _)| *k)
                {
                    local.remove(&oldest);
                }
            }
            local.insert(h, session.clone());
        }
        (token, session)
    }

    /// The live session of `token`, opened with the current master key (`master`); its use now
    /// renews its idle time. An expired one is removed.
    pub async fn get(&self, token: &str, master: &[u8; 32], idle: Duration) -> Option<Session> {
        let h = token_hash(token);
        let now = now_ms();
        let live = |s: &Session| {
            now.saturating_sub(s.last_used_ms) < duration_ms(idle)
                && now.saturating_sub(s.created_ms) < duration_ms(MAX_AGE)
                && s.master == hex::encode(master)
        };
        {
            let mut local = self.local();
            if let Some(s) = local.get_mut(&h) {
                if live(s) {
                    s.last_used_ms = now;
                    return Some(s.clone());
                }
                local.remove(&h);
                return None;
            }
        }
        let mut s = self.redis_get(&h, idle).await?;
        if !live(&s) {
            self.remove(token).await;
            return None;
        }
        s.last_used_ms = now;
        Some(s)
    }

    /// Sign out: the session is gone on every replica.
    pub async fn remove(&self, token: &str) {
        let h = token_hash(token);
        self.local().remove(&h);
        if let Some(redis) = &self.redis
            && let Some(mut conn) = redis.conn()
        {
            let r: Result<Result<i64, _>, _> = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("DEL").arg(redis_key(&h)).query_async(&mut conn),
            )
            .await;
            report(redis, "console session delete", r);
        }
    }

    /// Whether the session was stored in Redis.
    async fn redis_set(&self, h: &TokenHash, s: &Session, idle: Duration) -> bool {
        let (Some(redis), Ok(value)) = (&self.redis, serde_json::to_string(s)) else {
            return false;
        };
        let Some(mut conn) = redis.conn() else {
            return false;
        };
        let r: Result<Result<(), _>, _> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("SET")
                .arg(redis_key(h))
                .arg(value)
                .arg("PX")
                .arg(duration_ms(idle).max(1))
                .query_async(&mut conn),
        )
        .await;
        report(redis, "console session write", r)
    }

    /// The record in Redis, its idle time renewed (`GETEX … PX`).
    async fn redis_get(&self, h: &TokenHash, idle: Duration) -> Option<Session> {
        let redis = self.redis.as_ref()?;
        let mut conn = redis.conn()?;
        let r: Result<Result<Option<String>, _>, _> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("GETEX")
                .arg(redis_key(h))
                .arg("PX")
                .arg(duration_ms(idle).max(1))
                .query_async(&mut conn),
        )
        .await;
        match r {
            Ok(Ok(Some(v))) => serde_json::from_str(&v).ok(),
            Ok(Ok(None)) => None,
            other => {
                report::<Option<String>>(redis, "console session read", other);
                None
            }
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a Redis call succeeded; a failure is reported (and logged at most once in a while).
fn report<T>(
    redis: &Redis,
    what: &str,
    r: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>,
) -> bool {
    match r {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            let fatal = e.is_io_error() || e.is_connection_dropped();
            redis.report_error(what, &e, fatal);
            false
        }
        Err(_) => {
            redis.report_error(what, &"timed out", true);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_expire_and_follow_the_master_key() {
        let s = Sessions::new(None);
        let m = [1u8; 32];
        let (token, created) = s.create(&m, Duration::from_secs(60)).await;
        let got = s.get(&token, &m, Duration::from_secs(60)).await.unwrap();
        assert_eq!(got.csrf_token, created.csrf_token);
        assert!(s.get(&token, &[2u8; 32], DEFAULT_IDLE).await.is_none());
        // The other master key's look-up ended it.
        assert!(s.get(&token, &m, DEFAULT_IDLE).await.is_none());
        let (token, _) = s.create(&m, Duration::from_secs(60)).await;
        assert!(s.get(&token, &m, Duration::ZERO).await.is_none());
        let (token, _) = s.create(&m, DEFAULT_IDLE).await;
        s.remove(&token).await;
        assert!(s.get(&token, &m, DEFAULT_IDLE).await.is_none());
        assert!(s.get("not-a-token", &m, DEFAULT_IDLE).await.is_none());
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
    }
}
