//! `POST /v1/messages`: Anthropic's Messages API for every configured model.

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::Response;

use super::{Endpoint, serve_call};
use crate::app::{RequestId, SharedState};
use crate::auth::Caller;
use crate::wire::Format;

pub async fn messages(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    serve_call(state, caller, id, req, Endpoint::Chat(Format::Anthropic)).await
}
