//! Streams, one upstream event at a time. Each event is parsed into a small borrowed struct and
//! the output frame is written straight into the caller's buffer; text and argument fragments
//! are copied as raw JSON string literals (never unescaped and re-escaped).

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::json::{JStr, write_str, write_u64};
use super::response::{AUsage, OUsage};
use super::{
    chat_id_from_msg, finish_reason_from_stop, msg_id_from_chat, new_id, stop_reason_from_finish,
};
use crate::clock::unix_secs;

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

// ---------------------------------------------------------------------------------------------
// Anthropic events -> OpenAI chunks
// ---------------------------------------------------------------------------------------------

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
    /// A tool_use block and its OpenAI tool-call index.
    Tool(u32),
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
            finish_sent: false,
            usage: AUsage::default(),
            done: false,
        }
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
        self.begin_choice(out);
        out.extend_from_slice(b"{\"content\":");
        out.extend_from_slice(text.raw().as_bytes());
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
                    "tool_use" => {
                        let tool = self.tool_calls;
                        self.tool_calls = self.tool_calls.saturating_add(1);
                        let generated;
                        let id = match b.id.as_deref() {
                            Some(id) => id,
                            None => {
                                generated = new_id("toolu_");
                                &generated
                            }
                        };
                        self.begin_choice(out);
                        out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                        write_u64(out, u64::from(tool));
                        out.extend_from_slice(b",\"id\":");
                        write_str(out, id);
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

// ---------------------------------------------------------------------------------------------
// OpenAI chunks -> Anthropic events
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct OChunk<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    choices: Option<FirstChoice<'a>>,
    usage: Option<OUsage>,
    #[serde(borrow)]
    error: Option<OErr<'a>>,
}

#[derive(Deserialize)]
struct OErr<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

/// The choice with index 0 of a chunk's `choices`, parsed without collecting the array.
struct FirstChoice<'a>(Option<OChoice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut first = None;
                while let Some(c) = seq.next_element::<OChoice<'a>>()? {
                    if first.is_none() && c.index.unwrap_or(0) == 0 {
                        first = Some(c);
                    }
                }
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[derive(Deserialize)]
struct OChoice<'a> {
    index: Option<u32>,
    #[serde(borrow)]
    delta: Option<ODelta<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ODelta<'a> {
    #[serde(borrow)]
    content: Option<JStr<'a>>,
    #[serde(borrow)]
    refusal: Option<JStr<'a>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<OToolDelta<'a>>>,
    reasoning_content: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct OToolDelta<'a> {
    index: Option<u32>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<OFnDelta<'a>>,
}

#[derive(Deserialize)]
struct OFnDelta<'a> {
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    arguments: Option<JStr<'a>>,
}

#[derive(Debug)]
enum Open {
    None,
    Text(u32),
    Tool { block: u32, index: u32, id: String },
}

/// OpenAI chunk `data:` payloads -> Anthropic `event: NAME\ndata: {...}\n\n` frames.
#[derive(Debug)]
pub struct ChatToMessagesStream {
    model: String,
    started: bool,
    open: Open,
    next_block: u32,
    stop_reason: Option<&'static str>,
    usage: Option<OUsage>,
    logged_reasoning: bool,
    done: bool,
}

fn event_head(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\ndata: ");
}

impl ChatToMessagesStream {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: Open::None,
            next_block: 0,
            stop_reason: None,
            usage: None,
            logged_reasoning: false,
            done: false,
        }
    }

    fn start(&mut self, chat_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = msg_id_from_chat(chat_id.unwrap_or(""));
        let input = self.usage.map_or(0, |u| u.to_anthropic().input_tokens);
        event_head(out, b"message_start");
        out.extend_from_slice(b"{\"type\":\"message_start\",\"message\":{\"id\":");
        write_str(out, &id);
        out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        write_str(out, &self.model);
        out.extend_from_slice(
            b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":",
        );
        write_u64(out, input);
        out.extend_from_slice(b",\"output_tokens\":0}}}\n\n");
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let index = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Text(b) | Open::Tool { block: b, .. } => b,
        };
        event_head(out, b"content_block_stop");
        out.extend_from_slice(b"{\"type\":\"content_block_stop\",\"index\":");
        write_u64(out, u64::from(index));
        out.extend_from_slice(b"}\n\n");
    }

    fn text(&mut self, text: JStr<'_>, out: &mut Vec<u8>) {
        let block = match self.open {
            Open::Text(b) => b,
            _ => {
                self.close_block(out);
                let b = self.next_block;
                self.next_block = self.next_block.saturating_add(1);
                self.open = Open::Text(b);
                event_head(out, b"content_block_start");
                out.extend_from_slice(b"{\"type\":\"content_block_start\",\"index\":");
                write_u64(out, u64::from(b));
                out.extend_from_slice(b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
                b
            }
        };
        event_head(out, b"content_block_delta");
        out.extend_from_slice(b"{\"type\":\"content_block_delta\",\"index\":");
        write_u64(out, u64::from(block));
        out.extend_from_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
        out.extend_from_slice(text.raw().as_bytes());
        out.extend_from_slice(b"}}\n\n");
    }

    fn tool_delta(&mut self, tc: &OToolDelta<'_>, out: &mut Vec<u8>) {
        let index = tc.index.unwrap_or(0);
        let name = tc.function.as_ref().and_then(|f| f.name);
        let args = tc.function.as_ref().and_then(|f| f.arguments);
        let continues = match &self.open {
            Open::Tool { index: i, id, .. } => {
                *i == index && tc.id.as_deref().is_none_or(|new| new == id)
            }
            _ => false,
        };
        let block = if continues {
            match self.open {
                Open::Tool { block, .. } => block,
                _ => return,
            }
        } else if tc.id.is_some() || name.is_some() {
            self.close_block(out);
            let b = self.next_block;
            self.next_block = self.next_block.saturating_add(1);
            let id = tc
                .id
                .as_deref()
                .map_or_else(|| new_id("toolu_"), str::to_owned);
            event_head(out, b"content_block_start");
            out.extend_from_slice(b"{\"type\":\"content_block_start\",\"index\":");
            write_u64(out, u64::from(b));
            out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
            write_str(out, &id);
            out.extend_from_slice(b",\"name\":");
            out.extend_from_slice(name.map_or("\"\"", |n| n.raw()).as_bytes());
            out.extend_from_slice(b",\"input\":{}}}\n\n");
            self.open = Open::Tool {
                block: b,
                index,
                id,
            };
            b
        } else {
            tracing::debug!(
                index,
                "dropped tool-call arguments for a call that is no longer open"
            );
            return;
        };
        if let Some(a) = args.filter(|a| !a.is_empty()) {
            event_head(out, b"content_block_delta");
            out.extend_from_slice(b"{\"type\":\"content_block_delta\",\"index\":");
            write_u64(out, u64::from(block));
            out.extend_from_slice(b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
            out.extend_from_slice(a.raw().as_bytes());
            out.extend_from_slice(b"}}\n\n");
        }
    }

    /// One `data:` payload of the upstream stream (`[DONE]` included).
    pub fn on_data(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data.trim() == "[DONE]" {
            self.end(out);
            return;
        }
        let chunk: OChunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "skipped an unreadable OpenAI stream chunk");
                return;
            }
        };
        if let Some(e) = chunk.error {
            anthropic_stream_error(
                e.kind.as_deref().unwrap_or("api_error"),
                e.message.as_deref().unwrap_or("upstream stream error"),
                out,
            );
            self.done = true;
            return;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        self.start(chunk.id.as_deref(), out);
        let Some(choice) = chunk.choices.and_then(|c| c.0) else {
            return;
        };
        if let Some(d) = &choice.delta {
            if d.reasoning_content.is_some() && !self.logged_reasoning {
                self.logged_reasoning = true;
                tracing::debug!("dropped reasoning_content (Anthropic thinking needs a signature)");
            }
            if let Some(t) = d.content.filter(|t| !t.is_empty()) {
                self.text(t, out);
            }
            if let Some(t) = d.refusal.filter(|t| !t.is_empty()) {
                self.text(t, out);
            }
            for tc in d.tool_calls.iter().flatten() {
                self.tool_delta(tc, out);
            }
        }
        if let Some(r) = &choice.finish_reason {
            self.stop_reason = Some(stop_reason_from_finish(r));
        }
    }

    /// Close the open block, then `message_delta` (stop reason and usage) and `message_stop`.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(None, out);
        self.close_block(out);
        let usage = self.usage.map(OUsage::to_anthropic);
        event_head(out, b"message_delta");
        out.extend_from_slice(b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
        out.extend_from_slice(self.stop_reason.unwrap_or("end_turn").as_bytes());
        out.extend_from_slice(b"\",\"stop_sequence\":null},\"usage\":{");
        if let Some(u) = usage {
            out.extend_from_slice(b"\"input_tokens\":");
            write_u64(out, u.input_tokens);
            out.push(b',');
            if let Some(c) = u.cache_read_input_tokens {
                out.extend_from_slice(b"\"cache_read_input_tokens\":");
                write_u64(out, c);
                out.push(b',');
            }
        }
        out.extend_from_slice(b"\"output_tokens\":");
        write_u64(out, usage.map_or(0, |u| u.output_tokens));
        out.extend_from_slice(b"}}\n\n");
        event_head(out, b"message_stop");
        out.extend_from_slice(b"{\"type\":\"message_stop\"}\n\n");
        self.done = true;
    }

    /// The upstream ended. After `[DONE]` nothing is owed; after a `finish_reason` (a server that
    /// sends no `[DONE]`) the closing events; earlier, the stream was cut short and ends with an
    /// error event.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.stop_reason.is_some() {
            self.end(out);
        } else {
            anthropic_stream_error("upstream_error", TRUNCATED, out);
            self.done = true;
        }
    }
}
