//! The importer on LiteLLM configurations in the shapes of LiteLLM's documentation
//! (`tests/fixtures/litellm/`), each output loaded by our own configuration loader.

use std::time::{Duration, SystemTime};

use saphyr::{LoadableYamlNode as _, Yaml};

use super::convert;
use crate::config::{self, Config, ProviderType, RoutingStrategy};
use crate::import::{ImportError, Imported, emit, source};

const MULTI: &str = include_str!("../../../tests/fixtures/litellm/multi_provider.yaml");
const AZURE_LB: &str = include_str!("../../../tests/fixtures/litellm/azure_openai_lb.yaml");
const BEDROCK: &str = include_str!("../../../tests/fixtures/litellm/bedrock_anthropic.yaml");
const REDIS: &str = include_str!("../../../tests/fixtures/litellm/redis_router.yaml");
const WILDCARDS: &str = include_str!("../../../tests/fixtures/litellm/wildcards_presets.yaml");

/// Provider types of the contract that the configuration loader does not take yet (another
/// change adds them): an output that uses one is checked for that refusal only, and in full once
/// they are in.
const PENDING_TYPES: [&str; 19] = [
    "gemini",
    "bedrock",
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
    "vllm",
    "vertex",
];

fn import(text: &str) -> Imported {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    convert(text, "config.yaml", at).unwrap_or_else(|e| panic!("import failed: {e}"))
}

/// Our loader on the output, with these environment variables.
fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, config::LoadErrors> {
    let env = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    };
    config::load_str(yaml, &env)
}

fn load_ok(yaml: &str, env: &[(&str, &str)]) -> Config {
    load(yaml, env).unwrap_or_else(|e| panic!("the output does not load:\n{e}\n---\n{yaml}"))
}

/// Loads an output that may use a pending provider type: `Some` when it loads, `None` when the
/// only refusal is a pending type; any other error fails.
fn load_pending(yaml: &str, env: &[(&str, &str)]) -> Option<Config> {
    match load(yaml, env) {
        Ok(c) => Some(c),
        Err(errors) => {
            for e in &errors.0 {
                let pending = e.path.ends_with(".type")
                    && PENDING_TYPES
                        .iter()
                        .any(|t| e.message.contains(&format!("\"{t}\"")));
                assert!(pending, "the output does not load: {e}\n---\n{yaml}");
            }
            None
        }
    }
}

fn has_note(out: &Imported, path: &str, words: &str) -> bool {
    out.notes
        .iter()
        .any(|n| n.path == path && n.message.contains(words))
}

fn assert_note(out: &Imported, path: &str, words: &str) {
    assert!(
        has_note(out, path, words),
        "no note at {path} saying {words:?}; the notes:\n{}",
        out.notes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The output as a tree, for outputs our loader cannot take yet.
fn tree(yaml: &str) -> Yaml<'_> {
    source::load(yaml).unwrap().unwrap()
}

/// `models[1].deployments[0].provider` of a tree, as text.
fn at(doc: &Yaml<'_>, path: &str) -> Option<String> {
    let mut node = doc;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        node = source::get(node, key)?;
        if let Some(i) = index {
            node = source::items(node)?.get(i)?;
        }
    }
    source::text(node).map(str::to_owned)
}

#[test]
fn multi_provider_config_with_fallbacks_and_master_key() {
    let out = import(MULTI);
    let env = [
        ("OPENAI_API_KEY", "sk-openai"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
        ("AZURE_API_KEY_EU", "az-eu"),
        ("LITELLM_MASTER_KEY", "sk-litellm-master"),
    ];
    let cfg = load_ok(&out.yaml, &env);
    let providers: Vec<(&str, ProviderType)> = cfg
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        providers,
        [
            ("openai", ProviderType::Openai),
            ("anthropic", ProviderType::Anthropic),
            ("azure-my-endpoint-europe-berri-992", ProviderType::Azure),
        ],
        "the bare text-embedding-3-small shares OpenAI's provider"
    );
    let azure = &cfg.providers[2];
    assert_eq!(
        azure.base_url.as_deref(),
        Some("https://my-endpoint-europe-berri-992.openai.azure.com")
    );
    assert_eq!(azure.api_key.as_deref(), Some("az-eu"));
    assert_eq!(azure.api_version.as_deref(), Some("2024-10-21"));
    assert!(
        cfg.providers
            .iter()
            .all(|p| p.timeout.get().as_secs() == 600)
    );
    let names: Vec<&str> = cfg.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gpt-4o",
            "claude-3-5-sonnet",
            "gpt-4o-mini",
            "text-embedding-3-small"
        ]
    );
    let gpt = &cfg.models[0];
    assert_eq!(gpt.deployments[0].input_cost_per_mtok, Some(2.5));
    assert_eq!(gpt.deployments[0].output_cost_per_mtok, Some(10.0));
    assert_eq!(gpt.fallbacks, ["claude-3-5-sonnet"]);
    assert_eq!(
        cfg.models[2].fallbacks,
        ["gpt-4o"],
        "the unknown one is dropped"
    );
    assert_eq!(cfg.resilience.retries, 3);
    assert!(
        !cfg.cache.enabled,
        "LiteLLM without cache: true caches nothing"
    );
    let auth = cfg.auth.as_ref().unwrap();
    assert_eq!(auth.master_key, None, "GATEWAY_MASTER_KEY is not set");
    assert_eq!(auth.keys.len(), 1);
    assert_eq!(auth.keys[0].name, "litellm-master");
    assert_eq!(auth.keys[0].key.as_deref(), Some("sk-litellm-master"));
    assert_eq!(auth.keys[0].models, ["*"]);
    // With an admin key of its own, the admin API is on too.
    let mut with_admin = env.to_vec();
    with_admin.push(("GATEWAY_MASTER_KEY", "admin-key"));
    let cfg = load_ok(&out.yaml, &with_admin);
    assert_eq!(cfg.auth.unwrap().master_key.as_deref(), Some("admin-key"));

    assert_note(&out, "litellm_settings.drop_params", "unchanged");
    assert_note(&out, "litellm_settings.success_callback[0]", "langfuse");
    assert_note(
        &out,
        "litellm_settings.fallbacks[1].gpt-4o-mini",
        "gpt-5-preview",
    );
    assert_note(&out, "general_settings.database_url", "out of reach");
    assert_note(&out, "general_settings.alerting", "Prometheus");
    assert_note(&out, "general_settings.master_key", "litellm-master");
    assert_note(&out, "model_list[3].model_info.mode", "informational");
    assert!(
        !out.notes
            .iter()
            .any(|n| n.path == "litellm_settings.set_verbose"),
        "set_verbose: False leaves nothing to say"
    );
    // The notes are in the file's order, and each is also in the file.
    let first_general = out.notes.iter().position(|n| n.path.starts_with("general"));
    let first_litellm = out.notes.iter().position(|n| n.path.starts_with("litellm"));
    assert!(first_litellm < first_general);
    for n in &out.notes {
        assert!(
            out.yaml.contains(&format!("# - {n}")),
            "{n} not in the file"
        );
    }
    assert!(out.yaml.contains(super::VIRTUAL_KEYS_NOTE));
    assert!(out.yaml.starts_with(
        "# ai-gateway configuration generated by `ai-gateway import litellm` from config.yaml\n# on 2027-01-15T08:00:00Z."
    ));
}

#[test]
fn azure_and_openai_load_balanced() {
    let out = import(AZURE_LB);
    let env = [
        ("AZURE_API_KEY_EU", "eu"),
        ("AZURE_API_KEY_CA", "ca"),
        ("OPENAI_API_KEY", "sk-o"),
    ];
    let cfg = load_ok(&out.yaml, &env);
    let names: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "azure-my-endpoint-europe-berri-992",
            "azure-my-endpoint-canada-berri992",
            "openai",
            "openai-0-0-0-0-4000",
        ],
        "one provider per endpoint and key, the weighted model reusing them"
    );
    assert!(
        cfg.providers
            .iter()
            .all(|p| p.timeout.get().as_secs() == 30)
    );
    let gpt = &cfg.models[0];
    assert_eq!(gpt.name, "gpt-4o");
    assert_eq!(gpt.routing, RoutingStrategy::Weighted);
    let models: Vec<(&str, u32, Option<u64>)> = gpt
        .deployments
        .iter()
        .map(|d| (d.model.as_str(), d.weight, d.rpm))
        .collect();
    assert_eq!(
        models,
        [
            ("gpt-4o-eu", 6, Some(6)),
            ("gpt-4o-ca", 6, Some(6)),
            ("gpt-4o", 1440, Some(1440)),
        ],
        "simple-shuffle weighs by rpm when there are no weights"
    );
    let weighted: Vec<u32> = cfg.models[1].deployments.iter().map(|d| d.weight).collect();
    assert_eq!(weighted, [9, 1]);
    let vllm = &cfg.models[2];
    assert_eq!(vllm.deployments[0].model, "facebook/opt-125m");
    assert_eq!(vllm.timeout.map(|t| t.get().as_secs()), Some(30));
    assert_eq!(
        cfg.providers[3].base_url.as_deref(),
        Some("http://0.0.0.0:4000/v1")
    );
    assert_eq!(cfg.resilience.retries, 2);
    let auth = cfg.auth.unwrap();
    assert_eq!(auth.keys[0].key.as_deref(), Some("sk-1234"));
    assert_note(&out, "general_settings.master_key", "holds a secret");
    assert_note(
        &out,
        "model_list[5].litellm_params.api_key",
        "holds a secret",
    );
    assert_note(
        &out,
        "model_list[5].litellm_params.temperature",
        "no default parameters",
    );
    assert_note(
        &out,
        "model_list[5].litellm_params.stream_timeout",
        "per-attempt timeout",
    );
    for n in &out.notes {
        assert!(!n.message.contains("sk-1234"), "a secret in a note: {n}");
    }
}

#[test]
fn bedrock_and_anthropic() {
    let out = import(BEDROCK);
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
    ];
    if let Some(cfg) = load_pending(&out.yaml, &env) {
        assert_eq!(cfg.models.len(), 2);
        assert_eq!(cfg.models[0].routing, RoutingStrategy::Priority);
    }
    let doc = tree(&out.yaml);
    let p = |path: &str| at(&doc, path);
    assert_eq!(p("providers[0].name").as_deref(), Some("bedrock"));
    assert_eq!(p("providers[0].region").as_deref(), Some("us-east-1"));
    assert_eq!(
        p("providers[0].aws_access_key_id").as_deref(),
        Some("${AWS_ACCESS_KEY_ID}")
    );
    assert_eq!(p("providers[1].name").as_deref(), Some("bedrock-us-west-2"));
    assert_eq!(p("providers[2].type").as_deref(), Some("anthropic"));
    assert_eq!(p("models[0].routing").as_deref(), Some("priority"));
    assert_eq!(
        p("models[0].deployments[1].model").as_deref(),
        Some("anthropic.claude-3-5-sonnet-20240620-v1:0"),
        "converse/ is our Bedrock API anyway"
    );
    let priorities: Vec<Option<String>> = (0..3)
        .map(|i| p(&format!("models[0].deployments[{i}].priority")))
        .collect();
    assert_eq!(
        priorities,
        [Some("1".into()), Some("1".into()), Some("2".into())]
    );
    assert_eq!(
        p("models[0].deployments[2].input_cost_per_mtok").as_deref(),
        Some("3.0")
    );
    assert_eq!(p("models[0].fallbacks").as_deref(), None, "a list");
    assert!(out.yaml.contains("fallbacks: [claude-3-haiku]"));
    assert_eq!(
        p("resilience.circuit_breaker.failure_threshold").as_deref(),
        Some("4")
    );
    assert_eq!(
        p("resilience.circuit_breaker.open_for").as_deref(),
        Some("30s")
    );
    assert_note(
        &out,
        "model_list[3].litellm_params.aws_role_name",
        "access keys only",
    );
    assert_note(
        &out,
        "router_settings.routing_strategy_args",
        "no arguments",
    );
}

#[test]
fn redis_cache_and_router_settings() {
    let out = import(REDIS);
    let env = [
        ("OPENAI_API_KEY", "sk-o"),
        ("AZURE_API_BASE", "https://res.openai.azure.com"),
        ("AZURE_API_KEY", "az"),
        ("AZURE_API_VERSION", "2024-10-21"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PORT", "6380"),
        ("REDIS_PASSWORD", "pw"),
    ];
    let cfg = load_ok(&out.yaml, &env);
    assert_eq!(
        cfg.state.redis_url.as_deref(),
        Some("redis://:pw@cache.internal:6380")
    );
    assert!(cfg.cache.enabled);
    assert!(cfg.cache.l2);
    assert_eq!(cfg.cache.ttl.get().as_secs(), 600);
    let gpt = cfg.models.iter().find(|m| m.name == "gpt-4o").unwrap();
    assert_eq!(gpt.routing, RoutingStrategy::LeastBusy);
    assert_eq!(gpt.deployments.len(), 2);
    assert_eq!(gpt.fallbacks, ["claude-haiku"]);
    let alias = cfg.models.iter().find(|m| m.name == "gpt-4").unwrap();
    assert_eq!(
        alias.deployments.len(),
        2,
        "an alias serves the same deployments"
    );
    assert_eq!(alias.fallbacks, ["claude-haiku"]);
    assert_eq!(cfg.resilience.retries, 3);
    assert_eq!(cfg.resilience.circuit_breaker.failure_threshold, 4);
    assert_eq!(cfg.resilience.circuit_breaker.open_for.get().as_secs(), 30);
    assert_eq!(cfg.telemetry.log_format, Some(config::LogFormat::Json));
    assert_note(&out, "router_settings.routing_strategy", "least-busy");
    assert_note(
        &out,
        "router_settings.context_window_fallbacks",
        "kind of error",
    );
    assert_note(&out, "router_settings.retry_policy", "retryable");
    assert_note(&out, "litellm_settings.cache_params.namespace", "its own");
    assert_note(&out, "litellm_settings.set_verbose", "log_level");
}

#[test]
fn wildcards_and_presets() {
    let out = import(WILDCARDS);
    let env = [
        ("ANTHROPIC_API_KEY", "a"),
        ("GROQ_API_KEY", "g"),
        ("DEEPSEEK_API_KEY", "d"),
        ("DASHSCOPE_API_KEY", "q"),
        ("GEMINI_API_KEY", "gm"),
        ("TOGETHERAI_API_KEY", "t"),
    ];
    load_pending(&out.yaml, &env);
    let doc = tree(&out.yaml);
    let p = |path: &str| at(&doc, path);
    let types: Vec<String> = (0..8)
        .filter_map(|i| p(&format!("providers[{i}].type")))
        .collect();
    assert_eq!(
        types,
        [
            "anthropic",
            "groq",
            "deepseek",
            "qwen",
            "ollama",
            "vllm",
            "gemini",
            "together"
        ]
    );
    assert_eq!(
        p("providers[4].base_url").as_deref(),
        Some("http://localhost:11434/v1"),
        "Ollama through its OpenAI-compatible API"
    );
    assert_eq!(
        p("providers[7].api_key").as_deref(),
        Some("${TOGETHERAI_API_KEY}"),
        "the variable LiteLLM read"
    );
    assert_eq!(p("models[0].name").as_deref(), Some("anthropic/*"));
    assert_eq!(p("models[0].deployments[0].model").as_deref(), Some("*"));
    assert_eq!(p("models[1].name").as_deref(), Some("groq/*"));
    assert_eq!(
        p("models[7].deployments[0].model").as_deref(),
        Some("mistralai/Mixtral-8x7B-Instruct-v0.1")
    );
    let wild: Vec<String> = (8..14)
        .filter_map(|i| p(&format!("models[{i}].name")))
        .collect();
    assert_eq!(
        wild,
        [
            "deepseek/*",
            "qwen/*",
            "ollama/*",
            "vllm/*",
            "gemini/*",
            "together/*"
        ],
        "\"*\" gives a wildcard for each provider that has none"
    );
    assert!(p("models[14].name").is_none());
    assert_note(&out, "model_list[2]", "PREFIX/*");
    assert_note(
        &out,
        "model_list[8].litellm_params.model",
        "Vertex AI is not supported",
    );
    assert_note(&out, "model_list[10]", "clients name it");
    assert!(!out.yaml.contains("name: gemini-pro-vertex"));
}

#[test]
fn files_that_are_not_litellm_configs_are_refused() {
    let cases: [(&str, &str); 8] = [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("model_list: [\n", "not valid YAML"),
        ("- a\n- b\n", "its top level is a list"),
        (
            "providers: []\nmodels: []\n",
            "ai-gateway configuration already",
        ),
        ("hello: world\n", "none of model_list"),
        ("model_list: oops\n", "model_list is a single value"),
        ("a: 1\na: 2\n", "not valid YAML"),
    ];
    for (text, words) in cases {
        let at = SystemTime::UNIX_EPOCH;
        match convert(text, "x.yaml", at) {
            Err(e) => assert!(
                e.to_string().contains(words),
                "{text:?}: {e} does not say {words:?}"
            ),
            Ok(out) => panic!("{text:?} was converted:\n{}", out.yaml),
        }
    }
    // Deep nesting is refused before a tree is built: past 64 levels by our check, past a few
    // hundred by saphyr's parser itself.
    for depth in [100, 10_000] {
        let deep = format!("model_list: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let err = convert(&deep, "x.yaml", SystemTime::UNIX_EPOCH).unwrap_err();
        assert!(matches!(err, ImportError::Yaml(_)), "{err}");
        if depth == 100 {
            assert!(err.to_string().contains("nested deeper than 64"), "{err}");
        }
    }
}

#[test]
fn broken_entries_are_left_out_with_a_note() {
    let out = import(
        "model_list:\n  - just-a-string\n  - model_name: x\n  - model_name: y\n    litellm_params:\n      api_key: k\n  - model_name: z\n    litellm_params:\n      model: openai/gpt-4o\n      rpm: lots\n",
    );
    assert_note(&out, "model_list[0]", "expected a mapping");
    assert_note(&out, "model_list[1]", "needs model_name and litellm_params");
    assert_note(&out, "model_list[2].litellm_params", "no model");
    assert_note(&out, "model_list[3].litellm_params.rpm", "whole number");
    let cfg = load_ok(&out.yaml, &[("OPENAI_API_KEY", "k")]);
    assert_eq!(cfg.models.len(), 1);
    assert_eq!(cfg.models[0].deployments[0].rpm, None);
}

#[test]
fn deployments_without_order_come_after_ordered_ones() {
    let out = import(concat!(
        "model_list:\n",
        "  - model_name: m\n",
        "    litellm_params: {model: openai/a}\n",
        "  - model_name: m\n",
        "    litellm_params: {model: openai/b, order: 1}\n",
    ));
    let cfg = load_ok(&out.yaml, &[("OPENAI_API_KEY", "k")]);
    assert_eq!(cfg.models[0].routing, RoutingStrategy::Priority);
    let priorities: Vec<i32> = cfg.models[0]
        .deployments
        .iter()
        .map(|d| d.priority)
        .collect();
    assert_eq!(priorities, [2, 1]);
}

#[test]
fn literal_text_survives_as_written() {
    let out = import(concat!(
        "model_list:\n",
        "  - model_name: \"1.10\"\n",
        "    litellm_params:\n",
        "      model: openai/1.10\n",
        "      api_key: \"literal ${NOT_A_VAR} # \\\"quoted\\\"\"\n",
        "  - model_name: yes\n",
        "    litellm_params:\n",
        "      model: openai/on\n",
        "      api_key: os.environ/OPENAI_API_KEY\n",
        "general_settings:\n",
        "  master_key: \"sk-with: colon\"\n",
    ));
    let cfg = load_ok(&out.yaml, &[("OPENAI_API_KEY", "k")]);
    assert_eq!(cfg.models[0].name, "1.10");
    assert_eq!(cfg.models[0].deployments[0].model, "1.10");
    assert_eq!(cfg.models[1].name, "yes");
    assert_eq!(cfg.models[1].deployments[0].model, "on");
    assert_eq!(
        cfg.providers[0].api_key.as_deref(),
        Some("literal ${NOT_A_VAR} # \"quoted\"")
    );
    assert_eq!(
        cfg.auth.unwrap().keys[0].key.as_deref(),
        Some("sk-with: colon")
    );
}

#[test]
fn anchors_and_merge_keys_are_expanded() {
    let out = import(concat!(
        "x-azure: &azure\n",
        "  api_base: https://res.openai.azure.com/\n",
        "  api_key: os.environ/AZURE_API_KEY\n",
        "  api_version: \"2024-10-21\"\n",
        "model_list:\n",
        "  - model_name: a\n",
        "    litellm_params:\n",
        "      <<: *azure\n",
        "      model: azure/dep-a\n",
        "  - model_name: b\n",
        "    litellm_params:\n",
        "      <<: *azure\n",
        "      model: azure/dep-b\n",
    ));
    let cfg = load_ok(&out.yaml, &[("AZURE_API_KEY", "k")]);
    assert_eq!(cfg.providers.len(), 1);
    assert_eq!(cfg.providers[0].name, "azure-res");
    assert_eq!(cfg.models[1].deployments[0].model, "dep-b");
    assert_note(&out, "x-azure", "no such section");
}

#[test]
fn credentials_are_merged_into_their_entries() {
    let out = import(concat!(
        "credential_list:\n",
        "  - credential_name: azure-default\n",
        "    credential_values:\n",
        "      api_base: os.environ/AZURE_API_BASE\n",
        "      api_key: os.environ/AZURE_API_KEY\n",
        "      api_version: \"2024-10-21\"\n",
        "model_list:\n",
        "  - model_name: gpt-4o\n",
        "    litellm_params:\n",
        "      model: azure/gpt-4o\n",
        "      litellm_credential_name: azure-default\n",
    ));
    let cfg = load_ok(
        &out.yaml,
        &[
            ("AZURE_API_BASE", "https://r.openai.azure.com"),
            ("AZURE_API_KEY", "k"),
        ],
    );
    assert_eq!(
        cfg.providers[0].base_url.as_deref(),
        Some("https://r.openai.azure.com")
    );
    assert!(out.notes.is_empty(), "{:?}", out.notes);
}

#[test]
fn a_master_key_that_cannot_be_carried_over_leaves_the_gateway_closed() {
    let out = import("model_list: []\ngeneral_settings:\n  master_key: os.environ/BAD-NAME\n");
    let cfg = load_ok(&out.yaml, &[]);
    let auth = cfg
        .auth
        .expect("an auth section: never a gateway open to all");
    assert!(auth.keys.is_empty());
    assert_note(&out, "general_settings.master_key", "variable name");
    assert_note(&out, "model_list", "no models");
}

#[test]
fn cache_types_and_opt_in() {
    let local = import(
        "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params:\n    type: local\n    ttl: 90\n",
    );
    let cfg = load_ok(&local.yaml, &[]);
    assert!(cfg.cache.enabled && !cfg.cache.l2);
    assert_eq!(cfg.cache.ttl.get().as_secs(), 90);
    assert_eq!(cfg.state.redis_url, None);

    let opt_in = import(
        "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params:\n    mode: default_off\n",
    );
    assert!(!load_ok(&opt_in.yaml, &[]).cache.enabled);
    assert_note(&opt_in, "litellm_settings.cache_params.mode", "opt-in");

    // `cache: true` alone: LiteLLM's proxy uses Redis from REDIS_HOST / REDIS_PORT.
    let env_redis = import("model_list: []\nlitellm_settings:\n  cache: true\n");
    let cfg = load_ok(&env_redis.yaml, &[("REDIS_HOST", "r")]);
    assert_eq!(cfg.state.redis_url.as_deref(), Some("redis://r:6379"));

    let literal = import(
        "model_list: []\nrouter_settings:\n  redis_host: h\n  redis_port: 7000\n  redis_password: \"p@ss/w\"\n",
    );
    let cfg = load_ok(&literal.yaml, &[]);
    assert_eq!(
        cfg.state.redis_url.as_deref(),
        Some("redis://:p%40ss%2Fw@h:7000"),
        "a literal password is percent-encoded"
    );
    assert!(!cfg.cache.enabled);
}

/// Every string the emitter writes reads back as that same string, in YAML 1.2 (saphyr) and
/// through our own loader.
#[test]
fn emitted_scalars_read_back_as_the_same_string() {
    let samples = [
        "plain",
        "true",
        "No",
        "on",
        "~",
        "null",
        "",
        "1.10",
        "0x1F",
        "1e3",
        "-1",
        ".inf",
        "2024-10-21",
        "12:30",
        "a: b",
        "a:",
        "#x",
        "x #y",
        "${VAR}",
        "- item",
        "[a]",
        "{a}",
        "quote\"d",
        "back\\slash",
        "line\nbreak",
        "tab\t",
        "\u{7f}",
        "é",
        "🙂",
        "30s",
        "10MiB",
        "1e3s",
        "*",
        "&a",
        "!tag",
        "|",
        ">",
        "'s'",
        "%x",
        "@x",
        "`x",
    ];
    for s in samples {
        let text = format!("k: {}\n", emit::scalar(s));
        let doc = saphyr::Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            doc[0]["k"].as_str(),
            Some(s),
            "{s:?} written as {text:?} reads back otherwise"
        );
    }
}

proptest::proptest! {
    #[test]
    fn any_string_reads_back(s in "\\PC{0,24}|[a-z0-9:./@+ _#-]{0,12}") {
        let text = format!("k: {}\n", emit::scalar(&s));
        let doc = saphyr::Yaml::load_from_str(&text).unwrap();
        proptest::prop_assert_eq!(doc[0]["k"].as_str(), Some(s.as_str()), "{}", text);
    }
}
