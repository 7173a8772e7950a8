//! HTTP handlers, one module per API. Handlers are thin: read the body, parse the head, call
//! `pipeline`, render errors in their API's shape.

pub mod admin;
pub mod anthropic;
pub mod jobs;
pub mod openai;
pub mod ops;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::app::{ModelLabel, SharedState, deadline};
use crate::auth::Caller;
use crate::error::{Error, Flavor};
use crate::pipeline::{self, ChatCall};
use crate::providers::CallCtx;
use crate::wire::{self, Format};

/// Read a request body, answering 413 over `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, Error> {
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(Error::TooLarge { limit });
    }
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(Error::TooLarge { limit })
            } else {
                Err(Error::invalid(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
    }
}

/// What is forwarded upstream with every attempt.
pub fn call_ctx(request_id: &str, headers: &HeaderMap) -> CallCtx {
    CallCtx {
        request_id: request_id.to_owned(),
        traceparent: headers.get("traceparent").cloned(),
        anthropic_beta: headers.get("anthropic-beta").cloned(),
    }
}

/// Which operation a body-carrying endpoint performs.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Chat(Format),
    Embeddings,
}

/// The shared body of the chat, messages and embeddings handlers: read the body, then
/// [`run_call`].
pub async fn serve_call(
    state: SharedState,
    caller: Caller,
    request_id: String,
    req: Request,
    endpoint: Endpoint,
) -> Response {
    let flavor = endpoint.flavor();
    let started = tokio::time::Instant::now();
    let deadline = deadline(&state);
    let (parts, body) = req.into_parts();
    let limit = state.runtime.load().config.server.max_body_size.0;
    let body = match tokio::time::timeout_at(deadline, read_body(&parts.headers, body, limit)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return e.into_response_for(flavor),
        Err(_) => return Error::Timeout.into_response_for(flavor),
    };
    run_call(
        state,
        &caller,
        &request_id,
        &parts.headers,
        body,
        endpoint,
        started,
    )
    .await
}

impl Endpoint {
    /// The error shape of the endpoint.
    pub fn flavor(self) -> Flavor {
        match self {
            Endpoint::Chat(Format::Anthropic) => Flavor::Anthropic,
            _ => Flavor::OpenAi,
        }
    }
}

/// Parse a read body, run the pipeline under the whole-request deadline (counted from
/// `started`), render errors in the endpoint's shape, label the response with the model for
/// metrics and logs. Also what a job worker runs, with the stored body.
pub async fn run_call(
    state: SharedState,
    caller: &Caller,
    request_id: &str,
    headers: &HeaderMap,
    body: Bytes,
    endpoint: Endpoint,
    started: tokio::time::Instant,
) -> Response {
    let flavor = endpoint.flavor();
    let deadline = started + state.runtime.load().config.server.request_timeout.get();
    let rt = state.runtime.load_full();
    let mut label: Option<String> = None;
    let fut = async {
        let ctx = call_ctx(request_id, headers);
        match endpoint {
            Endpoint::Chat(format) => {
                let head = match format {
                    Format::OpenAi => wire::parse_openai_chat(&body)?,
                    Format::Anthropic => wire::parse_anthropic_messages(&body)?,
                };
                if rt.models.contains_key(&head.model) {
                    label = Some(head.model.clone());
                }
                let call = ChatCall {
                    caller,
                    headers,
                    client: format,
                    head: &head,
                    body: &body,
                    deadline,
                    ctx: &ctx,
                    started,
                };
                pipeline::chat(&rt, &state.cache, call).await
            }
            Endpoint::Embeddings => {
                let head = wire::parse_embeddings(&body)?;
                if rt.models.contains_key(&head.model) {
                    label = Some(head.model.clone());
                }
                pipeline::embeddings(
                    &rt,
                    &state.cache,
                    caller,
                    headers,
                    &body,
                    &head,
                    deadline,
                    &ctx,
                )
                .await
            }
        }
    };
    let result = tokio::time::timeout_at(deadline, fut).await;
    let mut resp = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response_for(flavor),
        Err(_) => Error::Timeout.into_response_for(flavor),
    };
    if let Some(model) = label {
        resp.extensions_mut().insert(ModelLabel(model));
    }
    resp
}
