//! An attempt's failure as an `UpstreamError`: the transport's, a body that broke off, and an
//! upstream's error status with its body read (bounded) in the provider's own error format.

use futures_util::StreamExt;

use super::{Kind, Provider, http, native, parse_retry_after, quirks};
use crate::error::{UpstreamError, UpstreamKind};
use crate::translate;

impl Provider {
    pub(super) fn transport_error(&self, e: &http::SendError) -> UpstreamError {
        let kind = if e.connect {
            UpstreamKind::Connect
        } else {
            UpstreamKind::Protocol
        };
        UpstreamError::new(&self.name, kind, e.message.clone())
    }

    pub(super) fn body_error(&self, e: &(dyn std::error::Error + Send + Sync)) -> UpstreamError {
        UpstreamError::new(
            &self.name,
            UpstreamKind::Protocol,
            format!("the answer broke off: {}", crate::error::error_chain(e)),
        )
    }

    pub(super) async fn status_error(
        &self,
        resp: ::http::Response<http::UpstreamBody>,
        uri: &::http::Uri,
        model: &str,
    ) -> UpstreamError {
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(resp.headers());
        let amzn_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Bounded read of the error body.
        let mut body = Vec::new();
        let mut s = http_body_util::BodyDataStream::new(resp.into_body());
        while let Some(Ok(chunk)) = s.next().await {
            body.extend_from_slice(&chunk);
            if body.len() > 64 * 1024 {
                break;
            }
        }
        let parsed = match &self.kind {
            Kind::Anthropic => translate::error_from_anthropic(&body),
            Kind::Gemini => translate::error_from_gemini(&body),
            Kind::Bedrock { .. } => translate::error_from_bedrock(amzn_type.as_deref(), &body),
            _ => translate::error_from_openai(&body).or_else(|| quirks::error_from_other(&body)),
        };
        if status == 404 && native::path_not_found(&body, parsed.as_ref(), model) {
            return self.path_not_found(uri);
        }
        let (ty, msg) = parsed.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            (
                String::new(),
                if text.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    text
                },
            )
        });
        let msg = match &self.secret {
            Some(k) if k.len() >= 4 => msg.replace(k.as_str(), "[redacted]"),
            _ => msg,
        };
        let mut e = UpstreamError::new(
            &self.name,
            UpstreamKind::Status(status),
            format!("{} answered {status}: {msg}", self.name),
        );
        e.retry_after = retry_after;
        if !ty.is_empty() {
            e.error_type = Some(ty);
        }
        e
    }
}
