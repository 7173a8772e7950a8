//! A Responses request -> a chat request (the pivot), the [`ResponsesHead`] its answer echoes,
//! and its input items in stored form. `instructions` become the first system message, the
//! conversation it continues (`history`) comes next, then its own `input`.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::super::json::{JStr, RawOr};
use super::super::{Dropped, TranslateError};
use super::items::{Conversation, MsgOut, parse_objects};
use super::{ResponseIds, ResponsesHead};

mod tools;

use tools::{format_out, tool_choice_out, tools_out};

/// A translated Responses request.
#[derive(Debug)]
pub struct ResponsesRequest {
    /// The chat completions request body.
    pub chat: Vec<u8>,
    pub head: ResponsesHead,
    /// The request's input items in stored form, as a JSON array (`[]` when `store` is false).
    pub input_items: Vec<u8>,
}

#[derive(Deserialize)]
struct RReq<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_choice: Option<&'a RawValue>,
    parallel_tool_calls: Option<bool>,
    #[serde(borrow)]
    text: Option<RText<'a>>,
    #[serde(borrow)]
    reasoning: Option<RReasoning<'a>>,
    max_output_tokens: Option<u64>,
    /// Numbers are copied as written (parsing into f64 and writing back can change the digits).
    #[serde(borrow)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow)]
    top_p: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<JStr<'a>>,
    #[serde(borrow)]
    safety_identifier: Option<JStr<'a>>,
    #[serde(borrow)]
    prompt_cache_key: Option<JStr<'a>>,
    #[serde(borrow)]
    service_tier: Option<JStr<'a>>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    store: Option<bool>,
    #[serde(borrow)]
    previous_response_id: Option<JStr<'a>>,
    stream: Option<bool>,
    background: Option<bool>,
    #[serde(borrow)]
    truncation: Option<JStr<'a>>,
    top_logprobs: Option<u64>,
    #[serde(borrow)]
    max_tool_calls: Option<&'a RawValue>,
    stream_options: Option<RStreamOptions>,
    // `include` and `metadata` are the gateway's own: not sent upstream.
    // Cannot be carried (named in `Dropped` when present).
    prompt: Option<IgnoredAny>,
    context_management: Option<IgnoredAny>,
    prompt_cache_retention: Option<IgnoredAny>,
    conversation: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RText<'a> {
    #[serde(borrow)]
    format: Option<&'a RawValue>,
    #[serde(borrow)]
    verbosity: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct RReasoning<'a> {
    #[serde(borrow)]
    effort: Option<JStr<'a>>,
    #[serde(borrow)]
    summary: Option<JStr<'a>>,
    #[serde(borrow)]
    generate_summary: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct RStreamOptions {
    include_obfuscation: Option<bool>,
}

/// A named definition with a JSON schema: a function tool (`parameters`) or a `json_schema`
/// output format (`schema`).
#[derive(Deserialize)]
struct RDef<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    description: Option<JStr<'a>>,
    #[serde(borrow, alias = "parameters")]
    schema: Option<&'a RawValue>,
    strict: Option<bool>,
}

/// `tool_choice` as an object: `{"type":"function","name"}`, `{"type":"allowed_tools",…}`, or a
/// hosted tool's type.
#[derive(Deserialize)]
struct RChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    mode: Option<JStr<'a>>,
    #[serde(borrow)]
    tools: Option<Vec<RChoiceTool<'a>>>,
}

#[derive(Deserialize)]
struct RChoiceTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
}

// ---- chat request out -----------------------------------------------------------------------

#[derive(Serialize)]
struct ChatOut<'b> {
    model: &'b str,
    messages: Vec<MsgOut<'b>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ChoiceOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<FormatOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verbosity: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'b RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'b RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_identifier: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptionsOut>,
}

#[derive(Serialize)]
struct StreamOptionsOut {
    include_usage: bool,
}

#[derive(Serialize)]
struct ToolOut<'b> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FnDefOut<'b>,
}

#[derive(Serialize)]
struct FnDefOut<'b> {
    name: JStr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'b RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChoiceOut<'b> {
    Mode(JStr<'b>),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedOut<'b>,
    },
    Allowed {
        #[serde(rename = "type")]
        kind: &'static str,
        allowed_tools: AllowedOut<'b>,
    },
}

#[derive(Serialize)]
struct NamedOut<'b> {
    name: JStr<'b>,
}

#[derive(Serialize)]
struct AllowedOut<'b> {
    mode: JStr<'b>,
    tools: Vec<NamedToolOut<'b>>,
}

#[derive(Serialize)]
struct NamedToolOut<'b> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: NamedOut<'b>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FormatOut<'b> {
    JsonObject,
    JsonSchema { json_schema: SchemaOut<'b> },
}

#[derive(Serialize)]
struct SchemaOut<'b> {
    name: JStr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<JStr<'b>>,
    schema: &'b RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

// ---- the echo -------------------------------------------------------------------------------

/// The request fields a Response object shows, with OpenAI's defaults.
#[derive(Serialize)]
struct Echo<'b> {
    background: bool,
    instructions: Option<JStr<'b>>,
    max_output_tokens: Option<u64>,
    max_tool_calls: Option<&'b RawValue>,
    metadata: RawOr<'b>,
    parallel_tool_calls: bool,
    previous_response_id: Option<JStr<'b>>,
    prompt_cache_key: Option<JStr<'b>>,
    reasoning: ReasoningEcho<'b>,
    safety_identifier: Option<JStr<'b>>,
    service_tier: Option<JStr<'b>>,
    store: bool,
    temperature: Or<&'b RawValue>,
    text: TextEcho<'b>,
    tool_choice: Or<&'b RawValue>,
    tools: Or<&'b RawValue>,
    top_logprobs: u64,
    top_p: Or<&'b RawValue>,
    truncation: Or<JStr<'b>>,
    user: Option<JStr<'b>>,
}

#[derive(Serialize)]
struct ReasoningEcho<'b> {
    effort: Option<JStr<'b>>,
    summary: Option<JStr<'b>>,
}

#[derive(Serialize)]
struct TextEcho<'b> {
    format: Or<&'b RawValue>,
    verbosity: Or<JStr<'b>>,
}

/// A value as given, or a default written as JSON text.
struct Or<T>(Option<T>, &'static str);

impl<T: Serialize> Serialize for Or<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        match &self.0 {
            Some(v) => v.serialize(s),
            None => match serde_json::from_str::<&RawValue>(self.1) {
                Ok(raw) => raw.serialize(s),
                Err(e) => Err(S::Error::custom(e)),
            },
        }
    }
}

fn invalid(what: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(what.into())
}

/// A number field, checked to be one.
fn number<'b>(
    raw: Option<&'b RawValue>,
    name: &str,
) -> Result<Option<&'b RawValue>, TranslateError> {
    match raw {
        Some(r)
            if !r
                .get()
                .starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
        {
            Err(invalid(format!("`{name}` must be a number")))
        }
        r => Ok(r),
    }
}

/// Responses request -> chat request with `model` = `upstream_model`. `history`: the stored
/// items of the conversation this request continues (an earlier response's input items, then
/// its output items; empty when there is none). `ids`: this response's ids (the ids of input
/// items that came without one derive from them). What the chat request cannot carry is named
/// in `dropped`.
pub fn responses_request_to_chat(
    body: &[u8],
    history: &[&RawValue],
    upstream_model: &str,
    ids: &ResponseIds,
    dropped: &mut Dropped,
) -> Result<ResponsesRequest, TranslateError> {
    let req: RReq =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("request", &e))?;
    if req.conversation.is_some() {
        return Err(invalid(
            "`conversation` is not supported by this gateway: continue a conversation with `previous_response_id`",
        ));
    }
    let instructions = match req.instructions {
        None => None,
        Some(raw) => {
            Some(JStr::from_raw(raw).ok_or_else(|| invalid("`instructions` must be a string"))?)
        }
    };
    let temperature = number(req.temperature, "temperature")?;
    let top_p = number(req.top_p, "top_p")?;
    let store = req.store.unwrap_or(true);
    let mut conv = Conversation::new(history.len() + 8, store, dropped);
    if let Some(text) = instructions {
        conv.messages.push(MsgOut::system(text));
    }
    for (i, raw) in history.iter().enumerate() {
        conv.history_item(raw, i, ids)?;
    }
    match req.input {
        Some(raw) if raw.get().starts_with('[') => conv.input_items(raw, ids)?,
        Some(raw) => {
            let text = JStr::from_raw(raw)
                .ok_or_else(|| invalid("`input` must be a string or an array of input items"))?;
            conv.user_text(text, ids)?;
        }
        None => {}
    }
    if conv.messages.iter().all(MsgOut::is_system) {
        return Err(invalid("`input` is required"));
    }
    let input_items = conv.stored_array();
    let messages = conv.messages;

    let tools = match req.tools {
        Some(raw) => tools_out(raw, dropped)?,
        None => Vec::new(),
    };
    let mut tool_choice = match req.tool_choice {
        Some(raw) => tool_choice_out(raw, dropped)?,
        None => None,
    };
    if tools.is_empty() {
        // Chat refuses tool_choice without tools; only a choice that asked for a call is lost.
        if let Some(ChoiceOut::Mode(m)) = &tool_choice {
            if !matches!(m.raw(), "\"auto\"" | "\"none\"") {
                dropped.push("tool_choice");
            }
        } else if tool_choice.is_some() {
            dropped.push("tool_choice");
        }
        tool_choice = None;
    }
    let (format_raw, verbosity) = match &req.text {
        Some(t) => (t.format, t.verbosity),
        None => (None, None),
    };
    let response_format = match format_raw {
        Some(raw) => format_out(raw, dropped)?,
        None => None,
    };
    let (effort, summary) = match &req.reasoning {
        Some(r) => (r.effort, r.summary.or(r.generate_summary)),
        None => (None, None),
    };
    if summary.is_some() {
        dropped.push("reasoning.summary");
    }
    for (name, present) in [
        ("top_logprobs", req.top_logprobs.is_some_and(|n| n > 0)),
        ("max_tool_calls", req.max_tool_calls.is_some()),
        ("prompt", req.prompt.is_some()),
        ("context_management", req.context_management.is_some()),
        (
            "prompt_cache_retention",
            req.prompt_cache_retention.is_some(),
        ),
        (
            "stream_options.include_obfuscation",
            req.stream_options
                .as_ref()
                .and_then(|o| o.include_obfuscation)
                == Some(true),
        ),
    ] {
        if present {
            dropped.push(name);
        }
    }

    let stream = req.stream == Some(true);
    let has_tools = !tools.is_empty();
    let chat = ChatOut {
        model: upstream_model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls.filter(|_| has_tools),
        response_format,
        reasoning_effort: effort,
        verbosity,
        max_completion_tokens: req.max_output_tokens,
        temperature,
        top_p,
        user: req.user,
        safety_identifier: req.safety_identifier,
        prompt_cache_key: req.prompt_cache_key,
        service_tier: req.service_tier,
        stream: stream.then_some(true),
        stream_options: stream.then_some(StreamOptionsOut {
            include_usage: true,
        }),
    };
    let mut out = Vec::with_capacity(body.len() + 128);
    serde_json::to_writer(&mut out, &chat)
        .map_err(|e| invalid(format!("cannot write the translated request: {e}")))?;
    let chat = out;

    let echo = Echo {
        background: req.background.unwrap_or(false),
        instructions,
        max_output_tokens: req.max_output_tokens,
        max_tool_calls: req.max_tool_calls,
        metadata: req.metadata.map_or(RawOr::EmptyObject, RawOr::Borrowed),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        previous_response_id: req.previous_response_id,
        prompt_cache_key: req.prompt_cache_key,
        reasoning: ReasoningEcho { effort, summary },
        safety_identifier: req.safety_identifier,
        service_tier: req.service_tier,
        store,
        temperature: Or(temperature, "1.0"),
        text: TextEcho {
            format: Or(format_raw, r#"{"type":"text"}"#),
            verbosity: Or(verbosity, "\"medium\""),
        },
        tool_choice: Or(req.tool_choice, "\"auto\""),
        tools: Or(req.tools, "[]"),
        top_logprobs: req.top_logprobs.unwrap_or(0),
        top_p: Or(top_p, "1.0"),
        truncation: Or(req.truncation, "\"disabled\""),
        user: req.user,
    };
    let mut echo = serde_json::to_string(&echo)
        .map_err(|e| invalid(format!("cannot write the response head: {e}")))?;
    // The object's members, without its braces.
    echo.pop();
    echo.remove(0);

    let head = ResponsesHead {
        model: req
            .model
            .map_or_else(|| upstream_model.to_owned(), Cow::into_owned),
        stream,
        store,
        background: req.background.unwrap_or(false),
        previous_response_id: req.previous_response_id.map(|p| p.decode().into_owned()),
        echo,
    };
    Ok(ResponsesRequest {
        chat,
        head,
        input_items,
    })
}
