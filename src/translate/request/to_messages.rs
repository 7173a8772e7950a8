//! OpenAI chat.completions request -> Anthropic /v1/messages request.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::super::json::{JStr, RawOr, is_object};
use super::super::tool_ids::ANTHROPIC;
use super::super::{DEFAULT_MAX_TOKENS, Dropped, TranslateError};
use super::json_answer::JsonAnswer;
use super::{
    ChatContent, ChatMsg, ChatNamedChoice, ChatPart, ChatReq, Stop, log_dropped, parse_data_url,
    parse_list, serialize,
};

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
        let b = super::super::pivot::request::thinking_budget(e);
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
    dropped: &mut Dropped,
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
        dropped,
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
                        Some(id) => ANTHROPIC.to_native(id),
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
                        tool_use_id: ANTHROPIC.to_native(id),
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

    let (mut tools, mut tool_choice) = (tools, tool_choice);
    match JsonAnswer::read(req.response_format, dropped) {
        JsonAnswer::Free => {}
        JsonAnswer::Object(instruction) => system.push(ABlockOut::Text {
            text: instruction,
            cache_control: None,
        }),
        JsonAnswer::Schema {
            name,
            description,
            schema,
        } => {
            // The client's own tools stay callable ("any": some tool, never free text); alone,
            // the schema's tool is forced.
            let theirs = tools.is_some();
            tools.get_or_insert_with(Vec::new).push(AToolOut {
                name,
                description,
                input_schema: RawOr::Borrowed(schema),
                cache_control: None,
            });
            if !theirs || tool_choice.is_none() {
                tool_choice = Some(AToolChoiceOut {
                    kind: if theirs { "any" } else { "tool" },
                    name: (!theirs).then_some(name),
                    disable_parallel_tool_use: None,
                });
            }
        }
    }

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
