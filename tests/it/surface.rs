//! The smaller client endpoints: `GET /v1/models/{id}`, Anthropic-shaped model lists,
//! `POST /v1/messages/count_tokens`, Anthropic's `request-id` header, CORS.

use serde_json::{Value, json};

use crate::support::*;

fn config_with(an: &FakeUpstream) -> Value {
    let mut cfg = basic_config(None);
    cfg["providers"]
        .as_array_mut()
        .unwrap()
        .push(anthropic_provider("an", an));
    cfg["models"]
        .as_array_mut()
        .unwrap()
        .push(model("claude-test", "an", "claude-upstream"));
    cfg["models"]
        .as_array_mut()
        .unwrap()
        .push(model("vendor/gpt-x", "local", "mock"));
    cfg
}

async fn get_with(
    gw: &Gateway,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = gw.client().get(gw.url(path)).bearer_auth(key);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn one_model_and_anthropic_shaped_lists() {
    let an = FakeUpstream::start(Kind::Anthropic).await;
    let gw = Gateway::start(config_with(&an)).await;
    let m = json_of(gw.get("/v1/models/mock", Some(GW_KEY)).await).await;
    assert_eq!(m["id"], "mock");
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], "ai-gateway");
    // A name with a slash.
    let m = json_of(gw.get("/v1/models/vendor/gpt-x", Some(GW_KEY)).await).await;
    assert_eq!(m["id"], "vendor/gpt-x");
    // Unknown, or not this key's: 404 model_not_found.
    for (path, key) in [("/v1/models/nope", GW_KEY), ("/v1/models/mock", GPT_KEY)] {
        let r = gw.get(path, Some(key)).await;
        assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    }
    // Anthropic clients (anthropic-version) get Anthropic's shapes.
    let av = [("anthropic-version", "2023-06-01")];
    let list = json_of(get_with(&gw, "/v1/models", GW_KEY, &av).await).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock", "claude-test", "vendor/gpt-x"]);
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], "mock");
    assert_eq!(list["last_id"], "vendor/gpt-x");
    let first = &list["data"][0];
    assert_eq!(first["type"], "model");
    assert_eq!(first["display_name"], "mock");
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    let one = json_of(get_with(&gw, "/v1/models/claude-test", GW_KEY, &av).await).await;
    assert_eq!(one["type"], "model");
    assert_eq!(one["id"], "claude-test");
    let r = get_with(&gw, "/v1/models/nope", GW_KEY, &av).await;
    assert_anthropic_error(r, 404, "not_found_error").await;
}

#[tokio::test]
async fn count_tokens_asks_anthropic_providers_and_counts_the_rest() {
    let an = FakeUpstream::start(Kind::Anthropic).await;
    let gw = Gateway::start(config_with(&an)).await;
    let body = json!({"model": "claude-test", "system": "be brief",
                      "messages": [{"role": "user", "content": "count these words please"}]});
    let r = gw
        .post("/v1/messages/count_tokens", Some(GW_KEY), &body)
        .await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "request-id").is_some());
    let v = json_of(r).await;
    let sent = an.only_request();
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.json()["model"], "claude-upstream");
    assert_eq!(
        v["input_tokens"],
        sent.json()["messages"].to_string().len() as u64
    );
    // A model of another format: counted by the gateway (o200k_base), never 0.
    let mut body = body;
    body["model"] = json!("mock");
    let short = json_of(
        gw.post("/v1/messages/count_tokens", Some(GW_KEY), &body)
            .await,
    )
    .await;
    body["messages"][0]["content"] =
        json!("count these words please, and these ones, and more of them too");
    let long = json_of(
        gw.post("/v1/messages/count_tokens", Some(GW_KEY), &body)
            .await,
    )
    .await;
    let (s, l) = (
        short["input_tokens"].as_u64().unwrap(),
        long["input_tokens"].as_u64().unwrap(),
    );
    assert!(s > 5 && l > s, "{s} {l}");
    // Errors in Anthropic's shape.
    let r = gw
        .post(
            "/v1/messages/count_tokens",
            Some(GW_KEY),
            &json!({"model": "nope", "messages": []}),
        )
        .await;
    assert_anthropic_error(r, 404, "not_found_error").await;
    let r = gw
        .post(
            "/v1/messages/count_tokens",
            Some(GPT_KEY),
            &json!({"model": "mock", "messages": []}),
        )
        .await;
    assert_anthropic_error(r, 403, "permission_error").await;
    let r = gw
        .post(
            "/v1/messages/count_tokens",
            Some(GW_KEY),
            &json!({"model": "mock"}),
        )
        .await;
    assert_anthropic_error(r, 400, "invalid_request_error").await;
}

#[tokio::test]
async fn messages_answers_carry_anthropic_request_id() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw
        .post("/v1/messages", Some(GW_KEY), &messages_body("mock", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "request-id"), header(&r, "x-request-id"));
    assert!(header(&r, "request-id").is_some());
    let r = gw.chat("mock", "hi").await;
    assert!(header(&r, "request-id").is_none());
}

#[tokio::test]
async fn cors_for_allowed_origins_only() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"cors_allowed_origins": ["https://app.example.com"]});
    let gw = Gateway::start(cfg).await;
    // Preflight: no key needed.
    let r = gw
        .client()
        .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        header(&r, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("authorization, content-type")
    );
    // The call itself, from the page.
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("origin", "https://app.example.com")
        .json(&chat_body("mock", "from a browser"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("x-request-id")
    );
    // Errors too (the page must read them).
    let r = gw
        .client()
        .get(gw.url("/v1/models"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(header(&r, "access-control-allow-origin").is_some());
    // Another origin: no CORS headers, and its preflight is not answered.
    let r = gw
        .client()
        .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 204);
    assert!(header(&r, "access-control-allow-origin").is_none());
    let r = gw.chat("mock", "no origin").await;
    assert!(header(&r, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_star_allows_any_origin() {
    let mut cfg = basic_config(None);
    cfg["server"] = json!({"cors_allowed_origins": ["*"]});
    let gw = Gateway::start(cfg).await;
    let r = gw
        .client()
        .get(gw.url("/v1/models"))
        .bearer_auth(GW_KEY)
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn openai_streams_always_carry_exact_usage_upstream() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let mut body = chat_body("gpt-test", "count my tokens exactly");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    // Asked upstream; not shown to a client that did not ask.
    let sent = up.only_request().json();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(!text.contains("\"usage\":{"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(joined_content(&sse_data(&text)), "count my tokens exactly");
    // The upstream's own count was settled: the fake's completion tokens are the echo's words.
    // (An estimate from the bytes would say otherwise: 6 output, ~20 input.)
    let mut counted = (0.0, 0.0);
    for _ in 0..100 {
        counted = (
            metric_sum(&gw, "ai_gateway_tokens_total", &["type=\"input\""]).await,
            metric_sum(&gw, "ai_gateway_tokens_total", &["type=\"output\""]).await,
        );
        if counted != (0.0, 0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counted, (4.0, 4.0));
    // A client that asks gets the chunk.
    body["stream_options"] = json!({"include_usage": true});
    let text = gw
        .post("/v1/chat/completions", Some(GW_KEY), &body)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"usage\":{"), "{text}");
}
