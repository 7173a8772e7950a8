//! `providers:`: a provider's `type` and its settings.

use super::*;

/// A provider's `type`: the four wire formats the gateway speaks besides the built-in mock,
/// and the presets (OpenAI-compatible services with their base URL and key variable known;
/// `config::presets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
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
        self == Self::Openai || super::super::presets::preset(self).is_some()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Referenced by `models[].deployments[].provider`.
    #[schemars(example = &"openai")]
    pub name: String,
    #[serde(rename = "type")]
    /// The kind of upstream API.
    pub kind: ProviderType,
    /// Required for openai (defaults to OpenAI's), azure and anthropic (defaults to Anthropic's).
    #[serde(default)]
    #[schemars(example = &"https://api.openai.com/v1")]
    pub base_url: Option<String>,
    #[serde(default)]
    /// The provider's key, usually `"${OPENAI_API_KEY}"`-style from the environment.
    #[schemars(example = &"${OPENAI_API_KEY}")]
    pub api_key: Option<String>,
    /// Per attempt, to the last byte of a non-streamed answer.
    #[serde(default = "default_provider_timeout")]
    pub timeout: Dur,
    /// Connecting to the provider, TLS included.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// A plain `http://` base URL: speak HTTP/2 without TLS (`h2c`, prior knowledge), many
    /// requests as streams on a few connections. `https://` providers use HTTP/2 whenever the
    /// server offers it (ALPN), whatever this says.
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    /// Extra headers to send upstream.
    #[schemars(example = serde_json::json!({"x-team": "search"}))]
    pub headers: BTreeMap<String, String>,
    /// azure only.
    #[serde(default)]
    #[schemars(example = &"2024-10-21")]
    pub api_version: Option<String>,
    /// mock only: delay before the answer (and between streamed words).
    #[serde(default)]
    #[schemars(example = &"20ms")]
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
