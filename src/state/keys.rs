//! Redis key names, and the rule every Redis use follows so that it works on a Redis Cluster:
//! **the keys one script, transaction or pipeline touches share a hash tag** (the part of the
//! name in `{…}`, which alone decides the slot). Keys used alone need none.
//!
//! | what | names | tag |
//! |---|---|---|
//! | rate-limit buckets (GCRA), usage and spend per key and period | `aigw:rl:{limits}:<bucket>`, `aigw:usage:{limits}:<key id>:<period start>` | `{limits}`: one script checks a request's buckets and its budget at once |
//! | admin-made keys and their indexes | `aigw:{keys}:id:<id>`, `…:hash:<sha256>`, `…:name:<name>`, `…:all` | `{keys}`: one script saves a record with its indexes |
//! | L2 cache entry and its single-flight claim | `aigw:cache:v1:{<hex>}`, `aigw:claim:cache:v1:{<hex>}` | the entry's hash: one script reads one and sets the other |
//! | the request log and usage report | `aigw:{reqlog}:stream`, `…:ids`, `…:report:<hash>` | `{reqlog}`: one pipeline writes an entry, its index and the day's counters |
//! | stored responses, the semantic stream | `aigw:resp:<id>`, `aigw:semantic:v1` | none (one key per command) |
//!
//! `{limits}` keeps every rate-limit check exact and in one round trip (one slot, one node):
//! a cluster spreads the cache, the keys and the responses, while the limits weigh on the node
//! owning `{limits}` as they weighed on the one Redis before.
//!
//! Names before hash tags (`aigw:keys:*`, `aigw:usage:<id>:<start>`) are moved to these at
//! start on one server or a sentinel's primary ([`migrate_legacy`]); a cluster never had them.

use std::time::Duration;

use super::RedisConn;

/// The hash tag of the rate limits and the usage hashes the budget check reads.
pub const LIMITS_TAG: &str = "{limits}";
/// The prefix of every name of the key store.
pub const KEYS_PREFIX: &str = "aigw:{keys}:";
const LEGACY_KEYS_PREFIX: &str = "aigw:keys:";
const USAGE_PREFIX: &str = "aigw:usage:{limits}:";
const LEGACY_USAGE_PREFIX: &str = "aigw:usage:";

/// A rate-limit bucket (`k:<key id>:rpm`, `m:<model>:tpm`, `d:<provider>:<model>:rpm`).
pub fn rate_limit(bucket: &str) -> String {
    let mut s = String::with_capacity(17 + bucket.len());
    s.push_str("aigw:rl:{limits}:");
    s.push_str(bucket);
    s
}

/// The usage hash of a key in the period starting at `period_start` (unix ms).
pub fn usage(key_id: &str, period_start: u64) -> String {
    format!("{USAGE_PREFIX}{key_id}:{period_start}")
}

/// A name of the key store (`id:<id>`, `hash:<sha256>`, `name:<name>`, `all`).
pub fn key_store(suffix: &str) -> String {
    let mut s = String::with_capacity(KEYS_PREFIX.len() + suffix.len());
    s.push_str(KEYS_PREFIX);
    s.push_str(suffix);
    s
}

/// An L2 cache entry (`hex` of its key).
pub fn cache_entry(version: u8, hex: &str) -> String {
    format!("aigw:cache:v{version}:{{{hex}}}")
}

/// The single-flight claim of an L2 cache entry (same slot as the entry).
pub fn cache_claim(version: u8, hex: &str) -> String {
    format!("aigw:claim:cache:v{version}:{{{hex}}}")
}

/// Move the names an earlier version used into the tagged ones: the key store's (renamed, unless
/// the new name exists) and the usage hashes (added into the new hash, which a replica of this
/// version may already have written). Idempotent; replicas doing it together move each once.
pub(super) async fn migrate_legacy(conn: &mut RedisConn) -> Result<usize, String> {
    let mut moved = 0;
    for name in scan(conn, &format!("{LEGACY_KEYS_PREFIX}*")).await? {
        let Some(suffix) = name.strip_prefix(LEGACY_KEYS_PREFIX) else {
            continue;
        };
        let mut cmd = redis::cmd("RENAMENX");
        cmd.arg(&name).arg(key_store(suffix));
        match cmd.query_async::<i64>(conn).await {
            Ok(1) => moved += 1,
            Ok(_) => tracing::warn!(
                key = %name,
                "a key-store entry of an earlier version is left as it was: its new name exists"
            ),
            // Moved by another replica meanwhile.
            Err(e) if e.to_string().contains("no such key") => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    for name in scan(conn, &format!("{LEGACY_USAGE_PREFIX}*")).await? {
        let Some(suffix) = name.strip_prefix(LEGACY_USAGE_PREFIX) else {
            continue;
        };
        if name.contains('{') {
            continue;
        }
        let mut inv = CARRY.prepare_invoke();
        inv.key(&name).key(format!("{USAGE_PREFIX}{suffix}"));
        if inv
            .invoke_async::<i64>(conn)
            .await
            .map_err(|e| e.to_string())?
            == 1
        {
            moved += 1;
        }
    }
    Ok(moved)
}

/// Add one usage hash to another and drop it (keeping its expiry when the target has none).
pub static CARRY: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
for i = 1, #h, 2 do redis.call('HINCRBYFLOAT', KEYS[2], h[i], h[i + 1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 and redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// Every name matching `pattern` (SCAN; names with a hash tag are left out: they are current).
async fn scan(conn: &mut RedisConn, pattern: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, names): (u64, Vec<String>) =
            cmd.query_async(conn).await.map_err(|e| e.to_string())?;
        out.extend(names.into_iter().filter(|n| !n.contains('{')));
        if next == 0 {
            return Ok(out);
        }
        if tokio::time::Instant::now() > deadline {
            return Err("scanning for names of an earlier version took over 30 s".to_owned());
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot of a name: CRC16 of its hash tag (or of the whole name), modulo 16384.
    fn slot(name: &str) -> u16 {
        let b = name.as_bytes();
        let tagged = name.find('{').and_then(|s| {
            name[s + 1..]
                .find('}')
                .filter(|&len| len > 0)
                .map(|len| &b[s + 1..s + 1 + len])
        });
        crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(b)) % 16384
    }

    #[test]
    fn names_one_script_touches_share_a_slot() {
        let s = slot(&rate_limit("k:abc:rpm"));
        assert_eq!(slot(&rate_limit("m:gpt-4o:tpm")), s);
        assert_eq!(slot(&rate_limit("d:openai:gpt-4o:rpm")), s);
        assert_eq!(slot(&usage("key_1", 1_700_000_000_000)), s);
        let k = slot(&key_store("id:key_1"));
        for n in ["hash:ab12", "all", "name:prod {x}"] {
            assert_eq!(slot(&key_store(n)), k, "{n}");
        }
        let hex = "00ff".repeat(8);
        assert_eq!(slot(&cache_entry(1, &hex)), slot(&cache_claim(1, &hex)));
        // Different cache entries spread over the slots.
        assert_ne!(slot(&cache_entry(1, "aa")), slot(&cache_entry(1, "bb")));
    }
}
