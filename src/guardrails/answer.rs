//! The output side over complete answers: placeholders restored, output guardrails (redact,
//! block) applied, only the changed JSON strings spliced.
//!
//! Texts read: OpenAI chat `choices[].message.content` and `tool_calls[].function.arguments`;
//! Anthropic `content[]` `text` blocks and every string in `tool_use.input`; Responses
//! `output[]` messages' `output_text` parts and `function_call.arguments`. A block in one choice
//! (or the message, or the response) cuts that text where the blocked value starts, empties the
//! texts after it in the same choice, and ends it the provider's way: `finish_reason:
//! "content_filter"`, `stop_reason: "refusal"`, or `status: "incomplete"` with
//! `incomplete_details: {"reason":"content_filter"}`.
//!
//! With no output guardrail and nothing masked, an answer is not even parsed.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::apply::guard_answer_text;
use super::json::{Edits, decode, encode, nullable, span};
use super::text::{GuardError, OpenAiMessage, Spot, blocks, message_texts};
use super::{Blocked, Hit, Plan, Report, Vault};

pub use super::chunk::{OutEvent, StreamGuard};

/// The answer formats whose texts are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerFormat {
    /// A `chat.completion` (or, streamed, `chat.completion.chunk`s).
    OpenAiChat,
    /// An Anthropic `message` (or, streamed, its events).
    Anthropic,
    /// A Responses `response` object (or, streamed, its events).
    Responses,
}

/// A guarded answer: `body` is `None` when unchanged; `blocked` names the guardrail that cut it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub body: Option<Bytes>,
    pub blocked: Option<Blocked>,
}

/// Whether answers need looking at: an output guardrail applies or something was masked.
pub fn needs_guarding(output: Option<&Plan>, vault: &Vault) -> bool {
    output.is_some_and(|p| !p.is_empty()) || vault.restorable() > 0
}

/// The output side over one complete answer body.
pub fn guard_answer(
    output: Option<&Plan>,
    format: AnswerFormat,
    body: &Bytes,
    vault: &mut Vault,
    report: &mut Report,
) -> Result<Answer, GuardError> {
    if !needs_guarding(output, vault) {
        return Ok(Answer::default());
    }
    let text = std::str::from_utf8(body).map_err(|_| GuardError::Malformed("answer"))?;
    let mut groups = Vec::new();
    answer_texts(format, text, &mut groups)?;
    let mut edits = Edits::default();
    let mut hits = Vec::new();
    let mut first_block = None;
    for g in &groups {
        if let Some(b) = guard_group(output, g, text, vault, report, &mut hits, &mut edits) {
            first_block.get_or_insert(b);
        }
    }
    Ok(Answer {
        body: (!edits.is_empty()).then(|| edits.apply(body)),
        blocked: first_block,
    })
}

/// The texts of one choice (or message, or response), and the fields that end it.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) spots: Vec<Spot>,
    pub(super) end: Ending,
}

/// The fields a block rewrites to end a choice, by format.
#[derive(Debug, Default)]
pub(super) enum Ending {
    #[default]
    None,
    FinishReason(Range<usize>),
    StopReason(Range<usize>),
    Status {
        status: Option<Range<usize>>,
        details: Option<Range<usize>>,
    },
}

/// Apply the output side to one group's texts; the block, if one matched.
pub(super) fn guard_group(
    output: Option<&Plan>,
    g: &Group,
    body: &str,
    vault: &mut Vault,
    report: &mut Report,
    hits: &mut Vec<Hit>,
    edits: &mut Edits,
) -> Option<Blocked> {
    let mut blocked: Option<Blocked> = None;
    for spot in &g.spots {
        if blocked.is_some() {
            edits.push(
                spot.range.clone(),
                encode(if spot.json { "{}" } else { "" }),
            );
            continue;
        }
        let Some(value) = decode(&body[spot.range.clone()]) else {
            continue;
        };
        let c = guard_answer_text(output, &value, spot.json, vault, report, hits);
        if let Some(new) = c.text {
            edits.push(spot.range.clone(), encode(&new));
        }
        blocked = c.blocked;
    }
    if blocked.is_some() {
        match &g.end {
            Ending::None => {}
            Ending::FinishReason(r) => edits.push(r.clone(), b"\"content_filter\"".to_vec()),
            Ending::StopReason(r) => edits.push(r.clone(), b"\"refusal\"".to_vec()),
            Ending::Status { status, details } => {
                if let Some(r) = status {
                    edits.push(r.clone(), b"\"incomplete\"".to_vec());
                }
                if let Some(r) = details {
                    edits.push(r.clone(), br#"{"reason":"content_filter"}"#.to_vec());
                }
            }
        }
    }
    blocked
}

/// The texts of an answer body, grouped by choice.
pub(super) fn answer_texts(
    format: AnswerFormat,
    body: &str,
    groups: &mut Vec<Group>,
) -> Result<(), GuardError> {
    let bad = || GuardError::Malformed("answer");
    match format {
        AnswerFormat::OpenAiChat => {
            let c: Completion<'_> = serde_json::from_str(body).map_err(|_| bad())?;
            for choice in c.choices.iter().flatten() {
                let mut g = Group::default();
                if let Some(m) = &choice.message {
                    message_texts(body, m, &mut g.spots);
                }
                if let Some(f) = choice.finish_reason {
                    g.end = Ending::FinishReason(span(body, f));
                }
                groups.push(g);
            }
        }
        AnswerFormat::Anthropic => {
            let m: Message<'_> = serde_json::from_str(body).map_err(|_| bad())?;
            groups.push(anthropic_group(body, &m));
        }
        AnswerFormat::Responses => {
            let r: Response<'_> = serde_json::from_str(body).map_err(|_| bad())?;
            groups.push(response_group(body, &r));
        }
    }
    Ok(())
}

pub(super) fn anthropic_group(body: &str, m: &Message<'_>) -> Group {
    let mut g = Group::default();
    if let Some(c) = m.content {
        blocks(body, c, &mut g.spots, 0);
    }
    if let Some(s) = m.stop_reason {
        g.end = Ending::StopReason(span(body, s));
    }
    g
}

pub(super) fn response_group(body: &str, r: &Response<'_>) -> Group {
    let mut g = Group::default();
    if let Some(o) = r.output {
        blocks(body, o, &mut g.spots, 0);
    }
    g.end = Ending::Status {
        status: r.status.map(|s| span(body, s)),
        details: r.incomplete_details.map(|s| span(body, s)),
    };
    g
}

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<OpenAiMessage<'a>>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    stop_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct Response<'a> {
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "nullable")]
    incomplete_details: Option<&'a RawValue>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Action, Entities, Entity, Guardrail};
    use super::*;

    fn masked_vault() -> Vault {
        let mut v = Vault::default();
        v.placeholder("EMAIL", "jane@example.com", true);
        v
    }

    fn restore(format: AnswerFormat, body: &str) -> String {
        let mut v = masked_vault();
        let mut r = Report::default();
        let a = guard_answer(
            None,
            format,
            &Bytes::copy_from_slice(body.as_bytes()),
            &mut v,
            &mut r,
        )
        .unwrap();
        String::from_utf8(
            a.body
                .map(|b| b.to_vec())
                .unwrap_or_else(|| body.as_bytes().to_vec()),
        )
        .unwrap()
    }

    #[test]
    fn restores_every_format() {
        assert_eq!(
            restore(
                AnswerFormat::OpenAiChat,
                r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi [EMAIL_1]","tool_calls":[{"function":{"name":"f","arguments":"{\"to\":\"[EMAIL_1]\"}"}}]},"finish_reason":"stop"}]}"#
            ),
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi jane@example.com","tool_calls":[{"function":{"name":"f","arguments":"{\"to\":\"jane@example.com\"}"}}]},"finish_reason":"stop"}]}"#
        );
        assert_eq!(
            restore(
                AnswerFormat::Anthropic,
                r#"{"type":"message","content":[{"type":"text","text":"[EMAIL_1]"},{"type":"tool_use","id":"t","name":"n","input":{"to":"[EMAIL_1]"}}],"stop_reason":"tool_use"}"#
            ),
            r#"{"type":"message","content":[{"type":"text","text":"jane@example.com"},{"type":"tool_use","id":"t","name":"n","input":{"to":"jane@example.com"}}],"stop_reason":"tool_use"}"#
        );
        assert_eq!(
            restore(
                AnswerFormat::Responses,
                r#"{"object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"to [EMAIL_1]","annotations":[]}]}]}"#
            ),
            r#"{"object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"to jane@example.com","annotations":[]}]}]}"#
        );
        let plain = r#"{"choices":[{"message":{"content":"nothing"},"finish_reason":"stop"}]}"#;
        assert_eq!(restore(AnswerFormat::OpenAiChat, plain), plain);
    }

    #[test]
    fn a_block_cuts_the_choice_and_ends_it() {
        let plan = Plan::new(vec![Arc::new(Guardrail::pii(
            "cards",
            Entities::of(&[Entity::CreditCard]),
            Action::Block,
        ))]);
        let mut v = Vault::default();
        let mut r = Report::new(&plan);
        let body = Bytes::from_static(br#"{"choices":[{"index":0,"message":{"content":"Card: 4111 1111 1111 1111 ok","tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]},"finish_reason":"stop"},{"index":1,"message":{"content":"fine"},"finish_reason":"stop"}]}"#);
        let a = guard_answer(Some(&plan), AnswerFormat::OpenAiChat, &body, &mut v, &mut r).unwrap();
        assert_eq!(
            std::str::from_utf8(&a.body.unwrap()).unwrap(),
            r#"{"choices":[{"index":0,"message":{"content":"Card: ","tool_calls":[{"function":{"arguments":"{}"}}]},"finish_reason":"content_filter"},{"index":1,"message":{"content":"fine"},"finish_reason":"stop"}]}"#
        );
        assert_eq!(a.blocked.map(|b| b.guardrail), Some("cards".into()));
        let body = Bytes::from_static(br#"{"status":"completed","incomplete_details":null,"output":[{"type":"message","content":[{"type":"output_text","text":"4111111111111111"}]}]}"#);
        let a = guard_answer(Some(&plan), AnswerFormat::Responses, &body, &mut v, &mut r).unwrap();
        assert_eq!(
            std::str::from_utf8(&a.body.unwrap()).unwrap(),
            r#"{"status":"incomplete","incomplete_details":{"reason":"content_filter"},"output":[{"type":"message","content":[{"type":"output_text","text":""}]}]}"#
        );
        let body = Bytes::from_static(br#"{"content":[{"type":"text","text":"x 4111111111111111"}],"stop_reason":"end_turn"}"#);
        let a = guard_answer(Some(&plan), AnswerFormat::Anthropic, &body, &mut v, &mut r).unwrap();
        assert_eq!(
            std::str::from_utf8(&a.body.unwrap()).unwrap(),
            r#"{"content":[{"type":"text","text":"x "}],"stop_reason":"refusal"}"#
        );
    }

    #[test]
    fn nothing_to_do_costs_no_parse() {
        let mut v = Vault::default();
        let mut r = Report::default();
        let a = guard_answer(
            None,
            AnswerFormat::OpenAiChat,
            &Bytes::from_static(b"not json"),
            &mut v,
            &mut r,
        );
        assert_eq!(a, Ok(Answer::default()));
    }
}
