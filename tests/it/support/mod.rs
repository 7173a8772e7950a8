//! The integration harness: a fake upstream, the real gateway binary, configuration builders and
//! assertion helpers.

pub mod ai;
pub mod cluster;
pub mod gateway;
pub mod native;
pub mod nats;
pub mod operator;
pub mod receiver;
pub mod redis;
pub mod upstream;

use std::time::Duration;

use serde_json::{Value, json};

pub use gateway::Gateway;
pub use nats::NatsServer;
pub use receiver::WebhookReceiver;
pub use upstream::{FakeUpstream, Fault, Kind};

/// The caller's gateway key allowed every model.
pub const GW_KEY: &str = "sk-gw-caller-all-0001";
/// A gateway key allowed only `gpt-*`.
pub const GPT_KEY: &str = "sk-gw-caller-gpt-0002";
/// The provider's own key (what the upstream must receive).
pub const PROVIDER_KEY: &str = "sk-prov-upstream-secret-0003";
/// The admin master key.
pub const MASTER_KEY: &str = "master-admin-secret-0004";

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An external tool a test needs (`promtool`, `amtool`, `prometheus`), on `PATH` or in
/// `/usr/bin`, `/usr/sbin`. When it is missing, under `CI=true` (scripts/test.sh sets it) the
/// test fails; elsewhere the check that needs it is skipped, said on stderr.
pub fn tool(bin: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/bin", "/usr/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| p.is_file());
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "{bin} is not installed and CI=true: a check cannot be skipped in CI (scripts/test.sh installs it)"
        );
        eprintln!("SKIP (not CI): {bin} is not installed; scripts/test.sh installs it");
    }
    found
}

/// A reqwest client builder with no proxy (and the crypto provider reqwest's features need).
pub fn client_builder() -> reqwest::ClientBuilder {
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().no_proxy()
}

/// A reqwest client with no proxy and a bounded overall timeout.
pub fn client() -> reqwest::Client {
    client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- configuration builders

pub fn mock_provider(name: &str) -> Value {
    json!({"name": name, "type": "mock"})
}

pub fn openai_provider(name: &str, up: &FakeUpstream) -> Value {
    json!({"name": name, "type": "openai", "base_url": up.base_url(), "api_key": PROVIDER_KEY})
}

pub fn azure_provider(name: &str, up: &FakeUpstream) -> Value {
    json!({"name": name, "type": "azure", "base_url": up.base_url(), "api_key": PROVIDER_KEY,
           "api_version": "2024-10-21"})
}

pub fn anthropic_provider(name: &str, up: &FakeUpstream) -> Value {
    json!({"name": name, "type": "anthropic", "base_url": up.base_url(), "api_key": PROVIDER_KEY})
}

pub fn model(name: &str, provider: &str, upstream_model: &str) -> Value {
    json!({"name": name, "deployments": [{"provider": provider, "model": upstream_model}]})
}

/// The standard key table: `GW_KEY` for everything, `GPT_KEY` for `gpt-*`.
pub fn keys() -> Value {
    json!({"keys": [
        {"name": "all", "key": GW_KEY, "models": ["*"]},
        {"name": "gpt-only", "key": GPT_KEY, "models": ["gpt-*"]},
    ]})
}

/// A configuration with these providers and models, the standard keys and quick backoff. The
/// response cache is off and the circuit breaker out of reach, so every request reaches the
/// upstream and failures stay independent (the tests here are about the request path itself).
pub fn config(providers: Vec<Value>, models: Vec<Value>) -> Value {
    json!({
        "providers": providers,
        "models": models,
        "auth": keys(),
        "resilience": {"retries": 2, "backoff_initial": "10ms", "backoff_max": "50ms",
                       "circuit_breaker": {"failure_threshold": 1000, "open_for": "1s"}},
        "cache": {"enabled": false},
    })
}

/// The configuration most tests use: model `mock` (mock provider) and, when `up` is given, model
/// `gpt-test` served by it as upstream model `upstream-model`.
pub fn basic_config(up: Option<&FakeUpstream>) -> Value {
    let mut providers = vec![mock_provider("local")];
    let mut models = vec![model("mock", "local", "mock")];
    if let Some(up) = up {
        let p = match up.kind {
            Kind::OpenAi => openai_provider("fake", up),
            Kind::Azure => azure_provider("fake", up),
            Kind::Anthropic => anthropic_provider("fake", up),
        };
        providers.push(p);
        models.push(model("gpt-test", "fake", "upstream-model"));
    }
    config(providers, models)
}

pub fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn messages_body(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]})
}

// ---------------------------------------------------------------- admin API

/// `method` `/admin/keys{suffix}` with the master key and an optional JSON body.
pub async fn admin_keys(
    gw: &Gateway,
    method: reqwest::Method,
    suffix: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut rb = gw
        .client()
        .request(method, gw.url(&format!("/admin/keys{suffix}")))
        .bearer_auth(MASTER_KEY);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    rb.send().await.expect("admin request")
}

/// Create a key through the admin API (expects 201): its id and plaintext key.
pub async fn create_key(gw: &Gateway, body: Value) -> (String, String) {
    let r = admin_keys(gw, reqwest::Method::POST, "", Some(&body)).await;
    let status = r.status();
    let v = json_of(r).await;
    assert_eq!(status, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

/// Revoke a key through the admin API (expects 200).
pub async fn revoke_key(gw: &Gateway, id: &str) {
    let r = admin_keys(gw, reqwest::Method::DELETE, &format!("/{id}"), None).await;
    assert_eq!(r.status(), 200);
}

// ---------------------------------------------------------------- answers

/// The sum of the `/metrics` samples of `name` whose labels include every one of `labels`
/// (each written `key="value"`).
pub async fn metric_sum(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    let text = gw.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// [`metric_sum`] once it reaches `want` (or after 5 s): a streamed request is counted when the
/// server lets its body go, which can come just after the client has read the last byte.
pub async fn metric_sum_reaching(gw: &Gateway, name: &str, labels: &[&str], want: f64) -> f64 {
    for _ in 0..250 {
        let got = metric_sum(gw, name, labels).await;
        if got >= want {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    metric_sum(gw, name, labels).await
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Read the body as JSON, panicking with the text when it is not.
pub async fn json_of(r: reqwest::Response) -> Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Assert an OpenAI-shaped error with this status, type and code; returns the error object.
pub async fn assert_openai_error(
    r: reqwest::Response,
    status: u16,
    ty: &str,
    code: Option<&str>,
) -> Value {
    let got = r.status().as_u16();
    let v = json_of(r).await;
    assert_eq!(got, status, "status; body {v}");
    let e = &v["error"];
    assert!(e.is_object(), "OpenAI error shape expected: {v}");
    assert_eq!(e["type"], ty, "error type; body {v}");
    if let Some(c) = code {
        assert_eq!(e["code"], c, "error code; body {v}");
    }
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message: {v}"
    );
    assert!(e.get("param").is_some(), "param present (may be null): {v}");
    assert!(e.get("code").is_some(), "code present (may be null): {v}");
    e.clone()
}

/// Assert an Anthropic-shaped error with this status and type; returns the error object.
pub async fn assert_anthropic_error(r: reqwest::Response, status: u16, ty: &str) -> Value {
    let got = r.status().as_u16();
    let v = json_of(r).await;
    assert_eq!(got, status, "status; body {v}");
    assert_eq!(v["type"], "error", "Anthropic error shape expected: {v}");
    assert_eq!(v["error"]["type"], ty, "error type; body {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message: {v}"
    );
    v["error"].clone()
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    sse_events(body).into_iter().map(|(_, d)| d).collect()
}

/// `(event name, data)` of each SSE event.
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for block in body.replace("\r\n", "\n").split("\n\n") {
        let mut event = None;
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if event.is_some() || !data.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
}

/// The joined `delta.content` of OpenAI chunks.
pub fn joined_content(datas: &[String]) -> String {
    datas
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// Read a streamed answer chunk by chunk until `pred` holds on the text so far (bounded).
pub async fn read_until(
    r: &mut reqwest::Response,
    buf: &mut String,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !pred(buf) {
        match tokio::time::timeout_at(deadline, r.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return pred(buf),
        }
    }
    true
}

/// A raw HTTP/1.1 exchange: the request head and body are written by a separate task (write
/// errors ignored: the server may answer early and close) while the answer is read, so an early
/// answer such as a 413 is seen whatever happens to the rest of the upload. Returns (status,
/// headers lowercased, body).
pub async fn raw_request(
    addr: &str,
    head: String,
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for piece in body.chunks(64 * 1024) {
            if wr.write_all(piece).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open until the test is done reading.
        std::future::pending::<()>().await;
    });
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let parsed = loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => 0,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .expect("status line");
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let len: Option<usize> = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok());
            let chunked = headers
                .iter()
                .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
            let rest = &buf[end + 4..];
            if chunked {
                if let Some(body) = dechunk(rest) {
                    break Some((status, headers, body));
                }
            } else if len.is_some_and(|l| rest.len() >= l) {
                break Some((status, headers, rest[..len.unwrap_or(0)].to_vec()));
            }
            if n == 0 {
                break Some((status, headers, rest.to_vec()));
            }
        }
        if n == 0 {
            break None;
        }
    };
    writer.abort();
    parsed.unwrap_or_else(|| {
        panic!(
            "no complete HTTP answer; got {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

/// Decode a complete chunked body; `None` while its last chunk has not arrived.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
