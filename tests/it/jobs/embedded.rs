//! Async jobs on the embedded queue: a run and its webhook, validation, idempotency, cancel,
//! failures, `kill -9` and SIGTERM.

use super::*;

#[tokio::test]
async fn embedded_job_runs_and_its_webhook_verifies() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    let gw = Gateway::start(jobs_config(&up)).await;
    let job = submit_ok(
        &gw,
        &chat_body("gpt-test", "hello async"),
        &[
            ("x-webhook-url", &rx.url()),
            ("x-request-id", "req-async-1"),
        ],
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("job_") && id.len() == 30, "{job}");
    assert_eq!(job["object"], "job");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["endpoint"], "/v1/chat/completions");
    assert_eq!(job["status_url"], format!("/v1/jobs/{id}"));
    assert!(job["created_at"].as_u64().unwrap() > 1_700_000_000);

    let done = wait_job(&gw, &id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["request_id"], "req-async-1");
    assert_eq!(done["result"]["object"], "chat.completion");
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"],
        "hello async"
    );
    assert!(done["started_at"].as_u64().is_some() && done["finished_at"].as_u64().is_some());
    // The upstream got a non-streaming request with the caller's request id.
    let req = up.only_request();
    assert_eq!(req.header("x-request-id"), Some("req-async-1"));

    assert!(
        wait_until(Duration::from_secs(10), || !rx.deliveries().is_empty()).await,
        "no webhook; logs:\n{}",
        gw.logs()
    );
    let d = &rx.deliveries()[0];
    assert_eq!(d.id, id);
    assert!(d.verifies(SECRET), "signature must verify: {d:?}");
    let ts: u64 = d.timestamp.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) <= 5);
    let body = d.json();
    assert_eq!(body["id"], id);
    assert_eq!(body["status"], "succeeded");
    assert_eq!(
        body["result"]["choices"][0]["message"]["content"],
        "hello async"
    );
    // A tampered body does not verify.
    let mut tampered = d.clone();
    tampered.body = bytes::Bytes::from(
        d.body
            .iter()
            .map(|b| if *b == b'h' { b'H' } else { *b })
            .collect::<Vec<u8>>(),
    );
    assert!(!tampered.verifies(SECRET));
    let w = wait_job_until(&gw, &id, Duration::from_secs(5), |v| {
        v["webhook"]["status"] == "delivered"
    })
    .await;
    assert_eq!(w["webhook"]["attempts"], 1);
    assert_eq!(w["webhook"]["url"], rx.url());

    // Metrics.
    assert!(metric(&gw, "ai_gateway_jobs_total{status=\"succeeded\"}").await >= 1.0);
    assert!(
        metric(
            &gw,
            "ai_gateway_webhook_deliveries_total{outcome=\"delivered\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        gw.get("/metrics", None)
            .await
            .text()
            .await
            .unwrap()
            .contains("ai_gateway_jobs_queued")
    );
}

#[tokio::test]
async fn embeddings_and_messages_jobs_and_streams_become_plain_answers() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let anth = FakeUpstream::start(Kind::Anthropic).await;
    let mut cfg = jobs_config(&up);
    cfg["providers"]
        .as_array_mut()
        .unwrap()
        .push(anthropic_provider("anth", &anth));
    cfg["models"]
        .as_array_mut()
        .unwrap()
        .push(model("claude-test", "anth", "claude-up"));
    let gw = Gateway::start(cfg).await;
    let r = submit(
        &gw,
        GW_KEY,
        "/v1/async/embeddings",
        &json!({"model": "gpt-test", "input": "abc"}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 202);
    let e = json_of(r).await;
    let mut body = messages_body("claude-test", "hi anthropic");
    body["stream"] = json!(true);
    let r = submit(&gw, GW_KEY, "/v1/async/messages", &body, &[]).await;
    assert_eq!(r.status(), 202);
    let m = json_of(r).await;
    let mut sbody = chat_body("gpt-test", "streamed");
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let s = submit_ok(&gw, &sbody, &[]).await;

    let e = wait_job(&gw, e["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["endpoint"], "/v1/embeddings");
    assert_eq!(e["result"]["object"], "list");
    let m = wait_job(&gw, m["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(m["status"], "succeeded", "{m}");
    assert_eq!(m["result"]["type"], "message");
    assert_eq!(m["result"]["content"][0]["text"], "hi anthropic");
    let s = wait_job(&gw, s["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(s["result"]["object"], "chat.completion", "{s}");
    for r in up.requests().into_iter().chain(anth.requests()) {
        assert_ne!(
            r.json()["stream"],
            json!(true),
            "jobs never stream upstream"
        );
    }
    // A submission is counted with the model it named, like a synchronous call.
    let text = gw.get("/metrics", None).await.text().await.unwrap();
    for (endpoint, model) in [
        ("/v1/async/embeddings", "gpt-test"),
        ("/v1/async/messages", "claude-test"),
        ("/v1/async/chat/completions", "gpt-test"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ai_gateway_requests_total{")
                    && l.contains(&format!("endpoint=\"{endpoint}\""))
                    && l.contains(&format!("model=\"{model}\""))
                    && l.contains("status=\"202\"")),
            "no request count for {endpoint} with model {model}:\n{text}"
        );
    }
}

#[tokio::test]
async fn submissions_are_validated_like_the_synchronous_endpoints() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(jobs_config(&up)).await;
    let path = "/v1/async/chat/completions";
    let r = gw.post(path, None, &chat_body("gpt-test", "x")).await;
    assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
    let r = gw.post_raw(path, Some(GW_KEY), "{not json").await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw
        .post(path, Some(GW_KEY), &json!({"model": "gpt-test"}))
        .await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw.post(path, Some(GW_KEY), &chat_body("nope", "x")).await;
    assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    let r = gw.post(path, Some(GPT_KEY), &chat_body("mock", "x")).await;
    assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
    let r = gw
        .post(
            "/v1/async/messages",
            Some(GW_KEY),
            &json!({"model": "gpt-test"}),
        )
        .await;
    assert_anthropic_error(r, 400, "invalid_request_error").await;
    let r = submit(
        &gw,
        GW_KEY,
        path,
        &chat_body("gpt-test", "x"),
        &[("x-webhook-url", "ftp://example.com/x")],
    )
    .await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw
        .get("/v1/jobs/job_00000000000000000000000000", Some(GW_KEY))
        .await;
    assert_eq!(r.status(), 404);
    let r = gw.get("/v1/jobs/../../etc", Some(GW_KEY)).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        up.request_count(),
        0,
        "nothing invalid reached the upstream"
    );
}

#[tokio::test]
async fn idempotent_submission_returns_the_same_job() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(jobs_config(&up)).await;
    idempotency(&gw).await;
}

#[tokio::test]
async fn cancel_a_queued_job_and_409_once_it_runs() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(1500)));
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["workers"] = json!(1);
    let gw = Gateway::start(cfg).await;
    cancel_while_one_runs(&gw, &up).await;
}

#[tokio::test]
async fn a_failing_upstream_ends_the_job_failed_after_max_attempts() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Status(
        500,
        json!({"error": {"message": "boom", "type": "server_error"}}).to_string(),
    ));
    let rx = WebhookReceiver::start().await;
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["max_attempts"] = json!(2);
    cfg["resilience"]["retries"] = json!(1);
    let gw = Gateway::start(cfg).await;
    failing_upstream(&gw, &up, &rx).await;
}

#[tokio::test]
async fn embedded_queue_survives_kill_9_with_200_jobs_in_flight() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(100)));
    let rx = WebhookReceiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    kill_9_with_200_jobs_in_flight(cfg, &up, &rx).await;
}

#[tokio::test]
async fn embedded_sigterm_finishes_or_releases_running_jobs() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["server"] = json!({"shutdown_grace": "2s"});
    sigterm_finishes_or_releases(cfg, &up).await;
}
