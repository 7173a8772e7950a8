//! `POST /v1/async/chat/completions`, `/v1/async/embeddings`, `/v1/async/messages` (202 with the
//! job), `GET /v1/jobs/{id}`, `DELETE /v1/jobs/{id}`.
//!
//! A submission is checked like the synchronous request (key, body, model, permission, budget,
//! webhook URL) and answered only once the job is stored. A streaming request becomes a
//! non-streaming one (`"stream": false`): a job's result is one JSON body.

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::read_body;
use crate::api::context::{RequestId, SharedState};
use crate::api::error::Render;
use crate::auth::Caller;
use crate::error::Error;
use crate::jobs::{Cancel, Job, JobStatus, NewJob, SubmitError, WebhookState, WebhookStatus};
use crate::wire::Endpoint;
use crate::wire::{self, Format};

/// Request headers a job keeps, because the pipeline reads them.
const KEPT_HEADERS: &[&str] = &[
    "cache-control",
    "x-gateway-cache-ttl",
    "traceparent",
    "tracestate",
    "anthropic-beta",
];

pub async fn submit_chat_completions(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    submit(state, caller, id, req, Endpoint::Chat(Format::OpenAi)).await
}

pub async fn submit_embeddings(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    submit(state, caller, id, req, Endpoint::Embeddings).await
}

pub async fn submit_messages(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    submit(state, caller, id, req, Endpoint::Chat(Format::Anthropic)).await
}

/// `POST /v1/async/responses`.
pub async fn submit_responses(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    submit(state, caller, id, req, Endpoint::Responses).await
}

/// An error answer with another status than the error's own (404 for jobs).
fn with_status(e: Error, flavor: Format, status: StatusCode) -> Response {
    let mut r = e.into_response_for(flavor);
    *r.status_mut() = status;
    r
}

/// The body with `"stream"` false and `stream_options` gone, when it asked for a stream.
fn without_stream(body: Bytes) -> Result<Bytes, Error> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("the request body is not a JSON object: {e}")))?;
    v.insert("stream".to_owned(), Value::Bool(false));
    v.remove("stream_options");
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(e.to_string()))
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

async fn submit(
    state: SharedState,
    caller: Caller,
    request_id: std::sync::Arc<str>,
    req: Request,
    endpoint: Endpoint,
) -> Response {
    let flavor = endpoint.error_format();
    let usage = req
        .extensions()
        .get::<std::sync::Arc<crate::record::RequestRecord>>()
        .cloned();
    let mut label = None;
    let result = submit_inner(&state, &caller, request_id, req, endpoint, &mut label).await;
    if let (Some(m), Some(u)) = (label, usage) {
        u.set_model(m);
    }
    match result {
        Ok(r) => r,
        Err(e) => e.into_response_for(flavor),
    }
}

async fn submit_inner(
    state: &SharedState,
    caller: &Caller,
    request_id: std::sync::Arc<str>,
    req: Request,
    endpoint: Endpoint,
    label: &mut Option<std::sync::Arc<str>>,
) -> Result<Response, Error> {
    let Some(jobs) = state.jobs.get() else {
        return Err(Error::unavailable(
            "async jobs are not available: the job store could not be opened (see the gateway's log)",
        ));
    };
    let (parts, body) = req.into_parts();
    let rt = state.runtime.load_full();
    let body = read_body(&parts.headers, body, rt.config.server.max_body_size.0).await?;
    let (model, stream) = match endpoint {
        Endpoint::Chat(Format::OpenAi) => {
            let h = wire::parse_openai_chat(&body)?;
            (h.model, h.stream)
        }
        Endpoint::Chat(Format::Anthropic) => {
            let h = wire::parse_anthropic_messages(&body)?;
            (h.model, h.stream)
        }
        Endpoint::Embeddings => (wire::parse_embeddings(&body)?.model, false),
        Endpoint::Responses => crate::wire::parse_responses_head(&body)?,
        Endpoint::PassThrough(op) => {
            return Err(Error::invalid(format!("{} has no async form", op.path())));
        }
    };
    if !rt.has_model(&model) {
        return Err(Error::ModelNotFound(model));
    }
    *label = rt.model_label(&model);
    caller.check_model(&model)?;
    // limits: check budget at submission
    if let Some(k) = &caller.key
        && let Some(budget) = k.budget_usd
    {
        let spent = state
            .services
            .ledger
            .spend
            .totals(&k.id, k.period())
            .await
            .spend_usd;
        if spent >= budget {
            metrics::counter!(crate::metrics::RATE_LIMITED, "reason" => "budget").increment(1);
            return Err(Error::BudgetExceeded {
                retry_after: std::time::Duration::from_millis(
                    crate::limits::spend::until_period_end(k.period()),
                ),
            });
        }
    }
    let webhook = match header_str(&parts.headers, "x-webhook-url") {
        Some(url) => {
            let allow = rt.config.jobs.webhook.allow_private_networks;
            let url = crate::webhooks::check_url(url, allow)
                .await
                .map_err(Error::invalid)?;
            Some(WebhookState {
                url: url.to_string(),
                status: WebhookStatus::Pending,
                attempts: 0,
                last_error: None,
                next_attempt_at: None,
            })
        }
        None => None,
    };
    let idempotency_key = match header_str(&parts.headers, "idempotency-key") {
        Some(k) if k.len() > 255 => {
            return Err(Error::invalid(
                "Idempotency-Key is longer than 255 characters",
            ));
        }
        Some(k) => Some(k.to_owned()),
        None => None,
    };
    let body = if stream { without_stream(body)? } else { body };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|n| header_str(&parts.headers, n).map(|v| ((*n).to_owned(), v.to_owned())))
        .collect();
    let path = endpoint.path();
    let job = Job {
        id: crate::jobs::new_job_id(),
        status: JobStatus::Queued,
        endpoint: path.to_owned(),
        model,
        caller: caller.name().to_owned(),
        caller_id: caller.id().to_owned(),
        request_id: request_id.to_string(),
        created_at: crate::clock::unix_secs(),
        started_at: None,
        finished_at: None,
        attempts: 0,
        result: None,
        error: None,
        webhook,
        headers,
        idempotency_key,
        result_in_object_store: false,
        slot: None,
    };
    drop(rt);
    let submitted = jobs
        .queue
        .submit(NewJob { job, body })
        .await
        .map_err(|e| match e {
            SubmitError::Store(e) => {
                tracing::warn!(error = %e, "could not store a job");
                Error::unavailable(format!(
                    "the job could not be stored ({e}); retry with the same Idempotency-Key"
                ))
            }
        })?;
    let mut resp = (StatusCode::ACCEPTED, axum::Json(submitted.job.public())).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{}", submitted.job.id)) {
        h.insert(header::LOCATION, v);
    }
    if submitted.replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

fn not_found(id: &str) -> Response {
    with_status(
        Error::invalid(format!("no job {id} for this key")),
        Format::OpenAi,
        StatusCode::NOT_FOUND,
    )
}

pub async fn get_job(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(jobs) = state.jobs.get() else {
        return Error::unavailable("async jobs are not available")
            .into_response_for(Format::OpenAi);
    };
    if !crate::jobs::valid_job_id(&id) {
        return not_found(&id);
    }
    match jobs.queue.get(&id).await {
        Ok(Some(job)) if job.visible_to(&caller) => axum::Json(job.public()).into_response(),
        Ok(_) => not_found(&id),
        Err(e) => Error::unavailable(format!("the job store is unavailable: {e}"))
            .into_response_for(Format::OpenAi),
    }
}

pub async fn cancel_job(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(jobs) = state.jobs.get() else {
        return Error::unavailable("async jobs are not available")
            .into_response_for(Format::OpenAi);
    };
    if !crate::jobs::valid_job_id(&id) {
        return not_found(&id);
    }
    let ttl = state.runtime.load().config.jobs.result_ttl.get();
    match jobs.queue.cancel(&id, &caller, ttl).await {
        Ok(Cancel::Cancelled(job)) => {
            crate::jobs::worker::count_end(&job);
            axum::Json(job.public()).into_response()
        }
        Ok(Cancel::Conflict(job)) => Error::Conflict {
            message: format!(
                "job {id} is {}; only a queued job can be cancelled",
                job.status.as_str()
            ),
            code: None,
        }
        .into_response_for(Format::OpenAi),
        Ok(Cancel::NotFound) => not_found(&id),
        Err(e) => Error::unavailable(format!("the job store is unavailable: {e}"))
            .into_response_for(Format::OpenAi),
    }
}
