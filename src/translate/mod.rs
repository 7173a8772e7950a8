//! OpenAI Chat Completions <-> Anthropic Messages translation, as pure functions over bytes.
//!
//! - [`chat_request_to_messages`] / [`messages_request_to_chat`]: request bodies.
//! - [`messages_response_to_chat`] / [`chat_response_to_messages`]: non-streaming answers.
//! - [`MessagesToChatStream`] / [`ChatToMessagesStream`]: streams, one upstream event at a time,
//!   written straight into the caller's output buffer.
//! - [`error_from_anthropic`] / [`error_from_openai`]: upstream error bodies.
//!
//! What one API can say and the other cannot is dropped with a `debug` log, never an error;
//! `docs/translation.md` has the mapping table and the list of what is dropped. Request and
//! response bodies are parsed into borrowed structs and text is copied through as raw JSON (never
//! unescaped and re-escaped); the stream path avoids `serde_json::Value` altogether.

mod bedrock;
mod dropped;
mod gemini;
mod json;
mod pivot;
mod request;
mod response;
mod responses;
mod stream;
mod tool_ids;

pub use bedrock::{
    BedrockToChatStream, bedrock_response_to_chat, chat_request_to_bedrock, error_fault,
    error_from_bedrock, exception_fault,
};
pub use dropped::Dropped;
pub use gemini::{
    GeminiToChatStream, chat_request_to_gemini, embeddings_encoding_is_base64,
    embeddings_request_to_gemini, error_from_gemini, gemini_embeddings_to_openai,
    gemini_response_to_chat,
};
pub use pivot::chunks::StreamFault;
pub use request::{chat_request_to_messages, json_answer_tool, messages_request_to_chat};
pub use response::{
    chat_response_to_messages, error_from_anthropic, error_from_openai, messages_response_to_chat,
    messages_response_to_chat_json,
};
pub use responses::{
    ChatToResponsesStream, ResponseIds, ResponsesAnswer, ResponsesHead, ResponsesRequest,
    chat_response_to_responses, responses_request_to_chat,
};
pub use stream::{
    ChatToMessagesStream, MessagesToChatStream, TRUNCATED, anthropic_stream_error,
    openai_stream_error,
};

/// max_tokens sent to Anthropic when an OpenAI request has neither max_tokens nor
/// max_completion_tokens.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A body that cannot be translated. The message is client-facing (it becomes a 400).
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("{0}")]
    Invalid(String),
}

impl TranslateError {
    fn json(what: &str, e: &serde_json::Error) -> Self {
        TranslateError::Invalid(format!("invalid {what}: {e}"))
    }
}

/// A fresh id with the given prefix, for when the other side sent none.
fn new_id(prefix: &str) -> String {
    crate::ids::random_id(prefix)
}

/// OpenAI chunk/completion id for an Anthropic message id: `chatcmpl-` + the message id.
fn chat_id_from_msg(msg_id: &str) -> String {
    if msg_id.is_empty() {
        new_id("chatcmpl-")
    } else {
        format!("chatcmpl-{msg_id}")
    }
}

/// Anthropic message id for an OpenAI id: a `chatcmpl-msg_X` id made by this module turns back
/// into `msg_X`; any other id `chatcmpl-X` (or `X`) becomes `msg_X`.
fn msg_id_from_chat(chat_id: &str) -> String {
    let base = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    if base.is_empty() {
        new_id("msg_")
    } else if base.starts_with("msg_") {
        base.to_owned()
    } else {
        format!("msg_{base}")
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
fn finish_reason_from_stop(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new
        _ => "stop",
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
fn stop_reason_from_finish(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        // stop and anything new
        _ => "end_turn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways() {
        assert_eq!(chat_id_from_msg("msg_01ABC"), "chatcmpl-msg_01ABC");
        assert_eq!(msg_id_from_chat("chatcmpl-msg_01ABC"), "msg_01ABC");
        assert_eq!(
            msg_id_from_chat("chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"),
            "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
        );
        assert!(msg_id_from_chat("").starts_with("msg_"));
        assert!(chat_id_from_msg("").starts_with("chatcmpl-"));
    }

    #[test]
    fn reasoning_effort_becomes_claude_thinking() {
        let to = |body: &str| -> serde_json::Value {
            serde_json::from_slice(
                &chat_request_to_messages(body.as_bytes(), "claude", &mut Default::default())
                    .unwrap(),
            )
            .unwrap()
        };
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        let v = to(&format!(
            r#"{{{msgs},"reasoning_effort":"medium","temperature":0.2,"top_p":0.5}}"#
        ));
        assert_eq!(
            v["thinking"],
            serde_json::json!({"type":"enabled","budget_tokens":8192})
        );
        assert_eq!(v["max_tokens"], 8192 + DEFAULT_MAX_TOKENS);
        assert!(
            v.get("temperature").is_none() && v.get("top_p").is_none(),
            "{v}"
        );
        // A small max_tokens shrinks the budget; too small, no thinking.
        let v = to(&format!(
            r#"{{{msgs},"reasoning_effort":"high","max_tokens":5000}}"#
        ));
        assert_eq!(v["thinking"]["budget_tokens"], 4999);
        assert_eq!(v["max_tokens"], 5000);
        let v = to(&format!(
            r#"{{{msgs},"reasoning_effort":"low","max_tokens":800,"temperature":0.5}}"#
        ));
        assert!(v.get("thinking").is_none());
        assert_eq!(v["temperature"], 0.5);
        // none / minimal, or an unknown value: no thinking.
        for e in ["none", "minimal", "extreme"] {
            let v = to(&format!(r#"{{{msgs},"reasoning_effort":"{e}"}}"#));
            assert!(v.get("thinking").is_none(), "{e}");
        }
        // A forced tool becomes auto while Claude thinks.
        let v = to(&format!(
            r#"{{{msgs},"reasoning_effort":"low","tool_choice":"required","tools":[{{"type":"function","function":{{"name":"f","parameters":{{"type":"object"}}}}}}]}}"#
        ));
        assert_eq!(v["tool_choice"]["type"], "auto");
    }

    #[test]
    fn reasons() {
        for (a, o) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason_from_stop(a), o);
        }
        for (o, a) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("function_call", "tool_use"),
            ("content_filter", "refusal"),
        ] {
            assert_eq!(stop_reason_from_finish(o), a);
        }
    }
}

#[cfg(test)]
mod reasoning_tests;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod snapshot_tests;
