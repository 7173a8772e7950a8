//! Anthropic /v1/messages request -> OpenAI chat.completions request.

use std::borrow::Cow;

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::super::json::{AsJsonString, JStr, RawOr, Txt};
use super::super::tool_ids::ANTHROPIC;
use super::super::{Dropped, TranslateError};
use super::{log_dropped, parse_list, serialize};

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
    /// Becomes `reasoning_effort`.
    #[serde(borrow)]
    thinking: Option<AThinking<'a>>,
    // Dropped (named in `x-gateway-dropped` when present).
    top_k: Option<IgnoredAny>,
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

/// Claude's extended thinking: `{"type": "enabled", "budget_tokens": N}`, `{"type":
/// "disabled"}` or `{"type": "adaptive"}`.
#[derive(Deserialize)]
struct AThinking<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    budget_tokens: Option<u64>,
}

/// Claude's thinking -> OpenAI `reasoning_effort`. The bounds sit between the budgets the other
/// direction sends (low 1024, medium 8192, high 24576), so an effort survives a round trip:
/// below 4096 `low`, below 16384 `medium`, else `high`. Disabled thinking and `adaptive` (the
/// model decides) send no effort, leaving the upstream's default.
fn effort_for(thinking: Option<&AThinking<'_>>) -> Option<&'static str> {
    let t = thinking?;
    match (&*t.kind, t.budget_tokens) {
        ("enabled", Some(b)) if b < 4096 => Some("low"),
        ("enabled", Some(b)) if b < 16384 => Some("medium"),
        ("enabled", _) => Some("high"),
        _ => None,
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
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
    id: Cow<'b, str>,
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
    dropped: &mut Dropped,
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
            ("service_tier", req.service_tier.is_some()),
            ("container", req.container.is_some()),
            ("mcp_servers", req.mcp_servers.is_some()),
            ("context_management", req.context_management.is_some()),
        ],
        dropped,
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
                        id: ANTHROPIC.to_openai(id),
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
                        tool_call_id: Some(ANTHROPIC.to_openai(id)),
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
        reasoning_effort: effort_for(req.thinking.as_ref()),
    };
    serialize(&out)
}
