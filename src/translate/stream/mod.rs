//! Streams, one upstream event at a time. Each event is parsed into a small borrowed struct and
//! the output frame is written straight into the caller's buffer; text and argument fragments
//! are copied as raw JSON string literals (never unescaped and re-escaped).
//! `to_chat.rs`: Anthropic events -> OpenAI chunks; `to_messages.rs`: OpenAI chunks ->
//! Anthropic events; this file: the error frames both write.

use super::json::write_str;

mod to_chat;
mod to_messages;

pub use to_chat::MessagesToChatStream;
pub use to_messages::ChatToMessagesStream;

const DONE: &[u8] = b"data: [DONE]\n\n";
/// The error message of a stream the upstream ended before the answer did.
pub const TRUNCATED: &str = "the upstream stream ended before the message was complete";

/// An error event in OpenAI's stream format, then `[DONE]`.
pub fn openai_stream_error(kind: &str, message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: {\"error\":{\"message\":");
    write_str(out, message);
    out.extend_from_slice(b",\"type\":");
    write_str(out, kind);
    out.extend_from_slice(b",\"param\":null,\"code\":null}}\n\n");
    out.extend_from_slice(DONE);
}

/// An error event in Anthropic's stream format.
pub fn anthropic_stream_error(kind: &str, message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":");
    write_str(out, kind);
    out.extend_from_slice(b",\"message\":");
    write_str(out, message);
    out.extend_from_slice(b"}}\n\n");
}
