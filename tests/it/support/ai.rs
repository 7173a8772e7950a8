//! `FakeAi`: an in-process OpenAI-format upstream for the guardrail and semantic-cache tests,
//! recording every request body by path.
//!
//! - `POST /v1/chat/completions`: echoes the last user message's text; streamed (SSE), the echo
//!   is sent in pieces of three characters, each its own chunk and its own network write, so a
//!   placeholder is split across chunks.
//! - `POST /v1/moderations`: flagged when any input contains "attack"; answers 500 while
//!   `fail_moderation` is set.
//! - `POST /v1/embeddings`: a bag-of-words vector (256 dimensions) of each input, so paraphrases
//!   are similar and unrelated questions are not; answers late by `embed_delay`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

pub const DIMS: usize = 256;

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<(String, Value)>>,
    fail_moderation: AtomicBool,
    embed_delay_ms: AtomicU64,
}

pub struct FakeAi {
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAi {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            shared,
            task,
        }
    }

    /// The bodies received on paths ending with `path`, in order.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(path))
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn fail_moderation(&self, on: bool) {
        self.shared.fail_moderation.store(on, Ordering::SeqCst);
    }

    pub fn delay_embeddings(&self, d: Duration) {
        self.shared
            .embed_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// A provider entry for the gateway's configuration.
    pub fn provider(&self, name: &str) -> Value {
        json!({"name": name, "type": "openai", "base_url": self.base_url, "api_key": "sk-upstream-key-0001"})
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared
        .requests
        .lock()
        .unwrap()
        .push((path.clone(), v.clone()));
    if path.ends_with("/moderations") {
        if shared.fail_moderation.load(Ordering::SeqCst) {
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error":{"message":"down","type":"server_error"}}),
            );
        }
        let inputs = strings(&v["input"]);
        let results: Vec<Value> = inputs
            .iter()
            .map(|t| json!({"flagged": t.contains("attack"), "categories": {}, "category_scores": {}}))
            .collect();
        return json(
            StatusCode::OK,
            json!({"id":"modr-1","model":v["model"],"results":results}),
        );
    }
    if path.ends_with("/embeddings") {
        let delay = shared.embed_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let data: Vec<Value> = strings(&v["input"])
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object":"embedding","index":i,"embedding":ai_gateway::cache::semantic::bag_of_words(t, DIMS)}))
            .collect();
        return json(
            StatusCode::OK,
            json!({"object":"list","data":data,"model":v["model"],"usage":{"prompt_tokens":1,"total_tokens":1}}),
        );
    }
    let echo = last_user_text(&v);
    if v["stream"] != Value::Bool(true) {
        return json(
            StatusCode::OK,
            json!({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":v["model"],
            "choices":[{"index":0,"message":{"role":"assistant","content":echo},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}),
        );
    }
    // Three characters a piece: every placeholder is split across chunks.
    let piece = 3;
    let mut frames = Vec::new();
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":v["model"],
            "choices":[{"index":0,"delta":delta,"finish_reason":finish}]});
        Ok::<_, std::io::Error>(Bytes::from(format!("data: {c}\n\n")))
    };
    frames.push(chunk(json!({"role":"assistant","content":""}), Value::Null));
    let chars: Vec<char> = echo.chars().collect();
    for p in chars.chunks(piece) {
        frames.push(chunk(
            json!({"content": p.iter().collect::<String>()}),
            Value::Null,
        ));
    }
    frames.push(chunk(json!({}), json!("stop")));
    frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    // Each frame its own write.
    let s = futures_util::stream::iter(frames).then(|f| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        f
    });
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    r
}

use futures_util::StreamExt as _;

fn json(status: StatusCode, v: Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of the last user message (a string, or its text parts joined).
pub fn last_user_text(v: &Value) -> String {
    let Some(m) = v["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
