//! Logging and traces.
//!
//! Logs: `tracing` with JSON or pretty output, filtered by `RUST_LOG` or `telemetry.log_level`.
//! Never logs keys or `Authorization` (nothing in the gateway records them).
//!
//! Traces: OpenTelemetry over OTLP (http/protobuf, or gRPC with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`), on when `telemetry.otlp_endpoint` or one of
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (or
//! `OTEL_TRACES_EXPORTER=otlp`); off, with no layer installed and no span made, otherwise.
//! Spans are `tracing` spans of target [`SPAN_TARGET`], seen only by the OpenTelemetry layer (the
//! log output is the same with traces on or off):
//! - one SERVER span per API request (`request_context`), child of the caller's `traceparent`;
//! - `cache lookup` (INTERNAL) around the response-cache look-up;
//! - one CLIENT span per upstream attempt, named `{operation} {deployment model}`, whose context
//!   is sent upstream as `traceparent` (same trace id as the caller's, the attempt as parent);
//! - webhook deliveries ([`webhook_span`], for the jobs code).
//!
//! Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`); the gateway's own
//! are under `gateway.*`. The sampler is the SDK's (`OTEL_TRACES_SAMPLER`, `_ARG`; default
//! parent-based always-on), export is batched off the request path (`OTEL_BSP_*`).

mod human;

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::http::{HeaderMap, HeaderValue, Method};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};
use crate::error::{UpstreamError, UpstreamKind};
use crate::providers::{CallCtx, Op, UpstreamBody};
use crate::runtime::Deployment;

/// The `tracing` target of every span meant for OpenTelemetry.
pub const SPAN_TARGET: &str = "otel";

/// Whether trace export is on (set once by [`init`]).
static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (cheap; guards work done only for traces).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Keeps the trace pipeline alive; dropping it flushes the spans still queued.
#[derive(Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    /// The runtime the gRPC exporter's connection lives on (gRPC only).
    runtime: Option<tokio::runtime::Runtime>,
    /// Flushes the log lines still queued for stderr when dropped.
    log: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "trace export: could not flush the last spans");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        // Last, so the lines above are written too.
        drop(self.log.take());
    }
}

/// The log filter of [`init`], for [`set_log_level`].
static LOG_FILTER: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

/// What became of a new `telemetry.log_level`.
#[derive(Debug, PartialEq, Eq)]
pub enum LogLevelChange {
    Applied,
    /// `RUST_LOG` is set: it wins over the configuration, now as at start.
    OverriddenByEnv,
}

/// Swap the log filter for `level` (a reload changed `telemetry.log_level`; validated already).
pub fn set_log_level(level: &str) -> Result<LogLevelChange, String> {
    // As at start: a valid `RUST_LOG` wins.
    if EnvFilter::try_from_default_env().is_ok() {
        return Ok(LogLevelChange::OverriddenByEnv);
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    let handle = LOG_FILTER
        .get()
        .ok_or_else(|| "logging is not set up in this process".to_owned())?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    Ok(LogLevelChange::Applied)
}

/// Install the global subscriber (logs, and the trace layer when export is configured). Call it
/// outside any async runtime. Later calls install nothing.
pub fn init(cfg: &TelemetryConfig) -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The filter can be swapped by a reload (`telemetry.log_level`).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = LOG_FILTER.set(handle);
    let format = cfg
        .log_format
        .unwrap_or(if std::io::stderr().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });
    let env = process_env;
    // Log lines are written by a background thread, never by the async runtime's workers: a
    // slow stderr (a full pipe, a stalled log shipper) cannot stall requests. When its queue is
    // full, lines are dropped rather than blocking (lossy), and counted by tracing-appender.
    let (writer, log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(64 * 1024)
        .lossy(true)
        .thread_name("ai-gateway-log")
        .finish(std::io::stderr());
    let plan = match export_plan(cfg, &env) {
        Some(plan) => plan,
        None => {
            let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
            let logs = tracing_subscriber::registry().with(filter);
            let _ = match format {
                LogFormat::Json => logs.with(fmt.json().flatten_event(true)).try_init(),
                LogFormat::Pretty => logs
                    .with(fmt.event_format(human::Human::default()))
                    .try_init(),
            };
            return Guard {
                provider: None,
                runtime: None,
                log: Some(log_guard),
            };
        }
    };
    let built = build_provider(cfg, &plan, &env);
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .event_format(human::Human::default())
            .with_writer(writer)
            .boxed(),
    };
    // Logs never see the trace spans, so their lines are the same with traces on or off.
    let fmt =
        fmt.with_filter(filter.and(filter_fn(|m| !(m.is_span() && m.target() == SPAN_TARGET))));
    match built {
        Ok((provider, runtime)) => {
            let tracer = provider.tracer("ai-gateway");
            let otel = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_level(false)
                .with_tracked_inactivity(false)
                // Nothing reads OpenTelemetry's current context: no attach/detach on every poll.
                .with_context_activation(false)
                .with_filter(filter_fn(|m| m.is_span() && m.target() == SPAN_TARGET));
            if tracing_subscriber::registry()
                .with(fmt)
                .with(otel)
                .try_init()
                .is_ok()
            {
                ON.store(true, Ordering::Relaxed);
            }
            tracing::info!(
                endpoint = %plan.endpoint_for_logs, protocol = plan.protocol.as_str(),
                "trace export on (OTLP)"
            );
            Guard {
                provider: Some(provider),
                runtime,
                log: Some(log_guard),
            }
        }
        Err(e) => {
            let _ = tracing_subscriber::registry().with(fmt).try_init();
            tracing::error!(error = %e, "trace export off: the OTLP exporter could not be built");
            Guard {
                provider: None,
                runtime: None,
                log: Some(log_guard),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }
}

/// Where and how spans go, when they go anywhere.
#[derive(Debug, PartialEq, Eq)]
struct ExportPlan {
    /// From `telemetry.otlp_endpoint` (else the exporter reads the `OTEL_*` variables).
    endpoint: Option<String>,
    endpoint_for_logs: String,
    protocol: Protocol,
}

/// Export is on when an endpoint is configured (file or standard variables) or
/// `OTEL_TRACES_EXPORTER=otlp`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
fn export_plan(cfg: &TelemetryConfig, env: &dyn Fn(&str) -> Option<String>) -> Option<ExportPlan> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let exporter = env("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase());
    if exporter.as_deref() == Some("none") {
        return None;
    }
    let from_file = cfg
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let from_env =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if from_file.is_none() && from_env.is_none() && exporter.as_deref() != Some("otlp") {
        return None;
    }
    let protocol = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("grpc") => Protocol::Grpc,
        _ => Protocol::HttpProtobuf,
    };
    let endpoint = from_file.map(|e| match protocol {
        Protocol::Grpc => e,
        Protocol::HttpProtobuf if e.trim_end_matches('/').ends_with("/v1/traces") => e,
        Protocol::HttpProtobuf => format!("{}/v1/traces", e.trim_end_matches('/')),
    });
    let endpoint_for_logs = redact_endpoint(
        endpoint
            .as_deref()
            .or(from_env.as_deref())
            .unwrap_or("(default)"),
    );
    Some(ExportPlan {
        endpoint,
        endpoint_for_logs,
        protocol,
    })
}

/// The process's environment as the exporter settings read it: a blank variable is unset.
pub fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// What trace export will do with this configuration and environment, for `config::describe`:
/// `OTLP on (ENDPOINT, PROTOCOL)` or `off`. The endpoint is redacted as in the logs.
pub fn export_summary(cfg: &TelemetryConfig, env: &dyn Fn(&str) -> Option<String>) -> String {
    match export_plan(cfg, env) {
        Some(p) => format!("OTLP on ({}, {})", p.endpoint_for_logs, p.protocol.as_str()),
        None => "off".to_owned(),
    }
}

/// The endpoint without user information or query, for logs.
fn redact_endpoint(e: &str) -> String {
    let e = e.split(['?', '#']).next().unwrap_or("");
    match (e.find("://"), e.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &e[..s], &e[at + 1..]),
        _ => e.to_owned(),
    }
}

fn build_provider(
    cfg: &TelemetryConfig,
    plan: &ExportPlan,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>), String> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    // reqwest (rustls without a built-in provider) needs the process's crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (exporter, runtime) = match plan.protocol {
        Protocol::HttpProtobuf => {
            let mut b = SpanExporter::builder().with_http();
            if let Some(e) = &plan.endpoint {
                b = b.with_endpoint(e.clone());
            }
            (b.build().map_err(|e| e.to_string())?, None)
        }
        Protocol::Grpc => {
            // The gRPC channel lives on a small runtime of its own, off the serving threads.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the export runtime: {e}"))?;
            let exporter = {
                let _entered = rt.enter();
                let mut b = SpanExporter::builder().with_tonic();
                if let Some(e) = &plan.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build().map_err(|e| e.to_string())?
            };
            (exporter, Some(rt))
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(cfg.service_name.clone());
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    Ok((provider, runtime))
}

// ------------------------------------------------------------------ context propagation

struct HeaderExtract<'a>(&'a HeaderMap);

impl Extractor for HeaderExtract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The W3C `traceparent` of a span (the span as the parent of what receives it).
pub fn traceparent(span: &Span) -> Option<HeaderValue> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    HeaderValue::from_str(&format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
    .ok()
}

/// Make `span` a child of the W3C context in `traceparent` (if valid).
fn set_remote_parent(span: &Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtract(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

// ------------------------------------------------------------------ server span

/// `chat` or `embeddings` for the API paths that run a model.
fn operation_of(path: &str) -> Option<&'static str> {
    match path {
        "/v1/chat/completions"
        | "/v1/messages"
        | "/v1/async/chat/completions"
        | "/v1/async/messages" => Some("chat"),
        "/v1/embeddings" | "/v1/async/embeddings" => Some("embeddings"),
        _ => None,
    }
}

/// The SERVER span of one request (none for `/health`, `/ready`, `/metrics`, or with traces off).
pub fn server_span(method: &Method, path: &str, headers: &HeaderMap, request_id: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let route = crate::metrics::endpoint_label(path);
    if matches!(route, "/health" | "/ready" | "/metrics") {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
        error.type = Empty,
        gen_ai.operation.name = operation_of(path),
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.request.max_tokens = Empty,
        gen_ai.request.temperature = Empty,
        gen_ai.request.top_p = Empty,
        gen_ai.request.top_k = Empty,
        gen_ai.request.frequency_penalty = Empty,
        gen_ai.request.presence_penalty = Empty,
        gen_ai.request.seed = Empty,
        gen_ai.request.choice.count = Empty,
        gen_ai.response.model = Empty,
        gen_ai.response.id = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gateway.request_id = request_id,
        gateway.key_name = Empty,
        gateway.deployment.provider = Empty,
        gateway.deployment.model = Empty,
        gateway.attempts = Empty,
        gateway.cache = Empty,
    );
    set_remote_parent(&span, headers);
    span
}

/// The request parameters of a chat or embeddings body, recorded on the current (server) span.
/// Parses the body again, so only when traces are on.
pub fn record_request(model: &str, max_tokens: Option<u64>, body: &[u8]) {
    if !enabled() {
        return;
    }
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.request.model", model);
    if let Some(m) = max_tokens {
        span.record("gen_ai.request.max_tokens", m);
    }
    let Ok(p) = serde_json::from_slice::<RequestParams>(body) else {
        return;
    };
    if let Some(v) = p.temperature {
        span.record("gen_ai.request.temperature", v);
    }
    if let Some(v) = p.top_p {
        span.record("gen_ai.request.top_p", v);
    }
    if let Some(v) = p.top_k {
        span.record("gen_ai.request.top_k", v);
    }
    if let Some(v) = p.frequency_penalty {
        span.record("gen_ai.request.frequency_penalty", v);
    }
    if let Some(v) = p.presence_penalty {
        span.record("gen_ai.request.presence_penalty", v);
    }
    if let Some(v) = p.seed {
        span.record("gen_ai.request.seed", v);
    }
    if let Some(v) = p.n.filter(|n| *n != 1) {
        span.record("gen_ai.request.choice.count", v);
    }
    let stops: Vec<opentelemetry::StringValue> = match p.stop.or(p.stop_sequences) {
        Some(Stop::One(s)) => vec![s.into()],
        Some(Stop::Many(v)) => v.into_iter().map(Into::into).collect(),
        None => Vec::new(),
    };
    if !stops.is_empty() {
        span.set_attribute(
            "gen_ai.request.stop_sequences",
            opentelemetry::Value::Array(stops.into()),
        );
    }
    if let Some(f) = p.encoding_format {
        span.set_attribute(
            "gen_ai.request.encoding_formats",
            opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(f)].into()),
        );
    }
}

#[derive(Deserialize)]
struct RequestParams {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    seed: Option<i64>,
    n: Option<i64>,
    stop: Option<Stop>,
    stop_sequences: Option<Stop>,
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// What the access log knows when a request's body ended.
pub struct ServerEnd<'a> {
    pub status: u16,
    pub key_name: &'a str,
    pub provider: &'a str,
    pub deployment_model: &'a str,
    pub attempts: &'a str,
    pub cache: &'a str,
    pub usage: Option<(u64, u64)>,
}

/// Record the end of a request on its server span.
pub fn server_end(span: &Span, end: &ServerEnd<'_>) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", end.status);
    if end.status >= 500 {
        span.record("otel.status_code", "error");
        span.record("error.type", end.status.to_string());
    }
    for (field, v) in [
        ("gateway.key_name", end.key_name),
        ("gateway.deployment.provider", end.provider),
        ("gateway.deployment.model", end.deployment_model),
        ("gateway.attempts", end.attempts),
        ("gateway.cache", end.cache),
    ] {
        if !v.is_empty() {
            span.record(field, v);
        }
    }
    if let Some((i, o)) = end.usage {
        span.record("gen_ai.usage.input_tokens", i);
        span.record("gen_ai.usage.output_tokens", o);
    }
}

/// The trace id of a span, for the access log (`None` with traces off).
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

// ------------------------------------------------------------------ cache span

/// The INTERNAL span around a response-cache look-up.
pub fn cache_span() -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: SPAN_TARGET,
        "cache lookup",
        otel.kind = "internal",
        gateway.cache.layer = Empty,
        gateway.cache.result = Empty,
    )
}

/// A cache look-up's result (`hit`, `miss`, `wait`), on the current (cache) span.
pub fn cache_result(layer: &'static str, result: &'static str) {
    if !enabled() {
        return;
    }
    let span = Span::current();
    span.record("gateway.cache.layer", layer);
    span.record("gateway.cache.result", result);
}

// ------------------------------------------------------------------ attempt spans

/// `gen_ai.provider.name` of a provider type.
fn genai_provider(type_name: &'static str) -> &'static str {
    match type_name {
        "azure" => "azure.ai.openai",
        other => other,
    }
}

/// Host and port of a provider's base URL, for `server.address` / `server.port`.
fn server_of(base_url: &str) -> Option<(String, u16)> {
    let uri: axum::http::Uri = base_url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    Some((host.to_owned(), port))
}

/// The CLIENT span of one upstream attempt (`model`: the configured model being served).
pub fn attempt_span(op: Op, model: &str, d: &Deployment, attempt: u32) -> Span {
    if !enabled() {
        return Span::none();
    }
    let op_name = op.name();
    let server = server_of(d.provider.base_url());
    tracing::info_span!(
        target: SPAN_TARGET,
        "attempt",
        otel.name = %format_args!("{op_name} {}", d.model),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = op_name,
        gen_ai.provider.name = genai_provider(d.provider.type_name()),
        gen_ai.request.model = d.model.as_str(),
        gen_ai.response.model = Empty,
        gen_ai.response.id = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        server.address = server.as_ref().map(|s| s.0.as_str()),
        server.port = server.as_ref().map(|s| s.1),
        http.response.status_code = Empty,
        error.type = Empty,
        gateway.model = model,
        gateway.deployment.provider = d.provider.name.as_str(),
        gateway.deployment.model = d.model.as_str(),
        gateway.attempt = attempt,
        gateway.attempt.outcome = Empty,
    )
}

/// The call context of one attempt: with traces on, `traceparent` names the attempt span (same
/// trace as the caller's); off, the caller's own `traceparent` goes on unchanged.
pub fn attempt_ctx<'a>(span: &Span, ctx: &'a CallCtx) -> Cow<'a, CallCtx> {
    match traceparent(span) {
        Some(tp) => {
            let mut c = ctx.clone();
            c.traceparent = Some(tp);
            Cow::Owned(c)
        }
        None => Cow::Borrowed(ctx),
    }
}

/// Record an attempt's outcome on its span; on success also what the answer says (model, id,
/// finish reasons, usage; complete answers only) on it and on the current (server) span.
pub fn attempt_end(
    span: &Span,
    d: &Deployment,
    outcome: &'static str,
    result: &Result<UpstreamBody, UpstreamError>,
) {
    if span.is_disabled() {
        return;
    }
    span.record("gateway.attempt.outcome", outcome);
    match result {
        Ok(body) => {
            let server = Span::current();
            server.record(
                "gen_ai.provider.name",
                genai_provider(d.provider.type_name()),
            );
            let UpstreamBody::Full(bytes) = body else {
                return;
            };
            let Ok(r) = serde_json::from_slice::<AnswerProbe<'_>>(bytes) else {
                return;
            };
            let finish: Vec<opentelemetry::StringValue> = r
                .choices
                .iter()
                .flatten()
                .filter_map(|c| c.finish_reason.as_deref())
                .chain(r.stop_reason.as_deref())
                .map(|s| opentelemetry::StringValue::from(s.to_owned()))
                .collect();
            let usage = r.usage.as_ref().and_then(|u| {
                Some((
                    u.input_tokens.or(u.prompt_tokens)?,
                    u.output_tokens.or(u.completion_tokens).unwrap_or(0),
                ))
            });
            for s in [span, &server] {
                if let Some(m) = &r.model {
                    s.record("gen_ai.response.model", m.as_ref());
                }
                if let Some(id) = &r.id {
                    s.record("gen_ai.response.id", id.as_ref());
                }
                if let Some((i, o)) = usage {
                    s.record("gen_ai.usage.input_tokens", i);
                    s.record("gen_ai.usage.output_tokens", o);
                }
                if !finish.is_empty() {
                    s.set_attribute(
                        "gen_ai.response.finish_reasons",
                        opentelemetry::Value::Array(finish.clone().into()),
                    );
                }
            }
        }
        Err(e) => {
            span.record("otel.status_code", "error");
            let ty: Cow<'static, str> = match e.kind {
                UpstreamKind::Status(s) => {
                    span.record("http.response.status_code", s);
                    Cow::Owned(s.to_string())
                }
                UpstreamKind::Timeout => "timeout".into(),
                UpstreamKind::Connect => "connect_error".into(),
                UpstreamKind::Protocol => "protocol_error".into(),
            };
            span.record("error.type", ty.as_ref());
        }
    }
}

#[derive(Deserialize)]
struct AnswerProbe<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<UsageProbe>,
    choices: Option<Vec<ChoiceProbe>>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct UsageProbe {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChoiceProbe {
    finish_reason: Option<String>,
}

// ------------------------------------------------------------------ webhooks

/// The CLIENT span of one webhook delivery attempt, for the jobs code: `url` is logged without
/// its query; `parent` is the `traceparent` the job was submitted under, if kept. Send
/// [`traceparent`] of the span with the delivery and end it with [`webhook_end`].
pub fn webhook_span(url: &str, job_id: &str, attempt: u32, parent: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let server = server_of(url);
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "webhook",
        otel.name = "POST webhook",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = "POST",
        server.address = server.as_ref().map(|s| s.0.as_str()),
        server.port = server.as_ref().map(|s| s.1),
        http.response.status_code = Empty,
        error.type = Empty,
        gateway.job.id = job_id,
        gateway.webhook.attempt = attempt,
        gateway.webhook.outcome = Empty,
    );
    set_traceparent(&span, parent);
    span
}

/// Make `span` a child of the W3C `traceparent` value, when there is a valid one.
fn set_traceparent(span: &Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent.and_then(|p| HeaderValue::from_str(p).ok()) {
        let mut h = HeaderMap::new();
        h.insert("traceparent", tp);
        set_remote_parent(span, &h);
    }
}

/// The span of one run of an async job: a CONSUMER span (the job came off a queue), in the trace
/// of the request that submitted it when that request carried a `traceparent`. The pipeline
/// records the model call's attributes (`gen_ai.*`, the deployment, the attempts) on it as on a
/// request's SERVER span, and the attempts' CLIENT spans are its children. `endpoint` is the
/// job's synchronous endpoint, `attempt` counts from 1.
pub fn job_span(job_id: &str, endpoint: &str, attempt: u32, traceparent: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "job",
        otel.name = %format_args!("job {endpoint}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        error.type = Empty,
        gen_ai.operation.name = operation_of(endpoint),
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.request.max_tokens = Empty,
        gen_ai.response.model = Empty,
        gen_ai.response.id = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gateway.job.id = job_id,
        gateway.job.attempt = attempt,
        gateway.job.outcome = Empty,
        gateway.deployment.provider = Empty,
        gateway.deployment.model = Empty,
        gateway.attempts = Empty,
    );
    set_traceparent(&span, traceparent);
    span
}

/// End a job run's span: `succeeded` or `failed`, with the error's `type` when it failed.
pub fn job_end(span: &Span, error_type: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    match error_type {
        None => span.record("gateway.job.outcome", "succeeded"),
        Some(ty) => {
            span.record("gateway.job.outcome", "failed");
            span.record("otel.status_code", "error");
            span.record("error.type", if ty.is_empty() { "error" } else { ty })
        }
    };
}

/// End a webhook delivery span: `outcome` as in `ai_gateway_webhook_deliveries_total`.
pub fn webhook_end(span: &Span, outcome: &str, status: Option<u16>, ok: bool) {
    if span.is_disabled() {
        return;
    }
    span.record("gateway.webhook.outcome", outcome);
    if let Some(s) = status {
        span.record("http.response.status_code", s);
    }
    if !ok {
        span.record("otel.status_code", "error");
        span.record("error.type", outcome);
    }
}

// ------------------------------------------------------------------ bodies

/// At most this much of a body is logged.
const BODY_LOG_MAX: usize = 16 * 1024;

/// With `telemetry.log_bodies`, one line (target `body`) with a request's body: bounded, and with
/// anything that looks like a key (`sk-…`, `sk_…`, `whsec_…`, or 32+ key characters) redacted.
pub fn log_request_body(request_id: &str, body: &[u8]) {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_LOG_MAX)]);
    tracing::info!(
        target: "body",
        request_id = %request_id,
        bytes = body.len(),
        truncated = body.len() > BODY_LOG_MAX,
        body = %redact_secrets(&text),
        "request body"
    );
}

/// Replace every secret-like word (a run of `[A-Za-z0-9_-]`) with `[redacted]`.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    while !rest.is_empty() {
        let start = rest.find(is_word).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let w = &rest[..end];
        let secret = w.starts_with("sk-")
            || w.starts_with("sk_")
            || w.starts_with("whsec_")
            || w.len() >= 32;
        out.push_str(if secret { "[redacted]" } else { w });
        rest = &rest[end..];
    }
    out
}

// ------------------------------------------------------------------ usage for the access log

/// Tokens and cost of one request, filled by whoever learns them (for streams, when the stream
/// ends) and read when the request's body ended (access log, server span). `request_context`
/// puts an `Arc<Usage>` in every request's extensions.
#[derive(Debug, Default)]
pub struct Usage {
    input: AtomicU64,
    output: AtomicU64,
    /// Cost in USD as `f64` bits; `u64::MAX` = unknown.
    cost_bits: AtomicU64,
    set: AtomicBool,
    /// The request's labels, set once each as they become known and taken when it ends (a lock
    /// held for one assignment: no contention, and cheaper than two `OnceLock`s).
    labels: Mutex<Labels>,
}

/// The labels of a request's metrics and access-log line.
#[derive(Debug, Default)]
pub struct Labels {
    /// The configured model the request named, set by the handler.
    pub model: Option<String>,
    /// What served the answer, set with the answer's headers.
    pub served: Option<ServedBy>,
}

/// The values of an answer's `x-cache`, `x-gateway-provider`, `x-gateway-deployment-model` and
/// `x-gateway-attempts` headers, kept beside the answer for its metrics' and access log's labels
/// (reading them back from the answer's header map cost ~1,000 instructions per request).
#[derive(Debug)]
pub struct ServedBy {
    pub cache: HeaderValue,
    pub provider: Option<HeaderValue>,
    pub deployment_model: Option<HeaderValue>,
    pub attempts: HeaderValue,
}

impl Usage {
    pub fn new() -> Self {
        Self {
            cost_bits: AtomicU64::new(u64::MAX),
            ..Self::default()
        }
    }

    pub fn set_tokens(&self, input: u64, output: u64) {
        self.input.store(input, Ordering::Relaxed);
        self.output.store(output, Ordering::Relaxed);
        self.set.store(true, Ordering::Release);
    }

    pub fn set_cost(&self, usd: f64) {
        self.cost_bits.store(usd.to_bits(), Ordering::Relaxed);
    }

    pub fn tokens(&self) -> Option<(u64, u64)> {
        self.set.load(Ordering::Acquire).then(|| {
            (
                self.input.load(Ordering::Relaxed),
                self.output.load(Ordering::Relaxed),
            )
        })
    }

    pub fn cost(&self) -> Option<f64> {
        let b = self.cost_bits.load(Ordering::Relaxed);
        (b != u64::MAX).then(|| f64::from_bits(b))
    }

    /// Label the request with the configured model it named (the first call counts).
    pub fn set_model(&self, model: String) {
        let mut labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        labels.model.get_or_insert(model);
    }

    /// Note what served the answer (the first call counts).
    pub fn set_served(&self, served: ServedBy) {
        let mut labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        labels.served.get_or_insert(served);
    }

    /// The labels set so far, taken out (when the request ends).
    pub fn take_labels(&self) -> Labels {
        std::mem::take(&mut *self.labels.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests;
