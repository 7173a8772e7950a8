//! The mock's AWS Bedrock Converse API: `POST /model/{modelId}/converse` (JSON) and
//! `…/converse-stream` (AWS event-stream binary frames, `application/vnd.amazon.eventstream`:
//! `messageStart`, a `contentBlockDelta` per word, `contentBlockStop`, `messageStop`,
//! `metadata` with the usage; each payload padded with a `p` field as Bedrock pads them). The
//! SigV4 signature is not checked.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Mock, ok};
use crate::providers::UpstreamBody;
use crate::providers::aws::eventstream;
use crate::providers::mock::{self, Echo};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    system: Vec<Block>,
    #[serde(default)]
    tool_config: Option<ToolConfig>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Vec<Block>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(default)]
    text: Option<String>,
}

/// The `text` blocks joined by spaces; `None` when there is none (tool results, media).
fn text_of(blocks: &[Block]) -> Option<String> {
    let texts: Vec<&str> = blocks.iter().filter_map(|b| b.text.as_deref()).collect();
    (!texts.is_empty()).then(|| texts.join(" "))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    #[serde(default)]
    tools: Vec<ToolEntry>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolEntry {
    #[serde(default)]
    tool_spec: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct ToolChoice {
    #[serde(default)]
    any: Option<Value>,
    #[serde(default)]
    tool: Option<Named>,
}

impl ConverseRequest {
    /// The echo: a user turn with text is the user's message (one of tool results is not); the
    /// system blocks count as one turn. `toolChoice.any` forces the first tool, `.tool` the one
    /// named.
    fn echo(&self) -> Echo {
        let system = text_of(&self.system).map(|t| (false, t));
        let turns = self.messages.iter().map(|m| match text_of(&m.content) {
            Some(t) => (m.role == "user", t),
            None => (false, String::new()),
        });
        let tool = self.tool_config.as_ref().and_then(|c| {
            let choice = c.tool_choice.as_ref()?;
            match (&choice.tool, &choice.any) {
                (Some(t), _) => Some(t.name.clone()),
                (None, Some(_)) => c
                    .tools
                    .iter()
                    .find_map(|t| t.tool_spec.as_ref())
                    .map(|s| s.name.clone()),
                (None, None) => None,
            }
        });
        Echo::new(system.into_iter().chain(turns), tool)
    }
}

/// Bedrock's error: the status, `x-amzn-errortype` and `{"message"}`.
fn error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({"message": message}))).into_response();
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    r
}

/// The request's echo, or Bedrock's 400 for a body that is not a Converse request.
fn echo_of(body: &[u8]) -> Result<Echo, Box<Response>> {
    match serde_json::from_slice::<ConverseRequest>(body) {
        Ok(req) => Ok(req.echo()),
        Err(e) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            &format!("mock: {e}"),
        ))),
    }
}

fn with_request_id(mut r: Response) -> Response {
    let id = format!("{:032x}", rand::random::<u128>());
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn usage(echo: &Echo) -> Value {
    let (i, o) = (echo.prompt_tokens, echo.completion_tokens);
    json!({"inputTokens": i, "outputTokens": o, "totalTokens": i + o})
}

fn stop_reason(echo: &Echo) -> &'static str {
    if echo.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    }
}

const TOOL_USE_ID: &str = "tooluse_mock0";

/// `POST /model/{modelId}/converse`.
pub(super) async fn converse(State(m): State<Mock>, body: Bytes) -> Response {
    m.wait().await;
    let echo = match echo_of(&body) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let content = match &echo.tool {
        Some(name) => json!([{"toolUse": {"toolUseId": TOOL_USE_ID, "name": name,
            "input": {"input": echo.reply}}}]),
        None => json!([{"text": echo.reply}]),
    };
    let body = json!({"output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason(&echo), "usage": usage(&echo), "metrics": {"latencyMs": 0}});
    with_request_id(ok(
        UpstreamBody::Full(Bytes::from(body.to_string())),
        "application/json",
    ))
}

/// Bedrock's `p` field: letters that pad a payload to about the same length whatever it says.
fn padded(mut v: Value) -> Value {
    const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let len = v.to_string().len();
    let n = ALPHABET.len() - len % ALPHABET.len();
    v["p"] = json!(&ALPHABET[..n.max(1)]);
    v
}

/// `POST /model/{modelId}/converse-stream`.
pub(super) async fn converse_stream(State(m): State<Mock>, body: Bytes) -> Response {
    m.wait().await;
    let echo = match echo_of(&body) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let mut events: Vec<(&str, Value)> = vec![("messageStart", json!({"role": "assistant"}))];
    match &echo.tool {
        Some(name) => {
            events.push((
                "contentBlockStart",
                json!({"contentBlockIndex": 0,
                    "start": {"toolUse": {"toolUseId": TOOL_USE_ID, "name": name}}}),
            ));
            let args = echo.arguments();
            for half in Echo::argument_halves(&args) {
                events.push((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": half}}}),
                ));
            }
        }
        None => {
            for piece in echo.pieces() {
                events.push((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                ));
            }
        }
    }
    events.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
    events.push(("messageStop", json!({"stopReason": stop_reason(&echo)})));
    events.push((
        "metadata",
        json!({"usage": usage(&echo), "metrics": {"latencyMs": 0}}),
    ));
    let frames: Result<Vec<Bytes>, _> = events
        .into_iter()
        .map(|(kind, v)| eventstream::event(kind, padded(v).to_string().as_bytes()))
        .collect();
    match frames {
        Ok(frames) => with_request_id(ok(
            mock::paced(frames, m.latency),
            "application/vnd.amazon.eventstream",
        )),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            &e.to_string(),
        ),
    }
}
