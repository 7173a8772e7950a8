//! OpenAI Chat Completions (the pivot) <-> Google's native Gemini API, as pure functions over
//! bytes.
//!
//! - [`chat_request_to_gemini`]: a chat request -> a `generateContent` /
//!   `streamGenerateContent` body (`request.rs`, JSON Schema cleaning in `schema.rs`).
//! - [`gemini_response_to_chat`]: a `GenerateContentResponse` -> a `chat.completion`
//!   (`response.rs`).
//! - [`GeminiToChatStream`]: `streamGenerateContent?alt=sse` `data:` payloads -> chunks
//!   (`stream.rs`).
//! - [`embeddings_request_to_gemini`] / [`gemini_embeddings_to_openai`]: `batchEmbedContents`
//!   (`embeddings.rs`).
//! - [`error_from_gemini`]: Google's error body.
//!
//! The model is in Gemini's URL, not its body. `docs/providers/gemini.md` has the mapping.

mod embeddings;
mod request;
mod response;
mod schema;
mod stream;
mod tree;
mod wire;

pub use embeddings::{
    embeddings_encoding_is_base64, embeddings_request_to_gemini, gemini_embeddings_to_openai,
};
pub use request::chat_request_to_gemini;
pub use response::{error_from_gemini, gemini_response_to_chat};
pub use stream::GeminiToChatStream;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Gemini `finishReason` -> OpenAI `finish_reason` (`tool_calls` when the candidate called a
/// function).
fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter",
        _ if called => "tool_calls",
        // STOP, OTHER, MALFORMED_FUNCTION_CALL, FINISH_REASON_UNSPECIFIED and anything new
        _ => "stop",
    }
}

/// Google's error `status` -> the error type a client sees.
fn error_type(status: &str) -> &'static str {
    match status {
        "UNAUTHENTICATED" => "authentication_error",
        "PERMISSION_DENIED" => "permission_error",
        "NOT_FOUND" => "not_found_error",
        "RESOURCE_EXHAUSTED" => "rate_limit_error",
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => "invalid_request_error",
        // INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, …
        _ => "api_error",
    }
}

/// Marker between the random part of a tool-call id and the thought signature it carries.
const SIG_MARK: &str = "_ts_";
/// `call_` + 32 hex digits.
const CALL_ID_LEN: usize = 5 + 32;

/// The id of a tool call Gemini made. Gemini names no ids, so one is made; a call's
/// `thoughtSignature` (which Gemini 3 requires back with the call in the next turn) rides in
/// the id, base64url-encoded so the id stays within `[A-Za-z0-9_-]`:
/// `call_<32 hex>_ts_<signature>`.
fn tool_call_id(signature: Option<&str>) -> String {
    let mut id = super::tool_ids::new_openai_id();
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        match STANDARD.decode(sig) {
            Ok(bytes) => {
                id.push_str(SIG_MARK);
                URL_SAFE_NO_PAD.encode_string(bytes, &mut id);
            }
            Err(_) => tracing::debug!("dropped a thought signature that is not base64"),
        }
    }
    id
}

/// The thought signature carried by an id made by [`tool_call_id`], as Gemini sent it.
fn signature_from_tool_call_id(id: &str) -> Option<String> {
    let rest = id.get(CALL_ID_LEN..)?.strip_prefix(SIG_MARK)?;
    if !id.starts_with("call_") || !id[5..CALL_ID_LEN].bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    URL_SAFE_NO_PAD
        .decode(rest)
        .ok()
        .map(|bytes| STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thought_signatures_ride_in_tool_call_ids() {
        // Bytes whose standard base64 has `+`, `/` and padding.
        let sig = STANDARD.encode([0xfb, 0xef, 0xff, 0x3e, 0x3f, 1, 2, 3, 4, 5]);
        assert!(
            sig.contains('+') && sig.contains('/') && sig.ends_with('='),
            "{sig}"
        );
        let id = tool_call_id(Some(&sig));
        assert!(id.starts_with("call_"));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{id}"
        );
        assert_eq!(signature_from_tool_call_id(&id).as_deref(), Some(&*sig));
        let plain = tool_call_id(None);
        assert_eq!(plain.len(), CALL_ID_LEN);
        assert_eq!(signature_from_tool_call_id(&plain), None);
        assert_eq!(tool_call_id(Some("not base64!")).len(), CALL_ID_LEN);
        // Other clients' ids carry nothing.
        for id in [
            "call_abc",
            "toolu_01_ts_AAAA",
            "call_DdmO9pD3xa9XTPNJ32zg2hcA_ts_AAAA",
            "",
        ] {
            assert_eq!(signature_from_tool_call_id(id), None, "{id}");
        }
    }

    #[test]
    fn reasons() {
        for (g, o) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("OTHER", "stop"),
        ] {
            assert_eq!(finish_reason(g, false), o);
        }
        assert_eq!(finish_reason("STOP", true), "tool_calls");
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod snapshot_tests;
