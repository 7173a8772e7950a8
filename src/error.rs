//! The contract's error table as one enum, rendered in OpenAI's or Anthropic's shape.
//!
//! Every failure a client can see is an [`Error`]; `status()` and `kind()` come from api.md's
//! table. [`ApiError`] pairs an error with the API flavour of the endpoint that produced it and is
//! the only `IntoResponse` for errors. Messages never contain a key or a secret: upstream messages
//! are sanitised before they get here.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Which API's error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
}

/// What went wrong upstream, with whose fault it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// The per-attempt timeout passed.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
    /// The upstream answered something we could not understand, or the connection broke mid-answer.
    Protocol,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct UpstreamError {
    pub provider: String,
    pub kind: UpstreamKind,
    /// The upstream's `retry-after`, when it sent one.
    pub retry_after: Option<Duration>,
    /// The upstream's error type (e.g. `invalid_request_error`), when it sent one.
    pub error_type: Option<String>,
    /// Sanitised: no keys, bounded length.
    pub message: String,
}

impl UpstreamError {
    pub fn new(provider: &str, kind: UpstreamKind, message: impl Into<String>) -> Self {
        Self {
            provider: provider.to_owned(),
            kind,
            retry_after: None,
            error_type: None,
            message: sanitize(&message.into()),
        }
    }

    /// 429, 5xx (including Anthropic's 529), connect errors and timeouts are worth another attempt.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            UpstreamKind::Connect | UpstreamKind::Timeout | UpstreamKind::Protocol => true,
            UpstreamKind::Status(s) => s == 408 || s == 409 || s == 429 || s >= 500,
        }
    }

    /// A caller's mistake (400, 404 on the provider's model, content filter…) is passed back as is.
    /// An upstream 401/403 is the gateway's own credentials failing: not the caller's fault, so
    /// it is tried elsewhere and ends as a 502.
    pub fn is_caller_fault(&self) -> bool {
        !self.is_retryable()
            && matches!(self.kind, UpstreamKind::Status(s)
                if (400..500).contains(&s) && s != 401 && s != 403)
    }
}

/// Strip anything that looks like a secret from a message that came from outside, and bound it.
pub fn sanitize(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(512));
    for (i, word) in msg.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
        let secret_like = w.starts_with("sk-")
            || w.starts_with("sk_")
            || w.starts_with("whsec_")
            || (w.len() >= 32
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        if secret_like {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        if out.len() > 500 {
            out.truncate(500);
            out.push('…');
            break;
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    Requests,
    Tokens,
}

fn rate_message(reason: &LimitReason, retry_after: &Duration) -> String {
    let what = match reason {
        LimitReason::Requests => "requests per minute",
        LimitReason::Tokens => "tokens per minute",
    };
    format!(
        "rate limit reached for {what}; retry in {:.1}s",
        retry_after.as_secs_f64()
    )
}

/// A name the caller sent, as echoed in an error: at most [`ECHO_MAX`] characters, then `…`.
pub fn clip(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(ECHO_MAX) {
        None => std::borrow::Cow::Borrowed(name),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", &name[..end])),
    }
}

/// Characters of a caller's model name echoed in an error.
pub const ECHO_MAX: usize = 128;

/// The contract's error table.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(String),
    /// A guardrail with `action: block` refused the input; the message names the guardrail,
    /// never the matched text.
    #[error("{0}")]
    ContentFiltered(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("this key may not use the model \"{}\"", clip(.0))]
    ModelNotAllowed(String),
    #[error("the model \"{}\" does not exist; GET /v1/models lists the models this key may use", clip(.0))]
    ModelNotFound(String),
    #[error("the request body is larger than the {limit} bytes this gateway accepts")]
    TooLarge { limit: u64 },
    #[error("{}", rate_message(.reason, .retry_after))]
    RateLimited {
        reason: LimitReason,
        retry_after: Duration,
    },
    #[error("this key's spend budget for the period is used up")]
    BudgetExceeded { retry_after: Duration },
    /// Every attempt failed; `last` is the final upstream failure.
    #[error("every upstream attempt failed ({attempts} attempts); last: {last}")]
    Upstream { attempts: u32, last: UpstreamError },
    /// The upstream rejected the request as the caller's fault: passed back with its status.
    #[error("{}", .0.message)]
    UpstreamRejected(UpstreamError),
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    #[error("the request did not finish within its deadline")]
    Timeout,
    #[error("not found")]
    NotFound,
    /// The request clashes with the state of what it names (a key name taken by a live key,
    /// a job that can no longer be cancelled): 409.
    #[error("{message}")]
    Conflict {
        message: String,
        code: Option<&'static str>,
    },
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidRequest(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::ContentFiltered(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } | Self::BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamRejected(e) => match e.kind {
                UpstreamKind::Status(s) => {
                    StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST)
                }
                _ => StatusCode::BAD_REQUEST,
            },
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// (OpenAI `type`, OpenAI `code`). The Anthropic shape uses the type only.
    pub fn kind(&self) -> (&str, Option<&'static str>) {
        match self {
            Self::InvalidRequest(_) => ("invalid_request_error", None),
            Self::ContentFiltered(_) => ("invalid_request_error", Some("content_filter")),
            Self::Unauthenticated(_) => ("authentication_error", Some("invalid_api_key")),
            Self::ModelNotAllowed(_) => ("permission_error", Some("model_not_allowed")),
            Self::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            Self::NotFound => ("not_found_error", None),
            Self::Conflict { code, .. } => ("invalid_request_error", *code),
            Self::TooLarge { .. } => ("invalid_request_error", Some("request_too_large")),
            Self::RateLimited { .. } => ("rate_limit_error", Some("rate_limit_exceeded")),
            Self::BudgetExceeded { .. } => ("insufficient_quota", Some("budget_exceeded")),
            Self::Upstream { .. } => ("upstream_error", None),
            Self::UpstreamRejected(e) => (
                e.error_type.as_deref().unwrap_or("invalid_request_error"),
                None,
            ),
            Self::Unavailable { .. } => ("service_unavailable", None),
            Self::Timeout => ("timeout", None),
            Self::Internal(_) => ("internal_error", None),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. }
            | Self::BudgetExceeded { retry_after }
            | Self::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The message a client sees (internal details are logged, not shown).
    pub fn client_message(&self) -> String {
        match self {
            Self::Internal(_) => {
                "internal error in the gateway; the request id is in the x-request-id header"
                    .to_owned()
            }
            other => other.to_string(),
        }
    }

    pub fn into_response_for(self, flavor: Flavor) -> Response {
        ApiError {
            error: self,
            flavor,
        }
        .into_response()
    }
}

/// An error with the API flavour to render it in.
#[derive(Debug)]
pub struct ApiError {
    pub error: Error,
    pub flavor: Flavor,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let (ty, code) = self.error.kind();
        let message = self.error.client_message();
        let body = match self.flavor {
            Flavor::OpenAi => serde_json::json!({
                "error": {"message": message, "type": ty, "param": null, "code": code}
            }),
            Flavor::Anthropic => serde_json::json!({
                "type": "error",
                "error": {"type": anthropic_type(&self.error, ty), "message": message}
            }),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        if let Some(ra) = self.error.retry_after() {
            let secs = ra.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        } else if status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // Answers the same request would get again: the SDKs must not retry them.
        let no_retry = matches!(
            self.error,
            Error::BudgetExceeded { .. }
                | Error::InvalidRequest(_)
                | Error::ContentFiltered(_)
                | Error::ModelNotAllowed(_)
                | Error::ModelNotFound(_)
                | Error::TooLarge { .. }
                | Error::Unauthenticated(_)
                | Error::UpstreamRejected(_)
                | Error::Conflict { .. }
        );
        if no_retry {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Error::Internal(detail) = &self.error {
            tracing::error!(detail = %detail, "internal error");
        }
        resp.extensions_mut().insert(ErrorKind(ty.to_owned()));
        resp
    }
}

/// Put on error responses so the access log can name the error type.
#[derive(Debug, Clone)]
pub struct ErrorKind(pub String);

/// Anthropic's error types are a fixed set; map ours onto it.
fn anthropic_type(e: &Error, openai_type: &str) -> String {
    match e {
        Error::InvalidRequest(_)
        | Error::ContentFiltered(_)
        | Error::TooLarge { .. }
        | Error::ModelNotFound(_)
        | Error::Conflict { .. } => {
            if matches!(e, Error::ModelNotFound(_)) {
                "not_found_error".to_owned()
            } else {
                "invalid_request_error".to_owned()
            }
        }
        Error::Unauthenticated(_) => "authentication_error".to_owned(),
        Error::ModelNotAllowed(_) => "permission_error".to_owned(),
        Error::RateLimited { .. } | Error::BudgetExceeded { .. } => "rate_limit_error".to_owned(),
        Error::Upstream { .. } | Error::Internal(_) => "api_error".to_owned(),
        Error::Unavailable { .. } => "overloaded_error".to_owned(),
        Error::Timeout => "timeout_error".to_owned(),
        Error::NotFound => "not_found_error".to_owned(),
        Error::UpstreamRejected(_) => openai_type.to_owned(),
    }
}

/// An error with its causes, `: `-separated (no secrets: our URLs and errors carry none).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_model_names_are_clipped() {
        let long = "é".repeat(300);
        let msg = Error::ModelNotFound(long).to_string();
        assert!(
            msg.contains(&format!("\"{}…\"", "é".repeat(ECHO_MAX))),
            "{msg}"
        );
        assert!(msg.chars().count() < ECHO_MAX + 100, "{msg}");
        let exact = "m".repeat(ECHO_MAX);
        assert!(
            Error::ModelNotAllowed(exact.clone())
                .to_string()
                .contains(&format!("\"{exact}\""))
        );
    }

    #[test]
    fn sanitize_hides_keys() {
        let s = sanitize(
            "Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz012345. See docs",
        );
        assert!(!s.contains("abcdefghij"), "{s}");
        assert!(s.contains("[redacted]"));
        assert!(s.contains("Incorrect API key provided"));
    }

    #[test]
    fn answers_a_retry_cannot_change_say_so() {
        let no_retry = |e: Error| {
            e.into_response_for(Flavor::OpenAi)
                .headers()
                .get("x-should-retry")
                .map(|v| v.as_bytes().to_vec())
        };
        let rejected = UpstreamError::new("p", UpstreamKind::Status(400), "bad");
        assert_eq!(
            no_retry(Error::UpstreamRejected(rejected)).as_deref(),
            Some(&b"false"[..])
        );
        let taken = Error::Conflict {
            message: "taken".into(),
            code: Some("key_name_taken"),
        };
        assert_eq!(taken.status(), StatusCode::CONFLICT);
        assert_eq!(
            taken.kind(),
            ("invalid_request_error", Some("key_name_taken"))
        );
        assert_eq!(no_retry(taken).as_deref(), Some(&b"false"[..]));
        let failed = UpstreamError::new("p", UpstreamKind::Status(500), "boom");
        let upstream = Error::Upstream {
            attempts: 3,
            last: failed,
        };
        assert_eq!(no_retry(upstream), None);
        let limited = Error::RateLimited {
            reason: LimitReason::Tokens,
            retry_after: Duration::from_secs(2),
        };
        assert!(limited.to_string().contains("tokens per minute"));
        assert_eq!(no_retry(limited), None);
    }

    #[test]
    fn retryable_classification() {
        let e = |s| UpstreamError::new("p", UpstreamKind::Status(s), "x");
        assert!(e(429).is_retryable());
        assert!(e(500).is_retryable());
        assert!(e(529).is_retryable());
        assert!(!e(400).is_retryable());
        assert!(e(400).is_caller_fault());
        assert!(e(404).is_caller_fault());
        assert!(!e(401).is_caller_fault());
        assert!(!e(403).is_caller_fault());
        assert!(!e(503).is_caller_fault());
    }
}
