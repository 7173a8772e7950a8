//! Presets (OpenAI-compatible services with their URL, key variable and quirks), wildcard
//! models, the built-in price list and the upstream 404 on a misconfigured path.

use serde_json::{Value, json};

use crate::support::upstream::Recorded;
use crate::support::*;

fn last(up: &FakeUpstream) -> Recorded {
    up.requests().pop().expect("a request reached the upstream")
}

#[tokio::test]
async fn a_preset_takes_its_key_from_its_variable_and_strips_what_the_service_refuses() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let cfg = config(
        vec![
            json!({"name": "ds", "type": "deepseek", "base_url": up.base_url()}),
            json!({"name": "gq", "type": "groq", "base_url": up.base_url(), "api_key": "groq-key-0007"}),
        ],
        vec![
            model("deepseek-chat", "ds", "deepseek-chat"),
            model("llama", "gq", "llama-3.3-70b-versatile"),
        ],
    );
    let gw = Gateway::start_with_env(cfg, &[("DEEPSEEK_API_KEY", "ds-env-key-0008")]).await;
    let r = gw.chat("deepseek-chat", "hi").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-dropped"), None);
    assert_eq!(
        last(&up).header("authorization"),
        Some("Bearer ds-env-key-0008")
    );

    let body = json!({"model": "llama", "logprobs": true, "top_logprobs": 2, "n": 1,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-gateway-dropped"),
        Some("logprobs,top_logprobs")
    );
    let sent = last(&up).json();
    assert!(
        sent.get("logprobs").is_none() && sent.get("n").is_none(),
        "{sent}"
    );
    assert_eq!(sent["model"], "llama-3.3-70b-versatile");
    // The cost came from the built-in price list (the deployment gives none).
    let r = gw.chat("deepseek-chat", "priced").await;
    let cost: f64 = header(&r, "x-gateway-cost-usd").unwrap().parse().unwrap();
    assert!(cost > 0.0);
}

#[tokio::test]
async fn a_missing_preset_key_is_a_config_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, "providers:\n  - name: ds\n    type: deepseek\n").unwrap();
    let out = crate::support::gateway::command()
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("DEEPSEEK_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("providers[0]") && err.contains("DEEPSEEK_API_KEY"),
        "{err}"
    );
}

#[tokio::test]
async fn wildcard_models_serve_every_name_under_their_prefix() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let cfg = config(
        vec![openai_provider("fake", &up)],
        vec![
            json!({"name": "fake/*", "deployments": [{"provider": "fake", "model": "*"}]}),
            model("fake/pinned", "fake", "pinned-upstream"),
        ],
    );
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("fake/gpt-4.1-mini", "wild").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-gateway-deployment-model"),
        Some("gpt-4.1-mini")
    );
    assert_eq!(last(&up).json()["model"], "gpt-4.1-mini");
    // Prices of the upstream model come from the list.
    assert!(header(&r, "x-gateway-cost-usd").is_some());
    // An exact name wins.
    gw.chat("fake/pinned", "exact").await;
    assert_eq!(last(&up).json()["model"], "pinned-upstream");
    // Nothing after the prefix, or a name that cannot be an upstream model: no such model.
    for bad in ["fake/", "fake/../etc", "other/x"] {
        let r = gw.chat(bad, "x").await;
        assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    }
    // A key limited to gpt-* may not use them; /v1/models lists what a key may call.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GPT_KEY),
            &chat_body("fake/gpt-4o", "x"),
        )
        .await;
    assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
    let list = json_of(gw.get("/v1/models", Some(GW_KEY)).await).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fake/*", "fake/pinned"]);
    let list = json_of(gw.get("/v1/models", Some(GPT_KEY)).await).await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn a_404_on_the_path_names_the_url_and_the_likely_fix() {
    // A server that answers an unknown path with an HTML 404, as web servers do; the base URL
    // lacks /v1, so the gateway calls {addr}/chat/completions, which is not there.
    let up = crate::support::native::FakeNative::start("k").await;
    let cfg = config(
        vec![json!({"name": "local", "type": "vllm", "base_url": format!("http://{}", up.addr)})],
        vec![model("m", "local", "served-model")],
    );
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("m", "x").await;
    let e = assert_openai_error(r, 502, "upstream_error", None).await;
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("http://{}/chat/completions", up.addr)),
        "{msg}"
    );
    assert!(msg.contains(&format!("\"http://{}/v1\"", up.addr)), "{msg}");
    // A 404 about the model stays the caller's 404.
    let up2 = FakeUpstream::start(Kind::OpenAi).await;
    up2.push([Fault::Status(
        404,
        json!({"error": {"message": "The model `served-model` does not exist", "type": "invalid_request_error", "code": "model_not_found"}}).to_string(),
    )]);
    let cfg = config(
        vec![openai_provider("o", &up2)],
        vec![model("m", "o", "served-model")],
    );
    let gw2 = Gateway::start(cfg).await;
    let e = assert_openai_error(gw2.chat("m", "x").await, 404, "invalid_request_error", None).await;
    assert!(
        e["message"].as_str().unwrap().contains("does not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn reasoning_fields_are_carried_as_reasoning_content() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::Body(
        json!({"id": "gen-1", "object": "chat.completion", "created": 1, "model": "x",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "4", "reasoning": "2+2"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        .to_string(),
    )]);
    let cfg = config(
        vec![
            json!({"name": "or", "type": "openrouter", "base_url": up.base_url(), "api_key": "k"}),
        ],
        vec![model("r1", "or", "deepseek/deepseek-r1")],
    );
    let gw = Gateway::start(cfg).await;
    let v: Value = json_of(gw.chat("r1", "2+2?").await).await;
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "2+2");
}
