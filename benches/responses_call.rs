//! A whole `POST /v1/responses` call against a whole `POST /v1/chat/completions` call, in
//! process through `app::HttpService` (request context, the pipeline, the router) to the built-in
//! mock provider (zero latency, OpenAI format: the chat call is a pass-through, the Responses
//! call is translated to chat and its answer back). Plain and streamed; the Responses call
//! without `store` (translation only) and with it (the record built and handed to the store).
//! Run: `cargo bench --bench responses_call`.

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;

use ai_gateway::api::context::AppState;
use ai_gateway::app::HttpService;
use axum::body::Body;
use axum::extract::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::Service;

const CHAT: &str = r#"{"model":"mock","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence, and then explain in two more sentences why greetings matter in human cultures."}],"max_tokens":64,"temperature":0.7STREAM}"#;
const RESPONSES: &str = r#"{"model":"mock","instructions":"You are a helpful assistant.","input":"Say hello in one short sentence, and then explain in two more sentences why greetings matter in human cultures.","max_output_tokens":64,"temperature":0.7STOREFLAG STREAM}"#;

fn body(template: &str, stream: bool, store: bool) -> String {
    template
        .replace(" STREAM", if stream { ",\"stream\":true" } else { "" })
        .replace("STREAM", if stream { ",\"stream\":true" } else { "" })
        .replace("STOREFLAG", if store { "" } else { ",\"store\":false" })
}

fn call(
    svc: &mut HttpService,
    rt: &tokio::runtime::Runtime,
    path: &'static str,
    body: &str,
) -> usize {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    rt.block_on(async {
        let resp = svc.call(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .len()
    })
}

fn calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server:\n  listen: \"127.0.0.1:0\"\nstate:\n  data_dir: \"{}\"\ntelemetry:\n  log_level: error\nproviders:\n  - name: local\n    type: mock\nmodels:\n  - name: mock\n    deployments:\n      - provider: local\n        model: mock\n",
        dir.path().display()
    );
    let cfg = ai_gateway::config::load_str(&yaml, &|_| None).unwrap();
    let state = rt.block_on(async { AppState::new(cfg, None).unwrap() });
    let mut svc = HttpService::new(state);
    for stream in [false, true] {
        let kind = if stream { "stream" } else { "plain" };
        let chat = body(CHAT, stream, false);
        c.bench_function(&format!("chat_passthrough_{kind}"), |b| {
            b.iter(|| call(&mut svc, &rt, "/v1/chat/completions", black_box(&chat)))
        });
        let resp = body(RESPONSES, stream, false);
        c.bench_function(&format!("responses_translated_{kind}"), |b| {
            b.iter(|| call(&mut svc, &rt, "/v1/responses", black_box(&resp)))
        });
        let stored = body(RESPONSES, stream, true);
        c.bench_function(&format!("responses_translated_stored_{kind}"), |b| {
            b.iter(|| call(&mut svc, &rt, "/v1/responses", black_box(&stored)))
        });
    }
}

criterion_group!(benches, calls);
criterion_main!(benches);
