//! Single flight across replicas: a replica about to fetch a key claims it in Redis, the others
//! wait for its answer in L2.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::{
    Cache, Entry, Key, L2_VERSION, Layer, Leader, Lookup, Policy, count, decode, fresh, l2_key,
};
use crate::state::{REDIS_TIMEOUT, Redis};

/// Cross-replica single flight. A replica about to fetch a key claims it in Redis
/// (`SET aigw:claim:cache:v1:{<hex>} <token> NX PX 5000`, in the entry's hash slot) and renews the claim while it fetches; a
/// replica that finds the key claimed looks for the answer in L2 instead of fetching it too,
/// until the answer is there, the claim is gone (the fetch failed: it claims and fetches
/// itself), or its own deadline. The claim is released (if still ours) once the answer is in
/// L2, or when the fetch is abandoned; a replica that dies holding one lets it lapse in 5 s.
const CLAIM_TTL: Duration = Duration::from_secs(5);
/// How often a claim is renewed while its fetch runs.
const CLAIM_RENEW: Duration = Duration::from_millis(1500);
/// First and longest pause between two looks into L2 while another replica fetches.
const CLAIM_POLL_FIRST: Duration = Duration::from_millis(10);
const CLAIM_POLL_MAX: Duration = Duration::from_millis(200);
/// Claim a key (1), unless another replica holds it (0) or its answer is already stored (the
/// answer): one atomic round trip, so that an answer stored just after this replica's L2 miss is
/// not fetched again.
const CLAIM_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) if v then return v end if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end return 0";
/// Renew the claim if it is still ours (1), else leave it (0).
const CLAIM_RENEW_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/// Delete the claim if it is still ours.
const CLAIM_RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The claim scripts, hashed once (`EVALSHA`, loaded on first use).
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CLAIM_SCRIPT));
static CLAIM_RENEW_LUA: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(CLAIM_RENEW_SCRIPT));
static CLAIM_RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(CLAIM_RELEASE_SCRIPT));

/// This replica's claim on fetching a key: renewed in the background while held, released (if
/// still ours) when dropped.
pub struct Claim {
    redis: Arc<Redis>,
    key: String,
    token: String,
    renew: tokio::task::AbortHandle,
}

impl Claim {
    fn new(redis: Arc<Redis>, key: String, token: String) -> Self {
        let (r, k, t) = (redis.clone(), key.clone(), token.clone());
        let renew = crate::tasks::service(async move {
            loop {
                tokio::time::sleep(CLAIM_RENEW).await;
                let Some(mut conn) = r.conn() else { continue };
                let mut inv = CLAIM_RENEW_LUA.key(&k);
                inv.arg(&t).arg(CLAIM_TTL.as_millis() as u64);
                match tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<i64>(&mut conn)).await
                {
                    Ok(Ok(1)) => {}
                    // Not ours any more: another replica may fetch too; nothing to renew.
                    Ok(Ok(_)) => return,
                    Ok(Err(e)) => r.report_error("cache claim renewal", &e, e.is_io_error()),
                    Err(_) => r.report_error("cache claim renewal", &"timed out", true),
                }
            }
        })
        .abort_handle();
        Self {
            redis,
            key,
            token,
            renew,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.renew.abort();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(mut conn) = self.redis.conn() else {
            return;
        };
        let (redis, key, token) = (
            self.redis.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        crate::tasks::spawn_on(&rt, async move {
            let mut inv = CLAIM_RELEASE.key(&key);
            inv.arg(&token);
            match tokio::time::timeout(REDIS_TIMEOUT * 4, inv.invoke_async::<i64>(&mut conn)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => redis.report_error("cache claim release", &e, e.is_io_error()),
                Err(_) => redis.report_error("cache claim release", &"timed out", true),
            }
        });
    }
}

/// What claiming a key in Redis gave.
pub(super) enum Claimed {
    Won(Claim),
    /// The answer was stored meanwhile.
    Stored(Entry),
    /// Another replica holds it.
    Held,
    /// Redis is down, slow or failed: fetch without a claim.
    Unavailable,
}

/// What waiting on another replica's fetch gave.
pub(super) enum Remote {
    Answer(Arc<Entry>),
    /// The claim went without an answer: claim the key again.
    Released,
    /// The deadline is near, or Redis failed: fetch without waiting.
    GaveUp,
}

impl Cache {
    /// Single flight across replicas for a key this process leads (see [`CLAIM_TTL`]).
    pub(super) async fn across_replicas(
        self: &Arc<Self>,
        redis: &Arc<Redis>,
        mut leader: Leader,
        key: Key,
        policy: &Policy,
        until: tokio::time::Instant,
    ) -> Lookup {
        let found = loop {
            match self.claim(redis, &key).await {
                Claimed::Won(claim) => {
                    leader.claim = Some(Box::new(claim));
                    return Lookup::Miss(leader);
                }
                Claimed::Stored(e) if fresh(&e, policy) => break Arc::new(e),
                Claimed::Stored(_) | Claimed::Unavailable => return Lookup::Miss(leader),
                Claimed::Held => match self.wait_claimed(redis, &key, policy, until).await {
                    Remote::Answer(e) => break e,
                    Remote::Released => continue,
                    Remote::GaveUp => return Lookup::Miss(leader),
                },
            }
        };
        count("l2", "hit");
        self.l1.insert(key, found.clone()).await;
        leader.complete(found.clone());
        Lookup::Hit(found, Layer::L2)
    }

    /// Claim `key` for this replica's fetch.
    async fn claim(&self, redis: &Arc<Redis>, key: &Key) -> Claimed {
        let Some(mut conn) = redis.conn() else {
            return Claimed::Unavailable;
        };
        let (k, token) = (claim_key(key), format!("{:016x}", fastrand::u64(..)));
        let mut inv = CLAIM.key(l2_key(key));
        inv.key(&k).arg(&token).arg(CLAIM_TTL.as_millis() as u64);
        let fut = inv.invoke_async::<redis::Value>(&mut conn);
        match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
            Ok(Ok(redis::Value::Int(1))) => Claimed::Won(Claim::new(redis.clone(), k, token)),
            Ok(Ok(redis::Value::BulkString(v))) => match decode(&v) {
                Some(e) => Claimed::Stored(e),
                None => Claimed::Unavailable,
            },
            Ok(Ok(redis::Value::Int(0))) => Claimed::Held,
            Ok(Ok(_)) => Claimed::Unavailable,
            Ok(Err(e)) => {
                redis.report_error("cache claim", &e, e.is_io_error());
                Claimed::Unavailable
            }
            Err(_) => {
                redis.report_error("cache claim", &"timed out", true);
                Claimed::Unavailable
            }
        }
    }

    /// Another replica fetches `key`: look for its answer in L2 (and whether its claim stands,
    /// in the same round trip) at growing intervals.
    async fn wait_claimed(
        &self,
        redis: &Redis,
        key: &Key,
        policy: &Policy,
        until: tokio::time::Instant,
    ) -> Remote {
        crate::telemetry::cache_result("l2", "wait");
        let (value_key, claim) = (l2_key(key), claim_key(key));
        let mut pause = CLAIM_POLL_FIRST;
        loop {
            if tokio::time::Instant::now() + pause + REDIS_TIMEOUT >= until {
                return Remote::GaveUp;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CLAIM_POLL_MAX);
            let Some(mut conn) = redis.conn() else {
                return Remote::GaveUp;
            };
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&value_key).cmd("EXISTS").arg(&claim);
            let fut = pipe.query_async::<(Option<Vec<u8>>, bool)>(&mut conn);
            match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
                Ok(Ok((value, claimed))) => {
                    if let Some(e) = value.as_deref().and_then(decode)
                        && fresh(&e, policy)
                    {
                        return Remote::Answer(Arc::new(e));
                    }
                    if !claimed {
                        return Remote::Released;
                    }
                }
                Ok(Err(e)) => {
                    redis.report_error("cache read", &e, e.is_io_error());
                    return Remote::GaveUp;
                }
                Err(_) => {
                    redis.report_error("cache read", &"timed out", true);
                    return Remote::GaveUp;
                }
            }
        }
    }
}

pub(super) fn claim_key(key: &Key) -> String {
    crate::state::keys::cache_claim(L2_VERSION, &hex::encode(key))
}
