//! The Response object and its output items, written straight into a buffer: one writer per
//! shape, shared by the complete answer and the stream (whose events carry the same items and
//! objects). Texts are given as the inside of a JSON string literal (escapes kept), so text
//! copied from the chat answer is never unescaped and re-escaped.

use serde::Deserialize;

use super::super::json::{write_str, write_u64};
use super::{ResponseIds, ResponsesHead};

/// The chat `usage` object.
#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub(super) struct ChatUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
struct PromptDetails {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl ChatUsage {
    /// Responses' `usage`.
    fn write(&self, out: &mut Vec<u8>) {
        let input = self.prompt_tokens.unwrap_or(0);
        let output = self.completion_tokens.unwrap_or(0);
        let prompt = self.prompt_tokens_details.unwrap_or_default();
        let fields: [(&[u8], u64); 6] = [
            (b"{\"input_tokens\":", input),
            (
                b",\"input_tokens_details\":{\"cached_tokens\":",
                prompt.cached_tokens.unwrap_or(0),
            ),
            (
                b",\"cache_write_tokens\":",
                prompt.cache_write_tokens.unwrap_or(0),
            ),
            (b"},\"output_tokens\":", output),
            (
                b",\"output_tokens_details\":{\"reasoning_tokens\":",
                self.completion_tokens_details
                    .and_then(|d| d.reasoning_tokens)
                    .unwrap_or(0),
            ),
            (
                b"},\"total_tokens\":",
                self.total_tokens
                    .unwrap_or_else(|| input.saturating_add(output)),
            ),
        ];
        for (name, n) in fields {
            out.extend_from_slice(name);
            write_u64(out, n);
        }
        out.push(b'}');
    }
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome<'a> {
    InProgress,
    Completed,
    /// `incomplete_details.reason`: `max_output_tokens` or `content_filter`.
    Incomplete(&'static str),
    /// `error.code` (one of the codes the SDK knows) and the message.
    Failed(&'static str, &'a str),
}

impl Outcome<'_> {
    pub(super) fn status(&self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Completed => "completed",
            Outcome::Incomplete(_) => "incomplete",
            Outcome::Failed(..) => "failed",
        }
    }

    /// The status of an output item that ends with this outcome.
    pub(super) fn item_status(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            _ => "incomplete",
        }
    }

    /// From a chat `finish_reason`.
    pub(super) fn from_finish(reason: &str) -> Self {
        match reason {
            "length" => Outcome::Incomplete("max_output_tokens"),
            "content_filter" => Outcome::Incomplete("content_filter"),
            _ => Outcome::Completed,
        }
    }
}

/// The Response object. `output`: the items' JSON joined by commas.
pub(super) fn write_response(
    out: &mut Vec<u8>,
    ids: &ResponseIds,
    head: &ResponsesHead,
    outcome: Outcome<'_>,
    output: &[u8],
    usage: Option<&ChatUsage>,
    completed_at: u64,
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, ids.id());
    out.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
    write_u64(out, ids.created_at());
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(outcome.status().as_bytes());
    out.extend_from_slice(b"\",\"completed_at\":");
    if outcome == Outcome::Completed {
        write_u64(out, completed_at.max(ids.created_at()));
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"error\":");
    match outcome {
        Outcome::Failed(code, message) => {
            out.extend_from_slice(b"{\"code\":\"");
            out.extend_from_slice(code.as_bytes());
            out.extend_from_slice(b"\",\"message\":");
            write_str(out, message);
            out.push(b'}');
        }
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"incomplete_details\":");
    match outcome {
        Outcome::Incomplete(reason) => {
            out.extend_from_slice(b"{\"reason\":\"");
            out.extend_from_slice(reason.as_bytes());
            out.extend_from_slice(b"\"}");
        }
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"model\":");
    write_str(out, &head.model);
    out.extend_from_slice(b",\"output\":[");
    out.extend_from_slice(output);
    out.extend_from_slice(b"],\"usage\":");
    match usage {
        Some(u) => u.write(out),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    out.extend_from_slice(head.echo.as_bytes());
    out.push(b'}');
}

/// Output items' JSON joined by commas, and how many there are.
#[derive(Debug, Default)]
pub(super) struct OutputList {
    pub(super) buf: Vec<u8>,
    pub(super) len: usize,
}

impl OutputList {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
            len: 0,
        }
    }

    /// Make room for the next item (written into `buf` by the caller); its output index.
    pub(super) fn begin(&mut self) -> usize {
        if self.len > 0 {
            self.buf.push(b',');
        }
        self.len += 1;
        self.len - 1
    }

    /// The items as a JSON array.
    pub(super) fn to_array(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 2);
        out.push(b'[');
        out.extend_from_slice(&self.buf);
        out.push(b']');
        out
    }
}

/// A content part of an assistant message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PartKind {
    Text,
    Refusal,
}

/// `{"type":"output_text",…}` or `{"type":"refusal",…}` with the given text (escaped, no quotes).
pub(super) fn write_part(out: &mut Vec<u8>, kind: PartKind, text: &[u8]) {
    match kind {
        PartKind::Text => {
            out.extend_from_slice(
                b"{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\"",
            );
        }
        PartKind::Refusal => out.extend_from_slice(b"{\"type\":\"refusal\",\"refusal\":\""),
    }
    out.extend_from_slice(text);
    out.extend_from_slice(b"\"}");
}

/// A `message` output item.
pub(super) fn write_message_item<'t>(
    out: &mut Vec<u8>,
    id: &str,
    status: &str,
    parts: impl IntoIterator<Item = (PartKind, &'t [u8])>,
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"message\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"content\":[");
    for (i, (kind, text)) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_part(out, kind, text);
    }
    out.extend_from_slice(b"],\"role\":\"assistant\"}");
}

/// A `function_call` output item; `call_id`, `name` and `arguments` escaped, without quotes.
pub(super) fn write_call_item(
    out: &mut Vec<u8>,
    id: &str,
    status: &str,
    call_id: &[u8],
    name: &[u8],
    arguments: &[u8],
) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"function_call\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"arguments\":\"");
    out.extend_from_slice(arguments);
    out.extend_from_slice(b"\",\"call_id\":\"");
    out.extend_from_slice(call_id);
    out.extend_from_slice(b"\",\"name\":\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\"}");
}

/// `{"type":"reasoning_text","text":…}`.
pub(super) fn write_reasoning_part(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(b"{\"type\":\"reasoning_text\",\"text\":\"");
    out.extend_from_slice(text);
    out.extend_from_slice(b"\"}");
}

/// A `reasoning` output item carrying the model's reasoning text (`content`, not a `summary`);
/// `text: None` writes it without content (as `response.output_item.added` shows it).
pub(super) fn write_reasoning_item(out: &mut Vec<u8>, id: &str, status: &str, text: Option<&[u8]>) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"type\":\"reasoning\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"summary\":[],\"content\":[");
    if let Some(text) = text {
        write_reasoning_part(out, text);
    }
    out.extend_from_slice(b"]}");
}

/// The inside of a JSON string literal (its raw text without the quotes).
pub(super) fn inner(raw: &str) -> &[u8] {
    let b = raw.as_bytes();
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        &b[1..b.len() - 1]
    } else {
        b
    }
}

/// An SDK error code for an upstream error's type or code.
pub(super) fn error_code(kind: &str) -> &'static str {
    match kind {
        "rate_limit_exceeded" | "rate_limit_error" | "rate_limited" | "too_many_requests" => {
            "rate_limit_exceeded"
        }
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_fills_what_chat_left_out() {
        let u: ChatUsage = serde_json::from_str(
            r#"{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        u.write(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"input_tokens":10,"input_tokens_details":{"cached_tokens":4,"cache_write_tokens":0},
                "output_tokens":5,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":15})
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(Outcome::from_finish("stop"), Outcome::Completed);
        assert_eq!(Outcome::from_finish("tool_calls"), Outcome::Completed);
        assert_eq!(
            Outcome::from_finish("length"),
            Outcome::Incomplete("max_output_tokens")
        );
        assert_eq!(
            Outcome::from_finish("content_filter"),
            Outcome::Incomplete("content_filter")
        );
        assert_eq!(Outcome::Failed("server_error", "x").status(), "failed");
        assert_eq!(Outcome::Incomplete("x").item_status(), "incomplete");
        assert_eq!(error_code("rate_limit_error"), "rate_limit_exceeded");
        assert_eq!(error_code("overloaded_error"), "server_error");
        assert_eq!(inner(r#""a\"b""#), br#"a\"b"#);
    }
}
