//! Anthropic events -> OpenAI chunks.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::json::{JStr, write_str, write_u64};
use super::super::response::AUsage;
use super::super::tool_ids::{ANTHROPIC, new_openai_id};
use super::super::{chat_id_from_msg, finish_reason_from_stop};
use super::{DONE, TRUNCATED, openai_stream_error};
use crate::clock::unix_secs;

#[derive(Deserialize)]
struct AEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    index: Option<u32>,
    #[serde(borrow)]
    message: Option<AEvMessage<'a>>,
    #[serde(borrow)]
    content_block: Option<AEvBlock<'a>>,
    #[serde(borrow)]
    delta: Option<AEvDelta<'a>>,
    usage: Option<AUsage>,
    #[serde(borrow)]
    error: Option<AEvError<'a>>,
}

#[derive(Deserialize)]
struct AEvMessage<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    usage: Option<AUsage>,
}

#[derive(Deserialize)]
struct AEvBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    #[serde(borrow)]
    thinking: Option<JStr<'a>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AEvDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    /// A `thinking_delta`'s text.
    #[serde(borrow)]
    thinking: Option<JStr<'a>>,
    #[serde(borrow)]
    partial_json: Option<JStr<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AEvError<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    Text,
    /// A thinking block: its deltas become `delta.reasoning_content`.
    Thinking,
    /// A tool_use block and its OpenAI tool-call index.
    Tool(u32),
    /// The call of the tool a `response_format` became: its input is the answer's content.
    Json,
    Dropped,
}

/// Anthropic SSE events -> OpenAI `data: {chat.completion.chunk}\n\n` frames, ending with
/// `data: [DONE]\n\n`.
#[derive(Debug)]
pub struct MessagesToChatStream {
    model: String,
    include_usage: bool,
    created: u64,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,` (built at the
    /// first frame, once the message id is known).
    prefix: Vec<u8>,
    /// `,"logprobs":null,"finish_reason":null}]` plus `,"usage":null` when usage is asked for,
    /// and `}\n\n`.
    suffix: &'static [u8],
    msg_id: Option<String>,
    role_sent: bool,
    /// (Anthropic content-block index, what it became)
    blocks: Vec<(u32, BlockKind)>,
    tool_calls: u32,
    /// The tool standing for the request's `response_format` JSON schema, if any.
    json_tool: Option<String>,
    /// Whether that tool was called (the finish reason is then `stop`).
    json_seen: bool,
    finish_sent: bool,
    usage: AUsage,
    done: bool,
}

impl MessagesToChatStream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_owned(),
            include_usage,
            created: unix_secs(),
            prefix: Vec::new(),
            suffix: if include_usage {
                b",\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
            } else {
                b",\"logprobs\":null,\"finish_reason\":null}]}\n\n"
            },
            msg_id: None,
            role_sent: false,
            blocks: Vec::new(),
            tool_calls: 0,
            json_tool: None,
            json_seen: false,
            finish_sent: false,
            usage: AUsage::default(),
            done: false,
        }
    }

    /// The request's `response_format` became this forced tool (see
    /// [`crate::translate::json_answer_tool`]): its input streams as `delta.content`.
    pub fn with_json_tool(mut self, json_tool: Option<String>) -> Self {
        self.json_tool = json_tool;
        self
    }

    /// Report this `created` time instead of the current one (for reproducible output).
    pub fn with_created(mut self, created: u64) -> Self {
        self.created = created;
        self
    }

    fn build_prefix(&mut self) {
        let id = chat_id_from_msg(self.msg_id.as_deref().unwrap_or(""));
        let p = &mut self.prefix;
        p.clear();
        p.extend_from_slice(b"data: {\"id\":");
        write_str(p, &id);
        p.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        write_u64(p, self.created);
        p.extend_from_slice(b",\"model\":");
        write_str(p, &self.model);
        p.push(b',');
    }

    /// The first chunk: `delta.role = "assistant"`.
    fn ensure_role(&mut self, out: &mut Vec<u8>) {
        if self.prefix.is_empty() {
            self.build_prefix();
        }
        if !self.role_sent {
            self.role_sent = true;
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(
                b"\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}",
            );
            out.extend_from_slice(self.suffix);
        }
    }

    /// Start a chunk with one choice; the caller writes the delta object, then `end_choice`.
    fn begin_choice(&mut self, out: &mut Vec<u8>) {
        self.ensure_role(out);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":");
    }

    fn end_choice(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.suffix);
    }

    fn text_chunk(&mut self, text: JStr<'_>, out: &mut Vec<u8>) {
        self.string_chunk(b"{\"content\":", text, out);
    }

    /// `{"reasoning_content": …}`: Claude's thinking as DeepSeek and vLLM stream reasoning.
    fn reasoning_chunk(&mut self, text: JStr<'_>, out: &mut Vec<u8>) {
        self.string_chunk(b"{\"reasoning_content\":", text, out);
    }

    fn string_chunk(&mut self, open: &[u8], text: JStr<'_>, out: &mut Vec<u8>) {
        self.string_chunk_raw(open, text.raw(), out);
    }

    /// `raw`: a JSON string literal.
    fn string_chunk_raw(&mut self, open: &[u8], raw: &str, out: &mut Vec<u8>) {
        self.begin_choice(out);
        out.extend_from_slice(open);
        out.extend_from_slice(raw.as_bytes());
        out.push(b'}');
        self.end_choice(out);
    }

    fn args_chunk(&mut self, tool: u32, args: &str, out: &mut Vec<u8>) {
        self.begin_choice(out);
        out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
        write_u64(out, u64::from(tool));
        out.extend_from_slice(b",\"function\":{\"arguments\":");
        out.extend_from_slice(args.as_bytes());
        out.extend_from_slice(b"}}]}");
        self.end_choice(out);
    }

    fn finish_chunk(&mut self, reason: &str, out: &mut Vec<u8>) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        self.begin_choice(out);
        out.extend_from_slice(b"{},\"logprobs\":null,\"finish_reason\":\"");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(if self.include_usage {
            b"\"}],\"usage\":null}\n\n"
        } else {
            b"\"}]}\n\n"
        });
    }

    /// The usage chunk (when asked for) and `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.include_usage {
            if self.prefix.is_empty() {
                self.build_prefix();
            }
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(b"\"choices\":[],\"usage\":");
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &self.usage.to_openai());
            out.extend_from_slice(b"}\n\n");
        }
        out.extend_from_slice(DONE);
        self.done = true;
    }

    fn block(&self, index: Option<u32>) -> Option<BlockKind> {
        let index = index?;
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, k)| *k)
    }

    /// One upstream event. `event` is the SSE `event:` name (when empty, the data's `type` is
    /// used); `data` its payload.
    pub fn on_event(&mut self, event: &str, data: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let ev: AEvent = match serde_json::from_str(data) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, event, "skipped an unreadable Anthropic stream event");
                return;
            }
        };
        let kind = if event.is_empty() {
            ev.kind.as_deref().unwrap_or("")
        } else {
            event
        };
        match kind {
            "message_start" => {
                if let Some(m) = ev.message {
                    if let Some(id) = m.id.filter(|_| !self.role_sent) {
                        self.msg_id = Some(id.into_owned());
                        self.prefix.clear();
                    }
                    if let Some(u) = m.usage {
                        self.usage.merge(&u);
                    }
                }
                self.ensure_role(out);
            }
            "content_block_start" => {
                let (Some(index), Some(b)) = (ev.index, ev.content_block) else {
                    return;
                };
                let kind = match &*b.kind {
                    "text" => {
                        if let Some(t) = b.text.filter(|t| !t.is_empty()) {
                            self.text_chunk(t, out);
                        }
                        BlockKind::Text
                    }
                    "thinking" => {
                        if let Some(t) = b.thinking.filter(|t| !t.is_empty()) {
                            self.reasoning_chunk(t, out);
                        }
                        BlockKind::Thinking
                    }
                    "tool_use"
                        if !self.json_seen
                            && self
                                .json_tool
                                .as_deref()
                                .is_some_and(|j| b.name.is_some_and(|n| n.decode() == j)) =>
                    {
                        self.json_seen = true;
                        // Some servers put the whole input in the start event.
                        if let Some(input) = b.input.map(|i| i.get()).filter(|i| *i != "{}") {
                            let mut s = Vec::with_capacity(input.len() + 2);
                            write_str(&mut s, input);
                            if let Ok(s) = std::str::from_utf8(&s) {
                                self.string_chunk_raw(b"{\"content\":", s, out);
                            }
                        }
                        BlockKind::Json
                    }
                    "tool_use" => {
                        let tool = self.tool_calls;
                        self.tool_calls = self.tool_calls.saturating_add(1);
                        let id = match b.id.as_deref() {
                            Some(id) => ANTHROPIC.to_openai(id),
                            None => Cow::Owned(new_openai_id()),
                        };
                        self.begin_choice(out);
                        out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                        write_u64(out, u64::from(tool));
                        out.extend_from_slice(b",\"id\":");
                        write_str(out, &id);
                        out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                        out.extend_from_slice(b.name.map_or("\"\"", |n| n.raw()).as_bytes());
                        out.extend_from_slice(b",\"arguments\":\"\"}}]}");
                        self.end_choice(out);
                        // Some servers put the whole input in the start event.
                        if let Some(input) = b.input.map(|i| i.get()).filter(|i| *i != "{}") {
                            let mut s = Vec::with_capacity(input.len() + 2);
                            write_str(&mut s, input);
                            if let Ok(s) = std::str::from_utf8(&s) {
                                self.args_chunk(tool, s, out);
                            }
                        }
                        BlockKind::Tool(tool)
                    }
                    other => {
                        tracing::debug!(
                            block = other,
                            "dropped a content block OpenAI cannot show"
                        );
                        BlockKind::Dropped
                    }
                };
                self.blocks.push((index, kind));
            }
            "content_block_delta" => {
                let Some(d) = ev.delta else { return };
                match (self.block(ev.index), d.kind.as_deref()) {
                    (Some(BlockKind::Text), _) | (None, Some("text_delta")) => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            self.text_chunk(t, out);
                        }
                    }
                    (Some(BlockKind::Thinking), _) | (None, Some("thinking_delta")) => {
                        // A `signature_delta` has no OpenAI equivalent and is left out.
                        if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                            self.reasoning_chunk(t, out);
                        }
                    }
                    (Some(BlockKind::Json), _) => {
                        if let Some(p) = d.partial_json.filter(|p| !p.is_empty()) {
                            self.text_chunk(p, out);
                        }
                    }
                    (Some(BlockKind::Tool(tool)), _) => {
                        if let Some(p) = d.partial_json.filter(|p| !p.is_empty()) {
                            self.args_chunk(tool, p.raw(), out);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" | "ping" => {}
            "message_delta" => {
                if let Some(u) = ev.usage {
                    self.usage.merge(&u);
                }
                let reason = ev
                    .delta
                    .and_then(|d| d.stop_reason)
                    .map_or("stop", |r| finish_reason_from_stop(&r));
                // The forced JSON tool's call is the answer, not a tool call for the client.
                let reason = if self.json_seen && self.tool_calls == 0 && reason == "tool_calls" {
                    "stop"
                } else {
                    reason
                };
                self.finish_chunk(reason, out);
            }
            "message_stop" => {
                self.finish_chunk("stop", out);
                self.close(out);
            }
            "error" => {
                let (kind, message) = ev
                    .error
                    .map(|e| (e.kind, e.message))
                    .unwrap_or((None, None));
                openai_stream_error(
                    kind.as_deref().unwrap_or("api_error"),
                    message.as_deref().unwrap_or("upstream stream error"),
                    out,
                );
                self.done = true;
            }
            other => tracing::debug!(event = other, "skipped an unknown Anthropic stream event"),
        }
    }

    /// The upstream ended. After `message_stop` nothing is owed; after `message_delta` the usage
    /// chunk and `[DONE]`; earlier, the stream was cut short and ends with an error frame (and
    /// `[DONE]`). `[DONE]` is written exactly once over the stream's life.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.finish_sent {
            self.close(out);
        } else {
            openai_stream_error("upstream_error", TRUNCATED, out);
            self.done = true;
        }
    }
}
