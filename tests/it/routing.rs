//! Routing and resilience across several deployments: retries onto the next deployment,
//! caller errors not retried, circuit breakers, fallbacks across providers, retry-after, cost and
//! latency routing, streams failing before their first byte, and the attempts bound.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn two_deployments(a: &FakeUpstream, b: &FakeUpstream, extra: Value) -> Value {
    let mut m = json!({"name": "multi", "deployments": [
        {"provider": "a", "model": "model-a", "priority": 0},
        {"provider": "b", "model": "model-b", "priority": 1},
    ]});
    if let (Value::Object(m), Value::Object(e)) = (&mut m, extra) {
        m.extend(e);
    }
    config(
        vec![openai_provider("a", a), openai_provider("b", b)],
        vec![m],
    )
}

fn error_body() -> String {
    json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}})
        .to_string()
}

#[tokio::test]
async fn a_500_is_served_by_the_next_deployment() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    a.set_default(Fault::Status(500, error_body()));
    let gw = Gateway::start(two_deployments(&a, &b, json!({}))).await;
    let r = gw.chat("multi", "hello").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    assert_eq!(header(&r, "x-gateway-provider"), Some("b"));
    assert_eq!(header(&r, "x-gateway-deployment-model"), Some("model-b"));
    assert_eq!(a.request_count(), 1);
    assert_eq!(b.request_count(), 1);
}

#[tokio::test]
async fn a_caller_error_is_not_retried() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    let bad = json!({"error": {"message": "bad tool schema", "type": "invalid_request_error", "param": null, "code": null}});
    a.set_default(Fault::Status(400, bad.to_string()));
    let gw = Gateway::start(two_deployments(&a, &b, json!({}))).await;
    let r = gw.chat("multi", "x").await;
    // A retry cannot help: the SDKs are told not to.
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(
        e["message"].as_str().unwrap().contains("bad tool schema"),
        "{e}"
    );
    assert_eq!(a.request_count(), 1);
    assert_eq!(b.request_count(), 0);
    // A retryable failure's answer (502 here) is not marked so.
    a.push([
        Fault::Status(500, error_body()),
        Fault::Status(500, error_body()),
        Fault::Status(500, error_body()),
    ]);
    b.set_default(Fault::Status(500, error_body()));
    let r = gw.chat("multi", "x").await;
    assert_eq!(r.status(), 502);
    assert_eq!(header(&r, "x-should-retry"), None);
}

#[tokio::test]
async fn a_deployment_capacity_429_names_the_limit_that_was_reached() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    // Capacity is counted per deployment (provider and upstream model): one each.
    let m = |name: &str, limit: Value| {
        let mut d = json!({"provider": "fake", "model": format!("upstream-{name}")});
        if let (Value::Object(d), Value::Object(l)) = (&mut d, limit) {
            d.extend(l);
        }
        json!({"name": name, "deployments": [d]})
    };
    let cfg = config(
        vec![openai_provider("fake", &up)],
        vec![
            m("by-tokens", json!({"tpm": 1000})),
            m("by-requests", json!({"rpm": 1})),
        ],
    );
    let gw = Gateway::start(cfg).await;
    // About 400 estimated tokens a request (a 1.5 kB body and max_tokens 200): the second
    // request of the minute would pass the deployment's tpm of 1000.
    let mut body = chat_body("by-tokens", &"word ".repeat(300));
    body["max_tokens"] = json!(200);
    let first = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(first.status(), 200);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert!(header(&r, "retry-after").is_some());
    let e = assert_openai_error(r, 429, "rate_limit_error", Some("rate_limit_exceeded")).await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("tokens per minute"), "{msg}");

    assert_eq!(gw.chat("by-requests", "x").await.status(), 200);
    let r = gw.chat("by-requests", "x").await;
    let e = assert_openai_error(r, 429, "rate_limit_error", Some("rate_limit_exceeded")).await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("requests per minute"), "{msg}");
    assert_eq!(
        up.request_count(),
        2,
        "refused requests never reach the upstream"
    );
}

#[tokio::test]
async fn the_breaker_opens_stays_quiet_and_recovers_through_a_probe() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    a.set_default(Fault::Status(503, error_body()));
    let mut cfg = two_deployments(&a, &b, json!({"retries": 1}));
    cfg["resilience"]["circuit_breaker"] = json!({"failure_threshold": 3, "open_for": "1s"});
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    let gw = Gateway::start(cfg).await;
    for _ in 0..3 {
        let r = gw.chat("multi", "x").await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(a.request_count(), 3, "three failures open the circuit");
    // Open: a gets no traffic.
    for _ in 0..5 {
        let r = gw.chat("multi", "x").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-gateway-attempts"), Some("1"));
        assert_eq!(header(&r, "x-gateway-provider"), Some("b"));
    }
    assert_eq!(a.request_count(), 3);
    let d = json_of(gw.get("/admin/deployments", Some(MASTER_KEY)).await).await;
    let deps = &d["data"][0]["deployments"];
    assert_eq!(deps[0]["circuit_state"], "open", "{d}");
    assert_eq!(deps[1]["circuit_state"], "closed", "{d}");
    // After open_for, one probe; a has recovered, so the circuit closes.
    a.set_default(Fault::Normal);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = gw.chat("multi", "x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("a"));
    assert_eq!(a.request_count(), 4);
    let d = json_of(gw.get("/admin/deployments", Some(MASTER_KEY)).await).await;
    assert_eq!(
        d["data"][0]["deployments"][0]["circuit_state"], "closed",
        "{d}"
    );
}

#[tokio::test]
async fn all_circuits_open_answers_503_with_retry_after() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    a.set_default(Fault::Status(500, error_body()));
    let mut cfg = config(
        vec![openai_provider("a", &a)],
        vec![model("solo", "a", "m")],
    );
    cfg["resilience"]["retries"] = json!(0);
    cfg["resilience"]["circuit_breaker"] = json!({"failure_threshold": 2, "open_for": "30s"});
    let gw = Gateway::start(cfg).await;
    for _ in 0..2 {
        let r = gw.chat("solo", "x").await;
        assert_openai_error(r, 502, "upstream_error", None).await;
    }
    let r = gw.chat("solo", "x").await;
    assert!(header(&r, "retry-after").is_some());
    assert_openai_error(r, 503, "service_unavailable", None).await;
    assert_eq!(a.request_count(), 2);
}

#[tokio::test]
async fn fallback_to_another_provider_type() {
    let openai = FakeUpstream::start(Kind::OpenAi).await;
    let anthropic = FakeUpstream::start(Kind::Anthropic).await;
    openai.set_default(Fault::Status(500, error_body()));
    let cfg = config(
        vec![
            openai_provider("oa", &openai),
            anthropic_provider("an", &anthropic),
        ],
        vec![
            json!({"name": "gpt-main", "deployments": [{"provider": "oa", "model": "gpt-x"}],
                   "fallbacks": ["claude-backup"], "retries": 1}),
            model("claude-backup", "an", "claude-x"),
        ],
    );
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-main", "fall back please").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("an"));
    assert_eq!(header(&r, "x-gateway-attempts"), Some("3"));
    let v = json_of(r).await;
    assert_eq!(
        v["object"], "chat.completion",
        "translated back to OpenAI's shape: {v}"
    );
    assert_eq!(v["choices"][0]["message"]["content"], "fall back please");
    assert_eq!(openai.request_count(), 2);
    let sent = anthropic.only_request();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.json()["model"], "claude-x");
}

#[tokio::test]
async fn a_429_retry_after_is_waited_for() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    a.push([Fault::StatusWith(
        429,
        vec![("retry-after", "1".into())],
        error_body(),
    )]);
    let cfg = config(
        vec![openai_provider("a", &a)],
        vec![model("solo", "a", "m")],
    );
    let gw = Gateway::start(cfg).await;
    let started = std::time::Instant::now();
    let r = gw.chat("solo", "x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    // Behaviour, not speed: the second attempt was not sent before the upstream allowed it.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried before retry-after"
    );
}

#[tokio::test]
async fn cost_routing_prefers_the_cheaper_until_it_fails() {
    let cheap = FakeUpstream::start(Kind::OpenAi).await;
    let dear = FakeUpstream::start(Kind::OpenAi).await;
    let m = json!({"name": "priced", "routing": "cost", "deployments": [
        {"provider": "dear", "model": "d", "input_cost_per_mtok": 10.0, "output_cost_per_mtok": 30.0},
        {"provider": "cheap", "model": "c", "input_cost_per_mtok": 0.1, "output_cost_per_mtok": 0.4},
    ]});
    let gw = Gateway::start(config(
        vec![
            openai_provider("dear", &dear),
            openai_provider("cheap", &cheap),
        ],
        vec![m],
    ))
    .await;
    for _ in 0..5 {
        let r = gw.chat("priced", "x").await;
        assert_eq!(header(&r, "x-gateway-provider"), Some("cheap"));
    }
    cheap.set_default(Fault::Status(500, error_body()));
    let r = gw.chat("priced", "x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("dear"));
    assert_eq!(dear.request_count(), 1);
}

#[tokio::test]
async fn latency_routing_moves_traffic_to_the_fast_deployment() {
    let slow = FakeUpstream::start(Kind::OpenAi).await;
    let fast = FakeUpstream::start(Kind::OpenAi).await;
    slow.set_default(Fault::Delay(Duration::from_millis(150)));
    let m = json!({"name": "quick", "routing": "latency", "deployments": [
        {"provider": "slow", "model": "s"}, {"provider": "fast", "model": "f"}]});
    let gw = Gateway::start(config(
        vec![
            openai_provider("slow", &slow),
            openai_provider("fast", &fast),
        ],
        vec![m],
    ))
    .await;
    for _ in 0..40 {
        let r = gw.chat("quick", "x").await;
        assert_eq!(r.status(), 200);
    }
    // Both were measured; the fast one took nearly everything after that (the slow one only gets
    // the occasional exploration request).
    assert!(slow.request_count() >= 1);
    assert!(
        fast.request_count() >= 30,
        "fast {} slow {}",
        fast.request_count(),
        slow.request_count()
    );
}

#[tokio::test]
async fn weighted_routing_splits_traffic() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    let m = json!({"name": "split", "routing": "weighted", "deployments": [
        {"provider": "a", "model": "a", "weight": 1}, {"provider": "b", "model": "b", "weight": 3}]});
    let gw = Gateway::start(config(
        vec![openai_provider("a", &a), openai_provider("b", &b)],
        vec![m],
    ))
    .await;
    for _ in 0..80 {
        let r = gw
            .post(
                "/v1/chat/completions",
                Some(GW_KEY),
                &chat_body("split", "x"),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(a.request_count() + b.request_count(), 80);
    // 20 / 60 expected; generous bounds keep this free of flakiness.
    assert!(
        b.request_count() > a.request_count(),
        "a {} b {}",
        a.request_count(),
        b.request_count()
    );
    assert!(a.request_count() >= 5);
}

#[tokio::test]
async fn least_busy_avoids_the_deployment_with_requests_in_flight() {
    let busy = FakeUpstream::start(Kind::OpenAi).await;
    let idle = FakeUpstream::start(Kind::OpenAi).await;
    let m = json!({"name": "lb", "routing": "least-busy", "deployments": [
        {"provider": "busy", "model": "x"}, {"provider": "idle", "model": "y"}]});
    let gw = Gateway::start(config(
        vec![
            openai_provider("busy", &busy),
            openai_provider("idle", &idle),
        ],
        vec![m],
    ))
    .await;
    busy.set_default(Fault::Gated(1));
    idle.set_default(Fault::Gated(1));
    let mut body = chat_body("lb", "x");
    body["stream"] = json!(true);
    // Two streams held open: one on each deployment (the second goes to the idle one).
    let c = client();
    let s1 = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s2 = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_ne!(
        header(&s1, "x-gateway-provider"),
        header(&s2, "x-gateway-provider")
    );
    busy.release();
    idle.release();
    drop((s1, s2));
}

#[tokio::test]
async fn a_stream_failing_before_its_first_byte_is_served_by_another() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    a.set_default(Fault::DropMidStream(0));
    let gw = Gateway::start(two_deployments(&a, &b, json!({}))).await;
    let mut body = chat_body("multi", "streamed words here");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("b"));
    let text = r.text().await.unwrap();
    assert_eq!(joined_content(&sse_data(&text)), "streamed words here");
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test]
async fn a_stream_failing_after_its_first_byte_ends_with_an_error_event() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    a.set_default(Fault::DropMidStream(2));
    let gw = Gateway::start(config(
        vec![openai_provider("a", &a)],
        vec![model("solo", "a", "m")],
    ))
    .await;
    let mut body = chat_body("solo", "one two three four five");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let datas = sse_data(&text);
    let err = datas
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("error").is_some());
    assert!(err.is_some(), "an error event ends the stream: {text}");
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
}

/// Whatever the fault pattern, every request ends with a success or one of the contract's
/// errors, and never more than 1 + retries attempts per model.
#[tokio::test]
async fn any_fault_pattern_is_answered_within_the_attempt_bound() {
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = two_deployments(&a, &b, json!({"retries": 2, "timeout": "300ms"}));
    cfg["server"] = json!({"request_timeout": "5s"});
    let gw = Gateway::start(cfg).await;
    let faults = [
        Fault::Normal,
        Fault::Status(500, error_body()),
        Fault::Status(429, error_body()),
        Fault::Status(
            400,
            json!({"error": {"message": "bad", "type": "invalid_request_error"}}).to_string(),
        ),
        Fault::Status(
            529,
            json!({"error": {"message": "overloaded", "type": "overloaded_error"}}).to_string(),
        ),
        Fault::Delay(Duration::from_millis(500)),
        Fault::Body("not json at all".into()),
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..25 {
        let before = a.request_count() + b.request_count();
        for _ in 0..3 {
            a.push([faults[(next() % faults.len() as u64) as usize].clone()]);
            b.push([faults[(next() % faults.len() as u64) as usize].clone()]);
        }
        let r = gw.chat("multi", "x").await;
        let status = r.status().as_u16();
        let attempts = a.request_count() + b.request_count() - before;
        assert!(attempts <= 3, "{attempts} attempts for one request");
        assert!(
            matches!(status, 200 | 400 | 502 | 503 | 504),
            "status {status}"
        );
        let v = json_of(r).await;
        if status != 200 {
            assert!(v["error"]["type"].is_string(), "error shape: {v}");
        }
        // Drop what this round did not use.
        a.clear_faults();
        b.clear_faults();
    }
}
