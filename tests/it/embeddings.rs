//! Embeddings (string and array input, float and base64) and `GET /v1/models`.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_embeddings_string_and_array() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "mock", "input": "hello"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("local"));
    let v = json_of(r).await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);
    let e1 = v["data"][0]["embedding"].as_array().unwrap().clone();
    assert!(!e1.is_empty() && e1.iter().all(Value::is_f64));

    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "mock", "input": ["hello", "world"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    // Deterministic: the same input gives the same vector.
    assert_eq!(data[0]["embedding"].as_array().unwrap(), &e1);
    assert!(v["usage"]["prompt_tokens"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_embeddings_base64() {
    let gw = Gateway::start(basic_config(None)).await;
    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "mock", "input": "hello", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    let s = v["data"][0]["embedding"].as_str().expect("base64 string");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    assert_eq!(bytes.len() % 4, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_embeddings_pass_through() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = basic_config(Some(&up));
    cfg["models"]
        .as_array_mut()
        .unwrap()
        .push(model("text-emb", "fake", "text-embedding-3-small"));
    let gw = Gateway::start(cfg).await;

    // String input.
    let raw = r#"{"input" : "the quick fox",  "model":"text-emb", "dimensions": 3}"#;
    let r = gw.post_raw("/v1/embeddings", Some(GW_KEY), raw).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-gateway-deployment-model"),
        Some("text-embedding-3-small")
    );
    let v = json_of(r).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let got = up.requests().pop().unwrap();
    assert_eq!(got.path, "/v1/embeddings");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        raw.replacen("\"text-emb\"", "\"text-embedding-3-small\"", 1)
    );

    // Array input.
    let raw = r#"{"model":"text-emb","input":["a","bb","ccc"],"user":"u-1"}"#;
    let r = gw.post_raw("/v1/embeddings", Some(GW_KEY), raw).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["data"].as_array().unwrap().len(), 3);
    let got = up.requests().pop().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        raw.replacen("\"text-emb\"", "\"text-embedding-3-small\"", 1)
    );

    // base64: the request field and the upstream's answer bytes pass through unchanged.
    let answer = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AACAPgAAAL8AAEBA"}],"model":"text-embedding-3-small","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
    up.push([Fault::Body(answer.to_owned())]);
    let raw = r#"{"model":"text-emb","input":"x","encoding_format":"base64"}"#;
    let r = gw.post_raw("/v1/embeddings", Some(GW_KEY), raw).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), answer);
    assert_eq!(
        up.requests().pop().unwrap().json()["encoding_format"],
        "base64"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_only_what_the_key_may_use() {
    let cfg = config(
        vec![mock_provider("local")],
        vec![
            model("gpt-4o-mini", "local", "mock"),
            model("claude-haiku", "local", "mock"),
            model("gpt-4o", "local", "mock"),
            model("mock", "local", "mock"),
        ],
    );
    let gw = Gateway::start(cfg).await;

    let check_shape = |v: &Value| -> Vec<String> {
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2, "exactly object and data: {v}");
        assert_eq!(v["object"], "list");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let o = m.as_object().unwrap();
                let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
                keys.sort_unstable();
                assert_eq!(keys, ["created", "id", "object", "owned_by"], "{m}");
                assert_eq!(m["object"], "model");
                assert_eq!(m["owned_by"], "ai-gateway");
                assert!(m["created"].as_u64().is_some(), "{m}");
                m["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };

    let r = gw.get("/v1/models", Some(GW_KEY)).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let mut all = check_shape(&json_of(r).await);
    all.sort();
    assert_eq!(all, ["claude-haiku", "gpt-4o", "gpt-4o-mini", "mock"]);

    let r = gw.get("/v1/models", Some(GPT_KEY)).await;
    assert_eq!(r.status(), 200);
    let mut gpt = check_shape(&json_of(r).await);
    gpt.sort();
    assert_eq!(gpt, ["gpt-4o", "gpt-4o-mini"]);

    let r = gw.get("/v1/models", None).await;
    assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
}
