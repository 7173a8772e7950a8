//! Errors as HTTP answers: the one place an [`Error`] becomes a response, in the shape of the
//! API the endpoint speaks (OpenAI's `{"error": {...}}` or Anthropic's `{"type": "error", ...}`),
//! with `retry-after` and `x-should-retry` where the contract wants them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::wire::Format;

/// Render an error as the answer of an endpoint that speaks `format`.
pub trait Render {
    fn into_response_for(self, format: Format) -> Response;
}

impl Render for Error {
    fn into_response_for(self, format: Format) -> Response {
        ApiError {
            error: self,
            format,
        }
        .into_response()
    }
}

/// An error with the API format to render it in.
#[derive(Debug)]
struct ApiError {
    error: Error,
    format: Format,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let (ty, code) = self.error.kind();
        let message = self.error.client_message();
        let body = match self.format {
            Format::OpenAi => serde_json::json!({
                "error": {"message": message, "type": ty, "param": null, "code": code}
            }),
            Format::Anthropic => serde_json::json!({
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
                | Error::NoSuch(_)
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
        resp
    }
}

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
        Error::NotFound | Error::NoSuch(_) => "not_found_error".to_owned(),
        Error::UpstreamRejected(_) => openai_type.to_owned(),
    }
}
