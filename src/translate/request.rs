//! Request bodies: OpenAI Chat Completions <-> Anthropic Messages.

use std::borrow::Cow;

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::json::{AsJsonString, JStr, RawOr, Txt, is_object};
use super::{DEFAULT_MAX_TOKENS, TranslateError, anthropic_tool_id};

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

fn log_dropped(fields: &[(&str, bool)], target: &str) {
    for &(name, present) in fields {
        if present {
            tracing::debug!(
                field = name,
                "dropped request field: no equivalent in the {target} API"
            );
        }
    }
}

fn serialize(v: &impl Serialize) -> Result<Vec<u8>, TranslateError> {
    serde_json::to_vec(v)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated request: {e}")))
}

/// `data:MEDIA;base64,DATA` -> (MEDIA, DATA).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

// ---------------------------------------------------------------------------------------------
// OpenAI -> Anthropic
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
    response_format: Option<IgnoredAny>,
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

/// OpenAI `stop`: a string or an array of strings.
enum Stop<'a> {
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

#[derive(Serialize)]
struct MsgReqOut<'b> {
    model: &'b str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<ContentOut<'b>>,
    messages: Vec<AMsgOut<'b>>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<JStr<'b>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<AToolOut<'b>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<AToolChoiceOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<AMetaOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<ThinkingOut>,
}

/// Claude's extended thinking.
#[derive(Serialize)]
struct ThinkingOut {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u64,
}

/// Claude's least thinking budget.
const MIN_THINKING: u64 = 1024;

/// OpenAI `reasoning_effort` -> Claude's thinking budget and the `max_tokens` to send, which
/// must exceed the budget: without a `max_tokens` the budget plus the default; with one at or
/// below the budget the budget shrinks to `max_tokens - 1`, and below Claude's least (1024)
/// there is no thinking. `none` / `minimal` think not at all.
fn thinking_for(effort: Option<&str>, asked: Option<u64>) -> (Option<u64>, u64) {
    let budget = effort.and_then(|e| {
        let b = super::pivot::request::thinking_budget(e);
        if b.is_none() {
            tracing::debug!(
                effort = e,
                "dropped a reasoning_effort Anthropic has no budget for"
            );
        }
        b
    });
    let budget = budget.map(u64::from).filter(|b| *b > 0);
    match (budget, asked) {
        (Some(b), None) => (Some(b), b + DEFAULT_MAX_TOKENS),
        (Some(b), Some(m)) if m > b => (Some(b), m),
        (Some(_), Some(m)) if m > MIN_THINKING => (Some(m - 1), m),
        (Some(_), Some(m)) => {
            tracing::debug!(
                max_tokens = m,
                "dropped reasoning_effort: max_tokens leaves no room for Claude's least thinking budget"
            );
            (None, m)
        }
        (None, m) => (None, m.unwrap_or(DEFAULT_MAX_TOKENS)),
    }
}

#[derive(Serialize)]
struct AMsgOut<'b> {
    role: &'static str,
    content: ContentOut<'b>,
}

/// Anthropic content: a plain string when it is one text block without `cache_control`.
#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut<'b> {
    Text(JStr<'b>),
    Blocks(Vec<ABlockOut<'b>>),
}

impl<'b> ContentOut<'b> {
    fn from_blocks(blocks: Vec<ABlockOut<'b>>) -> Self {
        if let [
            ABlockOut::Text {
                text,
                cache_control: None,
            },
        ] = blocks.as_slice()
        {
            return ContentOut::Text(*text);
        }
        ContentOut::Blocks(blocks)
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ABlockOut<'b> {
    Text {
        text: JStr<'b>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'b RawValue>,
    },
    Image {
        source: ASourceOut<'b>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'b RawValue>,
    },
    Document {
        source: ASourceOut<'b>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<JStr<'b>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'b RawValue>,
    },
    ToolUse {
        id: Cow<'b, str>,
        name: JStr<'b>,
        input: RawOr<'b>,
    },
    ToolResult {
        tool_use_id: Cow<'b, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ContentOut<'b>>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ASourceOut<'b> {
    Base64 { media_type: &'b str, data: &'b str },
    Url { url: &'b str },
}

#[derive(Serialize)]
struct AToolOut<'b> {
    name: JStr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<JStr<'b>>,
    input_schema: RawOr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'b RawValue>,
}

#[derive(Serialize)]
struct AToolChoiceOut<'b> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Serialize)]
struct AMetaOut<'b> {
    user_id: JStr<'b>,
}

/// Accumulates Anthropic turns, merging consecutive messages of one role (Anthropic requires
/// user and assistant to alternate).
struct Turns<'b> {
    turns: Vec<(&'static str, Vec<ABlockOut<'b>>)>,
}

impl<'b> Turns<'b> {
    fn push(&mut self, role: &'static str, blocks: Vec<ABlockOut<'b>>) {
        if blocks.is_empty() {
            tracing::debug!(role, "dropped a message left without content");
            return;
        }
        match self.turns.last_mut() {
            Some((r, existing)) if *r == role => existing.extend(blocks),
            _ => self.turns.push((role, blocks)),
        }
    }
}

fn image_block<'b>(url: &'b str, cache_control: Option<&'b RawValue>) -> Option<ABlockOut<'b>> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Some(ABlockOut::Image {
            source: ASourceOut::Base64 { media_type, data },
            cache_control,
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Some(ABlockOut::Image {
            source: ASourceOut::Url { url },
            cache_control,
        });
    }
    tracing::debug!("dropped an image whose URL is neither base64 data nor http(s)");
    None
}

/// OpenAI content parts -> Anthropic blocks (text, image, PDF document).
fn part_blocks<'b>(parts: &'b [ChatPart<'_>], out: &mut Vec<ABlockOut<'b>>) {
    for p in parts {
        match &*p.kind {
            "text" | "refusal" => match p.text.or(p.refusal) {
                Some(text) if !text.is_empty() => out.push(ABlockOut::Text {
                    text,
                    cache_control: p.cache_control,
                }),
                _ => tracing::debug!("dropped an empty text part (Anthropic refuses empty text)"),
            },
            "image_url" => {
                if let Some(b) = p
                    .image_url
                    .as_ref()
                    .and_then(|u| image_block(&u.0, p.cache_control))
                {
                    out.push(b);
                }
            }
            "file" => {
                let pdf = p
                    .file
                    .as_ref()
                    .and_then(|f| Some((f.file_data.as_deref().and_then(parse_data_url)?, f)));
                match pdf {
                    Some(((media_type, data), f)) if media_type == "application/pdf" => {
                        out.push(ABlockOut::Document {
                            source: ASourceOut::Base64 { media_type, data },
                            title: f.filename,
                            cache_control: p.cache_control,
                        });
                    }
                    _ => tracing::debug!("dropped a file part that is not inline PDF data"),
                }
            }
            other => tracing::debug!(part = other, "dropped a content part Anthropic cannot take"),
        }
    }
}

fn content_blocks<'b>(content: Option<&'b ChatContent<'_>>) -> Vec<ABlockOut<'b>> {
    let mut out = Vec::new();
    match content {
        None => {}
        Some(ChatContent::Text(t)) => {
            if t.is_empty() {
                tracing::debug!("dropped empty text content (Anthropic refuses empty text)");
            } else {
                out.push(ABlockOut::Text {
                    text: *t,
                    cache_control: None,
                });
            }
        }
        Some(ChatContent::Parts(parts)) => part_blocks(parts, &mut out),
    }
    out
}

/// Tool-call `arguments` (a JSON object as a string) -> Anthropic `input`.
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

fn tool_choice_to_anthropic<'b>(
    raw: &'b RawValue,
    parallel: Option<bool>,
) -> Option<AToolChoiceOut<'b>> {
    let disable = (parallel == Some(false)).then_some(true);
    let choice = |kind, name| AToolChoiceOut {
        kind,
        name,
        disable_parallel_tool_use: disable,
    };
    if let Some(s) = JStr::from_raw(raw) {
        return match &*s.decode() {
            "auto" => Some(choice("auto", None)),
            "required" => Some(choice("any", None)),
            "none" => Some(AToolChoiceOut {
                kind: "none",
                name: None,
                disable_parallel_tool_use: None,
            }),
            other => {
                tracing::debug!(tool_choice = other, "dropped an unknown tool_choice");
                None
            }
        };
    }
    match serde_json::from_str::<ChatNamedChoice>(raw.get()) {
        Ok(ChatNamedChoice {
            kind,
            function: Some(f),
        }) if kind == "function" => Some(choice("tool", Some(f.name))),
        _ => {
            tracing::debug!("dropped a tool_choice Anthropic cannot express");
            None
        }
    }
}

/// OpenAI chat.completions request JSON -> Anthropic /v1/messages request JSON, with `model` =
/// `upstream_model`. Keeps `stream`; drops OpenAI-only fields with a debug log.
pub fn chat_request_to_messages(
    body: &[u8],
    upstream_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    let req: ChatReq =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("request", &e))?;
    let raw_messages = req
        .messages
        .ok_or_else(|| TranslateError::Invalid("`messages` is required".into()))?;
    let messages: Vec<ChatMsg> = parse_list(raw_messages, "messages")?;
    log_dropped(
        &[
            ("n", req.n.is_some_and(|n| n > 1)),
            ("logprobs", req.logprobs.is_some()),
            ("top_logprobs", req.top_logprobs.is_some()),
            ("seed", req.seed.is_some()),
            ("response_format", req.response_format.is_some()),
            ("presence_penalty", req.presence_penalty.is_some()),
            ("frequency_penalty", req.frequency_penalty.is_some()),
            ("logit_bias", req.logit_bias.is_some()),
            ("store", req.store.is_some()),
            ("metadata", req.metadata.is_some()),
            ("service_tier", req.service_tier.is_some()),
            ("modalities", req.modalities.is_some()),
            ("audio", req.audio.is_some()),
            ("prediction", req.prediction.is_some()),
            ("web_search_options", req.web_search_options.is_some()),
            ("functions", req.functions.is_some()),
            ("function_call", req.function_call.is_some()),
            ("prompt_cache_key", req.prompt_cache_key.is_some()),
            ("verbosity", req.verbosity.is_some()),
        ],
        "Anthropic Messages",
    );

    let mut system: Vec<ABlockOut> = Vec::new();
    let mut turns = Turns { turns: Vec::new() };
    for (i, m) in messages.iter().enumerate() {
        match &*m.role {
            "system" | "developer" => {
                for b in content_blocks(m.content.as_ref()) {
                    if matches!(b, ABlockOut::Text { .. }) {
                        system.push(b);
                    } else {
                        tracing::debug!("dropped a non-text part of a system message");
                    }
                }
            }
            "user" => turns.push("user", content_blocks(m.content.as_ref())),
            "assistant" => {
                let mut blocks = content_blocks(m.content.as_ref());
                for (j, tc) in m.tool_calls.iter().flatten().enumerate() {
                    let Some(f) = &tc.function else {
                        tracing::debug!("dropped a tool call that is not a function call");
                        continue;
                    };
                    let id = match tc.id.as_deref() {
                        Some(id) => anthropic_tool_id(id),
                        None => {
                            return Err(TranslateError::Invalid(format!(
                                "`messages[{i}].tool_calls[{j}].id` is required"
                            )));
                        }
                    };
                    blocks.push(ABlockOut::ToolUse {
                        id,
                        name: f.name,
                        input: tool_input(f.arguments.as_deref()),
                    });
                }
                turns.push("assistant", blocks);
            }
            "tool" => {
                let Some(id) = m.tool_call_id.as_deref() else {
                    return Err(TranslateError::Invalid(format!(
                        "`messages[{i}].tool_call_id` is required for role \"tool\""
                    )));
                };
                let content = match &m.content {
                    Some(ChatContent::Text(t)) => Some(ContentOut::Text(*t)),
                    Some(ChatContent::Parts(parts)) => {
                        let mut blocks = Vec::new();
                        part_blocks(parts, &mut blocks);
                        Some(ContentOut::from_blocks(blocks))
                    }
                    None => None,
                };
                turns.push(
                    "user",
                    vec![ABlockOut::ToolResult {
                        tool_use_id: anthropic_tool_id(id),
                        content,
                    }],
                );
            }
            "function" => tracing::debug!("dropped a legacy \"function\" message"),
            other => {
                return Err(TranslateError::Invalid(format!(
                    "`messages[{i}].role`: unknown role \"{other}\""
                )));
            }
        }
    }

    let tools: Option<Vec<AToolOut>> = req.tools.as_ref().map(|tools| {
        tools
            .iter()
            .filter_map(|t| {
                let f = t
                    .function
                    .as_ref()
                    .filter(|_| t.kind.as_deref().is_none_or(|k| k == "function"));
                let Some(f) = f else {
                    tracing::debug!("dropped a tool that is not a function");
                    return None;
                };
                Some(AToolOut {
                    name: f.name,
                    description: f.description,
                    input_schema: f
                        .parameters
                        .filter(|p| is_object(p.get()))
                        .map_or(RawOr::EmptySchema, RawOr::Borrowed),
                    cache_control: t.cache_control,
                })
            })
            .collect()
    });
    let tools = tools.filter(|t| !t.is_empty());
    let tool_choice = match (req.tool_choice, &tools) {
        (Some(tc), Some(_)) => tool_choice_to_anthropic(tc, req.parallel_tool_calls),
        (None, Some(_)) if req.parallel_tool_calls == Some(false) => Some(AToolChoiceOut {
            kind: "auto",
            name: None,
            disable_parallel_tool_use: Some(true),
        }),
        (Some(_), None) => {
            tracing::debug!("dropped tool_choice: the request has no tools");
            None
        }
        _ => None,
    };

    let stop_sequences = req.stop.map(|s| {
        let all = match s {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        };
        all.into_iter()
            .filter(|s| {
                let keep = !s.decode().trim().is_empty();
                if !keep {
                    tracing::debug!(
                        "dropped a whitespace-only stop sequence (Anthropic refuses them)"
                    );
                }
                keep
            })
            .collect::<Vec<_>>()
    });
    let stop_sequences = stop_sequences.filter(|s| !s.is_empty());

    let (thinking, max_tokens) = thinking_for(
        req.reasoning_effort.map(JStr::decode).as_deref(),
        req.max_completion_tokens.or(req.max_tokens),
    );
    // While Claude thinks it takes no temperature but 1, no top_p below 0.95, no forced tool.
    let thinks = thinking.is_some();
    let mut tool_choice = tool_choice;
    if thinks
        && let Some(tc) = tool_choice.as_mut()
        && matches!(tc.kind, "any" | "tool")
    {
        tracing::debug!("dropped a forced tool_choice: Claude cannot be forced while it thinks");
        tc.kind = "auto";
        tc.name = None;
    }
    let temperature = req.temperature.filter(|_| !thinks).map(|t| {
        if t > 1.0 {
            tracing::debug!(
                temperature = t,
                "temperature above Anthropic's maximum of 1; sending 1"
            );
            1.0
        } else {
            t
        }
    });
    // top_p = 1 is the default on both sides; leaving it out lets models that refuse both
    // temperature and top_p take the request.
    let top_p = req.top_p.filter(|&p| p < 1.0 && (!thinks || p >= 0.95));

    let system = if system.is_empty() {
        None
    } else {
        Some(ContentOut::from_blocks(system))
    };
    let out = MsgReqOut {
        model: upstream_model,
        system,
        messages: turns
            .turns
            .into_iter()
            .map(|(role, blocks)| AMsgOut {
                role,
                content: ContentOut::from_blocks(blocks),
            })
            .collect(),
        max_tokens,
        temperature,
        top_p,
        stop_sequences,
        stream: req.stream,
        tools,
        tool_choice,
        metadata: req
            .user
            .or(req.safety_identifier)
            .map(|user_id| AMetaOut { user_id }),
        thinking: thinking.map(|budget_tokens| ThinkingOut {
            kind: "enabled",
            budget_tokens,
        }),
    };
    serialize(&out)
}

// ---------------------------------------------------------------------------------------------
// Anthropic -> OpenAI
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct MsgReq<'a> {
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    system: Option<AContent<'a>>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(borrow)]
    stop_sequences: Option<Vec<JStr<'a>>>,
    stream: Option<bool>,
    #[serde(borrow)]
    tools: Option<Vec<ATool<'a>>>,
    #[serde(borrow)]
    tool_choice: Option<AToolChoice<'a>>,
    #[serde(borrow)]
    metadata: Option<AMeta<'a>>,
    // Dropped (logged when present).
    top_k: Option<IgnoredAny>,
    thinking: Option<IgnoredAny>,
    service_tier: Option<IgnoredAny>,
    container: Option<IgnoredAny>,
    mcp_servers: Option<IgnoredAny>,
    context_management: Option<IgnoredAny>,
}

/// Anthropic content (and `system`, and `tool_result.content`): a string or an array of blocks.
enum AContent<'a> {
    Text(JStr<'a>),
    Blocks(Vec<ABlock<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for AContent<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'a RawValue = Deserialize::deserialize(d)?;
        if let Some(s) = JStr::from_raw(raw) {
            return Ok(AContent::Text(s));
        }
        if !raw.get().starts_with('[') {
            return Err(D::Error::custom(
                "content must be a string or an array of content blocks",
            ));
        }
        serde_json::from_str(raw.get())
            .map(AContent::Blocks)
            .map_err(D::Error::custom)
    }
}

#[derive(Deserialize)]
struct AMsg<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: AContent<'a>,
}

#[derive(Deserialize)]
struct ABlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<JStr<'a>>,
    #[serde(borrow)]
    source: Option<ASource<'a>>,
    #[serde(borrow)]
    title: Option<JStr<'a>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_use_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<AContent<'a>>,
    is_error: Option<bool>,
}

#[derive(Deserialize)]
struct ASource<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ATool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: JStr<'a>,
    #[serde(borrow)]
    description: Option<JStr<'a>>,
    #[serde(borrow)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AToolChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Option<JStr<'a>>,
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct AMeta<'a> {
    #[serde(borrow)]
    user_id: Option<JStr<'a>>,
}

#[derive(Serialize)]
struct ChatReqOut<'b> {
    model: &'b str,
    messages: Vec<OMsgOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Vec<JStr<'b>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptionsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<OToolOut<'b>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OToolChoiceOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<JStr<'b>>,
}

#[derive(Serialize)]
struct StreamOptionsOut {
    include_usage: bool,
}

#[derive(Serialize)]
struct OMsgOut<'b> {
    role: &'static str,
    content: OContentOut<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<OToolCallOut<'b>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<Cow<'b, str>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OContentOut<'b> {
    Text(Txt<'b>),
    Parts(Vec<OPartOut<'b>>),
    Null,
}

impl<'b> OContentOut<'b> {
    /// One text part becomes a plain string; none becomes `null`.
    fn from_parts(mut parts: Vec<OPartOut<'b>>) -> Self {
        match parts.as_slice() {
            [] => OContentOut::Null,
            [OPartOut::Text { .. }] => match parts.pop() {
                Some(OPartOut::Text { text }) => OContentOut::Text(Txt::Raw(text)),
                _ => OContentOut::Null,
            },
            _ => OContentOut::Parts(parts),
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OPartOut<'b> {
    Text { text: JStr<'b> },
    ImageUrl { image_url: OImageUrl<'b> },
    File { file: OFileOut<'b> },
}

#[derive(Serialize)]
struct OImageUrl<'b> {
    url: Cow<'b, str>,
}

#[derive(Serialize)]
struct OFileOut<'b> {
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<JStr<'b>>,
    file_data: String,
}

#[derive(Serialize)]
struct OToolCallOut<'b> {
    id: &'b str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OFnCallOut<'b>,
}

#[derive(Serialize)]
struct OFnCallOut<'b> {
    name: JStr<'b>,
    arguments: AsJsonString<'b>,
}

#[derive(Serialize)]
struct OToolOut<'b> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OFnDefOut<'b>,
}

#[derive(Serialize)]
struct OFnDefOut<'b> {
    name: JStr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<JStr<'b>>,
    parameters: RawOr<'b>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OToolChoiceOut<'b> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: ONamedFn<'b>,
    },
}

#[derive(Serialize)]
struct ONamedFn<'b> {
    name: JStr<'b>,
}

/// An Anthropic image or document source -> an OpenAI content part.
fn source_part<'b>(
    kind: &str,
    source: &'b ASource<'_>,
    title: Option<JStr<'b>>,
) -> Option<OPartOut<'b>> {
    match (&*source.kind, kind) {
        ("base64", "image") => {
            let media = source.media_type.as_deref()?;
            let data = source.data.as_deref()?;
            Some(OPartOut::ImageUrl {
                image_url: OImageUrl {
                    url: Cow::Owned(format!("data:{media};base64,{data}")),
                },
            })
        }
        ("url", "image") => Some(OPartOut::ImageUrl {
            image_url: OImageUrl {
                url: Cow::Borrowed(source.url.as_deref()?),
            },
        }),
        ("base64", "document") if source.media_type.as_deref() == Some("application/pdf") => {
            let data = source.data.as_deref()?;
            Some(OPartOut::File {
                file: OFileOut {
                    filename: title,
                    file_data: format!("data:application/pdf;base64,{data}"),
                },
            })
        }
        _ => None,
    }
}

/// Text of a tool result: OpenAI tool messages take text only.
fn tool_result_text<'b>(content: Option<&'b AContent<'_>>) -> Txt<'b> {
    match content {
        None => Txt::Owned(String::new()),
        Some(AContent::Text(t)) => Txt::Raw(*t),
        Some(AContent::Blocks(blocks)) => {
            let mut texts = Vec::new();
            for b in blocks {
                match (&*b.kind, b.text) {
                    ("text", Some(t)) => texts.push(t),
                    (kind, _) => tracing::debug!(
                        block = kind,
                        "dropped a non-text tool_result block (OpenAI tool messages take text only)"
                    ),
                }
            }
            match texts.as_slice() {
                [one] => Txt::Raw(*one),
                _ => Txt::Owned(
                    texts
                        .iter()
                        .map(|t| t.decode())
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
            }
        }
    }
}

/// Anthropic /v1/messages request -> OpenAI chat request, `model` = `upstream_model`. A streaming
/// request also asks for `stream_options.include_usage` so usage can be reported.
pub fn messages_request_to_chat(
    body: &[u8],
    upstream_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    let req: MsgReq =
        serde_json::from_slice(body).map_err(|e| TranslateError::json("request", &e))?;
    let raw_messages = req
        .messages
        .ok_or_else(|| TranslateError::Invalid("`messages` is required".into()))?;
    let messages: Vec<AMsg> = parse_list(raw_messages, "messages")?;
    log_dropped(
        &[
            ("top_k", req.top_k.is_some()),
            ("thinking", req.thinking.is_some()),
            ("service_tier", req.service_tier.is_some()),
            ("container", req.container.is_some()),
            ("mcp_servers", req.mcp_servers.is_some()),
            ("context_management", req.context_management.is_some()),
        ],
        "OpenAI Chat Completions",
    );

    let mut out_msgs: Vec<OMsgOut> = Vec::with_capacity(messages.len() + 1);
    match &req.system {
        None => {}
        Some(AContent::Text(t)) if !t.is_empty() => {
            out_msgs.push(OMsgOut {
                role: "system",
                content: OContentOut::Text(Txt::Raw(*t)),
                tool_calls: None,
                tool_call_id: None,
            });
        }
        Some(AContent::Text(_)) => {}
        Some(AContent::Blocks(blocks)) => {
            let parts: Vec<OPartOut> = blocks
                .iter()
                .filter_map(|b| match (&*b.kind, b.text) {
                    ("text", Some(text)) => Some(OPartOut::Text { text }),
                    _ => None,
                })
                .collect();
            if !parts.is_empty() {
                out_msgs.push(OMsgOut {
                    role: "system",
                    content: OContentOut::from_parts(parts),
                    tool_calls: None,
                    tool_call_id: None,
                });
            }
        }
    }

    for (i, m) in messages.iter().enumerate() {
        let role: &'static str = match &*m.role {
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(TranslateError::Invalid(format!(
                    "`messages[{i}].role`: unknown role \"{other}\" (expected \"user\" or \"assistant\")"
                )));
            }
        };
        let blocks = match &m.content {
            AContent::Text(t) => {
                out_msgs.push(OMsgOut {
                    role,
                    content: OContentOut::Text(Txt::Raw(*t)),
                    tool_calls: None,
                    tool_call_id: None,
                });
                continue;
            }
            AContent::Blocks(b) => b,
        };
        let mut parts: Vec<OPartOut> = Vec::new();
        let mut tool_calls: Vec<OToolCallOut> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match &*b.kind {
                "text" => {
                    if let Some(text) = b.text {
                        parts.push(OPartOut::Text { text });
                    }
                }
                "image" | "document" => match b
                    .source
                    .as_ref()
                    .and_then(|s| source_part(&b.kind, s, b.title))
                {
                    Some(p) if role == "user" => parts.push(p),
                    _ => {
                        tracing::debug!(block = &*b.kind, "dropped a block OpenAI cannot take here")
                    }
                },
                "tool_use" => {
                    let (Some(id), Some(name)) = (b.id.as_deref(), b.name) else {
                        return Err(TranslateError::Invalid(format!(
                            "`messages[{i}].content[{j}]`: tool_use needs `id` and `name`"
                        )));
                    };
                    tool_calls.push(OToolCallOut {
                        id,
                        kind: "function",
                        function: OFnCallOut {
                            name,
                            arguments: AsJsonString(b.input.map_or("{}", |r| r.get())),
                        },
                    });
                }
                "tool_result" => {
                    let Some(id) = b.tool_use_id.as_deref() else {
                        return Err(TranslateError::Invalid(format!(
                            "`messages[{i}].content[{j}]`: tool_result needs `tool_use_id`"
                        )));
                    };
                    if b.is_error == Some(true) {
                        tracing::debug!("dropped tool_result is_error (OpenAI has no such flag)");
                    }
                    // Tool messages go before the rest of this user turn (Anthropic puts
                    // tool_result blocks first).
                    out_msgs.push(OMsgOut {
                        role: "tool",
                        content: OContentOut::Text(tool_result_text(b.content.as_ref())),
                        tool_calls: None,
                        tool_call_id: Some(Cow::Borrowed(id)),
                    });
                }
                other => {
                    tracing::debug!(block = other, "dropped a content block OpenAI cannot take")
                }
            }
        }
        if parts.is_empty() && tool_calls.is_empty() {
            continue;
        }
        out_msgs.push(OMsgOut {
            role,
            content: OContentOut::from_parts(parts),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            tool_call_id: None,
        });
    }

    let tools: Option<Vec<OToolOut>> = req.tools.as_ref().map(|tools| {
        tools
            .iter()
            .filter_map(|t| {
                let custom = t.kind.as_deref().is_none_or(|k| k == "custom");
                let Some(schema) = t.input_schema.filter(|_| custom) else {
                    tracing::debug!(
                        kind = t.kind.as_deref().unwrap_or(""),
                        "dropped an Anthropic server tool (OpenAI has no equivalent)"
                    );
                    return None;
                };
                Some(OToolOut {
                    kind: "function",
                    function: OFnDefOut {
                        name: t.name,
                        description: t.description,
                        parameters: RawOr::Borrowed(schema),
                    },
                })
            })
            .collect()
    });
    let tools = tools.filter(|t| !t.is_empty());
    let (tool_choice, parallel_tool_calls) = match (&req.tool_choice, &tools) {
        (Some(tc), Some(_)) => {
            let choice = match (&*tc.kind, tc.name) {
                ("auto", _) => Some(OToolChoiceOut::Mode("auto")),
                ("any", _) => Some(OToolChoiceOut::Mode("required")),
                ("none", _) => Some(OToolChoiceOut::Mode("none")),
                ("tool", Some(name)) => Some(OToolChoiceOut::Named {
                    kind: "function",
                    function: ONamedFn { name },
                }),
                (other, _) => {
                    tracing::debug!(tool_choice = other, "dropped an unknown tool_choice");
                    None
                }
            };
            let parallel = (tc.disable_parallel_tool_use == Some(true)).then_some(false);
            (choice, parallel)
        }
        _ => (None, None),
    };

    let stop = req.stop_sequences.map(|mut s| {
        if s.len() > 4 {
            tracing::debug!(
                count = s.len(),
                "OpenAI takes at most 4 stop sequences; dropped the rest"
            );
            s.truncate(4);
        }
        s
    });
    let stream = req.stream;
    let out = ChatReqOut {
        model: upstream_model,
        messages: out_msgs,
        max_completion_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop: stop.filter(|s| !s.is_empty()),
        stream,
        stream_options: (stream == Some(true)).then_some(StreamOptionsOut {
            include_usage: true,
        }),
        tools,
        tool_choice,
        parallel_tool_calls,
        user: req.metadata.and_then(|m| m.user_id),
    };
    serialize(&out)
}
