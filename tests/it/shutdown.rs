//! Graceful shutdown on SIGTERM: the listener stays open while work drains (`/ready` 503
//! `draining`, new model calls 503), in-flight streams finish, the process exits 0; and
//! `shutdown_grace` bounds the wait.

use std::time::Duration;

use serde_json::json;

use nix::sys::signal::Signal;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_stream_then_exits_zero() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::SlowStream {
        gap: Duration::from_millis(100),
    }]);
    let mut cfg = basic_config(Some(&up));
    cfg["server"] = json!({"shutdown_grace": "20s"});
    let mut gw = Gateway::start(cfg).await;
    let text = "one two three four five six seven eight nine ten eleven twelve";
    let body = json!({"model": "gpt-test", "stream": true,
        "messages": [{"role": "user", "content": text}]});
    let mut r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let mut buf = String::new();
    assert!(
        read_until(&mut r, &mut buf, Duration::from_secs(10), |b| b
            .contains("one "))
        .await
    );

    gw.send_signal(Signal::SIGTERM);

    // The gateway stops taking traffic: a fresh connection either is refused or is told 503
    // by /ready.
    let url = gw.url("/ready");
    let stopped_taking = {
        let mut ok = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            let fresh = client_builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            match fresh.get(&url).send().await {
                Err(_) => {
                    ok = true;
                    break;
                }
                Ok(resp) if resp.status() == 503 => {
                    // Contract: every 503 carries retry-after.
                    assert!(
                        header(&resp, "retry-after").is_some(),
                        "/ready answered 503 while draining without retry-after"
                    );
                    ok = true;
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        ok
    };
    assert!(
        stopped_taking,
        "after SIGTERM the gateway still took new traffic on /ready"
    );
    assert!(gw.running(), "the process waits for the in-flight stream");

    // The in-flight stream still completes, with [DONE].
    assert!(
        read_until(&mut r, &mut buf, Duration::from_secs(15), |b| b
            .contains("[DONE]"))
        .await,
        "the in-flight stream was cut by the shutdown: {buf:?}"
    );
    let datas = sse_data(&buf);
    assert_eq!(datas.last().unwrap(), "[DONE]");
    assert_eq!(joined_content(&datas), text);
    assert_eq!(up.streams_completed(), 1);

    let status = gw.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}\n{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_gateway_exits_zero() {
    let mut gw = Gateway::start(basic_config(None)).await;
    assert_eq!(gw.get("/ready", None).await.status(), 200);
    gw.send_signal(Signal::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_a_hanging_request() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Hang);
    let mut p = openai_provider("fake", &up);
    p["timeout"] = json!("60s");
    let mut cfg = config(vec![p], vec![model("gpt-test", "fake", "upstream-model")]);
    cfg["resilience"]["retries"] = json!(0);
    cfg["server"] = json!({"shutdown_grace": "1s", "request_timeout": "120s"});
    let mut gw = Gateway::start(cfg).await;

    let client = gw.client().clone();
    let url = gw.url("/v1/chat/completions");
    let pending = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(GW_KEY)
            .json(&chat_body("gpt-test", "hang"))
            .send()
            .await
    });
    assert!(
        wait_until(Duration::from_secs(10), || up.request_count() == 1).await,
        "the request never reached the upstream"
    );
    gw.send_signal(Signal::SIGTERM);
    // Exits although the request never finishes (grace 1 s; bounded generously here).
    let _status = gw.wait_exit(Duration::from_secs(15)).await;
    // The client's request ends (the connection closed) rather than hanging.
    let res = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the hanging client request must end when the process exits")
        .unwrap();
    if let Ok(resp) = res {
        assert!(
            !resp.status().is_success(),
            "a hanging request cannot succeed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_without_keys() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw.get("/health", None).await;
    assert_eq!(r.status(), 200);
    let r = gw.get("/ready", None).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["status"], "ok", "{v}");
    // No Redis or NATS configured.
    assert_eq!(v["redis"], "unused", "{v}");
    assert_eq!(v["nats"], "unused", "{v}");
}

/// While draining, the listener stays open: `/ready` answers 503 `draining` with `retry-after`
/// and `connection: close`, new model calls and async submissions 503 `service_unavailable` with
/// `retry-after`, `/health` 200; the long stream in flight completes; then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_answers_ready_503_and_refuses_new_calls_while_a_stream_finishes() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    // Two frames, then the stream waits for `release`: in flight for as long as the test wants.
    up.push([Fault::Gated(2)]);
    let mut cfg = basic_config(Some(&up));
    cfg["server"] = json!({"shutdown_grace": "30s"});
    let mut gw = Gateway::start(cfg).await;
    let body = json!({"model": "gpt-test", "stream": true,
        "messages": [{"role": "user", "content": "one two three"}]});
    let mut stream = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(stream.status(), 200);
    let mut buf = String::new();
    assert!(
        read_until(&mut stream, &mut buf, Duration::from_secs(10), |b| b
            .contains("one "))
        .await,
        "{buf}"
    );

    gw.send_signal(Signal::SIGTERM);
    let fresh = client_builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = fresh
            .get(gw.url("/ready"))
            .send()
            .await
            .expect("the listener stays open while draining");
        if r.status() == 503 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready never answered 503 after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(header(&ready, "retry-after"), Some("1"));
    assert_eq!(header(&ready, "connection"), Some("close"));
    assert_eq!(json_of(ready).await["status"], "draining");

    // New model calls and async submissions: 503 with retry-after, in each API's shape.
    for (path, body) in [
        ("/v1/chat/completions", chat_body("mock", "too late")),
        ("/v1/messages", messages_body("mock", "too late")),
        ("/v1/async/chat/completions", chat_body("mock", "too late")),
    ] {
        let r = fresh
            .post(gw.url(path))
            .bearer_auth(GW_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            header(&r, "retry-after").is_some(),
            "{path}: no retry-after"
        );
        assert_eq!(header(&r, "connection"), Some("close"), "{path}");
        if path == "/v1/messages" {
            assert_anthropic_error(r, 503, "overloaded_error").await;
        } else {
            assert_openai_error(r, 503, "service_unavailable", None).await;
        }
    }
    assert_eq!(
        fresh.get(gw.url("/health")).send().await.unwrap().status(),
        200
    );
    assert!(gw.running(), "the process waits for the stream in flight");

    // The stream in flight completes.
    up.release();
    assert!(
        read_until(&mut stream, &mut buf, Duration::from_secs(15), |b| b
            .contains("[DONE]"))
        .await,
        "the in-flight stream was cut by the drain: {buf:?}"
    );
    assert_eq!(joined_content(&sse_data(&buf)), "one two three");
    drop(stream);
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}\n{}", gw.logs());
}
