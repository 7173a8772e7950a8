//! `FakeUpstream`: an in-process HTTP server speaking the real OpenAI, Azure OpenAI and Anthropic
//! wire formats, recording every request and following a per-test script of faults.
//!
//! - OpenAI: `POST {base}/chat/completions` (JSON, or SSE `data: {chat.completion.chunk}` …
//!   `data: [DONE]`, with a usage chunk when `stream_options.include_usage`), `POST
//!   {base}/embeddings` (float or base64). `base_url()` is `http://127.0.0.1:PORT/v1`.
//! - Azure: `POST /openai/deployments/{d}/chat/completions?api-version=…` and
//!   `…/{d}/embeddings`; the answer's `model` is the deployment name.
//! - Anthropic: `POST /v1/messages`, JSON or the SSE event sequence (`message_start`,
//!   `content_block_start`, `ping`, `content_block_delta` text_delta / input_json_delta,
//!   `content_block_stop`, `message_delta` with usage, `message_stop`).
//!
//! Chat answers echo the last user message's text. When the request forces a tool (OpenAI
//! `tool_choice: "required"`, Anthropic `tool_choice: {"type":"any"}`) the answer is one call to
//! the first tool with arguments `{"input": <echo>}`.
//!
//! Faults are consumed one per request, in order; when the queue is empty the default behaviour
//! applies (`Fault::Normal` unless `set_default` changed it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};

/// Which wire format the server speaks (it answers every path it knows regardless; the kind
/// decides `base_url()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Azure,
    Anthropic,
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The normal answer.
    Normal,
    /// Answer this status with this body (JSON content type).
    Status(u16, String),
    /// Answer this status with these extra headers (e.g. `retry-after`) and body.
    StatusWith(u16, Vec<(&'static str, String)>, String),
    /// Answer 200 with exactly this body (JSON content type).
    Body(String),
    /// Wait, then answer normally.
    Delay(Duration),
    /// Wait, then answer this status with this body.
    StatusAfter(Duration, u16, String),
    /// Never answer.
    Hang,
    /// Streamed requests: send this many frames, then break the connection.
    DropMidStream(usize),
    /// Streamed requests: frames spaced `gap` apart.
    SlowStream { gap: Duration },
    /// Streamed requests: send this many frames, then wait for `FakeUpstream::release()`.
    Gated(usize),
    /// Streamed requests: send this many frames, then end the body cleanly (no error, no
    /// terminal event unless it was among them).
    Cut(usize),
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// HTTP/1.1, or HTTP/2 from a provider with `http2: true` (h2c).
    pub version: axum::http::Version,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("recorded body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    faults: Mutex<VecDeque<Fault>>,
    default: Mutex<Fault>,
    streams_started: AtomicUsize,
    streams_completed: AtomicUsize,
    streams_cancelled: AtomicUsize,
    /// Requests whose handler was dropped before it answered (the client went away).
    requests_cancelled: AtomicUsize,
    frames_sent: AtomicUsize,
    gate: tokio::sync::watch::Sender<bool>,
}

/// The fake upstream; stops serving when dropped.
pub struct FakeUpstream {
    pub kind: Kind,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start(kind: Kind) -> Self {
        let (gate, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            default: Mutex::new(Fault::Normal),
            streams_started: AtomicUsize::new(0),
            streams_completed: AtomicUsize::new(0),
            streams_cancelled: AtomicUsize::new(0),
            requests_cancelled: AtomicUsize::new(0),
            frames_sent: AtomicUsize::new(0),
            gate,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            kind,
            addr,
            shared,
            task,
        }
    }

    /// What to put in the provider's `base_url`.
    pub fn base_url(&self) -> String {
        match self.kind {
            Kind::OpenAi => format!("http://{}/v1", self.addr),
            Kind::Azure | Kind::Anthropic => format!("http://{}", self.addr),
        }
    }

    /// Queue faults for the next requests, in order.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.faults.lock().unwrap().extend(faults);
    }

    /// Forget the queued faults not used yet.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// What to do once the queue is empty.
    pub fn set_default(&self, f: Fault) {
        *self.shared.default.lock().unwrap() = f;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// The only request received (panics unless exactly one).
    pub fn only_request(&self) -> Recorded {
        let r = self.requests();
        assert_eq!(
            r.len(),
            1,
            "expected exactly one upstream request, got {r:?}"
        );
        r.into_iter().next().unwrap()
    }

    pub fn streams_started(&self) -> usize {
        self.shared.streams_started.load(Ordering::SeqCst)
    }

    pub fn streams_completed(&self) -> usize {
        self.shared.streams_completed.load(Ordering::SeqCst)
    }

    /// Streamed bodies dropped before their last frame (the client went away).
    pub fn streams_cancelled(&self) -> usize {
        self.shared.streams_cancelled.load(Ordering::SeqCst)
    }

    /// Requests the client gave up on before their answer's head was sent (the connection was
    /// dropped while the server was still working on it, e.g. in a `Fault::Delay`).
    pub fn requests_cancelled(&self) -> usize {
        self.shared.requests_cancelled.load(Ordering::SeqCst)
    }

    /// Frames handed to the server so far, over all streams.
    pub fn frames_sent(&self) -> usize {
        self.shared.frames_sent.load(Ordering::SeqCst)
    }

    /// Let `Fault::Gated` streams go on.
    pub fn release(&self) {
        self.shared.gate.send_replace(true);
    }
}

/// Counts a request whose handler is dropped before it returned its answer.
struct Answering(Arc<Shared>, bool);

impl Drop for Answering {
    fn drop(&mut self) {
        if !self.1 {
            self.0.requests_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let mut answering = Answering(shared.clone(), false);
    let r = answer(shared, req).await;
    answering.1 = true;
    r
}

/// Read a request whole and record it: its head, body and path with query.
pub async fn record(
    req: Request,
    into: &Mutex<Vec<Recorded>>,
) -> (axum::http::request::Parts, Bytes, String) {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    into.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
        version: parts.version,
    });
    (parts, body, path)
}

async fn answer(shared: Arc<Shared>, req: Request) -> Response {
    let (parts, body, _path) = record(req, &shared.requests).await;
    let fault = shared
        .faults
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.default.lock().unwrap().clone());
    let mode = match fault {
        Fault::Status(s, b) => return error_response(s, &[], b),
        Fault::StatusWith(s, h, b) => return error_response(s, &h, b),
        Fault::Body(b) => return json_response(Bytes::from(b)),
        Fault::StatusAfter(d, s, b) => {
            tokio::time::sleep(d).await;
            return error_response(s, &[], b);
        }
        Fault::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            Mode::Fast
        }
        Fault::Normal => Mode::Fast,
        Fault::DropMidStream(n) => Mode::Drop(n),
        Fault::SlowStream { gap } => Mode::Slow(gap),
        Fault::Gated(n) => Mode::Gated(n),
        Fault::Cut(n) => Mode::Cut(n),
    };
    let p = parts.uri.path();
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error_response(
            400,
            &[],
            json!({"error":{"message":"fake upstream: body is not JSON","type":"invalid_request_error","param":null,"code":null}}).to_string(),
        );
    };
    let deployment = p
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned);
    if p.ends_with("/chat/completions") {
        openai_chat(&shared, &req, deployment, mode)
    } else if p.ends_with("/embeddings") {
        openai_embeddings(&req, deployment)
    } else if p.ends_with("/messages/count_tokens") {
        // A count only this fake gives: the bytes of `messages` as JSON.
        let n = req["messages"].to_string().len();
        error_response(200, &[], json!({"input_tokens": n}).to_string())
    } else if p.ends_with("/messages") {
        anthropic_messages(&shared, &req, mode)
    } else {
        error_response(
            404,
            &[],
            json!({"error":{"message":format!("fake upstream: no route {p}"),"type":"invalid_request_error","param":null,"code":null}}).to_string(),
        )
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Fast,
    Drop(usize),
    Slow(Duration),
    Gated(usize),
    Cut(usize),
}

fn error_response(status: u16, headers: &[(&'static str, String)], body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        r.headers_mut()
            .insert(*k, header::HeaderValue::from_str(v).unwrap());
    }
    r
}

fn json_response(b: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], b).into_response()
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The last user message's text.
fn echo_of(req: &Value) -> String {
    req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default()
}

pub fn words(s: &str) -> u64 {
    s.split_whitespace().count().max(1) as u64
}

fn prompt_tokens(req: &Value) -> u64 {
    req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| words(&text_of(&m["content"])))
        .sum()
}

/// Split into word pieces that join back to `s`.
pub fn pieces(s: &str) -> Vec<String> {
    let ws: Vec<&str> = s.split(' ').collect();
    let last = ws.len().saturating_sub(1);
    ws.iter()
        .enumerate()
        .map(|(i, w)| {
            if i < last {
                format!("{w} ")
            } else {
                (*w).to_owned()
            }
        })
        .collect()
}

fn openai_chat(
    shared: &Arc<Shared>,
    req: &Value,
    deployment: Option<String>,
    mode: Mode,
) -> Response {
    let echo = echo_of(req);
    let model = deployment.unwrap_or_else(|| req["model"].as_str().unwrap_or("").to_owned());
    let pt = prompt_tokens(req);
    let ct = words(&echo);
    let usage = json!({"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct});
    let tool = match (&req["tool_choice"], req["tools"].as_array()) {
        (Value::String(s), Some(tools)) if s == "required" => tools
            .first()
            .and_then(|t| t.pointer("/function/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let args = json!({"input": echo}).to_string();
    let id = "chatcmpl-fake0001";
    let created = 1_764_000_000u64;
    if req["stream"] != Value::Bool(true) {
        let message = match &tool {
            Some(name) => json!({"role":"assistant","content":null,"tool_calls":[{
                "id":"call_fake0","type":"function","function":{"name":name,"arguments":args}}]}),
            None => json!({"role":"assistant","content":echo,"refusal":null}),
        };
        let body = json!({"id":id,"object":"chat.completion","created":created,"model":model,
            "choices":[{"index":0,"message":message,"logprobs":null,
                "finish_reason": if tool.is_some() {"tool_calls"} else {"stop"}}],
            "usage":usage,"system_fingerprint":"fp_fake"});
        return json_response(Bytes::from(body.to_string()));
    }
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,
            "system_fingerprint":"fp_fake",
            "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]});
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut frames = vec![chunk(json!({"role":"assistant","content":""}), Value::Null)];
    match &tool {
        Some(name) => {
            frames.push(chunk(
                json!({"tool_calls":[{"index":0,"id":"call_fake0","type":"function",
                    "function":{"name":name,"arguments":""}}]}),
                Value::Null,
            ));
            let mid = args.len() / 2;
            let mid = (0..=mid)
                .rev()
                .find(|i| args.is_char_boundary(*i))
                .unwrap_or(0);
            for part in [&args[..mid], &args[mid..]] {
                frames.push(chunk(
                    json!({"tool_calls":[{"index":0,"function":{"arguments":part}}]}),
                    Value::Null,
                ));
            }
            frames.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            for p in pieces(&echo) {
                frames.push(chunk(json!({"content": p}), Value::Null));
            }
            frames.push(chunk(json!({}), json!("stop")));
        }
    }
    if req.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        let c = json!({"id":id,"object":"chat.completion.chunk","created":created,"model":model,
            "system_fingerprint":"fp_fake","choices":[],"usage":usage});
        frames.push(Bytes::from(format!("data: {c}\n\n")));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(shared, frames, mode)
}

fn openai_embeddings(req: &Value, deployment: Option<String>) -> Response {
    let model = deployment.unwrap_or_else(|| req["model"].as_str().unwrap_or("").to_owned());
    let inputs: Vec<String> = match &req["input"] {
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    };
    let base64 = req["encoding_format"] == "base64";
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = [0.25f32, -0.5, text.len() as f32];
            let emb = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object":"embedding","index":i,"embedding":emb})
        })
        .collect();
    let n = inputs.len();
    let body = json!({"object":"list","data":data,"model":model,
        "usage":{"prompt_tokens":n,"total_tokens":n}});
    json_response(Bytes::from(body.to_string()))
}

fn anthropic_messages(shared: &Arc<Shared>, req: &Value, mode: Mode) -> Response {
    let echo = echo_of(req);
    let model = req["model"].as_str().unwrap_or("").to_owned();
    let it = prompt_tokens(req);
    let ot = words(&echo);
    let forced = matches!(
        req.pointer("/tool_choice/type").and_then(Value::as_str),
        Some("any" | "tool")
    );
    let tool = req["tools"]
        .as_array()
        .and_then(|t| t.first())
        .and_then(|t| t["name"].as_str())
        .filter(|_| forced)
        .map(str::to_owned);
    let id = "msg_fake0001";
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if req["stream"] != Value::Bool(true) {
        let content = match &tool {
            Some(name) => {
                json!([{"type":"tool_use","id":"toolu_fake0","name":name,"input":{"input":echo}}])
            }
            None => json!([{"type":"text","text":echo}]),
        };
        let body = json!({"id":id,"type":"message","role":"assistant","model":model,
            "content":content,"stop_reason":stop,"stop_sequence":null,
            "usage":{"input_tokens":it,"output_tokens":ot}});
        return json_response(Bytes::from(body.to_string()));
    }
    let ev = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut frames = vec![ev(
        "message_start",
        json!({"type":"message_start","message":{"id":id,"type":"message","role":"assistant",
                "model":model,"content":[],"stop_reason":null,"stop_sequence":null,
                "usage":{"input_tokens":it,"output_tokens":1}}}),
    )];
    match &tool {
        Some(name) => {
            frames.push(ev(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":
                    {"type":"tool_use","id":"toolu_fake0","name":name,"input":{}}}),
            ));
            frames.push(ev("ping", json!({"type":"ping"})));
            let args = json!({"input": echo}).to_string();
            let mid = args.len() / 2;
            let mid = (0..=mid)
                .rev()
                .find(|i| args.is_char_boundary(*i))
                .unwrap_or(0);
            for part in [&args[..mid], &args[mid..]] {
                frames.push(ev(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,
                        "delta":{"type":"input_json_delta","partial_json":part}}),
                ));
            }
        }
        None => {
            frames.push(ev(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ));
            frames.push(ev("ping", json!({"type":"ping"})));
            for p in pieces(&echo) {
                frames.push(ev(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":p}}),
                ));
            }
        }
    }
    frames.push(ev(
        "content_block_stop",
        json!({"type":"content_block_stop","index":0}),
    ));
    frames.push(ev(
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},
            "usage":{"output_tokens":ot}}),
    ));
    frames.push(ev("message_stop", json!({"type":"message_stop"})));
    sse_response(shared, frames, mode)
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

fn sse_response(shared: &Arc<Shared>, frames: Vec<Bytes>, mode: Mode) -> Response {
    shared.streams_started.fetch_add(1, Ordering::SeqCst);
    let gate = shared.gate.subscribe();
    let total = frames.len();
    let inner: BoxStream = Box::pin(futures_util::stream::unfold(
        (frames.into_iter().enumerate(), gate),
        move |(mut it, mut gate)| async move {
            let (i, frame) = it.next()?;
            match mode {
                Mode::Fast => {}
                Mode::Slow(gap) => {
                    if i > 0 {
                        tokio::time::sleep(gap).await;
                    }
                }
                Mode::Drop(n) => {
                    if i >= n.min(total - 1) {
                        // Be pending once so the frames so far are flushed, then break.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return Some((
                            Err(std::io::Error::other("fake upstream drops the connection")),
                            (it, gate),
                        ));
                    }
                }
                Mode::Gated(n) => {
                    if i >= n {
                        let _ = gate.wait_for(|open| *open).await;
                    }
                }
                Mode::Cut(n) => {
                    if i >= n {
                        return None;
                    }
                }
            }
            Some((Ok(frame), (it, gate)))
        },
    ));
    let body = Tracked {
        inner,
        shared: shared.clone(),
        finished: false,
    };
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}

/// A streamed body that counts frames and tells completion from cancellation when dropped.
struct Tracked {
    inner: BoxStream,
    shared: Arc<Shared>,
    finished: bool,
}

impl Stream for Tracked {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let r = self.inner.as_mut().poll_next(cx);
        match &r {
            Poll::Ready(None) => self.finished = true,
            Poll::Ready(Some(Ok(_))) => {
                self.shared.frames_sent.fetch_add(1, Ordering::SeqCst);
            }
            Poll::Ready(Some(Err(_))) => {
                // Deliberate break (DropMidStream): neither completed nor cancelled by the client.
                self.finished = true;
            }
            Poll::Pending => {}
        }
        r
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.finished {
            self.shared.streams_completed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.shared.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}
