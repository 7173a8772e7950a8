//! Traces received by an OTLP receiver (http/protobuf and gRPC) with the GenAI attributes and the
//! caller's trace id; job runs and webhook deliveries as spans.

use super::*;

#[tokio::test]
async fn traces_over_otlp_http_carry_genai_attributes_and_the_callers_trace() {
    let (endpoint, received) = otlp_receiver().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start_with_env(traced_config(&up, &endpoint), FAST_EXPORT).await;
    assert!(gw.logs().contains("trace export on"), "{}", gw.logs());
    up.push([Fault::Status(503, r#"{"error":{"message":"busy"}}"#.into())]);
    let mut body = chat_body("gpt-test", "trace me");
    body["temperature"] = json!(0.25);
    body["top_p"] = json!(0.5);
    body["max_tokens"] = json!(50);
    body["seed"] = json!(7);
    body["stop"] = json!(["END"]);
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    // Upstream: the caller's trace id, the attempt's span as parent, a new one per attempt.
    let seen: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("traceparent").unwrap_or("").to_owned())
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let mut upstream_parents = Vec::new();
    for tp in &seen {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], CALLER_TRACE, "same trace as the caller: {tp}");
        assert_ne!(
            parts[2], CALLER_SPAN,
            "the gateway's span is the parent: {tp}"
        );
        assert_eq!(parts[3], "01");
        upstream_parents.push(parts[2].to_owned());
    }
    assert_ne!(upstream_parents[0], upstream_parents[1]);

    let spans = spans_until(&received, |s| {
        s.iter().filter(|s| s.kind == CLIENT).count() >= 2 && s.iter().any(|s| s.kind == SERVER)
    })
    .await;
    let server = spans.iter().find(|s| s.kind == SERVER).unwrap();
    assert_eq!(hexs(&server.trace_id), CALLER_TRACE);
    assert_eq!(hexs(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(server.name, "POST /v1/chat/completions");
    let a = |k: &str| attr(server, k);
    assert_eq!(a("gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(a("gen_ai.request.model").as_deref(), Some("gpt-test"));
    assert_eq!(a("gen_ai.request.temperature").as_deref(), Some("0.25"));
    assert_eq!(a("gen_ai.request.top_p").as_deref(), Some("0.5"));
    assert_eq!(a("gen_ai.request.max_tokens").as_deref(), Some("50"));
    assert_eq!(a("gen_ai.request.seed").as_deref(), Some("7"));
    assert_eq!(a("gen_ai.request.stop_sequences").as_deref(), Some("END"));
    assert_eq!(a("gen_ai.provider.name").as_deref(), Some("openai"));
    assert_eq!(
        a("gen_ai.response.model").as_deref(),
        Some("upstream-model")
    );
    assert!(a("gen_ai.usage.input_tokens").is_some_and(|v| v.parse::<u64>().unwrap() > 0));
    assert!(a("gen_ai.usage.output_tokens").is_some_and(|v| v.parse::<u64>().unwrap() > 0));
    assert_eq!(a("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(a("gateway.key_name").as_deref(), Some("all"));
    assert_eq!(a("gateway.attempts").as_deref(), Some("2"));
    assert_eq!(a("gateway.deployment.provider").as_deref(), Some("fake"));
    assert!(a("gateway.request_id").is_some());

    let mut attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    attempts.sort_by_key(|s| attr(s, "gateway.attempt"));
    for s in &attempts {
        assert_eq!(hexs(&s.trace_id), CALLER_TRACE);
        assert_eq!(
            s.parent_span_id, server.span_id,
            "attempts are children of the server span"
        );
        assert_eq!(s.name, "chat upstream-model");
        assert_eq!(attr(s, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(attr(s, "gen_ai.provider.name").as_deref(), Some("openai"));
        assert_eq!(
            attr(s, "gen_ai.request.model").as_deref(),
            Some("upstream-model")
        );
        assert_eq!(
            attr(s, "gateway.deployment.provider").as_deref(),
            Some("fake")
        );
        assert_eq!(attr(s, "server.address").as_deref(), Some("127.0.0.1"));
    }
    let ids: Vec<String> = attempts.iter().map(|s| hexs(&s.span_id)).collect();
    assert_eq!(
        ids, upstream_parents,
        "upstream saw each attempt's own span as parent"
    );
    let (failed, ok) = (attempts[0], attempts[1]);
    assert_eq!(
        attr(failed, "gateway.attempt.outcome").as_deref(),
        Some("error_status")
    );
    assert_eq!(attr(failed, "error.type").as_deref(), Some("503"));
    assert_eq!(
        attr(failed, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(2),
        "status error"
    );
    assert_eq!(
        attr(ok, "gateway.attempt.outcome").as_deref(),
        Some("success")
    );
    assert_eq!(
        attr(ok, "gen_ai.response.model").as_deref(),
        Some("upstream-model")
    );
    assert_eq!(
        attr(ok, "gen_ai.response.id").as_deref(),
        Some("chatcmpl-fake0001")
    );
    assert_eq!(
        attr(ok, "gen_ai.response.finish_reasons").as_deref(),
        Some("stop")
    );
    assert!(attr(ok, "gen_ai.usage.input_tokens").is_some());
    assert!(attr(ok, "gen_ai.usage.output_tokens").is_some());

    let cache = spans
        .iter()
        .find(|s| s.name == "cache lookup")
        .expect("a cache look-up span");
    assert_eq!(cache.kind, INTERNAL);
    assert_eq!(cache.parent_span_id, server.span_id);
    assert_eq!(attr(cache, "gateway.cache.result").as_deref(), Some("miss"));

    let r = received.lock().unwrap();
    assert!(
        r.services.iter().all(|s| s == "ai-gateway-test"),
        "{:?}",
        r.services
    );
    assert!(
        r.content_types
            .iter()
            .all(|c| c == "application/x-protobuf"),
        "{:?}",
        r.content_types
    );
}

#[tokio::test]
async fn traces_over_otlp_grpc() {
    let (endpoint, received) = otlp_receiver().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut env = FAST_EXPORT.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    let gw = Gateway::start_with_env(traced_config(&up, &endpoint), &env).await;
    let mut body = chat_body("gpt-test", "stream over grpc");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let spans = spans_until(&received, |s| {
        s.iter().any(|s| s.kind == CLIENT) && s.iter().any(|s| s.kind == SERVER)
    })
    .await;
    let server = spans.iter().find(|s| s.kind == SERVER).unwrap();
    let attempt = spans.iter().find(|s| s.kind == CLIENT).unwrap();
    assert!(
        server.parent_span_id.is_empty(),
        "no caller context: a root span"
    );
    assert_eq!(attempt.trace_id, server.trace_id);
    assert_eq!(attempt.parent_span_id, server.span_id);
    let tp = up.only_request().header("traceparent").unwrap().to_owned();
    assert_eq!(
        tp,
        format!(
            "00-{}-{}-01",
            hexs(&attempt.trace_id),
            hexs(&attempt.span_id)
        )
    );
    assert!(
        received
            .lock()
            .unwrap()
            .content_types
            .iter()
            .all(|c| c.starts_with("application/grpc"))
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_traceparent_passes_through() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(traffic_config(&up)).await;
    let tp = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("traceparent", &tp)
        .json(&chat_body("gpt-test", "no tracing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert_eq!(up.only_request().header("traceparent"), Some(tp.as_str()));
    let logs = gw.logs();
    assert!(!logs.contains("trace export on"), "{logs}");
    assert!(
        !logs.contains("request body"),
        "log_bodies is off by default: {logs}"
    );
    assert!(
        !logs.contains("trace_id"),
        "no trace ids in logs without traces: {logs}"
    );
}

/// One chat job submitted (with `headers` and a webhook) to a traced gateway with jobs, and what
/// must stay alive while its spans arrive.
struct TracedJob {
    received: Store,
    id: String,
    _up: FakeUpstream,
    _rx: crate::support::receiver::WebhookReceiver,
    _gw: Gateway,
}

async fn traced_job(text: &str, headers: &[(&str, &str)]) -> TracedJob {
    let (endpoint, received) = otlp_receiver().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = crate::support::receiver::WebhookReceiver::start().await;
    let mut cfg = traced_config(&up, &endpoint);
    cfg["jobs"] = crate::jobs::jobs_config(&up)["jobs"].clone();
    let gw = Gateway::start_with_env(cfg, FAST_EXPORT).await;
    let url = rx.url();
    let mut all = vec![("x-webhook-url", url.as_str())];
    all.extend_from_slice(headers);
    let job = crate::jobs::submit_ok(&gw, &chat_body("gpt-test", text), &all).await;
    TracedJob {
        received,
        id: job["id"].as_str().unwrap().to_owned(),
        _up: up,
        _rx: rx,
        _gw: gw,
    }
}

/// Each webhook delivery attempt is a CLIENT span with the job id and its outcome.
#[tokio::test]
async fn a_webhook_delivery_is_a_client_span() {
    let job = traced_job("hook me", &[]).await;
    let (received, id) = (&job.received, &job.id);
    let spans = spans_until(received, |s| s.iter().any(|s| s.name == "POST webhook")).await;
    let w = spans.iter().find(|s| s.name == "POST webhook").unwrap();
    assert_eq!(w.kind, CLIENT);
    assert_eq!(attr(w, "gateway.job.id").as_deref(), Some(id.as_str()));
    assert_eq!(attr(w, "gateway.webhook.attempt").as_deref(), Some("1"));
    assert_eq!(
        attr(w, "gateway.webhook.outcome").as_deref(),
        Some("delivered")
    );
}

/// A job's run is a CONSUMER span in the trace of the request that submitted it (its
/// `traceparent`), with the model call's attributes; the upstream attempt is its child, and the
/// webhook delivery is in the same trace.
#[tokio::test]
async fn a_job_run_is_a_consumer_span_in_the_submitters_trace() {
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let job = traced_job("trace my job", &[("traceparent", &traceparent)]).await;
    let (received, id) = (&job.received, &job.id);
    let spans = spans_until(received, |s| {
        s.iter().any(|s| s.kind == CONSUMER) && s.iter().any(|s| s.name == "POST webhook")
    })
    .await;
    let run = spans.iter().find(|s| s.kind == CONSUMER).unwrap();
    assert_eq!(run.name, "job /v1/chat/completions");
    assert_eq!(hexs(&run.trace_id), CALLER_TRACE);
    assert_eq!(hexs(&run.parent_span_id), CALLER_SPAN);
    assert_eq!(attr(run, "gateway.job.id").as_deref(), Some(id.as_str()));
    assert_eq!(attr(run, "gateway.job.attempt").as_deref(), Some("1"));
    assert_eq!(
        attr(run, "gateway.job.outcome").as_deref(),
        Some("succeeded")
    );
    assert_eq!(attr(run, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(
        attr(run, "gen_ai.request.model").as_deref(),
        Some("gpt-test")
    );
    let attempt = spans
        .iter()
        .find(|s| s.kind == CLIENT && s.parent_span_id == run.span_id)
        .expect("the upstream attempt is a child of the job's span");
    assert_eq!(attempt.trace_id, run.trace_id);
    let hook = spans.iter().find(|s| s.name == "POST webhook").unwrap();
    assert_eq!(hexs(&hook.trace_id), CALLER_TRACE);
}
