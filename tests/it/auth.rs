//! Gateway keys: the three header forms, 401 / 403 in both APIs' shapes, hashed keys, expiry, and
//! the open mode without an `auth` section.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_key_header_forms_are_accepted() {
    let gw = Gateway::start(basic_config(None)).await;
    let body = chat_body("mock", "hi");
    for (name, value) in [
        ("authorization", format!("Bearer {GW_KEY}")),
        ("x-api-key", GW_KEY.to_owned()),
        ("api-key", GW_KEY.to_owned()),
    ] {
        let r = gw
            .client()
            .post(gw.url("/v1/chat/completions"))
            .header(name, value)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "key in {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_key_is_401_openai_shape() {
    let gw = Gateway::start(basic_config(None)).await;
    let body = chat_body("mock", "hi");
    let r = gw.post("/v1/chat/completions", None, &body).await;
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;

    for wrong in [
        format!("Bearer {GW_KEY}x"),
        "Bearer ".to_owned(),
        "Basic Zm9vOmJhcg==".to_owned(),
        GW_KEY.to_owned(), // no Bearer prefix
    ] {
        let r = gw
            .client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", wrong.clone())
            .json(&body)
            .send()
            .await
            .unwrap();
        let e = assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
        assert!(!e["message"].as_str().unwrap().contains(GW_KEY), "{e}");
    }
    for path in ["/v1/embeddings", "/v1/models"] {
        let r = if path == "/v1/models" {
            gw.get(path, Some("sk-nope")).await
        } else {
            gw.post(path, Some("sk-nope"), &json!({"model":"mock","input":"x"}))
                .await
        };
        assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_in_query_string_is_not_accepted() {
    let gw = Gateway::start(basic_config(None)).await;
    for q in ["api_key", "key", "api-key"] {
        let r = gw
            .client()
            .post(gw.url(&format!("/v1/chat/completions?{q}={GW_KEY}")))
            .json(&chat_body("mock", "hi"))
            .send()
            .await
            .unwrap();
        assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_endpoint_answers_auth_errors_in_anthropic_shape() {
    let gw = Gateway::start(basic_config(None)).await;
    let body = messages_body("mock", "hi");
    let r = gw.post("/v1/messages", None, &body).await;
    assert_anthropic_error(r, 401, "authentication_error").await;
    let r = gw
        .client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "sk-ant-wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_anthropic_error(r, 401, "authentication_error").await;
    // A key that may not use the model: 403 permission_error, Anthropic's shape.
    let r = gw
        .client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", GPT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_anthropic_error(r, 403, "permission_error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_outside_key_globs_is_403() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GPT_KEY),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    let e = assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
    assert!(e["message"].as_str().unwrap().contains("mock"), "{e}");
    let r = gw
        .post(
            "/v1/embeddings",
            Some(GPT_KEY),
            &json!({"model": "mock", "input": "x"}),
        )
        .await;
    assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_key_may_use_matching_models() {
    let cfg = config(
        vec![mock_provider("local")],
        vec![
            model("gpt-fast", "local", "mock"),
            model("mock", "local", "mock"),
        ],
    );
    let gw = Gateway::start(cfg).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GPT_KEY),
            &chat_body("gpt-fast", "hi"),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_sha256_works_and_plaintext_is_not_needed() {
    let secret = "sk-gw-hashed-only-7777";
    let digest = hex_sha256(secret);
    let mut cfg = basic_config(None);
    cfg["auth"] = json!({"keys": [{"name": "hashed", "key_sha256": digest, "models": ["mock"]}]});
    let gw = Gateway::start(cfg).await;
    let file = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(!file.contains(secret));
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(secret),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The digest itself is not a key.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(&digest),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_key_is_401_and_future_expiry_works() {
    let mut cfg = basic_config(None);
    cfg["auth"] = json!({"keys": [
        {"name": "old", "key": "sk-gw-expired-1", "expires_at": "2020-01-01T00:00:00Z"},
        {"name": "new", "key": "sk-gw-current-2", "expires_at": "2999-01-01T00:00:00Z"},
    ]});
    let gw = Gateway::start(cfg).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-gw-expired-1"),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-gw-current-2"),
            &chat_body("mock", "hi"),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_section_serves_without_keys() {
    let mut cfg = basic_config(None);
    cfg.as_object_mut().unwrap().remove("auth");
    let gw = Gateway::start(cfg).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            None,
            &chat_body("mock", "open door"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "open door"
    );
    let r = gw.get("/v1/models", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["data"][0]["id"], "mock");
    // The operator is warned at start.
    gw.wait_log("WARN").await;
}
