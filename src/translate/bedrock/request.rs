//! OpenAI chat request -> Bedrock `Converse` request body.

use std::borrow::Cow;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::super::json::{JStr, RawOr, is_object};
use super::super::pivot::request::{
    ChatContent, ChatMessage, ChatPart, ChatRequest, ResponseFormat, ToolChoice, Turns,
    parse_data_url, thinking_budget, tool_arguments, unknown_role,
};
use super::super::tool_ids::BEDROCK;
use super::super::{DEFAULT_MAX_TOKENS, Dropped, TranslateError};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest<'b> {
    messages: Vec<MessageOut<'b>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'b>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_model_request_fields: Option<AdditionalFields>,
}

#[derive(Serialize)]
struct MessageOut<'b> {
    role: &'static str,
    content: Vec<Block<'b>>,
}

/// A Converse content block (and a system block: `text` or `cachePoint`).
#[derive(Serialize)]
#[serde(untagged)]
enum Block<'b> {
    Text {
        text: JStr<'b>,
    },
    Image {
        image: Media<'b>,
    },
    Document {
        document: Document<'b>,
    },
    ToolUse {
        #[serde(rename = "toolUse")]
        tool_use: ToolUse<'b>,
    },
    ToolResult {
        #[serde(rename = "toolResult")]
        tool_result: ToolResult<'b>,
    },
    CachePoint {
        #[serde(rename = "cachePoint")]
        cache_point: CachePoint,
    },
}

#[derive(Serialize)]
struct Media<'b> {
    format: &'static str,
    source: Bytes<'b>,
}

#[derive(Serialize)]
struct Document<'b> {
    format: &'static str,
    name: String,
    source: Bytes<'b>,
}

#[derive(Serialize)]
struct Bytes<'b> {
    bytes: &'b str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'b> {
    tool_use_id: Cow<'b, str>,
    name: JStr<'b>,
    input: RawOr<'b>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'b> {
    tool_use_id: Cow<'b, str>,
    content: Vec<ResultText<'b>>,
}

#[derive(Serialize)]
struct ResultText<'b> {
    text: JStr<'b>,
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'b> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<JStr<'b>>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'b> {
    tools: Vec<ToolOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'b>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolOut<'b> {
    tool_spec: ToolSpec<'b>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'b> {
    name: JStr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<JStr<'b>>,
    input_schema: InputSchema<'b>,
}

#[derive(Serialize)]
struct InputSchema<'b> {
    json: RawOr<'b>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolChoiceOut<'b> {
    Auto {},
    Any {},
    Tool { name: JStr<'b> },
}

/// `additionalModelRequestFields`: what only some models take.
#[derive(Serialize)]
struct AdditionalFields {
    thinking: Thinking,
}

/// Anthropic Claude's extended thinking.
#[derive(Serialize)]
struct Thinking {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u64,
}

/// Bedrock tool ids must match `[a-zA-Z0-9_-]+` and have at most 64 characters: an OpenAI-side
/// id becomes Bedrock's style (`call_X` → `tooluse_X`, see `tool_ids`), and one still longer
/// than 64 becomes `tooluse_` + 32 hex digits of its SHA-256, the same way for `toolUse` and
/// `toolResult` so pairs still match.
fn tool_id(id: &str) -> Cow<'_, str> {
    let id = BEDROCK.to_native(id);
    if id.len() <= 64 {
        return id;
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut out = String::with_capacity(40);
    out.push_str("tooluse_");
    out.push_str(&hex::encode(&digest[..16]));
    Cow::Owned(out)
}

/// Converse image formats by MIME type.
fn image_format(media: &str) -> Option<&'static str> {
    Some(match media {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return None,
    })
}

/// Converse document formats by MIME type.
fn document_format(media: &str) -> Option<&'static str> {
    Some(match media {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

/// A document name Bedrock takes (letters, digits, single spaces, `-`, `()`, `[]`): the file
/// name without its extension, other characters as `-`; `document-N` when nothing is left.
fn document_name(filename: Option<&str>, n: usize) -> String {
    let stem = filename
        .map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem))
        .unwrap_or("");
    let mut name = String::with_capacity(stem.len());
    for c in stem.chars() {
        let c = match c {
            c if c.is_ascii_alphanumeric() || "-()[]".contains(c) => c,
            c if c.is_whitespace() => ' ',
            _ => '-',
        };
        if !(c == ' ' && name.ends_with(' ')) {
            name.push(c);
        }
    }
    let name = name.trim();
    if name.is_empty() {
        format!("document-{n}")
    } else {
        name.to_owned()
    }
}

/// Builds the blocks of a request, numbering unnamed documents.
struct Blocks<'d> {
    dropped: &'d mut Dropped,
    documents: usize,
}

impl<'d> Blocks<'d> {
    fn content<'b>(&mut self, content: Option<&'b ChatContent<'_>>) -> Vec<Block<'b>> {
        let mut out = Vec::new();
        match content {
            // Bedrock refuses blank text.
            Some(ChatContent::Text(t)) if !t.decode().trim().is_empty() => {
                out.push(Block::Text { text: *t });
            }
            None | Some(ChatContent::Text(_)) => {}
            Some(ChatContent::Parts(ps)) => {
                for p in ps {
                    self.part(p, &mut out);
                }
            }
        }
        out
    }

    fn part<'b>(&mut self, p: &'b ChatPart<'_>, out: &mut Vec<Block<'b>>) {
        let block = if let Some(text) = p.text() {
            // Bedrock refuses blank text.
            (!text.decode().trim().is_empty()).then_some(Block::Text { text })
        } else {
            match (&*p.kind, &p.image_url, &p.file) {
                ("image_url", Some(img), _) => {
                    if img.has_detail() {
                        self.dropped.push("image_url.detail");
                    }
                    let image = parse_data_url(&img.url).and_then(|(media, data)| {
                        Some(Media {
                            format: image_format(media)?,
                            source: Bytes { bytes: data },
                        })
                    });
                    if image.is_none() {
                        // Converse takes image bytes only (or S3 locations), not URLs.
                        self.dropped.push("image_url");
                    }
                    image.map(|image| Block::Image { image })
                }
                ("file", _, Some(file)) => {
                    let doc = file
                        .file_data
                        .as_deref()
                        .and_then(parse_data_url)
                        .and_then(|(media, data)| Some((document_format(media)?, data)));
                    match doc {
                        Some((format, data)) => {
                            self.documents += 1;
                            Some(Block::Document {
                                document: Document {
                                    format,
                                    name: document_name(file.filename.as_deref(), self.documents),
                                    source: Bytes { bytes: data },
                                },
                            })
                        }
                        None => {
                            self.dropped.push("file");
                            None
                        }
                    }
                }
                ("input_audio", ..) => {
                    self.dropped.push("input_audio");
                    None
                }
                _ => {
                    self.dropped.push("content[].type");
                    None
                }
            }
        };
        if let Some(b) = block {
            out.push(b);
            if p.cache_control.is_some() {
                out.push(Block::CachePoint {
                    cache_point: CachePoint { kind: "default" },
                });
            }
        }
    }
}

fn message<'b>(
    i: usize,
    m: &'b ChatMessage<'_>,
    blocks: &mut Blocks<'_>,
    turns: &mut Turns<Block<'b>>,
    system: &mut Vec<Block<'b>>,
) -> Result<(), TranslateError> {
    if m.name.is_some() {
        blocks.dropped.push("messages[].name");
    }
    match &*m.role {
        "system" | "developer" => {
            for b in blocks.content(m.content.as_ref()) {
                match b {
                    Block::Text { .. } | Block::CachePoint { .. } => system.push(b),
                    _ => blocks
                        .dropped
                        .push("messages[].content[] (system, not text)"),
                }
            }
        }
        "user" => turns.push("user", blocks.content(m.content.as_ref())),
        "assistant" => {
            if m.reasoning_content.is_some() {
                blocks.dropped.push("messages[].reasoning_content");
            }
            let mut content = blocks.content(m.content.as_ref());
            for (j, tc) in m.tool_calls.iter().flatten().enumerate() {
                let Some(f) = &tc.function else {
                    blocks.dropped.push("tool_calls[].type");
                    continue;
                };
                let Some(id) = tc.id.as_deref() else {
                    return Err(TranslateError::Invalid(format!(
                        "`messages[{i}].tool_calls[{j}].id` is required"
                    )));
                };
                content.push(Block::ToolUse {
                    tool_use: ToolUse {
                        tool_use_id: tool_id(id),
                        name: f.name,
                        input: tool_arguments(f.arguments.as_deref(), blocks.dropped),
                    },
                });
            }
            turns.push("assistant", content);
        }
        "tool" => {
            let id = m.answered_call(i)?;
            let mut content = Vec::new();
            match &m.content {
                None => {}
                Some(ChatContent::Text(t)) => content.push(ResultText { text: *t }),
                Some(ChatContent::Parts(ps)) => {
                    for p in ps {
                        match p.text() {
                            Some(text) => content.push(ResultText { text }),
                            None => blocks.dropped.push("content[].type"),
                        }
                    }
                }
            }
            turns.push(
                "user",
                vec![Block::ToolResult {
                    tool_result: ToolResult {
                        tool_use_id: tool_id(id),
                        content,
                    },
                }],
            );
        }
        "function" => blocks.dropped.push("messages[].role:function"),
        other => return Err(unknown_role(i, other)),
    }
    Ok(())
}

fn tool_choice<'b>(
    choice: Option<&ToolChoice<'b>>,
    dropped: &mut Dropped,
) -> Option<ToolChoiceOut<'b>> {
    match choice? {
        ToolChoice::Auto => Some(ToolChoiceOut::Auto {}),
        ToolChoice::Required => Some(ToolChoiceOut::Any {}),
        ToolChoice::Function(name) => Some(ToolChoiceOut::Tool { name: *name }),
        ToolChoice::Allowed { required, names } => {
            match (required, names.as_slice()) {
                (true, [one]) => return Some(ToolChoiceOut::Tool { name: *one }),
                _ => dropped.push("tool_choice.allowed_tools"),
            }
            Some(if *required {
                ToolChoiceOut::Any {}
            } else {
                ToolChoiceOut::Auto {}
            })
        }
        // Converse has no "none"; the tools stay declared (Bedrock needs them when the
        // conversation holds tool calls).
        ToolChoice::None | ToolChoice::Other => {
            dropped.push("tool_choice");
            None
        }
    }
}

/// Whether `model` (a Bedrock model id, inference profile id or ARN) is an Anthropic Claude.
fn is_claude(model: &str) -> bool {
    model.contains("anthropic.claude")
}

/// OpenAI chat request JSON -> Bedrock `Converse` request JSON (the same body serves
/// `ConverseStream`). `model` is the upstream model id (it goes in Bedrock's URL, not here; it
/// decides whether `reasoning_effort` can become Claude's thinking budget). What Converse
/// cannot carry is named in `dropped`.
pub fn chat_request_to_bedrock(
    body: &[u8],
    model: &str,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    let req = ChatRequest::parse(body, dropped)?;
    let mut system = Vec::new();
    let mut turns = Turns::default();
    let mut blocks = Blocks {
        dropped,
        documents: 0,
    };
    for (i, m) in req.messages.iter().enumerate() {
        message(i, m, &mut blocks, &mut turns, &mut system)?;
    }
    let dropped = blocks.dropped;

    let tools: Vec<ToolOut> = req
        .tools
        .iter()
        .map(|f| {
            if f.strict == Some(true) {
                dropped.push("tools[].function.strict");
            }
            ToolOut {
                tool_spec: ToolSpec {
                    name: f.name,
                    description: f.description,
                    input_schema: InputSchema {
                        json: f
                            .parameters
                            .filter(|p| is_object(p.get()))
                            .map_or(RawOr::EmptySchema, RawOr::Borrowed),
                    },
                },
            }
        })
        .collect();
    let mut choice = tool_choice(req.tool_choice.as_ref(), dropped);

    let mut config = InferenceConfig {
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: req.stop.clone(),
    };
    let mut additional = None;
    if let Some(effort) = req.reasoning_effort.as_deref() {
        match thinking_budget(effort) {
            Some(0) if is_claude(model) => {}
            Some(budget) if is_claude(model) => {
                let budget = u64::from(budget);
                // Claude needs max_tokens above the budget (and a budget of at least 1024).
                let max_tokens = config.max_tokens.unwrap_or(budget + DEFAULT_MAX_TOKENS);
                let budget = budget.min(max_tokens.saturating_sub(1));
                if budget >= 1024 {
                    config.max_tokens = Some(max_tokens);
                    additional = Some(AdditionalFields {
                        thinking: Thinking {
                            kind: "enabled",
                            budget_tokens: budget,
                        },
                    });
                    // Claude thinks only with the default sampling and without a forced tool.
                    if config.temperature.take_if(|t| *t != 1.0).is_some() {
                        dropped.push("temperature");
                    }
                    if config.top_p.take_if(|p| *p < 0.95).is_some() {
                        dropped.push("top_p");
                    }
                    if choice
                        .take_if(|c| !matches!(c, ToolChoiceOut::Auto {}))
                        .is_some()
                    {
                        dropped.push("tool_choice");
                    }
                } else {
                    dropped.push("reasoning_effort");
                }
            }
            _ => dropped.push("reasoning_effort"),
        }
    }
    let tool_config = (!tools.is_empty()).then_some(ToolConfig {
        tools,
        tool_choice: choice,
    });

    for (name, present) in [
        ("n", req.n.is_some_and(|n| n > 1)),
        ("seed", req.seed.is_some()),
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
        (
            "response_format",
            !matches!(req.response_format, None | Some(ResponseFormat::Text)),
        ),
        (
            "parallel_tool_calls",
            req.parallel_tool_calls == Some(false),
        ),
        ("user", req.user.is_some()),
    ] {
        if present {
            dropped.push(name);
        }
    }

    let out = ConverseRequest {
        messages: turns
            .0
            .into_iter()
            .map(|(role, content)| MessageOut { role, content })
            .collect(),
        system,
        inference_config: config,
        tool_config,
        additional_model_request_fields: additional,
    };
    serde_json::to_vec(&out)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated request: {e}")))
}

#[cfg(test)]
mod tests;
