//! The validated configuration: what every other module sees.
//!
//! These structs mirror `docs/contract/config.md` key for key (serde names are the YAML keys) and are
//! deserialised with `deny_unknown_fields` everywhere, so an unknown key is an error with its path.
//! Cross-references (a deployment's provider, a fallback's model) are checked afterwards by
//! `validate`. Durations and sizes are newtypes parsed from `30s` / `10MiB` strings.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Dur};

mod batches;
mod cache;
mod guardrails;
mod models;
mod providers;
mod request_log;
mod routing;
mod state;
pub use batches::*;
pub use cache::*;
pub use guardrails::*;
pub use models::*;
pub use providers::*;
pub use request_log::*;
pub use routing::*;
pub use state::*;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    /// The listener and its limits.
    pub server: ServerConfig,
    #[serde(default)]
    /// Shared state: Redis, NATS, the embedded store. None of them = one process, embedded, no services.
    pub state: StateConfig,
    #[serde(default)]
    /// Upstream APIs the models are served by.
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    /// The model names clients put in `"model"`, each served by one or more deployments.
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    /// Retries, backoff and circuit breakers: the defaults for every model.
    pub resilience: ResilienceConfig,
    #[serde(default)]
    /// The response cache (L1 in process, L2 in Redis).
    pub cache: CacheConfig,
    /// Gateway keys and the admin API. No `auth` section at all: the gateway serves without keys
    /// (and warns at start).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    /// Where rate limits are counted, and per-model ceilings over all keys.
    pub rate_limits: RateLimitsConfig,
    #[serde(default)]
    /// Async jobs and their webhooks.
    pub jobs: JobsConfig,
    #[serde(default)]
    /// The OpenAI Batch API (`/v1/files`, `/v1/batches`), run by the gateway itself.
    pub batches: BatchesConfig,
    #[serde(default)]
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// In the configured order (the order they run and are reported in).
    #[serde(default)]
    pub guardrails: Vec<GuardrailConfig>,
    #[serde(default)]
    pub responses: ResponsesConfig,
    #[serde(default)]
    /// The admin request log and the usage report.
    pub request_log: RequestLogConfig,
}

/// `responses:`: the Responses API objects the gateway stores.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesConfig {
    /// How long a stored response (and its input items) is kept.
    pub store_ttl: Dur,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        Self {
            store_ttl: Dur::secs(30 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, `IP:PORT`. Without a file: `$AI_GATEWAY_LISTEN`, else `0.0.0.0:8080` in a container, else `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest request body accepted (413 beyond it).
    pub max_body_size: ByteSize,
    /// Whole-request deadline (504 beyond it).
    pub request_timeout: Dur,
    /// On SIGTERM, how long in-flight requests and streams may take to finish.
    pub shutdown_grace: Dur,
    /// A client must send a whole request head within this (from its first byte, or from the
    /// connection's start for the first request).
    pub header_read_timeout: Dur,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Dur,
    /// Open client connections at most; beyond it new ones wait in the listen backlog.
    pub max_connections: u32,
    /// Browser origins allowed to call the API (`"*"` for any); empty: no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_size: ByteSize(10 * 1024 * 1024),
            request_timeout: Dur::secs(600),
            shutdown_grace: Dur::secs(30),
            header_read_timeout: Dur::secs(10),
            idle_timeout: Dur::secs(60),
            max_connections: 10_000,
            cors_allowed_origins: Vec::new(),
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Extra attempts after the first, on 429, 5xx, connect errors and timeouts.
    pub retries: u32,
    /// First retry delay; exponential with full jitter, honouring `retry-after`.
    pub backoff_initial: Dur,
    /// Longest retry delay.
    pub backoff_max: Dur,
    /// A deployment's circuit opens after consecutive failures.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Above 0: probe deployments whose circuit is open this often.
    pub health_check_interval: Dur,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff_initial: Dur::millis(100),
            backoff_max: Dur::secs(5),
            circuit_breaker: CircuitBreakerConfig::default(),
            health_check_interval: Dur::secs(0),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open a deployment's circuit.
    pub failure_threshold: u32,
    /// Then half-open: one probe request decides.
    pub open_for: Dur,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Dur::secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    /// Turns the admin API on; usually `"${GATEWAY_MASTER_KEY}"`.
    #[schemars(example = &"${GATEWAY_MASTER_KEY}")]
    pub master_key: Option<String>,
    #[serde(default)]
    /// Static keys; more through the admin API.
    pub keys: Vec<KeyConfig>,
    /// A web console session (signed in with the master key) ends after this long without use
    /// (and 7 days after sign-in at the latest). Default 12h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"12h")]
    pub console_session_idle: Option<Dur>,
}

/// The budget period of keys without `budget_period` (also the usage-reporting period).
pub const DEFAULT_BUDGET_PERIOD: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Names the key in logs, metrics, spend and the admin API; unique.
    #[schemars(example = &"app")]
    pub name: String,
    /// Exactly one of `key` and `key_sha256` (checked by validation).
    #[serde(default)]
    #[schemars(example = &"${APP_KEY}")]
    pub key: Option<String>,
    #[serde(default)]
    /// Or its SHA-256 hex (`ai-gateway hash-key KEY`), so the file holds no secret.
    #[schemars(example = &"3f0a…(64 hex digits)")]
    pub key_sha256: Option<String>,
    #[serde(default = "all_models")]
    /// Globs over model names this key may use.
    pub models: Vec<String>,
    /// Requests per minute for this key.
    #[serde(default)]
    #[schemars(example = 600)]
    pub rpm: Option<u64>,
    /// Tokens per minute for this key.
    #[serde(default)]
    #[schemars(example = 1000000)]
    pub tpm: Option<u64>,
    #[serde(default)]
    /// Spend ceiling in USD per `budget_period`.
    #[schemars(example = 50.0)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    /// The budget period (e.g. `30d`); none = over the key's lifetime.
    #[schemars(example = &"30d")]
    pub budget_period: Option<Dur>,
    /// RFC 3339 timestamp, validated at load.
    #[serde(default)]
    #[schemars(example = &"2027-01-01T00:00:00Z")]
    pub expires_at: Option<String>,
    /// Names from `guardrails:`, applied in addition to the global and the model's.
    #[serde(default)]
    pub guardrails: Vec<String>,
}

fn all_models() -> Vec<String> {
    vec!["*".to_owned()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    #[default]
    Local,
    Deny,
    Allow,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Count in Redis (all replicas together) when `state.redis_url` is set.
    pub shared: bool,
    /// While Redis is down: `local` counting per process, `deny` or `allow`.
    pub on_redis_error: OnRedisError,
    /// Per-model ceilings over all keys, by model name.
    #[schemars(example = serde_json::json!({"gpt-4o-mini": {"rpm": 10000, "tpm": 5000000}}))]
    pub models: BTreeMap<String, ModelLimit>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            shared: true,
            on_redis_error: OnRedisError::Local,
            models: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelLimit {
    /// Requests per minute for this model over all keys.
    #[serde(default)]
    #[schemars(example = 10000)]
    pub rpm: Option<u64>,
    /// Tokens per minute for this model over all keys.
    #[serde(default)]
    #[schemars(example = 5000000)]
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Concurrent jobs per gateway process.
    pub workers: u32,
    /// Attempts of a job before it ends `failed`.
    pub max_attempts: u32,
    /// How long a finished job's record and result are kept.
    pub result_ttl: Dur,
    /// Delivery of finished jobs to `x-webhook-url`.
    pub webhook: WebhookConfig,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 32,
            max_attempts: 3,
            result_ttl: Dur::secs(7 * 86_400),
            webhook: WebhookConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// `whsec_…`; generated and stored at start when unset (`ai-gateway webhook-secret` prints it).
    #[schemars(example = &"${WEBHOOK_SECRET}")]
    pub secret: Option<String>,
    /// A delivery not answered with 2xx within this is retried.
    pub timeout: Dur,
    /// Delivery attempts at most.
    pub max_attempts: u32,
    /// First retry delay; exponential with jitter.
    pub backoff_initial: Dur,
    /// Longest retry delay.
    pub backoff_max: Dur,
    /// Allow webhook URLs that resolve to loopback, private, link-local or metadata addresses.
    pub allow_private_networks: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret: None,
            timeout: Dur::secs(10),
            max_attempts: 10,
            backoff_initial: Dur::secs(1),
            backoff_max: Dur::secs(3600),
            allow_private_networks: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `json` or `pretty`; unset: pretty on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// A tracing filter such as `info` or `ai_gateway=debug` (or `RUST_LOG`).
    pub log_level: String,
    /// OTLP endpoint for trace export; empty = no export.
    #[schemars(example = &"http://127.0.0.1:4318")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of exported traces.
    pub service_name: String,
    /// Log request and response bodies (never keys or `Authorization`).
    pub log_bodies: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: None,
            log_level: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "ai-gateway".to_owned(),
            log_bodies: false,
        }
    }
}
