//! Bedrock `Converse` answer -> OpenAI `chat.completion`, and Bedrock's error body.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::TranslateError;
use super::super::json::JStr;
use super::super::pivot::answer::{Choice, Texts, ToolCallOut, write_completion};
use super::super::tool_ids::BEDROCK;
use super::{ConverseUsage, error_type, finish_reason};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse<'a> {
    #[serde(borrow)]
    output: Option<Output<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<ConverseUsage>,
}

#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow)]
    message: Option<MessageIn<'a>>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(borrow, default)]
    content: Vec<BlockIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockIn<'a> {
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    #[serde(borrow)]
    tool_use: Option<ToolUseIn<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<ReasoningIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseIn<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: JStr<'a>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningIn<'a> {
    #[serde(borrow)]
    reasoning_text: Option<ReasoningText<'a>>,
}

#[derive(Deserialize)]
struct ReasoningText<'a> {
    #[serde(borrow)]
    text: Option<JStr<'a>>,
}

/// Bedrock Converse answer -> OpenAI chat.completion. `model`: the name to report to the
/// client.
pub fn bedrock_response_to_chat(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    bedrock_response_to_chat_at(body, model, crate::clock::unix_secs())
}

pub(crate) fn bedrock_response_to_chat_at(
    body: &[u8],
    model: &str,
    created: u64,
) -> Result<Vec<u8>, TranslateError> {
    let resp: ConverseResponse =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("Bedrock answer", &e))?;
    let message = resp
        .output
        .and_then(|o| o.message)
        .ok_or_else(|| TranslateError::Invalid("Bedrock answer has no `output.message`".into()))?;
    let mut content = Texts::default();
    let mut reasoning = Texts::default();
    let mut tool_calls = Vec::new();
    for b in &message.content {
        if let Some(t) = b.text {
            content.push(t);
        } else if let Some(t) = &b.tool_use {
            tool_calls.push(ToolCallOut::new(
                BEDROCK.to_openai(&t.tool_use_id),
                t.name,
                t.input.map_or("{}", |i| i.get()),
            ));
        } else if let Some(t) = b
            .reasoning_content
            .as_ref()
            .and_then(|r| r.reasoning_text.as_ref())
            .and_then(|r| r.text)
        {
            reasoning.push(t);
        } else {
            tracing::debug!("dropped a Converse answer block OpenAI cannot show");
        }
    }
    let choice = Choice {
        index: 0,
        content: content.into_txt(),
        reasoning: reasoning.into_txt(),
        tool_calls,
        finish_reason: finish_reason(resp.stop_reason.as_deref().unwrap_or("end_turn")),
    };
    write_completion(
        &crate::ids::random_id("chatcmpl-"),
        created,
        model,
        vec![choice],
        resp.usage.unwrap_or_default().to_openai(),
    )
}

#[derive(Deserialize)]
struct ErrBody<'a> {
    #[serde(borrow, alias = "Message")]
    message: Option<Cow<'a, str>>,
}

/// Bedrock's error: the type from the `x-amzn-errortype` header (`ValidationException:…`), the
/// message from the body's `message` (or `Message`) -> (type, message).
pub fn error_from_bedrock(header_type: Option<&str>, body: &[u8]) -> Option<(String, String)> {
    let message = serde_json::from_slice::<ErrBody>(body)
        .ok()
        .and_then(|b| b.message);
    if header_type.is_none() && message.is_none() {
        return None;
    }
    Some((
        error_type(header_type.unwrap_or("")).to_owned(),
        message.map(Cow::into_owned).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors() {
        assert_eq!(
            error_from_bedrock(
                Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
                br#"{"message":"The provided model identifier is invalid."}"#
            ),
            Some((
                "invalid_request_error".into(),
                "The provided model identifier is invalid.".into()
            ))
        );
        assert_eq!(
            error_from_bedrock(
                Some("UnrecognizedClientException"),
                br#"{"Message":"The security token included in the request is invalid."}"#
            )
            .map(|e| e.0),
            Some("authentication_error".into())
        );
        assert_eq!(
            error_from_bedrock(
                None,
                br#"{"message":"Too many requests, please wait before trying again."}"#
            ),
            Some((
                "api_error".into(),
                "Too many requests, please wait before trying again.".into()
            ))
        );
        assert_eq!(error_from_bedrock(None, b"<html>"), None);
    }

    #[test]
    fn bodies_that_are_not_answers_are_errors() {
        for body in [
            &b"nope"[..],
            br#"{"output":{}}"#,
            br#"{"output":{"message":{"content":5}}}"#,
        ] {
            assert!(bedrock_response_to_chat(body, "m").is_err());
        }
    }
}
