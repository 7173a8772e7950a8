//! `POST /v1/messages/count_tokens` (`POST /v1/messages` itself is served by `app::HttpService`
//! directly, through [`super::serve_request`]).

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{call_ctx, read_body};
use crate::api::context::{RequestId, SharedState};
use crate::api::error::Render;
use crate::auth::Caller;
use crate::error::{Error, UpstreamKind};
use crate::providers::{Op, UpstreamBody};
use crate::wire::Format;

/// How long a count waits for the tokenizer to be built (once per process, ~100 ms).
const TOKENIZER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `POST /v1/messages/count_tokens`: Anthropic's `{"input_tokens": N}` for any model. A model
/// with an Anthropic-type deployment asks that provider (its count is the real one); any other
/// model, or an Anthropic provider that cannot be reached, is counted by the gateway's tokenizer
/// (`o200k_base`, over the request translated to chat as it would be sent).
pub async fn count_tokens(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let rt = state.runtime.load_full();
    let result = async {
        let body = read_body(&parts.headers, body, rt.config.server.max_body_size.0).await?;
        let mut v: serde_json::Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| Error::invalid(format!("the request body is not a JSON object: {e}")))?;
        let model = v
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid("model: field required"))?
            .to_owned();
        let m = rt
            .models
            .get(&model)
            .ok_or_else(|| Error::ModelNotFound(model.clone()))?;
        caller.check_model(&model)?;
        if !v.get("messages").is_some_and(Value::is_array) {
            return Err(Error::invalid("messages: field required (an array)"));
        }
        if let Some(d) = m
            .deployments
            .iter()
            .find(|d| d.provider.format() == Format::Anthropic)
        {
            v.insert("model".to_owned(), Value::String(d.model.clone()));
            let out = serde_json::to_vec(&v).map_err(|e| Error::Internal(e.to_string()))?;
            let ctx = call_ctx(&id, &parts.headers);
            let timeout = m.timeout.unwrap_or(d.provider.timeout);
            match d
                .provider
                .send(
                    Op::CountTokens,
                    &d.model,
                    None,
                    out.into(),
                    false,
                    timeout,
                    &ctx,
                    &mut crate::translate::Dropped::default(),
                )
                .await
            {
                Ok(UpstreamBody::Full(b)) => return Ok(b),
                Ok(UpstreamBody::Stream(_)) => {}
                // The request's own fault; a provider without the endpoint (404) is counted here.
                Err(e) if matches!(e.kind, UpstreamKind::Status(400 | 413 | 422)) => {
                    return Err(Error::UpstreamRejected(e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "count_tokens upstream failed; counting with the gateway's tokenizer");
                }
            }
        }
        let chat = crate::translate::messages_request_to_chat(&body, &model)
            .map_err(|e| Error::invalid(e.to_string()))?;
        let bpe = ready_tokenizer().await.ok_or_else(|| Error::Unavailable {
            message: "the tokenizer is not ready yet; retry".to_owned(),
            retry_after: std::time::Duration::from_secs(1),
        })?;
        let n = crate::tokens::count_openai_chat_with(bpe, &chat)
            .ok_or_else(|| Error::invalid("the messages could not be read for counting"))?;
        Ok(bytes::Bytes::from(json!({"input_tokens": n}).to_string()))
    }
    .await;
    match result {
        Ok(b) => {
            let mut r = b.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => e.into_response_for(Format::Anthropic),
    }
}

/// The tokenizer, waiting (bounded) while it is built.
async fn ready_tokenizer() -> Option<&'static crate::tokens::Tokenizer> {
    let until = tokio::time::Instant::now() + TOKENIZER_WAIT;
    loop {
        if let Some(t) = crate::tokens::tokenizer() {
            return Some(t);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
