//! Provider presets (config.md's preset table) and the defaults a provider takes from the
//! environment when its file leaves them out:
//!
//! - a preset's `base_url` and `api_key` (from its key variable); the key of a preset whose
//!   variable is required is an error naming the variable when neither is there;
//! - `gemini`: `base_url` Google's API, `api_key` from `GEMINI_API_KEY`;
//! - `bedrock`: `region` from `AWS_REGION` (else `AWS_DEFAULT_REGION`), `base_url` the region's
//!   Bedrock runtime, the credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//!   `AWS_SESSION_TOKEN` (unless the provider has an `api_key`, a Bedrock API key sent as a
//!   bearer token).
//!
//! A key written in the file always wins, even an empty one (`"${X:-}"` unset: no key).

use super::yaml::Lines;
use super::{Config, ConfigError, Env, ProviderType};

/// One OpenAI-compatible service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub kind: ProviderType,
    /// What the service is, for docs and `describe`.
    pub label: &'static str,
    pub base_url: &'static str,
    /// The environment variable the key comes from by default (`None`: the service takes none).
    pub key_var: Option<&'static str>,
    /// Whether a missing key is an error (a local server's key is optional).
    pub key_required: bool,
}

const fn p(
    kind: ProviderType,
    label: &'static str,
    base_url: &'static str,
    key_var: Option<&'static str>,
    key_required: bool,
) -> Preset {
    Preset {
        kind,
        label,
        base_url,
        key_var,
        key_required,
    }
}

/// config.md's preset table, in its order (the Chinese services first).
pub const PRESETS: [Preset; 16] = [
    p(
        ProviderType::Deepseek,
        "DeepSeek",
        "https://api.deepseek.com/v1",
        Some("DEEPSEEK_API_KEY"),
        true,
    ),
    p(
        ProviderType::Qwen,
        "Alibaba DashScope (Qwen)",
        "https://dashscope.aliyuncs.com/compatible-mode/v1",
        Some("DASHSCOPE_API_KEY"),
        true,
    ),
    p(
        ProviderType::Zhipu,
        "Zhipu AI (GLM)",
        "https://open.bigmodel.cn/api/paas/v4",
        Some("ZHIPUAI_API_KEY"),
        true,
    ),
    p(
        ProviderType::Moonshot,
        "Moonshot AI (Kimi)",
        "https://api.moonshot.cn/v1",
        Some("MOONSHOT_API_KEY"),
        true,
    ),
    p(
        ProviderType::Doubao,
        "Volcengine Ark (Doubao)",
        "https://ark.cn-beijing.volces.com/api/v3",
        Some("ARK_API_KEY"),
        true,
    ),
    p(
        ProviderType::Hunyuan,
        "Tencent Hunyuan",
        "https://api.hunyuan.cloud.tencent.com/v1",
        Some("HUNYUAN_API_KEY"),
        true,
    ),
    p(
        ProviderType::Qianfan,
        "Baidu Qianfan (ERNIE)",
        "https://qianfan.baidubce.com/v2",
        Some("QIANFAN_API_KEY"),
        true,
    ),
    p(
        ProviderType::Mistral,
        "Mistral AI",
        "https://api.mistral.ai/v1",
        Some("MISTRAL_API_KEY"),
        true,
    ),
    p(
        ProviderType::Groq,
        "Groq",
        "https://api.groq.com/openai/v1",
        Some("GROQ_API_KEY"),
        true,
    ),
    p(
        ProviderType::Together,
        "Together AI",
        "https://api.together.xyz/v1",
        Some("TOGETHER_API_KEY"),
        true,
    ),
    p(
        ProviderType::Fireworks,
        "Fireworks AI",
        "https://api.fireworks.ai/inference/v1",
        Some("FIREWORKS_API_KEY"),
        true,
    ),
    p(
        ProviderType::Openrouter,
        "OpenRouter",
        "https://openrouter.ai/api/v1",
        Some("OPENROUTER_API_KEY"),
        true,
    ),
    p(
        ProviderType::Xai,
        "xAI (Grok)",
        "https://api.x.ai/v1",
        Some("XAI_API_KEY"),
        true,
    ),
    p(
        ProviderType::Cohere,
        "Cohere (compatibility API)",
        "https://api.cohere.ai/compatibility/v1",
        Some("COHERE_API_KEY"),
        true,
    ),
    p(
        ProviderType::Ollama,
        "Ollama",
        "http://127.0.0.1:11434/v1",
        None,
        false,
    ),
    p(
        ProviderType::Vllm,
        "vLLM",
        "http://127.0.0.1:8000/v1",
        Some("VLLM_API_KEY"),
        false,
    ),
];

/// The preset of a provider type (`None` for the types that are not presets).
pub fn preset(kind: ProviderType) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.kind == kind)
}

/// Google's Gemini API.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The default base URL of a provider type, where it has one without knowing more (Bedrock's
/// depends on the region).
pub fn default_base_url(kind: ProviderType) -> Option<&'static str> {
    match kind {
        ProviderType::Openai => Some(super::validate::OPENAI_BASE_URL),
        ProviderType::Anthropic => Some(super::validate::ANTHROPIC_BASE_URL),
        ProviderType::Gemini => Some(GEMINI_BASE_URL),
        k => preset(k).map(|p| p.base_url),
    }
}

/// Fill what each provider leaves to its type's defaults (above). Returns the errors of keys
/// that are neither in the file nor in the environment.
pub(crate) fn fill_defaults(cfg: &mut Config, env: Env, lines: &Lines) -> Vec<ConfigError> {
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let mut errors = Vec::new();
    let mut missing = |at: String, what: &str, vars: &str, kind: ProviderType| {
        errors.push(ConfigError {
            line: lines.get(&at),
            path: at,
            message: format!(
                "missing key \"{what}\" (required for type {}), and {vars} not set in the environment",
                kind.as_str()
            ),
            hint: None,
        });
    };
    for (i, p) in cfg.providers.iter_mut().enumerate() {
        let at = format!("providers[{i}]");
        match p.kind {
            ProviderType::Gemini => {
                if p.api_key.is_none() {
                    p.api_key = var("GEMINI_API_KEY");
                    if p.api_key.is_none() {
                        missing(at, "api_key", "GEMINI_API_KEY is", p.kind);
                    }
                }
            }
            ProviderType::Bedrock => {
                if p.region.is_none() {
                    p.region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
                    if p.region.is_none() {
                        missing(at.clone(), "region", "AWS_REGION is", p.kind);
                    }
                }
                if p.base_url.is_none()
                    && let Some(r) = p.region.as_deref().filter(|r| !r.is_empty())
                {
                    p.base_url = Some(format!("https://bedrock-runtime.{r}.amazonaws.com"));
                }
                if p.api_key.is_none() {
                    if p.aws_access_key_id.is_none() {
                        p.aws_access_key_id = var("AWS_ACCESS_KEY_ID");
                    }
                    if p.aws_secret_access_key.is_none() {
                        p.aws_secret_access_key = var("AWS_SECRET_ACCESS_KEY");
                    }
                    if p.aws_session_token.is_none() {
                        p.aws_session_token = var("AWS_SESSION_TOKEN");
                    }
                    if p.aws_access_key_id.is_none() {
                        missing(
                            at.clone(),
                            "aws_access_key_id",
                            "AWS_ACCESS_KEY_ID is",
                            p.kind,
                        );
                    }
                    if p.aws_secret_access_key.is_none() {
                        missing(
                            at,
                            "aws_secret_access_key",
                            "AWS_SECRET_ACCESS_KEY is",
                            p.kind,
                        );
                    }
                }
            }
            kind => {
                let Some(pre) = preset(kind) else { continue };
                if p.api_key.is_none()
                    && let Some(v) = pre.key_var
                {
                    p.api_key = var(v);
                    if p.api_key.is_none() && pre.key_required {
                        missing(at, "api_key", &format!("{v} is"), kind);
                    }
                }
            }
        }
        if p.base_url.is_none() {
            p.base_url = default_base_url(p.kind).map(str::to_owned);
        }
    }
    errors
}

/// The built-in default's part (no file): a wildcard model `NAME/*` for each provider it made
/// from the environment (`openai`, `anthropic`, `azure`), and, with its own wildcard, `gemini`
/// when `GEMINI_API_KEY` is set, `bedrock` when `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
/// and `AWS_REGION` are (with `AWS_SESSION_TOKEN` when it is), and each preset whose key
/// variable is set (named as its type: `deepseek/*`, `groq/*`, …).
pub(crate) fn add_from_env(cfg: &mut Config, var: &dyn Fn(&str) -> Option<String>) {
    use super::default::{model, provider};
    let add = |cfg: &mut Config, p: super::ProviderConfig| {
        cfg.models
            .push(model(&format!("{}/*", p.name), &p.name, "*", None));
        if !cfg.providers.iter().any(|q| q.name == p.name) {
            cfg.providers.push(p);
        }
    };
    let existing: Vec<_> = cfg
        .providers
        .iter()
        .filter(|p| p.kind != ProviderType::Mock)
        .cloned()
        .collect();
    for p in existing {
        add(cfg, p);
    }
    if let Some(key) = var("GEMINI_API_KEY") {
        let mut p = provider(
            "gemini",
            ProviderType::Gemini,
            Some(GEMINI_BASE_URL.to_owned()),
        );
        p.api_key = Some(key);
        add(cfg, p);
    }
    if let (Some(id), Some(secret), Some(region)) = (
        var("AWS_ACCESS_KEY_ID"),
        var("AWS_SECRET_ACCESS_KEY"),
        var("AWS_REGION"),
    ) {
        let mut p = provider(
            "bedrock",
            ProviderType::Bedrock,
            Some(format!("https://bedrock-runtime.{region}.amazonaws.com")),
        );
        p.region = Some(region);
        p.aws_access_key_id = Some(id);
        p.aws_secret_access_key = Some(secret);
        p.aws_session_token = var("AWS_SESSION_TOKEN");
        add(cfg, p);
    }
    for pre in PRESETS {
        let Some(key) = pre.key_var.and_then(var) else {
            continue;
        };
        let mut p = provider(pre.kind.as_str(), pre.kind, Some(pre.base_url.to_owned()));
        p.api_key = Some(key);
        add(cfg, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        super::super::load_str(yaml, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn every_type_of_the_table_is_a_preset_with_its_url() {
        let kinds: Vec<&str> = PRESETS.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "deepseek",
                "qwen",
                "zhipu",
                "moonshot",
                "doubao",
                "hunyuan",
                "qianfan",
                "mistral",
                "groq",
                "together",
                "fireworks",
                "openrouter",
                "xai",
                "cohere",
                "ollama",
                "vllm"
            ]
        );
        for pre in PRESETS {
            assert!(pre.kind.is_openai_compatible());
            assert!(pre.base_url.starts_with("http"), "{}", pre.base_url);
            assert!(!pre.base_url.ends_with('/'));
        }
    }

    #[test]
    fn preset_takes_url_and_key_from_the_table_and_the_environment() {
        let cfg = load(
            "providers:\n  - name: ds\n    type: deepseek\n",
            &[("DEEPSEEK_API_KEY", "sk-ds")],
        )
        .expect("loads");
        let p = &cfg.providers[0];
        assert_eq!(p.base_url.as_deref(), Some("https://api.deepseek.com/v1"));
        assert_eq!(p.api_key.as_deref(), Some("sk-ds"));

        let cfg = load(
            "providers:\n  - name: ds\n    type: deepseek\n    base_url: http://127.0.0.1:9/v1\n    api_key: mine\n",
            &[("DEEPSEEK_API_KEY", "sk-ds")],
        )
        .expect("loads");
        let p = &cfg.providers[0];
        assert_eq!(p.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(p.api_key.as_deref(), Some("mine"));

        let err = load("providers:\n  - name: ds\n    type: deepseek\n", &[]).unwrap_err();
        assert!(
            err.contains("providers[0]")
                && err.contains("DEEPSEEK_API_KEY")
                && err.contains("line 2"),
            "{err}"
        );
        // Local servers need no key.
        let cfg = load(
            "providers:\n  - name: o\n    type: ollama\n  - name: v\n    type: vllm\n",
            &[],
        )
        .expect("loads");
        assert_eq!(cfg.providers[0].api_key, None);
        assert_eq!(
            cfg.providers[1].base_url.as_deref(),
            Some("http://127.0.0.1:8000/v1")
        );
    }

    #[test]
    fn bedrock_takes_region_and_credentials_from_the_environment() {
        let cfg = load(
            "providers:\n  - name: b\n    type: bedrock\n",
            &[
                ("AWS_REGION", "eu-west-3"),
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ],
        )
        .expect("loads");
        let p = &cfg.providers[0];
        assert_eq!(p.region.as_deref(), Some("eu-west-3"));
        assert_eq!(
            p.base_url.as_deref(),
            Some("https://bedrock-runtime.eu-west-3.amazonaws.com")
        );
        assert_eq!(p.aws_access_key_id.as_deref(), Some("AKID"));
        assert_eq!(p.aws_session_token, None);

        let cfg = load(
            "providers:\n  - name: b\n    type: bedrock\n    region: us-west-2\n    aws_access_key_id: A\n    aws_secret_access_key: S\n    aws_session_token: \"${T:-}\"\n",
            &[],
        )
        .expect("loads");
        let p = &cfg.providers[0];
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
        assert_eq!(p.aws_session_token, None);

        let err = load("providers:\n  - name: b\n    type: bedrock\n", &[]).unwrap_err();
        for needle in ["region", "aws_access_key_id", "aws_secret_access_key"] {
            assert!(err.contains(needle), "{err}");
        }
        let err = load(
            "providers:\n  - name: g\n    type: gemini\n",
            &[("AWS_REGION", "x")],
        )
        .unwrap_err();
        assert!(err.contains("GEMINI_API_KEY"), "{err}");
    }

    #[test]
    fn the_default_adds_a_wildcard_per_provider_of_the_environment() {
        let vars = [
            ("OPENAI_API_KEY", "sk-o"),
            ("GEMINI_API_KEY", "g"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_REGION", "us-west-2"),
            ("DEEPSEEK_API_KEY", "d"),
            ("MOONSHOT_API_KEY", ""),
        ];
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let cfg = super::super::builtin_default(&env, false).expect("the built-in default");
        let providers: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            providers,
            ["mock", "openai", "gemini", "bedrock", "deepseek"]
        );
        let wild: Vec<&str> = cfg
            .models
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| n.ends_with("/*"))
            .collect();
        assert_eq!(wild, ["openai/*", "gemini/*", "bedrock/*", "deepseek/*"]);
        let b = &cfg.providers[3];
        assert_eq!(
            b.base_url.as_deref(),
            Some("https://bedrock-runtime.us-west-2.amazonaws.com")
        );
        assert_eq!(
            cfg.providers[4].base_url.as_deref(),
            Some("https://api.deepseek.com/v1")
        );
        if let Err(e) =
            super::super::validate::validate(cfg.clone(), &super::super::yaml::Lines::default())
        {
            panic!("default does not validate: {e:?}");
        }
    }

    #[test]
    fn aws_keys_only_for_bedrock() {
        let err = load(
            "providers:\n  - name: o\n    type: openai\n    api_key: k\n    region: us-east-1\n",
            &[],
        )
        .unwrap_err();
        assert!(err.contains("providers[0].region"), "{err}");
    }
}
