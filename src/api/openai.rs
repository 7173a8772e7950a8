//! `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`.

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Endpoint, serve_call};
use crate::app::{RequestId, SharedState};
use crate::auth::Caller;
use crate::pipeline;
use crate::wire::Format;

pub async fn chat_completions(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    serve_call(state, caller, id, req, Endpoint::Chat(Format::OpenAi)).await
}

pub async fn responses(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    serve_call(state, caller, id, req, Endpoint::Responses).await
}

pub async fn embeddings(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    serve_call(state, caller, id, req, Endpoint::Embeddings).await
}

pub async fn models(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let rt = state.runtime.load();
    let data: Vec<_> = pipeline::visible_models(&rt, &caller)
        .map(|m| json!({"id": m, "object": "model", "created": rt.loaded_at, "owned_by": "ai-gateway"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
