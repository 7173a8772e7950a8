//! Request bodies: OpenAI Chat Completions <-> Anthropic Messages. This file holds the OpenAI
//! Chat request as read (shared with the Gemini and Bedrock translations through `pivot`) and
//! the helpers of both directions; `to_messages.rs` writes an Anthropic request from it,
//! `to_chat.rs` reads an Anthropic request and writes an OpenAI one.

use std::borrow::Cow;

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::TranslateError;
use super::json::JStr;
use super::pivot::request::{Stop, parse_data_url};

mod json_answer;
mod to_chat;
mod to_messages;

pub use json_answer::json_answer_tool;
pub use to_chat::messages_request_to_chat;
pub use to_messages::chat_request_to_messages;

/// Parse a JSON array, naming the failing element in the error.
pub(super) fn parse_list<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    what: &str,
) -> Result<Vec<T>, TranslateError> {
    if !raw.get().starts_with('[') {
        return Err(TranslateError::Invalid(format!(
            "`{what}` must be an array"
        )));
    }
    match serde_json::from_str::<Vec<T>>(raw.get()) {
        Ok(v) => Ok(v),
        Err(e) => {
            if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = serde_json::from_str::<T>(item.get()) {
                        return Err(TranslateError::Invalid(format!(
                            "invalid `{what}[{i}]`: {e}"
                        )));
                    }
                }
            }
            Err(TranslateError::json(&format!("`{what}`"), &e))
        }
    }
}

/// Name each present field in `dropped` (which also logs it at debug level).
fn log_dropped(fields: &[(&'static str, bool)], dropped: &mut super::Dropped) {
    for &(name, present) in fields {
        if present {
            dropped.push(name);
        }
    }
}

fn serialize(v: &impl Serialize) -> Result<Vec<u8>, TranslateError> {
    serde_json::to_vec(v)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated request: {e}")))
}

// ---------------------------------------------------------------------------------------------
// The OpenAI Chat request as read
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ChatReq<'a> {
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(borrow)]
    stop: Option<Stop<'a>>,
    stream: Option<bool>,
    #[serde(borrow)]
    tools: Option<Vec<ChatTool<'a>>>,
    #[serde(borrow)]
    tool_choice: Option<&'a RawValue>,
    parallel_tool_calls: Option<bool>,
    #[serde(borrow)]
    user: Option<JStr<'a>>,
    #[serde(borrow)]
    safety_identifier: Option<JStr<'a>>,
    n: Option<u64>,
    // Dropped (logged when present).
    logprobs: Option<IgnoredAny>,
    top_logprobs: Option<IgnoredAny>,
    seed: Option<IgnoredAny>,
    /// JSON mode: a forced tool or a system instruction (`json_answer.rs`).
    #[serde(borrow)]
    response_format: Option<&'a RawValue>,
    presence_penalty: Option<IgnoredAny>,
    frequency_penalty: Option<IgnoredAny>,
    logit_bias: Option<IgnoredAny>,
    store: Option<IgnoredAny>,
    metadata: Option<IgnoredAny>,
    service_tier: Option<IgnoredAny>,
    /// Becomes Claude's extended thinking.
    #[serde(borrow)]
    reasoning_effort: Option<JStr<'a>>,
    modalities: Option<IgnoredAny>,
    audio: Option<IgnoredAny>,
    prediction: Option<IgnoredAny>,
    web_search_options: Option<IgnoredAny>,
    functions: Option<IgnoredAny>,
    function_call: Option<IgnoredAny>,
    prompt_cache_key: Option<IgnoredAny>,
    verbosity: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChatMsg<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: Option<ChatContent<'a>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ChatToolCall<'a>>>,
    #[serde(borrow)]
    tool_call_id: Option<Cow<'a, str>>,
}

/// OpenAI message content: a string or an array of parts.
enum ChatContent<'a> {
    Text(JStr<'a>),
    Parts(Vec<ChatPart<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for ChatContent<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'a RawValue = Deserialize::deserialize(d)?;
        if let Some(s) = JStr::from_raw(raw) {
            return Ok(ChatContent::Text(s));
        }
        if !raw.get().starts_with('[') {
            return Err(D::Error::custom(
                "`content` must be a string or an array of content parts",
            ));
        }
        serde_json::from_str(raw.get())
            .map(ChatContent::Parts)
            .map_err(D::Error::custom)
    }
}

#[derive(Deserialize)]
struct ChatPart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    #[serde(borrow)]
    refusal: Option<JStr<'a>>,
    #[serde(borrow)]
    image_url: Option<ImageUrl<'a>>,
    #[serde(borrow)]
    file: Option<ChatFile<'a>>,
    #[serde(borrow)]
    cache_control: Option<&'a RawValue>,
}

/// `image_url`: `{"url": ..., "detail": ...}` (a bare string is accepted too).
struct ImageUrl<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for ImageUrl<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Obj<'a> {
            #[serde(borrow)]
            url: Cow<'a, str>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<'a> {
            #[serde(borrow)]
            Obj(Obj<'a>),
            #[serde(borrow)]
            Str(Cow<'a, str>),
        }
        Ok(match Either::deserialize(d)? {
            Either::Obj(o) => ImageUrl(o.url),
            Either::Str(s) => ImageUrl(s),
        })
    }
}

#[derive(Deserialize)]
struct ChatFile<'a> {
    #[serde(borrow)]
    file_data: Option<Cow<'a, str>>,
    #[serde(borrow)]
    filename: Option<JStr<'a>>,
}

/// An OpenAI tool call as it appears in requests and responses alike.
#[derive(Deserialize)]
pub(super) struct ChatToolCall<'a> {
    #[serde(borrow)]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) function: Option<ChatFnCall<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ChatFnCall<'a> {
    #[serde(borrow)]
    pub(super) name: JStr<'a>,
    #[serde(borrow)]
    pub(super) arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChatTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<ChatFnDef<'a>>,
    #[serde(borrow)]
    cache_control: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChatFnDef<'a> {
    #[serde(borrow)]
    name: JStr<'a>,
    #[serde(borrow)]
    description: Option<JStr<'a>>,
    #[serde(borrow)]
    parameters: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChatNamedChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    function: Option<ChatNamedFn<'a>>,
}

#[derive(Deserialize)]
struct ChatNamedFn<'a> {
    #[serde(borrow)]
    name: JStr<'a>,
}
