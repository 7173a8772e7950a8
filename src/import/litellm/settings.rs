//! `litellm_settings`, `router_settings` and `general_settings`: what they say is gathered into
//! [`Settings`] (the router's value wins where both of the first two set one, as in LiteLLM)
//! and written as `server`, `state`, `resilience`, `cache`, `auth` and `telemetry`; the models'
//! share (routing, retries, timeout, fallbacks, aliases) is read by [`super::models`].

use saphyr::Yaml;

use super::models::{self, FallbackRule};
use super::{duration, seconds, string, whole};
use crate::import::emit::{Map, Value};
use crate::import::{Notes, source};

/// LiteLLM's `routing_strategy`, as the closest of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Strategy {
    /// `simple-shuffle`, LiteLLM's default: random by `weight` (or `rpm`, or `tpm`).
    #[default]
    Shuffle,
    LeastBusy,
    Latency,
    Cost,
    /// `usage-based-routing(-v2)`: carried over as least-busy.
    Usage,
}

impl Strategy {
    /// LiteLLM's name of it.
    pub(super) fn litellm(self) -> &'static str {
        match self {
            Self::Shuffle => "simple-shuffle",
            Self::LeastBusy => "least-busy",
            Self::Latency => "latency-based-routing",
            Self::Cost => "cost-based-routing",
            Self::Usage => "usage-based-routing",
        }
    }

    /// Our `routing` value.
    pub(super) fn routing(self) -> &'static str {
        match self {
            Self::Shuffle => "weighted",
            Self::LeastBusy | Self::Usage => "least-busy",
            Self::Latency => "latency",
            Self::Cost => "cost",
        }
    }
}

/// What `litellm_settings` and `router_settings` can both say.
#[derive(Debug, Default)]
struct Shared {
    retries: Option<u64>,
    timeout: Option<f64>,
    fallbacks: Option<Vec<FallbackRule>>,
    default_fallbacks: Option<(String, Vec<String>)>,
}

/// A Redis server as LiteLLM names one: host, port, password, db (or a whole URL).
#[derive(Debug, Default, Clone, PartialEq)]
struct Redis {
    url: Option<String>,
    host: Option<String>,
    port: Option<String>,
    password: Option<String>,
    db: Option<String>,
    tls: bool,
}

impl Redis {
    fn is_empty(&self) -> bool {
        self.url.is_none() && self.host.is_none()
    }

    /// `redis[s]://[:PASSWORD@]HOST:PORT[/DB]`; a literal password is percent-encoded.
    fn to_url(&self) -> Option<String> {
        if let Some(u) = &self.url {
            return Some(u.clone());
        }
        let host = self.host.as_ref()?;
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match &self.password {
            Some(p) if p.starts_with("${") => format!(":{p}@"),
            Some(p) if !p.is_empty() => format!(":{}@", percent_encode(&p.replace("$${", "${"))),
            _ => String::new(),
        };
        let port = self.port.as_deref().unwrap_or("6379");
        let db = self
            .db
            .as_ref()
            .map(|d| format!("/{d}"))
            .unwrap_or_default();
        Some(format!("{scheme}://{auth}{host}:{port}{db}"))
    }

    /// Reads `prefix` + host/port/password/db/url (`redis_host` … in router_settings, `host` …
    /// in cache_params); whether `key` was one of them.
    fn read(&mut self, key: &str, prefix: &str, v: &Yaml<'_>, path: &str, n: &mut Notes) -> bool {
        let Some(field) = key.strip_prefix(prefix) else {
            return false;
        };
        let slot = match field {
            "host" => &mut self.host,
            "port" => &mut self.port,
            "password" => &mut self.password,
            "db" => &mut self.db,
            "url" => &mut self.url,
            _ => return false,
        };
        *slot = string(v, path, field == "password" || field == "url", n);
        true
    }
}

/// `%XX` for every byte of `s` outside RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `litellm_settings.cache_params` (and `cache` itself).
#[derive(Debug, Default)]
struct Cache {
    /// `cache: true` (or `router_settings.cache_responses: true`).
    on: bool,
    /// `type`: redis (LiteLLM's proxy default), local, or one we cannot serve.
    kind: Option<String>,
    ttl: Option<f64>,
    /// `mode: default_off`: cache only when a request asks.
    opt_in: bool,
    redis: Redis,
}

/// Everything the three sections say, gathered before anything is written.
#[derive(Debug, Default)]
pub(super) struct Settings {
    litellm: Shared,
    router: Shared,
    pub(super) strategy: Strategy,
    pub(super) aliases: Vec<(String, String, String)>,
    failure_threshold: Option<u64>,
    open_for: Option<f64>,
    /// `general_settings.background_health_checks`, and its `health_check_interval`.
    background_checks: bool,
    health_check_secs: Option<f64>,
    router_redis: Redis,
    cache: Cache,
    log_json: bool,
    otlp: bool,
    /// `Some(None)`: a master key was set but could not be carried over.
    master_key: Option<Option<String>>,
    max_body_mib: Option<u64>,
}

impl Settings {
    /// Retries for every model (`resilience.retries`).
    fn retries(&self) -> Option<u64> {
        self.router.retries.or(self.litellm.retries)
    }

    /// The per-attempt timeout of every provider, in seconds.
    pub(super) fn call_timeout(&self) -> Option<f64> {
        self.router.timeout.or(self.litellm.timeout)
    }

    pub(super) fn fallbacks(&self) -> &[FallbackRule] {
        self.router
            .fallbacks
            .as_deref()
            .or(self.litellm.fallbacks.as_deref())
            .unwrap_or_default()
    }

    pub(super) fn default_fallbacks(&self) -> Option<&(String, Vec<String>)> {
        self.router
            .default_fallbacks
            .as_ref()
            .or(self.litellm.default_fallbacks.as_ref())
    }

    /// Reads one of the three sections.
    pub(super) fn section(&mut self, name: &str, node: &Yaml<'_>, notes: &mut Notes) {
        let Some(entries) = source::entries(node) else {
            if source::text(node).is_some() || source::items(node).is_some() {
                notes.skip(
                    name,
                    format!("expected a mapping, found {}", source::describe(node)),
                );
            }
            return;
        };
        for (key, v) in entries {
            // `false` and empty values leave a feature off, which is what the gateway does too.
            if source::boolean(v) == Some(false) || is_empty(v) {
                continue;
            }
            let path = format!("{name}.{key}");
            let handled = match name {
                "litellm_settings" => self.litellm_key(key, v, &path, notes),
                "router_settings" => self.router_key(key, v, &path, notes),
                _ => self.general_key(key, v, &path, notes),
            };
            if !handled {
                notes.skip(path, "the gateway has no such setting");
            }
        }
    }

    /// Keys both `litellm_settings` and `router_settings` take.
    fn shared_key(
        router: bool,
        sh: &mut Shared,
        key: &str,
        v: &Yaml<'_>,
        path: &str,
        n: &mut Notes,
    ) -> bool {
        match key {
            "num_retries" => sh.retries = whole(v, path, n),
            "timeout" if router => sh.timeout = seconds(v, path, n),
            "request_timeout" if !router => sh.timeout = seconds(v, path, n),
            "fallbacks" => sh.fallbacks = Some(models::fallback_rules(v, path, n)),
            "default_fallbacks" => {
                sh.default_fallbacks = Some((path.to_owned(), models::names(v, path, n)));
            }
            "context_window_fallbacks" | "content_policy_fallbacks" => n.skip(
                path,
                "the gateway's fallbacks (models[].fallbacks) apply when every deployment failed with an error worth retrying; it has no fallbacks chosen by the kind of error",
            ),
            "stream_timeout" => n.skip(
                path,
                "the gateway has one per-attempt timeout (timeout of the provider or model), which bounds a stream's first byte and each gap between chunks",
            ),
            "max_parallel_requests" | "default_max_parallel_requests" => n.skip(
                path,
                "the gateway bounds a deployment by its rpm/tpm and the whole server by server.max_connections, not by requests in flight per deployment",
            ),
            _ => return false,
        }
        true
    }

    fn litellm_key(&mut self, key: &str, v: &Yaml<'_>, path: &str, n: &mut Notes) -> bool {
        if Self::shared_key(false, &mut self.litellm, key, v, path, n) {
            return true;
        }
        match key {
            "cache" => self.cache.on |= source::boolean(v).unwrap_or(false),
            "cache_params" => self.cache_params(v, path, n),
            "drop_params" | "modify_params" => n.skip(
                path,
                "the gateway forwards an OpenAI request's fields unchanged to OpenAI-compatible providers (only the model name is replaced), so a field a provider refuses comes back as its 400; towards Anthropic, what Anthropic cannot take is dropped (docs/translation.md)",
            ),
            "success_callback" | "failure_callback" | "callbacks" | "service_callbacks" => {
                self.callbacks(v, path, n);
            }
            "json_logs" => self.log_json = source::boolean(v).unwrap_or(false),
            "set_verbose" => n.skip(path, "use telemetry.log_level: debug (or RUST_LOG)"),
            "turn_off_message_logging" | "redact_user_api_key_info" => n.skip(
                path,
                "nothing to do: the gateway never logs keys, and logs bodies only with telemetry.log_bodies: true",
            ),
            _ => return false,
        }
        true
    }

    fn router_key(&mut self, key: &str, v: &Yaml<'_>, path: &str, n: &mut Notes) -> bool {
        if Self::shared_key(true, &mut self.router, key, v, path, n)
            || self.router_redis.read(key, "redis_", v, path, n)
        {
            return true;
        }
        match key {
            "routing_strategy" => self.strategy(v, path, n),
            "allowed_fails" => {
                self.failure_threshold = whole(v, path, n).map(|f| f.saturating_add(1));
            }
            "cooldown_time" => self.open_for = seconds(v, path, n),
            "model_group_alias" => {
                for (alias, target) in source::entries(v).unwrap_or_default() {
                    let at = format!("{path}.{alias}");
                    let name = source::get(target, "model").unwrap_or(target);
                    if source::get(target, "hidden").and_then(source::boolean) == Some(true) {
                        n.skip(format!("{at}.hidden"), "the gateway lists every model in /v1/models");
                    }
                    if let Some(t) = source::text(name) {
                        self.aliases.push((at, alias.to_owned(), t.to_owned()));
                    }
                }
            }
            "cache_responses" => self.cache.on |= source::boolean(v).unwrap_or(false),
            "disable_cooldowns" => n.skip(
                path,
                "the circuit breaker is always on; raise resilience.circuit_breaker.failure_threshold to make it rarer",
            ),
            "retry_policy" | "allowed_fails_policy" => n.skip(
                path,
                "the gateway treats every retryable error alike (408, 409, 429, 5xx, timeouts, connection errors; never other 4xx)",
            ),
            "routing_strategy_args" => n.skip(path, "the gateway's strategies take no arguments"),
            "enable_pre_call_checks" => n.skip(path, "the gateway does not check a prompt against a model's context window before the call"),
            _ => return false,
        }
        true
    }

    fn general_key(&mut self, key: &str, v: &Yaml<'_>, path: &str, n: &mut Notes) -> bool {
        match key {
            "master_key" => {
                if source::text(v).is_some() {
                    self.master_key = Some(string(v, path, true, n));
                    n.note(
                        path,
                        "carried over as the client key litellm-master (every model), so LiteLLM's clients keep working; the admin API takes its own key (auth.master_key: ${GATEWAY_MASTER_KEY:-}), since ours must differ from every client key",
                    );
                }
            }
            "database_url" => n.skip(
                path,
                "LiteLLM's database (virtual keys, teams, budgets, spend logs) is out of reach of this import",
            ),
            "store_model_in_db" => n.skip(path, "models kept in LiteLLM's database are not in this file: add them under models:"),
            "max_request_size_mb" => self.max_body_mib = whole(v, path, n),
            "background_health_checks" => {
                self.background_checks = source::boolean(v) == Some(true);
                if self.background_checks {
                    n.note(path, "carried over as resilience.health_check_interval; the gateway probes only the deployments whose circuit is open");
                }
            }
            "health_check_interval" => self.health_check_secs = seconds(v, path, n),
            "alerting" | "alerting_threshold" | "alert_types" | "alert_to_webhook_url" => n.skip(
                path,
                "the gateway has no alerting of its own: alert on its Prometheus metrics (/metrics)",
            ),
            _ => return false,
        }
        true
    }

    fn strategy(&mut self, v: &Yaml<'_>, path: &str, n: &mut Notes) {
        self.strategy = match source::text(v).unwrap_or_default() {
            "simple-shuffle" => Strategy::Shuffle,
            "least-busy" => Strategy::LeastBusy,
            "latency-based-routing" => Strategy::Latency,
            "cost-based-routing" => Strategy::Cost,
            "usage-based-routing" | "usage-based-routing-v2" => {
                n.note(path, "carried over as routing: least-busy, the closest: LiteLLM picks the deployment that used the fewest tokens this minute, the gateway the one with the fewest requests in flight; every strategy skips a deployment at its rpm/tpm");
                Strategy::Usage
            }
            other => {
                n.skip(path, format!("unknown strategy \"{other}\"; models use weighted, LiteLLM's default (simple-shuffle)"));
                Strategy::Shuffle
            }
        };
    }

    fn callbacks(&mut self, v: &Yaml<'_>, path: &str, n: &mut Notes) {
        let names = models::names(v, path, n);
        for (i, name) in names.iter().enumerate() {
            let at = format!("{path}[{i}]");
            match name.as_str() {
                "prometheus" => n.skip(at, "nothing to do: the gateway always serves Prometheus metrics on /metrics"),
                "otel" => {
                    self.otlp = true;
                    n.note(at, "carried over as telemetry.otlp_endpoint: \"${OTEL_ENDPOINT:-}\" (the variable LiteLLM's otel callback reads)");
                }
                other => n.skip(at, format!("the gateway has no {other} integration: it exports OpenTelemetry traces (telemetry.otlp_endpoint) and Prometheus metrics (/metrics)")),
            }
        }
    }

    fn cache_params(&mut self, v: &Yaml<'_>, path: &str, n: &mut Notes) {
        for (key, val) in source::entries(v).unwrap_or_default() {
            let at = format!("{path}.{key}");
            if self.cache.redis.read(key, "", val, &at, n) {
                continue;
            }
            match key {
                "type" => self.cache.kind = source::text(val).map(str::to_owned),
                "ttl" => self.cache.ttl = seconds(val, &at, n),
                "ssl" => self.cache.redis.tls = source::boolean(val).unwrap_or(false),
                "mode" => {
                    self.cache.opt_in = source::text(val) == Some("default_off");
                    if self.cache.opt_in {
                        n.skip(at, "default_off: the gateway has no per-request opt-in, so its cache is off here; turn it on for chosen models with models[].cache: true");
                    }
                }
                "namespace" => n.skip(
                    at,
                    "the gateway's keys in Redis are its own (aigw:cache:v1:…)",
                ),
                "supported_call_types" => n.skip(
                    at,
                    "the gateway caches chat completions, messages and embeddings",
                ),
                _ => n.skip(at, "the gateway's cache has no such setting"),
            }
        }
    }

    /// The Redis of `state.redis_url`: the cache's, else the router's; `None` without either.
    fn redis_url(&self, notes: &mut Notes) -> Option<String> {
        let cache_redis = self.cache.on
            && !self.cache.opt_in
            && matches!(self.cache.kind.as_deref(), None | Some("redis"));
        let router = self.router_redis.to_url();
        if !cache_redis {
            return router;
        }
        if !self.cache.redis.is_empty() {
            let url = self.cache.redis.to_url();
            if router.is_some() && router != url {
                notes.skip(
                    "router_settings.redis_host",
                    "the gateway has one Redis (state.redis_url): the cache's was kept",
                );
            }
            return url;
        }
        if router.is_some() {
            return router;
        }
        notes.note(
            "litellm_settings.cache_params",
            "no Redis host: state.redis_url reads REDIS_HOST and REDIS_PORT as LiteLLM did; a password goes into the URL (redis://:PASSWORD@host:port)",
        );
        Some("redis://${REDIS_HOST}:${REDIS_PORT:-6379}".to_owned())
    }

    /// `server` and `state`, which come first in the file.
    pub(super) fn render_head(&self, root: &mut Map, notes: &mut Notes) {
        if let Some(mib) = self.max_body_mib {
            let mut server = Map::default();
            server.put("max_body_size", format!("{mib}MiB"));
            root.put("server", server);
        }
        if let Some(url) = self.redis_url(notes) {
            let mut state = Map::default();
            state.put_commented(
                "redis_url",
                url,
                "shared by replicas: cache, rate limits, spend and admin-made keys",
            );
            root.put("state", state);
        }
    }

    /// `resilience`, `cache`, `auth` and `telemetry`, after the models.
    pub(super) fn render_tail(&self, root: &mut Map, notes: &mut Notes) {
        let mut resilience = Map::default();
        if let Some(r) = self.retries() {
            resilience.put("retries", Value::Int(clamp_i64(r)));
        }
        let mut breaker = Map::default();
        if let Some(t) = self.failure_threshold {
            breaker.put_commented(
                "failure_threshold",
                Value::Int(clamp_i64(t.max(1))),
                "allowed_fails + 1: LiteLLM cooled a deployment down after more than allowed_fails failures in a minute; this opens its circuit after this many in a row",
            );
        }
        if let Some(s) = self.open_for {
            breaker.put("open_for", duration(s));
        }
        if !breaker.is_empty() {
            resilience.put("circuit_breaker", breaker);
        }
        if self.background_checks {
            // LiteLLM's default interval is 300 s.
            let s = self.health_check_secs.unwrap_or(300.0);
            resilience.put("health_check_interval", duration(s));
        }
        if !resilience.is_empty() {
            root.put("resilience", resilience);
        }
        root.put("cache", self.cache_section(notes));
        if let Some(key) = &self.master_key {
            root.put("auth", auth(key.as_deref()));
        }
        let mut telemetry = Map::default();
        if self.log_json {
            telemetry.put("log_format", "json");
        }
        if self.otlp {
            telemetry.put("otlp_endpoint", "${OTEL_ENDPOINT:-}");
        }
        if !telemetry.is_empty() {
            root.put("telemetry", telemetry);
        }
    }

    fn cache_section(&self, notes: &mut Notes) -> Map {
        let mut cache = Map::default();
        if !self.cache.on || self.cache.opt_in {
            cache.put_commented(
                "enabled",
                false,
                "LiteLLM cached only with litellm_settings.cache: true",
            );
            return cache;
        }
        cache.put("enabled", true);
        if let Some(t) = self.cache.ttl {
            cache.put("ttl", duration(t));
        }
        match self.cache.kind.as_deref() {
            None | Some("redis") => {}
            Some("local") => {
                cache.put_commented("l2", false, "LiteLLM's local cache: in process only");
            }
            Some(other) => notes.skip(
                "litellm_settings.cache_params.type",
                format!("{other}: the gateway caches exact matches in memory (and in Redis with state.redis_url), which is on here"),
            ),
        }
        cache.put_commented(
            "scope",
            "key",
            "LiteLLM's cache is shared by every key; scope: global does the same",
        );
        cache
    }
}

/// `auth`: the LiteLLM master key as a static client key; the admin key apart. A master key
/// that could not be carried over leaves no client key (every call is refused until one is
/// added) rather than a gateway open to all.
fn auth(key: Option<&str>) -> Map {
    let mut auth = Map::default();
    auth.put_commented(
        "master_key",
        "${GATEWAY_MASTER_KEY:-}",
        "the admin API's key; it must differ from every client key",
    );
    let keys = match key {
        Some(k) => {
            let mut entry = Map::default();
            entry
                .put("name", "litellm-master")
                .put("key", k)
                .put("models", vec!["*".to_owned()]);
            vec![Value::Map(entry)]
        }
        None => Vec::new(),
    };
    auth.put_commented(
        "keys",
        Value::List(keys),
        "LiteLLM's general_settings.master_key as a client key: its clients keep working",
    );
    auth
}

/// A null, or an empty list or mapping.
fn is_empty(v: &Yaml<'_>) -> bool {
    source::text(v).is_none()
        && source::items(v).is_none_or(<[_]>::is_empty)
        && source::entries(v).is_none_or(|e| e.is_empty())
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
