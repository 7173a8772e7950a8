//! Prometheus metrics: every name of the contract's table, described once, recorded through the
//! `metrics` facade (atomic handles in a sharded registry: no global lock on the hot path) and
//! rendered at `GET /metrics`. Label values are bounded: endpoint paths from a fixed list, model
//! and provider names from the configuration, status codes, outcome words; never raw user input.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::runtime::Runtime;

pub const REQUESTS: &str = "ai_gateway_requests_total";
pub const REQUEST_DURATION: &str = "ai_gateway_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "ai_gateway_upstream_duration_seconds";
pub const TTFT: &str = "ai_gateway_time_to_first_token_seconds";
pub const TOKENS: &str = "ai_gateway_tokens_total";
pub const COST: &str = "ai_gateway_cost_usd_total";
pub const CACHE: &str = "ai_gateway_cache_requests_total";
pub const RATE_LIMITED: &str = "ai_gateway_rate_limited_total";
pub const ATTEMPTS: &str = "ai_gateway_upstream_attempts_total";
pub const CIRCUIT: &str = "ai_gateway_circuit_state";
pub const IN_FLIGHT: &str = "ai_gateway_in_flight_requests";
pub const JOBS: &str = "ai_gateway_jobs_total";
pub const JOBS_QUEUED: &str = "ai_gateway_jobs_queued";
pub const WEBHOOKS: &str = "ai_gateway_webhook_deliveries_total";

/// Whole requests and upstream calls: from milliseconds to ten minutes.
const LONG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
    160.0, 320.0, 640.0,
];
/// Time to first token: the GenAI semantic conventions' boundaries.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];

/// Install the global recorder; `None` if one is already installed (e.g. a second app in tests).
pub fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), LONG_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(UPSTREAM_DURATION.into()), LONG_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(TTFT.into()), TTFT_BUCKETS)
        .ok()?;
    let handle = builder.install_recorder().ok()?;
    describe();
    // Series that exist from the start, so dashboards and alerts see zeros, not gaps.
    metrics::gauge!(IN_FLIGHT).set(0.0);
    metrics::gauge!(JOBS_QUEUED).set(0.0);
    for reason in ["requests", "tokens", "budget"] {
        metrics::counter!(RATE_LIMITED, "reason" => reason).absolute(0);
    }
    Some(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "Requests answered, by endpoint, model, provider and status code"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Whole-request duration (to the end of the body or stream)"
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Upstream attempt duration (to the last byte, or the first chunk of a stream)"
    );
    describe_histogram!(
        TTFT,
        Unit::Seconds,
        "Time from the request to the first streamed chunk"
    );
    describe_counter!(TOKENS, "Tokens by model, provider and type (input, output)");
    describe_counter!(
        CACHE,
        "Cache look-ups by layer (l1, l2) and result (hit, miss)"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by a limit, by reason (requests, tokens, budget)"
    );
    describe_counter!(
        ATTEMPTS,
        "Upstream attempts by provider, deployment model and outcome"
    );
    describe_gauge!(
        CIRCUIT,
        "Circuit state per deployment: 0 closed, 1 half-open, 2 open"
    );
    describe_gauge!(IN_FLIGHT, "Requests being served, streams included");
    describe_counter!(JOBS, "Async jobs finished, by status");
    describe_gauge!(JOBS_QUEUED, "Async jobs waiting to run");
    describe_counter!(WEBHOOKS, "Webhook deliveries by outcome");
}

/// The endpoint label of a path: one of the contract's paths, or "other".
pub fn endpoint_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/messages",
        "/v1/async/chat/completions",
        "/v1/async/embeddings",
        "/v1/async/messages",
        "/v1/batches",
        "/v1/files",
        "/health",
        "/ready",
        "/metrics",
    ];
    KNOWN
        .iter()
        .find(|k| path == **k)
        .copied()
        .unwrap_or_else(|| {
            if path.starts_with("/admin/") {
                "/admin"
            } else if path.starts_with("/v1/jobs/") {
                "/v1/jobs"
            } else {
                "other"
            }
        })
}

/// One finished request.
pub fn request(endpoint: &'static str, model: &str, provider: &str, status: u16, took: Duration) {
    metrics::counter!(REQUESTS, "endpoint" => endpoint, "model" => model.to_owned(),
        "provider" => provider.to_owned(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!(REQUEST_DURATION, "endpoint" => endpoint, "model" => model.to_owned())
        .record(took.as_secs_f64());
}

/// One upstream attempt. `outcome`: success, error_status, timeout, connect_error, protocol_error,
/// client_error (the caller's fault).
pub fn attempt(provider: &str, deployment_model: &str, outcome: &'static str, took: Duration) {
    metrics::counter!(ATTEMPTS, "provider" => provider.to_owned(),
        "deployment_model" => deployment_model.to_owned(), "outcome" => outcome)
    .increment(1);
    metrics::histogram!(UPSTREAM_DURATION, "provider" => provider.to_owned(),
        "deployment_model" => deployment_model.to_owned(), "outcome" => outcome)
    .record(took.as_secs_f64());
}

pub fn time_to_first_token(model: &str, provider: &str, took: Duration) {
    metrics::histogram!(TTFT, "model" => model.to_owned(), "provider" => provider.to_owned())
        .record(took.as_secs_f64());
}

/// USD totals by (model, provider, key). The `metrics` facade only counts integers, so this one
/// counter is kept here (updated once per answer, under a short lock) and rendered with the rest.
type CostTable = std::sync::Mutex<std::collections::BTreeMap<(String, String, String), f64>>;
static COSTS: std::sync::LazyLock<CostTable> = std::sync::LazyLock::new(Default::default);

/// Add an answer's cost.
pub fn cost(model: &str, provider: &str, key: &str, usd: f64) {
    if !usd.is_finite() || usd <= 0.0 {
        return;
    }
    if let Ok(mut m) = COSTS.lock() {
        *m.entry((model.to_owned(), provider.to_owned(), key.to_owned()))
            .or_insert(0.0) += usd;
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_costs(out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP {COST} Computed cost in USD by model, provider and key name"
    );
    let _ = writeln!(out, "# TYPE {COST} counter");
    if let Ok(m) = COSTS.lock() {
        for ((model, provider, key), v) in m.iter() {
            let _ = writeln!(
                out,
                "{COST}{{model=\"{}\",provider=\"{}\",key=\"{}\"}} {v}",
                escape(model),
                escape(provider),
                escape(key)
            );
        }
    }
}

/// Text exposition, with the circuit gauges read from the deployments at scrape time.
pub fn render(handle: &PrometheusHandle, rt: &Runtime) -> String {
    let mut seen = std::collections::HashSet::new();
    for m in rt.models.values() {
        for d in &m.deployments {
            if seen.insert((d.provider.name.as_str(), d.model.as_str())) {
                let v = d.state.breaker.state() as u8;
                metrics::gauge!(CIRCUIT, "provider" => d.provider.name.clone(),
                    "deployment_model" => d.model.clone())
                .set(f64::from(v));
            }
        }
    }
    let mut out = handle.render();
    render_costs(&mut out);
    out
}
