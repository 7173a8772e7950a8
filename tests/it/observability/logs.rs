//! The access log's fields, and no key ever in the logs.

use super::*;

#[tokio::test]
async fn access_log_has_its_fields_and_no_key_is_ever_logged() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let (endpoint, _received) = otlp_receiver().await;
    let mut config = traced_config(&up, &endpoint);
    config["auth"]["master_key"] = json!(MASTER_KEY);
    config["telemetry"]["log_format"] = json!("json");
    config["telemetry"]["log_bodies"] = json!(true);
    let gw = Gateway::start_with_env(config, &[("RUST_LOG", "debug")]).await;
    const WRONG: &str = "sk-wrong-key-must-not-be-logged-7777";

    // Successes: plain, stream, messages API.
    let r = gw.chat("gpt-test", "one").await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let mut body = chat_body("gpt-test", "two words");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GPT_KEY), &body).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let r = gw
        .client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", GW_KEY)
        .json(&messages_body("gpt-test", "three"))
        .send()
        .await
        .unwrap();
    // Authenticated (the answer itself depends on translation, not this test's subject).
    assert_ne!(r.status(), 401);
    r.bytes().await.unwrap();
    // Failures: wrong key (Bearer, x-api-key, Basic), a key not allowed the model, the admin API
    // with a wrong and the right master key, an upstream that echoes its key in an error.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(WRONG),
            &chat_body("gpt-test", "x"),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = gw
        .client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", WRONG)
        .json(&messages_body("gpt-test", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Basic {WRONG}"))
        .json(&chat_body("gpt-test", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GPT_KEY),
            &chat_body("mock", "x"),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = gw.get("/admin/deployments", Some(WRONG)).await;
    assert_eq!(r.status(), 401);
    let r = gw.get("/admin/deployments", Some(MASTER_KEY)).await;
    assert_eq!(r.status(), 200);
    // Every attempt (1 + retries) gets the upstream 401 that echoes the provider key.
    let upstream_401 = Fault::Status(
        401,
        format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {PROVIDER_KEY}","type":"invalid_request_error"}}}}"#
        ),
    );
    up.push([upstream_401.clone(), upstream_401.clone(), upstream_401]);
    let r = gw.chat("gpt-test", "echo").await;
    // The provider's 401 is the gateway's own credentials failing: every attempt fails, 502.
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(PROVIDER_KEY),
        "the answer leaks the provider key: {text}"
    );

    // A prompt that quotes a key: logged (log_bodies) with the key redacted.
    let r = gw
        .chat("gpt-test", &format!("remember {GW_KEY} and {PROVIDER_KEY}"))
        .await;
    r.bytes().await.unwrap();

    gw.wait_log("\"status\":401").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = gw.logs();
    for secret in [GW_KEY, GPT_KEY, PROVIDER_KEY, MASTER_KEY, WRONG] {
        assert!(
            !logs.contains(secret),
            "the logs contain a key ({secret}):\n{logs}"
        );
    }
    // Not even a part of one (e.g. a logged prefix of a key).
    for secret in [GW_KEY, PROVIDER_KEY, MASTER_KEY, WRONG] {
        let mid = &secret[4..secret.len() - 2];
        assert!(
            !logs.contains(mid),
            "the logs contain part of a key ({mid})"
        );
    }

    assert!(
        logs.lines().any(|l| l.contains("\"target\":\"body\"")
            && l.contains("remember [redacted] and [redacted]")),
        "log_bodies: the request body, keys redacted:\n{logs}"
    );

    // The access log: one JSON line per request with its fields.
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert!(access.len() >= 10, "{logs}");
    let plain = access
        .iter()
        .find(|v| v["status"] == 200 && v["key"] == "all" && v["path"] == "/v1/chat/completions")
        .expect("an access line for the first request");
    for (k, want) in [
        ("model", json!("gpt-test")),
        ("provider", json!("fake")),
        ("deployment_model", json!("upstream-model")),
        ("attempts", json!("1")),
        ("cache", json!("MISS")),
    ] {
        assert_eq!(plain[k], want, "{k} in {plain}");
    }
    assert!(
        plain["request_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("req_"))
    );
    assert!(plain["latency_ms"].as_f64().is_some());
    assert!(
        plain["trace_id"].as_str().is_some_and(|s| s.len() == 32),
        "{plain}"
    );
    let stream = access
        .iter()
        .find(|v| v["status"] == 200 && v["key"] == "gpt-only")
        .expect("the stream's access line");
    let ttft = stream["ttft_ms"].as_f64().expect("ttft_ms on a stream");
    assert!(ttft <= stream["latency_ms"].as_f64().unwrap());
    assert!(
        plain.get("ttft_ms").is_none(),
        "no ttft_ms without a stream"
    );
    assert!(
        access
            .iter()
            .any(|v| v["status"] == 401 && v["key"] == "" && v["path"] == "/v1/messages")
    );
    assert!(
        access
            .iter()
            .any(|v| v["status"] == 403 && v["key"] == "gpt-only")
    );
}
