//! Where text lives in a request, and the request with the input guardrails applied.
//!
//! Texts read, in document order:
//! - OpenAI chat: `messages[].content` (a string, or the `text` of each part), for every role
//!   (`system`, `developer`, `user`, `assistant`, `tool`); assistant
//!   `tool_calls[].function.arguments` and `function_call.arguments` (JSON source).
//! - Anthropic messages: `system` (a string or `text` blocks); `messages[].content` (a string or
//!   blocks): `text`, `tool_use.input` (every string value in it), `tool_result.content`
//!   (a string or blocks), `document` sources of `type: text` (`data`) or `content` (blocks).
//! - Responses: `instructions`; `input` (a string or items): each item's `content` (a string or
//!   `input_text`/`output_text` parts' `text`), `function_call.arguments`,
//!   `function_call_output.output` (a string or parts).
//!
//! Not read: images, files and audio (base64 data), `thinking` blocks and reasoning items (their
//! signatures cover their text), tool definitions, names and ids.
//!
//! The result is the original body when nothing matched (no copy), otherwise the body with
//! only the changed JSON strings replaced; every other byte is kept.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{Edits, decode, encode, is_string, span, string_values};
use super::{Blocked, Hit, Plan, Report, Vault, guard_text};

/// The request formats whose texts are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFormat {
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/messages`
    Anthropic,
    /// `POST /v1/responses`
    Responses,
}

/// Why a request could not be guarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    Blocked(Blocked),
    /// The body is not the JSON object its format expects (guardrails fail closed).
    #[error("the request body is not a valid {0} request")]
    Malformed(&'static str),
}

/// One text in a body: the byte range of its JSON string literal, and whether its content is
/// JSON source (tool-call arguments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Spot {
    pub(super) range: Range<usize>,
    pub(super) json: bool,
}

/// Apply the input guardrails of `plan` to every text of a request. `Ok(None)`: nothing
/// matched, forward `body` as it is. `Ok(Some(new))`: the body with masked/redacted strings.
pub fn guard_request(
    plan: &Plan,
    format: RequestFormat,
    body: &Bytes,
    vault: &mut Vault,
    report: &mut Report,
) -> Result<Option<Bytes>, GuardError> {
    let text = std::str::from_utf8(body).map_err(|_| GuardError::Malformed(format_name(format)))?;
    let mut spots = Vec::new();
    request_texts(format, text, &mut spots)?;
    // Placeholder-shaped text anywhere in the request is reserved before any value is masked.
    for spot in &spots {
        let lit = &text[spot.range.clone()];
        if lit.contains('[')
            && let Some(value) = decode(lit)
        {
            vault.reserve_literals(&value);
        }
    }
    let mut edits = Edits::default();
    let mut hits: Vec<Hit> = Vec::new();
    for spot in &spots {
        let Some(value) = decode(&text[spot.range.clone()]) else {
            continue;
        };
        if let Some(new) =
            guard_text(plan, &value, vault, report, &mut hits).map_err(GuardError::Blocked)?
        {
            edits.push(spot.range.clone(), encode(&new));
        }
    }
    Ok((!edits.is_empty()).then(|| edits.apply(body)))
}

/// Every text of a request, decoded, in document order (what a moderation model is given).
pub fn request_strings(format: RequestFormat, body: &[u8]) -> Result<Vec<String>, GuardError> {
    let text = std::str::from_utf8(body).map_err(|_| GuardError::Malformed(format_name(format)))?;
    let mut spots = Vec::new();
    request_texts(format, text, &mut spots)?;
    Ok(spots
        .iter()
        .filter(|s| !s.json)
        .filter_map(|s| decode(&text[s.range.clone()]).map(std::borrow::Cow::into_owned))
        .filter(|s| !s.trim().is_empty())
        .collect())
}

fn format_name(format: RequestFormat) -> &'static str {
    match format {
        RequestFormat::OpenAiChat => "chat completions",
        RequestFormat::Anthropic => "messages",
        RequestFormat::Responses => "responses",
    }
}

/// The texts of a request body, in document order.
pub(super) fn request_texts(
    format: RequestFormat,
    body: &str,
    spots: &mut Vec<Spot>,
) -> Result<(), GuardError> {
    let bad = || GuardError::Malformed(format_name(format));
    match format {
        RequestFormat::OpenAiChat => {
            let r: OpenAiRequest<'_> = serde_json::from_str(body).map_err(|_| bad())?;
            for m in r.messages.iter().flatten() {
                message_texts(body, m, spots);
            }
        }
        RequestFormat::Anthropic => {
            let r: AnthropicRequest<'_> = serde_json::from_str(body).map_err(|_| bad())?;
            if let Some(s) = r.system {
                blocks(body, s, spots, 0);
            }
            for m in r.messages.iter().flatten() {
                if let Some(c) = m.content {
                    blocks(body, c, spots, 0);
                }
            }
        }
        RequestFormat::Responses => {
            let r: ResponsesRequest<'_> = serde_json::from_str(body).map_err(|_| bad())?;
            if let Some(s) = r.instructions {
                text_spot(body, s, spots);
            }
            if let Some(i) = r.input {
                blocks(body, i, spots, 0);
            }
        }
    }
    Ok(())
}

/// The texts of an OpenAI chat message (a request's or an answer's).
pub(super) fn message_texts(body: &str, m: &OpenAiMessage<'_>, spots: &mut Vec<Spot>) {
    if let Some(c) = m.content {
        blocks(body, c, spots, 0);
    }
    for call in m.tool_calls.iter().flatten() {
        if let Some(f) = &call.function {
            arguments(body, f.arguments, spots);
        }
    }
    if let Some(f) = &m.function_call {
        arguments(body, f.arguments, spots);
    }
}

/// A text that is JSON source, when it is a string.
pub(super) fn arguments(body: &str, raw: Option<&RawValue>, spots: &mut Vec<Spot>) {
    if let Some(raw) = raw.filter(|r| is_string(r)) {
        spots.push(Spot {
            range: span(body, raw),
            json: true,
        });
    }
}

pub(super) fn text_spot(body: &str, raw: &RawValue, spots: &mut Vec<Spot>) {
    if is_string(raw) {
        spots.push(Spot {
            range: span(body, raw),
            json: false,
        });
    }
}

/// Nesting deeper than this is not followed (tool results inside tool results…).
const MAX_DEPTH: u8 = 8;

/// A content value: a string, or an array of parts, blocks or items.
pub(super) fn blocks(body: &str, raw: &RawValue, spots: &mut Vec<Spot>, depth: u8) {
    if is_string(raw) {
        text_spot(body, raw, spots);
        return;
    }
    if depth >= MAX_DEPTH || !raw.get().starts_with('[') {
        return;
    }
    let Ok(list) = serde_json::from_str::<Vec<Block<'_>>>(raw.get()) else {
        return;
    };
    for b in &list {
        block(body, b, spots, depth);
    }
}

/// One part, block or item (all fields optional; which ones a type has decides what is read).
pub(super) fn block(body: &str, b: &Block<'_>, spots: &mut Vec<Spot>, depth: u8) {
    if let Some(t) = b.text {
        text_spot(body, t, spots);
    }
    for nested in [b.content, b.output].into_iter().flatten() {
        blocks(body, nested, spots, depth + 1);
    }
    if let Some(input) = b.input
        && b.kind.as_deref() == Some("tool_use")
    {
        let mut ranges = Vec::new();
        string_values(body, input, &mut ranges);
        spots.extend(ranges.into_iter().map(|range| Spot { range, json: false }));
    }
    arguments(body, b.arguments, spots);
    if let Some(src) = &b.source {
        match src.kind.as_deref() {
            Some("text") => {
                if let Some(d) = src.data {
                    text_spot(body, d, spots);
                }
            }
            Some("content") => {
                if let Some(c) = src.content {
                    blocks(body, c, spots, depth + 1);
                }
            }
            _ => {}
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(super) kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) arguments: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<Source<'a>>,
}

#[derive(Deserialize)]
struct Source<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OpenAiRequest<'a> {
    #[serde(borrow, default)]
    messages: Option<Vec<OpenAiMessage<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct OpenAiMessage<'a> {
    #[serde(borrow, default)]
    pub(super) content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    pub(super) function_call: Option<Function<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ToolCall<'a> {
    #[serde(borrow, default)]
    pub(super) function: Option<Function<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Function<'a> {
    #[serde(borrow, default)]
    pub(super) arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AnthropicRequest<'a> {
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Vec<AnthropicMessage<'a>>>,
}

#[derive(Deserialize)]
struct AnthropicMessage<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ResponsesRequest<'a> {
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Action, Entities, Guardrail};
    use super::*;

    fn texts(format: RequestFormat, body: &str) -> Vec<String> {
        let mut spots = Vec::new();
        request_texts(format, body, &mut spots).unwrap();
        spots
            .iter()
            .map(|s| decode(&body[s.range.clone()]).unwrap().into_owned())
            .collect()
    }

    #[test]
    fn openai_chat_texts() {
        let body = r#"{"model":"m","messages":[
            {"role":"system","content":"sys"},
            {"role":"developer","content":[{"type":"text","text":"dev"}]},
            {"role":"user","content":[{"type":"text","text":"u1"},{"type":"image_url","image_url":{"url":"data:x"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"q\":1}"}}]},
            {"role":"tool","tool_call_id":"c","content":"result"}]}"#;
        assert_eq!(
            texts(RequestFormat::OpenAiChat, body),
            ["sys", "dev", "u1", "{\"q\":1}", "result"]
        );
    }

    #[test]
    fn anthropic_texts() {
        let body = r#"{"model":"m","max_tokens":5,"system":[{"type":"text","text":"sys"}],"messages":[
            {"role":"user","content":"hello"},
            {"role":"assistant","content":[{"type":"thinking","thinking":"hidden","signature":"s"},{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"n","input":{"city":"Paris","n":[1,"two"]}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r1"}]},{"type":"tool_result","tool_use_id":"t","content":"r2"},
              {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AKIAIOSFODNN7EXAMPLE"}},
              {"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc"}}]}]}"#;
        assert_eq!(
            texts(RequestFormat::Anthropic, body),
            ["sys", "hello", "a", "Paris", "two", "r1", "r2", "doc"]
        );
    }

    #[test]
    fn responses_texts() {
        let body = r#"{"model":"m","instructions":"be brief","input":[
            {"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"data:x"}]},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"yo"}]},
            {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"c","output":"out"},
            {"type":"reasoning","summary":[{"type":"summary_text","text":"x"}]}]}"#;
        // Reasoning items carry their text in `summary`, which is not read.
        assert_eq!(
            texts(RequestFormat::Responses, body),
            ["be brief", "hi", "yo", "{}", "out"]
        );
        assert_eq!(
            texts(RequestFormat::Responses, r#"{"input":"just text"}"#),
            ["just text"]
        );
    }

    #[test]
    fn masks_only_the_changed_strings() {
        let plan = Plan::new(vec![Arc::new(Guardrail::pii(
            "pii",
            Entities::all(),
            Action::Mask,
        ))]);
        let mut v = Vault::default();
        let mut r = Report::new(&plan);
        let body = Bytes::from_static(
            br#"{ "model" : "m", "messages" : [ {"role":"user", "content":"mail a@x.io \u00e9"}, {"role":"user","content":"same a@x.io"} ], "n": 1 }"#,
        );
        let out = guard_request(&plan, RequestFormat::OpenAiChat, &body, &mut v, &mut r)
            .unwrap()
            .unwrap();
        assert_eq!(
            &out[..],
            r#"{ "model" : "m", "messages" : [ {"role":"user", "content":"mail [EMAIL_1] é"}, {"role":"user","content":"same [EMAIL_1]"} ], "n": 1 }"#.as_bytes()
        );
        let plain =
            Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(
            guard_request(&plan, RequestFormat::OpenAiChat, &plain, &mut v, &mut r),
            Ok(None)
        );
        assert!(matches!(
            guard_request(
                &plan,
                RequestFormat::OpenAiChat,
                &Bytes::from_static(b"[1]"),
                &mut v,
                &mut r
            ),
            Err(GuardError::Malformed(_))
        ));
    }
}
