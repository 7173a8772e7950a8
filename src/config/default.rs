//! The built-in default configuration (no file): listen on `$AI_GATEWAY_LISTEN`, else
//! 0.0.0.0:8080 in a container, else 127.0.0.1:8080; no auth unless `$GATEWAY_MASTER_KEY` is set
//! (then the admin API is on and calls need a key made through it); the `mock` provider serving
//! model `mock`, and for each vendor whose API key is in the environment (non-empty) that provider
//! with its usual models.
//!
//! Prices are USD per million tokens, input / output, from the vendors' public list prices as of
//! 2025; they are approximate (no batch or cached-input discounts) and only feed `cost` routing and
//! spend estimates. Edit a config file to override them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::validate::{ANTHROPIC_BASE_URL, OPENAI_BASE_URL};
use super::{
    AuthConfig, Config, ConfigError, DeploymentConfig, Dur, Env, ModelConfig, ProviderConfig,
    ProviderType, RoutingStrategy,
};

/// (model name = upstream model, input USD/Mtok, output USD/Mtok).
const OPENAI_MODELS: [(&str, f64, f64); 7] = [
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("o4-mini", 1.10, 4.40),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
];

const ANTHROPIC_MODELS: [(&str, f64, f64); 4] = [
    ("claude-sonnet-4-5", 3.00, 15.00),
    ("claude-haiku-4-5", 1.00, 5.00),
    ("claude-opus-4-1", 15.00, 75.00),
    ("claude-3-5-haiku-latest", 0.80, 4.00),
];

/// (Azure deployment name, input, output): same models and prices as OpenAI's.
const AZURE_MODELS: [(&str, f64, f64); 2] = [("gpt-4o", 2.50, 10.00), ("gpt-4o-mini", 0.15, 0.60)];

pub(crate) const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

pub(super) fn provider(name: &str, kind: ProviderType, base_url: Option<String>) -> ProviderConfig {
    ProviderConfig {
        name: name.to_owned(),
        kind,
        base_url,
        api_key: None,
        // Same as the serde defaults in `types`.
        timeout: Dur::secs(60),
        connect_timeout: Dur::secs(5),
        http2: false,
        headers: BTreeMap::new(),
        api_version: None,
        latency: None,
        region: None,
        aws_access_key_id: None,
        aws_secret_access_key: None,
        aws_session_token: None,
    }
}

pub(super) fn model(
    name: &str,
    provider: &str,
    upstream: &str,
    price: Option<(f64, f64)>,
) -> ModelConfig {
    ModelConfig {
        name: name.to_owned(),
        routing: RoutingStrategy::Priority,
        deployments: vec![DeploymentConfig {
            provider: provider.to_owned(),
            model: upstream.to_owned(),
            input_cost_per_mtok: price.map(|p| p.0),
            output_cost_per_mtok: price.map(|p| p.1),
            weight: 1,
            priority: 0,
            rpm: None,
            tpm: None,
        }],
        fallbacks: Vec::new(),
        retries: None,
        timeout: None,
        cache: None,
        hedge: None,
        shadow: None,
        guardrails: Vec::new(),
    }
}

/// Where the built-in default listens: `$AI_GATEWAY_LISTEN` when set, else every interface in a
/// container (a port published from a container reaches nothing bound to its loopback), else
/// loopback only.
pub(crate) fn default_listen(env: Env, in_container: bool) -> Result<SocketAddr, ConfigError> {
    match env("AI_GATEWAY_LISTEN").map(|v| v.trim().to_owned()) {
        Some(v) if !v.is_empty() => v.parse().map_err(|_| ConfigError {
            path: "AI_GATEWAY_LISTEN".to_owned(),
            line: None,
            message: format!("\"{v}\" is not an address"),
            hint: Some("write IP:PORT, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"".to_owned()),
        }),
        _ if in_container => Ok(SocketAddr::from(([0, 0, 0, 0], 8080))),
        _ => Ok(SocketAddr::from(([127, 0, 0, 1], 8080))),
    }
}

/// Whether this process runs in a container: Docker's `/.dockerenv`, Podman's
/// `/run/.containerenv`, the `container` variable (systemd-nspawn, Podman, LXC) or a Kubernetes
/// pod's service variables.
pub(crate) fn in_container(env: Env) -> bool {
    env("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
        || env("container").is_some_and(|v| !v.is_empty())
        || std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
}

pub(crate) fn builtin_default(env: Env, in_container: bool) -> Result<Config, ConfigError> {
    let var = |k: &str| {
        env(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut cfg = Config::default();
    cfg.server.listen = default_listen(env, in_container)?;

    let mut mock = provider("mock", ProviderType::Mock, None);
    mock.latency = Some(Dur::millis(0));
    cfg.providers.push(mock);
    cfg.models.push(model("mock", "mock", "mock", None));

    let openai_key = var("OPENAI_API_KEY");
    let have_openai = openai_key.is_some();
    if let Some(key) = openai_key {
        let mut p = provider(
            "openai",
            ProviderType::Openai,
            Some(OPENAI_BASE_URL.to_owned()),
        );
        p.api_key = Some(key);
        cfg.providers.push(p);
        for (name, i, o) in OPENAI_MODELS {
            cfg.models.push(model(name, "openai", name, Some((i, o))));
        }
    }

    if let Some(key) = var("ANTHROPIC_API_KEY") {
        let mut p = provider(
            "anthropic",
            ProviderType::Anthropic,
            Some(ANTHROPIC_BASE_URL.to_owned()),
        );
        p.api_key = Some(key);
        cfg.providers.push(p);
        for (name, i, o) in ANTHROPIC_MODELS {
            cfg.models
                .push(model(name, "anthropic", name, Some((i, o))));
        }
    }

    if let (Some(key), Some(endpoint)) = (var("AZURE_OPENAI_API_KEY"), var("AZURE_OPENAI_ENDPOINT"))
    {
        let mut p = provider(
            "azure",
            ProviderType::Azure,
            Some(endpoint.trim_end_matches('/').to_owned()),
        );
        p.api_key = Some(key);
        p.api_version = Some(
            var("AZURE_OPENAI_API_VERSION").unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_owned()),
        );
        cfg.providers.push(p);
        for (deployment, i, o) in AZURE_MODELS {
            // With OpenAI configured too, `gpt-4o` is OpenAI's; Azure's is `azure-gpt-4o`.
            let name = if have_openai {
                format!("azure-{deployment}")
            } else {
                deployment.to_owned()
            };
            cfg.models
                .push(model(&name, "azure", deployment, Some((i, o))));
        }
    }

    super::presets::add_from_env(&mut cfg, &var);

    // Without a master key no `auth` section: serve without keys (the caller logs a warning).
    // With one, the admin API is on and every call needs a key (made through `POST /admin/keys`):
    // an admin API beside an open API would guard nothing.
    cfg.auth = var("GATEWAY_MASTER_KEY").map(|master| AuthConfig {
        master_key: Some(master),
        ..AuthConfig::default()
    });
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::Lines;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn default_of(env: Env) -> Config {
        builtin_default(env, false).unwrap()
    }

    fn names(cfg: &Config) -> (Vec<&str>, Vec<&str>) {
        (
            cfg.providers.iter().map(|p| p.name.as_str()).collect(),
            // Wildcards (`openai/*`) are `presets::add_from_env`'s, tested there.
            cfg.models
                .iter()
                .map(|m| m.name.as_str())
                .filter(|n| !n.ends_with("/*"))
                .collect(),
        )
    }

    fn assert_valid(cfg: &Config) {
        if let Err(e) = crate::config::validate::validate(cfg.clone(), &Lines::default()) {
            panic!("default does not validate: {e:?}");
        }
    }

    #[test]
    fn nothing_set_is_mock_only() {
        let cfg = default_of(&env_of(&[]));
        assert_eq!(names(&cfg), (vec!["mock"], vec!["mock"]));
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
        assert!(cfg.auth.is_none());
        assert_eq!(cfg.providers[0].kind, ProviderType::Mock);
        assert_eq!(cfg.providers[0].latency, Some(Dur::millis(0)));
        assert_eq!(cfg.models[0].deployments[0].provider, "mock");
        assert_eq!(cfg.state.data_dir, "./data");
        assert!(cfg.state.redis_url.is_none() && cfg.state.nats_url.is_none());
        assert_valid(&cfg);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let cfg = default_of(&env_of(&[
            ("OPENAI_API_KEY", ""),
            ("ANTHROPIC_API_KEY", "  "),
            ("AZURE_OPENAI_API_KEY", "k"),
        ]));
        assert_eq!(names(&cfg), (vec!["mock"], vec!["mock"]));
    }

    #[test]
    fn openai() {
        let cfg = default_of(&env_of(&[("OPENAI_API_KEY", "sk-test")]));
        let (providers, models) = names(&cfg);
        assert_eq!(providers, vec!["mock", "openai"]);
        assert_eq!(
            models,
            vec![
                "mock",
                "gpt-4o",
                "gpt-4o-mini",
                "gpt-4.1",
                "gpt-4.1-mini",
                "o4-mini",
                "text-embedding-3-small",
                "text-embedding-3-large"
            ]
        );
        let p = &cfg.providers[1];
        assert_eq!(p.kind, ProviderType::Openai);
        assert_eq!(p.base_url.as_deref(), Some("https://api.openai.com/v1"));
        assert_eq!(p.api_key.as_deref(), Some("sk-test"));
        let mini = &cfg.models[2].deployments[0];
        assert_eq!(
            (mini.provider.as_str(), mini.model.as_str()),
            ("openai", "gpt-4o-mini")
        );
        assert_eq!(mini.input_cost_per_mtok, Some(0.15));
        assert_eq!(mini.output_cost_per_mtok, Some(0.60));
        assert_valid(&cfg);
    }

    #[test]
    fn anthropic() {
        let cfg = default_of(&env_of(&[("ANTHROPIC_API_KEY", "sk-ant")]));
        let (providers, models) = names(&cfg);
        assert_eq!(providers, vec!["mock", "anthropic"]);
        assert_eq!(
            models,
            vec![
                "mock",
                "claude-sonnet-4-5",
                "claude-haiku-4-5",
                "claude-opus-4-1",
                "claude-3-5-haiku-latest"
            ]
        );
        assert_eq!(
            cfg.providers[1].base_url.as_deref(),
            Some("https://api.anthropic.com")
        );
        for m in cfg.models[1..].iter().filter(|m| !m.name.ends_with("/*")) {
            assert_eq!(m.deployments[0].model, m.name);
            assert_eq!(m.deployments[0].provider, "anthropic");
            assert!(m.deployments[0].input_cost_per_mtok.is_some());
        }
        assert_valid(&cfg);
    }

    #[test]
    fn azure_alone_takes_plain_names() {
        let cfg = default_of(&env_of(&[
            ("AZURE_OPENAI_API_KEY", "az"),
            ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com/"),
        ]));
        let (providers, models) = names(&cfg);
        assert_eq!(providers, vec!["mock", "azure"]);
        assert_eq!(models, vec!["mock", "gpt-4o", "gpt-4o-mini"]);
        let p = &cfg.providers[1];
        assert_eq!(p.base_url.as_deref(), Some("https://res.openai.azure.com"));
        assert_eq!(p.api_version.as_deref(), Some("2024-10-21"));
        assert_eq!(cfg.models[2].deployments[0].model, "gpt-4o-mini");
        assert_valid(&cfg);
    }

    #[test]
    fn azure_needs_endpoint() {
        let cfg = default_of(&env_of(&[("AZURE_OPENAI_API_KEY", "az")]));
        assert_eq!(names(&cfg).0, vec!["mock"]);
    }

    #[test]
    fn all_three() {
        let cfg = default_of(&env_of(&[
            ("OPENAI_API_KEY", "sk-openai-SEKRIT"),
            ("ANTHROPIC_API_KEY", "ant-SEKRIT"),
            ("AZURE_OPENAI_API_KEY", "az-SEKRIT"),
            ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com"),
            ("AZURE_OPENAI_API_VERSION", "2025-01-01-preview"),
        ]));
        let (providers, models) = names(&cfg);
        assert_eq!(providers, vec!["mock", "openai", "anthropic", "azure"]);
        assert_eq!(models.len(), 1 + 7 + 4 + 2);
        assert!(models.contains(&"azure-gpt-4o") && models.contains(&"azure-gpt-4o-mini"));
        let az = cfg
            .models
            .iter()
            .find(|m| m.name == "azure-gpt-4o")
            .unwrap();
        assert_eq!(az.deployments[0].model, "gpt-4o");
        assert_eq!(az.deployments[0].provider, "azure");
        assert_eq!(
            cfg.providers[3].api_version.as_deref(),
            Some("2025-01-01-preview")
        );
        assert_valid(&cfg);
        // `describe` never prints a key.
        let text = crate::config::describe(&cfg).join("\n");
        assert!(!text.contains("SEKRIT"), "{text}");
    }

    #[test]
    fn listen_from_the_environment_or_the_place() {
        let none = env_of(&[]);
        let at = |env: Env, c| builtin_default(env, c).unwrap().server.listen.to_string();
        assert_eq!(at(&none, false), "127.0.0.1:8080");
        assert_eq!(at(&none, true), "0.0.0.0:8080");
        let set = env_of(&[("AI_GATEWAY_LISTEN", " 0.0.0.0:9000 ")]);
        assert_eq!(at(&set, false), "0.0.0.0:9000");
        let local = env_of(&[("AI_GATEWAY_LISTEN", "127.0.0.1:7000")]);
        assert_eq!(
            at(&local, true),
            "127.0.0.1:7000",
            "the variable wins over the place"
        );
        let empty = env_of(&[("AI_GATEWAY_LISTEN", "")]);
        assert_eq!(at(&empty, true), "0.0.0.0:8080");
        let bad = env_of(&[("AI_GATEWAY_LISTEN", "8080")]);
        let e = builtin_default(&bad, false).unwrap_err();
        assert_eq!(e.path, "AI_GATEWAY_LISTEN");
        assert!(e.to_string().contains("\"8080\" is not an address"), "{e}");
        assert!(e.hint.unwrap().contains("0.0.0.0:8080"));
    }

    #[test]
    fn container_from_the_environment() {
        assert!(in_container(&env_of(&[(
            "KUBERNETES_SERVICE_HOST",
            "10.0.0.1"
        )])));
        assert!(in_container(&env_of(&[("container", "podman")])));
    }

    #[test]
    fn master_key_turns_auth_on() {
        let cfg = default_of(&env_of(&[("GATEWAY_MASTER_KEY", "mk-SEKRIT")]));
        let auth = cfg.auth.as_ref().unwrap();
        assert_eq!(auth.master_key.as_deref(), Some("mk-SEKRIT"));
        assert!(auth.keys.is_empty());
        assert_valid(&cfg);
        let text = crate::config::describe(&cfg).join("\n");
        assert!(text.contains("admin API enabled"), "{text}");
        assert!(!text.contains("SEKRIT"), "{text}");
        let blank = default_of(&env_of(&[("GATEWAY_MASTER_KEY", " ")]));
        assert!(blank.auth.is_none());
    }
}
