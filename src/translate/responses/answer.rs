//! A complete chat answer -> the Response object: a `reasoning` item when the answer had
//! reasoning text, a `message` item with its text (and refusal), one `function_call` item per
//! tool call; `status` from `finish_reason`; usage in Responses' shape.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::TranslateError;
use super::super::json::JStr;
use super::object::{
    ChatUsage, Outcome, OutputList, PartKind, inner, write_call_item, write_message_item,
    write_reasoning_item, write_response,
};
use super::{ResponseIds, ResponsesAnswer, ResponsesHead};

#[derive(Deserialize)]
struct ChatResp<'a> {
    #[serde(borrow)]
    choices: Option<Vec<RChoice<'a>>>,
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct RChoice<'a> {
    index: Option<u64>,
    #[serde(borrow)]
    message: Option<RMsg<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RMsg<'a> {
    /// A string, or (from some servers) an array of text parts.
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    refusal: Option<JStr<'a>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<RCall<'a>>>,
    #[serde(borrow)]
    reasoning_content: Option<JStr<'a>>,
    /// `reasoning` as a string (vLLM, OpenRouter); other shapes are not reasoning text.
    #[serde(borrow)]
    reasoning: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RTextPart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct RCall<'a> {
    #[serde(borrow)]
    id: Option<JStr<'a>>,
    #[serde(borrow)]
    function: Option<RFn<'a>>,
}

#[derive(Deserialize)]
struct RFn<'a> {
    #[serde(borrow)]
    name: JStr<'a>,
    #[serde(borrow)]
    arguments: Option<JStr<'a>>,
}

/// Chat completion -> Response object (and its output items in stored form). `head`: from the
/// request's translation; `ids`: the response's id and creation time.
pub fn chat_response_to_responses(
    chat_body: &[u8],
    head: &ResponsesHead,
    ids: &ResponseIds,
) -> Result<ResponsesAnswer, TranslateError> {
    chat_response_to_responses_at(chat_body, head, ids, crate::clock::unix_secs())
}

pub(super) fn chat_response_to_responses_at(
    chat_body: &[u8],
    head: &ResponsesHead,
    ids: &ResponseIds,
    now: u64,
) -> Result<ResponsesAnswer, TranslateError> {
    let resp: ChatResp = serde_json::from_slice(chat_body)
        .map_err(|e| TranslateError::json("chat completion", &e))?;
    let choices = resp
        .choices
        .ok_or_else(|| TranslateError::Invalid("chat completion has no `choices`".into()))?;
    let choice = choices
        .iter()
        .find(|c| c.index.unwrap_or(0) == 0)
        .or(choices.first());
    let outcome = Outcome::from_finish(
        choice
            .and_then(|c| c.finish_reason.as_deref())
            .unwrap_or("stop"),
    );
    let msg = choice.and_then(|c| c.message.as_ref());

    let mut items = OutputList::with_capacity(chat_body.len());
    if let Some(m) = msg {
        let reasoning = m
            .reasoning_content
            .or_else(|| m.reasoning.and_then(JStr::from_raw))
            .filter(|r| !r.is_empty());
        if let Some(r) = reasoning {
            let i = items.begin();
            write_reasoning_item(
                &mut items.buf,
                &ids.output_item("rs_", i),
                "completed",
                Some(inner(r.raw())),
            );
        }
    }
    let text_parts: Vec<RTextPart> = match msg.and_then(|m| m.content) {
        Some(raw) if raw.get().starts_with('[') => {
            serde_json::from_str(raw.get()).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    // The answer's text is one output_text part (text parts of an array joined, as a stream
    // would have sent them), then the refusal.
    let mut joined: Vec<u8> = Vec::new();
    let mut text: Option<&[u8]> = msg
        .and_then(|m| m.content)
        .and_then(JStr::from_raw)
        .filter(|t| !t.is_empty())
        .map(|t| inner(t.raw()));
    for p in &text_parts {
        match (&*p.kind, p.text) {
            ("text" | "output_text", Some(t)) if !t.is_empty() => {
                joined.extend_from_slice(inner(t.raw()))
            }
            (kind, _) => tracing::debug!(part = kind, "dropped a non-text part of a chat answer"),
        }
    }
    if !joined.is_empty() {
        text = Some(&joined);
    }
    let mut parts: Vec<(PartKind, &[u8])> = Vec::with_capacity(2);
    if let Some(t) = text {
        parts.push((PartKind::Text, t));
    }
    if let Some(r) = msg.and_then(|m| m.refusal).filter(|r| !r.is_empty()) {
        parts.push((PartKind::Refusal, inner(r.raw())));
    }
    let calls = msg.and_then(|m| m.tool_calls.as_deref()).unwrap_or(&[]);
    if parts.is_empty() && items.len == 0 && calls.is_empty() {
        // Nothing at all: an empty text, as the stream would have sent.
        parts.push((PartKind::Text, b""));
    }
    if !parts.is_empty() {
        let i = items.begin();
        write_message_item(
            &mut items.buf,
            &ids.output_item("msg_", i),
            outcome.item_status(),
            parts,
        );
    }
    for c in calls {
        let Some(f) = &c.function else {
            tracing::debug!("dropped a tool call that is not a function call");
            continue;
        };
        let i = items.begin();
        let generated;
        let call_id = match c.id {
            Some(id) => inner(id.raw()),
            None => {
                generated = super::super::tool_ids::new_openai_id();
                generated.as_bytes()
            }
        };
        write_call_item(
            &mut items.buf,
            &ids.output_item("fc_", i),
            "completed",
            call_id,
            inner(f.name.raw()),
            f.arguments.map_or(b"{}".as_slice(), |a| inner(a.raw())),
        );
    }

    let mut body = Vec::with_capacity(items.buf.len() + head.echo.len() + 512);
    write_response(
        &mut body,
        ids,
        head,
        outcome,
        &items.buf,
        resp.usage.as_ref(),
        now,
    );
    Ok(ResponsesAnswer {
        body,
        output_items: items.to_array(),
        status: outcome.status(),
    })
}
