//! Loader tests: the example of `shared/spec/config.md`, every error kind with its path and line,
//! interpolation, and round-tripping of environment values. This file: the shared example and
//! helpers; the tests by area in `tests/*.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

mod checks;
mod errors;
mod example;
mod files;
mod interpolation;

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
