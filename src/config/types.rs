//! The validated configuration: what every other module sees.
//!
//! These structs mirror `shared/spec/config.md` key for key (serde names are the YAML keys) and are
//! deserialised with `deny_unknown_fields` everywhere, so an unknown key is an error with its path.
//! Cross-references (a deployment's provider, a fallback's model) are checked afterwards by
//! `validate`. Durations and sizes are newtypes parsed from `30s` / `10MiB` strings.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::units::{ByteSize, Dur};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub resilience: ResilienceConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    /// `None` = no `auth` section at all: the gateway serves without keys (warning at start).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    #[serde(default)]
    pub jobs: JobsConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// In the configured order (the order they run and are reported in).
    #[serde(default)]
    pub guardrails: Vec<GuardrailConfig>,
    #[serde(default)]
    pub responses: ResponsesConfig,
}

/// `responses:`: the Responses API objects the gateway stores.
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_size: ByteSize,
    pub request_timeout: Dur,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub redis_url: Option<String>,
    pub nats_url: Option<String>,
    pub data_dir: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            nats_url: None,
            data_dir: "./data".to_owned(),
        }
    }
}

/// A provider's `type`: the four wire formats the gateway speaks besides the built-in mock,
/// and the presets (OpenAI-compatible services with their base URL and key variable known;
/// `config::presets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Openai,
    Azure,
    Anthropic,
    Mock,
    Gemini,
    Bedrock,
    Deepseek,
    Qwen,
    Zhipu,
    Moonshot,
    Doubao,
    Hunyuan,
    Qianfan,
    Mistral,
    Groq,
    Together,
    Fireworks,
    Openrouter,
    Xai,
    Cohere,
    Ollama,
    Vllm,
}

impl ProviderType {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Mock => "mock",
            Self::Gemini => "gemini",
            Self::Bedrock => "bedrock",
            Self::Deepseek => "deepseek",
            Self::Qwen => "qwen",
            Self::Zhipu => "zhipu",
            Self::Moonshot => "moonshot",
            Self::Doubao => "doubao",
            Self::Hunyuan => "hunyuan",
            Self::Qianfan => "qianfan",
            Self::Mistral => "mistral",
            Self::Groq => "groq",
            Self::Together => "together",
            Self::Fireworks => "fireworks",
            Self::Openrouter => "openrouter",
            Self::Xai => "xai",
            Self::Cohere => "cohere",
            Self::Ollama => "ollama",
            Self::Vllm => "vllm",
        }
    }

    /// Whether the provider speaks OpenAI's wire format at OpenAI's paths (`openai` and every
    /// preset).
    pub fn is_openai_compatible(self) -> bool {
        self == Self::Openai || super::presets::preset(self).is_some()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ProviderType,
    /// Required for openai (defaults to OpenAI's), azure and anthropic (defaults to Anthropic's).
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default = "default_provider_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// azure only.
    #[serde(default)]
    pub api_version: Option<String>,
    /// mock only: delay before the answer (and between streamed words).
    #[serde(default)]
    pub latency: Option<Dur>,
    /// bedrock only: the AWS region (signing, and the default `base_url`).
    #[serde(default)]
    pub region: Option<String>,
    /// bedrock only: AWS credentials (SigV4); a session token for temporary ones.
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    #[serde(default)]
    pub aws_session_token: Option<String>,
}

fn default_provider_timeout() -> Dur {
    Dur::secs(60)
}
fn default_connect_timeout() -> Dur {
    Dur::secs(5)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingStrategy {
    #[default]
    Priority,
    Weighted,
    Latency,
    Cost,
    LeastBusy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    #[serde(default)]
    pub routing: RoutingStrategy,
    pub deployments: Vec<DeploymentConfig>,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub cache: Option<bool>,
    /// Names from `guardrails:`, applied in addition to the global ones.
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// `hedge:` send the request to a second deployment when the first is slow.
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
    /// `shadow:` mirror a sample of requests to another model, never affecting the answer.
    #[serde(default)]
    pub shadow: Option<ShadowConfig>,
}

/// `models[].hedge`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    pub after: HedgeAfter,
    #[serde(default = "one")]
    pub max: u32,
}

/// When a hedge goes out: a fixed delay, or a percentile (1-99) of the model's recent latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    Fixed(Dur),
    Percentile(f64),
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        if let Some(p) = t.strip_prefix('p') {
            return match p.parse::<u8>() {
                Ok(n @ 1..=99) => Ok(Self::Percentile(f64::from(n) / 100.0)),
                _ => Err(serde::de::Error::custom(format!(
                    "\"{t}\" is not a percentile; write p50, p90, p95 or p99 (or a duration such as 800ms)"
                ))),
            };
        }
        t.parse::<Dur>()
            .map(Self::Fixed)
            .map_err(serde::de::Error::custom)
    }
}

/// `models[].shadow`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub model: String,
    pub sample: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub input_cost_per_mtok: Option<f64>,
    #[serde(default)]
    pub output_cost_per_mtok: Option<f64>,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    pub retries: u32,
    pub backoff_initial: Dur,
    pub backoff_max: Dur,
    pub circuit_breaker: CircuitBreakerConfig,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    pub failure_threshold: u32,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    #[default]
    Key,
    Global,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    pub ttl: Dur,
    pub scope: CacheScope,
    pub l1_max_entries: u64,
    pub l1_max_bytes: ByteSize,
    pub l2: bool,
    pub only_deterministic: bool,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticCacheConfig {
    pub enabled: bool,
    /// A model name from `models:`, called through the gateway's own routing.
    pub embedding_model: String,
    /// Cosine similarity needed for a hit, in (0, 1].
    pub threshold: f32,
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

/// One entry of `guardrails:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: GuardrailType,
    /// `type: pii`: the entities looked for (default: all six).
    #[serde(default)]
    pub entities: Option<Vec<String>>,
    /// `type: regex`: the patterns (Rust `regex` syntax), checked at load.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// `type: moderation`: a model from `models:` serving `/v1/moderations`.
    #[serde(default)]
    pub model: Option<String>,
    /// Default: `mask` for pii, `block` for regex and moderation.
    #[serde(default)]
    pub action: Option<GuardrailAction>,
    /// Default: `[input, output]` for pii and regex, `[input]` for moderation.
    #[serde(default)]
    pub apply_to: Option<Vec<GuardrailSide>>,
    /// Globs over model names this guardrail applies to on its own; empty: only where a
    /// model or a key names it.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// `type: moderation`: what a failed moderation call means.
    #[serde(default)]
    pub on_error: ModerationOnError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailType {
    Pii,
    Regex,
    Moderation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailAction {
    Mask,
    Redact,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardrailSide {
    Input,
    Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModerationOnError {
    Allow,
    #[default]
    Block,
}

impl GuardrailConfig {
    pub fn action(&self) -> GuardrailAction {
        self.action.unwrap_or(match self.kind {
            GuardrailType::Pii => GuardrailAction::Mask,
            GuardrailType::Regex | GuardrailType::Moderation => GuardrailAction::Block,
        })
    }

    /// Whether it applies to the request (`input`) and to the answer (`output`).
    pub fn sides(&self) -> (bool, bool) {
        match &self.apply_to {
            Some(s) => (
                s.contains(&GuardrailSide::Input),
                s.contains(&GuardrailSide::Output),
            ),
            None => (true, self.kind != GuardrailType::Moderation),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub master_key: Option<String>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: String,
    /// Exactly one of `key` and `key_sha256` (checked by validation).
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_sha256: Option<String>,
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub budget_period: Option<Dur>,
    /// RFC 3339 timestamp, validated at load.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Names from `guardrails:`, applied in addition to the global and the model's.
    #[serde(default)]
    pub guardrails: Vec<String>,
}

fn all_models() -> Vec<String> {
    vec!["*".to_owned()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    #[default]
    Local,
    Deny,
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    pub shared: bool,
    pub on_redis_error: OnRedisError,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimit {
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    pub workers: u32,
    pub max_attempts: u32,
    pub result_ttl: Dur,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub secret: Option<String>,
    pub timeout: Dur,
    pub max_attempts: u32,
    pub backoff_initial: Dur,
    pub backoff_max: Dur,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `None`: pretty on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    pub log_level: String,
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
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
