//! The pass-through endpoints (`/v1/completions`, `/v1/images/generations`, `/v1/audio/speech`,
//! `/v1/audio/transcriptions`, `/v1/moderations`, `/v1/rerank`) against an in-process upstream
//! speaking OpenAI's (and Cohere's rerank) wire format: bodies passed with the deployment's
//! model spliced in, answers passed back as they came, routing past providers without the
//! endpoint, retries and fallbacks, keys, limits and accounting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::*;

/// The speech answer: 300 KB that are not UTF-8 text, sent in 30 chunks.
fn audio() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8 ^ 0x80).collect()
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// Answer 500 to this many requests first.
    fail: AtomicUsize,
}

/// One request as the fake upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

type Recorded = Seen;

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

struct PassUpstream {
    base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PassUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PassUpstream {
    async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}"),
            shared,
            task,
        }
    }

    fn requests(&self) -> Vec<Seen> {
        self.shared.requests.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.requests().pop().expect("a request upstream")
    }

    fn fail_next(&self, n: usize) {
        self.shared.fail.store(n, Ordering::SeqCst);
    }
}

fn json_answer(v: &Value) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// The value of a multipart field (the fake's own scan, independent of the gateway's).
fn form_field(body: &[u8], name: &str) -> Option<Vec<u8>> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let at = find(body, format!("name=\"{name}\"").as_bytes())?;
    let start = find(&body[at..], b"\r\n\r\n")? + at + 4;
    let end = find(&body[start..], b"\r\n--")? + start;
    Some(body[start..end].to_vec())
}

fn form_text(body: &[u8], name: &str) -> Option<String> {
    form_field(body, name).map(|v| String::from_utf8_lossy(&v).into_owned())
}

async fn answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().unwrap().as_str().to_owned();
    shared.requests.lock().unwrap().push(Seen {
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if shared
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"error":{"message":"fake upstream failure","type":"server_error","param":null,"code":null}}"#,
            ))
            .unwrap();
    }
    let p = parts.uri.path();
    if p.ends_with("/audio/transcriptions") {
        let model = form_text(&body, "model").unwrap_or_default();
        let file = form_field(&body, "file").unwrap_or_default();
        let text = format!("heard {} bytes with {model}", file.len());
        return if form_text(&body, "response_format").as_deref() == Some("text") {
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from(text))
                .unwrap()
        } else {
            json_answer(&json!({"text": text,
                "usage": {"type": "tokens", "input_tokens": 11, "output_tokens": 5, "total_tokens": 16}}))
        };
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    if p.ends_with("/completions") {
        let prompt = req["prompt"].as_str().unwrap_or_default();
        let text = format!("echo: {prompt}");
        if req["stream"] == true {
            let mut frames: Vec<String> = text
                .split_inclusive(' ')
                .map(|piece| {
                    json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": model,
                        "choices": [{"text": piece, "index": 0, "logprobs": null, "finish_reason": null}]})
                    .to_string()
                })
                .collect();
            frames.push(
                json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": model,
                "choices": [{"text": "", "index": 0, "logprobs": null, "finish_reason": "stop"}]})
                .to_string(),
            );
            if req["stream_options"]["include_usage"] == true {
                frames.push(json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": model,
                    "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}).to_string());
            }
            frames.push("[DONE]".to_owned());
            let sse: String = frames.iter().map(|f| format!("data: {f}\n\n")).collect();
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from(sse))
                .unwrap();
        }
        return json_answer(
            &json!({"id": "cmpl-1", "object": "text_completion", "created": 1,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}),
        );
    }
    if p.ends_with("/images/generations") {
        return json_answer(&json!({"created": 1,
            "data": [{"b64_json": "aGVsbG8=", "revised_prompt": req["prompt"]}],
            "usage": {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30,
                      "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}}));
    }
    if p.ends_with("/audio/speech") && req["stream_format"] == "sse" {
        let sse = concat!(
            "data: {\"type\":\"speech.audio.delta\",\"audio\":\"aGVsbG8=\"}\n\n",
            "data: {\"type\":\"speech.audio.done\",\"usage\":{\"input_tokens\":5,\"output_tokens\":8,\"total_tokens\":13}}\n\n",
        );
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from(sse))
            .unwrap();
    }
    if p.ends_with("/audio/speech") {
        let chunks: Vec<Result<Bytes, std::io::Error>> = audio()
            .chunks(10_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        return Response::builder()
            .header(header::CONTENT_TYPE, "audio/mpeg")
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
    }
    if p.ends_with("/moderations") {
        return json_answer(&json!({"id": "modr-1", "model": model,
            "results": [{"flagged": false, "categories": {"violence": false},
                         "category_scores": {"violence": 0.01}}]}));
    }
    if p.ends_with("/rerank") {
        return json_answer(&json!({"id": "rr-1", "model": model,
            "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}],
            "meta": {"billed_units": {"search_units": 1}}}));
    }
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"error": {"message": format!("no route {p}"), "type": "invalid_request_error",
                              "param": null, "code": null}})
            .to_string(),
        ))
        .unwrap()
}

fn provider(name: &str, kind: &str, base_url: &str) -> Value {
    json!({"name": name, "type": kind, "base_url": base_url, "api_key": PROVIDER_KEY})
}

/// Models: `gpt-pass` (openai-type, priced), `gpt-az` (Azure), `claude-only` (Anthropic:
/// serves none of the endpoints), `gpt-mixed` (Anthropic first, then openai-type),
/// `gpt-fallback` (a failing openai-type upstream, falling back to `gpt-pass`), `rerank-cohere`
/// (Cohere preset), `mock` (the built-in mock).
fn setup(up: &PassUpstream, down: &PassUpstream) -> Value {
    let mut cfg = config(
        vec![
            mock_provider("local"),
            provider("oai", "openai", &format!("{}/v1", up.base)),
            provider("down", "openai", &format!("{}/v1", down.base)),
            json!({"name": "az", "type": "azure", "base_url": up.base, "api_key": PROVIDER_KEY,
                   "api_version": "2024-10-21"}),
            provider("claude", "anthropic", &up.base),
            provider("co", "cohere", &format!("{}/compatibility/v1", up.base)),
        ],
        vec![
            model("mock", "local", "mock"),
            json!({"name": "gpt-pass", "deployments": [{"provider": "oai", "model": "up-model",
                "input_cost_per_mtok": 1000.0, "output_cost_per_mtok": 2000.0}]}),
            model("gpt-az", "az", "az-deploy"),
            model("claude-only", "claude", "claude-x"),
            json!({"name": "gpt-mixed", "routing": "priority", "deployments": [
                {"provider": "claude", "model": "claude-x", "priority": 0},
                {"provider": "oai", "model": "mixed-up", "priority": 1}]}),
            json!({"name": "gpt-fallback", "retries": 0, "fallbacks": ["gpt-pass"],
                   "deployments": [{"provider": "down", "model": "down-model"}]}),
            model("rerank-cohere", "co", "rerank-v3.5"),
        ],
    );
    cfg["resilience"]["retries"] = json!(1);
    cfg
}

/// POST `body` to `path` with the gateway's key; the answer, once it is a 200.
async fn post_ok(gw: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    let r = gw.post(path, Some(GW_KEY), body).await;
    assert_eq!(r.status(), 200, "{path}");
    r
}

async fn start() -> (PassUpstream, PassUpstream, Gateway) {
    let up = PassUpstream::start().await;
    let down = PassUpstream::start().await;
    let gw = Gateway::start(setup(&up, &down)).await;
    (up, down, gw)
}

/// A multipart body with these text fields and a file.
fn form(boundary: &str, fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, value) in fields {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
            .as_bytes(),
    );
    b.extend_from_slice(file);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

async fn post_form(gw: &Gateway, key: &str, boundary: &str, body: Vec<u8>) -> reqwest::Response {
    gw.client()
        .post(gw.url("/v1/audio/transcriptions"))
        .bearer_auth(key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_pass_through_with_spend() {
    let (up, _down, gw) = start().await;
    let raw = r#"{"prompt": "say this", "model" : "gpt-pass", "max_tokens": 20, "suffix": null}"#;
    let r = gw
        .client()
        .post(gw.url("/v1/completions"))
        .bearer_auth(GW_KEY)
        .header("content-type", "application/json")
        .header("x-request-id", "req-pass-1")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), Some("req-pass-1"));
    assert_eq!(header(&r, "x-gateway-provider"), Some("oai"));
    assert_eq!(header(&r, "x-gateway-deployment-model"), Some("up-model"));
    // 7 input and 9 output tokens at 1000 and 2000 USD per million.
    let cost: f64 = header(&r, "x-gateway-cost-usd").unwrap().parse().unwrap();
    assert!((cost - 0.025).abs() < 1e-9, "cost {cost}");
    let v = json_of(r).await;
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "echo: say this");
    let got = up.last();
    assert_eq!(got.path, "/v1/completions");
    assert_eq!(
        got.headers.get("authorization").unwrap(),
        &format!("Bearer {PROVIDER_KEY}")
    );
    assert_eq!(got.headers.get("x-request-id").unwrap(), "req-pass-1");
    // Only `model` changed, byte for byte.
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        raw.replacen("\"gpt-pass\"", "\"up-model\"", 1)
    );
    let model = "model=\"gpt-pass\"";
    let tokens = metric_sum_reaching(&gw, "ai_gateway_tokens_total", &[model], 16.0).await;
    assert_eq!(
        tokens, 16.0,
        "input and output tokens from the answer's usage"
    );
    let requests = metric_sum(
        &gw,
        "ai_gateway_requests_total",
        &["endpoint=\"/v1/completions\"", model],
    )
    .await;
    assert_eq!(requests, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_stream_usage_asked_and_hidden() {
    let (up, _down, gw) = start().await;
    // The client did not ask for usage: the upstream is asked, the client does not see it.
    let r = post_ok(
        &gw,
        "/v1/completions",
        &json!({"model": "gpt-pass", "prompt": "one two three", "stream": true}),
    )
    .await;
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let datas = sse_data(&text);
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    assert!(!text.contains("\"usage\""), "{text}");
    let joined: String = datas
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(joined, "echo: one two three");
    assert_eq!(up.last().json()["stream_options"]["include_usage"], true);

    // Asked for: passed on.
    let r = gw
        .post(
            "/v1/completions",
            Some(GW_KEY),
            &json!({"model": "gpt-pass", "prompt": "x", "stream": true,
                    "stream_options": {"include_usage": true}}),
        )
        .await;
    let text = r.text().await.unwrap();
    assert!(text.contains("\"completion_tokens\":9"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_speech_moderations_rerank_pass_through() {
    let (up, _down, gw) = start().await;
    let r = post_ok(
        &gw,
        "/v1/images/generations",
        &json!({"model": "gpt-pass", "prompt": "a cat", "size": "1024x1024"}),
    )
    .await;
    assert!(header(&r, "x-gateway-cost-usd").is_some());
    let v = json_of(r).await;
    assert_eq!(v["data"][0]["b64_json"], "aGVsbG8=");
    let got = up.last();
    assert_eq!(got.path, "/v1/images/generations");
    assert_eq!(got.json()["model"], "up-model");
    assert_eq!(got.json()["size"], "1024x1024");

    let r = post_ok(
        &gw,
        "/v1/audio/speech",
        &json!({"model": "gpt-pass", "input": "hello", "voice": "alloy", "response_format": "wav"}),
    )
    .await;
    assert_eq!(header(&r, "content-type"), Some("audio/wav"));
    assert_eq!(header(&r, "x-gateway-provider"), Some("oai"));
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len(), audio().len());
    assert!(
        bytes.as_ref() == audio().as_slice(),
        "audio bytes unchanged"
    );
    assert_eq!(up.last().path, "/v1/audio/speech");
    // `stream_format: "sse"`: the events are relayed as an event stream.
    let r = post_ok(
        &gw,
        "/v1/audio/speech",
        &json!({"model": "gpt-pass", "input": "hello", "voice": "alloy", "stream_format": "sse"}),
    )
    .await;
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("speech.audio.delta") && text.contains("speech.audio.done"),
        "{text}"
    );

    let r = post_ok(
        &gw,
        "/v1/moderations",
        &json!({"model": "gpt-pass", "input": "hello"}),
    )
    .await;
    assert_eq!(json_of(r).await["results"][0]["flagged"], false);
    assert_eq!(up.last().path, "/v1/moderations");

    let rerank = json!({"model": "gpt-pass", "query": "q", "documents": ["a", "b"], "top_n": 2});
    let r = post_ok(&gw, "/v1/rerank", &rerank).await;
    assert_eq!(json_of(r).await["results"][0]["index"], 1);
    assert_eq!(up.last().path, "/v1/rerank");
    // Cohere's rerank is its v2 API beside the compatibility API of the preset.
    let mut rerank = rerank;
    rerank["model"] = json!("rerank-cohere");
    let _r = post_ok(&gw, "/v1/rerank", &rerank).await;
    let got = up.last();
    assert_eq!(got.path, "/v2/rerank");
    assert_eq!(got.json()["model"], "rerank-v3.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcriptions_multipart_model_rewritten() {
    let (up, _down, gw) = start().await;
    let file: Vec<u8> = (0..50_000u32).map(|i| (i % 200) as u8 + 40).collect();
    let body = form(
        "----pyboundary42",
        &[("model", "gpt-pass"), ("language", "en")],
        &file,
    );
    let r = post_form(&gw, GW_KEY, "----pyboundary42", body.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let v = json_of(r).await;
    assert_eq!(
        v["text"],
        format!("heard {} bytes with up-model", file.len())
    );
    let got = up.last();
    assert_eq!(got.path, "/v1/audio/transcriptions");
    assert_eq!(
        got.headers.get("content-type").unwrap(),
        "multipart/form-data; boundary=----pyboundary42"
    );
    // Only the model field changed.
    let want = String::from_utf8_lossy(&body).replacen(
        "name=\"model\"\r\n\r\ngpt-pass\r\n",
        "name=\"model\"\r\n\r\nup-model\r\n",
        1,
    );
    assert_eq!(String::from_utf8_lossy(&got.body), want);

    // A text answer comes back as text.
    let body = form(
        "b1",
        &[("model", "gpt-pass"), ("response_format", "text")],
        b"RIFF",
    );
    let r = post_form(&gw, GW_KEY, "b1", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(r.text().await.unwrap(), "heard 4 bytes with up-model");

    // Azure's URL scheme.
    let body = form("b2", &[("model", "gpt-az")], b"RIFF");
    let r = post_form(&gw, GW_KEY, "b2", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.last().path,
        "/openai/deployments/az-deploy/audio/transcriptions?api-version=2024-10-21"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcriptions_bad_input() {
    let (up, _down, gw) = start().await;
    // No model field.
    let r = post_form(&gw, GW_KEY, "b", form("b", &[("language", "en")], b"x")).await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(e["message"].as_str().unwrap().contains("model"), "{e}");
    // Not multipart.
    let r = gw
        .post_raw(
            "/v1/audio/transcriptions",
            Some(GW_KEY),
            r#"{"model":"gpt-pass"}"#,
        )
        .await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data"),
        "{e}"
    );
    // Over `server.max_body_size` (1 MiB here): 413 from the declared length.
    let mut cfg = setup(&up, &up);
    cfg["server"] = json!({"max_body_size": "1MiB"});
    let small = Gateway::start(cfg).await;
    let big = form("b", &[("model", "gpt-pass")], &vec![b'a'; 2 * 1024 * 1024]);
    let r = post_form(&small, GW_KEY, "b", big).await;
    assert_openai_error(r, 413, "invalid_request_error", None).await;
    assert_eq!(up.requests().len(), 0, "nothing reached the upstream");
}

/// An upload over `server.max_body_size` is refused before it is all sent: from its declared
/// length, and chunked (no length) once the bytes counted pass the limit, while the client has
/// not finished the body (the gateway reads on and drops what comes for at most 5 s or 64 MiB,
/// so that a client writing its upload still sees the 413; nothing is kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_upload_is_413_before_it_is_all_sent() {
    let up = PassUpstream::start().await;
    let mut cfg = setup(&up, &up);
    cfg["server"] = json!({"max_body_size": "1MiB"});
    let gw = Gateway::start(cfg).await;
    let addr = gw.url("").trim_start_matches("http://").to_owned();
    let head = |framing: &str| {
        format!(
            "POST /v1/audio/transcriptions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {GW_KEY}\r\n\
             content-type: multipart/form-data; boundary=b\r\n{framing}\r\n\r\n"
        )
    };
    let start = form("b", &[("model", "gpt-pass")], &[]);
    // 100 MiB declared, 64 KiB sent.
    let mut sent = start.clone();
    sent.resize(64 * 1024, b'a');
    let (status, _, body) =
        raw_request(&addr, head(&format!("content-length: {}", 100 << 20)), sent).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    // Chunked: 2 MiB sent of a body that never ends.
    let mut chunked = Vec::new();
    for piece in start
        .chunks(4096)
        .chain(std::iter::repeat_n(&[b'a'; 64 * 1024][..], 32))
    {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    let (status, _, body) = raw_request(&addr, head("transfer-encoding: chunked"), chunked).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "request_too_large", "{v}");
    assert_eq!(up.requests().len(), 0, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_skips_providers_without_the_endpoint() {
    let (up, down, gw) = start().await;
    // The Anthropic deployment comes first by priority; it is skipped, not failed.
    let r = post_ok(
        &gw,
        "/v1/completions",
        &json!({"model": "gpt-mixed", "prompt": "p"}),
    )
    .await;
    assert_eq!(header(&r, "x-gateway-attempts"), Some("1"));
    assert_eq!(up.last().json()["model"], "mixed-up");

    // Nothing serves it: 400 naming the endpoint and the model, and nothing is sent.
    let before = up.requests().len();
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": "claude-only", "prompt": "p"}),
        ),
        ("/v1/moderations", json!({"model": "mock", "input": "p"})),
        (
            "/v1/rerank",
            json!({"model": "gpt-az", "query": "q", "documents": ["a"]}),
        ),
    ] {
        let r = gw.post(path, Some(GW_KEY), &body).await;
        if path == "/v1/moderations" {
            // The mock answers moderations (the guardrails' demo).
            assert_eq!(r.status(), 200, "{path}");
            continue;
        }
        let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(path), "{msg}");
        assert!(msg.contains(body["model"].as_str().unwrap()), "{msg}");
    }
    assert_eq!(up.requests().len(), before);

    // A retry after an upstream 500.
    up.fail_next(1);
    let r = post_ok(
        &gw,
        "/v1/images/generations",
        &json!({"model": "gpt-pass", "prompt": "p"}),
    )
    .await;
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));

    // A fallback when the model's own deployment fails.
    down.fail_next(5);
    let r = post_ok(
        &gw,
        "/v1/audio/speech",
        &json!({"model": "gpt-fallback", "input": "hi", "voice": "alloy"}),
    )
    .await;
    assert_eq!(header(&r, "content-type"), Some("audio/mpeg"));
    assert_eq!(header(&r, "x-gateway-deployment-model"), Some("up-model"));
    assert_eq!(down.requests().len(), 1);
    assert_eq!(r.bytes().await.unwrap().len(), audio().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_permissions_and_errors() {
    let (up, _down, gw) = start().await;
    let body = json!({"model": "gpt-pass", "prompt": "p"});
    let r = gw.post("/v1/completions", None, &body).await;
    assert_openai_error(r, 401, "authentication_error", None).await;
    let r = gw
        .post(
            "/v1/rerank",
            Some(GPT_KEY),
            &json!({"model": "rerank-cohere", "query": "q", "documents": ["a"]}),
        )
        .await;
    assert_openai_error(r, 403, "permission_error", None).await;
    let r = gw
        .post(
            "/v1/images/generations",
            Some(GW_KEY),
            &json!({"model": "nope", "prompt": "p"}),
        )
        .await;
    assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    let r = gw
        .post(
            "/v1/audio/speech",
            Some(GW_KEY),
            &json!({"model": "gpt-pass", "input": "x"}),
        )
        .await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(e["message"].as_str().unwrap().contains("voice"), "{e}");
    assert_eq!(up.requests().len(), 0);
    let _r = post_ok(
        &gw,
        "/v1/completions",
        &json!({"model": "gpt-pass", "prompt": "p"}),
    )
    .await;
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rate_limit_applies() {
    let up = PassUpstream::start().await;
    let mut cfg = setup(&up, &up);
    cfg["auth"]["keys"][0]["rpm"] = json!(2);
    let gw = Gateway::start(cfg).await;
    let body = json!({"model": "gpt-pass", "input": "x"});
    for _ in 0..2 {
        let r = post_ok(&gw, "/v1/moderations", &body).await;
        assert!(header(&r, "x-ratelimit-remaining-requests").is_some());
    }
    let r = gw.post("/v1/moderations", Some(GW_KEY), &body).await;
    assert_openai_error(r, 429, "rate_limit_error", None).await;
    assert_eq!(up.requests().len(), 2);
}

/// The `mock` provider answers every pass-through endpoint itself, through the same path as an
/// OpenAI-type deployment: keys and model permissions, limits, spend from the answer's usage,
/// metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_answers_every_endpoint_like_a_deployment() {
    let mut cfg = basic_config(None);
    let d = &mut cfg["models"][0]["deployments"][0];
    d["input_cost_per_mtok"] = json!(1000.0);
    d["output_cost_per_mtok"] = json!(2000.0);
    const SLOW_KEY: &str = "sk-gw-caller-slow-0009";
    cfg["auth"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "slow", "key": SLOW_KEY, "models": ["*"], "rpm": 1}));
    let gw = Gateway::start(cfg).await;

    let r = post_ok(
        &gw,
        "/v1/completions",
        &json!({"model": "mock", "prompt": "say this"}),
    )
    .await;
    assert_eq!(header(&r, "x-gateway-provider"), Some("local"));
    // 2 input and 2 output tokens at 1000 and 2000 USD per million.
    let cost: f64 = header(&r, "x-gateway-cost-usd").unwrap().parse().unwrap();
    assert!((cost - 0.006).abs() < 1e-9, "cost {cost}");
    assert_eq!(json_of(r).await["choices"][0]["text"], "say this");
    let v = json_of(
        post_ok(
            &gw,
            "/v1/images/generations",
            &json!({"model": "mock", "prompt": "p"}),
        )
        .await,
    )
    .await;
    assert!(
        v["data"][0]["b64_json"]
            .as_str()
            .unwrap()
            .starts_with("iVBOR")
    );
    let r = post_ok(
        &gw,
        "/v1/audio/speech",
        &json!({"model": "mock", "input": "hi", "voice": "alloy", "response_format": "wav"}),
    )
    .await;
    assert_eq!(header(&r, "content-type"), Some("audio/wav"));
    assert!(r.bytes().await.unwrap().starts_with(b"RIFF"));
    let r = post_form(
        &gw,
        GW_KEY,
        "b",
        form(
            "b",
            &[("model", "mock"), ("response_format", "text")],
            b"12345",
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(r.text().await.unwrap(), "mock transcript of 5 bytes\n");
    let v = json_of(
        post_ok(
            &gw,
            "/v1/moderations",
            &json!({"model": "mock", "input": ["a", "b"]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    let v = json_of(
        post_ok(
            &gw,
            "/v1/rerank",
            &json!({"model": "mock", "query": "b", "documents": ["a", "b"]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["results"][0]["index"], 1);
    let requests = metric_sum(
        &gw,
        "ai_gateway_requests_total",
        &["endpoint=\"/v1/images/generations\"", "model=\"mock\""],
    )
    .await;
    assert_eq!(requests, 1.0);

    // Another key's model permissions and limits.
    let r = gw
        .post(
            "/v1/images/generations",
            Some(GPT_KEY),
            &json!({"model": "mock", "prompt": "p"}),
        )
        .await;
    assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
    let body = json!({"model": "mock", "input": "x"});
    assert_eq!(
        gw.post("/v1/moderations", Some(SLOW_KEY), &body)
            .await
            .status(),
        200
    );
    let r = gw.post("/v1/moderations", Some(SLOW_KEY), &body).await;
    assert_openai_error(r, 429, "rate_limit_error", None).await;
}
