//! `POST /v1/messages`: Anthropic's Messages API for every configured model.

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::Response;

use super::{call_ctx, read_body};
use crate::app::{RequestId, SharedState, deadline};
use crate::auth::Caller;
use crate::error::{Error, Flavor};
use crate::pipeline::{self, ChatCall};
use crate::wire::{self, Format};

pub async fn messages(
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
        let head = wire::parse_anthropic_messages(&body)?;
        let ctx = call_ctx(&id, &parts.headers);
        pipeline::chat(
            &rt,
            &state.cache,
            ChatCall {
                caller: &caller,
                headers: &parts.headers,
                client: Format::Anthropic,
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
        Ok(Err(e)) => e.into_response_for(Flavor::Anthropic),
        Err(_) => Error::Timeout.into_response_for(Flavor::Anthropic),
    }
}
