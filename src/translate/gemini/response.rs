//! Gemini `GenerateContentResponse` -> OpenAI `chat.completion`, and Google's error body.

use std::borrow::Cow;

use serde::Deserialize;

use super::super::TranslateError;
use super::super::pivot::answer::{Choice, Texts, ToolCallOut, write_completion};
use super::wire::{Candidate, GError, GenResponse};
use super::{finish_reason, tool_call_id};

/// Gemini answer -> OpenAI chat.completion. Every candidate becomes a choice (`n` asks for
/// several); `model` is the name to report to the client.
pub fn gemini_response_to_chat(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    gemini_response_to_chat_at(body, model, crate::clock::unix_secs())
}

pub(crate) fn gemini_response_to_chat_at(
    body: &[u8],
    model: &str,
    created: u64,
) -> Result<Vec<u8>, TranslateError> {
    let resp: GenResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("Gemini answer", &e))?;
    let candidates = resp.candidates.unwrap_or_default();
    let mut choices: Vec<Choice> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| choice(c, u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    if choices.is_empty() {
        // A prompt Gemini blocked has no candidates, only `promptFeedback.blockReason`.
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some());
        choices.push(Choice {
            index: 0,
            content: None,
            reasoning: None,
            tool_calls: Vec::new(),
            finish_reason: if blocked { "content_filter" } else { "stop" },
        });
    }
    let id = match resp.response_id.as_deref() {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => crate::ids::random_id("chatcmpl-"),
    };
    write_completion(
        &id,
        created,
        model,
        choices,
        resp.usage_metadata.unwrap_or_default().to_openai(),
    )
}

fn choice<'b>(c: &'b Candidate<'_>, position: u32) -> Choice<'b> {
    let mut content = Texts::default();
    let mut reasoning = Texts::default();
    let mut tool_calls = Vec::new();
    for p in c.content.iter().flat_map(|c| &c.parts) {
        if let Some(f) = &p.function_call {
            tool_calls.push(ToolCallOut::new(
                Cow::Owned(tool_call_id(p.thought_signature.as_deref())),
                f.name,
                f.args(),
            ));
        } else if let Some(t) = p.text {
            if p.is_thought() {
                reasoning.push(t);
            } else {
                content.push(t);
            }
        } else {
            tracing::debug!("dropped a Gemini answer part OpenAI cannot show");
        }
    }
    let called = !tool_calls.is_empty();
    Choice {
        index: c.index.unwrap_or(position),
        content: content.into_txt(),
        reasoning: reasoning.into_txt(),
        tool_calls,
        finish_reason: finish_reason(c.finish_reason.as_deref().unwrap_or("STOP"), called),
    }
}

#[derive(Deserialize)]
struct ErrBody<'a> {
    #[serde(borrow)]
    error: Option<GError<'a>>,
}

/// Google's `{"error":{"code","message","status"}}` (also inside a one-element array, as some
/// Google endpoints send it) -> (type, message).
pub fn error_from_gemini(body: &[u8]) -> Option<(String, String)> {
    let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let e = if array {
        let [b] = serde_json::from_slice::<[ErrBody; 1]>(body).ok()?;
        b.error?
    } else {
        serde_json::from_slice::<ErrBody>(body).ok()?.error?
    };
    Some((
        e.client_type().to_owned(),
        e.message.map(Cow::into_owned).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors() {
        let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        assert_eq!(
            error_from_gemini(body),
            Some((
                "authentication_error".into(),
                "API key not valid. Please pass a valid API key.".into()
            ))
        );
        let body = br#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            error_from_gemini(body).map(|e| e.0),
            Some("invalid_request_error".into())
        );
        let body = br#"[{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}]"#;
        assert_eq!(
            error_from_gemini(body).map(|e| e.0),
            Some("rate_limit_error".into())
        );
        let body = br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
        assert_eq!(
            error_from_gemini(body).map(|e| e.0),
            Some("api_error".into())
        );
        assert_eq!(error_from_gemini(b"<html>"), None);
        assert_eq!(error_from_gemini(b"{}"), None);
    }

    #[test]
    fn bodies_that_are_not_answers_are_errors() {
        for body in [&b"nope"[..], br#"{"candidates": 5}"#] {
            assert!(gemini_response_to_chat(body, "m").is_err());
        }
    }
}
