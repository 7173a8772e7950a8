//! `GET /v1/models`, `GET /v1/models/{id}` (the model calls themselves are served by
//! `app::HttpService` directly, through [`super::serve_request`]).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::context::SharedState;
use crate::api::error::Render;
use crate::auth::Caller;
use crate::error::Error;
use crate::pipeline;
use crate::wire::Format;

pub async fn models(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let rt = state.runtime.load();
    let names = pipeline::visible_models(&rt, &caller);
    if !anthropic_client(&headers) {
        let data: Vec<_> = names.map(|m| openai_model(m, rt.loaded_at)).collect();
        return axum::Json(json!({"object": "list", "data": data})).into_response();
    }
    // Anthropic's list shape (one page: every model this key may use).
    let data: Vec<_> = names.map(|m| anthropic_model(m, rt.loaded_at)).collect();
    let id_at =
        |v: Option<&serde_json::Value>| v.map_or(serde_json::Value::Null, |m| m["id"].clone());
    let (first_id, last_id) = (id_at(data.first()), id_at(data.last()));
    axum::Json(json!({"data": data, "has_more": false, "first_id": first_id, "last_id": last_id}))
        .into_response()
}

/// `GET /v1/models/{id}`: one model in the list's shape (Anthropic's with `anthropic-version`);
/// 404 `model_not_found` when it does not exist or the key may not use it.
pub async fn model(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let rt = state.runtime.load();
    let anthropic = anthropic_client(&headers);
    if !rt.has_model(&id) || !caller.may_use(&id) {
        let flavor = if anthropic {
            Format::Anthropic
        } else {
            Format::OpenAi
        };
        return Error::ModelNotFound(id).into_response_for(flavor);
    }
    let body = if anthropic {
        anthropic_model(&id, rt.loaded_at)
    } else {
        openai_model(&id, rt.loaded_at)
    };
    axum::Json(body).into_response()
}

/// Whether the request comes from an Anthropic client (it sends `anthropic-version`).
fn anthropic_client(headers: &HeaderMap) -> bool {
    headers.contains_key(crate::headers::ANTHROPIC_VERSION)
}

fn openai_model(name: &str, created: u64) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": created, "owned_by": "ai-gateway"})
}

fn anthropic_model(name: &str, created: u64) -> serde_json::Value {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(created);
    json!({"type": "model", "id": name, "display_name": name,
           "created_at": humantime::format_rfc3339_seconds(at).to_string()})
}
