//! Chat chunks (`data:` payloads of an OpenAI chat stream) -> the Responses API's typed SSE
//! events (`event: TYPE\ndata: {"type":TYPE,…,"sequence_number":N}\n\n`) in OpenAI's order,
//! written straight into the caller's buffer. One output item is open at a time: reasoning text,
//! then the message, then each function call, each closed (its `…done` events) when the next one
//! starts. Texts and arguments are kept as escaped JSON (never unescaped) for the `…done` events
//! and the final Response, which is handed to the owner for storage.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::json::{JStr, write_str, write_u64};
use super::object::{
    ChatUsage, Outcome, OutputList, PartKind, error_code, write_call_item, write_message_item,
    write_reasoning_item, write_response,
};
use super::{ResponseIds, ResponsesAnswer, ResponsesHead};

mod items;

const TRUNCATED: &str = "the upstream stream ended before the response was complete";

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    choices: Option<Vec<CChoice<'a>>>,
    usage: Option<ChatUsage>,
    #[serde(borrow)]
    error: Option<CErr<'a>>,
}

#[derive(Deserialize)]
struct CErr<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CChoice<'a> {
    index: Option<u32>,
    #[serde(borrow)]
    delta: Option<CDelta<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CDelta<'a> {
    #[serde(borrow)]
    content: Option<JStr<'a>>,
    #[serde(borrow)]
    refusal: Option<JStr<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<JStr<'a>>,
    #[serde(borrow)]
    reasoning: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_calls: Option<Vec<CToolDelta<'a>>>,
}

#[derive(Deserialize)]
struct CToolDelta<'a> {
    index: Option<u32>,
    #[serde(borrow)]
    id: Option<JStr<'a>>,
    #[serde(borrow)]
    function: Option<CFnDelta<'a>>,
}

#[derive(Deserialize)]
struct CFnDelta<'a> {
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    arguments: Option<JStr<'a>>,
}

/// The output item being streamed. Texts are escaped JSON without quotes.
#[derive(Debug)]
enum Open {
    None,
    Message {
        index: usize,
        id: String,
        /// The content parts; the last one is open.
        parts: Vec<(PartKind, Vec<u8>)>,
    },
    Reasoning {
        index: usize,
        id: String,
        text: Vec<u8>,
    },
    Call {
        index: usize,
        id: String,
        /// The chat tool call's `index`.
        chat_index: u32,
        call_id: Vec<u8>,
        name: Vec<u8>,
        args: Vec<u8>,
    },
}

impl Open {
    /// Content part `ci` of the open message or reasoning item: the item's id and output index,
    /// the part's kind (`None` for reasoning text) and its text so far.
    fn part(&self, ci: usize) -> Option<(&str, usize, Option<PartKind>, &[u8])> {
        match self {
            Open::Message { id, index, parts } => parts
                .get(ci)
                .map(|(k, t)| (id.as_str(), *index, Some(*k), t.as_slice())),
            Open::Reasoning { id, index, text } => Some((id, *index, None, text)),
            _ => None,
        }
    }

    /// The whole item as `response.output_item.done` and the Response show it.
    fn write_item(&self, out: &mut Vec<u8>, status: &str) {
        match self {
            Open::None => {}
            Open::Message { id, parts, .. } => write_message_item(
                out,
                id,
                status,
                parts.iter().map(|(k, t)| (*k, t.as_slice())),
            ),
            Open::Reasoning { id, text, .. } => write_reasoning_item(out, id, status, Some(text)),
            Open::Call {
                id,
                call_id,
                name,
                args,
                ..
            } => write_call_item(out, id, status, call_id, name, args),
        }
    }
}

/// `event: TYPE\ndata: {"type":"TYPE"`; the caller adds the fields, then [`ev_end`].
fn ev_begin(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.push(b'"');
}

fn ev_end(out: &mut Vec<u8>, seq: &mut u64) {
    out.extend_from_slice(b",\"sequence_number\":");
    write_u64(out, *seq);
    out.extend_from_slice(b"}\n\n");
    *seq += 1;
}

/// `,"item_id":…,"output_index":…` and, with `content`, `,"content_index":…`.
fn item_ref(out: &mut Vec<u8>, id: &str, index: usize, content: Option<usize>) {
    out.extend_from_slice(b",\"item_id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"output_index\":");
    write_u64(out, index as u64);
    if let Some(c) = content {
        out.extend_from_slice(b",\"content_index\":");
        write_u64(out, c as u64);
    }
}

/// `,"NAME":"TEXT"` for escaped text.
fn text_field(out: &mut Vec<u8>, name: &[u8], text: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(text);
    out.push(b'"');
}

/// Chat chunk payloads -> Responses SSE events. Call [`start`](Self::start) once the upstream
/// answered (or let the first chunk do it), [`on_data`](Self::on_data) per upstream `data:`
/// payload, [`finish`](Self::finish) when the upstream ended; then
/// [`take_answer`](Self::take_answer) gives the final Response for storage.
#[derive(Debug)]
pub struct ChatToResponsesStream {
    head: ResponsesHead,
    ids: ResponseIds,
    seq: u64,
    started: bool,
    done: bool,
    open: Open,
    /// Output index of the next item.
    next_index: usize,
    /// Finished items.
    output: OutputList,
    /// Chat indexes of finished tool calls.
    closed_calls: Vec<u32>,
    outcome: Option<Outcome<'static>>,
    usage: Option<ChatUsage>,
    answer: Option<ResponsesAnswer>,
    scratch: Vec<u8>,
    /// `completed_at` to report instead of the clock (reproducible output).
    fixed_now: Option<u64>,
}

impl ChatToResponsesStream {
    pub fn new(head: ResponsesHead, ids: ResponseIds) -> Self {
        Self {
            head,
            ids,
            seq: 0,
            started: false,
            done: false,
            open: Open::None,
            next_index: 0,
            output: OutputList::default(),
            closed_calls: Vec::new(),
            outcome: None,
            usage: None,
            answer: None,
            scratch: Vec::new(),
            fixed_now: None,
        }
    }

    /// Report this `completed_at` instead of the current time.
    pub fn with_completed_at(mut self, now: u64) -> Self {
        self.fixed_now = Some(now);
        self
    }

    pub fn head(&self) -> &ResponsesHead {
        &self.head
    }

    pub fn ids(&self) -> &ResponseIds {
        &self.ids
    }

    /// The final Response (`completed`, `incomplete` or `failed`) once the stream has ended.
    pub fn take_answer(&mut self) -> Option<ResponsesAnswer> {
        self.answer.take()
    }

    /// `response.created` and `response.in_progress` (once).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            ev_begin(out, kind);
            out.extend_from_slice(b",\"response\":");
            write_response(
                out,
                &self.ids,
                &self.head,
                Outcome::InProgress,
                b"",
                None,
                0,
            );
            ev_end(out, &mut self.seq);
        }
    }

    /// One `data:` payload of the upstream chat stream (`[DONE]` included).
    pub fn on_data(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data.trim() == "[DONE]" {
            self.end(out);
            return;
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "skipped an unreadable chat stream chunk");
                return;
            }
        };
        if let Some(e) = chunk.error {
            let code = e.code.and_then(JStr::from_raw).map(|c| c.decode());
            let kind = e.kind.as_deref().or(code.as_deref()).unwrap_or("api_error");
            let message = e.message.as_deref().unwrap_or("upstream stream error");
            self.fail(out, error_code(kind), message, kind);
            return;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        self.start(out);
        let Some(choice) = chunk
            .choices
            .into_iter()
            .flatten()
            .find(|c| c.index.unwrap_or(0) == 0)
        else {
            return;
        };
        if let Some(d) = &choice.delta {
            let reasoning = d
                .reasoning_content
                .or_else(|| d.reasoning.and_then(JStr::from_raw));
            if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
                self.reasoning(r, out);
            }
            if let Some(t) = d.content.filter(|t| !t.is_empty()) {
                self.text(PartKind::Text, t, out);
            }
            if let Some(t) = d.refusal.filter(|t| !t.is_empty()) {
                self.text(PartKind::Refusal, t, out);
            }
            for tc in d.tool_calls.iter().flatten() {
                self.tool(tc, out);
            }
        }
        if let Some(r) = &choice.finish_reason {
            self.outcome = Some(Outcome::from_finish(r));
        }
    }

    /// The upstream ended. After `[DONE]` nothing is owed; after a `finish_reason` (a server
    /// that sends no `[DONE]`) the closing events; earlier, the stream was cut short:
    /// `response.failed`, never a made-up `response.completed`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.outcome.is_some() {
            self.end(out);
        } else {
            self.fail(out, "server_error", TRUNCATED, "upstream_error");
        }
    }

    fn next_item(&mut self) -> usize {
        self.next_index += 1;
        self.next_index - 1
    }

    fn now(&self) -> u64 {
        self.fixed_now.unwrap_or_else(crate::clock::unix_secs)
    }

    /// Close everything and write the terminal event with the whole Response.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        let outcome = self.outcome.unwrap_or(Outcome::Completed);
        if self.next_index == 0 {
            // Nothing came: an empty message, as the complete answer would have.
            self.open_message(out);
            self.open_part(PartKind::Text, out);
        }
        self.close(out, outcome.item_status());
        self.terminal(out, outcome);
    }

    /// `response.failed` (the open item goes into its output as `incomplete`), then an `error`
    /// event that the SDK raises as an `APIError`.
    fn fail(&mut self, out: &mut Vec<u8>, code: &'static str, message: &str, kind: &str) {
        self.start(out);
        if !matches!(self.open, Open::None) {
            self.output.begin();
            self.open.write_item(&mut self.output.buf, "incomplete");
            self.open = Open::None;
        }
        self.terminal(out, Outcome::Failed(code, message));
        ev_begin(out, "error");
        out.extend_from_slice(b",\"code\":\"");
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        write_str(out, message);
        out.extend_from_slice(b",\"param\":null,\"error\":{\"type\":");
        write_str(out, kind);
        out.extend_from_slice(b",\"code\":\"");
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        write_str(out, message);
        out.extend_from_slice(b",\"param\":null}");
        ev_end(out, &mut self.seq);
    }

    fn terminal(&mut self, out: &mut Vec<u8>, outcome: Outcome<'_>) {
        let mut body = Vec::with_capacity(self.output.buf.len() + self.head.echo.len() + 512);
        write_response(
            &mut body,
            &self.ids,
            &self.head,
            outcome,
            &self.output.buf,
            self.usage.as_ref(),
            self.now(),
        );
        ev_begin(
            out,
            match outcome {
                Outcome::Failed(..) => "response.failed",
                Outcome::Incomplete(_) => "response.incomplete",
                _ => "response.completed",
            },
        );
        out.extend_from_slice(b",\"response\":");
        out.extend_from_slice(&body);
        ev_end(out, &mut self.seq);
        self.answer = Some(ResponsesAnswer {
            body,
            output_items: self.output.to_array(),
            status: outcome.status(),
        });
        self.done = true;
    }
}

#[cfg(test)]
mod tests;
