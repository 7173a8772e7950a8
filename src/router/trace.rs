//! The CLIENT span of each upstream attempt (OpenTelemetry GenAI conventions), sent upstream as
//! `traceparent`.

use std::borrow::Cow;

use serde::Deserialize;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::{UpstreamError, UpstreamKind};
use crate::providers::{CallCtx, Op, UpstreamBody};
use crate::runtime::Deployment;
use crate::telemetry::{SPAN_TARGET, enabled, server_of, traceparent};

// ------------------------------------------------------------------ attempt spans

/// `gen_ai.provider.name` of a provider type.
fn genai_provider(type_name: &'static str) -> &'static str {
    match type_name {
        "azure" => "azure.ai.openai",
        other => other,
    }
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
