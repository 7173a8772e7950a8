//! HTTP handlers, one module per API. Handlers are thin: read the body, parse the head, call
//! `pipeline`, render errors in their API's shape.

pub mod admin;
pub mod anthropic;
pub mod openai;
pub mod ops;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::error::Error;
use crate::providers::CallCtx;

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
