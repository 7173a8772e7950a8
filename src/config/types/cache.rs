//! `cache:`: the response cache, exact and semantic.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    #[default]
    Key,
    Global,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache answers (per model: `models[].cache`).
    pub enabled: bool,
    /// How long an answer is kept.
    pub ttl: Dur,
    /// `key`: each gateway key sees its own entries; `global`: shared by all keys.
    pub scope: CacheScope,
    /// In-process cache: entries at most.
    pub l1_max_entries: u64,
    /// In-process cache: bytes at most.
    pub l1_max_bytes: ByteSize,
    /// Also cache in Redis (when `state.redis_url` is set), shared by replicas.
    pub l2: bool,
    /// Cache only requests with temperature 0 or a seed.
    pub only_deterministic: bool,
    /// Answer a request whose last user message means nearly the same as a cached one's.
    pub semantic: SemanticCacheConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Dur::secs(3600),
            scope: CacheScope::Key,
            l1_max_entries: 10_000,
            l1_max_bytes: ByteSize(256 * 1024 * 1024),
            l2: true,
            only_deterministic: false,
            semantic: SemanticCacheConfig::default(),
        }
    }
}

/// `cache.semantic`: answer a request whose last user message means nearly the same as a
/// cached one's.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticCacheConfig {
    /// Turn the semantic cache on.
    pub enabled: bool,
    /// A model name from `models:`, called through the gateway's own routing.
    pub embedding_model: String,
    /// Cosine similarity needed for a hit, in (0, 1].
    pub threshold: f32,
    /// Entries kept at most.
    pub max_entries: u64,
}

impl Default for SemanticCacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            embedding_model: "text-embedding-3-small".to_owned(),
            threshold: 0.95,
            max_entries: 100_000,
        }
    }
}
