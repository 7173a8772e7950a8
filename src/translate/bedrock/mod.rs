//! OpenAI Chat Completions (the pivot) <-> AWS Bedrock Converse / ConverseStream, as pure
//! functions over bytes.
//!
//! - [`chat_request_to_bedrock`]: a chat request -> a `Converse` body (`request.rs`).
//! - [`bedrock_response_to_chat`]: a `Converse` answer -> a `chat.completion`
//!   (`response.rs`).
//! - [`BedrockToChatStream`]: `ConverseStream` events (already decoded from AWS event-stream
//!   frames by `providers::aws::eventstream`) -> chunks (`stream.rs`).
//! - [`error_from_bedrock`]: Bedrock's error body and `x-amzn-errortype` header.
//!
//! The model is in Bedrock's URL, not its body. `docs/providers/bedrock.md` has the mapping.

mod request;
mod response;
mod stream;

pub use request::chat_request_to_bedrock;
pub use response::{bedrock_response_to_chat, error_from_bedrock};
pub use stream::{BedrockToChatStream, error_fault, exception_fault};

use serde::Deserialize;

/// Converse `stopReason` -> OpenAI `finish_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence and anything new
        _ => "stop",
    }
}

/// A Bedrock exception name (`ThrottlingException`, or `throttlingException` as the stream's
/// `:exception-type` spells it) -> the error type a client sees.
fn error_type(exception: &str) -> &'static str {
    let name = exception.split(':').next().unwrap_or(exception);
    let lower = |s: &str| s.eq_ignore_ascii_case(name);
    if lower("ValidationException") {
        "invalid_request_error"
    } else if lower("AccessDeniedException") {
        "permission_error"
    } else if lower("UnrecognizedClientException")
        || lower("InvalidSignatureException")
        || lower("IncompleteSignature")
        || lower("MissingAuthenticationTokenException")
        || lower("ExpiredTokenException")
    {
        "authentication_error"
    } else if lower("ResourceNotFoundException") {
        "not_found_error"
    } else if lower("ThrottlingException") || lower("ServiceQuotaExceededException") {
        "rate_limit_error"
    } else {
        // InternalServerException, ServiceUnavailableException, ModelTimeoutException,
        // ModelErrorException, ModelNotReadyException, ModelStreamErrorException, …
        "api_error"
    }
}

/// Converse `usage`.
#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct ConverseUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
}

impl ConverseUsage {
    /// OpenAI usage: Bedrock's `inputTokens` leaves out cache reads and writes, OpenAI's
    /// `prompt_tokens` counts them.
    fn to_openai(self) -> super::pivot::answer::Usage {
        super::pivot::answer::Usage::new(
            self.input_tokens
                .unwrap_or(0)
                .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_write_input_tokens.unwrap_or(0)),
            self.output_tokens.unwrap_or(0),
            self.cache_read_input_tokens,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        for (b, o) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(b), o);
        }
    }

    #[test]
    fn error_types() {
        for (e, t) in [
            (
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "invalid_request_error",
            ),
            ("throttlingException", "rate_limit_error"),
            ("AccessDeniedException", "permission_error"),
            ("UnrecognizedClientException", "authentication_error"),
            ("ResourceNotFoundException", "not_found_error"),
            ("modelStreamErrorException", "api_error"),
            ("ServiceUnavailableException", "api_error"),
        ] {
            assert_eq!(error_type(e), t, "{e}");
        }
    }

    #[test]
    fn usage_counts_cache_as_prompt() {
        let u: ConverseUsage = serde_json::from_str(
            r#"{"inputTokens":10,"outputTokens":5,"totalTokens":135,"cacheReadInputTokens":100,"cacheWriteInputTokens":20}"#,
        )
        .expect("parses");
        assert_eq!(
            u.to_openai(),
            super::super::pivot::answer::Usage::new(130, 5, Some(100), None)
        );
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod snapshot_tests;
