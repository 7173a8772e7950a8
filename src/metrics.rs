//! Prometheus metrics: every name of the contract's table, described once, recorded through the
//! `metrics` facade (atomic handles in a sharded registry: no global lock on the hot path) and
//! rendered at `GET /metrics`. Label values are bounded: endpoint paths from a fixed list, model
//! and provider names from the configuration, status codes, outcome words; never raw user input.
//! Recording takes no lock: handles are cached per thread (see [`with_handles`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::LocalKey;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
pub const BATCH_LINES: &str = "ai_gateway_batch_lines_total";
pub const WEBHOOKS: &str = "ai_gateway_webhook_deliveries_total";
pub const DEPENDENCY_UP: &str = "ai_gateway_dependency_up";
pub const GUARDRAIL_ACTIONS: &str = "ai_gateway_guardrail_actions_total";

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

/// Set once the recorder is installed: handles cached before that would be no-ops forever.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Handles of series without variable labels, made once at install.
static FIXED: OnceLock<Fixed> = OnceLock::new();
/// How often histogram samples are folded into their buckets (and description writes committed).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Most distinct label sets one thread caches before it starts over (bounds memory across reloads).
const MAX_LOCAL: usize = 4096;

struct Fixed {
    in_flight: Gauge,
    /// l1 hit, l1 miss, l2 hit, l2 miss.
    cache: [Counter; 4],
    rate_limited: [Counter; 3],
}

/// Install the global recorder; `None` if one is already installed (e.g. a second app in tests)
/// or metrics are switched off (`AI_GATEWAY_METRICS=off`, for overhead measurements).
pub fn install() -> Option<PrometheusHandle> {
    if std::env::var("AI_GATEWAY_METRICS").is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
        tracing::info!("metrics off (AI_GATEWAY_METRICS=off): /metrics answers an empty body");
        return None;
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), LONG_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(UPSTREAM_DURATION.into()), LONG_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(TTFT.into()), TTFT_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(SHADOW_LATENCY_RATIO.into()), RATIO_BUCKETS)
        .ok()?;
    let handle = builder.install_recorder().ok()?;
    // Histogram samples wait in lock-free buckets until upkeep folds them in: without it they
    // would pile up between scrapes (forever, when nobody scrapes).
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms fold in at scrape time only");
    }
    describe();
    let _ = FIXED.set(Fixed {
        in_flight: metrics::gauge!(IN_FLIGHT),
        cache: [
            metrics::counter!(CACHE, "layer" => "l1", "result" => "hit"),
            metrics::counter!(CACHE, "layer" => "l1", "result" => "miss"),
            metrics::counter!(CACHE, "layer" => "l2", "result" => "hit"),
            metrics::counter!(CACHE, "layer" => "l2", "result" => "miss"),
        ],
        rate_limited: LIMIT_REASONS
            .map(|reason| metrics::counter!(RATE_LIMITED, "reason" => reason)),
    });
    INSTALLED.store(true, Ordering::Release);
    // Series that exist from the start, so dashboards and alerts see zeros, not gaps.
    metrics::gauge!(IN_FLIGHT).set(0.0);
    metrics::gauge!(JOBS_QUEUED).set(0.0);
    for reason in LIMIT_REASONS {
        metrics::counter!(RATE_LIMITED, "reason" => reason).absolute(0);
    }
    for status in ["succeeded", "failed"] {
        metrics::counter!(BATCH_LINES, "status" => status).absolute(0);
    }
    for status in ["succeeded", "failed", "cancelled"] {
        metrics::counter!(JOBS, "status" => status).absolute(0);
    }
    metrics::counter!(WEBHOOKS, "outcome" => "delivered").absolute(0);
    for layer in ["l1", "l2"] {
        for result in ["hit", "miss"] {
            metrics::counter!(CACHE, "layer" => layer, "result" => result).absolute(0);
        }
    }
    Some(handle)
}

const LIMIT_REASONS: [&str; 3] = ["requests", "tokens", "budget"];

/// A per-thread map from a label set to its handles: recording a metric takes no lock (the
/// `metrics` registry behind `counter!` is a sharded `RwLock` map) and allocates nothing once
/// the label set was seen on this thread. Handles share the registry's atomics, so every
/// thread's increments land in the same series.
struct Local<H> {
    key: String,
    map: HashMap<Box<str>, H, BuildHasherDefault<FxHasher>>,
}

impl<H> Local<H> {
    fn new() -> RefCell<Self> {
        RefCell::new(Self {
            key: String::with_capacity(128),
            map: HashMap::default(),
        })
    }
}

/// A fast non-cryptographic hash (the Fx multiply-rotate, 8 bytes at a time): the keys are label
/// values from the configuration and fixed words, nothing a caller chooses, so no flooding risk.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Run `f` on the cached handles of the label set `key` writes, making them with `make` once.
fn with_handles<H>(
    cache: &'static LocalKey<RefCell<Local<H>>>,
    key: impl FnOnce(&mut String),
    make: impl FnOnce() -> H,
    f: impl FnOnce(&H),
) {
    if !INSTALLED.load(Ordering::Acquire) {
        // No recorder of ours (metrics off, or another app in this process installed it): the
        // `metrics` macros would build owned label sets only to drop them.
        return;
    }
    let mut make = Some(make);
    let mut f = Some(f);
    {
        let _ = cache.try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return;
            };
            let c = &mut *c;
            c.key.clear();
            key(&mut c.key);
            if let Some(h) = c.map.get(c.key.as_str()) {
                if let Some(f) = f.take() {
                    f(h);
                }
                return;
            }
            if let (Some(make), Some(f)) = (make.take(), f.take()) {
                if c.map.len() >= MAX_LOCAL {
                    c.map.clear();
                }
                let h = make();
                f(&h);
                c.map.insert(c.key.as_str().into(), h);
            }
        });
    }
    // This thread's storage is gone (thread exit): the registry's own path.
    if let (Some(make), Some(f)) = (make, f) {
        f(&make());
    }
}

fn push_u16(buf: &mut String, mut v: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        buf.push(char::from(*d));
    }
}

fn push_parts(buf: &mut String, parts: &[&str]) {
    for p in parts {
        buf.push_str(p);
        buf.push('\u{1f}');
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        GUARDRAIL_ACTIONS,
        "What each guardrail did to requests (passed, masked, redacted, blocked)"
    );
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
    describe_counter!(BATCH_LINES, "Batch lines ended, by status");
    describe_counter!(WEBHOOKS, "Webhook deliveries by outcome");
    describe_gauge!(
        DEPENDENCY_UP,
        "Whether a shared dependency (redis, nats) answers: 1 up, 0 down"
    );
    describe_router_metrics();
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
        "/v1/completions",
        "/v1/images/generations",
        "/v1/audio/speech",
        "/v1/audio/transcriptions",
        "/v1/moderations",
        "/v1/rerank",
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

thread_local! {
    static REQUEST_HANDLES: RefCell<Local<(Counter, Histogram)>> = Local::new();
    static ATTEMPT_HANDLES: RefCell<Local<(Counter, Histogram)>> = Local::new();
    static TTFT_HANDLES: RefCell<Local<Histogram>> = Local::new();
    static TOKEN_HANDLES: RefCell<Local<(Counter, Counter)>> = Local::new();
    static COST_HANDLES: RefCell<Local<Gauge>> = Local::new();
}

/// One finished request.
pub fn request(endpoint: &'static str, model: &str, provider: &str, status: u16, took: Duration) {
    with_handles(
        &REQUEST_HANDLES,
        |k| {
            push_parts(k, &[endpoint, model, provider]);
            push_u16(k, status);
        },
        || {
            (
                metrics::counter!(REQUESTS, "endpoint" => endpoint, "model" => model.to_owned(),
                    "provider" => provider.to_owned(), "status" => status.to_string()),
                metrics::histogram!(REQUEST_DURATION, "endpoint" => endpoint,
                    "model" => model.to_owned()),
            )
        },
        |(count, duration)| {
            count.increment(1);
            duration.record(took.as_secs_f64());
        },
    );
}

/// One upstream attempt. `outcome`: success, error_status, timeout, connect_error, protocol_error,
/// client_error (the caller's fault).
pub fn attempt(provider: &str, deployment_model: &str, outcome: &'static str, took: Duration) {
    with_handles(
        &ATTEMPT_HANDLES,
        |k| push_parts(k, &[provider, deployment_model, outcome]),
        || {
            (
                metrics::counter!(ATTEMPTS, "provider" => provider.to_owned(),
                    "deployment_model" => deployment_model.to_owned(), "outcome" => outcome),
                metrics::histogram!(UPSTREAM_DURATION, "provider" => provider.to_owned(),
                    "deployment_model" => deployment_model.to_owned(), "outcome" => outcome),
            )
        },
        |(count, duration)| {
            count.increment(1);
            duration.record(took.as_secs_f64());
        },
    );
}

pub fn time_to_first_token(model: &str, provider: &str, took: Duration) {
    with_handles(
        &TTFT_HANDLES,
        |k| push_parts(k, &[model, provider]),
        || metrics::histogram!(TTFT, "model" => model.to_owned(), "provider" => provider.to_owned()),
        |h| h.record(took.as_secs_f64()),
    );
}

/// Tokens of one answer (`model` = the configured model, `provider` = the provider's name).
pub fn tokens(model: &str, provider: &str, input: u64, output: u64) {
    with_handles(
        &TOKEN_HANDLES,
        |k| push_parts(k, &[model, provider]),
        || {
            (
                metrics::counter!(TOKENS, "model" => model.to_owned(),
                    "provider" => provider.to_owned(), "type" => "input"),
                metrics::counter!(TOKENS, "model" => model.to_owned(),
                    "provider" => provider.to_owned(), "type" => "output"),
            )
        },
        |(i, o)| {
            i.increment(input);
            o.increment(output);
        },
    );
}

/// Cost of one answer in USD, by model, provider and key name (never the key itself).
/// `metrics` counters are integers, so this is a float gauge that only goes up; `render`
/// declares it a counter, which is what it is.
pub fn cost(model: &str, provider: &str, key_name: &str, usd: f64) {
    if !(usd.is_finite() && usd > 0.0) {
        return;
    }
    with_handles(
        &COST_HANDLES,
        |k| push_parts(k, &[model, provider, key_name]),
        || {
            metrics::gauge!(COST, "model" => model.to_owned(), "provider" => provider.to_owned(),
                "key" => key_name.to_owned())
        },
        |g| g.increment(usd),
    );
}

/// A cache look-up's result (`layer`: l1 | l2, `result`: hit | miss).
pub fn cache(layer: &'static str, result: &'static str) {
    let i = match (layer, result) {
        ("l1", "hit") => 0,
        ("l1", _) => 1,
        (_, "hit") => 2,
        _ => 3,
    };
    if let Some(f) = FIXED.get() {
        f.cache[i].increment(1);
    }
}

/// A request refused by a limit (`reason`: requests | tokens | budget).
pub fn rate_limited(reason: &'static str) {
    match (FIXED.get(), LIMIT_REASONS.iter().position(|r| *r == reason)) {
        (Some(f), Some(i)) => f.rate_limited[i].increment(1),
        (Some(_), None) => metrics::counter!(RATE_LIMITED, "reason" => reason).increment(1),
        (None, _) => {}
    }
}

/// Requests being served: counted with one atomic add per change, and published to
/// `ai_gateway_in_flight_requests` when the metrics are rendered (a gauge's own increment is a
/// compare-and-swap loop over a float, twice per request).
static IN_FLIGHT_NOW: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// `ai_gateway_in_flight_requests` up (`true`) or down.
pub fn in_flight(up: bool) {
    IN_FLIGHT_NOW.fetch_add(
        if up { 1 } else { -1 },
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Whether a shared dependency (`redis`, `nats`) answers: `ai_gateway_dependency_up` 1 or 0.
/// What a guardrail did to one request (`action`: passed | masked | redacted | blocked).
pub fn guardrail_action(guardrail: &str, action: &'static str) {
    metrics::counter!(GUARDRAIL_ACTIONS, "guardrail" => guardrail.to_owned(), "action" => action)
        .increment(1);
}

pub fn dependency_up(dependency: &'static str, up: bool) {
    metrics::gauge!(DEPENDENCY_UP, "dependency" => dependency).set(if up { 1.0 } else { 0.0 });
}

/// Text exposition (the circuit gauges are set just before by `Runtime::publish_gauges`).
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(f) = FIXED.get() {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a count of requests, far below 2^53"
        )]
        f.in_flight
            .set(IN_FLIGHT_NOW.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
    let text = handle.render();
    // `cost` is kept in a float gauge (see there); it is a counter. So are the router's costs.
    let mut text = text.replacen(
        &format!("# TYPE {COST} gauge"),
        &format!("# TYPE {COST} counter"),
        1,
    );
    for name in FLOAT_COUNTERS {
        text = text.replacen(
            &format!("# TYPE {name} gauge"),
            &format!("# TYPE {name} counter"),
            1,
        );
    }
    text
}

// ------------------------------------------------------------------ the router's metrics

pub const HEDGES: &str = "ai_gateway_hedges_total";
/// What hedges that lost were charged (when their usage is known), over all keys.
pub const HEDGE_COST: &str = "ai_gateway_hedge_cost_usd_total";
pub const SHADOW_REQUESTS: &str = "ai_gateway_shadow_requests_total";
pub const SHADOW_LATENCY_RATIO: &str = "ai_gateway_shadow_latency_ratio";
pub const SHADOW_MATCHES: &str = "ai_gateway_shadow_matches_total";
pub const SHADOW_TOKENS: &str = "ai_gateway_shadow_tokens_total";
pub const SHADOW_COST: &str = "ai_gateway_shadow_cost_usd_total";

/// Buckets of the latency ratio (shadow / primary).
pub const RATIO_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
];

/// The router's float sums kept in gauges that only go up (rendered as counters).
pub const FLOAT_COUNTERS: [&str; 2] = [HEDGE_COST, SHADOW_COST];

/// Describe the router's metrics (hedges, shadow traffic, shared capacity).
fn describe_router_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HEDGES,
        "Hedge requests sent, by model and outcome (won: its answer was returned; lost)"
    );
    describe_gauge!(
        HEDGE_COST,
        "USD charged for hedged requests whose answer lost the race (when their usage is known)"
    );
    describe_counter!(
        SHADOW_REQUESTS,
        "Shadow requests by model, shadow model and outcome (ok, error, dropped)"
    );
    describe_histogram!(
        SHADOW_LATENCY_RATIO,
        "Shadow answer's duration over the primary answer's"
    );
    describe_counter!(
        SHADOW_MATCHES,
        "Shadow comparisons by check (text_exact, text_normalised, finish_reason, tool_calls) and result"
    );
    describe_counter!(
        SHADOW_TOKENS,
        "Tokens of compared answers, by side (primary, shadow) and type (input, output)"
    );
    describe_gauge!(
        SHADOW_COST,
        "USD of compared answers, by side (primary, shadow)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_digits() {
        for v in [0u16, 7, 42, 200, 404, 599, 65535] {
            let mut s = String::new();
            push_u16(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn endpoint_labels_are_bounded() {
        assert_eq!(
            endpoint_label("/v1/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(endpoint_label("/v1/jobs/job_123"), "/v1/jobs");
        assert_eq!(endpoint_label("/admin/keys/abc"), "/admin");
        assert_eq!(endpoint_label("/v1/anything-else"), "other");
    }
}
