//! The response cache: L1 in process (moka, bounded by entries and bytes, TTL per entry), L2 in
//! Redis (shared by replicas, compressed, TTL set by Redis), single flight for concurrent
//! identical misses (in a process, and across replicas through a claim in Redis), and the
//! `Cache-Control` / `x-gateway-cache-ttl` semantics of the contract.
//!
//! Only complete, successful answers are stored, in the format of the endpoint that was asked
//! (a streamed answer is assembled once it ended well; see `stream.rs`). It never caches errors or
//! partial streams, and Redis being slow or down never fails or stalls a request: L2 calls are
//! bounded by [`crate::state::REDIS_TIMEOUT`] and skipped while Redis is down.

mod claim;
pub mod key;
pub mod semantic;
pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use tokio::sync::watch;

use self::claim::Claim;
pub use self::key::Key;
use crate::config::{CacheConfig, CacheScope};
use crate::state::{REDIS_TIMEOUT, Redis};

/// A stored answer.
#[derive(Debug)]
pub struct Entry {
    /// The complete response body, in the endpoint's format.
    pub body: Bytes,
    /// Unix milliseconds when it was stored.
    pub created_ms: u64,
    pub ttl: Duration,
    pub provider: String,
    pub deployment_model: String,
}

impl Entry {
    pub fn new(body: Bytes, ttl: Duration, provider: &str, deployment_model: &str) -> Self {
        Self {
            body,
            created_ms: unix_ms(),
            ttl,
            provider: provider.to_owned(),
            deployment_model: deployment_model.to_owned(),
        }
    }

    pub fn age(&self) -> Duration {
        Duration::from_millis(unix_ms().saturating_sub(self.created_ms))
    }

    fn weight(&self) -> u64 {
        (self.body.len() + self.provider.len() + self.deployment_model.len() + 96) as u64
    }
}

use crate::clock::unix_ms;

/// Which layer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    L1,
    L2,
    /// A semantic match (`cache.semantic`), read from L1/L2 under the matched entry's key.
    Semantic,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Semantic => "semantic",
        }
    }
}

/// What the request's headers and the configuration allow.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub read: bool,
    pub write: bool,
    /// Accept an entry only up to this age (`Cache-Control: max-age=N`).
    pub max_age: Option<Duration>,
    pub ttl: Duration,
}

/// The policy for one request, or `None` to bypass the cache entirely (`x-cache: BYPASS`).
pub fn policy(
    headers: &HeaderMap,
    cfg: &CacheConfig,
    model_cache: Option<bool>,
    deterministic: bool,
) -> Option<Policy> {
    if !model_cache.unwrap_or(cfg.enabled) {
        return None;
    }
    if cfg.only_deterministic && !deterministic {
        return None;
    }
    let mut p = Policy {
        read: true,
        write: true,
        max_age: None,
        ttl: cfg.ttl.get(),
    };
    for v in headers.get_all(axum::http::header::CACHE_CONTROL) {
        let Ok(s) = v.to_str() else { continue };
        for directive in s.split(',') {
            let d = directive.trim().to_ascii_lowercase();
            if d == "no-store" {
                return None;
            } else if d == "no-cache" {
                p.read = false;
            } else if let Some(n) = d.strip_prefix("max-age=")
                && let Ok(secs) = n.trim().parse::<u64>()
            {
                p.max_age = Some(Duration::from_secs(secs));
            }
        }
    }
    if let Some(ttl) = headers
        .get(crate::headers::X_GATEWAY_CACHE_TTL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if ttl == 0 {
            p.write = false;
        } else {
            p.ttl = Duration::from_secs(ttl);
        }
    }
    Some(p)
}

/// The scope part of the key: the caller's key id with `scope: key` (never its name: a new key
/// given a revoked key's name sees none of its entries).
pub fn scope<'a>(cfg: &CacheConfig, key_id: &'a str) -> &'a str {
    match cfg.scope {
        CacheScope::Key => key_id,
        CacheScope::Global => "",
    }
}

struct PerEntryTtl;

impl moka::Expiry<Key, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _k: &Key,
        v: &Arc<Entry>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl.saturating_sub(v.age()))
    }
}

/// Outcome shared with the requests waiting on a leader (single flight).
type Flight = watch::Receiver<Option<Arc<Entry>>>;

/// L2 value format version (first byte).
const L2_VERSION: u8 = 1;

pub struct Cache {
    l1: moka::future::Cache<Key, Arc<Entry>>,
    l2: Option<Arc<Redis>>,
    flights: Mutex<HashMap<Key, Flight>>,
}

/// A request that is fetching an answer others wait for. Dropping it without `complete` lets
/// the waiters go and fetch for themselves.
pub struct Leader {
    cache: Arc<Cache>,
    key: Key,
    tx: watch::Sender<Option<Arc<Entry>>>,
    /// This replica's claim on the key in Redis, when L2 is on (other replicas wait for the
    /// answer in L2 instead of fetching it too). Boxed: a stream's relay state holds a leader's
    /// room for its whole life, and most have no claim.
    claim: Option<Box<Claim>>,
}

impl Leader {
    pub fn key(&self) -> Key {
        self.key
    }
    /// Hand the answer to the waiters.
    pub fn complete(self, entry: Arc<Entry>) {
        let _ = self.tx.send(Some(entry));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Ok(mut f) = self.cache.flights.lock() {
            f.remove(&self.key);
        }
    }
}

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<Entry>, Layer),
    /// Nothing stored: this request fetches (and leads the waiters).
    Miss(Leader),
    /// An identical request is being fetched: wait for it.
    Wait(Flight),
}

impl Cache {
    pub fn new(cfg: &CacheConfig, l2: Option<Arc<Redis>>) -> Arc<Self> {
        let max_bytes = cfg.l1_max_bytes.0.max(1);
        // One capacity (bytes); a floor on each entry's weight keeps the count within
        // l1_max_entries too.
        let min_weight = (max_bytes / cfg.l1_max_entries.max(1)).max(1);
        let l1 = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_k: &Key, v: &Arc<Entry>| {
                u32::try_from(v.weight().max(min_weight)).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Arc::new(Self {
            l1,
            l2: if cfg.l2 { l2 } else { None },
            flights: Mutex::new(HashMap::new()),
        })
    }

    /// L1, then L2 (copied into L1 on a hit), then single flight: in this process, then across
    /// replicas (see [`claim::CLAIM_TTL`]), waiting at most until `until`.
    pub async fn lookup(
        self: &Arc<Self>,
        key: Key,
        policy: &Policy,
        until: tokio::time::Instant,
    ) -> Lookup {
        if policy.read {
            if let Some(e) = self.l1.get(&key).await {
                if fresh(&e, policy) {
                    count("l1", "hit");
                    return Lookup::Hit(e, Layer::L1);
                }
            } else {
                count("l1", "miss");
            }
            if self.l2.is_some() {
                match self.l2_get(&key).await {
                    Some(e) if fresh(&e, policy) => {
                        count("l2", "hit");
                        let e = Arc::new(e);
                        self.l1.insert(key, e.clone()).await;
                        return Lookup::Hit(e, Layer::L2);
                    }
                    _ => count("l2", "miss"),
                }
            }
        }
        let tx = {
            let Ok(mut flights) = self.flights.lock() else {
                return Lookup::Miss(self.leader_unlisted(key));
            };
            if policy.read
                && let Some(rx) = flights.get(&key)
            {
                crate::telemetry::cache_result("l1", "wait");
                return Lookup::Wait(rx.clone());
            }
            let (tx, rx) = watch::channel(None);
            flights.insert(key, rx);
            tx
        };
        let leader = Leader {
            cache: self.clone(),
            key,
            tx,
            claim: None,
        };
        // Across replicas: only for answers that will be stored where the others can see them.
        // Boxed: inline, its Redis futures would size every request's future (held by a stream
        // until its first chunk) for a step only misses with L2 take.
        if let Some(redis) = self.l2.clone().filter(|r| r.is_healthy())
            && policy.read
            && policy.write
        {
            return Box::pin(self.across_replicas(&redis, leader, key, policy, until)).await;
        }
        Lookup::Miss(leader)
    }

    fn leader_unlisted(self: &Arc<Self>, key: Key) -> Leader {
        let (tx, _rx) = watch::channel(None);
        Leader {
            cache: self.clone(),
            key,
            tx,
            claim: None,
        }
    }

    /// Wait for a leader's answer; `None` when it failed or went away (fetch yourself).
    pub async fn wait(mut rx: Flight, until: tokio::time::Instant) -> Option<Arc<Entry>> {
        let res = tokio::time::timeout_at(until, rx.wait_for(Option::is_some)).await;
        match res {
            Ok(Ok(v)) => v.clone(),
            _ => None,
        }
    }

    /// Store a fetched answer (when `write`) and hand it to the leader's waiters. The leader's
    /// claim is released once the answer is in L2, so that replicas waiting on the claim find
    /// it there.
    pub async fn finish(&self, key: Key, entry: Arc<Entry>, write: bool, leader: Option<Leader>) {
        let mut leader = leader;
        let claim = leader.as_mut().and_then(|l| l.claim.take());
        if write {
            self.put(key, entry.clone(), claim).await;
        }
        if let Some(l) = leader {
            l.complete(entry);
        }
    }

    /// Store an answer in L1 and (in the background) L2, then release `claim` after the L2
    /// write.
    async fn put(&self, key: Key, entry: Arc<Entry>, claim: Option<Box<Claim>>) {
        self.l1.insert(key, entry.clone()).await;
        if let Some(redis) = self.l2.clone()
            && let Some(mut conn) = redis.conn()
        {
            let value = encode(&entry);
            let ttl = entry.ttl.as_secs().max(1);
            let k = l2_key(&key);
            crate::tasks::spawn(async move {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&k).arg(value).arg("EX").arg(ttl);
                let fut = cmd.query_async::<()>(&mut conn);
                match tokio::time::timeout(REDIS_TIMEOUT * 4, fut).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => redis.report_error("cache write", &e, e.is_io_error()),
                    Err(_) => redis.report_error("cache write", &"timed out", true),
                }
                drop(claim);
            });
        }
    }

    async fn l2_get(&self, key: &Key) -> Option<Entry> {
        let redis = self.l2.as_ref()?;
        let mut conn = redis.conn()?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(l2_key(key));
        let fut = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
            Ok(Ok(Some(v))) => decode(&v),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                redis.report_error("cache read", &e, e.is_io_error());
                None
            }
            Err(_) => {
                redis.report_error("cache read", &"timed out", true);
                None
            }
        }
    }

    /// Entries and weighted bytes in L1 (for tests and the admin view).
    pub fn l1_usage(&self) -> (u64, u64) {
        (self.l1.entry_count(), self.l1.weighted_size())
    }
}

fn fresh(e: &Entry, p: &Policy) -> bool {
    let age = e.age();
    age < e.ttl && p.max_age.is_none_or(|m| age <= m)
}

fn count(layer: &'static str, result: &'static str) {
    crate::metrics::cache(layer, result);
    crate::telemetry::cache_result(layer, result);
}

fn l2_key(key: &Key) -> String {
    crate::state::keys::cache_entry(L2_VERSION, &hex::encode(key))
}

/// `[version][lz4( header-json \n body )]`.
fn encode(e: &Entry) -> Vec<u8> {
    let header = serde_json::json!({
        "c": e.created_ms, "t": u64::try_from(e.ttl.as_millis()).unwrap_or(u64::MAX),
        "p": e.provider, "d": e.deployment_model,
    });
    let mut plain = header.to_string().into_bytes();
    plain.push(b'\n');
    plain.extend_from_slice(&e.body);
    let mut out = vec![L2_VERSION];
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
    out
}

fn decode(v: &[u8]) -> Option<Entry> {
    let (&version, rest) = v.split_first()?;
    if version != L2_VERSION {
        return None;
    }
    let plain = lz4_flex::decompress_size_prepended(rest).ok()?;
    let nl = memchr::memchr(b'\n', &plain)?;
    let header: serde_json::Value = serde_json::from_slice(&plain[..nl]).ok()?;
    Some(Entry {
        body: Bytes::copy_from_slice(&plain[nl + 1..]),
        created_ms: header.get("c")?.as_u64()?,
        ttl: Duration::from_millis(header.get("t")?.as_u64()?),
        provider: header.get("p")?.as_str()?.to_owned(),
        deployment_model: header.get("d")?.as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests;
