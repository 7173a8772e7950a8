//! The spans of a request (SERVER), its cache look-up, async jobs and webhook deliveries, and the
//! `traceparent` propagation they share. Upstream attempts' CLIENT spans are the router's
//! (`router/trace.rs`).

use axum::http::{HeaderMap, HeaderValue, Method};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::Deserialize;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{SPAN_TARGET, enabled};

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

/// Host and port of a provider's base URL, for `server.address` / `server.port`.
pub(crate) fn server_of(base_url: &str) -> Option<(String, u16)> {
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
