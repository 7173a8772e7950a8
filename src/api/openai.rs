//! `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`.

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{call_ctx, read_body};
use crate::app::{RequestId, SharedState, deadline};
use crate::auth::Caller;
use crate::error::{Error, Flavor};
use crate::pipeline::{self, ChatCall};
use crate::wire::{self, Format};

pub async fn chat_completions(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    let deadline = deadline(&state);
    let (parts, body) = req.into_parts();
    let fut = async {
        let rt = state.runtime.load_full();
        let body = read_body(&parts.headers, body, rt.config.server.max_body_size.0).await?;
        let head = wire::parse_openai_chat(&body)?;
        let ctx = call_ctx(&id, &parts.headers);
        pipeline::chat(
            &rt,
            &state.cache,
            ChatCall {
                caller: &caller,
                headers: &parts.headers,
                client: Format::OpenAi,
                head: &head,
                body: &body,
                deadline,
                ctx: &ctx,
            },
        )
        .await
    };
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response_for(Flavor::OpenAi),
        Err(_) => Error::Timeout.into_response_for(Flavor::OpenAi),
    }
}

pub async fn embeddings(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    let deadline = deadline(&state);
    let (parts, body) = req.into_parts();
    let fut = async {
        let rt = state.runtime.load_full();
        let body = read_body(&parts.headers, body, rt.config.server.max_body_size.0).await?;
        let ctx = call_ctx(&id, &parts.headers);
        pipeline::embeddings(
            &rt,
            &state.cache,
            &caller,
            &parts.headers,
            &body,
            deadline,
            &ctx,
        )
        .await
    };
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response_for(Flavor::OpenAi),
        Err(_) => Error::Timeout.into_response_for(Flavor::OpenAi),
    }
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
