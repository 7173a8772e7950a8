//! Loader tests: the example of `shared/spec/config.md`, every error kind with its path and line,
//! interpolation, and round-tripping of environment values.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// The example file of `shared/spec/config.md`, verbatim.
const EXAMPLE: &str = r##"server:
  listen: "127.0.0.1:8080"        # default
  max_body_size: 10MiB            # default
  request_timeout: 600s           # whole-request deadline, default
  shutdown_grace: 30s             # drain in-flight requests and streams on SIGTERM
  header_read_timeout: 10s        # a client must send its whole request head within this
  idle_timeout: 60s               # close keep-alive connections idle this long
  max_connections: 10000          # beyond this, new connections wait (never an fd exhaustion stall)

state:                            # all optional; none of them = one process, embedded, no services
  redis_url: "redis://127.0.0.1:6379"   # L2 cache, shared rate limits and spend, admin-made keys
  nats_url: "nats://127.0.0.1:4222"     # jobs: queue on a JetStream stream, records in a JetStream KV bucket, batch files in its object store
  data_dir: "./data"              # embedded store for whatever the two above do not hold (keys, spend, jobs, files)

providers:
  - name: openai                  # referenced by models[].deployments[].provider
    type: openai                  # openai | azure | anthropic | mock
    base_url: "https://api.openai.com/v1"   # openai also serves any OpenAI-compatible server (vLLM, Ollama, Groq, Together…)
    api_key: "${OPENAI_API_KEY}"
    timeout: 60s                  # per attempt, to the last byte of a non-streamed answer
    connect_timeout: 5s
    headers: {}                   # extra headers to send upstream
  - name: azure-east
    type: azure
    base_url: "https://myres.openai.azure.com"
    api_key: "${AZURE_OPENAI_API_KEY}"
    api_version: "2024-10-21"     # deployment name = the deployment's `model`
  - name: anthropic
    type: anthropic
    base_url: "https://api.anthropic.com"
    api_key: "${ANTHROPIC_API_KEY}"
  - name: local
    type: mock                    # built in, offline: echoes the last user message, streams word by word,
    latency: 0ms                  # deterministic embeddings; for demos, tests and benchmarks

models:
  - name: gpt-4o-mini             # what clients put in "model"
    routing: cost                 # priority (default) | weighted | latency | cost | least-busy
    deployments:
      - provider: openai
        model: gpt-4o-mini        # the upstream's model (Azure: deployment name)
        input_cost_per_mtok: 0.15 # USD per million tokens; used by `cost` routing and spend
        output_cost_per_mtok: 0.60
        weight: 1                 # for weighted
        priority: 0               # for priority: lower first
        rpm: 5000                 # optional upstream capacity; the router avoids a deployment at its limit
        tpm: 2000000
      - provider: azure-east
        model: gpt4o-mini-prod
    fallbacks: [claude-haiku]     # other model names, tried in order when every deployment failed
    retries: 2                    # overrides resilience.retries
    timeout: 30s                  # overrides the provider's
    cache: true                   # overrides cache.enabled for this model
  - name: claude-haiku
    deployments:
      - provider: anthropic
        model: claude-3-5-haiku-latest
  - name: text-embedding-3-small
    deployments:
      - provider: openai
        model: text-embedding-3-small

resilience:                       # defaults for every model
  retries: 2                      # extra attempts after the first, on 429, 5xx, connect errors, timeouts
  backoff_initial: 100ms          # exponential with full jitter, honouring upstream retry-after
  backoff_max: 5s
  circuit_breaker:
    failure_threshold: 5          # consecutive failures that open a deployment's circuit
    open_for: 30s                 # then half-open: one probe request decides
  health_check_interval: 0s       # >0: probe open deployments actively

cache:
  enabled: true
  ttl: 1h
  scope: key                      # key (each gateway key sees its own entries) | global
  l1_max_entries: 10000
  l1_max_bytes: 256MiB
  l2: true                        # use state.redis_url when it is set
  only_deterministic: false       # true: cache only requests with temperature 0 or a seed

auth:
  master_key: "${GATEWAY_MASTER_KEY}"   # admin API; optional
  keys:                           # static keys; more via the admin API
    - name: demo
      key: "${DEMO_KEY}"          # or key_sha256: "hex…" so the file holds no secret
      models: ["*"]               # globs over model names
      rpm: 600
      tpm: 1000000
      budget_usd: 50
      budget_period: 30d
      expires_at: "2027-01-01T00:00:00Z"
# With no auth section at all the gateway serves without keys and logs a warning at start.

rate_limits:
  shared: true                    # count in Redis (all replicas together) when state.redis_url is set
  on_redis_error: local           # local (fall back to per-process counting) | deny | allow
  models:                         # optional per-model ceilings over all keys
    gpt-4o-mini: {rpm: 10000, tpm: 5000000}

jobs:
  workers: 32                     # concurrent jobs per gateway process
  max_attempts: 3
  result_ttl: 7d
  webhook:
    secret: "${WEBHOOK_SECRET}"   # whsec_…; generated and logged once at start when unset
    timeout: 10s
    max_attempts: 10
    backoff_initial: 1s
    backoff_max: 1h
    allow_private_networks: false

telemetry:
  log_format: json                # json | pretty (default pretty on a terminal)
  log_level: info                 # or RUST_LOG
  otlp_endpoint: "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"   # empty = no trace export
  service_name: ai-gateway
  log_bodies: false               # never logs keys or Authorization, whatever this says
"##;

const WEBHOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn example_env() -> impl Fn(&str) -> Option<String> {
    env_of(&[
        ("OPENAI_API_KEY", "sk-openai-SECRET"),
        ("AZURE_OPENAI_API_KEY", "azure-SECRET"),
        ("ANTHROPIC_API_KEY", "sk-ant-SECRET"),
        ("GATEWAY_MASTER_KEY", "master-SECRET"),
        ("DEMO_KEY", "demo-SECRET"),
        ("WEBHOOK_SECRET", WEBHOOK),
    ])
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

fn load(text: &str) -> Result<Config, LoadErrors> {
    load_str(text, &no_env)
}

/// Loads `text`, expecting exactly one error.
fn one_err(text: &str) -> ConfigError {
    match load(text) {
        Ok(_) => panic!("loaded without error:\n{text}"),
        Err(LoadErrors(mut v)) => {
            assert_eq!(v.len(), 1, "expected one error, got {v:#?}");
            v.remove(0)
        }
    }
}

/// Loads `text`, expecting errors; returns their Display lines.
fn errs(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("loaded without error:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const PROVIDERS: &str = "providers:
  - name: openai
    type: openai
  - name: local
    type: mock
";

// ---------------------------------------------------------------------------------------------
// The example

#[test]
fn example_loads_with_expected_values() {
    let cfg = load_str(EXAMPLE, &example_env()).unwrap_or_else(|e| panic!("{e}"));

    let s = &cfg.server;
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.max_body_size, ByteSize(10 * 1024 * 1024));
    assert_eq!(s.request_timeout, Dur::secs(600));
    assert_eq!(s.shutdown_grace, Dur::secs(30));
    assert_eq!(s.header_read_timeout, Dur::secs(10));
    assert_eq!(s.idle_timeout, Dur::secs(60));
    assert_eq!(s.max_connections, 10_000);

    assert_eq!(
        cfg.state.redis_url.as_deref(),
        Some("redis://127.0.0.1:6379")
    );
    assert_eq!(cfg.state.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!(cfg.state.data_dir, "./data");

    let p = &cfg.providers;
    assert_eq!(p.len(), 4);
    assert_eq!(p[0].name, "openai");
    assert_eq!(p[0].kind, ProviderType::Openai);
    assert_eq!(p[0].base_url.as_deref(), Some("https://api.openai.com/v1"));
    assert_eq!(p[0].api_key.as_deref(), Some("sk-openai-SECRET"));
    assert_eq!(p[0].timeout, Dur::secs(60));
    assert_eq!(p[0].connect_timeout, Dur::secs(5));
    assert!(p[0].headers.is_empty());
    assert_eq!(p[0].api_version, None);
    assert_eq!(p[0].latency, None);
    assert_eq!(p[1].name, "azure-east");
    assert_eq!(p[1].kind, ProviderType::Azure);
    assert_eq!(
        p[1].base_url.as_deref(),
        Some("https://myres.openai.azure.com")
    );
    assert_eq!(p[1].api_key.as_deref(), Some("azure-SECRET"));
    assert_eq!(p[1].api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(p[2].kind, ProviderType::Anthropic);
    assert_eq!(p[2].api_key.as_deref(), Some("sk-ant-SECRET"));
    assert_eq!(p[3].name, "local");
    assert_eq!(p[3].kind, ProviderType::Mock);
    assert_eq!(p[3].latency, Some(Dur::millis(0)));
    assert_eq!(p[3].base_url, None);

    let m = &cfg.models;
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].name, "gpt-4o-mini");
    assert_eq!(m[0].routing, RoutingStrategy::Cost);
    assert_eq!(m[0].deployments.len(), 2);
    let d = &m[0].deployments[0];
    assert_eq!(
        (d.provider.as_str(), d.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(d.input_cost_per_mtok, Some(0.15));
    assert_eq!(d.output_cost_per_mtok, Some(0.60));
    assert_eq!((d.weight, d.priority), (1, 0));
    assert_eq!((d.rpm, d.tpm), (Some(5000), Some(2_000_000)));
    let d = &m[0].deployments[1];
    assert_eq!(
        (d.provider.as_str(), d.model.as_str()),
        ("azure-east", "gpt4o-mini-prod")
    );
    assert_eq!((d.input_cost_per_mtok, d.weight, d.rpm), (None, 1, None));
    assert_eq!(m[0].fallbacks, vec!["claude-haiku"]);
    assert_eq!(m[0].retries, Some(2));
    assert_eq!(m[0].timeout, Some(Dur::secs(30)));
    assert_eq!(m[0].cache, Some(true));
    assert_eq!(m[1].name, "claude-haiku");
    assert_eq!(m[1].routing, RoutingStrategy::Priority);
    assert_eq!(m[1].deployments[0].model, "claude-3-5-haiku-latest");
    assert!(m[1].fallbacks.is_empty());
    assert_eq!((m[1].retries, m[1].timeout, m[1].cache), (None, None, None));
    assert_eq!(m[2].name, "text-embedding-3-small");

    let r = &cfg.resilience;
    assert_eq!(r.retries, 2);
    assert_eq!(r.backoff_initial, Dur::millis(100));
    assert_eq!(r.backoff_max, Dur::secs(5));
    assert_eq!(r.circuit_breaker.failure_threshold, 5);
    assert_eq!(r.circuit_breaker.open_for, Dur::secs(30));
    assert!(r.health_check_interval.is_zero());

    let c = &cfg.cache;
    assert!(c.enabled && c.l2 && !c.only_deterministic);
    assert_eq!(c.ttl, Dur::secs(3600));
    assert_eq!(c.scope, CacheScope::Key);
    assert_eq!(c.l1_max_entries, 10_000);
    assert_eq!(c.l1_max_bytes, ByteSize(256 << 20));

    let a = cfg.auth.as_ref().expect("auth");
    assert_eq!(a.master_key.as_deref(), Some("master-SECRET"));
    assert_eq!(a.keys.len(), 1);
    let k = &a.keys[0];
    assert_eq!(k.name, "demo");
    assert_eq!(k.key.as_deref(), Some("demo-SECRET"));
    assert_eq!(k.key_sha256, None);
    assert_eq!(k.models, vec!["*"]);
    assert_eq!((k.rpm, k.tpm), (Some(600), Some(1_000_000)));
    assert_eq!(k.budget_usd, Some(50.0));
    assert_eq!(k.budget_period, Some(Dur::secs(30 * 86_400)));
    assert_eq!(k.expires_at.as_deref(), Some("2027-01-01T00:00:00Z"));

    let rl = &cfg.rate_limits;
    assert!(rl.shared);
    assert_eq!(rl.on_redis_error, OnRedisError::Local);
    let lim = &rl.models["gpt-4o-mini"];
    assert_eq!((lim.rpm, lim.tpm), (Some(10_000), Some(5_000_000)));

    let j = &cfg.jobs;
    assert_eq!((j.workers, j.max_attempts), (32, 3));
    assert_eq!(j.result_ttl, Dur::secs(7 * 86_400));
    let w = &j.webhook;
    assert_eq!(w.secret.as_deref(), Some(WEBHOOK));
    assert_eq!(w.timeout, Dur::secs(10));
    assert_eq!(w.max_attempts, 10);
    assert_eq!(w.backoff_initial, Dur::secs(1));
    assert_eq!(w.backoff_max, Dur::secs(3600));
    assert!(!w.allow_private_networks);

    let t = &cfg.telemetry;
    assert_eq!(t.log_format, Some(LogFormat::Json));
    assert_eq!(t.log_level, "info");
    assert_eq!(t.otlp_endpoint, None, "empty default = no export");
    assert_eq!(t.service_name, "ai-gateway");
    assert!(!t.log_bodies);
}

#[test]
fn example_with_otlp_endpoint() {
    let base = example_env();
    let env = |k: &str| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://otel:4318".to_owned()),
        _ => base(k),
    };
    let cfg = load_str(EXAMPLE, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.telemetry.otlp_endpoint.as_deref(),
        Some("http://otel:4318")
    );
}

#[test]
fn example_without_env_names_every_unset_var() {
    let e = load_str(EXAMPLE, &no_env).unwrap_err();
    let vars: Vec<&str> =
        e.0.iter()
            .map(|e| e.message.split('"').nth(1).unwrap_or_default())
            .collect();
    assert_eq!(
        vars,
        vec![
            "OPENAI_API_KEY",
            "AZURE_OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GATEWAY_MASTER_KEY",
            "DEMO_KEY",
            "WEBHOOK_SECRET"
        ]
    );
    let demo = &e.0[4];
    assert_eq!(demo.path, "auth.keys[0].key");
    assert_eq!(demo.line, Some(line_of(EXAMPLE, "${DEMO_KEY}")));
    assert_eq!(
        demo.to_string(),
        format!(
            "auth.keys[0].key: environment variable \"DEMO_KEY\" is not set (line {}); set DEMO_KEY, or give a default: ${{DEMO_KEY:-default}}",
            line_of(EXAMPLE, "${DEMO_KEY}")
        )
    );
}

#[test]
fn describe_example_without_secrets() {
    let mut cfg = load_str(EXAMPLE, &example_env()).unwrap_or_else(|e| panic!("{e}"));
    cfg.providers[0]
        .headers
        .insert("X-Org".into(), "org-SECRET".into());
    cfg.state.redis_url = Some("redis://:pw-SECRET@cache:6379/0".into());
    let lines = describe(&cfg);
    let text = lines.join("\n");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(!text.contains(WEBHOOK), "{text}");
    assert!(
        lines.contains(
            &"provider openai (openai) https://api.openai.com/v1, api key set, 1 extra header(s)"
                .to_owned()
        ),
        "{text}"
    );
    assert!(
        lines.contains(&"provider local (mock), latency 0s".to_owned()),
        "{text}"
    );
    assert!(lines.contains(&"model gpt-4o-mini -> openai/gpt-4o-mini, azure-east/gpt4o-mini-prod (routing cost; fallbacks claude-haiku)".to_owned()), "{text}");
    assert!(
        lines.contains(&"model claude-haiku -> anthropic/claude-3-5-haiku-latest".to_owned()),
        "{text}"
    );
    assert!(text.contains("redis redis://cache:6379/0"), "{text}");
    assert!(
        text.contains("auth: 1 static key(s) (demo), admin API enabled"),
        "{text}"
    );
    assert_eq!(
        lines[0],
        "listen 127.0.0.1:8080 (max body 10MiB, request timeout 10m, shutdown grace 30s, header read timeout 10s, idle timeout 1m, at most 10000 connections)"
    );
}

#[test]
fn describe_default() {
    let lines = describe(&builtin_default(&no_env, false).expect("default"));
    assert!(
        lines.contains(&"provider mock (mock), latency 0s".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"model mock -> mock/mock".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"auth: none, serving without keys".to_owned()),
        "{lines:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Did-you-mean and error format

#[test]
fn unknown_provider_did_you_mean() {
    let text = format!(
        "{PROVIDERS}models:
  - name: a
    deployments:
      - provider: opnai
        model: gpt-4o-mini
"
    );
    let e = one_err(&text);
    assert_eq!(
        e.to_string(),
        "models[0].deployments[0].provider: no provider named \"opnai\" (line 9); did you mean \"openai\"?"
    );
    assert_eq!(e.path, "models[0].deployments[0].provider");
    assert_eq!(e.line, Some(9));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"openai\"?"));
}

#[test]
fn unknown_provider_far_from_any_lists_them() {
    let text = format!(
        "{PROVIDERS}models:
  - name: a
    deployments: [{{provider: zzzzzz, model: x}}]
"
    );
    let e = one_err(&text);
    assert_eq!(e.message, "no provider named \"zzzzzz\"");
    assert_eq!(e.line, Some(8));
    assert_eq!(e.hint.as_deref(), Some("known providers: openai, local"));
}

#[test]
fn unknown_key_did_you_mean() {
    let e = one_err("server:\n  listn: \"0.0.0.0:80\"\n");
    assert_eq!(
        e.to_string(),
        "server.listn: unknown key \"listn\" (line 2); did you mean \"listen\"?"
    );
}

#[test]
fn unknown_key_far_from_any_lists_allowed() {
    let e = one_err("server:\n  zzz: 1\n");
    assert_eq!(e.path, "server.zzz");
    assert_eq!(e.message, "unknown key \"zzz\"");
    assert_eq!(
        e.hint.as_deref(),
        Some(
            "expected one of: listen, max_body_size, request_timeout, shutdown_grace, header_read_timeout, idle_timeout, max_connections, cors_allowed_origins"
        )
    );
}

#[test]
fn unknown_top_level_and_nested_keys() {
    let e = one_err("servr: {}\n");
    assert_eq!(e.path, "servr");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"server\"?"));
    let e = one_err(&format!("{PROVIDERS}    api_kye: x\n"));
    assert_eq!(e.path, "providers[1].api_kye");
    assert_eq!(e.line, Some(6));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"api_key\"?"));
    let e = one_err("resilience:\n  circuit_breaker:\n    open: 3s\n");
    assert_eq!(e.path, "resilience.circuit_breaker.open");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"open_for\"?"));
}

#[test]
fn unknown_enum_value() {
    let e = one_err("providers:\n  - name: x\n    type: opneai\n");
    assert_eq!(e.path, "providers[0].type");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.message, "unknown value \"opneai\"");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"openai\"?"));
    let e = one_err("models:\n  - name: m\n    routing: least_busy\n    deployments: []\n");
    assert_eq!(e.path, "models[0].routing");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"least-busy\"?"));
    let e = one_err("cache:\n  scope: everyone\n");
    assert_eq!(e.hint.as_deref(), Some("expected one of: key, global"));
}

#[test]
fn missing_required_key() {
    let e = one_err("models:\n  - name: m\n    routing: cost\n");
    assert_eq!(e.path, "models[0]");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.message, "missing key \"deployments\"");
    let e = one_err("providers:\n  - type: mock\n");
    assert_eq!(e.to_string(), "providers[0]: missing key \"name\" (line 2)");
}

#[test]
fn type_errors_have_path_and_line() {
    let e = one_err("resilience:\n  retries: lots\n");
    assert_eq!(e.path, "resilience.retries");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.message, "invalid type: string \"lots\", expected u32");
    let e = one_err("jobs:\n  workers: -1\n");
    assert_eq!(e.path, "jobs.workers");
    assert!(e.message.contains("invalid value: integer `-1`"), "{e}");
    let e = one_err("cache:\n  enabled: yes\n");
    assert_eq!(e.path, "cache.enabled");
    assert!(e.message.contains("expected a boolean"), "{e}");
    let e = one_err("providers: {}\n");
    assert_eq!(e.path, "providers");
    assert!(
        e.message.contains("invalid type: map, expected a sequence"),
        "{e}"
    );
    let e = one_err("server:\n  listen: localhost\n");
    assert_eq!(e.path, "server.listen");
    assert_eq!(e.message, "invalid socket address syntax");
    assert!(e.hint.unwrap().contains("127.0.0.1:8080"));
    let e = one_err("- a\n- b\n");
    assert_eq!(e.path, "");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("invalid type: sequence"), "{e}");
    let e = one_err("models:\n  - name: ~\n    deployments: []\n");
    assert_eq!(e.path, "models[0].name");
    assert_eq!(e.message, "invalid type: null, expected a string");
    let e = one_err("resilience:\n  retries: ~\n");
    assert_eq!(e.message, "invalid type: null, expected u32");
}

#[test]
fn durations_and_sizes() {
    let cfg = load("server:\n  request_timeout: 250ms\n  max_body_size: 512KiB\njobs:\n  result_ttl: 30d\nresilience:\n  backoff_max: 5m\ncache:\n  ttl: 24h\n  l1_max_bytes: 1048576\n").unwrap();
    assert_eq!(cfg.server.request_timeout.get(), Duration::from_millis(250));
    assert_eq!(cfg.server.max_body_size, ByteSize(512 * 1024));
    assert_eq!(cfg.jobs.result_ttl, Dur::secs(30 * 86_400));
    assert_eq!(cfg.resilience.backoff_max, Dur::secs(300));
    assert_eq!(cfg.cache.ttl, Dur::secs(86_400));
    assert_eq!(cfg.cache.l1_max_bytes, ByteSize(1 << 20));

    let e = one_err("server:\n  request_timeout: 30\n");
    assert_eq!(e.path, "server.request_timeout");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("\"30\" has no unit"), "{e}");
    let e = one_err("server:\n\n  shutdown_grace: 3 weeks\n");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("unknown unit"), "{e}");
    let e = one_err("server:\n  max_body_size: 10XB\n");
    assert_eq!(e.path, "server.max_body_size");
    assert!(e.message.contains("unknown unit \"XB\""), "{e}");
}

#[test]
fn connection_limits_must_be_positive() {
    let e = one_err("server:\n  header_read_timeout: 0s\n");
    assert_eq!(e.path, "server.header_read_timeout");
    assert_eq!(e.line, Some(2));
    let e = one_err("server:\n  idle_timeout: 0ms\n");
    assert_eq!(e.path, "server.idle_timeout");
    let e = one_err("server:\n  max_connections: 0\n");
    assert_eq!(e.path, "server.max_connections");
    assert!(e.message.contains("at least 1"), "{e}");
    let cfg =
        load("server:\n  header_read_timeout: 2s\n  idle_timeout: 5m\n  max_connections: 64\n")
            .unwrap();
    assert_eq!(cfg.server.header_read_timeout, Dur::secs(2));
    assert_eq!(cfg.server.idle_timeout, Dur::secs(300));
    assert_eq!(cfg.server.max_connections, 64);
}

#[test]
fn plain_scalars_are_accepted_as_strings() {
    let text = "providers:
  - name: 42
    type: azure
    base_url: https://x.openai.azure.com
    api_version: 2024-10-21
    headers: {X-Num: 1.10, X-Bool: true, X-Hex: 0x1F}
models:
  - name: 1.10
    deployments:
      - provider: 42
        model: 4
telemetry:
  service_name: 007
";
    let cfg = load(text).unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg.providers[0];
    assert_eq!(p.name, "42");
    assert_eq!(p.api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(p.headers["X-Num"], "1.10");
    assert_eq!(p.headers["X-Bool"], "true");
    assert_eq!(p.headers["X-Hex"], "0x1F");
    assert_eq!(cfg.models[0].name, "1.10");
    assert_eq!(cfg.models[0].deployments[0].model, "4");
    assert_eq!(cfg.telemetry.service_name, "007");
}

#[test]
fn quoted_numbers_are_strings() {
    let e = one_err("jobs:\n  workers: \"16\"\n");
    assert_eq!(e.path, "jobs.workers");
    assert!(e.message.contains("invalid type: string \"16\""), "{e}");
}

#[test]
fn empty_sections_take_defaults() {
    let cfg = load("server:\nproviders:\nauth:\n").unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert!(cfg.providers.is_empty());
    assert!(cfg.auth.is_none());
    let cfg = load("").unwrap();
    assert!(cfg.models.is_empty() && cfg.auth.is_none());
    let cfg = load("auth: {}\n").unwrap();
    assert!(
        cfg.auth
            .is_some_and(|a| a.keys.is_empty() && a.master_key.is_none())
    );
}

#[test]
fn flow_style_and_anchors() {
    let text = "providers: [{name: p, type: mock, latency: 5ms}]
x_unused: &d {provider: p, model: echo}
models:
  - {name: a, deployments: [*d]}
  - name: b
    deployments:
      - &e {provider: p, model: other, weight: 3}
      - *e
";
    // `x_unused` is not a config key, so the same anchors without it:
    let e = one_err(text);
    assert_eq!(e.path, "x_unused");
    assert_eq!(e.line, Some(2));
    let text = "providers: [{name: p, type: mock, latency: 5ms}]
models:
  - name: a
    deployments: [&d {provider: p, model: echo}]
  - name: b
    deployments:
      - *d
      - &e {provider: p, model: other, weight: 3}
      - *e
";
    let cfg = load(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.providers[0].latency, Some(Dur::millis(5)));
    assert_eq!(cfg.models[1].deployments.len(), 3);
    assert_eq!(cfg.models[1].deployments[0].model, "echo");
    assert_eq!(cfg.models[1].deployments[2].weight, 3);
}

#[test]
fn yaml_level_errors() {
    let e = one_err("server:\n  listen: \"127.0.0.1:1\"\n  listen: \"127.0.0.1:2\"\n");
    assert_eq!(
        e.to_string(),
        "server.listen: duplicate key \"listen\" (line 3); first defined at line 2"
    );
    let e = one_err("server: {}\n---\nserver: {}\n");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("more than one YAML document"));
    let e = one_err("server:\n  listen: [\n");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn load_errors_display_one_per_line() {
    let text = format!(
        "{PROVIDERS}models:
  - name: a
    deployments: []
  - name: a
    deployments: [{{provider: opnai, model: x}}]
"
    );
    let lines = errs(&text);
    assert_eq!(
        lines,
        vec![
            "models[0].deployments: model \"a\" has no deployments (line 8); add at least one {provider: NAME, model: UPSTREAM_MODEL}",
            "models[1].name: duplicate model name \"a\" (line 9); first defined at models[0].name (line 7)",
            "models[1].deployments[0].provider: no provider named \"opnai\" (line 10); did you mean \"openai\"?",
        ]
    );
    let e = load(&text).unwrap_err();
    assert_eq!(e.to_string(), lines.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Semantic checks

fn single(text: &str) -> (String, Option<usize>, String, Option<String>) {
    let e = one_err(text);
    (e.path, e.line, e.message, e.hint)
}

#[test]
fn duplicate_and_empty_provider_names() {
    let (path, line, msg, hint) =
        single("providers:\n  - name: p\n    type: mock\n  - name: p\n    type: mock\n");
    assert_eq!((path.as_str(), line), ("providers[1].name", Some(4)));
    assert_eq!(msg, "duplicate provider name \"p\"");
    assert_eq!(
        hint.as_deref(),
        Some("first defined at providers[0].name (line 2)")
    );
    let (path, line, msg, _) = single("providers:\n  - name: \"\"\n    type: mock\n");
    assert_eq!(
        (path.as_str(), line, msg.as_str()),
        ("providers[0].name", Some(2), "provider name is empty")
    );
}

#[test]
fn fallbacks() {
    let base = format!(
        "{PROVIDERS}models:
  - name: alpha
    deployments: [{{provider: local, model: x}}]
"
    );
    let e = one_err(&format!("{base}    fallbacks: [alpha]\n"));
    assert_eq!(
        e.to_string(),
        "models[0].fallbacks[0]: model \"alpha\" lists itself as a fallback (line 9)"
    );
    let e = one_err(&format!(
        "{base}    fallbacks:\n      - beta\n      - alpah\n  - name: beta\n    deployments: [{{provider: local, model: y}}]\n"
    ));
    assert_eq!(
        e.to_string(),
        "models[0].fallbacks[1]: no model named \"alpah\" (line 11); known models: beta"
    );
}

#[test]
fn azure_requirements() {
    let errors = errs("providers:\n  - name: az\n    type: azure\n");
    assert_eq!(
        errors,
        vec![
            "providers[0]: missing key \"base_url\" (required for type azure) (line 2); e.g. base_url: \"https://myres.openai.azure.com\"",
            "providers[0]: missing key \"api_version\" (required for type azure) (line 2); e.g. api_version: \"2024-10-21\"",
        ]
    );
    // An empty value (unset variable with empty default) counts as missing.
    let errors = errs(
        "providers:\n  - name: az\n    type: azure\n    base_url: \"${AZ_URL:-}\"\n    api_version: \"2024-10-21\"\n",
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("missing key \"base_url\""));
}

#[test]
fn base_urls() {
    let (path, line, msg, _) =
        single("providers:\n  - name: o\n    type: openai\n    base_url: api.openai.com/v1\n");
    assert_eq!((path.as_str(), line), ("providers[0].base_url", Some(4)));
    assert_eq!(
        msg,
        "not an http(s) URL: it must start with http:// or https://"
    );
    let (_, _, msg, _) =
        single("providers:\n  - name: o\n    type: openai\n    base_url: \"https://\"\n");
    assert_eq!(msg, "not an http(s) URL: it has no host");
    // Defaults filled in for openai and anthropic; a compatible server on http is fine.
    let cfg = load("providers:\n  - {name: o, type: openai}\n  - {name: a, type: anthropic}\n  - {name: v, type: openai, base_url: \"http://localhost:8000/v1\"}\n").unwrap();
    assert_eq!(
        cfg.providers[0].base_url.as_deref(),
        Some("https://api.openai.com/v1")
    );
    assert_eq!(
        cfg.providers[1].base_url.as_deref(),
        Some("https://api.anthropic.com")
    );
    assert_eq!(
        cfg.providers[2].base_url.as_deref(),
        Some("http://localhost:8000/v1")
    );
}

#[test]
fn type_specific_keys() {
    let (path, line, msg, _) =
        single("providers:\n  - name: o\n    type: openai\n    latency: 5ms\n");
    assert_eq!((path.as_str(), line), ("providers[0].latency", Some(4)));
    assert_eq!(msg, "latency is only allowed for type mock");
    let (path, line, msg, _) =
        single("providers:\n  - name: o\n    type: anthropic\n    api_version: \"1\"\n");
    assert_eq!((path.as_str(), line), ("providers[0].api_version", Some(4)));
    assert_eq!(msg, "api_version is only allowed for type azure");
}

#[test]
fn headers_checked() {
    let (path, line, msg, _) = single(
        "providers:\n  - name: o\n    type: openai\n    headers:\n      \"Bad Header\": x\n",
    );
    assert_eq!(
        (path.as_str(), line),
        ("providers[0].headers.Bad Header", Some(5))
    );
    assert_eq!(msg, "invalid header name \"Bad Header\"");
    let (path, _, msg, _) = single(
        "providers:\n  - name: o\n    type: openai\n    headers: {X-A: \"a\\r\\nX-Injected: 1\"}\n",
    );
    assert_eq!(path, "providers[0].headers.X-A");
    assert_eq!(msg, "header value contains a control character");
}

#[test]
fn weighted_needs_positive_weights() {
    let text = format!(
        "{PROVIDERS}models:
  - name: w
    routing: weighted
    deployments:
      - {{provider: local, model: a, weight: 2}}
      - {{provider: local, model: b, weight: 0}}
"
    );
    let (path, line, msg, _) = single(&text);
    assert_eq!(
        (path.as_str(), line),
        ("models[0].deployments[1].weight", Some(11))
    );
    assert_eq!(msg, "weight must be greater than 0 with routing: weighted");
    // weight 0 is fine with other strategies
    load(&text.replace("weighted", "priority")).unwrap();
}

const KEYS_HEAD: &str = "auth:\n  keys:\n";

#[test]
fn key_needs_exactly_one_of_key_and_hash() {
    let (path, line, msg, _) = single(&format!("{KEYS_HEAD}    - name: a\n"));
    assert_eq!((path.as_str(), line), ("auth.keys[0]", Some(3)));
    assert_eq!(msg, "needs one of \"key\" or \"key_sha256\"");
    let hash = "a".repeat(64);
    let (path, _, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k1\n      key_sha256: \"{hash}\"\n"
    ));
    assert_eq!(path, "auth.keys[0]");
    assert_eq!(msg, "set only one of \"key\" and \"key_sha256\"");
    // an empty key from an unset variable counts as absent
    let (_, _, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: \"${{NOPE:-}}\"\n"
    ));
    assert_eq!(msg, "needs one of \"key\" or \"key_sha256\"");
}

#[test]
fn key_sha256_format() {
    for bad in ["abc", &"g".repeat(64), &"a".repeat(63)] {
        let (path, line, msg, _) = single(&format!(
            "{KEYS_HEAD}    - name: a\n      key_sha256: \"{bad}\"\n"
        ));
        assert_eq!((path.as_str(), line), ("auth.keys[0].key_sha256", Some(4)));
        assert_eq!(msg, "must be 64 hex characters (the SHA-256 of the key)");
    }
    let upper = "AB".repeat(32);
    let cfg = load(&format!(
        "{KEYS_HEAD}    - name: a\n      key_sha256: \"{upper}\"\n"
    ))
    .unwrap();
    assert_eq!(cfg.auth.unwrap().keys[0].key_sha256, Some("ab".repeat(32)));
}

#[test]
fn key_names_and_values_unique() {
    let (path, line, msg, hint) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k1\n    - name: a\n      key: k2\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[1].name", Some(5)));
    assert_eq!(msg, "duplicate key name \"a\"");
    assert_eq!(
        hint.as_deref(),
        Some("first defined at auth.keys[0].name (line 3)")
    );

    let (path, line, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: same-SECRET\n    - name: b\n      key: same-SECRET\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[1].key", Some(6)));
    assert_eq!(msg, "same key as auth.keys[0]");

    // a plain key and the hash of the same key collide too; sha256("hello"):
    let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let (path, _, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: hello\n    - name: b\n      key_sha256: {sha}\n"
    ));
    assert_eq!(path, "auth.keys[1].key_sha256");
    assert_eq!(msg, "same key as auth.keys[0]");

    // the master key must differ from client keys; the error never shows the key
    let e = one_err("auth:\n  master_key: top-SECRET\n  keys:\n    - {name: a, key: top-SECRET}\n");
    assert_eq!(e.path, "auth.master_key");
    assert_eq!(e.line, Some(2));
    assert!(!e.to_string().contains("SECRET"));
}

#[test]
fn key_models_globs_and_expiry() {
    let (path, line, msg, _) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k\n      models: [\"gpt-*\", \"claude-[\"]\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[0].models[1]", Some(5)));
    assert!(msg.starts_with("invalid glob:"), "{msg}");

    let (path, line, msg, hint) = single(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k\n      expires_at: 2027-13-01\n"
    ));
    assert_eq!((path.as_str(), line), ("auth.keys[0].expires_at", Some(5)));
    assert_eq!(msg, "\"2027-13-01\" is not an RFC 3339 UTC timestamp");
    assert_eq!(hint.as_deref(), Some("e.g. \"2027-01-01T00:00:00Z\""));

    let cfg = load(&format!(
        "{KEYS_HEAD}    - name: a\n      key: k\n      expires_at: 2027-01-01T00:00:00.5+00:00\n      budget_period: 1d\n"
    ))
    .unwrap();
    let k = &cfg.auth.unwrap().keys[0];
    assert_eq!(k.budget_usd, None, "budget_period alone is accepted");
    assert_eq!(k.models, vec!["*"]);
}

#[test]
fn rate_limit_models_must_exist() {
    let text = format!(
        "{PROVIDERS}models:
  - name: gpt-4o-mini
    deployments: [{{provider: openai, model: gpt-4o-mini}}]
rate_limits:
  models:
    gpt-4o-mini: {{rpm: 1}}
    gpt-4o-mnii: {{rpm: 2}}
"
    );
    let e = one_err(&text);
    assert_eq!(
        e.to_string(),
        "rate_limits.models.gpt-4o-mnii: no model named \"gpt-4o-mnii\" (line 12); did you mean \"gpt-4o-mini\"?"
    );
}

#[test]
fn webhook_secret() {
    let (path, line, msg, _) = single("jobs:\n  webhook:\n    secret: \"abc\"\n");
    assert_eq!((path.as_str(), line), ("jobs.webhook.secret", Some(3)));
    assert_eq!(msg, "must start with \"whsec_\"");
    let (_, _, msg, _) = single("jobs:\n  webhook:\n    secret: \"whsec_not base64!\"\n");
    assert_eq!(msg, "the part after \"whsec_\" is not valid base64");
    let e = one_err("jobs:\n  webhook:\n    secret: \"whsec_\"\n");
    assert!(e.message.contains("not valid base64"));
    let cfg = load(&format!("jobs:\n  webhook:\n    secret: \"{WEBHOOK}\"\n")).unwrap();
    assert_eq!(cfg.jobs.webhook.secret.as_deref(), Some(WEBHOOK));
    let cfg = load("jobs:\n  webhook:\n    secret: \"${WEBHOOK_SECRET:-}\"\n").unwrap();
    assert_eq!(cfg.jobs.webhook.secret, None, "empty = generated at start");
}

#[test]
fn log_level() {
    let (path, line, msg, hint) = single("telemetry:\n  log_level: inf\n");
    assert_eq!((path.as_str(), line), ("telemetry.log_level", Some(2)));
    assert_eq!(msg, "unknown log level \"inf\"");
    assert_eq!(
        hint.as_deref(),
        Some("did you mean \"info\"? (or a RUST_LOG directive such as \"info,ai_gateway=debug\")")
    );
    let e = one_err("telemetry:\n  log_level: \"\"\n");
    assert_eq!(e.message, "log level is empty");
    for ok in [
        "info",
        "DEBUG",
        "warn,ai_gateway=trace",
        "ai_gateway::router=debug",
        "off",
    ] {
        let cfg = load(&format!("telemetry:\n  log_level: \"{ok}\"\n")).unwrap();
        assert_eq!(cfg.telemetry.log_level, ok);
    }
}

#[test]
fn numeric_limits() {
    let (path, line, msg, _) = single("cache:\n  l1_max_entries: 0\n");
    assert_eq!(
        (path.as_str(), line, msg.as_str()),
        ("cache.l1_max_entries", Some(2), "must be at least 1")
    );
    let lines = errs(
        "jobs:\n  workers: 0\n  max_attempts: 0\n  webhook:\n    max_attempts: 0\n    backoff_initial: 2h\nresilience:\n  backoff_initial: 10s\n  backoff_max: 1s\n  circuit_breaker: {failure_threshold: 0}\n",
    );
    assert_eq!(
        lines,
        vec![
            "jobs.workers: must be at least 1 (line 2)",
            "jobs.max_attempts: must be at least 1 (line 3)",
            "jobs.webhook.max_attempts: must be at least 1 (line 5)",
            "jobs.webhook.backoff_initial: must not exceed jobs.webhook.backoff_max (line 6)",
            "resilience.backoff_initial: must not exceed resilience.backoff_max (line 8)",
            "resilience.circuit_breaker.failure_threshold: must be at least 1 (line 10)",
        ]
    );
}

#[test]
fn empty_optional_strings_become_none() {
    let text = "state:
  redis_url: \"\"
providers:
  - name: o
    type: openai
    api_key: \"${OPENAI_API_KEY:-}\"
auth:
  master_key: \"${GATEWAY_MASTER_KEY:-}\"
telemetry:
  otlp_endpoint: \"${OTEL_EXPORTER_OTLP_ENDPOINT:-}\"
";
    let cfg = load(text).unwrap();
    assert_eq!(cfg.state.redis_url, None);
    assert_eq!(cfg.providers[0].api_key, None);
    assert_eq!(cfg.auth.unwrap().master_key, None);
    assert_eq!(cfg.telemetry.otlp_endpoint, None);
}

#[test]
fn all_errors_collected_in_line_order() {
    let text = "providers:
  - {name: p, type: openai, latency: 1ms}
  - {name: p, type: mock}
models:
  - name: m
    deployments: [{provider: q, model: x}]
    fallbacks: [m]
auth:
  keys: [{name: k}]
cache:
  l1_max_entries: 0
telemetry:
  log_level: loud
";
    let e = load(text).unwrap_err();
    let got: Vec<(&str, Option<usize>)> = e.0.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        got,
        vec![
            ("providers[0].latency", Some(2)),
            ("providers[1].name", Some(3)),
            ("models[0].deployments[0].provider", Some(6)),
            ("models[0].fallbacks[0]", Some(7)),
            ("auth.keys[0]", Some(9)),
            ("cache.l1_max_entries", Some(11)),
            ("telemetry.log_level", Some(13)),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Interpolation through the loader

#[test]
fn interpolation_set_default_empty_escape() {
    let env = env_of(&[("NAME", "svc"), ("EMPTY", "")]);
    let get = |v: &str| {
        load_str(&format!("telemetry:\n  service_name: {v}\n"), &env)
            .map(|c| c.telemetry.service_name)
    };
    assert_eq!(get("\"${NAME}\"").unwrap(), "svc");
    assert_eq!(get("${NAME}").unwrap(), "svc");
    assert_eq!(get("'pre-${NAME}-post'").unwrap(), "pre-svc-post");
    assert_eq!(get("${UNSET:-fallback}").unwrap(), "fallback");
    assert_eq!(get("\"${UNSET:-}\"").unwrap(), "");
    assert_eq!(get("\"${EMPTY}\"").unwrap(), "");
    assert_eq!(get("\"${EMPTY:-d}\"").unwrap(), "d");
    assert_eq!(get("\"$${NAME}\"").unwrap(), "${NAME}");
    assert_eq!(get("\"cost: $5\"").unwrap(), "cost: $5");
    let e = get("\"x${UNSET}\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "telemetry.service_name: environment variable \"UNSET\" is not set (line 2); set UNSET, or give a default: ${UNSET:-default}"
    );
}

#[test]
fn interpolated_values_never_become_structure() {
    let evil = "x\nserver:\n  listen: \"0.0.0.0:1\"\n- [a, {b: c}] # &anchor *alias";
    let env = env_of(&[("EVIL", evil), ("NUL", "null"), ("NUM", "12")]);
    let cfg = load_str(
        "telemetry:\n  service_name: ${EVIL}\nproviders:\n  - name: ${NUM}\n    type: mock\n    api_key: ${NUL}\n",
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.telemetry.service_name, evil);
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.providers[0].name, "12");
    assert_eq!(cfg.providers[0].api_key.as_deref(), Some("null"));
}

#[test]
fn interpolated_numbers_and_bools_parse() {
    let env = env_of(&[("W", "16"), ("B", "false"), ("T", "45s"), ("BAD", "lots")]);
    let cfg = load_str(
        "jobs:\n  workers: ${W}\n  max_attempts: ${MA:-4}\ncache:\n  enabled: ${B}\n  ttl: ${T}\n",
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((cfg.jobs.workers, cfg.jobs.max_attempts), (16, 4));
    assert!(!cfg.cache.enabled);
    assert_eq!(cfg.cache.ttl, Dur::secs(45));
    let cfg = load_str(
        "models:\n  - name: m\n    retries: ${R:-}\n    deployments: []\n",
        &env,
    );
    // an empty value for an optional number is absent (the model then fails validation only
    // for having no deployments)
    assert_eq!(cfg.unwrap_err().0[0].path, "models[0].deployments");
    let e = load_str("jobs:\n  workers: ${BAD}\n", &env).unwrap_err();
    assert_eq!(e.0[0].path, "jobs.workers");
    assert_eq!(e.0[0].line, Some(2));
}

#[test]
fn keys_are_not_interpolated() {
    let e = one_err("server:\n  ${X}: 1\n");
    assert_eq!(e.path, "server.${X}");
    assert_eq!(e.message, "unknown key \"${X}\"");
}

proptest! {
    #[test]
    fn env_strings_round_trip(value in any::<String>()) {
        let env = |k: &str| (k == "V").then(|| value.clone());
        let cfg = load_str("telemetry:\n  service_name: \"${V}\"\n", &env)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&cfg.telemetry.service_name, &value);
        let cfg = load_str("telemetry:\n  service_name: ${V}\n", &env)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&cfg.telemetry.service_name, &value);
        let cfg = load_str("providers:\n  - {name: p, type: openai, api_key: '${V}'}\n", &env)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = (!value.is_empty()).then(|| value.clone());
        prop_assert_eq!(&cfg.providers[0].api_key, &want);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[a-z_:\\-\\[\\]{}&*!|>'\" \n0-9.$]{0,80}") {
        let _ = load(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// Files and paths

#[test]
fn load_file_ok_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, "server:\n  listen: \"0.0.0.0:9000\"\n").unwrap();
    let cfg = load_file(&path, &no_env).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:9000");

    let missing = dir.path().join("nope.yaml");
    let e = load_file(&missing, &no_env).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].path, "");
    assert_eq!(e.0[0].line, None);
    assert!(e.0[0].message.starts_with("cannot read "), "{e}");
}

#[test]
fn resolve_path_order() {
    let env = env_of(&[("AI_GATEWAY_CONFIG", "/etc/gw.yaml")]);
    assert_eq!(
        resolve_path(Some(Path::new("cli.yaml")), &env),
        Some("cli.yaml".into())
    );
    assert_eq!(resolve_path(None, &env), Some("/etc/gw.yaml".into()));
    let local = Path::new("gateway.yaml");
    assert_eq!(
        resolve_path(None, &no_env),
        local.is_file().then(|| local.to_path_buf())
    );
    assert_eq!(
        resolve_path(None, &env_of(&[("AI_GATEWAY_CONFIG", "")])),
        local.is_file().then(|| local.to_path_buf())
    );
}

#[test]
fn did_you_mean_helper() {
    assert_eq!(
        suggest("opnai", ["openai", "anthropic", "local"]),
        Some("openai".into())
    );
    assert_eq!(suggest("OpenAI", ["openai"]), Some("openai".into()));
    assert_eq!(suggest("zzz", ["openai", "anthropic"]), None);
    assert_eq!(suggest("x", std::iter::empty()), None);
}

#[test]
fn cors_origins_and_responses_ttl() {
    let cfg = load(
        "server:\n  cors_allowed_origins: [\"https://app.example.com\", \"http://localhost:5173\"]\nresponses:\n  store_ttl: 1d\n",
    )
    .unwrap();
    assert_eq!(cfg.server.cors_allowed_origins.len(), 2);
    assert_eq!(cfg.responses.store_ttl, Dur::secs(86_400));
    assert_eq!(
        load("{}\n").unwrap().responses.store_ttl,
        Dur::secs(30 * 86_400)
    );
    let e = one_err("server:\n  cors_allowed_origins: [\"app.example.com/x\"]\n");
    assert_eq!(e.path, "server.cors_allowed_origins[0]");
    let e = one_err("responses:\n  store_ttl: 0s\n");
    assert_eq!(e.path, "responses.store_ttl");
}
