//! Observability: `/metrics` parsed by a Prometheus text parser after real traffic and scraped by
//! a real Prometheus; the deploy files checked by `promtool` / `amtool`, and every metric they use
//! present; traces received by an OTLP receiver (http/protobuf and gRPC) with the GenAI attributes
//! and the caller's trace id, and the same trace id seen upstream; no key in the logs. This file:
//! the helpers the areas share (metrics parsing and traffic, the OTLP receiver).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prometheus_parse::{Sample, Scrape, Value as PValue};
use prost::Message as _;
use serde_json::{Value, json};

use crate::support::*;

mod deploy;
mod logs;
mod metrics;
mod traces;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn metrics_text(gw: &Gateway) -> String {
    let r = gw.get("/metrics", None).await;
    assert_eq!(r.status(), 200);
    let ct = header(&r, "content-type").unwrap_or("").to_owned();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    r.text().await.unwrap()
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

fn labels_of(s: &Sample) -> BTreeSet<String> {
    s.labels.keys().cloned().collect()
}

fn matches(s: &Sample, name: &str, want: &[(&str, &str)]) -> bool {
    s.metric == name && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

fn find<'a>(scrape: &'a Scrape, name: &str, want: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape.samples.iter().find(|s| matches(s, name, want))
}

/// A counter's or gauge's value.
fn scalar(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    find(scrape, name, want).map(|s| match &s.value {
        PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => *v,
        other => panic!("{name} is not a scalar: {other:?}"),
    })
}

/// A histogram's observation count (its `+Inf` bucket).
fn hist_count(scrape: &Scrape, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    find(scrape, name, want).map(|s| match &s.value {
        PValue::Histogram(b) => b
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count)
            .expect("+Inf bucket"),
        other => panic!("{name} is not a histogram: {other:?}"),
    })
}

/// Every metric family name in an exposition (from its `# TYPE` lines).
fn families(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// The contract's table (config.md): name, type, labels.
const TABLE: &[(&str, &str, &[&str])] = &[
    (
        "ai_gateway_requests_total",
        "counter",
        &["endpoint", "model", "provider", "status"],
    ),
    (
        "ai_gateway_request_duration_seconds",
        "histogram",
        &["endpoint", "model"],
    ),
    (
        "ai_gateway_upstream_duration_seconds",
        "histogram",
        &["provider", "deployment_model", "outcome"],
    ),
    (
        "ai_gateway_time_to_first_token_seconds",
        "histogram",
        &["model", "provider"],
    ),
    (
        "ai_gateway_tokens_total",
        "counter",
        &["model", "provider", "type"],
    ),
    (
        "ai_gateway_cost_usd_total",
        "counter",
        &["model", "provider", "key"],
    ),
    (
        "ai_gateway_cache_requests_total",
        "counter",
        &["layer", "result"],
    ),
    ("ai_gateway_rate_limited_total", "counter", &["reason"]),
    (
        "ai_gateway_upstream_attempts_total",
        "counter",
        &["provider", "deployment_model", "outcome"],
    ),
    (
        "ai_gateway_circuit_state",
        "gauge",
        &["provider", "deployment_model"],
    ),
    ("ai_gateway_in_flight_requests", "gauge", &[]),
    ("ai_gateway_jobs_total", "counter", &["status"]),
    ("ai_gateway_jobs_queued", "gauge", &[]),
    (
        "ai_gateway_webhook_deliveries_total",
        "counter",
        &["outcome"],
    ),
    ("ai_gateway_dependency_up", "gauge", &["dependency"]),
];

/// Recorded by work not on this branch yet (usage and cost accounting); they must still be
/// declared in `src/metrics.rs`. Remove a name once something records it.
const NOT_RECORDED_YET: &[&str] = &["ai_gateway_cost_usd_total"];

/// A configuration with the fake upstream as model `gpt-test`, the mock as `mock`, and the cache on.
fn traffic_config(up: &FakeUpstream) -> Value {
    let mut c = basic_config(Some(up));
    c["cache"] = json!({"enabled": true, "ttl": "10m"});
    c
}

/// A fixed mix of traffic; returns how many chat requests for `gpt-test` answered 200.
async fn send_traffic(gw: &Gateway, up: &FakeUpstream) -> usize {
    for i in 0..3 {
        let r = gw.chat("gpt-test", &format!("hello {i}")).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    // The same again: an L1 hit.
    let r = gw.chat("gpt-test", "hello 0").await;
    assert_eq!(header(&r, "x-cache"), Some("HIT"));
    r.bytes().await.unwrap();
    // A stream (time to first token).
    let mut body = chat_body("gpt-test", "stream me please");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    // A failed attempt, then a good one.
    up.push([Fault::Status(500, r#"{"error":{"message":"boom"}}"#.into())]);
    let r = gw.chat("gpt-test", "retry me").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    r.bytes().await.unwrap();
    // Embeddings, the mock, an unknown model, a bad key, an unknown path.
    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "gpt-test", "input": "x"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = gw.chat("mock", "hi").await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = gw.chat("no-such-model-xyz", "hi").await;
    assert_eq!(r.status(), 404);
    r.bytes().await.unwrap();
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-wrong-key-0000"),
            &chat_body("gpt-test", "hi"),
        )
        .await;
    assert_eq!(r.status(), 401);
    r.bytes().await.unwrap();
    let r = gw
        .post("/v1/random-path-123", Some(GW_KEY), &json!({}))
        .await;
    assert_eq!(r.status(), 404);
    r.bytes().await.unwrap();
    6
}

/// Scrape until the request counter reached `n` for the 200s of `gpt-test` (the counters are
/// written when each body ended, a moment after the client read it).
async fn scrape_after(gw: &Gateway, n: usize) -> (String, Scrape) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics_text(gw).await;
        let scrape = parse(&text);
        let got = scalar(
            &scrape,
            "ai_gateway_requests_total",
            &[
                ("endpoint", "/v1/chat/completions"),
                ("model", "gpt-test"),
                ("status", "200"),
            ],
        )
        .unwrap_or(0.0);
        if got >= n as f64 || tokio::time::Instant::now() > deadline {
            return (text, scrape);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A child process killed (by pid) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    services: Vec<String>,
    content_types: Vec<String>,
}

type Store = Arc<Mutex<Received>>;

fn store(s: &Store, headers: &HeaderMap, body: &[u8]) -> bool {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return false;
    };
    let mut r = s.lock().unwrap();
    r.content_types.push(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
    );
    for rs in req.resource_spans {
        if let Some(res) = &rs.resource {
            for kv in &res.attributes {
                if kv.key == "service.name" {
                    r.services.push(any_to_string(kv.value.as_ref()));
                }
            }
        }
        for ss in rs.scope_spans {
            r.spans.extend(ss.spans);
        }
    }
    true
}

async fn http_export(State(s): State<Store>, headers: HeaderMap, body: Bytes) -> Response {
    if store(&s, &headers, &body) {
        ([("content-type", "application/x-protobuf")], Bytes::new()).into_response()
    } else {
        StatusCode::BAD_REQUEST.into_response()
    }
}

async fn grpc_export(State(s): State<Store>, headers: HeaderMap, body: Bytes) -> Response {
    // gRPC framing: 1 byte compressed flag, 4 bytes length, the message.
    let ok = body.len() >= 5 && body[0] == 0 && store(&s, &headers, &body[5..]);
    let status = if ok { "0" } else { "3" };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", status.parse().unwrap());
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ]))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ]);
    let mut r = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    r.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    r
}

/// An OTLP trace receiver on a free loopback port (http/protobuf and gRPC on the same port).
async fn otlp_receiver() -> (String, Store) {
    let s: Store = Arc::default();
    let app = Router::new()
        .route("/v1/traces", axum::routing::post(http_export))
        .route(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            axum::routing::post(grpc_export),
        )
        .with_state(s.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), s)
}

fn any_to_string(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| any_to_string(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| any_to_string(kv.value.as_ref()))
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const SERVER: i32 = 2;

const CLIENT: i32 = 3;

const CONSUMER: i32 = 5;

const INTERNAL: i32 = 1;

/// Wait until the receiver holds spans satisfying `done`.
async fn spans_until(s: &Store, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = s.lock().unwrap().spans.clone();
        if done(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans so far: {:#?}",
            spans
                .iter()
                .map(|s| (&s.name, s.kind, hexs(&s.trace_id)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traced_config(up: &FakeUpstream, endpoint: &str) -> Value {
    let mut c = traffic_config(up);
    c["telemetry"] = json!({"otlp_endpoint": endpoint, "service_name": "ai-gateway-test"});
    c
}

const FAST_EXPORT: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "50")];

fn deploy(p: &str) -> PathBuf {
    repo().join("deploy").join(p)
}

/// PromQL expressions of the alert rules and the dashboard.
fn deploy_exprs() -> Vec<String> {
    let mut out = Vec::new();
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    // `expr: one line` or `expr: |` followed by an indented block.
    let lines: Vec<&str> = rules.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if let Some(rest) = lines[i].trim_start().strip_prefix("expr:") {
            let rest = rest.trim();
            if rest == "|" {
                let indent = lines[i].len() - lines[i].trim_start().len();
                let mut block = String::new();
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty()
                        || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    block.push_str(lines[i].trim());
                    block.push(' ');
                    i += 1;
                }
                out.push(block);
                continue;
            }
            out.push(rest.to_owned());
        }
        i += 1;
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/ai-gateway.json")).unwrap(),
    )
    .unwrap();
    for p in dash["panels"].as_array().unwrap() {
        if p["datasource"]["type"] != "prometheus" {
            continue;
        }
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(out.len() > 20, "found only {} expressions", out.len());
    out
}
