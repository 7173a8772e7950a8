//! The output items' events: opening an item (message, content part, reasoning, function
//! call), its deltas, and closing it with its `…done` events.

use super::super::super::json::{JStr, write_u64};
use super::super::object::{
    PartKind, inner, write_call_item, write_message_item, write_part, write_reasoning_item,
    write_reasoning_part,
};
use super::*;

impl ChatToResponsesStream {
    /// `response.output_item.added` for the item just opened.
    pub(super) fn added(&mut self, out: &mut Vec<u8>) {
        let index = match &self.open {
            Open::None => return,
            Open::Message { index, .. }
            | Open::Reasoning { index, .. }
            | Open::Call { index, .. } => *index,
        };
        ev_begin(out, "response.output_item.added");
        out.extend_from_slice(b",\"output_index\":");
        write_u64(out, index as u64);
        out.extend_from_slice(b",\"item\":");
        match &self.open {
            Open::Message { id, .. } => write_message_item(out, id, "in_progress", []),
            Open::Reasoning { id, .. } => write_reasoning_item(out, id, "in_progress", None),
            Open::Call {
                id, call_id, name, ..
            } => write_call_item(out, id, "in_progress", call_id, name, b""),
            Open::None => {}
        }
        ev_end(out, &mut self.seq);
    }

    /// `response.content_part.added` / `.done` for part `ci` of the open message or reasoning.
    pub(super) fn part_event(&mut self, out: &mut Vec<u8>, done: bool, ci: usize) {
        let Some((id, index, kind, text)) = self.open.part(ci) else {
            return;
        };
        let text = if done { text } else { b"" };
        ev_begin(
            out,
            if done {
                "response.content_part.done"
            } else {
                "response.content_part.added"
            },
        );
        item_ref(out, id, index, Some(ci));
        out.extend_from_slice(b",\"part\":");
        match kind {
            Some(k) => write_part(out, k, text),
            None => write_reasoning_part(out, text),
        }
        ev_end(out, &mut self.seq);
    }

    /// The `…text.done` (or `refusal.done`) event of part `ci`, then its `content_part.done`.
    pub(super) fn part_done(&mut self, out: &mut Vec<u8>, ci: usize) {
        let Some((id, index, kind, text)) = self.open.part(ci) else {
            return;
        };
        let (event, field): (&str, &[u8]) = match kind {
            Some(PartKind::Text) => ("response.output_text.done", b"text"),
            Some(PartKind::Refusal) => ("response.refusal.done", b"refusal"),
            None => ("response.reasoning_text.done", b"text"),
        };
        ev_begin(out, event);
        item_ref(out, id, index, Some(ci));
        text_field(out, field, text);
        if kind == Some(PartKind::Text) {
            out.extend_from_slice(b",\"logprobs\":[]");
        }
        ev_end(out, &mut self.seq);
        self.part_event(out, true, ci);
    }

    /// Close the open item: its `…done` events, then `response.output_item.done`.
    pub(super) fn close(&mut self, out: &mut Vec<u8>, status: &str) {
        match &self.open {
            Open::None => return,
            Open::Message { parts, .. } => {
                if let Some(last) = parts.len().checked_sub(1) {
                    self.part_done(out, last);
                }
            }
            Open::Reasoning { .. } => self.part_done(out, 0),
            Open::Call {
                id,
                index,
                args,
                chat_index,
                ..
            } => {
                ev_begin(out, "response.function_call_arguments.done");
                item_ref(out, id, *index, None);
                text_field(out, b"arguments", args);
                ev_end(out, &mut self.seq);
                self.closed_calls.push(*chat_index);
            }
        }
        let open = std::mem::replace(&mut self.open, Open::None);
        let index = match &open {
            Open::Message { index, .. }
            | Open::Reasoning { index, .. }
            | Open::Call { index, .. } => *index,
            Open::None => return,
        };
        self.scratch.clear();
        open.write_item(&mut self.scratch, status);
        ev_begin(out, "response.output_item.done");
        out.extend_from_slice(b",\"output_index\":");
        write_u64(out, index as u64);
        out.extend_from_slice(b",\"item\":");
        out.extend_from_slice(&self.scratch);
        ev_end(out, &mut self.seq);
        self.output.begin();
        self.output.buf.extend_from_slice(&self.scratch);
    }

    pub(super) fn open_message(&mut self, out: &mut Vec<u8>) {
        let index = self.next_item();
        self.open = Open::Message {
            index,
            id: self.ids.output_item("msg_", index),
            parts: Vec::with_capacity(1),
        };
        self.added(out);
    }

    /// Start a new content part of the open message.
    pub(super) fn open_part(&mut self, kind: PartKind, out: &mut Vec<u8>) {
        let Open::Message { parts, .. } = &mut self.open else {
            return;
        };
        parts.push((kind, Vec::new()));
        let ci = parts.len() - 1;
        self.part_event(out, false, ci);
    }

    pub(super) fn text(&mut self, kind: PartKind, delta: JStr<'_>, out: &mut Vec<u8>) {
        if !matches!(self.open, Open::Message { .. }) {
            self.close(out, "completed");
            self.open_message(out);
        }
        let (last, n) = match &self.open {
            Open::Message { parts, .. } => (parts.last().map(|(k, _)| *k), parts.len()),
            _ => return,
        };
        if last != Some(kind) {
            if n > 0 {
                self.part_done(out, n - 1);
            }
            self.open_part(kind, out);
        }
        let Open::Message { id, index, parts } = &mut self.open else {
            return;
        };
        let ci = parts.len() - 1;
        if let Some((_, text)) = parts.last_mut() {
            text.extend_from_slice(inner(delta.raw()));
        }
        ev_begin(
            out,
            match kind {
                PartKind::Text => "response.output_text.delta",
                PartKind::Refusal => "response.refusal.delta",
            },
        );
        item_ref(out, id, *index, Some(ci));
        out.extend_from_slice(b",\"delta\":");
        out.extend_from_slice(delta.raw().as_bytes());
        if kind == PartKind::Text {
            out.extend_from_slice(b",\"logprobs\":[]");
        }
        ev_end(out, &mut self.seq);
    }

    pub(super) fn reasoning(&mut self, delta: JStr<'_>, out: &mut Vec<u8>) {
        if !matches!(self.open, Open::Reasoning { .. }) {
            self.close(out, "completed");
            let index = self.next_item();
            self.open = Open::Reasoning {
                index,
                id: self.ids.output_item("rs_", index),
                text: Vec::new(),
            };
            self.added(out);
            self.part_event(out, false, 0);
        }
        let Open::Reasoning { id, index, text } = &mut self.open else {
            return;
        };
        text.extend_from_slice(inner(delta.raw()));
        ev_begin(out, "response.reasoning_text.delta");
        item_ref(out, id, *index, Some(0));
        out.extend_from_slice(b",\"delta\":");
        out.extend_from_slice(delta.raw().as_bytes());
        ev_end(out, &mut self.seq);
    }

    pub(super) fn tool(&mut self, tc: &CToolDelta<'_>, out: &mut Vec<u8>) {
        let chat_index = tc.index.unwrap_or(0);
        let name = tc.function.as_ref().and_then(|f| f.name);
        let args = tc.function.as_ref().and_then(|f| f.arguments);
        let continues = match &self.open {
            Open::Call {
                chat_index: i,
                call_id,
                ..
            } => *i == chat_index && tc.id.is_none_or(|id| inner(id.raw()) == call_id.as_slice()),
            _ => false,
        };
        if !continues {
            if tc.id.is_none() && name.is_none() && self.closed_calls.contains(&chat_index) {
                tracing::debug!(
                    chat_index,
                    "dropped arguments for a tool call that is no longer open"
                );
                return;
            }
            self.close(out, "completed");
            let index = self.next_item();
            let call_id = match tc.id {
                Some(id) => inner(id.raw()).to_vec(),
                None => super::super::super::tool_ids::new_openai_id().into_bytes(),
            };
            self.open = Open::Call {
                index,
                id: self.ids.output_item("fc_", index),
                chat_index,
                call_id,
                name: name.map(|n| inner(n.raw()).to_vec()).unwrap_or_default(),
                args: Vec::new(),
            };
            self.added(out);
        }
        let Open::Call {
            id,
            index,
            name: open_name,
            args: open_args,
            ..
        } = &mut self.open
        else {
            return;
        };
        if let Some(n) = name.filter(|_| open_name.is_empty()) {
            open_name.extend_from_slice(inner(n.raw()));
        }
        let Some(a) = args.filter(|a| !a.is_empty()) else {
            return;
        };
        open_args.extend_from_slice(inner(a.raw()));
        ev_begin(out, "response.function_call_arguments.delta");
        item_ref(out, id, *index, None);
        out.extend_from_slice(b",\"delta\":");
        out.extend_from_slice(a.raw().as_bytes());
        ev_end(out, &mut self.seq);
    }
}
