//! The answer's body of a logged call: it passes every frame through untouched, notes the time
//! to a stream's first frame, keeps (bounded) the body of an error answer (for its message) or,
//! with `request_log.bodies`, of every answer, and writes the call's entry once the body ended
//! or was dropped, after the body it wraps (whose end settles the call's tokens and cost).

use std::sync::Arc;

use axum::response::Response;
use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{BODY_MAX, Entry, Label, RequestLog};

/// What is known of a call when it starts.
pub struct Start {
    pub request_id: Arc<str>,
    pub endpoint: &'static str,
    pub key: Option<Arc<str>>,
    pub started: Instant,
    pub created_at: u64,
    /// The request's body as received (kept only with `request_log.bodies`).
    pub request_body: Option<Bytes>,
    /// The call's usage cell: tokens, cost and labels, filled as the call runs.
    pub usage: Arc<crate::record::RequestRecord>,
}

/// Wrap `resp`'s body so the call is logged when it ends.
pub fn tap(log: &Arc<RequestLog>, bodies: bool, start: Start, resp: Response) -> Response {
    let status = resp.status().as_u16();
    let stream = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let keep = bodies || status >= 400;
    resp.map(|inner| {
        axum::body::Body::new(Tapped {
            inner,
            log: log.clone(),
            start: Some(start),
            status,
            stream,
            ttft: None,
            kept: keep.then(BytesMut::new),
            bodies,
        })
    })
}

struct Tapped {
    inner: axum::body::Body,
    log: Arc<RequestLog>,
    start: Option<Start>,
    status: u16,
    stream: bool,
    ttft: Option<u64>,
    kept: Option<BytesMut>,
    bodies: bool,
}

impl hyper::body::Body for Tapped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            let this = &mut *self;
            if this.stream
                && this.ttft.is_none()
                && let Some(s) = &this.start
            {
                this.ttft = Some(ms(s.started.elapsed()));
            }
            if let (Some(kept), Some(data)) = (this.kept.as_mut(), frame.data_ref()) {
                let room = (BODY_MAX + 1).saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for Tapped {
    fn drop(&mut self) {
        // The wrapped body first: a stream's end settles its tokens and cost.
        drop(std::mem::take(&mut self.inner));
        let Some(start) = self.start.take() else {
            return;
        };
        let latency_ms = ms(start.started.elapsed());
        let snap = start.usage.snapshot();
        let tokens = start.usage.tokens();
        let kept = self.kept.take().map(BytesMut::freeze);
        let error = if self.status >= 400 {
            kept.as_deref().and_then(error_message)
        } else {
            None
        };
        let (request, response) = if self.bodies {
            // The body the upstream saw: masked by the guardrails when they changed it. Then the
            // answer as the client got it, unless input values were masked (the answer has them
            // restored, so it is not kept).
            let masked = snap.guarded_body.is_some();
            let req = snap.guarded_body.or(start.request_body);
            (
                req.as_deref().map(body_text),
                if masked {
                    None
                } else {
                    kept.as_deref().map(body_text)
                },
            )
        } else {
            (None, None)
        };
        self.log.record(Entry {
            id: Label::Shared(start.request_id),
            created_at: start.created_at,
            endpoint: Label::Static(start.endpoint),
            key: start.key.map(Label::Shared),
            model: snap.model,
            provider: snap.provider,
            deployment_model: snap.deployment_model,
            status: self.status,
            latency_ms,
            ttft_ms: self.ttft,
            attempts: snap.attempts,
            cache: snap.cache,
            input_tokens: tokens.map(|t| t.0),
            output_tokens: tokens.map(|t| t.1),
            cost_usd: start.usage.cost(),
            error,
            request,
            response,
        });
    }
}

/// `error.message` of an OpenAI or Anthropic error body (secrets redacted, as everywhere).
fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: String,
    }
    let msg = match serde_json::from_slice::<Outer>(body) {
        Ok(o) => o.error.message,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
            let t = text.trim();
            if t.is_empty() {
                return None;
            }
            t.to_owned()
        }
    };
    Some(crate::error::redact_secrets(&msg))
}

/// A body as kept in the log: bounded, secret-like words redacted.
fn body_text(body: &[u8]) -> String {
    let cut = body.len().min(BODY_MAX);
    let mut text = crate::error::redact_secrets(&String::from_utf8_lossy(&body[..cut]));
    if body.len() > BODY_MAX {
        text.push_str("…[truncated]");
    }
    text
}
