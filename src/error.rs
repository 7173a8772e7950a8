//! The contract's error table as one enum (rendered in OpenAI's or Anthropic's shape by
//! `api::error`, the one place errors become HTTP answers).
//!
//! Every failure a client can see is an [`Error`]; `status()` and `kind()` come from api.md's
//! table. Messages never contain a key or a secret: upstream messages
//! are sanitised before they get here.

use std::time::Duration;

use http::StatusCode;

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
    /// The gateway's own configuration is wrong (an upstream 404 on the path itself): never the
    /// caller's fault, whatever the status.
    pub misconfigured: bool,
}

impl UpstreamError {
    pub fn new(provider: &str, kind: UpstreamKind, message: impl Into<String>) -> Self {
        Self {
            provider: provider.to_owned(),
            kind,
            retry_after: None,
            error_type: None,
            message: sanitize(&message.into()),
            misconfigured: false,
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
        !self.misconfigured
            && !self.is_retryable()
            && matches!(self.kind, UpstreamKind::Status(s)
                if (400..500).contains(&s) && s != 401 && s != 403)
    }
}

/// Strip anything that looks like a secret from a message that came from outside
/// ([`redact_secrets`]), and bound it to about 500 bytes.
pub fn sanitize(msg: &str) -> String {
    let mut out = redact_secrets(msg);
    if out.len() > 500 {
        let mut cut = 500;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Replace every secret-like word (a run of `[A-Za-z0-9_-]` that starts with `sk-`, `sk_` or
/// `whsec_`, or is 32 characters or longer) with `[redacted]`: the one secret scrubber of upstream
/// messages, logged bodies and webhook failures.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    while !rest.is_empty() {
        let start = rest.find(is_word).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let w = &rest[..end];
        let secret = w.starts_with("sk-")
            || w.starts_with("sk_")
            || w.starts_with("whsec_")
            || w.len() >= 32;
        out.push_str(if secret { "[redacted]" } else { w });
        rest = &rest[end..];
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
    /// A named thing that does not exist for this caller (a stored response): 404 with a
    /// message saying what.
    #[error("{0}")]
    NoSuch(String),
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

    /// 503, to be tried again in a second: a store or service the request needs cannot be
    /// reached now.
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable {
            message: msg.into(),
            retry_after: std::time::Duration::from_secs(1),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::ContentFiltered(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::NotFound | Self::NoSuch(_) => StatusCode::NOT_FOUND,
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
            Self::NoSuch(_) => ("invalid_request_error", None),
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

    pub fn retry_after(&self) -> Option<Duration> {
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
            crate::api::error::Render::into_response_for(e, crate::wire::Format::OpenAi)
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
