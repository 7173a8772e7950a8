//! `FakeNative`: an in-process server speaking Google's Gemini API and AWS Bedrock's Converse
//! API as they are on the wire, recording every request and following a per-test script.
//!
//! - Gemini: `POST /v1beta/models/{model}:generateContent` (JSON), `…:streamGenerateContent?alt=sse`
//!   (SSE, events separated by `\r\n\r\n`, as Google sends them), `…:batchEmbedContents`; the key
//!   must come in `x-goog-api-key` (else Google's 401 body).
//! - Bedrock: `POST /model/{model}/converse` (JSON) and `…/converse-stream` (AWS event-stream
//!   binary frames with their CRCs, `application/vnd.amazon.eventstream`); a request without a
//!   SigV4 `authorization` is refused as AWS does (403 with `x-amzn-errortype`).
//!
//! Answers echo the last user message's text; a text containing `BLOCKME` is blocked by the
//! safety filter (Gemini `SAFETY`, Bedrock `guardrail_intervened`). A request forcing a tool
//! (Gemini mode `ANY`, Converse `toolChoice.any`) gets one call of the first tool with
//! `{"input": <echo>}`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::upstream::{Recorded, pieces, words};

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum NativeFault {
    Normal,
    /// This status, these headers, this body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Streamed: send this many frames/events, then one whose checksum is wrong.
    Corrupt(usize),
    /// Streamed: send this many frames/events, then half of the next, then end the body.
    CutMidFrame(usize),
    /// Streamed: send this many frames/events, then end the body cleanly.
    Cut(usize),
    /// Streamed (Bedrock): an exception frame of this type first.
    Exception(&'static str),
    /// Streamed (Gemini): an error event first.
    StreamError(u16, &'static str),
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    faults: Mutex<VecDeque<NativeFault>>,
    key: String,
}

/// The fake server; stops serving when dropped.
pub struct FakeNative {
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNative {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeNative {
    /// `key`: the Gemini API key the server accepts.
    pub async fn start(key: &str) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            key: key.to_owned(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push(&self, faults: impl IntoIterator<Item = NativeFault>) {
        self.shared.faults.lock().unwrap().extend(faults);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("a request reached the fake")
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body, path) = super::upstream::record(req, &shared.requests).await;
    let fault = shared
        .faults
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(NativeFault::Normal);
    if let NativeFault::Status(s, h, b) = &fault {
        return respond(*s, "application/json", h, Body::from(b.clone()));
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if path.starts_with("/v1beta/models/") {
        gemini(&shared, &parts.headers, &path, &req, fault)
    } else if path.starts_with("/model/") {
        bedrock(&parts.headers, &path, &req, fault)
    } else {
        respond(404, "text/html", &[], Body::from("<html>Not Found</html>"))
    }
}

fn respond(status: u16, ct: &str, headers: &[(&'static str, String)], body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, ct.parse().unwrap());
    for (k, v) in headers {
        r.headers_mut().insert(*k, v.parse().unwrap());
    }
    r
}

/// The stream's pieces, sent one per body chunk, then whatever the fault adds.
fn stream_body(
    mut frames: Vec<Bytes>,
    fault: &NativeFault,
    corrupt: impl Fn(&Bytes) -> Bytes,
) -> Body {
    match fault {
        NativeFault::Corrupt(n) => {
            let n = (*n).min(frames.len().saturating_sub(1));
            let bad = corrupt(&frames[n]);
            frames.truncate(n);
            frames.push(bad);
        }
        NativeFault::CutMidFrame(n) => {
            let n = (*n).min(frames.len().saturating_sub(1));
            let half = frames[n].slice(..frames[n].len() / 2);
            frames.truncate(n);
            frames.push(half);
        }
        NativeFault::Cut(n) => frames.truncate(*n),
        _ => {}
    }
    let chunks: Vec<Result<Bytes, std::io::Error>> = frames.into_iter().map(Ok).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

// ------------------------------------------------------------------------------------ Gemini

fn gemini_error(code: u16, status: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "status": status}}).to_string()
}

fn gemini(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    req: &Value,
    fault: NativeFault,
) -> Response {
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(shared.key.as_str()) {
        return respond(
            400,
            "application/json",
            &[],
            Body::from(gemini_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
            )),
        );
    }
    let rest = &path["/v1beta/models/".len()..];
    let (model, method) = rest.split_once(':').unwrap_or((rest, ""));
    if method.starts_with("batchEmbedContents") {
        let embeddings: Vec<Value> = req["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                assert_eq!(
                    r["model"],
                    format!("models/{model}"),
                    "each request names its model"
                );
                let text = r
                    .pointer("/content/parts/0/text")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                json!({"values": [0.25, -0.5, text.len() as f64]})
            })
            .collect();
        return respond(
            200,
            "application/json",
            &[],
            Body::from(json!({"embeddings": embeddings}).to_string()),
        );
    }
    let echo = req["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|c| c["role"] == "user")
        .and_then(|c| c["parts"].as_array())
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let forced = req.pointer("/toolConfig/functionCallingConfig/mode") == Some(&json!("ANY"));
    let tool = req
        .pointer("/tools/0/functionDeclarations/0/name")
        .and_then(Value::as_str)
        .filter(|_| forced);
    let blocked = echo.contains("BLOCKME");
    let pt = 3u64;
    let ct = words(&echo);
    let usage =
        json!({"promptTokenCount": pt, "candidatesTokenCount": ct, "totalTokenCount": pt + ct});
    let finish = if blocked { "SAFETY" } else { "STOP" };
    if method.starts_with("generateContent") {
        let parts = match tool {
            Some(name) => json!([{"functionCall": {"name": name, "args": {"input": echo}}}]),
            None if blocked => json!([]),
            None => json!([{"text": echo}]),
        };
        let body = json!({"candidates": [{"content": {"role": "model", "parts": parts},
            "finishReason": finish, "index": 0}], "usageMetadata": usage,
            "modelVersion": model, "responseId": "gem-resp-1"});
        return respond(200, "application/json", &[], Body::from(body.to_string()));
    }
    assert_eq!(
        method, "streamGenerateContent?alt=sse",
        "streams ask for SSE"
    );
    let event = |v: Value| Bytes::from(format!("data: {v}\r\n\r\n"));
    let mut frames = Vec::new();
    if let NativeFault::StreamError(code, status) = fault {
        frames.push(event(
            serde_json::from_str(&gemini_error(code, status, "the stream failed")).unwrap(),
        ));
        return respond(
            200,
            "text/event-stream",
            &[],
            stream_body(frames, &NativeFault::Normal, Clone::clone),
        );
    }
    let all = pieces(&echo);
    let last = all.len().saturating_sub(1);
    for (i, p) in all.iter().enumerate() {
        let mut cand = json!({"content": {"role": "model", "parts": [{"text": p}]}, "index": 0});
        let mut chunk = json!({"modelVersion": model, "responseId": "gem-resp-1"});
        if i == last {
            cand["finishReason"] = json!(finish);
            chunk["usageMetadata"] = usage.clone();
        }
        chunk["candidates"] = json!([cand]);
        frames.push(event(chunk));
    }
    respond(
        200,
        "text/event-stream",
        &[],
        stream_body(frames, &fault, |f| {
            // Not valid JSON any more: the converter skips it, and the stream then ends unfinished.
            Bytes::from(format!("data: {{\"candidates\": [{}\r\n\r\n", f.len()))
        }),
    )
}

// ----------------------------------------------------------------------------------- Bedrock

/// One AWS event-stream frame (the gateway crate's encoder, `aws-smithy-eventstream`).
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    ai_gateway::providers::aws::eventstream::encode(headers, payload).unwrap()
}

fn event(kind: &str, payload: Value) -> Bytes {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        payload.to_string().as_bytes(),
    )
}

fn bedrock(headers: &HeaderMap, path: &str, req: &Value, fault: NativeFault) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !auth.starts_with("AWS4-HMAC-SHA256 Credential=") || headers.get("x-amz-date").is_none() {
        return respond(
            403,
            "application/json",
            &[("x-amzn-errortype", "MissingAuthenticationTokenException:http://internal.amazon.com/coral/com.amazon.coral.service/".to_owned())],
            Body::from(json!({"message": "Missing Authentication Token"}).to_string()),
        );
    }
    let stream = path.ends_with("/converse-stream");
    let echo = req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_array())
        .map(|c| {
            c.iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let forced = req.pointer("/toolConfig/toolChoice/any").is_some();
    let tool = req
        .pointer("/toolConfig/tools/0/toolSpec/name")
        .and_then(Value::as_str)
        .filter(|_| forced);
    let blocked = echo.contains("BLOCKME");
    let (it, ot) = (4u64, words(&echo));
    let usage = json!({"inputTokens": it, "outputTokens": ot, "totalTokens": it + ot});
    let stop = match (tool, blocked) {
        (Some(_), _) => "tool_use",
        (None, true) => "guardrail_intervened",
        _ => "end_turn",
    };
    if !stream {
        let content = match tool {
            Some(name) => {
                json!([{"toolUse": {"toolUseId": "tooluse_fake0", "name": name, "input": {"input": echo}}}])
            }
            None => json!([{"text": if blocked { "" } else { echo.as_str() }}]),
        };
        let body = json!({"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 1}});
        return respond(200, "application/json", &[], Body::from(body.to_string()));
    }
    let mut frames = Vec::new();
    if let NativeFault::Exception(kind) = fault {
        frames.push(frame(
            &[
                (":message-type", "exception"),
                (":exception-type", kind),
                (":content-type", "application/json"),
            ],
            json!({"message": "Too many requests, please wait before trying again."})
                .to_string()
                .as_bytes(),
        ));
        return respond(
            200,
            "application/vnd.amazon.eventstream",
            &[],
            stream_body(frames, &NativeFault::Normal, Clone::clone),
        );
    }
    frames.push(event("messageStart", json!({"role": "assistant"})));
    match tool {
        Some(name) => {
            frames.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": 0,
                "start": {"toolUse": {"toolUseId": "tooluse_fake0", "name": name}}}),
            ));
            let args = json!({"input": echo}).to_string();
            let mid = args.len() / 2;
            for part in [&args[..mid], &args[mid..]] {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0,
                    "delta": {"toolUse": {"input": part}}}),
                ));
            }
        }
        None => {
            for p in pieces(&echo) {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": p}}),
                ));
            }
        }
    }
    frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    frames.push(event("messageStop", json!({"stopReason": stop})));
    frames.push(event(
        "metadata",
        json!({"usage": usage, "metrics": {"latencyMs": 1}}),
    ));
    respond(
        200,
        "application/vnd.amazon.eventstream",
        &[],
        stream_body(frames, &fault, |f| {
            // Flip a payload byte: the message CRC no longer matches.
            let mut b = f.to_vec();
            let i = b.len() - 6;
            b[i] ^= 0xff;
            Bytes::from(b)
        }),
    )
}
