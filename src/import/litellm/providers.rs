//! What an entry's `litellm_params` say about its provider: LiteLLM's prefixes and the types
//! they map to ([`resolve`]), the provider they make (one per distinct type, endpoint, key,
//! region and headers, named after its type: `openai`, `azure-<host>`, `bedrock-<region>`, …),
//! and why each other parameter is not carried over.

use saphyr::Yaml;

use super::string;
use crate::import::emit::{Map, Value};
use crate::import::{Notes, source};

/// A LiteLLM provider prefix we serve: our type, and the variable LiteLLM read its key from.
pub(super) struct Kind {
    prefix: &'static str,
    pub(super) ty: &'static str,
    key_var: Option<&'static str>,
}

const fn kind(prefix: &'static str, ty: &'static str, key_var: Option<&'static str>) -> Kind {
    Kind {
        prefix,
        ty,
        key_var,
    }
}

const KINDS: [Kind; 22] = [
    kind("openai", "openai", Some("OPENAI_API_KEY")),
    kind("azure", "azure", Some("AZURE_API_KEY")),
    kind("anthropic", "anthropic", Some("ANTHROPIC_API_KEY")),
    kind("gemini", "gemini", Some("GEMINI_API_KEY")),
    kind("bedrock", "bedrock", None),
    kind("deepseek", "deepseek", Some("DEEPSEEK_API_KEY")),
    kind("dashscope", "qwen", Some("DASHSCOPE_API_KEY")),
    kind("zhipuai", "zhipu", Some("ZHIPUAI_API_KEY")),
    kind("glm", "zhipu", Some("ZHIPUAI_API_KEY")),
    kind("moonshot", "moonshot", Some("MOONSHOT_API_KEY")),
    kind("volcengine", "doubao", Some("VOLCENGINE_API_KEY")),
    kind("mistral", "mistral", Some("MISTRAL_API_KEY")),
    kind("groq", "groq", Some("GROQ_API_KEY")),
    kind("together_ai", "together", Some("TOGETHERAI_API_KEY")),
    kind("fireworks_ai", "fireworks", Some("FIREWORKS_AI_API_KEY")),
    kind("openrouter", "openrouter", Some("OPENROUTER_API_KEY")),
    kind("xai", "xai", Some("XAI_API_KEY")),
    kind("cohere", "cohere", Some("COHERE_API_KEY")),
    kind("cohere_chat", "cohere", Some("COHERE_API_KEY")),
    kind("ollama", "ollama", None),
    kind("ollama_chat", "ollama", None),
    kind("hosted_vllm", "vllm", Some("HOSTED_VLLM_API_KEY")),
];

/// LiteLLM providers we know and do not serve, with what to do instead.
const UNSUPPORTED: [(&str, &str); 5] = [
    (
        "vertex_ai",
        "Vertex AI is not supported: call Gemini with an API key (gemini/MODEL), or Claude through Bedrock",
    ),
    ("vertex_ai_beta", "Vertex AI is not supported"),
    (
        "text-completion-openai",
        "the legacy completions API is not served; use the chat model through openai/MODEL",
    ),
    (
        "azure_ai",
        "Azure AI Foundry is not a provider type here; if the endpoint speaks the OpenAI API, write openai/MODEL with its api_base",
    ),
    (
        "sagemaker",
        "SageMaker endpoints are not supported; an OpenAI-compatible server can be written as openai/MODEL with api_base",
    ),
];

const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Our Azure `api_version` when LiteLLM's file has none (the built-in default's).
const AZURE_API_VERSION: &str = "${AZURE_API_VERSION:-2024-10-21}";

/// One provider of the new file.
#[derive(Debug)]
struct Provider {
    name: String,
    ty: &'static str,
    /// base_url, api_key, api_version, region, aws keys, headers: what makes it distinct.
    fields: Map,
}

/// The providers of the new file, in the order they were first needed.
#[derive(Debug, Default)]
pub(super) struct Providers {
    list: Vec<Provider>,
}

impl Providers {
    pub(super) fn name(&self, i: usize) -> &str {
        &self.list[i].name
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|p| p.name.as_str())
    }

    /// The `providers` list, each with `timeout` (seconds) when LiteLLM set one for every call.
    pub(super) fn render(&self, timeout: Option<&str>) -> Vec<Value> {
        self.list
            .iter()
            .map(|p| {
                let mut m = Map::default();
                m.put("name", p.name.as_str()).put("type", p.ty);
                let mut rest = p.fields.clone();
                if let Some(t) = timeout {
                    rest.put("timeout", t);
                }
                Value::Map(m.extend(rest))
            })
            .collect()
    }

    /// The provider an entry's params describe: an existing one when identical, else a new one.
    pub(super) fn add(
        &mut self,
        kind: &Kind,
        params: &[(&str, &Yaml<'_>)],
        ppath: &str,
        used: &mut Vec<&'static str>,
        n: &mut Notes,
    ) -> usize {
        let take = |key: &'static str, used: &mut Vec<&'static str>| {
            let v = params.iter().find(|(p, _)| *p == key).map(|(_, v)| *v);
            if v.is_some() {
                used.push(key);
            }
            v
        };
        let str_of =
            |key: &'static str, secret: bool, used: &mut Vec<&'static str>, n: &mut Notes| {
                take(key, used).and_then(|v| string(v, &format!("{ppath}.{key}"), secret, n))
            };
        let mut fields = Map::default();
        let base_key = if kind.ty == "bedrock" {
            "aws_bedrock_runtime_endpoint"
        } else {
            "api_base"
        };
        let base = str_of(base_key, false, used, n).map(|b| base_url(kind.ty, &b));
        let mut qualifier = base.as_deref().and_then(host_label);
        match (kind.ty, base) {
            ("openai", Some(b)) if b == OPENAI_BASE_URL => {}
            (_, Some(b)) => {
                fields.put("base_url", b);
            }
            ("azure", None) => {
                n.note(
                    format!("{ppath}.api_base"),
                    "none given: base_url reads AZURE_API_BASE, as LiteLLM did",
                );
                fields.put("base_url", "${AZURE_API_BASE}");
            }
            ("vllm", None) => {
                n.note(
                    format!("{ppath}.api_base"),
                    "none given: base_url reads HOSTED_VLLM_API_BASE, as LiteLLM did",
                );
                fields.put("base_url", "${HOSTED_VLLM_API_BASE}");
            }
            _ => {}
        }
        if kind.ty == "bedrock" {
            let region = str_of("aws_region_name", false, used, n)
                .or_else(|| str_of("region_name", false, used, n))
                .unwrap_or_else(|| "${AWS_REGION_NAME}".to_owned());
            if !region.starts_with("${") {
                qualifier = Some(region.clone());
            }
            fields.put("region", region);
            for (key, default) in [
                ("aws_access_key_id", "${AWS_ACCESS_KEY_ID}"),
                ("aws_secret_access_key", "${AWS_SECRET_ACCESS_KEY}"),
                ("aws_session_token", "${AWS_SESSION_TOKEN:-}"),
            ] {
                let v = str_of(key, true, used, n).unwrap_or_else(|| default.to_owned());
                fields.put(key, v);
            }
        } else {
            let custom_endpoint = fields.get("base_url").is_some();
            let key = str_of("api_key", true, used, n).or_else(|| {
                kind.key_var.map(|var| {
                    if kind.ty == "vllm" || kind.ty == "openai" && custom_endpoint {
                        format!("${{{var}:-}}")
                    } else {
                        format!("${{{var}}}")
                    }
                })
            });
            if let Some(k) = key {
                fields.put("api_key", k);
            }
        }
        if kind.ty == "azure" {
            let v = str_of("api_version", false, used, n).unwrap_or_else(|| {
                n.note(
                    format!("{ppath}.api_version"),
                    format!("none given: api_version is {AZURE_API_VERSION}"),
                );
                AZURE_API_VERSION.to_owned()
            });
            fields.put("api_version", v);
        }
        let mut headers = Map::default();
        if matches!(kind.ty, "openai" | "azure")
            && let Some(org) = str_of("organization", false, used, n)
        {
            headers.put("OpenAI-Organization", org);
        }
        for key in ["extra_headers", "headers"] {
            for (h, v) in take(key, used)
                .and_then(source::entries)
                .unwrap_or_default()
            {
                if let Some(v) = string(v, &format!("{ppath}.{key}.{h}"), true, n) {
                    headers.put(h, v);
                }
            }
        }
        if !headers.is_empty() {
            fields.put("headers", headers);
        }
        if let Some(i) = self
            .list
            .iter()
            .position(|p| p.ty == kind.ty && p.fields == fields)
        {
            return i;
        }
        let name = self.name_for(kind.ty, qualifier.as_deref());
        self.list.push(Provider {
            name,
            ty: kind.ty,
            fields,
        });
        self.list.len() - 1
    }

    /// `openai`, then `openai-<host>`, then `openai-2`…; Azure is always `azure-<host>` when
    /// its host is known.
    fn name_for(&self, ty: &str, qualifier: Option<&str>) -> String {
        let taken = |n: &str| self.list.iter().any(|p| p.name == n);
        let qualified = qualifier.map(|q| format!("{ty}-{q}"));
        let mut candidates: Vec<String> = Vec::new();
        if ty == "azure" {
            candidates.extend(qualified);
            candidates.push(ty.to_owned());
        } else {
            candidates.push(ty.to_owned());
            candidates.extend(qualified);
        }
        let base = candidates.last().cloned().unwrap_or_else(|| ty.to_owned());
        candidates
            .into_iter()
            .chain((2..).map(|i| format!("{base}-{i}")))
            .find(|c| !taken(c))
            .unwrap_or(base)
    }
}

/// The provider kind and upstream model of `provider/name` (or of a bare OpenAI or Anthropic
/// model name, whose provider LiteLLM guesses).
pub(super) fn resolve<'m>(
    model: &'m str,
    custom: Option<&'m str>,
) -> Result<(&'static Kind, &'m str), String> {
    let (prefix, rest) = match (custom, model.split_once('/')) {
        (Some(c), _) => (
            c,
            model
                .strip_prefix(c)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(model),
        ),
        (None, Some(split)) => split,
        (None, None) => {
            let ty = if [
                "gpt-",
                "o1",
                "o3",
                "o4",
                "chatgpt-",
                "text-embedding-",
                "davinci",
                "babbage",
            ]
            .iter()
            .any(|p| model.starts_with(p))
            {
                "openai"
            } else if model.starts_with("claude-") {
                "anthropic"
            } else {
                return Err("no provider prefix (provider/name), and not a model name whose provider is plain".to_owned());
            };
            return Ok((kind_of(ty), model));
        }
    };
    if let Some(k) = KINDS.iter().find(|k| k.prefix == prefix) {
        return Ok((k, rest));
    }
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(p, _)| *p == prefix) {
        return Err((*why).to_owned());
    }
    Err(format!(
        "{prefix} is not a LiteLLM provider the gateway serves; an OpenAI-compatible server can be written as openai/MODEL with api_base"
    ))
}

fn kind_of(prefix: &str) -> &'static Kind {
    KINDS
        .iter()
        .find(|k| k.prefix == prefix)
        .unwrap_or(&KINDS[0])
}

/// LiteLLM's `api_base` as our `base_url`: no trailing `/`; Anthropic's without the
/// `/v1/messages` LiteLLM accepts; Ollama's with `/v1` (we speak its OpenAI-compatible API).
fn base_url(ty: &str, raw: &str) -> String {
    let b = raw.trim().trim_end_matches('/');
    match ty {
        "anthropic" => b.strip_suffix("/v1/messages").unwrap_or(b).to_owned(),
        "ollama" if !b.ends_with("/v1") => format!("{b}/v1"),
        _ => b.to_owned(),
    }
}

/// `myres` of `https://myres.openai.azure.com`, `localhost-8000` of `http://localhost:8000/v1`.
fn host_label(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?;
    let label = match u.host()? {
        url::Host::Domain(d) => d.split('.').next().unwrap_or(d).to_owned(),
        _ => host.trim_matches(['[', ']']).replace(['.', ':'], "-"),
    };
    let mut label: String = label
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if let Some(p) = u.port() {
        label = format!("{label}-{p}");
    }
    (!label.is_empty()).then_some(label)
}

/// Why a `litellm_params` key was not carried over.
pub(super) fn param_reason(key: &str) -> &'static str {
    match key {
        "temperature"
        | "max_tokens"
        | "max_completion_tokens"
        | "top_p"
        | "stop"
        | "seed"
        | "frequency_penalty"
        | "presence_penalty"
        | "response_format"
        | "tools"
        | "tool_choice"
        | "n"
        | "user"
        | "extra_body"
        | "reasoning_effort"
        | "thinking" => {
            "the gateway sends each request as the client wrote it and adds no default parameters"
        }
        "stream_timeout" => {
            "the gateway has one per-attempt timeout (models[].timeout), which bounds a stream's first byte and each gap between chunks"
        }
        "max_parallel_requests" => {
            "a deployment is bounded by its rpm/tpm, not by requests in flight"
        }
        "max_retries" => "the gateway's retries are resilience.retries and models[].retries",
        "api_version" => "only Azure providers take an api_version",
        "drop_params" => {
            "see litellm_settings.drop_params in docs/migrating-from-litellm.md: the gateway never adds or drops an OpenAI field on the way to an OpenAI-compatible provider"
        }
        "aws_role_name"
        | "aws_session_name"
        | "aws_profile_name"
        | "aws_web_identity_token"
        | "aws_sts_endpoint" => {
            "the gateway signs Bedrock requests with access keys only (no role assumption or profile)"
        }
        "azure_ad_token"
        | "azure_ad_token_provider"
        | "tenant_id"
        | "client_id"
        | "client_secret" => "the gateway authenticates to Azure OpenAI with an api-key only",
        "organization" => "only OpenAI and Azure providers send an organization",
        "tags" => "the gateway has no tag-based routing",
        "input_cost_per_second" | "output_cost_per_second" => "the gateway prices by tokens",
        _ => "the gateway has no such deployment setting",
    }
}

/// Why a `model_info` key was not carried over.
pub(super) fn info_reason(key: &str) -> &'static str {
    match key {
        "id" | "mode" | "base_model" | "description" | "max_tokens" | "max_input_tokens"
        | "max_output_tokens" | "metadata" => "informational: the gateway does not need it",
        k if k.starts_with("supports_") => "informational: the gateway does not need it",
        "access_groups" => {
            "the gateway's keys name the models they may call by globs (auth.keys[].models)"
        }
        "input_cost_per_second" | "output_cost_per_second" => "the gateway prices by tokens",
        "cache_read_input_token_cost" | "cache_creation_input_token_cost" => {
            "the gateway prices input and output tokens only"
        }
        _ => "the gateway has no such model setting",
    }
}
