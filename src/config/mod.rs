//! Loading the configuration file (`docs/contract/config.md`).
//!
//! `load_str` runs: YAML events -> tree with lines (`yaml`) -> `${VAR}` substitution in string
//! scalars (`interpolate`) -> typed `Config` through serde_path_to_error (unknown keys and type
//! errors name their path) -> semantic checks that collect every error (`validate`). Every error
//! carries the key path, the line and, where one helps, a hint such as `did you mean "openai"?`.
//! Without a file the gateway runs on [`builtin_default`].

pub mod otlp;
pub mod schema;
pub mod types;
pub mod units;

mod default;
mod interpolate;
pub mod presets;
mod validate;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use types::*;
pub use units::{ByteSize, Dur};
pub use validate::{ENTITIES, PATTERN_SIZE_LIMIT, compile_pattern};

/// Looks up an environment variable. A closure so tests never touch the process environment;
/// in production: `&|k| std::env::var(k).ok()`.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Key path such as `models[2].deployments[0].provider`; empty for the file as a whole.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
    /// E.g. `did you mean "openai"?`.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    /// `models[2].deployments[0].provider: no provider named "opnai" (line 31); did you mean "openai"?`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, in file order.
#[derive(Debug, Clone)]
pub struct LoadErrors(pub Vec<ConfigError>);

impl fmt::Display for LoadErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl From<ConfigError> for LoadErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// Parses, interpolates, deserialises and validates a configuration text.
pub fn load_str(text: &str, env: Env) -> Result<Config, LoadErrors> {
    let mut root = yaml::parse(text)?;
    let lines = root.line_map();
    let errors = interpolate::interpolate(&mut root, env);
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    let cfg: Config = serde_path_to_error::deserialize(yaml::De(&root)).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        };
        let (message, hint) = explain(&e.inner().0);
        ConfigError {
            line: lines.get(&path),
            path,
            message,
            hint,
        }
    })?;
    let mut cfg = cfg;
    let errors = presets::fill_defaults(&mut cfg, env, &lines);
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    validate::validate(cfg, &lines).map_err(LoadErrors)
}

/// Reads and loads a configuration file; an I/O error is one error with an empty path.
pub fn load_file(path: &Path, env: Env) -> Result<Config, LoadErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: String::new(),
        line: None,
        message: format!("cannot read {}: {e}", path.display()),
        hint: None,
    })?;
    load_str(&text, env)
}

/// The configuration used when there is no file: mock provider and model `mock`, plus OpenAI,
/// Anthropic and Azure OpenAI with their usual models for each API key found in `env`; it
/// listens on `$AI_GATEWAY_LISTEN`, else on 0.0.0.0:8080 when `in_container`, else on
/// 127.0.0.1:8080, and `$GATEWAY_MASTER_KEY` turns auth and the admin API on. The error: an
/// `AI_GATEWAY_LISTEN` that is not an address.
pub fn builtin_default(env: Env, in_container: bool) -> Result<Config, ConfigError> {
    default::builtin_default(env, in_container)
}

/// Whether this process runs in a container (Docker, Podman, systemd-nspawn, a Kubernetes pod).
pub fn in_container(env: Env) -> bool {
    default::in_container(env)
}

/// `--config PATH`, else `$AI_GATEWAY_CONFIG`, else `./gateway.yaml` if it exists, else `None`
/// (= built-in default).
pub fn resolve_path(cli: Option<&Path>, env: Env) -> Option<PathBuf> {
    if let Some(p) = cli {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env("AI_GATEWAY_CONFIG").filter(|p| !p.trim().is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = Path::new("gateway.yaml");
    local.is_file().then(|| local.to_path_buf())
}

/// Human summary lines of what a configuration sets up, for printing at start. Never includes a
/// secret (API keys, master key, gateway keys, webhook secret, header values, URL credentials).
pub fn describe(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let s = &cfg.server;
    out.push(format!(
        "listen {} (max body {}, request timeout {}, shutdown grace {}, header read timeout {}, idle timeout {}, at most {} connections)",
        s.listen,
        fmt_size(s.max_body_size),
        fmt_dur(s.request_timeout),
        fmt_dur(s.shutdown_grace),
        fmt_dur(s.header_read_timeout),
        fmt_dur(s.idle_timeout),
        s.max_connections
    ));
    let mut state = format!("state: embedded store in {}", cfg.state.data_dir);
    if let Some(r) = redis_topology(&cfg.state) {
        state.push_str(&format!(", {r}"));
    }
    if let Some(n) = nats_topology(&cfg.state) {
        state.push_str(&format!(", {n}"));
    }
    out.push(state);

    for p in &cfg.providers {
        let kind = p.kind.as_str();
        let mut line = format!("provider {} ({kind})", p.name);
        if let Some(u) = &p.base_url {
            line.push(' ');
            line.push_str(&redact_url(u));
        }
        if let Some(v) = &p.api_version {
            line.push_str(&format!(", api-version {v}"));
        }
        if let Some(r) = &p.region {
            line.push_str(&format!(", region {r}"));
        }
        if let Some(l) = p.latency {
            line.push_str(&format!(", latency {}", fmt_dur(l)));
        }
        if p.kind == ProviderType::Bedrock && p.api_key.is_none() {
            line.push_str(if p.aws_session_token.is_some() {
                ", AWS credentials set (temporary)"
            } else {
                ", AWS credentials set"
            });
        } else if p.kind != ProviderType::Mock {
            line.push_str(if p.api_key.is_some() {
                ", api key set"
            } else {
                ", no api key"
            });
        }
        if !p.headers.is_empty() {
            line.push_str(&format!(", {} extra header(s)", p.headers.len()));
        }
        out.push(line);
    }

    for m in &cfg.models {
        let deps: Vec<String> = m
            .deployments
            .iter()
            .map(|d| format!("{}/{}", d.provider, d.model))
            .collect();
        let mut line = format!("model {} -> {}", m.name, deps.join(", "));
        let mut extra = Vec::new();
        if m.routing != RoutingStrategy::Priority {
            extra.push(format!("routing {}", routing_name(m.routing)));
        }
        if !m.fallbacks.is_empty() {
            extra.push(format!("fallbacks {}", m.fallbacks.join(", ")));
        }
        if !extra.is_empty() {
            line.push_str(&format!(" ({})", extra.join("; ")));
        }
        out.push(line);
    }

    match &cfg.auth {
        None => out.push("auth: none, serving without keys".to_owned()),
        Some(a) => {
            let names: Vec<&str> = a.keys.iter().map(|k| k.name.as_str()).collect();
            let mut line = format!("auth: {} static key(s)", names.len());
            if !names.is_empty() {
                line.push_str(&format!(" ({})", names.join(", ")));
            }
            line.push_str(if a.master_key.is_some() {
                ", admin API enabled (master key set)"
            } else {
                ", admin API disabled (no master key)"
            });
            out.push(line);
        }
    }

    let c = &cfg.cache;
    if c.enabled {
        let scope = match c.scope {
            CacheScope::Key => "key",
            CacheScope::Global => "global",
        };
        let l2 = if c.l2 && cfg.state.redis_configured() {
            ", L2 in Redis"
        } else {
            ""
        };
        out.push(format!(
            "cache: on, ttl {}, scope {scope}, L1 {} entries / {}{l2}{}",
            fmt_dur(c.ttl),
            c.l1_max_entries,
            fmt_size(c.l1_max_bytes),
            if c.only_deterministic {
                ", deterministic requests only"
            } else {
                ""
            }
        ));
    } else {
        out.push("cache: off".to_owned());
    }

    let rl = &cfg.rate_limits;
    let mut line = if rl.shared && cfg.state.redis_configured() {
        let on_err = match rl.on_redis_error {
            OnRedisError::Local => "local",
            OnRedisError::Deny => "deny",
            OnRedisError::Allow => "allow",
        };
        format!("rate limits: shared in Redis (on Redis error: {on_err})")
    } else {
        "rate limits: local to this process".to_owned()
    };
    if !rl.models.is_empty() {
        let names: Vec<&str> = rl.models.keys().map(String::as_str).collect();
        line.push_str(&format!(", per-model ceilings for {}", names.join(", ")));
    }
    out.push(line);

    let j = &cfg.jobs;
    out.push(format!(
        "jobs: {} worker(s), {}, webhook secret {}",
        j.workers,
        if cfg.state.nats_url.is_some() {
            "queue on NATS JetStream".to_owned()
        } else {
            format!("embedded queue in {}", cfg.state.data_dir)
        },
        if j.webhook.secret.is_some() {
            "set"
        } else {
            "generated at start"
        }
    ));

    let t = &cfg.telemetry;
    out.push(format!(
        "telemetry: log level {}, format {}, trace export {}",
        t.log_level,
        match t.log_format {
            None => "auto",
            Some(LogFormat::Json) => "json",
            Some(LogFormat::Pretty) => "pretty",
        },
        otlp::export_summary(t, &otlp::process_env)
    ));
    out
}

fn routing_name(r: RoutingStrategy) -> &'static str {
    match r {
        RoutingStrategy::Priority => "priority",
        RoutingStrategy::Weighted => "weighted",
        RoutingStrategy::Latency => "latency",
        RoutingStrategy::Cost => "cost",
        RoutingStrategy::LeastBusy => "least-busy",
    }
}

fn fmt_dur(d: Dur) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(d.get()).to_string()
    }
}

fn fmt_size(b: ByteSize) -> String {
    b.to_config_string()
}

/// The Redis of `state:` in words (`redis cluster of 3 seed node(s) …`), without credentials.
pub fn redis_topology(s: &StateConfig) -> Option<String> {
    let tls = |urls: &[String]| {
        if urls
            .iter()
            .any(|u| u.to_ascii_lowercase().starts_with("rediss://"))
        {
            if s.redis_tls.insecure_skip_verify {
                " (TLS, certificate NOT verified)"
            } else if s.redis_tls.ca_file.is_some() {
                " (TLS, CA file)"
            } else {
                " (TLS, system roots)"
            }
        } else {
            ""
        }
    };
    let list = |urls: &[String]| {
        urls.iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let Some(u) = &s.redis_url {
        let t = tls(std::slice::from_ref(u));
        return Some(format!("redis {}{t}", redact_url(u)));
    }
    if !s.redis_cluster_urls.is_empty() {
        let t = tls(&s.redis_cluster_urls);
        return Some(format!(
            "redis cluster via {} seed node(s) {}{t}",
            s.redis_cluster_urls.len(),
            list(&s.redis_cluster_urls)
        ));
    }
    if !s.redis_sentinel.urls.is_empty() {
        let t = tls(&s.redis_sentinel.urls);
        return Some(format!(
            "redis primary {} via {} sentinel(s) {}{t}",
            s.redis_sentinel.master_name,
            s.redis_sentinel.urls.len(),
            list(&s.redis_sentinel.urls)
        ));
    }
    None
}

/// The NATS of `state:` in words, without credentials.
pub fn nats_topology(s: &StateConfig) -> Option<String> {
    let u = s.nats_url.as_ref()?;
    let servers = u.split(',').filter(|x| !x.trim().is_empty()).count();
    let mut line = if servers > 1 {
        format!("nats {servers} servers {}", redact_url(u))
    } else {
        format!("nats {}", redact_url(u))
    };
    if u.to_ascii_lowercase().contains("tls://") || s.nats_tls.ca_file.is_some() {
        line.push_str(", TLS");
    }
    if s.nats_credentials_file.is_some() {
        line.push_str(", .creds file");
    }
    line.push_str(&format!(", JetStream replicas {}", s.jetstream_replicas));
    Some(line)
}

/// A URL without its credentials, query and fragment, for logs, errors and the start-up
/// summary; a comma-separated list of URLs (NATS servers) is redacted one by one. The one URL
/// redactor (Redis, NATS, OTLP endpoints).
pub fn redact_url(u: &str) -> String {
    if u.contains(',') {
        return u
            .split(',')
            .map(|one| redact_one_url(one.trim()))
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_one_url(u)
}

fn redact_one_url(u: &str) -> String {
    let (scheme, rest) = match u.find("://") {
        Some(i) => (&u[..i + 3], &u[i + 3..]),
        None => ("", u),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}{host}{path}")
}

/// The closest candidate to `word`, if any is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let w = word.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&w, &c.to_lowercase());
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.filter(|(s, _)| *s >= 0.8).map(|(_, c)| c.to_owned())
}

/// `did you mean "x"?`, else `expected one of: a, b`.
pub(crate) fn hint_for(word: &str, candidates: &[&str], what: &str) -> Option<String> {
    match suggest(word, candidates.iter().copied()) {
        Some(s) => Some(format!("did you mean \"{s}\"?")),
        None if candidates.is_empty() => None,
        None => Some(format!("{what}: {}", candidates.join(", "))),
    }
}

/// Turns a serde message into message + hint.
fn explain(msg: &str) -> (String, Option<String>) {
    // YAML calls it null.
    let msg = &msg.replace("invalid type: unit value", "invalid type: null");
    // serde quotes names in backticks: "unknown field `listn`, expected one of `listen`, ..."
    let ticked: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
    if let Some((&first, rest)) = ticked.split_first() {
        if msg.starts_with("unknown field") {
            return (
                format!("unknown key \"{first}\""),
                hint_for(first, rest, "expected one of"),
            );
        }
        if msg.starts_with("unknown variant") {
            return (
                format!("unknown value \"{first}\""),
                hint_for(first, rest, "expected one of"),
            );
        }
        if msg.starts_with("missing field") {
            return (format!("missing key \"{first}\""), None);
        }
    }
    if msg == "invalid socket address syntax" {
        return (
            msg.to_owned(),
            Some("write IP:PORT, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"".to_owned()),
        );
    }
    (msg.to_owned(), None)
}

#[cfg(test)]
mod tests;
