//! Gateway keys created through the admin API: records, storage and lookup.
//!
//! A key's `id` (`key_` + 24 random hex digits) is immutable: everything the key owns is bound
//! to it. Its `name` is a label, unique among live keys ([`names`]).
//!
//! Records live in Redis when `state.redis_url` is set (every replica sees them) and otherwise in
//! the embedded store under `state.data_dir`; both survive restarts. Only the SHA-256 of a key is
//! stored; the plaintext (`sk-gw-` + 40 base62 characters from the OS-seeded CSPRNG) is shown once,
//! in the answer that creates it. Lookups are cached in process for one second (negative answers
//! too), so a revocation or change reaches every replica within a second without pub/sub.

pub mod names;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Auth, Caller, Identified, KeyEntry, KeyHash, check_usable, hash_key};
use crate::error::Error;
use crate::state::{REDIS_TIMEOUT, Redis};
use crate::store::{Store, Table};
use names::Claim;
pub use names::file_clashes;

/// How long a lookup is trusted in process.
pub const LOOKUP_TTL: Duration = Duration::from_secs(1);

/// A stored key record (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to recognise it (`sk-gw-AbC…`).
    pub key_prefix: String,
    #[serde(default)]
    pub key_sha256: String,
    pub models: Vec<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget_usd: Option<f64>,
    pub budget_period: Option<String>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub metadata: Value,
    pub created_at: u64,
    #[serde(default)]
    pub revoked: bool,
}

/// Body of `POST /admin/keys` and `PATCH /admin/keys/{id}` (every field optional for PATCH;
/// `null` clears a limit).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub budget_period: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub expires_at: Option<Option<String>>,
    pub metadata: Option<Value>,
}

fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl KeyRecord {
    /// Apply a change, validating every field it sets.
    pub fn apply(&mut self, c: KeyChange) -> Result<(), Error> {
        if let Some(n) = c.name {
            if n.trim().is_empty() {
                return Err(Error::invalid("name: must not be empty"));
            }
            self.name = n;
        }
        if let Some(m) = c.models {
            for g in &m {
                globset::Glob::new(g)
                    .map_err(|e| Error::invalid(format!("models: \"{g}\": {e}")))?;
            }
            self.models = m;
        }
        if let Some(v) = c.rpm {
            if v == Some(0) {
                return Err(Error::invalid(
                    "rpm: must be at least 1 (or null for no limit)",
                ));
            }
            self.rpm = v;
        }
        if let Some(v) = c.tpm {
            if v == Some(0) {
                return Err(Error::invalid(
                    "tpm: must be at least 1 (or null for no limit)",
                ));
            }
            self.tpm = v;
        }
        if let Some(v) = c.budget_usd {
            if v.is_some_and(|b| !b.is_finite() || b < 0.0) {
                return Err(Error::invalid("budget_usd: must be a number ≥ 0"));
            }
            self.budget_usd = v;
        }
        if let Some(v) = c.budget_period {
            if let Some(p) = &v {
                p.parse::<crate::config::Dur>()
                    .map_err(|e| Error::invalid(format!("budget_period: {e}")))?;
            }
            self.budget_period = v;
        }
        if let Some(v) = c.expires_at {
            if let Some(t) = &v {
                humantime::parse_rfc3339_weak(t).map_err(|e| {
                    Error::invalid(format!(
                        "expires_at: {e}; use RFC 3339, e.g. 2027-01-01T00:00:00Z"
                    ))
                })?;
            }
            self.expires_at = v;
        }
        if let Some(m) = c.metadata {
            if !m.is_object() {
                return Err(Error::invalid("metadata: must be an object"));
            }
            self.metadata = m;
        }
        Ok(())
    }

    /// The in-process form used by authentication and limits.
    pub fn entry(&self) -> Result<KeyEntry, String> {
        KeyEntry::build(
            &self.id,
            &self.name,
            &self.models,
            self.expires_at.as_deref(),
            self.rpm,
            self.tpm,
            self.budget_usd,
            self.budget_period.as_deref(),
        )
    }
}

/// A new random key: `sk-gw-` + 40 base62 characters.
pub fn generate_key() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let body: String = (0..40)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("sk-gw-{body}")
}

fn new_id() -> String {
    format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

pub struct KeyStore {
    redis: Option<Arc<Redis>>,
    store: Option<Store>,
    cache: moka::sync::Cache<KeyHash, Option<Arc<KeyEntry>>>,
    /// The last answer for each key, used while the store cannot be reached.
    last_known: moka::sync::Cache<KeyHash, Arc<KeyEntry>>,
}

fn backend_error(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("the key store is unavailable: {e}"))
}

impl KeyStore {
    pub fn new(redis: Option<Arc<Redis>>, store: Option<Store>) -> Self {
        Self {
            redis,
            store,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOOKUP_TTL)
                .build(),
            last_known: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    async fn redis_get(&self, key: String) -> Result<Option<String>, Error> {
        let redis = self
            .redis
            .as_ref()
            .ok_or_else(|| backend_error("no redis"))?;
        let mut conn = redis.conn().ok_or_else(|| backend_error("redis is down"))?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        match tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            cmd.query_async::<Option<String>>(&mut conn),
        )
        .await
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                redis.report_error("key lookup", &e, e.is_io_error());
                Err(backend_error(e))
            }
            Err(_) => {
                redis.report_error("key lookup", &"timed out", true);
                Err(backend_error("timed out"))
            }
        }
    }

    async fn get_raw(&self, k: String) -> Result<Option<String>, Error> {
        if self.redis.is_some() {
            self.redis_get(crate::state::keys::key_store(&k)).await
        } else if let Some(store) = &self.store {
            store.get(Table::Keys, k).await.map_err(backend_error)
        } else {
            Ok(None)
        }
    }

    /// The key with this hash, if it exists, is not revoked and parses. While the store cannot
    /// be reached, a key seen in the last hour keeps working as it was, and any other key is
    /// refused (401) — the store being down never lets an unknown key in.
    pub async fn lookup(&self, hash: KeyHash) -> Result<Option<Arc<KeyEntry>>, Error> {
        if let Some(hit) = self.cache.get(&hash) {
            return Ok(hit);
        }
        match self.fetch(hash).await {
            Ok(entry) => {
                match &entry {
                    Some(e) => self.last_known.insert(hash, e.clone()),
                    None => self.last_known.invalidate(&hash),
                }
                self.cache.insert(hash, entry.clone());
                Ok(entry)
            }
            Err(e) => {
                tracing::debug!(error = %e, "key store unreachable; using the last known answer");
                Ok(self.last_known.get(&hash))
            }
        }
    }

    async fn fetch(&self, hash: KeyHash) -> Result<Option<Arc<KeyEntry>>, Error> {
        let found = match self.get_raw(format!("hash:{}", hex::encode(hash))).await? {
            Some(id) => self.get(&id).await?,
            None => None,
        };
        let entry = found
            .filter(|r| !r.revoked)
            .and_then(|r| {
                r.entry()
                    .map_err(|e| tracing::warn!(key = %r.id, error = %e, "unusable key record"))
                    .ok()
            })
            .map(Arc::new);
        Ok(entry)
    }

    pub async fn get(&self, id: &str) -> Result<Option<KeyRecord>, Error> {
        Ok(self
            .get_raw(format!("id:{id}"))
            .await?
            .and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Who a request is, once the configuration file's keys had their say
    /// ([`Auth::identify`]): a key the file does not know is one of the admin-made keys, looked
    /// up by its hash (cached; while the store cannot be reached, the last known answer); 401
    /// when it is unknown, revoked or expired.
    ///
    /// [`KeyStore::caller_by_id`] is the other way to name a caller, for work run later as a
    /// key. The two stay apart because they differ in what names the key and what a miss
    /// means: a request presents its secret (its hash), is answered from the in-process cache
    /// so the request path never waits on the store, and is refused with a 401; a job or batch
    /// keeps the key's id, reads the record fresh (a store failure is an error its runner
    /// retries), and a key that is gone ends the work rather than the request.
    pub async fn caller(&self, identified: Identified) -> Result<Caller, Error> {
        match identified {
            Identified::Open => Ok(Caller { key: None }),
            Identified::Known(entry) => Ok(Caller { key: Some(entry) }),
            Identified::Unknown(hash) => match self.lookup(hash).await? {
                Some(entry) => check_usable(&entry).map(|()| Caller { key: Some(entry) }),
                None => Err(Error::Unauthenticated("the API key is not valid")),
            },
        }
    }

    /// The key of this id, from the configuration file, else from the admin-made keys; `None`
    /// when it is gone, revoked or expired. Jobs and batches run as the key that submitted them.
    pub async fn caller_by_id(&self, auth: &Auth, id: &str) -> Result<Option<Caller>, Error> {
        if !auth.enabled() {
            return Ok(Some(Caller { key: None }));
        }
        let entry = match auth.entry_by_id(id) {
            Some(e) => Some(e),
            None => match self.get(id).await? {
                Some(rec) if !rec.revoked => rec.entry().ok().map(Arc::new),
                _ => None,
            },
        };
        Ok(entry
            .filter(|e| !e.is_expired())
            .map(|e| Caller { key: Some(e) }))
    }

    /// Create a key; returns its record and the plaintext key (shown once). Its name must not
    /// be a live key's, here or among `file`'s keys (409).
    pub async fn create(
        &self,
        change: KeyChange,
        file: &Auth,
    ) -> Result<(KeyRecord, String), Error> {
        let name = change
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::invalid("name: required"))?;
        names::check_file(file, &name)?;
        let key = generate_key();
        let mut rec = KeyRecord {
            id: new_id(),
            name,
            key_prefix: format!("{}…", &key[..10]),
            key_sha256: hex::encode(hash_key(&key)),
            models: vec!["*".into()],
            rpm: None,
            tpm: None,
            budget_usd: None,
            budget_period: None,
            expires_at: None,
            metadata: Value::Object(serde_json::Map::new()),
            created_at: crate::clock::unix_secs(),
            revoked: false,
        };
        rec.apply(change)?;
        self.save(&rec, None, Claim::Take).await?;
        Ok((rec, key))
    }

    /// Change a key; a live key's new name must not be another live key's (409).
    pub async fn update(
        &self,
        id: &str,
        change: KeyChange,
        file: &Auth,
    ) -> Result<KeyRecord, Error> {
        let mut rec = self.get(id).await?.ok_or(Error::NotFound)?;
        let previous = rec.name.clone();
        rec.apply(change)?;
        let claim = if rec.revoked {
            Claim::Release
        } else if rec.name != previous {
            names::check_file(file, &rec.name)?;
            Claim::Take
        } else {
            Claim::Keep
        };
        self.save(&rec, Some(&previous), claim).await?;
        Ok(rec)
    }

    /// Revoke a key: it stops working on every replica within a second and gives its name up.
    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, Error> {
        let mut rec = self.get(id).await?.ok_or(Error::NotFound)?;
        rec.revoked = true;
        self.save(&rec, None, Claim::Release).await?;
        Ok(rec)
    }

    pub async fn list(&self) -> Result<Vec<KeyRecord>, Error> {
        let ids: Vec<String> = if let Some(redis) = &self.redis {
            let mut conn = redis.conn().ok_or_else(|| backend_error("redis is down"))?;
            let mut cmd = redis::cmd("SMEMBERS");
            cmd.arg(crate::state::keys::key_store("all"));
            tokio::time::timeout(REDIS_TIMEOUT * 4, cmd.query_async::<Vec<String>>(&mut conn))
                .await
                .map_err(|_| backend_error("timed out"))?
                .map_err(backend_error)?
        } else if let Some(store) = &self.store {
            store
                .scan(Table::Keys, "id:".into())
                .await
                .map_err(backend_error)?
                .into_iter()
                .filter_map(|(k, _)| k.strip_prefix("id:").map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.get(&id).await? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys() {
        let k = generate_key();
        assert!(k.starts_with("sk-gw-"));
        assert_eq!(k.len(), 46);
        assert!(k[6..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(k, generate_key());
    }

    #[tokio::test]
    async fn embedded_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(None, Some(Store::open(dir.path()).unwrap()));
        let change: KeyChange =
            serde_json::from_str(r#"{"name":"app","models":["gpt-*"],"rpm":5}"#).unwrap();
        let file = Auth::default();
        let (rec, key) = ks.create(change, &file).await.unwrap();
        let found = ks.lookup(hash_key(&key)).await.unwrap().unwrap();
        assert_eq!(&*found.name, "app");
        assert!(found.may_use("gpt-4o") && !found.may_use("claude"));
        assert!(ks.lookup(hash_key("sk-gw-nope")).await.unwrap().is_none());
        ks.revoke(&rec.id).await.unwrap();
        // Fresh store (as another replica would be): revoked keys do not authenticate.
        let ks2 = KeyStore::new(None, ks.store.clone());
        assert!(ks2.lookup(hash_key(&key)).await.unwrap().is_none());
        assert_eq!(ks2.list().await.unwrap().len(), 1);
        let bad: KeyChange = serde_json::from_str(r#"{"rpm":0}"#).unwrap();
        assert!(ks2.update(&rec.id, bad, &file).await.is_err());
    }
}
