//! Non-streaming answers and upstream error bodies.

use std::borrow::Cow;

use super::request::ChatToolCall;
use crate::clock::unix_secs;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::json::{AsJsonString, JStr, RawOr, Txt, is_object};
use super::tool_ids::ANTHROPIC;
use super::{
    TranslateError, chat_id_from_msg, finish_reason_from_stop, msg_id_from_chat,
    stop_reason_from_finish,
};

/// Anthropic `usage` (responses, `message_start` and `message_delta`).
#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub(super) struct AUsage {
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) cache_read_input_tokens: Option<u64>,
    pub(super) cache_creation_input_tokens: Option<u64>,
}

impl AUsage {
    /// Later fields win (`message_delta` usage is cumulative).
    pub(super) fn merge(&mut self, other: &AUsage) {
        self.input_tokens = other.input_tokens.or(self.input_tokens);
        self.output_tokens = other.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = other
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = other
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
    }

    /// OpenAI usage: prompt_tokens counts every input token, cached or not.
    pub(super) fn to_openai(self) -> OUsageOut {
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0));
        let completion = self.output_tokens.unwrap_or(0);
        OUsageOut {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: self
                .cache_read_input_tokens
                .map(|cached_tokens| OTokenDetails { cached_tokens }),
        }
    }
}

#[derive(Serialize, Debug)]
pub(super) struct OUsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<OTokenDetails>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub(super) struct OTokenDetails {
    cached_tokens: u64,
}

/// OpenAI `usage`.
#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub(super) struct OUsage {
    pub(super) prompt_tokens: Option<u64>,
    pub(super) completion_tokens: Option<u64>,
    pub(super) prompt_tokens_details: Option<OCachedIn>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub(super) struct OCachedIn {
    pub(super) cached_tokens: Option<u64>,
}

impl OUsage {
    /// Anthropic usage: input_tokens excludes cache reads, which are reported apart.
    pub(super) fn to_anthropic(self) -> AUsageOut {
        let cached = self.prompt_tokens_details.and_then(|d| d.cached_tokens);
        AUsageOut {
            input_tokens: self
                .prompt_tokens
                .unwrap_or(0)
                .saturating_sub(cached.unwrap_or(0)),
            output_tokens: self.completion_tokens.unwrap_or(0),
            cache_read_input_tokens: cached,
        }
    }
}

#[derive(Serialize, Debug, Clone, Copy)]
pub(super) struct AUsageOut {
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cache_read_input_tokens: Option<u64>,
}

fn serialize(v: &impl Serialize) -> Result<Vec<u8>, TranslateError> {
    serde_json::to_vec(v)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated answer: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Anthropic -> OpenAI
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct MsgResp<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Vec<RBlock<'a>>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<AUsage>,
}

#[derive(Deserialize)]
struct RBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    /// A `thinking` block's text.
    #[serde(borrow)]
    thinking: Option<JStr<'a>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ChatRespOut<'b> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'b str,
    choices: [ChoiceOut<'b>; 1],
    usage: OUsageOut,
}

#[derive(Serialize)]
struct ChoiceOut<'b> {
    index: u32,
    message: OMsgOut<'b>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OMsgOut<'b> {
    role: &'static str,
    content: Option<Txt<'b>>,
    /// Claude's thinking, as DeepSeek and vLLM name reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Txt<'b>>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OToolCallOut<'b>>,
}

#[derive(Serialize)]
struct OToolCallOut<'b> {
    id: Cow<'b, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OFnOut<'b>,
}

#[derive(Serialize)]
struct OFnOut<'b> {
    name: JStr<'b>,
    arguments: AsJsonString<'b>,
}

/// Texts as one: none, the one as it came, or several decoded and concatenated.
fn joined<'b>(texts: &[JStr<'b>]) -> Option<Txt<'b>> {
    match texts {
        [] => None,
        [one] => Some(Txt::Raw(*one)),
        many => Some(Txt::Owned(many.iter().map(|t| t.decode()).collect())),
    }
}

/// Anthropic message response -> OpenAI chat.completion response. `model`: the model name to
/// report to the client.
pub fn messages_response_to_chat(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    messages_response_to_chat_at(body, model, None, unix_secs())
}

/// [`messages_response_to_chat`] for a request whose `response_format` became the forced tool
/// `json_tool` (see [`super::json_answer_tool`]): that tool's input is the answer's `content`
/// (a JSON string) and the finish reason `stop`.
pub fn messages_response_to_chat_json(
    body: &[u8],
    model: &str,
    json_tool: Option<&str>,
) -> Result<Vec<u8>, TranslateError> {
    messages_response_to_chat_at(body, model, json_tool, unix_secs())
}

pub(crate) fn messages_response_to_chat_at(
    body: &[u8],
    model: &str,
    json_tool: Option<&str>,
    created: u64,
) -> Result<Vec<u8>, TranslateError> {
    let resp: MsgResp =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("Anthropic message", &e))?;
    let blocks = resp
        .content
        .ok_or_else(|| TranslateError::Invalid("Anthropic message has no `content`".into()))?;
    let mut texts: Vec<JStr> = Vec::new();
    let mut thoughts: Vec<JStr> = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json: Option<&str> = None;
    for b in &blocks {
        match &*b.kind {
            "text" => texts.extend(b.text.filter(|t| !t.is_empty())),
            "thinking" => thoughts.extend(b.thinking.filter(|t| !t.is_empty())),
            "tool_use"
                if json.is_none()
                    && json_tool.is_some_and(|j| b.name.is_some_and(|n| n.decode() == j)) =>
            {
                json = Some(b.input.map_or("{}", |r| r.get()));
            }
            "tool_use" => {
                let (Some(id), Some(name)) = (b.id.as_deref(), b.name) else {
                    tracing::debug!("dropped a tool_use block without id or name");
                    continue;
                };
                tool_calls.push(OToolCallOut {
                    id: ANTHROPIC.to_openai(id),
                    kind: "function",
                    function: OFnOut {
                        name,
                        arguments: AsJsonString(b.input.map_or("{}", |r| r.get())),
                    },
                });
            }
            other => tracing::debug!(block = other, "dropped a content block OpenAI cannot show"),
        }
    }
    // The JSON answer is the content; text around it would make it unreadable as JSON.
    let content = match json {
        Some(j) => Some(Txt::Owned(j.to_owned())),
        None => joined(&texts),
    };
    let stop_reason = resp.stop_reason.as_deref().unwrap_or("end_turn");
    let finish_reason = match json {
        Some(_) if tool_calls.is_empty() => "stop",
        _ => finish_reason_from_stop(stop_reason),
    };
    let out = ChatRespOut {
        id: chat_id_from_msg(resp.id.as_deref().unwrap_or("")),
        object: "chat.completion",
        created,
        model,
        choices: [ChoiceOut {
            index: 0,
            message: OMsgOut {
                role: "assistant",
                content,
                reasoning_content: joined(&thoughts),
                refusal: None,
                tool_calls,
            },
            logprobs: None,
            finish_reason,
        }],
        usage: resp.usage.unwrap_or_default().to_openai(),
    };
    serialize(&out)
}

// ---------------------------------------------------------------------------------------------
// OpenAI -> Anthropic
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ChatResp<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    choices: Option<Vec<RChoice<'a>>>,
    usage: Option<OUsage>,
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
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    refusal: Option<JStr<'a>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ChatToolCall<'a>>>,
    #[serde(borrow)]
    reasoning_content: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct RTextPart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
}

#[derive(Serialize)]
struct MsgRespOut<'b> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'b str,
    content: Vec<ABlockOut<'b>>,
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: AUsageOut,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ABlockOut<'b> {
    /// Reasoning from an OpenAI-compatible upstream. Anthropic signs its own thinking; a
    /// signature cannot be made up, so it is empty.
    Thinking {
        thinking: JStr<'b>,
        signature: &'static str,
    },
    Text {
        text: JStr<'b>,
    },
    ToolUse {
        id: Cow<'b, str>,
        name: JStr<'b>,
        input: RawOr<'b>,
    },
}

fn tool_input(arguments: Option<&str>) -> RawOr<'static> {
    let Some(args) = arguments.filter(|a| !a.trim().is_empty()) else {
        return RawOr::EmptyObject;
    };
    match RawValue::from_string(args.to_owned()) {
        Ok(raw) if is_object(raw.get()) => RawOr::Owned(raw),
        _ => {
            tracing::debug!("tool call arguments are not a JSON object; sending {{}} as input");
            RawOr::EmptyObject
        }
    }
}

/// OpenAI chat.completion response -> Anthropic message response.
pub fn chat_response_to_messages(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    let resp: ChatResp =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("chat completion", &e))?;
    let choices = resp
        .choices
        .ok_or_else(|| TranslateError::Invalid("chat completion has no `choices`".into()))?;
    if choices.len() > 1 {
        tracing::debug!(n = choices.len(), "dropped all choices but the first");
    }
    let choice = choices
        .iter()
        .find(|c| c.index.unwrap_or(0) == 0)
        .or(choices.first());
    let mut content = Vec::new();
    let mut stop_reason = "end_turn";
    let mut parts_buf: Vec<RTextPart> = Vec::new();
    if let Some(c) = choice {
        stop_reason = stop_reason_from_finish(c.finish_reason.as_deref().unwrap_or("stop"));
        if let Some(m) = &c.message {
            if let Some(thinking) = m.reasoning_content.filter(|t| !t.is_empty()) {
                content.push(ABlockOut::Thinking {
                    thinking,
                    signature: "",
                });
            }
            if let Some(raw) = m.content {
                if let Some(t) = JStr::from_raw(raw) {
                    if !t.is_empty() {
                        content.push(ABlockOut::Text { text: t });
                    }
                } else if raw.get().starts_with('[') {
                    parts_buf = serde_json::from_str(raw.get()).unwrap_or_default();
                }
            }
            for p in &parts_buf {
                match (&*p.kind, p.text) {
                    ("text", Some(text)) if !text.is_empty() => {
                        content.push(ABlockOut::Text { text });
                    }
                    _ => tracing::debug!("dropped a non-text part of an answer"),
                }
            }
            if let Some(r) = m.refusal.filter(|r| !r.is_empty()) {
                content.push(ABlockOut::Text { text: r });
                stop_reason = "refusal";
            }
            for tc in m.tool_calls.iter().flatten() {
                let Some(f) = &tc.function else {
                    tracing::debug!("dropped a tool call that is not a function call");
                    continue;
                };
                content.push(ABlockOut::ToolUse {
                    id: match tc.id.as_deref() {
                        Some(id) => ANTHROPIC.to_native(id),
                        None => Cow::Owned(ANTHROPIC.new_native()),
                    },
                    name: f.name,
                    input: tool_input(f.arguments.as_deref()),
                });
            }
        }
    }
    let out = MsgRespOut {
        id: msg_id_from_chat(resp.id.as_deref().unwrap_or("")),
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason,
        stop_sequence: None,
        usage: resp.usage.unwrap_or_default().to_anthropic(),
    };
    serialize(&out)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ErrObj {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<serde_json::Value>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct AErrBody {
    error: Option<ErrObj>,
}

/// `{"type":"error","error":{"type","message"}}` -> (type, message).
pub fn error_from_anthropic(body: &[u8]) -> Option<(String, String)> {
    let e = serde_json::from_slice::<AErrBody>(body).ok()?.error?;
    Some((
        e.kind.unwrap_or_else(|| "api_error".to_owned()),
        e.message.unwrap_or_default(),
    ))
}

#[derive(Deserialize)]
struct OErrBody<'a> {
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    message: Option<String>,
}

/// `{"error":{"message","type",...}}` -> (type, message). Also takes the looser shapes some
/// OpenAI-compatible servers send: `{"error":"text"}` and `{"message":"text"}`.
pub fn error_from_openai(body: &[u8]) -> Option<(String, String)> {
    let b = serde_json::from_slice::<OErrBody>(body).ok()?;
    if let Some(raw) = b.error {
        if let Some(s) = JStr::from_raw(raw) {
            return Some(("api_error".to_owned(), s.decode().into_owned()));
        }
        let e = serde_json::from_str::<ErrObj>(raw.get()).ok()?;
        let kind = e
            .kind
            .or(match e.code {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            })
            .unwrap_or_else(|| "api_error".to_owned());
        return Some((kind, e.message.unwrap_or_default()));
    }
    b.message.map(|m| ("api_error".to_owned(), m))
}
