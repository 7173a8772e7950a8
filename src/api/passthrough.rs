//! The pass-through endpoints: `POST /v1/completions`, `/v1/images/generations`,
//! `/v1/audio/speech`, `/v1/audio/transcriptions` (multipart), `/v1/moderations`, `/v1/rerank`.
//! Each reads its body (413 over `server.max_body_size`), parses the few fields the gateway uses
//! (400) and runs `pipeline::passthrough` (the path embeddings take too): the same keys, model
//! permissions, limits, routing, fallbacks, metrics and spend as chat.

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;

use super::{CallIn, CallOut, Endpoint, serve_call};
use crate::api::context::{RequestId, SharedState};
use crate::auth::Caller;
use crate::error::Error;
use crate::pipeline::passthrough::{PassCall, pass_through};
use crate::providers::{CallCtx, Op};
use crate::wire;

/// The paths of the pass-through endpoints (refused, like the other model calls, while the
/// gateway drains).
pub const PATHS: [&str; 6] = [
    "/v1/completions",
    "/v1/images/generations",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/moderations",
    "/v1/rerank",
];

/// The routes of the pass-through endpoints (authentication is layered on by `app::router`).
pub fn routes() -> axum::Router<SharedState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/images/generations", post(images))
        .route("/v1/audio/speech", post(speech))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/moderations", post(moderations))
        .route("/v1/rerank", post(rerank))
}

macro_rules! handler {
    ($name:ident, $op:expr) => {
        async fn $name(
            State(state): State<SharedState>,
            Extension(caller): Extension<Caller>,
            Extension(RequestId(id)): Extension<RequestId>,
            req: Request,
        ) -> Response {
            serve_call(state, caller, id, req, Endpoint::PassThrough($op)).await
        }
    };
}

handler!(completions, Op::Completions);
handler!(images, Op::Images);
handler!(speech, Op::Speech);
handler!(transcriptions, Op::Transcriptions);
handler!(moderations, Op::Moderations);
handler!(rerank, Op::Rerank);

/// The fields a JSON request of `op` must have besides `model`.
fn required(op: Op) -> &'static [&'static str] {
    match op {
        Op::Completions | Op::Images => &["prompt"],
        Op::Speech => &["input", "voice"],
        Op::Moderations => &["input"],
        Op::Rerank => &["query", "documents"],
        _ => &[],
    }
}

/// A pass-through request once its body is read: the steps of `api::call_steps` for `op`.
pub(super) async fn call(
    state: &SharedState,
    rt: &crate::runtime::Runtime,
    op: Op,
    call: CallIn<'_>,
    ctx: &CallCtx,
    body: Bytes,
    out: &mut CallOut,
) -> Result<Response, Error> {
    let (head, body) = if op == Op::Transcriptions {
        let content_type = call
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        wire::parse_multipart(content_type, &body)?
    } else {
        (wire::parse_passthrough(&body, required(op))?, body)
    };
    if let Some(label) = rt.model_label(&head.model) {
        out.label = Some(label);
    }
    // An upload is not JSON: only its model is recorded.
    let recorded: &[u8] = if head.multipart { &[] } else { &body };
    crate::telemetry::record_request(&head.model, head.max_tokens, recorded);
    let pass = PassCall {
        op,
        caller: call.caller,
        headers: call.headers,
        head: &head,
        body: &body,
        deadline: call.deadline,
        ctx,
        started: call.started,
        cache: None,
    };
    pass_through(rt, &state.services, pass, &mut out.rate).await
}
