//! The mock's Google Gemini API: `POST /v1beta/models/{model}:generateContent` (JSON),
//! `…:streamGenerateContent?alt=sse` (one `GenerateContentResponse` per word, events separated
//! by `\r\n\r\n` as Google sends them, each with the usage so far) and `…:batchEmbedContents`.
//! The key (`x-goog-api-key`) is not checked.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Mock, ok};
use crate::providers::UpstreamBody;
use crate::providers::mock::{self, Echo};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    #[serde(default)]
    contents: Vec<Content>,
    #[serde(default)]
    system_instruction: Option<Content>,
    #[serde(default)]
    tools: Vec<Tool>,
    #[serde(default)]
    tool_config: Option<ToolConfig>,
    #[serde(default)]
    generation_config: Option<GenerationConfig>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    role: String,
    #[serde(default)]
    parts: Vec<Part>,
}

impl Content {
    /// The text parts joined by spaces; `None` when there is none (function calls and
    /// responses, media).
    fn text(&self) -> Option<String> {
        let texts: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect();
        (!texts.is_empty()).then(|| texts.join(" "))
    }
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tool {
    #[serde(default)]
    function_declarations: Vec<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    #[serde(default)]
    function_calling_config: Option<CallingConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallingConfig {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    allowed_function_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(default)]
    candidate_count: Option<u32>,
}

impl GenerateRequest {
    /// The echo: a user turn with text is the user's message (a turn of function responses is
    /// not); the system instruction counts as one turn. Mode `ANY` forces the first allowed
    /// (else declared) function.
    fn echo(&self) -> Echo {
        let system = self
            .system_instruction
            .as_ref()
            .map(|c| (false, c.text().unwrap_or_default()));
        let turns = self.contents.iter().map(|c| match c.text() {
            Some(t) => (c.role == "user", t),
            None => (false, String::new()),
        });
        let forced = self
            .tool_config
            .as_ref()
            .and_then(|t| t.function_calling_config.as_ref())
            .filter(|c| c.mode == "ANY");
        let tool = forced.and_then(|c| {
            c.allowed_function_names.first().cloned().or_else(|| {
                self.tools
                    .iter()
                    .flat_map(|t| &t.function_declarations)
                    .next()
                    .map(|f| f.name.clone())
            })
        });
        Echo::new(system.into_iter().chain(turns), tool)
    }
}

/// Google's error body.
fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": reason}});
    (status, axum::Json(body)).into_response()
}

/// A request body, or Google's 400 for one that is not what the method takes.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("mock: {e}"),
        ))
    })
}

/// `POST /v1beta/models/{model}:{method}` (also under `/v1`).
pub(super) async fn call(
    State(m): State<Mock>,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    m.wait().await;
    let Some((model, method)) = call.rsplit_once(':') else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no method in the path (model:method)",
        );
    };
    let sse = query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    match method {
        "generateContent" | "streamGenerateContent" => {}
        "batchEmbedContents" => return embed(&body),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("unknown method {method}"),
            );
        }
    }
    let req: GenerateRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let echo = req.echo();
    let id = format!("mock{:016x}", rand::random::<u64>());
    if method == "generateContent" {
        let n = req
            .generation_config
            .and_then(|g| g.candidate_count)
            .unwrap_or(1)
            .clamp(1, 16);
        let candidates: Vec<Value> = (0..n)
            .map(|i| candidate(&echo, i, Some(&echo.reply), true))
            .collect();
        let body = json!({"candidates": candidates, "usageMetadata": usage(&echo, true),
            "modelVersion": model, "responseId": id});
        return ok(
            UpstreamBody::Full(Bytes::from(body.to_string())),
            "application/json",
        );
    }
    if !sse {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "the mock server streams only server-sent events (?alt=sse)",
        );
    }
    let event = |cand: Value, done: bool| {
        let v = json!({"candidates": [cand], "usageMetadata": usage(&echo, done),
            "modelVersion": model, "responseId": id});
        Bytes::from(format!("data: {v}\r\n\r\n"))
    };
    let frames: Vec<Bytes> = if echo.tool.is_some() {
        vec![event(candidate(&echo, 0, None, true), true)]
    } else {
        let pieces: Vec<&str> = echo.pieces().collect();
        let last = pieces.len().saturating_sub(1);
        pieces
            .iter()
            .enumerate()
            .map(|(i, p)| event(candidate(&echo, 0, Some(p), i == last), i == last))
            .collect()
    };
    ok(mock::paced(frames, m.latency), "text/event-stream")
}

/// One candidate: `text` (or the forced function call), finished (`STOP`) when `done`.
fn candidate(echo: &Echo, index: u32, text: Option<&str>, done: bool) -> Value {
    let parts = match (&echo.tool, text) {
        (Some(name), _) => json!([{"functionCall": {"name": name, "args": {"input": echo.reply}}}]),
        (None, text) => json!([{"text": text.unwrap_or_default()}]),
    };
    let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": index});
    if done {
        c["finishReason"] = json!("STOP");
    }
    c
}

/// `usageMetadata`: the prompt's count in every event, the answer's when it is done.
fn usage(echo: &Echo, done: bool) -> Value {
    let p = echo.prompt_tokens;
    if done {
        let c = echo.completion_tokens;
        json!({"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c})
    } else {
        json!({"promptTokenCount": p, "totalTokenCount": p})
    }
}

#[derive(Deserialize)]
struct EmbedRequest {
    #[serde(default)]
    requests: Vec<EmbedOne>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedOne {
    content: Content,
    #[serde(default)]
    output_dimensionality: Option<usize>,
}

/// `batchEmbedContents`: the OpenAI endpoint's vectors (`mock::embedding`), 64 values unless
/// `outputDimensionality` says otherwise.
fn embed(body: &[u8]) -> Response {
    let req: EmbedRequest = match parse(body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let embeddings: Vec<Value> = req
        .requests
        .iter()
        .map(|r| {
            let dims = r.output_dimensionality.unwrap_or(64).clamp(1, 4096);
            json!({"values": mock::embedding(&r.content.text().unwrap_or_default(), dims)})
        })
        .collect();
    ok(
        UpstreamBody::Full(Bytes::from(json!({"embeddings": embeddings}).to_string())),
        "application/json",
    )
}
