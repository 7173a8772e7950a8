//! HTTP handlers, one module per API. Handlers are thin: read the body, parse the head, call
//! `pipeline`, render errors in their API's shape.

pub mod admin;
pub mod admin_log;
pub mod anthropic;
pub mod batches;
#[cfg(feature = "console")]
pub mod console;
pub mod context;
pub mod error;
pub mod files;
pub mod home;
pub mod jobs;
mod listing;
pub mod openai;
pub mod ops;
pub mod passthrough;
pub mod reload;
pub mod responses;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::api::context::{SharedState, deadline_after};
use crate::api::error::Render;
use crate::auth::Caller;
use crate::error::Error;
use crate::pipeline::{self, ChatCall};
use crate::providers::CallCtx;
use crate::wire::Endpoint;
use crate::wire::{self, Format};

/// The `/v1` routes (authentication is layered on by `app::router`).
pub fn routes() -> axum::Router<SharedState> {
    use axum::routing::{any, get, post};
    axum::Router::new()
        .route("/v1/chat/completions", any(post_only))
        .route("/v1/embeddings", any(post_only))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{*id}", get(openai::model))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/messages", any(post_only))
        .route("/v1/responses", any(post_only))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/async/responses", post(jobs::submit_responses))
        .route(
            "/v1/async/chat/completions",
            post(jobs::submit_chat_completions),
        )
        .route("/v1/async/embeddings", post(jobs::submit_embeddings))
        .route("/v1/async/messages", post(jobs::submit_messages))
        .route("/v1/jobs/{id}", get(jobs::get_job).delete(jobs::cancel_job))
        // Files and batches (issue 22).
        .route("/v1/files", post(files::upload).get(files::list))
        .route("/v1/files/{id}", get(files::get).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", post(batches::create).get(batches::list))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .merge(passthrough::routes())
}

/// The model calls (`POST /v1/chat/completions`, `/v1/messages`, `/v1/embeddings`,
/// `/v1/responses`) are served by `app::HttpService` before the router; the router sees their
/// paths only with another method: 405 with `allow: POST`, in the path's error shape.
async fn post_only(req: Request) -> Response {
    let path = req.uri().path();
    let mut r = Error::invalid(format!("{} {path} is not served; use POST", req.method()))
        .into_response_for(crate::api::context::error_format_of(path));
    *r.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static("POST"),
    );
    r
}

/// Most of an oversized upload that is read (and dropped) so the client sees the 413 instead of
/// a broken pipe; past this, or after [`DRAIN_TIME`], the connection is simply closed.
const DRAIN_MAX: usize = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Read a request body, answering 413 over `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, Error> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    if declared.is_some_and(|len| len > limit) {
        drain(&mut body).await;
        return Err(Error::TooLarge { limit });
    }
    // A body that arrives in one frame (most do) is kept as it came, without a copy.
    let mut gathered = crate::frames::Gather::default();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::invalid(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let seen = gathered.len() + data.len();
        if seen > limit_usize {
            drain(&mut body).await;
            return Err(Error::TooLarge { limit });
        }
        let cap = declared.map_or(seen, |l| usize::try_from(l).unwrap_or(seen));
        gathered.push(data, cap);
    }
    Ok(gathered.finish())
}

async fn drain(body: &mut Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(d) = frame.into_data() {
                seen += d.len();
                if seen > DRAIN_MAX {
                    break;
                }
            }
        }
    })
    .await;
}

/// What is forwarded upstream with every attempt.
pub fn call_ctx(request_id: &std::sync::Arc<str>, headers: &HeaderMap) -> CallCtx {
    // One pass over the request's few headers: looking up a name the map does not hold hashes
    // it byte by byte (~200 instructions each); comparing names stops at the kind of name or
    // its length for nearly every header.
    let (mut traceparent, mut anthropic_beta) = (None, None);
    for (name, value) in headers {
        if *name == crate::headers::TRACEPARENT {
            traceparent.get_or_insert_with(|| value.clone());
        } else if *name == crate::headers::ANTHROPIC_BETA {
            anthropic_beta.get_or_insert_with(|| value.clone());
        }
    }
    CallCtx {
        request_id: request_id.clone(),
        traceparent,
        anthropic_beta,
        usage: None,
    }
}

/// The body of the pass-through handlers (served by the router): the request's usage cell from
/// its extensions, then [`serve_request`].
pub async fn serve_call(
    state: SharedState,
    caller: Caller,
    request_id: std::sync::Arc<str>,
    req: Request,
    endpoint: Endpoint,
) -> Response {
    let usage = req
        .extensions()
        .get::<std::sync::Arc<crate::record::RequestRecord>>()
        .cloned();
    let started = tokio::time::Instant::now();
    serve_request(state, caller, request_id, usage, req, endpoint, started).await
}

/// A model call with the request's usage cell (the direct path of `app::HttpService`, and the
/// pass-through handlers), `started` when the request came in (the request context's clock
/// reading, not a new one). The body is read and the call run under one deadline timer.
pub async fn serve_request(
    state: SharedState,
    caller: Caller,
    request_id: std::sync::Arc<str>,
    usage: Option<std::sync::Arc<crate::record::RequestRecord>>,
    req: Request,
    endpoint: Endpoint,
    started: tokio::time::Instant,
) -> Response {
    let deadline = deadline_after(&state, started);
    let (parts, body) = req.into_parts();
    let limit = state.runtime.load().config.server.max_body_size.0;
    let mut out = CallOut::default();
    let mut log = log_start(
        &state,
        &caller,
        &request_id,
        endpoint,
        started,
        usage.as_ref(),
    );
    let usage = usage.or_else(|| log.as_ref().map(|l| l.2.usage.clone()));
    // Made in its box: moved into the timeout and the timeout into this future, the call's
    // whole future (several KiB) was copied twice on every request.
    let steps = crate::boxed::in_place(|| async {
        let body = read_body(&parts.headers, body, limit).await?;
        keep_body(&mut log, &body);
        let call = CallIn {
            caller: &caller,
            request_id: &request_id,
            headers: &parts.headers,
            endpoint,
            started,
            deadline,
            usage: &usage,
        };
        call_steps(&state, call, body, &mut out).await
    });
    let result = tokio::time::timeout_at(deadline, steps).await;
    logged(
        log,
        out.finish(result, endpoint.error_format(), usage.as_deref()),
    )
}

/// Parse a read body, run the pipeline under the whole-request deadline (counted from
/// `started`), render errors in the endpoint's shape, give the request's usage cell the model
/// label for metrics and logs. Also what a job worker runs, with the stored body (no usage cell).
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, each used once"
)]
pub async fn run_call(
    state: SharedState,
    caller: &Caller,
    request_id: &str,
    headers: &HeaderMap,
    body: Bytes,
    endpoint: Endpoint,
    started: tokio::time::Instant,
    usage: Option<std::sync::Arc<crate::record::RequestRecord>>,
) -> Response {
    let deadline = started + state.runtime.load().config.server.request_timeout.get();
    let request_id: std::sync::Arc<str> = request_id.into();
    let mut out = CallOut::default();
    let mut log = log_start(
        &state,
        caller,
        &request_id,
        endpoint,
        started,
        usage.as_ref(),
    );
    keep_body(&mut log, &body);
    let usage = usage.or_else(|| log.as_ref().map(|l| l.2.usage.clone()));
    let call = CallIn {
        caller,
        request_id: &request_id,
        headers,
        endpoint,
        started,
        deadline,
        usage: &usage,
    };
    let result = tokio::time::timeout_at(deadline, call_steps(&state, call, body, &mut out)).await;
    logged(
        log,
        out.finish(result, endpoint.error_format(), usage.as_deref()),
    )
}

/// A call's request-log start: the log, whether bodies are kept, what is known now (`None` with
/// the log off). Every model call passes here and through [`logged`]: API calls, async job runs
/// and batch lines alike.
type LogStart = (
    std::sync::Arc<crate::request_log::RequestLog>,
    bool,
    crate::request_log::Start,
);

fn log_start(
    state: &SharedState,
    caller: &Caller,
    request_id: &std::sync::Arc<str>,
    endpoint: Endpoint,
    started: tokio::time::Instant,
    usage: Option<&std::sync::Arc<crate::record::RequestRecord>>,
) -> Option<LogStart> {
    let log = state.request_log.as_ref()?;
    let bodies = state.runtime.load().config.request_log.bodies;
    Some((
        log.clone(),
        bodies,
        crate::request_log::Start {
            request_id: request_id.clone(),
            endpoint: endpoint.path(),
            key: caller.key.as_ref().map(|k| k.name.clone()),
            started,
            created_at: crate::clock::unix_secs(),
            request_body: None,
            // The request's own cell, or one of its own (a job's run has none).
            usage: usage.map_or_else(
                || std::sync::Arc::new(crate::record::RequestRecord::new()),
                std::sync::Arc::clone,
            ),
        },
    ))
}

/// With `request_log.bodies`, keep the request's body for its entry.
fn keep_body(log: &mut Option<LogStart>, body: &Bytes) {
    if let Some((_, true, start)) = log {
        start.request_body = Some(body.clone());
    }
}

/// The answer, logged when its body ends.
fn logged(log: Option<LogStart>, resp: Response) -> Response {
    match log {
        Some((log, bodies, start)) => crate::request_log::tap(&log, bodies, start, resp),
        None => resp,
    }
}

/// What a call is given besides its body.
struct CallIn<'a> {
    caller: &'a Caller,
    request_id: &'a std::sync::Arc<str>,
    headers: &'a HeaderMap,
    endpoint: Endpoint,
    started: tokio::time::Instant,
    deadline: tokio::time::Instant,
    usage: &'a Option<std::sync::Arc<crate::record::RequestRecord>>,
}

/// What a call learns on its way that its answer carries even when the deadline cut it short:
/// the configured model it named (a metrics and log label) and the caller's rate-limit headers.
#[derive(Default)]
struct CallOut {
    label: Option<std::sync::Arc<str>>,
    rate: Option<pipeline::RateHeaders>,
}

impl CallOut {
    /// The answer: the call's, its error in the endpoint's shape, or a timeout; labelled.
    fn finish(
        self,
        result: Result<Result<Response, Error>, tokio::time::error::Elapsed>,
        flavor: Format,
        usage: Option<&crate::record::RequestRecord>,
    ) -> Response {
        let mut resp = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => e.into_response_for(flavor),
            Err(_) => Error::Timeout.into_response_for(flavor),
        };
        // A job worker's call has no usage cell: nothing logs its label.
        if let (Some(model), Some(u)) = (self.label, usage) {
            u.set_model(model);
        }
        if let Some(headers) = self.rate {
            let own = crate::headers::OwnHeaders::on(&mut resp);
            for (name, value) in headers {
                own.set(name, value);
            }
        }
        resp
    }
}

/// The steps of a call, without its deadline: parse the body, run the pipeline.
async fn call_steps(
    state: &SharedState,
    call: CallIn<'_>,
    body: Bytes,
    out: &mut CallOut,
) -> Result<Response, Error> {
    let CallIn {
        caller, headers, ..
    } = call;
    let rt = state.runtime.load_full();
    // Chat bodies are logged by the pipeline after the guardrails (masked, redacted).
    if rt.config.telemetry.log_bodies && matches!(call.endpoint, Endpoint::Embeddings) {
        crate::telemetry::log_request_body(call.request_id, &body);
    }
    let mut ctx = call_ctx(call.request_id, headers);
    ctx.usage = call.usage.clone();
    match call.endpoint {
        Endpoint::Chat(format) => {
            let head = match format {
                Format::OpenAi => wire::parse_openai_chat_counting(&body, |model| {
                    pipeline::counts_openai_tokens(&rt, caller, model)
                })?,
                Format::Anthropic => wire::parse_anthropic_messages(&body)?,
            };
            if let Some(label) = rt.model_label(&head.model) {
                out.label = Some(label);
            }
            crate::telemetry::record_request(&head.model, head.max_tokens, &body);
            let call = ChatCall {
                caller,
                headers,
                client: format,
                head: &head,
                body: &body,
                deadline: call.deadline,
                ctx: &ctx,
                started: call.started,
            };
            pipeline::chat(&rt, &state.services, call, &mut out.rate).await
        }
        // Boxed: their futures are larger than chat's, and this future's size is the largest of
        // its branches, copied whole on every request as it is moved into its caller's.
        Endpoint::Responses => Box::pin(responses::call(state, &rt, call, &ctx, body, out)).await,
        Endpoint::PassThrough(op) => {
            Box::pin(passthrough::call(state, &rt, op, call, &ctx, body, out)).await
        }
        Endpoint::Embeddings => {
            let head = wire::parse_embeddings(&body)?;
            if let Some(label) = rt.model_label(&head.model) {
                out.label = Some(label);
            }
            crate::telemetry::record_request(&head.model, None, &body);
            pipeline::embeddings(
                &rt,
                &state.services,
                caller,
                headers,
                &body,
                &head,
                call.deadline,
                &ctx,
                &mut out.rate,
            )
            .await
        }
    }
}
