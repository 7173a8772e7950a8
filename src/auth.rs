//! Gateway keys: who is calling, and which models they may use.
//!
//! A key arrives as `Authorization: Bearer KEY`, `x-api-key: KEY` or `api-key: KEY` (the forms of
//! the OpenAI, Anthropic and Azure SDKs), never in the query string. Only SHA-256 digests of keys
//! are held: static keys from the file are hashed at load (or given as `key_sha256`). The lookup
//! is one hash and one map probe. Keys and their digests never reach logs, errors or metrics.

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::HeaderMap;
use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, KeyConfig};
use crate::error::Error;

pub type KeyHash = [u8; 32];

/// SHA-256 of a key, as `key_sha256` holds it (hex).
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

pub fn hash_hex(key: &str) -> String {
    hex::encode(hash_key(key))
}

/// One gateway key's record.
#[derive(Debug)]
pub struct KeyEntry {
    /// The immutable id everything the key owns is bound to: `key_…` for admin-created keys,
    /// [`file_key_id`] (derived from the key's digest) for keys of the file.
    pub id: String,
    /// A label for logs, metrics and the admin API; never compared to decide ownership.
    pub name: Arc<str>,
    /// Keys of the file: the id records made before ids followed the key's digest carry
    /// (`cfg_<name>`); [`KeyEntry::owns`] accepts it for those records.
    legacy_id: Option<Box<str>>,
    models: ModelGlobs,
    pub expires_at: Option<SystemTime>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget_usd: Option<f64>,
    pub budget_period: Option<std::time::Duration>,
    /// The names of its rate-limit buckets (`k:<id>:rpm`, `k:<id>:tpm`), made once.
    pub rpm_bucket: Arc<str>,
    pub tpm_bucket: Arc<str>,
    /// `rpm` and `tpm` as `x-ratelimit-limit-*` values, made once (a clone shares the bytes).
    pub rpm_header: Option<crate::headers::OwnValue>,
    pub tpm_header: Option<crate::headers::OwnValue>,
}

#[derive(Debug)]
enum ModelGlobs {
    All,
    Some(GlobSet),
}

impl KeyEntry {
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor for both key sources"
    )]
    pub fn build(
        id: &str,
        name: &str,
        models: &[String],
        expires_at: Option<&str>,
        rpm: Option<u64>,
        tpm: Option<u64>,
        budget_usd: Option<f64>,
        budget_period: Option<&str>,
    ) -> Result<Self, String> {
        let models = if models.iter().any(|m| m == "*") {
            ModelGlobs::All
        } else {
            let mut b = GlobSetBuilder::new();
            for m in models {
                b.add(Glob::new(m).map_err(|e| format!("key {name}: models: {e}"))?);
            }
            ModelGlobs::Some(b.build().map_err(|e| e.to_string())?)
        };
        let expires_at = match expires_at {
            Some(t) => Some(
                humantime::parse_rfc3339_weak(t)
                    .map_err(|e| format!("key {name}: expires_at: {e}"))?,
            ),
            None => None,
        };
        let budget_period = match budget_period {
            Some(p) => Some(
                p.parse::<crate::config::Dur>()
                    .map_err(|e| format!("key {name}: budget_period: {e}"))?
                    .get(),
            ),
            None => None,
        };
        Ok(Self {
            rpm_bucket: format!("k:{id}:rpm").into(),
            tpm_bucket: format!("k:{id}:tpm").into(),
            rpm_header: rpm.map(crate::headers::number),
            tpm_header: tpm.map(crate::headers::number),
            id: id.to_owned(),
            name: name.into(),
            legacy_id: None,
            models,
            expires_at,
            rpm,
            tpm,
            budget_usd,
            budget_period,
        })
    }

    fn from_config(k: &KeyConfig, hash: &KeyHash) -> Result<Self, String> {
        let mut e = Self::build(
            &file_key_id(hash),
            &k.name,
            &k.models,
            k.expires_at.as_deref(),
            k.rpm,
            k.tpm,
            k.budget_usd,
            None,
        )?;
        e.budget_period = k.budget_period.map(|d| d.get());
        e.legacy_id = Some(legacy_file_key_id(&k.name).into());
        Ok(e)
    }

    /// Whether a record stamped with `owner` (a key id) belongs to this key.
    pub fn owns(&self, owner: &str) -> bool {
        owner == self.id || self.legacy_id.as_deref() == Some(owner)
    }

    /// The id records of this key carried before ids followed the key's digest, if it had
    /// another one (`cfg_<name>` for keys of the file).
    pub fn legacy_id(&self) -> Option<&str> {
        self.legacy_id.as_deref()
    }

    /// The period spend and usage are counted over.
    pub fn period(&self) -> std::time::Duration {
        self.budget_period
            .unwrap_or(crate::config::DEFAULT_BUDGET_PERIOD)
    }

    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|t| t <= SystemTime::now())
    }

    pub fn may_use(&self, model: &str) -> bool {
        match &self.models {
            ModelGlobs::All => true,
            ModelGlobs::Some(set) => set.is_match(model),
        }
    }
}

/// The id of a key of the file: `cfg_` + the first 16 hex digits of the SHA-256 of its
/// `key_sha256` (the hex string). It follows the secret, not the name: renaming a key keeps its
/// records and spend, and a new secret under an old name starts afresh. Not reversible to the key.
pub fn file_key_id(hash: &KeyHash) -> String {
    let digest = Sha256::digest(hex::encode(hash).as_bytes());
    let mut id = String::with_capacity(20);
    id.push_str("cfg_");
    id.push_str(&hex::encode(&digest[..8]));
    id
}

/// The id keys of the file had before [`file_key_id`]: `cfg_<name>`.
pub fn legacy_file_key_id(name: &str) -> String {
    format!("cfg_{name}")
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` when the gateway runs without an `auth` section (open).
    pub key: Option<Arc<KeyEntry>>,
}

impl Caller {
    pub fn may_use(&self, model: &str) -> bool {
        self.key.as_ref().is_none_or(|k| k.may_use(model))
    }

    pub fn check_model(&self, model: &str) -> Result<(), Error> {
        if self.may_use(model) {
            Ok(())
        } else {
            Err(Error::ModelNotAllowed(model.to_owned()))
        }
    }

    /// The key's name: a label for logs and metrics only ("" when open).
    pub fn name(&self) -> &str {
        self.key.as_ref().map_or("", |k| &*k.name)
    }

    /// The key's id, which everything it owns is bound to ("" when open).
    pub fn id(&self) -> &str {
        self.key.as_ref().map_or("", |k| k.id.as_str())
    }

    /// Whether a record stamped with `owner` (a key id) is this caller's. With auth off every
    /// record is.
    pub fn owns(&self, owner: &str) -> bool {
        self.key.as_ref().is_none_or(|k| k.owns(owner))
    }
}

/// The key table built from the configuration.
#[derive(Debug, Default)]
pub struct Auth {
    /// `false` = no auth section: every request is let in.
    enabled: bool,
    /// FxHash: its keys are SHA-256 digests, already uniform, and a request only looks one up
    /// (SipHash over the 32 bytes was ~270 instructions a request).
    keys: rustc_hash::FxHashMap<KeyHash, Arc<KeyEntry>>,
    master: Option<KeyHash>,
}

impl Auth {
    pub fn from_config(cfg: Option<&AuthConfig>) -> Result<Self, String> {
        let Some(cfg) = cfg else {
            return Ok(Self::default());
        };
        let mut keys = rustc_hash::FxHashMap::default();
        for k in &cfg.keys {
            let hash = match (&k.key, &k.key_sha256) {
                (Some(key), _) if !key.is_empty() => hash_key(key),
                (_, Some(h)) => {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h.trim(), &mut out).map_err(|_| {
                        format!("auth.keys {}: key_sha256 is not 64 hex digits", k.name)
                    })?;
                    out
                }
                _ => return Err(format!("auth.keys {}: needs key or key_sha256", k.name)),
            };
            keys.insert(hash, Arc::new(KeyEntry::from_config(k, &hash)?));
        }
        let master = cfg
            .master_key
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(hash_key);
        Ok(Self {
            enabled: true,
            keys,
            master,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn has_master_key(&self) -> bool {
        self.master.is_some()
    }

    /// Who is calling, from the request's headers, among the keys of the file.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Error> {
        match self.identify(headers)? {
            Identified::Open => Ok(Caller { key: None }),
            Identified::Known(entry) => Ok(Caller { key: Some(entry) }),
            Identified::Unknown(_) => Err(Error::Unauthenticated("the API key is not valid")),
        }
    }

    /// The first step of authentication: the file's keys; an unknown key's hash is returned so
    /// the admin-created keys can be looked up next.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Identified, Error> {
        if !self.enabled {
            return Ok(Identified::Open);
        }
        let key = presented_key(headers).ok_or(Error::Unauthenticated(
            "no API key given; send it as Authorization: Bearer KEY, x-api-key or api-key",
        ))?;
        let hash = hash_key(key);
        match self.keys.get(&hash) {
            Some(entry) => {
                check_usable(entry)?;
                Ok(Identified::Known(entry.clone()))
            }
            None => Ok(Identified::Unknown(hash)),
        }
    }

    /// Records of the file's keys (for the admin listing).
    pub fn static_keys(&self) -> impl Iterator<Item = &Arc<KeyEntry>> {
        self.keys.values()
    }

    /// Whether the headers carry the master key (constant-time comparison of digests).
    pub fn is_master(&self, headers: &HeaderMap) -> bool {
        presented_key(headers).is_some_and(|key| self.is_master_key(key))
    }

    /// Whether `key` is the master key, compared in constant time (over the hashes).
    pub fn is_master_key(&self, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.master
            .is_some_and(|master| bool::from(hash_key(key).ct_eq(&master)))
    }

    /// A digest of the master key's digest: names which master key a console session was
    /// opened with (a session ends when the master key changes), without being either.
    pub fn master_fingerprint(&self) -> Option<KeyHash> {
        self.master.map(|m| {
            let mut d = Sha256::new();
            d.update(b"ai-gateway console session\0");
            d.update(m);
            d.finalize().into()
        })
    }
}

/// What the file's keys say of a request.
pub enum Identified {
    /// No auth section: everyone is let in.
    Open,
    Known(Arc<KeyEntry>),
    /// A key not in the file: its hash, for the key store.
    Unknown(KeyHash),
}

/// Refuse expired keys.
pub fn check_usable(entry: &KeyEntry) -> Result<(), Error> {
    if entry.is_expired() {
        return Err(Error::Unauthenticated("the API key has expired"));
    }
    Ok(())
}

impl Auth {
    /// A key from the file by its id, or by the id records made before ids followed the key's
    /// secret carry (`cfg_<name>`): a job runs as the key that submitted it.
    pub fn entry_by_id(&self, id: &str) -> Option<Arc<KeyEntry>> {
        let mut keys = self.keys.values();
        keys.clone()
            .find(|k| k.id == id)
            .or_else(|| keys.find(|k| k.legacy_id() == Some(id)))
            .cloned()
    }

    /// The file's key with this name, if any.
    pub fn by_name(&self, name: &str) -> Option<&Arc<KeyEntry>> {
        self.keys.values().find(|k| &*k.name == name)
    }
}

/// The key from `Authorization: Bearer`, `x-api-key` or `api-key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(s) = v.to_str()
    {
        let s = s.trim();
        if let Some(rest) = s
            .strip_prefix("Bearer ")
            .or_else(|| s.strip_prefix("bearer "))
        {
            let rest = rest.trim();
            if !rest.is_empty() {
                return Some(rest);
            }
        }
    }
    for name in ["x-api-key", "api-key"] {
        if let Some(s) = headers.get(name).and_then(|v| v.to_str().ok()) {
            let s = s.trim();
            if !s.is_empty() {
                return Some(s);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        let cfg = AuthConfig {
            master_key: Some("master-secret".into()),
            keys: vec![
                KeyConfig {
                    name: "all".into(),
                    key: Some("sk-all".into()),
                    key_sha256: None,
                    models: vec!["*".into()],
                    rpm: None,
                    tpm: None,
                    budget_usd: None,
                    budget_period: None,
                    expires_at: None,
                    guardrails: Vec::new(),
                },
                KeyConfig {
                    name: "gpt".into(),
                    key: None,
                    key_sha256: Some(hash_hex("sk-gpt")),
                    models: vec!["gpt-*".into()],
                    rpm: None,
                    tpm: None,
                    budget_usd: None,
                    budget_period: None,
                    expires_at: None,
                    guardrails: Vec::new(),
                },
                KeyConfig {
                    name: "old".into(),
                    key: Some("sk-old".into()),
                    key_sha256: None,
                    models: vec!["*".into()],
                    rpm: None,
                    tpm: None,
                    budget_usd: None,
                    budget_period: None,
                    expires_at: Some("2001-01-01T00:00:00Z".into()),
                    guardrails: Vec::new(),
                },
            ],
            ..AuthConfig::default()
        };
        Auth::from_config(Some(&cfg)).unwrap()
    }

    fn headers(name: &'static str, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn three_header_forms() {
        let a = auth();
        for (n, v) in [
            ("authorization", "Bearer sk-all"),
            ("x-api-key", "sk-all"),
            ("api-key", "sk-all"),
        ] {
            assert_eq!(a.authenticate(&headers(n, v)).unwrap().name(), "all");
        }
        assert!(a.authenticate(&HeaderMap::new()).is_err());
        assert!(
            a.authenticate(&headers("authorization", "Bearer nope"))
                .is_err()
        );
    }

    #[test]
    fn globs_and_expiry() {
        let a = auth();
        let c = a.authenticate(&headers("x-api-key", "sk-gpt")).unwrap();
        assert!(c.may_use("gpt-4o"));
        assert!(!c.may_use("claude-haiku"));
        assert!(a.authenticate(&headers("x-api-key", "sk-old")).is_err());
    }

    #[test]
    fn a_file_keys_id_follows_its_secret_and_owns_its_legacy_records() {
        let a = auth();
        let all = a.authenticate(&headers("x-api-key", "sk-all")).unwrap();
        let id = all.id().to_owned();
        // `cfg_` + 16 hex digits of SHA-256(key_sha256 hex), whichever way the key was given.
        assert_eq!(id, file_key_id(&hash_key("sk-all")));
        assert!(
            id.starts_with("cfg_") && id.len() == 20 && id != "cfg_all",
            "{id}"
        );
        let gpt = a.authenticate(&headers("x-api-key", "sk-gpt")).unwrap();
        assert_eq!(gpt.id(), file_key_id(&hash_key("sk-gpt")));
        // Its records, new and made before ids followed the secret; nobody else's.
        assert!(all.owns(&id) && all.owns("cfg_all"));
        assert!(!all.owns("cfg_gpt") && !all.owns(gpt.id()) && !gpt.owns(&id));
        assert!(Caller { key: None }.owns("anything"));
        assert_eq!(&*a.entry_by_id(&id).unwrap().name, "all");
        assert_eq!(a.entry_by_id("cfg_all").unwrap().id, id);
        assert!(a.entry_by_id("cfg_nobody").is_none());
    }

    #[test]
    fn master_key() {
        let a = auth();
        assert!(a.is_master(&headers("authorization", "Bearer master-secret")));
        assert!(!a.is_master(&headers("authorization", "Bearer sk-all")));
        assert!(!Auth::default().is_master(&headers("authorization", "Bearer x")));
    }
}
