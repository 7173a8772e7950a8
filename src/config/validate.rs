//! Semantic checks after deserialisation. Every problem is collected (not just the first), each
//! with its key path, line and a hint where one helps.
//!
//! Normalisation done here first:
//! - every `Option<String>` that is the empty string becomes `None` (so
//!   `api_key: "${OPENAI_API_KEY:-}"` with the variable unset means "no key"); this covers the
//!   secrets (`api_key`, `master_key`, `key`, `jobs.webhook.secret`), `telemetry.otlp_endpoint`
//!   and the other optional strings (URLs, `api_version`, `key_sha256`, `expires_at`);
//! - `base_url` of an `openai` / `anthropic` provider defaults to the vendor's API;
//! - `key_sha256` is lower-cased.
//!
//! `budget_period` without `budget_usd` (and the reverse) is accepted: the period alone limits
//! nothing, a budget alone never resets. `rpm`/`tpm` of 0 are accepted as written.
//! `state:` is checked in [`state`] (schemes, one Redis topology, files, replicas); the
//! clients check the rest of the URLs.

use std::collections::HashMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};

mod guardrails;

pub use guardrails::{ENTITIES, PATTERN_SIZE_LIMIT, compile_pattern};
mod routing;
mod state;

use super::yaml::Lines;
use super::{Config, ConfigError, ProviderType, RoutingStrategy, hint_for};

pub(crate) const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub(crate) const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

struct Ctx<'a> {
    lines: &'a Lines,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        let path = path.into();
        self.errors.push(ConfigError {
            line: self.lines.get(&path),
            path,
            message: message.into(),
            hint,
        });
    }

    /// `first defined at PATH (line N)`.
    fn first_at(&self, path: &str) -> Option<String> {
        Some(match self.lines.get(path) {
            Some(l) => format!("first defined at {path} (line {l})"),
            None => format!("first defined at {path}"),
        })
    }
}

fn none_if_empty(s: &mut Option<String>) {
    if s.as_deref().is_some_and(str::is_empty) {
        *s = None;
    }
}

fn normalize(cfg: &mut Config) {
    none_if_empty(&mut cfg.state.redis_url);
    none_if_empty(&mut cfg.state.nats_url);
    state::normalize(&mut cfg.state);
    for p in &mut cfg.providers {
        none_if_empty(&mut p.base_url);
        none_if_empty(&mut p.api_key);
        none_if_empty(&mut p.api_version);
        none_if_empty(&mut p.region);
        none_if_empty(&mut p.aws_access_key_id);
        none_if_empty(&mut p.aws_secret_access_key);
        none_if_empty(&mut p.aws_session_token);
        if p.base_url.is_none() {
            p.base_url = super::presets::default_base_url(p.kind).map(str::to_owned);
        }
    }
    if let Some(auth) = &mut cfg.auth {
        none_if_empty(&mut auth.master_key);
        for k in &mut auth.keys {
            none_if_empty(&mut k.key);
            none_if_empty(&mut k.key_sha256);
            none_if_empty(&mut k.expires_at);
            if let Some(h) = &mut k.key_sha256 {
                h.make_ascii_lowercase();
            }
        }
    }
    none_if_empty(&mut cfg.jobs.webhook.secret);
    none_if_empty(&mut cfg.telemetry.otlp_endpoint);
}

/// Checks that `u` is an absolute http(s) URL with a host; the error says why not (without
/// repeating the URL, which may hold credentials).
pub(crate) fn check_http_url(u: &str) -> Result<(), &'static str> {
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace");
    }
    let lower = u.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &u[8..]
    } else if lower.starts_with("http://") {
        &u[7..]
    } else {
        return Err("it must start with http:// or https://");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err("its IPv6 host has no closing ]");
        };
        if !h
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("its host is not valid");
        }
        match after {
            "" => (h, None),
            a => match a.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err("its host is not valid"),
            },
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("it has no host");
    }
    let is_v6 = host_port.starts_with('[');
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') || (is_v6 && c == ':'))
    {
        return Err("its host is not valid");
    }
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("its port is not a number from 1 to 65535");
    }
    Ok(())
}

fn is_header_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Normalises and checks `cfg`; returns it, or every problem found (sorted by line).
pub(crate) fn validate(mut cfg: Config, lines: &Lines) -> Result<Config, Vec<ConfigError>> {
    normalize(&mut cfg);
    let mut cx = Ctx {
        lines,
        errors: Vec::new(),
    };
    check_providers(&cfg, &mut cx);
    check_models(&cfg, &mut cx);
    check_auth(&cfg, &mut cx);
    check_rest(&cfg, &mut cx);
    state::check(&cfg.state, &mut cx);
    guardrails::check(&cfg, &mut cx);
    if cx.errors.is_empty() {
        Ok(cfg)
    } else {
        let mut errors = cx.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(errors)
    }
}

fn check_providers(cfg: &Config, cx: &mut Ctx) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in cfg.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        if p.name.trim().is_empty() {
            cx.err(format!("{at}.name"), "provider name is empty", None);
        } else if let Some(&j) = seen.get(p.name.as_str()) {
            let hint = cx.first_at(&format!("providers[{j}].name"));
            cx.err(
                format!("{at}.name"),
                format!("duplicate provider name \"{}\"", p.name),
                hint,
            );
        } else {
            seen.insert(&p.name, i);
        }
        if p.kind == ProviderType::Azure {
            if p.base_url.is_none() {
                cx.err(
                    &at,
                    "missing key \"base_url\" (required for type azure)",
                    Some("e.g. base_url: \"https://myres.openai.azure.com\"".to_owned()),
                );
            }
            if p.api_version.is_none() {
                cx.err(
                    &at,
                    "missing key \"api_version\" (required for type azure)",
                    Some("e.g. api_version: \"2024-10-21\"".to_owned()),
                );
            }
        }
        if let Some(u) = &p.base_url
            && let Err(why) = check_http_url(u)
        {
            cx.err(
                format!("{at}.base_url"),
                format!("not an http(s) URL: {why}"),
                None,
            );
        }
        if p.latency.is_some() && p.kind != ProviderType::Mock {
            cx.err(
                format!("{at}.latency"),
                "latency is only allowed for type mock",
                None,
            );
        }
        if p.api_version.is_some() && p.kind != ProviderType::Azure {
            cx.err(
                format!("{at}.api_version"),
                "api_version is only allowed for type azure",
                None,
            );
        }
        check_aws(p, &at, cx);
        for (name, value) in &p.headers {
            let hp = format!("{at}.headers.{name}");
            if !is_header_token(name) {
                cx.err(&hp, format!("invalid header name \"{name}\""), None);
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                cx.err(&hp, "header value contains a control character", None);
            }
        }
    }
}

/// `region` and the AWS credentials belong to `bedrock` alone; a region is AWS's name of one.
fn check_aws(p: &super::ProviderConfig, at: &str, cx: &mut Ctx) {
    let aws = [
        ("region", p.region.is_some()),
        ("aws_access_key_id", p.aws_access_key_id.is_some()),
        ("aws_secret_access_key", p.aws_secret_access_key.is_some()),
        ("aws_session_token", p.aws_session_token.is_some()),
    ];
    if p.kind != ProviderType::Bedrock {
        for (key, set) in aws {
            if set {
                cx.err(
                    format!("{at}.{key}"),
                    format!("{key} is only allowed for type bedrock"),
                    None,
                );
            }
        }
        return;
    }
    if let Some(r) = &p.region
        && (r.len() > 32
            || !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        cx.err(
            format!("{at}.region"),
            format!("\"{r}\" is not an AWS region name"),
            Some("e.g. region: us-east-1".to_owned()),
        );
    }
}

fn check_models(cfg: &Config, cx: &mut Ctx) {
    let providers: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    let models: Vec<&str> = cfg.models.iter().map(|m| m.name.as_str()).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, m) in cfg.models.iter().enumerate() {
        let at = format!("models[{i}]");
        if m.name.trim().is_empty() {
            cx.err(format!("{at}.name"), "model name is empty", None);
        } else if let Some(&j) = seen.get(m.name.as_str()) {
            let hint = cx.first_at(&format!("models[{j}].name"));
            cx.err(
                format!("{at}.name"),
                format!("duplicate model name \"{}\"", m.name),
                hint,
            );
        } else {
            seen.insert(&m.name, i);
        }
        if m.deployments.is_empty() {
            cx.err(
                format!("{at}.deployments"),
                format!("model \"{}\" has no deployments", m.name),
                Some("add at least one {provider: NAME, model: UPSTREAM_MODEL}".to_owned()),
            );
        }
        for (j, d) in m.deployments.iter().enumerate() {
            let dp = format!("{at}.deployments[{j}]");
            if !providers.contains(&d.provider.as_str()) {
                let hint = if providers.is_empty() {
                    Some("no providers are configured".to_owned())
                } else {
                    hint_for(&d.provider, &providers, "known providers")
                };
                cx.err(
                    format!("{dp}.provider"),
                    format!("no provider named \"{}\"", d.provider),
                    hint,
                );
            }
            if d.model.trim().is_empty() {
                cx.err(format!("{dp}.model"), "upstream model name is empty", None);
            }
            if m.routing == RoutingStrategy::Weighted && d.weight == 0 {
                cx.err(
                    format!("{dp}.weight"),
                    "weight must be greater than 0 with routing: weighted",
                    None,
                );
            }
            for (key, v) in [
                ("input_cost_per_mtok", d.input_cost_per_mtok),
                ("output_cost_per_mtok", d.output_cost_per_mtok),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    cx.err(
                        format!("{dp}.{key}"),
                        "must be a number of USD, 0 or more",
                        None,
                    );
                }
            }
        }
        routing::check_hedge_shadow(m, &at, &models, cx);
        for (k, f) in m.fallbacks.iter().enumerate() {
            let fp = format!("{at}.fallbacks[{k}]");
            if *f == m.name {
                cx.err(
                    fp,
                    format!("model \"{f}\" lists itself as a fallback"),
                    None,
                );
            } else if !models.contains(&f.as_str()) {
                let others: Vec<&str> = models.iter().copied().filter(|n| *n != m.name).collect();
                cx.err(
                    fp,
                    format!("no model named \"{f}\""),
                    hint_for(f, &others, "known models"),
                );
            }
        }
    }
    for name in cfg.rate_limits.models.keys() {
        if !models.contains(&name.as_str()) {
            cx.err(
                format!("rate_limits.models.{name}"),
                format!("no model named \"{name}\""),
                hint_for(name, &models, "known models"),
            );
        }
    }
}

fn check_auth(cfg: &Config, cx: &mut Ctx) {
    let Some(auth) = &cfg.auth else { return };
    let mut names: HashMap<&str, usize> = HashMap::new();
    // SHA-256 hex of each key -> index of the first key with it.
    let mut hashes: HashMap<String, usize> = HashMap::new();
    for (i, k) in auth.keys.iter().enumerate() {
        let at = format!("auth.keys[{i}]");
        if k.name.trim().is_empty() {
            cx.err(format!("{at}.name"), "key name is empty", None);
        } else if let Some(&j) = names.get(k.name.as_str()) {
            let hint = cx.first_at(&format!("auth.keys[{j}].name"));
            cx.err(
                format!("{at}.name"),
                format!("duplicate key name \"{}\"", k.name),
                hint,
            );
        } else {
            names.insert(&k.name, i);
        }
        let hash = match (&k.key, &k.key_sha256) {
            (None, None) => {
                cx.err(
                    &at,
                    "needs one of \"key\" or \"key_sha256\"",
                    Some("an empty value (e.g. an unset ${VAR:-}) counts as absent".to_owned()),
                );
                None
            }
            (Some(_), Some(_)) => {
                cx.err(&at, "set only one of \"key\" and \"key_sha256\"", None);
                None
            }
            (Some(key), None) => Some((sha256_hex(key), "key")),
            (None, Some(h)) => {
                if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) {
                    Some((h.clone(), "key_sha256"))
                } else {
                    cx.err(
                        format!("{at}.key_sha256"),
                        "must be 64 hex characters (the SHA-256 of the key)",
                        None,
                    );
                    None
                }
            }
        };
        if let Some((hash, field)) = hash {
            if let Some(&j) = hashes.get(&hash) {
                cx.err(
                    format!("{at}.{field}"),
                    format!("same key as auth.keys[{j}]"),
                    Some("every key must be different".to_owned()),
                );
            } else {
                hashes.insert(hash, i);
            }
        }
        for (g, pattern) in k.models.iter().enumerate() {
            if let Err(e) = globset::Glob::new(pattern) {
                cx.err(
                    format!("{at}.models[{g}]"),
                    format!("invalid glob: {}", e.kind()),
                    None,
                );
            }
        }
        if let Some(t) = &k.expires_at
            && humantime::parse_rfc3339(t).is_err()
        {
            cx.err(
                format!("{at}.expires_at"),
                format!("\"{t}\" is not an RFC 3339 UTC timestamp"),
                Some("e.g. \"2027-01-01T00:00:00Z\"".to_owned()),
            );
        }
        if let Some(b) = k.budget_usd
            && !(b.is_finite() && b >= 0.0)
        {
            cx.err(
                format!("{at}.budget_usd"),
                "must be a number of USD, 0 or more",
                None,
            );
        }
    }
    if let Some(mk) = &auth.master_key
        && let Some(&j) = hashes.get(&sha256_hex(mk))
    {
        cx.err(
            "auth.master_key",
            format!("master_key is the same as the key of auth.keys[{j}]"),
            Some("the admin key must differ from every client key".to_owned()),
        );
    }
}

fn check_rest(cfg: &Config, cx: &mut Ctx) {
    let s = &cfg.server;
    for (key, d) in [
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.idle_timeout", s.idle_timeout),
    ] {
        if d.is_zero() {
            cx.err(key, "must be more than 0s", None);
        }
    }
    if s.max_connections == 0 {
        cx.err("server.max_connections", "must be at least 1", None);
    }
    for (i, o) in s.cors_allowed_origins.iter().enumerate() {
        let scheme_host = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
        if o != "*" && (!scheme_host || axum::http::HeaderValue::from_str(o).is_err()) {
            cx.err(
                format!("server.cors_allowed_origins[{i}]"),
                "must be \"*\" or an origin such as \"https://app.example.com\" (scheme and host, an optional port, no path)",
                None,
            );
        }
    }
    if cfg.request_log.max_entries == 0 {
        cx.err(
            "request_log.max_entries",
            "must be at least 1 (turn the log off with request_log.enabled: false)",
            None,
        );
    }
    if cfg.request_log.usage_retention.get() < std::time::Duration::from_secs(86_400) {
        cx.err("request_log.usage_retention", "must be at least 1d", None);
    }
    if cfg.responses.store_ttl.is_zero() {
        cx.err("responses.store_ttl", "must be more than 0s", None);
    }
    if cfg.cache.l1_max_entries == 0 {
        cx.err("cache.l1_max_entries", "must be at least 1", None);
    }
    let r = &cfg.resilience;
    if r.backoff_initial > r.backoff_max {
        cx.err(
            "resilience.backoff_initial",
            "must not exceed resilience.backoff_max",
            None,
        );
    }
    if r.circuit_breaker.failure_threshold == 0 {
        cx.err(
            "resilience.circuit_breaker.failure_threshold",
            "must be at least 1",
            None,
        );
    }
    let j = &cfg.jobs;
    if j.workers == 0 {
        cx.err("jobs.workers", "must be at least 1", None);
    }
    if j.max_attempts == 0 {
        cx.err("jobs.max_attempts", "must be at least 1", None);
    }
    let w = &j.webhook;
    if w.max_attempts == 0 {
        cx.err("jobs.webhook.max_attempts", "must be at least 1", None);
    }
    if w.backoff_initial > w.backoff_max {
        cx.err(
            "jobs.webhook.backoff_initial",
            "must not exceed jobs.webhook.backoff_max",
            None,
        );
    }
    if let Some(secret) = &w.secret {
        let hint = Some("e.g. whsec_ followed by the base64 of 32 random bytes".to_owned());
        match secret.strip_prefix("whsec_") {
            None => cx.err("jobs.webhook.secret", "must start with \"whsec_\"", hint),
            Some(b64) => {
                let ok = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .is_ok_and(|bytes| !bytes.is_empty());
                if !ok {
                    cx.err(
                        "jobs.webhook.secret",
                        "the part after \"whsec_\" is not valid base64",
                        hint,
                    );
                }
            }
        }
    }
    let t = &cfg.telemetry;
    let level = t.log_level.trim();
    if level.is_empty() {
        cx.err("telemetry.log_level", "log level is empty", None);
    } else if level.chars().all(|c| c.is_ascii_alphabetic())
        && !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str())
    {
        let hint = hint_for(level, &LOG_LEVELS, "use one of")
            .map(|h| format!("{h} (or a RUST_LOG directive such as \"info,ai_gateway=debug\")"));
        cx.err(
            "telemetry.log_level",
            format!("unknown log level \"{level}\""),
            hint,
        );
    }
    if let Some(u) = &t.otlp_endpoint
        && let Err(why) = check_http_url(u)
    {
        cx.err(
            "telemetry.otlp_endpoint",
            format!("not an http(s) URL: {why}"),
            None,
        );
    }
}

#[cfg(test)]
mod tests;
