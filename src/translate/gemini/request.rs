//! OpenAI chat request -> Gemini `generateContent` request body.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::super::json::{JStr, RawOr, Txt, is_object};
use super::super::pivot::request::{
    ChatContent, ChatMessage, ChatPart, ChatRequest, ResponseFormat, ToolChoice, Turns,
    parse_data_url, thinking_budget, tool_arguments, unknown_role,
};
use super::super::{Dropped, TranslateError};
use super::schema::{Schema, gemini_schema};
use super::signature_from_tool_call_id;

/// Gemini takes at most 5 stop sequences.
const MAX_STOP: usize = 5;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenRequest<'b> {
    contents: Vec<ContentOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemOut<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<[ToolsOut<'b>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'b>>,
    #[serde(skip_serializing_if = "GenConfig::is_empty")]
    generation_config: GenConfig<'b>,
}

#[derive(Serialize)]
struct ContentOut<'b> {
    role: &'static str,
    parts: Vec<PartOut<'b>>,
}

#[derive(Serialize)]
struct SystemOut<'b> {
    parts: Vec<PartOut<'b>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PartOut<'b> {
    Text {
        text: JStr<'b>,
    },
    Inline {
        #[serde(rename = "inlineData")]
        inline_data: Blob<'b>,
    },
    File {
        #[serde(rename = "fileData")]
        file_data: FileData<'b>,
    },
    Call {
        #[serde(rename = "functionCall")]
        function_call: FnCallOut<'b>,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<String>,
    },
    Response {
        #[serde(rename = "functionResponse")]
        function_response: FnResponseOut<'b>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'b> {
    mime_type: Cow<'b, str>,
    data: &'b str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileData<'b> {
    mime_type: &'static str,
    file_uri: &'b str,
}

#[derive(Serialize)]
struct FnCallOut<'b> {
    name: JStr<'b>,
    args: RawOr<'b>,
}

#[derive(Serialize)]
struct FnResponseOut<'b> {
    name: JStr<'b>,
    response: ResultOut<'b>,
}

/// A tool result: a JSON object as it is, anything else as `{"result": text}`.
enum ResultOut<'b> {
    Object(Box<RawValue>),
    Text(Txt<'b>),
}

impl Serialize for ResultOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ResultOut::Object(o) => o.serialize(s),
            ResultOut::Text(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("result", t)?;
                m.end()
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolsOut<'b> {
    function_declarations: Vec<FnDeclOut<'b>>,
}

#[derive(Serialize)]
struct FnDeclOut<'b> {
    name: JStr<'b>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Schema<'b>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'b> {
    function_calling_config: FnCallingConfig<'b>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FnCallingConfig<'b> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_function_names: Vec<JStr<'b>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenConfig<'b> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<JStr<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Schema<'b>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

impl GenConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.thinking_config.is_none()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    thinking_budget: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    include_thoughts: bool,
}

/// The MIME type of an image URL, from its extension (`image/jpeg` when it has none known).
fn mime_from_url(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map_or("", |(_, ext)| ext);
    match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

/// The name a part type is dropped under.
fn part_name(kind: &str) -> &'static str {
    match kind {
        "image_url" => "image_url",
        "input_audio" => "input_audio",
        "file" => "file",
        _ => "content[].type",
    }
}

/// OpenAI content parts -> Gemini parts.
fn parts<'b>(content: Option<&'b ChatContent<'_>>, dropped: &mut Dropped) -> Vec<PartOut<'b>> {
    let mut out = Vec::new();
    match content {
        Some(ChatContent::Text(t)) if !t.is_empty() => out.push(PartOut::Text { text: *t }),
        None | Some(ChatContent::Text(_)) => {}
        Some(ChatContent::Parts(ps)) => {
            for p in ps {
                if let Some(part) = part(p, dropped) {
                    out.push(part);
                }
            }
        }
    }
    out
}

fn part<'b>(p: &'b ChatPart<'_>, dropped: &mut Dropped) -> Option<PartOut<'b>> {
    if p.cache_control.is_some() {
        dropped.push("cache_control");
    }
    if let Some(text) = p.text() {
        return (!text.is_empty()).then_some(PartOut::Text { text });
    }
    match (&*p.kind, &p.image_url, &p.input_audio, &p.file) {
        ("image_url", Some(img), _, _) => {
            if img.has_detail() {
                dropped.push("image_url.detail");
            }
            if let Some((media, data)) = parse_data_url(&img.url) {
                return Some(PartOut::Inline {
                    inline_data: Blob {
                        mime_type: Cow::Borrowed(media),
                        data,
                    },
                });
            }
            if img.url.starts_with("https://") || img.url.starts_with("http://") {
                return Some(PartOut::File {
                    file_data: FileData {
                        mime_type: mime_from_url(&img.url),
                        file_uri: &img.url,
                    },
                });
            }
            dropped.push("image_url");
            None
        }
        ("input_audio", _, Some(audio), _) => Some(PartOut::Inline {
            inline_data: Blob {
                mime_type: Cow::Owned(format!("audio/{}", audio.format)),
                data: &audio.data,
            },
        }),
        ("file", _, _, Some(file)) => {
            let inline = file.file_data.as_deref().and_then(parse_data_url);
            match inline {
                Some((media, data)) => {
                    if file.filename.is_some() {
                        dropped.push("file.filename");
                    }
                    Some(PartOut::Inline {
                        inline_data: Blob {
                            mime_type: Cow::Borrowed(media),
                            data,
                        },
                    })
                }
                None => {
                    dropped.push("file");
                    None
                }
            }
        }
        (kind, ..) => {
            dropped.push(part_name(kind));
            None
        }
    }
}

/// A tool message's content -> `functionResponse.response`.
fn tool_result<'b>(content: Option<&'b ChatContent<'_>>, dropped: &mut Dropped) -> ResultOut<'b> {
    let text = match content {
        None => Txt::Owned(String::new()),
        Some(ChatContent::Text(t)) => Txt::Raw(*t),
        Some(ChatContent::Parts(ps)) => {
            let mut texts: Vec<JStr> = Vec::new();
            for p in ps {
                match p.text() {
                    Some(t) => texts.push(t),
                    None => dropped.push(part_name(&p.kind)),
                }
            }
            match texts.as_slice() {
                [one] => Txt::Raw(*one),
                many => Txt::Owned(many.iter().map(|t| t.decode()).collect()),
            }
        }
    };
    // Only text that opens like an object is unescaped and checked.
    let object = match &text {
        Txt::Raw(t) if is_object(&t.raw()[1..]) => Some(t.decode()),
        Txt::Raw(_) => None,
        Txt::Owned(s) => is_object(s).then_some(Cow::Borrowed(s.as_str())),
    };
    if let Some(decoded) = object
        && let Ok(raw) = RawValue::from_string(decoded.trim().to_owned())
    {
        return ResultOut::Object(raw);
    }
    ResultOut::Text(text)
}

fn message_parts<'b>(
    req: &'b ChatRequest<'_>,
    i: usize,
    m: &'b ChatMessage<'_>,
    turns: &mut Turns<PartOut<'b>>,
    system: &mut Vec<PartOut<'b>>,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    if m.name.is_some() {
        dropped.push("messages[].name");
    }
    match &*m.role {
        "system" | "developer" => {
            for p in parts(m.content.as_ref(), dropped) {
                match p {
                    PartOut::Text { .. } => system.push(p),
                    _ => dropped.push("messages[].content[] (system, not text)"),
                }
            }
        }
        "user" => turns.push("user", parts(m.content.as_ref(), dropped)),
        "assistant" => {
            if m.reasoning_content.is_some() {
                dropped.push("messages[].reasoning_content");
            }
            let mut out = parts(m.content.as_ref(), dropped);
            for tc in m.tool_calls.iter().flatten() {
                let Some(f) = &tc.function else {
                    dropped.push("tool_calls[].type");
                    continue;
                };
                out.push(PartOut::Call {
                    function_call: FnCallOut {
                        name: f.name,
                        args: tool_arguments(f.arguments.as_deref(), dropped),
                    },
                    thought_signature: tc.id.as_deref().and_then(signature_from_tool_call_id),
                });
            }
            turns.push("model", out);
        }
        "tool" => {
            let id = m.answered_call(i)?;
            let Some(name) = req.tool_name(id, i) else {
                return Err(TranslateError::Invalid(format!(
                    "`messages[{i}].tool_call_id` \"{id}\" answers no earlier tool call (Gemini needs the function's name)"
                )));
            };
            let response = tool_result(m.content.as_ref(), dropped);
            turns.push(
                "user",
                vec![PartOut::Response {
                    function_response: FnResponseOut { name, response },
                }],
            );
        }
        "function" => dropped.push("messages[].role:function"),
        other => return Err(unknown_role(i, other)),
    }
    Ok(())
}

fn tool_config<'b>(
    choice: Option<&ToolChoice<'b>>,
    dropped: &mut Dropped,
) -> Option<ToolConfig<'b>> {
    let (mode, names) = match choice? {
        ToolChoice::Auto => ("AUTO", Vec::new()),
        ToolChoice::None => ("NONE", Vec::new()),
        ToolChoice::Required => ("ANY", Vec::new()),
        ToolChoice::Function(name) => ("ANY", vec![*name]),
        ToolChoice::Allowed {
            required: true,
            names,
        } => ("ANY", names.clone()),
        ToolChoice::Allowed {
            required: false, ..
        } => {
            // Gemini restricts the functions only in mode ANY.
            dropped.push("tool_choice.allowed_tools");
            ("AUTO", Vec::new())
        }
        ToolChoice::Other => {
            dropped.push("tool_choice");
            return None;
        }
    };
    Some(ToolConfig {
        function_calling_config: FnCallingConfig {
            mode,
            allowed_function_names: names,
        },
    })
}

/// OpenAI chat request JSON -> Gemini `generateContent` request JSON (the same body serves
/// `streamGenerateContent`). `model` is the upstream model (it goes in Gemini's URL, not here;
/// it picks the smallest thinking budget: Gemini 2.5 Pro cannot turn thinking off, so `none`
/// asks it for 128 tokens). What Gemini cannot carry is named in `dropped`.
pub fn chat_request_to_gemini(
    body: &[u8],
    model: &str,
    dropped: &mut Dropped,
) -> Result<Vec<u8>, TranslateError> {
    let req = ChatRequest::parse(body, dropped)?;
    let mut system: Vec<PartOut> = Vec::new();
    let mut turns = Turns::default();
    for (i, m) in req.messages.iter().enumerate() {
        message_parts(&req, i, m, &mut turns, &mut system, dropped)?;
    }
    let contents = turns
        .0
        .into_iter()
        .map(|(role, parts)| ContentOut { role, parts })
        .collect();

    let mut decls = Vec::with_capacity(req.tools.len());
    for f in &req.tools {
        if f.strict == Some(true) {
            // Gemini follows the declared schema without a strict mode.
            dropped.push("tools[].function.strict");
        }
        let parameters = match f.parameters.filter(|p| is_object(p.get())) {
            Some(p) => gemini_schema(p, dropped)?,
            None => None,
        };
        decls.push(FnDeclOut {
            name: f.name,
            description: f.description,
            parameters,
        });
    }
    let tools = (!decls.is_empty()).then_some([ToolsOut {
        function_declarations: decls,
    }]);
    let tool_config = tool_config(req.tool_choice.as_ref(), dropped);
    if req.parallel_tool_calls == Some(false) {
        dropped.push("parallel_tool_calls");
    }
    if req.user.is_some() {
        dropped.push("user");
    }

    let mut config = GenConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_tokens,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        ..GenConfig::default()
    };
    let mut stop = req.stop.clone();
    if stop.len() > MAX_STOP {
        stop.truncate(MAX_STOP);
        dropped.push("stop");
    }
    config.stop_sequences = stop;
    config.candidate_count = req.n.filter(|&n| n > 1);
    if let Some(seed) = req.seed {
        match i32::try_from(seed) {
            Ok(s) => config.seed = Some(s),
            Err(_) => dropped.push("seed"),
        }
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => config.response_mime_type = Some("application/json"),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            config.response_mime_type = Some("application/json");
            if let Some(s) = schema.filter(|s| is_object(s.get())) {
                config.response_schema = gemini_schema(s, dropped)?;
            }
        }
        Some(ResponseFormat::Other) => dropped.push("response_format"),
    }
    if let Some(effort) = req.reasoning_effort.as_deref() {
        match thinking_budget(effort) {
            Some(0) if model.contains("2.5-pro") => {
                config.thinking_config = Some(ThinkingConfig {
                    thinking_budget: 128,
                    include_thoughts: false,
                });
            }
            Some(budget) => {
                config.thinking_config = Some(ThinkingConfig {
                    thinking_budget: budget,
                    include_thoughts: budget > 0,
                });
            }
            None => dropped.push("reasoning_effort"),
        }
    }

    let out = GenRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(SystemOut { parts: system }),
        tools,
        tool_config,
        generation_config: config,
    };
    serde_json::to_vec(&out)
        .map_err(|e| TranslateError::Invalid(format!("cannot write the translated request: {e}")))
}

#[cfg(test)]
mod tests;
