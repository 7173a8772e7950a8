//! The pivot stream: OpenAI `chat.completion.chunk` frames written straight into the caller's
//! buffer, for the converters from other formats' streams. Text and argument fragments arrive
//! as raw JSON string literals and are copied as they are.

use super::super::json::{write_str, write_u64};
use super::super::openai_stream_error;
use super::answer::Usage;

const DONE: &[u8] = b"data: [DONE]\n\n";
const TRUNCATED: &str = "the upstream stream ended before the message was complete";

/// Why an upstream stream cannot go on: an error the upstream reported in the stream, a broken
/// frame, or an end before the answer was complete. The gateway turns it into a failed attempt
/// (before the first byte) or the client's in-stream error event (after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFault {
    /// The error type a client sees (`rate_limit_error`, `invalid_request_error`, …;
    /// `upstream_error` for a broken or cut stream).
    pub error_type: &'static str,
    pub message: String,
}

impl StreamFault {
    /// A stream that ended before its answer was complete.
    pub fn truncated() -> Self {
        StreamFault {
            error_type: "upstream_error",
            message: TRUNCATED.to_owned(),
        }
    }
}

/// Writes the chunks of one stream: every chunk has the same `id`, `created` and `model`; each
/// choice's first chunk carries `role: "assistant"`; with `include_usage` every chunk has
/// `"usage":null` and the stream ends with a usage chunk; `[DONE]` is written once.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    model: String,
    created: u64,
    include_usage: bool,
    id: Option<String>,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,` (built at the
    /// first frame).
    prefix: Vec<u8>,
    /// Choices (one bit per index) whose role chunk was written.
    roles: u64,
    done: bool,
}

impl ChunkWriter {
    pub(crate) fn new(model: &str, include_usage: bool, created: u64) -> Self {
        ChunkWriter {
            model: model.to_owned(),
            created,
            include_usage,
            id: None,
            prefix: Vec::new(),
            roles: 0,
            done: false,
        }
    }

    pub(crate) fn set_created(&mut self, created: u64) {
        self.created = created;
        self.prefix.clear();
    }

    /// The upstream's answer id (`chatcmpl-` is prefixed); only before the first chunk.
    pub(crate) fn set_id(&mut self, upstream_id: &str) {
        if self.prefix.is_empty() && self.id.is_none() && !upstream_id.is_empty() {
            self.id = Some(format!("chatcmpl-{upstream_id}"));
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    fn prefix(&mut self) -> &[u8] {
        if self.prefix.is_empty() {
            let id = match &self.id {
                Some(id) => id.clone(),
                None => {
                    let id = crate::ids::random_id("chatcmpl-");
                    self.id = Some(id.clone());
                    id
                }
            };
            let p = &mut self.prefix;
            p.extend_from_slice(b"data: {\"id\":");
            write_str(p, &id);
            p.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
            write_u64(p, self.created);
            p.extend_from_slice(b",\"model\":");
            write_str(p, &self.model);
            p.push(b',');
        }
        &self.prefix
    }

    fn open(&mut self, choice: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(self.prefix());
        out.extend_from_slice(b"\"choices\":[{\"index\":");
        write_u64(out, u64::from(choice));
        out.extend_from_slice(b",\"delta\":");
    }

    fn close_choice(&self, finish: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(r) => write_str(out, r),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(if self.include_usage {
            b"}],\"usage\":null}\n\n"
        } else {
            b"}]}\n\n"
        });
    }

    /// The choice's first chunk, `delta: {"role":"assistant","content":""}`, once.
    pub(crate) fn role(&mut self, choice: u32, out: &mut Vec<u8>) {
        // Choices from 63 on share one bit (no upstream sends that many).
        let bit = 1u64 << choice.min(63);
        if self.roles & bit != 0 {
            return;
        }
        self.roles |= bit;
        self.open(choice, out);
        out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}");
        self.close_choice(None, out);
    }

    /// `delta: {KEY: RAW}` where RAW is a JSON string literal.
    fn string_delta(&mut self, choice: u32, key: &[u8], raw: &str, out: &mut Vec<u8>) {
        self.role(choice, out);
        self.open(choice, out);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        out.extend_from_slice(raw.as_bytes());
        out.push(b'}');
        self.close_choice(None, out);
    }

    /// `delta.content`; `raw` is a JSON string literal.
    pub(crate) fn content(&mut self, choice: u32, raw: &str, out: &mut Vec<u8>) {
        self.string_delta(choice, b"content", raw, out);
    }

    /// `delta.reasoning_content`; `raw` is a JSON string literal.
    pub(crate) fn reasoning(&mut self, choice: u32, raw: &str, out: &mut Vec<u8>) {
        self.string_delta(choice, b"reasoning_content", raw, out);
    }

    /// A tool call's first delta: `index`, `id`, `type`, the function's `name` (a JSON string
    /// literal) and `arguments` (a JSON string literal: `""` when they follow in fragments).
    pub(crate) fn tool_call(
        &mut self,
        choice: u32,
        tool: u32,
        id: &str,
        name_raw: &str,
        args_raw: &str,
        out: &mut Vec<u8>,
    ) {
        self.role(choice, out);
        self.open(choice, out);
        out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
        write_u64(out, u64::from(tool));
        out.extend_from_slice(b",\"id\":");
        write_str(out, id);
        out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
        out.extend_from_slice(name_raw.as_bytes());
        out.extend_from_slice(b",\"arguments\":");
        out.extend_from_slice(args_raw.as_bytes());
        out.extend_from_slice(b"}}]}");
        self.close_choice(None, out);
    }

    /// A fragment of a tool call's arguments (a JSON string literal).
    pub(crate) fn tool_args(&mut self, choice: u32, tool: u32, args_raw: &str, out: &mut Vec<u8>) {
        self.role(choice, out);
        self.open(choice, out);
        out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
        write_u64(out, u64::from(tool));
        out.extend_from_slice(b",\"function\":{\"arguments\":");
        out.extend_from_slice(args_raw.as_bytes());
        out.extend_from_slice(b"}}]}");
        self.close_choice(None, out);
    }

    /// The choice's last chunk: `delta: {}` and its `finish_reason`.
    pub(crate) fn finish(&mut self, choice: u32, reason: &str, out: &mut Vec<u8>) {
        self.role(choice, out);
        self.open(choice, out);
        out.extend_from_slice(b"{}");
        self.close_choice(Some(reason), out);
    }

    /// The usage chunk (when asked for) and `[DONE]`, once.
    pub(crate) fn close(&mut self, usage: &Usage, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.include_usage {
            out.extend_from_slice(self.prefix());
            out.extend_from_slice(b"\"choices\":[],\"usage\":");
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, usage);
            out.extend_from_slice(b"}\n\n");
        }
        out.extend_from_slice(DONE);
        self.done = true;
    }

    /// The error event of a stream that ended before its answer was complete, and `[DONE]`.
    pub(crate) fn truncated(&mut self, out: &mut Vec<u8>) {
        self.error("upstream_error", TRUNCATED, out);
    }

    /// The fault as an error event and `[DONE]`, once.
    pub(crate) fn fault(&mut self, f: &StreamFault, out: &mut Vec<u8>) {
        self.error(f.error_type, &f.message, out);
    }

    /// An error event and `[DONE]`, once.
    pub(crate) fn error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        openai_stream_error(kind, message, out);
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(out: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(out)
            .expect("utf-8")
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).expect("chunk is JSON"))
            .collect()
    }

    #[test]
    fn writes_valid_chunks_with_one_role_per_choice() {
        let mut w = ChunkWriter::new("m\"odel", true, 7);
        w.set_id("abc");
        let mut out = Vec::new();
        w.content(0, r#""hi\n""#, &mut out);
        w.reasoning(0, r#""hmm""#, &mut out);
        w.content(1, r#""other""#, &mut out);
        w.tool_call(0, 0, "call_1", r#""f""#, r#""{\"a\":1}""#, &mut out);
        w.tool_args(0, 0, r#""x""#, &mut out);
        w.finish(0, "tool_calls", &mut out);
        w.close(&Usage::new(1, 2, None, None), &mut out);
        w.close(&Usage::default(), &mut out);
        w.error("x", "y", &mut out);
        let text = String::from_utf8(out.clone()).expect("utf-8");
        assert_eq!(text.matches("[DONE]").count(), 1);
        let f = frames(&out);
        assert_eq!(f.len(), 9);
        assert!(
            f.iter()
                .all(|c| c["id"] == "chatcmpl-abc" && c["model"] == "m\"odel")
        );
        assert_eq!(f[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(f[1]["choices"][0]["delta"]["content"], "hi\n");
        assert_eq!(f[2]["choices"][0]["delta"]["reasoning_content"], "hmm");
        assert_eq!(f[3]["choices"][0]["index"], 1);
        assert_eq!(f[3]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            f[5]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(f[7]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(f[8]["usage"]["total_tokens"], 3);
        assert!(f[..8].iter().all(|c| c["usage"].is_null()));
    }
}
