//! TEMPORARY stub: replaced by the real loader.
pub mod types;
pub mod units;
pub use types::*;
pub use units::{ByteSize, Dur};

pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
#[derive(Debug, Clone)]
pub struct LoadErrors(pub Vec<ConfigError>);
impl std::fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}
impl std::error::Error for LoadErrors {}

pub fn load_str(text: &str, _env: Env) -> Result<Config, LoadErrors> {
    serde_json::from_str(text).map_err(|e| {
        LoadErrors(vec![ConfigError {
            path: String::new(),
            line: None,
            message: e.to_string(),
            hint: None,
        }])
    })
}
pub fn load_file(path: &std::path::Path, env: Env) -> Result<Config, LoadErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        LoadErrors(vec![ConfigError {
            path: String::new(),
            line: None,
            message: e.to_string(),
            hint: None,
        }])
    })?;
    load_str(&text, env)
}
pub fn builtin_default(_env: Env) -> Config {
    let mut c = Config::default();
    c.providers.push(ProviderConfig {
        name: "mock".into(),
        kind: ProviderType::Mock,
        base_url: None,
        api_key: None,
        timeout: Dur::secs(60),
        connect_timeout: Dur::secs(5),
        headers: Default::default(),
        api_version: None,
        latency: None,
    });
    c.models.push(ModelConfig {
        name: "mock".into(),
        routing: RoutingStrategy::Priority,
        deployments: vec![DeploymentConfig {
            provider: "mock".into(),
            model: "mock".into(),
            input_cost_per_mtok: None,
            output_cost_per_mtok: None,
            weight: 1,
            priority: 0,
            rpm: None,
            tpm: None,
        }],
        fallbacks: vec![],
        retries: None,
        timeout: None,
        cache: None,
    });
    c
}
pub fn resolve_path(cli: Option<&std::path::Path>, env: Env) -> Option<std::path::PathBuf> {
    cli.map(|p| p.to_path_buf())
        .or_else(|| env("AI_GATEWAY_CONFIG").map(Into::into))
}
pub fn describe(cfg: &Config) -> Vec<String> {
    cfg.models
        .iter()
        .map(|m| format!("model {}", m.name))
        .collect()
}
