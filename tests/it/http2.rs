//! A provider with `http2: true` and a plain `http://` base URL is spoken to in HTTP/2 without
//! TLS (h2c): answers, streams and upstream errors come through as over HTTP/1.1, and the
//! upstream sees HTTP/2 requests. Without the key, the same upstream sees HTTP/1.1.

use serde_json::{Value, json};

use crate::support::*;

fn config(up: &FakeUpstream, http2: bool) -> Value {
    let mut cfg = basic_config(Some(up));
    cfg["providers"][1]["http2"] = json!(http2);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_with_http2_speaks_h2c_to_a_plain_upstream() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(config(&up, true)).await;
    // Concurrent requests: streams on the provider's connection.
    let mut calls = Vec::new();
    for i in 0..16 {
        let client = gw.client().clone();
        let url = gw.url("/v1/chat/completions");
        calls.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(GW_KEY)
                .json(&chat_body("gpt-test", &format!("hello number {i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                v["choices"][0]["message"]["content"],
                format!("hello number {i}")
            );
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    // A streamed answer, read to its end.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &json!({"model": "gpt-test", "stream": true,
                    "messages": [{"role": "user", "content": "stream over h2"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let text: String = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "stream over h2");
    let seen = up.requests();
    assert_eq!(seen.len(), 17);
    for r in &seen {
        assert_eq!(r.version, axum::http::Version::HTTP_2, "{}", r.path);
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {PROVIDER_KEY}").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_over_h2c_is_mapped_and_the_connection_serves_on() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(config(&up, true)).await;
    up.push([Fault::Status(
        400,
        r#"{"error":{"message":"bad thing","type":"invalid_request_error"}}"#.into(),
    )]);
    let r = gw.chat("gpt-test", "x").await;
    assert_eq!(r.status(), 400);
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(e["message"].as_str().unwrap().contains("bad thing"), "{e}");
    let r = gw.chat("gpt-test", "again").await;
    assert_eq!(r.status(), 200);
    assert!(
        up.requests()
            .iter()
            .all(|r| r.version == axum::http::Version::HTTP_2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_the_upstream_sees_http1() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(config(&up, false)).await;
    let r = gw.chat("gpt-test", "x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.only_request().version, axum::http::Version::HTTP_11);
}
