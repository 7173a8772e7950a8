//! `state:`: Redis (one server, a Cluster or a Sentinel-managed primary), NATS, the embedded store.

use super::*;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// L2 cache, shared rate limits and spend, admin-made keys. `rediss://` for TLS, `redis://user:password@host:port/db` for auth.
    #[schemars(example = &"redis://127.0.0.1:6379")]
    pub redis_url: Option<String>,
    /// Instead of `redis_url`: seed nodes of a Redis Cluster (`redis://` or `rediss://`, with credentials if any). The client learns the rest of the cluster from them and follows MOVED/ASK and failovers.
    pub redis_cluster_urls: Vec<String>,
    /// Instead of `redis_url`: a Sentinel-managed primary, found through the sentinels and found again after a failover.
    pub redis_sentinel: RedisSentinelConfig,
    /// TLS to Redis (used by `rediss://` URLs).
    pub redis_tls: RedisTlsConfig,
    /// Jobs: queue on a JetStream stream, records in a JetStream KV bucket, batch files in its object store. Several servers comma-separated; `tls://` for TLS; `nats://user:password@host` for auth.
    #[schemars(example = &"nats://127.0.0.1:4222")]
    pub nats_url: Option<String>,
    /// A NATS `.creds` file (JWT + NKey seed) to authenticate with.
    pub nats_credentials_file: Option<String>,
    /// TLS to NATS (used by `tls://` URLs, or when the server requires it).
    pub nats_tls: NatsTlsConfig,
    /// Replicas of the gateway's streams, KV buckets and object store (3 on a 3-node cluster). A stream made earlier with another count is updated to this one.
    pub jetstream_replicas: u32,
    /// Embedded store for whatever Redis and NATS do not hold (keys, spend, jobs).
    pub data_dir: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_cluster_urls: Vec::new(),
            redis_sentinel: RedisSentinelConfig::default(),
            redis_tls: RedisTlsConfig::default(),
            nats_url: None,
            nats_credentials_file: None,
            nats_tls: NatsTlsConfig::default(),
            jetstream_replicas: 1,
            data_dir: "./data".to_owned(),
        }
    }
}

impl StateConfig {
    /// Whether a Redis is configured (one server, a Cluster or a Sentinel primary).
    pub fn redis_configured(&self) -> bool {
        self.redis_url.is_some()
            || !self.redis_cluster_urls.is_empty()
            || !self.redis_sentinel.urls.is_empty()
    }
}

/// `state.redis_sentinel`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSentinelConfig {
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> …`).
    pub master_name: String,
    /// The sentinels (`redis://host:26379`, `rediss://` for TLS). Credentials in them are used for the primary too.
    pub urls: Vec<String>,
}

/// `state.redis_tls`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTlsConfig {
    /// A PEM file of the CA(s) to trust; empty = the system's roots.
    pub ca_file: Option<String>,
    /// Accept any certificate (tests only; logged as a warning at start).
    pub insecure_skip_verify: bool,
}

/// `state.nats_tls`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTlsConfig {
    /// A PEM file of the CA(s) to trust; empty = the system's roots.
    pub ca_file: Option<String>,
}
