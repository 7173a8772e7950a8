//! The pivot request: an OpenAI Chat Completions body parsed once into borrowed parts for the
//! translators to other wire formats. Text stays raw JSON ([`JStr`]); what a target cannot
//! carry is the target's to name in [`Dropped`].

use std::borrow::Cow;

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::super::json::{JStr, RawOr, is_object};
use super::super::request::{ChatToolCall, parse_list};
use super::super::{Dropped, TranslateError};

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(borrow)]
    stop: Option<Stop<'a>>,
    #[serde(borrow)]
    tools: Option<Vec<ChatTool<'a>>>,
    #[serde(borrow)]
    tool_choice: Option<&'a RawValue>,
    parallel_tool_calls: Option<bool>,
    n: Option<u64>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    #[serde(borrow)]
    response_format: Option<RawFormat<'a>>,
    #[serde(borrow)]
    reasoning_effort: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<JStr<'a>>,
    #[serde(borrow)]
    safety_identifier: Option<JStr<'a>>,
    // Carried by no translation to another format (named in `Dropped` when set).
    logprobs: Option<bool>,
    top_logprobs: Option<IgnoredAny>,
    logit_bias: Option<IgnoredAny>,
    store: Option<bool>,
    metadata: Option<IgnoredAny>,
    #[serde(borrow)]
    service_tier: Option<Cow<'a, str>>,
    #[serde(borrow)]
    modalities: Option<&'a RawValue>,
    audio: Option<IgnoredAny>,
    prediction: Option<IgnoredAny>,
    web_search_options: Option<IgnoredAny>,
    functions: Option<IgnoredAny>,
    function_call: Option<IgnoredAny>,
    prompt_cache_key: Option<IgnoredAny>,
    verbosity: Option<IgnoredAny>,
}

/// An OpenAI chat request, parsed.
pub(crate) struct ChatRequest<'a> {
    pub(crate) messages: Vec<ChatMessage<'a>>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub(crate) max_tokens: Option<u64>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    pub(crate) stop: Vec<JStr<'a>>,
    /// Function tools (other tools are named in `Dropped` by [`ChatRequest::parse`]).
    pub(crate) tools: Vec<ChatFnDef<'a>>,
    pub(crate) tool_choice: Option<ToolChoice<'a>>,
    pub(crate) parallel_tool_calls: Option<bool>,
    pub(crate) n: Option<u64>,
    pub(crate) seed: Option<i64>,
    pub(crate) presence_penalty: Option<f64>,
    pub(crate) frequency_penalty: Option<f64>,
    pub(crate) response_format: Option<ResponseFormat<'a>>,
    pub(crate) reasoning_effort: Option<Cow<'a, str>>,
    /// `user`, else `safety_identifier`.
    pub(crate) user: Option<JStr<'a>>,
}

impl<'a> ChatRequest<'a> {
    /// Parse a chat request. Fields that no other wire format can carry (`logprobs`,
    /// `logit_bias`, `store`, `audio`, …) and tools that are not functions are named in
    /// `dropped` here; the rest is the target's to carry or name.
    pub(crate) fn parse(body: &'a [u8], dropped: &mut Dropped) -> Result<Self, TranslateError> {
        let raw: Raw<'a> =
            serde_json::from_slice(body).map_err(|e| TranslateError::json("request", &e))?;
        let raw_messages = raw
            .messages
            .ok_or_else(|| TranslateError::Invalid("`messages` is required".into()))?;
        let messages: Vec<ChatMessage> = parse_list(raw_messages, "messages")?;
        for (name, present) in [
            ("logprobs", raw.logprobs == Some(true)),
            ("top_logprobs", raw.top_logprobs.is_some()),
            ("logit_bias", raw.logit_bias.is_some()),
            ("store", raw.store == Some(true)),
            ("metadata", raw.metadata.is_some()),
            (
                "service_tier",
                raw.service_tier
                    .as_deref()
                    .is_some_and(|t| t != "auto" && t != "default"),
            ),
            (
                "modalities",
                raw.modalities.is_some_and(|m| {
                    m.get().split_whitespace().collect::<String>() != r#"["text"]"#
                }),
            ),
            ("audio", raw.audio.is_some()),
            ("prediction", raw.prediction.is_some()),
            ("web_search_options", raw.web_search_options.is_some()),
            ("functions", raw.functions.is_some()),
            ("function_call", raw.function_call.is_some()),
            ("prompt_cache_key", raw.prompt_cache_key.is_some()),
            ("verbosity", raw.verbosity.is_some()),
        ] {
            if present {
                dropped.push(name);
            }
        }
        let mut tools = Vec::new();
        for t in raw.tools.into_iter().flatten() {
            match t.function {
                Some(f) if t.kind.as_deref().is_none_or(|k| k == "function") => {
                    if t.cache_control.is_some() {
                        dropped.push("cache_control");
                    }
                    tools.push(f);
                }
                _ => dropped.push("tools[].type"),
            }
        }
        let tool_choice = match raw.tool_choice {
            None => None,
            Some(_) if tools.is_empty() => {
                dropped.push("tool_choice");
                None
            }
            Some(raw) => Some(ToolChoice::parse(raw)),
        };
        let response_format = raw.response_format.map(|f| match &*f.kind {
            "text" => ResponseFormat::Text,
            "json_object" => ResponseFormat::JsonObject,
            "json_schema" => match f.json_schema {
                Some(s) => ResponseFormat::JsonSchema { schema: s.schema },
                None => ResponseFormat::Other,
            },
            _ => ResponseFormat::Other,
        });
        Ok(ChatRequest {
            messages,
            max_tokens: raw.max_completion_tokens.or(raw.max_tokens),
            temperature: raw.temperature,
            top_p: raw.top_p,
            stop: match raw.stop {
                None => Vec::new(),
                Some(Stop::One(s)) => vec![s],
                Some(Stop::Many(v)) => v,
            },
            tools,
            tool_choice,
            parallel_tool_calls: raw.parallel_tool_calls,
            n: raw.n,
            seed: raw.seed,
            presence_penalty: raw.presence_penalty,
            frequency_penalty: raw.frequency_penalty,
            response_format,
            reasoning_effort: raw.reasoning_effort,
            user: raw.user.or(raw.safety_identifier),
        })
    }

    /// The name of the function a tool message answers: the earlier assistant tool call with
    /// `tool_call_id`, looked up in `messages[..before]`.
    pub(crate) fn tool_name(&self, tool_call_id: &str, before: usize) -> Option<JStr<'a>> {
        self.messages[..before.min(self.messages.len())]
            .iter()
            .rev()
            .flat_map(|m| m.tool_calls.iter().flatten())
            .find(|tc| tc.id.as_deref() == Some(tool_call_id))
            .and_then(|tc| tc.function.as_ref())
            .map(|f| f.name)
    }
}

/// A conversation's turns for a target whose roles must alternate: consecutive turns of one
/// role are merged and empty ones left out.
pub(crate) struct Turns<P>(pub(crate) Vec<(&'static str, Vec<P>)>);

impl<P> Default for Turns<P> {
    fn default() -> Self {
        Turns(Vec::new())
    }
}

impl<P> Turns<P> {
    pub(crate) fn push(&mut self, role: &'static str, parts: Vec<P>) {
        if parts.is_empty() {
            return;
        }
        match self.0.last_mut() {
            Some((r, existing)) if *r == role => existing.extend(parts),
            _ => self.0.push((role, parts)),
        }
    }
}

/// Tool-call `arguments` (a JSON object as a string) -> the object's source: `{}` when there
/// are none; anything but an object is sent as `{}` and named in `dropped`.
pub(crate) fn tool_arguments(arguments: Option<&str>, dropped: &mut Dropped) -> RawOr<'static> {
    let Some(args) = arguments.filter(|a| !a.trim().is_empty()) else {
        return RawOr::EmptyObject;
    };
    match RawValue::from_string(args.to_owned()) {
        Ok(raw) if is_object(raw.get()) => RawOr::Owned(raw),
        _ => {
            dropped.push("tool_calls[].function.arguments");
            RawOr::EmptyObject
        }
    }
}

impl ChatMessage<'_> {
    /// The `tool_call_id` of the `tool` message at `messages[i]` (a client error without one).
    pub(crate) fn answered_call(&self, i: usize) -> Result<&str, TranslateError> {
        self.tool_call_id.as_deref().ok_or_else(|| {
            TranslateError::Invalid(format!(
                "`messages[{i}].tool_call_id` is required for role \"tool\""
            ))
        })
    }
}

/// The client error for a message whose role no API knows.
pub(crate) fn unknown_role(i: usize, role: &str) -> TranslateError {
    TranslateError::Invalid(format!("`messages[{i}].role`: unknown role \"{role}\""))
}

/// OpenAI `stop`: a string or an array of strings.
pub(crate) enum Stop<'a> {
    One(JStr<'a>),
    Many(Vec<JStr<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Stop<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'a RawValue = Deserialize::deserialize(d)?;
        if let Some(s) = JStr::from_raw(raw) {
            return Ok(Stop::One(s));
        }
        serde_json::from_str(raw.get())
            .map(Stop::Many)
            .map_err(|_| D::Error::custom("`stop` must be a string or an array of strings"))
    }
}

#[derive(Deserialize)]
pub(crate) struct ChatMessage<'a> {
    #[serde(borrow)]
    pub(crate) role: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) content: Option<ChatContent<'a>>,
    #[serde(borrow)]
    pub(crate) tool_calls: Option<Vec<ChatToolCall<'a>>>,
    #[serde(borrow)]
    pub(crate) tool_call_id: Option<Cow<'a, str>>,
    pub(crate) name: Option<IgnoredAny>,
    pub(crate) reasoning_content: Option<IgnoredAny>,
}

/// OpenAI message content: a string or an array of parts.
pub(crate) enum ChatContent<'a> {
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
pub(crate) struct ChatPart<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) text: Option<JStr<'a>>,
    #[serde(borrow)]
    pub(crate) refusal: Option<JStr<'a>>,
    #[serde(borrow)]
    pub(crate) image_url: Option<ImageUrl<'a>>,
    #[serde(borrow)]
    pub(crate) input_audio: Option<InputAudio<'a>>,
    #[serde(borrow)]
    pub(crate) file: Option<ChatFile<'a>>,
    pub(crate) cache_control: Option<IgnoredAny>,
}

impl<'a> ChatPart<'a> {
    /// The text of a `text` (or `refusal`) part.
    pub(crate) fn text(&self) -> Option<JStr<'a>> {
        match &*self.kind {
            "text" | "refusal" => self.text.or(self.refusal),
            _ => None,
        }
    }
}

/// `image_url`: `{"url": ..., "detail": ...}` (a bare string is accepted too).
pub(crate) struct ImageUrl<'a> {
    pub(crate) url: Cow<'a, str>,
    pub(crate) detail: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ImageUrl<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Obj<'a> {
            #[serde(borrow)]
            url: Cow<'a, str>,
            #[serde(borrow)]
            detail: Option<Cow<'a, str>>,
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
            Either::Obj(o) => ImageUrl {
                url: o.url,
                detail: o.detail,
            },
            Either::Str(url) => ImageUrl { url, detail: None },
        })
    }
}

impl ImageUrl<'_> {
    /// Whether `detail` asks for something other than the default.
    pub(crate) fn has_detail(&self) -> bool {
        self.detail.as_deref().is_some_and(|d| d != "auto")
    }
}

#[derive(Deserialize)]
pub(crate) struct InputAudio<'a> {
    #[serde(borrow)]
    pub(crate) data: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) format: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(crate) struct ChatFile<'a> {
    #[serde(borrow)]
    pub(crate) file_data: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) filename: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChatTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<ChatFnDef<'a>>,
    cache_control: Option<IgnoredAny>,
}

#[derive(Deserialize)]
pub(crate) struct ChatFnDef<'a> {
    #[serde(borrow)]
    pub(crate) name: JStr<'a>,
    #[serde(borrow)]
    pub(crate) description: Option<JStr<'a>>,
    #[serde(borrow)]
    pub(crate) parameters: Option<&'a RawValue>,
    pub(crate) strict: Option<bool>,
}

/// OpenAI `tool_choice`.
pub(crate) enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    Function(JStr<'a>),
    /// `{"type":"allowed_tools","allowed_tools":{"mode","tools"}}`: `required` for mode
    /// `required`, and the function names.
    Allowed {
        required: bool,
        names: Vec<JStr<'a>>,
    },
    /// A form no translation knows.
    Other,
}

impl<'a> ToolChoice<'a> {
    fn parse(raw: &'a RawValue) -> Self {
        #[derive(Deserialize)]
        struct Named<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
            #[serde(borrow)]
            function: Option<NamedFn<'a>>,
            #[serde(borrow)]
            allowed_tools: Option<AllowedTools<'a>>,
        }
        #[derive(Deserialize)]
        struct NamedFn<'a> {
            #[serde(borrow)]
            name: JStr<'a>,
        }
        #[derive(Deserialize)]
        struct AllowedTools<'a> {
            #[serde(borrow)]
            mode: Option<Cow<'a, str>>,
            #[serde(borrow)]
            tools: Vec<Named<'a>>,
        }
        if let Some(s) = JStr::from_raw(raw) {
            return match &*s.decode() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                _ => ToolChoice::Other,
            };
        }
        match serde_json::from_str::<Named>(raw.get()) {
            Ok(Named {
                kind,
                function: Some(f),
                ..
            }) if kind == "function" => ToolChoice::Function(f.name),
            Ok(Named {
                kind,
                allowed_tools: Some(a),
                ..
            }) if kind == "allowed_tools" => ToolChoice::Allowed {
                required: a.mode.as_deref() == Some("required"),
                names: a
                    .tools
                    .into_iter()
                    .filter_map(|t| t.function.map(|f| f.name))
                    .collect(),
            },
            _ => ToolChoice::Other,
        }
    }
}

#[derive(Deserialize)]
struct RawFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    json_schema: Option<RawJsonSchema<'a>>,
}

#[derive(Deserialize)]
struct RawJsonSchema<'a> {
    #[serde(borrow)]
    schema: Option<&'a RawValue>,
}

/// OpenAI `response_format`.
pub(crate) enum ResponseFormat<'a> {
    Text,
    JsonObject,
    /// `strict` needs no carrying: Gemini always follows a response schema.
    JsonSchema {
        schema: Option<&'a RawValue>,
    },
    Other,
}

/// `data:MEDIA;base64,DATA` -> (MEDIA, DATA).
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

/// OpenAI `reasoning_effort` -> a thinking budget in tokens: `none` / `minimal` 0, `low` 1024,
/// `medium` 8192, `high` (and `xhigh`) 24576 (the most every Gemini 2.5 model takes). `None` for
/// a value this table does not know.
pub(crate) fn thinking_budget(effort: &str) -> Option<u32> {
    match effort {
        "none" | "minimal" => Some(0),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" | "xhigh" => Some(24576),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
