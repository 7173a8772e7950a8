//! The output side over streamed answers, one SSE event at a time.
//!
//! Each streamed text (a choice's content or a tool call's arguments, a content block, an output
//! text part or a function call's arguments) is a channel with its own [`TextStream`]: deltas go
//! through it, and the event is rewritten with the text it releases (only the delta's JSON
//! string is spliced). Text held back at the end of a channel is sent in a delta event of the
//! stream's own shape just before the event that closes the channel (OpenAI: the chunk with the
//! choice's `finish_reason`; Anthropic: `content_block_stop`; Responses: `…done`), or at
//! [`StreamGuard::finish`]. Responses events that repeat whole texts (`…done`,
//! `response.completed`) are guarded as complete texts.
//!
//! A block ends the text where the blocked value starts: the event carrying it is cut there
//! (in OpenAI chunks its `finish_reason` becomes `content_filter`) and [`StreamGuard::event`]
//! returns the [`Blocked`]; the caller then stops relaying and ends the stream its format's way.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::answer::{AnswerFormat, Group, Response, guard_group, response_group};
use super::json::{Edits, decode, encode, nullable, span};
use super::text::{Block, Function, Spot, arguments, block};
use super::{Blocked, Hit, Plan, Report, TextStream, Vault};

/// What to send for one upstream event.
#[derive(Debug, PartialEq, Eq)]
pub enum OutEvent {
    /// The upstream event, unchanged.
    Original,
    /// The upstream event (same name) with new data.
    Rewritten(Vec<u8>),
    /// An event inserted before the next one (`event` is empty for OpenAI chunks).
    New { event: &'static str, data: Vec<u8> },
}

/// Which streamed text a delta belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    a: u64,
    b: u64,
}

struct Channel {
    key: Key,
    json: bool,
    stream: TextStream,
}

/// The output side of one streamed answer.
pub struct StreamGuard {
    format: AnswerFormat,
    checks: bool,
    channels: Vec<Channel>,
    hits: Vec<Hit>,
    text: String,
    /// OpenAI: the `id`, `model` and `created` of the first chunk, for a final flush chunk.
    head: Option<Vec<u8>>,
}

const ARGS: u64 = u64::MAX;

impl StreamGuard {
    /// `checks`: output guardrails apply (otherwise only restoring).
    pub fn new(format: AnswerFormat, checks: bool) -> StreamGuard {
        StreamGuard {
            format,
            checks,
            channels: Vec::new(),
            hits: Vec::new(),
            text: String::new(),
            head: None,
        }
    }

    /// One upstream event (`event` is the SSE event name, empty when none; `data` its data).
    /// Appends what to send to `out`. On `Err`, `out` ends with the event cut at the blocked
    /// value, and nothing more of the upstream stream should be relayed.
    pub fn event(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        data: &[u8],
        out: &mut Vec<OutEvent>,
    ) -> Result<(), Blocked> {
        let Ok(body) = std::str::from_utf8(data) else {
            out.push(OutEvent::Original);
            return Ok(());
        };
        let mut edits = Edits::default();
        let r = match self.format {
            AnswerFormat::OpenAiChat => self.openai(plan, vault, report, body, &mut edits, out),
            AnswerFormat::Anthropic => self.anthropic(plan, vault, report, body, &mut edits, out),
            AnswerFormat::Responses => self.responses(plan, vault, report, body, &mut edits, out),
        };
        out.push(if edits.is_empty() {
            OutEvent::Original
        } else {
            OutEvent::Rewritten(edits.apply(data).to_vec())
        });
        r
    }

    /// The upstream stream ended: events carrying any text still held.
    pub fn finish(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), Blocked> {
        let keys: Vec<Key> = self.channels.iter().map(|c| c.key).collect();
        let mut r = Ok(());
        for key in keys {
            let (json, text, res) = self.flush(plan, vault, report, key);
            r = r.and(res);
            if !text.is_empty() {
                out.push(self.delta_event(key, json, &text, None));
            }
        }
        r
    }

    fn channel(&mut self, key: Key, json: bool) -> &mut Channel {
        let pos = match self.channels.iter().position(|c| c.key == key) {
            Some(p) => p,
            None => {
                self.channels.push(Channel {
                    key,
                    json,
                    stream: TextStream::new(self.checks, json),
                });
                self.channels.len() - 1
            }
        };
        &mut self.channels[pos]
    }

    /// Push one delta string (the JSON literal at `raw`) through its channel; splice the result.
    #[expect(
        clippy::too_many_arguments,
        reason = "the request's state, passed apart"
    )]
    fn delta(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        body: &str,
        raw: &RawValue,
        key: Key,
        json: bool,
        edits: &mut Edits,
    ) -> Result<(), Blocked> {
        let range = span(body, raw);
        let Some(value) = decode(raw.get()) else {
            return Ok(());
        };
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let mut hits = std::mem::take(&mut self.hits);
        let r = self
            .channel(key, json)
            .stream
            .push(plan, vault, report, &mut hits, &value, &mut text);
        if text != value {
            edits.push(range, encode(&text));
        }
        self.hits = hits;
        self.text = text;
        r
    }

    /// Close a channel: its held text, after the last checks.
    fn flush(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        key: Key,
    ) -> (bool, String, Result<(), Blocked>) {
        let Some(pos) = self.channels.iter().position(|c| c.key == key) else {
            return (false, String::new(), Ok(()));
        };
        let mut c = self.channels.swap_remove(pos);
        let mut text = String::new();
        let r = c
            .stream
            .finish(plan, vault, report, &mut self.hits, &mut text);
        (c.json, text, r)
    }

    /// A delta event carrying `text` for a channel, in the stream's format. `like` is the
    /// closing event (its raw fields are copied where the format needs them).
    fn delta_event(
        &self,
        key: Key,
        json: bool,
        text: &str,
        like: Option<&Closing<'_>>,
    ) -> OutEvent {
        let mut d = Vec::with_capacity(text.len() + 96);
        let lit = encode(text);
        match self.format {
            AnswerFormat::OpenAiChat => {
                d.extend_from_slice(b"{");
                if let Some(h) = &self.head {
                    d.extend_from_slice(h);
                }
                d.extend_from_slice(
                    b"\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":",
                );
                d.extend_from_slice(itoa::Buffer::new().format(key.a).as_bytes());
                if key.b == 0 {
                    d.extend_from_slice(b",\"delta\":{\"content\":");
                    d.extend_from_slice(&lit);
                    d.extend_from_slice(b"}");
                } else {
                    d.extend_from_slice(b",\"delta\":{\"tool_calls\":[{\"index\":");
                    d.extend_from_slice(itoa::Buffer::new().format(key.b - 1).as_bytes());
                    d.extend_from_slice(b",\"function\":{\"arguments\":");
                    d.extend_from_slice(&lit);
                    d.extend_from_slice(b"}}]}");
                }
                d.extend_from_slice(b",\"finish_reason\":null}]}");
                OutEvent::New { event: "", data: d }
            }
            AnswerFormat::Anthropic => {
                d.extend_from_slice(b"{\"type\":\"content_block_delta\",\"index\":");
                d.extend_from_slice(itoa::Buffer::new().format(key.a).as_bytes());
                d.extend_from_slice(if json {
                    b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":".as_slice()
                } else {
                    b",\"delta\":{\"type\":\"text_delta\",\"text\":".as_slice()
                });
                d.extend_from_slice(&lit);
                d.extend_from_slice(b"}}");
                OutEvent::New {
                    event: "content_block_delta",
                    data: d,
                }
            }
            AnswerFormat::Responses => {
                let (event, kind) = if json {
                    (
                        "response.function_call_arguments.delta",
                        b"response.function_call_arguments.delta".as_slice(),
                    )
                } else {
                    (
                        "response.output_text.delta",
                        b"response.output_text.delta".as_slice(),
                    )
                };
                d.extend_from_slice(b"{\"type\":\"");
                d.extend_from_slice(kind);
                d.extend_from_slice(b"\"");
                if let Some(c) = like {
                    for (name, raw) in [
                        ("item_id", c.item_id),
                        ("sequence_number", c.sequence_number),
                    ] {
                        if let Some(raw) = raw {
                            d.extend_from_slice(format!(",\"{name}\":").as_bytes());
                            d.extend_from_slice(raw.get().as_bytes());
                        }
                    }
                }
                d.extend_from_slice(b",\"output_index\":");
                d.extend_from_slice(itoa::Buffer::new().format(key.a).as_bytes());
                if !json {
                    d.extend_from_slice(b",\"content_index\":");
                    d.extend_from_slice(itoa::Buffer::new().format(key.b).as_bytes());
                }
                d.extend_from_slice(b",\"delta\":");
                d.extend_from_slice(&lit);
                d.extend_from_slice(b"}");
                OutEvent::New { event, data: d }
            }
        }
    }

    fn openai(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        body: &str,
        edits: &mut Edits,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), Blocked> {
        let Ok(c) = serde_json::from_str::<Chunk<'_>>(body) else {
            return Ok(());
        };
        if self.head.is_none() {
            let mut h = Vec::new();
            for (name, raw) in [("id", c.id), ("model", c.model), ("created", c.created)] {
                if let Some(raw) = raw {
                    h.extend_from_slice(format!("\"{name}\":").as_bytes());
                    h.extend_from_slice(raw.get().as_bytes());
                    h.push(b',');
                }
            }
            self.head = Some(h);
        }
        for choice in c.choices.iter().flatten() {
            let i = choice.index.unwrap_or(0);
            let delta = choice
                .delta
                .and_then(|d| serde_json::from_str::<Delta<'_>>(d.get()).ok());
            let mut r = Ok(());
            if let Some(d) = &delta {
                if let Some(t) = d.content.filter(|t| t.get().starts_with('"')) {
                    r = self.delta(
                        plan,
                        vault,
                        report,
                        body,
                        t,
                        Key { a: i, b: 0 },
                        false,
                        edits,
                    );
                }
                for call in d.tool_calls.iter().flatten() {
                    let Some(args) = call.function.as_ref().and_then(|f| f.arguments) else {
                        continue;
                    };
                    if r.is_ok() && args.get().starts_with('"') {
                        let key = Key {
                            a: i,
                            b: call.index.unwrap_or(0) + 1,
                        };
                        r = self.delta(plan, vault, report, body, args, key, true, edits);
                    }
                }
            }
            let finished = choice.finish_reason.is_some_and(|f| f.get() != "null");
            if r.is_err() || finished {
                // Close the choice's channels before this chunk.
                let keys: Vec<Key> = self
                    .channels
                    .iter()
                    .map(|c| c.key)
                    .filter(|k| k.a == i)
                    .collect();
                for key in keys {
                    let (json, text, fr) = self.flush(plan, vault, report, key);
                    if !text.is_empty() && r.is_ok() {
                        out.push(self.delta_event(key, json, &text, None));
                    }
                    r = r.and(fr);
                }
            }
            if r.is_err()
                && let Some(f) = choice.finish_reason
            {
                edits.push(span(body, f), b"\"content_filter\"".to_vec());
            }
            r?;
        }
        Ok(())
    }

    fn anthropic(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        body: &str,
        edits: &mut Edits,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), Blocked> {
        let Ok(e) = serde_json::from_str::<Event<'_>>(body) else {
            return Ok(());
        };
        let key = Key {
            a: e.index.unwrap_or(0),
            b: 0,
        };
        match e.kind.as_deref() {
            Some("content_block_delta") => {
                let Some(d) = e.delta_object() else {
                    return Ok(());
                };
                if let Some(t) = d.text {
                    self.delta(plan, vault, report, body, t, key, false, edits)?;
                } else if let Some(p) = d.partial_json {
                    self.delta(plan, vault, report, body, p, key, true, edits)?;
                }
            }
            Some("content_block_stop") => {
                let (json, text, r) = self.flush(plan, vault, report, key);
                if !text.is_empty() {
                    out.push(self.delta_event(key, json, &text, None));
                }
                r?;
            }
            _ => {}
        }
        Ok(())
    }

    fn responses(
        &mut self,
        plan: Option<&Plan>,
        vault: &mut Vault,
        report: &mut Report,
        body: &str,
        edits: &mut Edits,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), Blocked> {
        let Ok(e) = serde_json::from_str::<Event<'_>>(body) else {
            return Ok(());
        };
        let oi = e.output_index.unwrap_or(0);
        let text_key = Key {
            a: oi,
            b: e.content_index.unwrap_or(0),
        };
        let args_key = Key { a: oi, b: ARGS };
        let mut whole = Group::default();
        match e.kind.as_deref() {
            Some("response.output_text.delta") => {
                if let Some(d) = e.delta_text() {
                    self.delta(plan, vault, report, body, d, text_key, false, edits)?;
                }
            }
            Some("response.function_call_arguments.delta") => {
                if let Some(d) = e.delta_text() {
                    self.delta(plan, vault, report, body, d, args_key, true, edits)?;
                }
            }
            Some(
                done @ ("response.output_text.done" | "response.function_call_arguments.done"),
            ) => {
                let json = done.starts_with("response.function");
                let key = if json { args_key } else { text_key };
                let (_, text, r) = self.flush(plan, vault, report, key);
                if !text.is_empty() {
                    let closing = Closing {
                        item_id: e.item_id,
                        sequence_number: e.sequence_number,
                    };
                    out.push(self.delta_event(key, json, &text, Some(&closing)));
                }
                r?;
                if let Some(t) = e.text {
                    whole.spots.push(Spot {
                        range: span(body, t),
                        json: false,
                    });
                }
                arguments(body, e.arguments, &mut whole.spots);
            }
            Some("response.content_part.done" | "response.output_item.done") => {
                if let Some(raw) = e.part.or(e.item)
                    && let Ok(b) = serde_json::from_str::<Block<'_>>(raw.get())
                {
                    // `block` reads spans relative to the body the block was borrowed from.
                    block(body, &b, &mut whole.spots, 0);
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                if let Some(raw) = e.response
                    && let Ok(r) = serde_json::from_str::<Response<'_>>(raw.get())
                {
                    whole = response_group(body, &r);
                }
            }
            _ => {}
        }
        if !whole.spots.is_empty() {
            let mut hits = std::mem::take(&mut self.hits);
            let b = guard_group(
                plan.filter(|_| self.checks),
                &whole,
                body,
                vault,
                report,
                &mut hits,
                edits,
            );
            self.hits = hits;
            if let Some(b) = b {
                return Err(b);
            }
        }
        Ok(())
    }
}

/// Fields of a closing Responses event copied into a flush delta.
struct Closing<'a> {
    item_id: Option<&'a RawValue>,
    sequence_number: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created: Option<&'a RawValue>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChunkChoice<'a>>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

/// An Anthropic or Responses event (the fields either has).
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    content_index: Option<u64>,
    #[serde(borrow, default)]
    item_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sequence_number: Option<&'a RawValue>,
    /// Anthropic: an object; Responses: a string.
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default)]
    part: Option<&'a RawValue>,
    #[serde(borrow, default)]
    item: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
}

impl<'a> Event<'a> {
    /// A Responses delta (a string).
    fn delta_text(&self) -> Option<&'a RawValue> {
        self.delta.filter(|d| d.get().starts_with('"'))
    }

    /// An Anthropic delta (an object).
    fn delta_object(&self) -> Option<AnthropicDelta<'a>> {
        let d = self.delta.filter(|d| d.get().starts_with('{'))?;
        serde_json::from_str(d.get()).ok()
    }
}

#[derive(Deserialize)]
struct AnthropicDelta<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    partial_json: Option<&'a RawValue>,
}
