//! OpenAI chunks -> Anthropic events.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{SeqAccess, Visitor};

use super::super::json::{JStr, write_str, write_u64};
use super::super::response::OUsage;
use super::super::tool_ids::ANTHROPIC;
use super::super::{msg_id_from_chat, stop_reason_from_finish};
use super::{TRUNCATED, anthropic_stream_error};

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
    #[serde(borrow)]
    reasoning_content: Option<JStr<'a>>,
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
    /// A thinking block made from `reasoning_content`.
    Thinking(u32),
    Tool {
        block: u32,
        index: u32,
        /// The call's id as the upstream sent it (empty when it sent none).
        id: String,
    },
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
            Open::Text(b) | Open::Thinking(b) | Open::Tool { block: b, .. } => b,
        };
        event_head(out, b"content_block_stop");
        out.extend_from_slice(b"{\"type\":\"content_block_stop\",\"index\":");
        write_u64(out, u64::from(index));
        out.extend_from_slice(b"}\n\n");
    }

    fn text(&mut self, text: JStr<'_>, out: &mut Vec<u8>) {
        let open = match self.open {
            Open::Text(b) => Some(b),
            _ => None,
        };
        let block = open.unwrap_or_else(|| {
            self.open_block(Open::Text, b"{\"type\":\"text\",\"text\":\"\"}", out)
        });
        Self::string_delta(block, b"{\"type\":\"text_delta\",\"text\":", text, out);
    }

    /// `reasoning_content` (DeepSeek, vLLM…) as a thinking block. Anthropic signs its own
    /// thinking and a signature cannot be made up: the block's `signature` is empty and no
    /// `signature_delta` is sent.
    fn thinking(&mut self, text: JStr<'_>, out: &mut Vec<u8>) {
        let open = match self.open {
            Open::Thinking(b) => Some(b),
            _ => None,
        };
        let block = open.unwrap_or_else(|| {
            self.open_block(
                Open::Thinking,
                b"{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}",
                out,
            )
        });
        Self::string_delta(
            block,
            b"{\"type\":\"thinking_delta\",\"thinking\":",
            text,
            out,
        );
    }

    /// Close the open block and start a new one (`content_block` written as given).
    fn open_block(
        &mut self,
        open: fn(u32) -> Open,
        content_block: &[u8],
        out: &mut Vec<u8>,
    ) -> u32 {
        self.close_block(out);
        let b = self.next_block;
        self.next_block = self.next_block.saturating_add(1);
        self.open = open(b);
        event_head(out, b"content_block_start");
        out.extend_from_slice(b"{\"type\":\"content_block_start\",\"index\":");
        write_u64(out, u64::from(b));
        out.extend_from_slice(b",\"content_block\":");
        out.extend_from_slice(content_block);
        out.extend_from_slice(b"}\n\n");
        b
    }

    fn string_delta(block: u32, delta_open: &[u8], text: JStr<'_>, out: &mut Vec<u8>) {
        event_head(out, b"content_block_delta");
        out.extend_from_slice(b"{\"type\":\"content_block_delta\",\"index\":");
        write_u64(out, u64::from(block));
        out.extend_from_slice(b",\"delta\":");
        out.extend_from_slice(delta_open);
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
            let id = match tc.id.as_deref() {
                Some(id) => ANTHROPIC.to_native(id),
                None => Cow::Owned(ANTHROPIC.new_native()),
            };
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
                id: tc.id.as_deref().unwrap_or_default().to_owned(),
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
            if let Some(t) = d.reasoning_content.filter(|t| !t.is_empty()) {
                self.thinking(t, out);
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
