//! Upstream failures: caller faults passed back, retries, 502 after every attempt failed,
//! per-attempt timeouts, the whole-request deadline, connect errors and fallbacks.

use serde_json::json;

use crate::support::*;

fn openai_error(msg: &str, ty: &str) -> String {
    json!({"error": {"message": msg, "type": ty, "param": null, "code": null}}).to_string()
}

fn with_retries(mut cfg: serde_json::Value, retries: u32) -> serde_json::Value {
    cfg["resilience"]["retries"] = json!(retries);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_400_is_passed_back_and_not_retried() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Status(
        400,
        openai_error(
            "Invalid value for 'temperature': must be <= 2.",
            "invalid_request_error",
        ),
    ));
    let gw = Gateway::start(with_retries(basic_config(Some(&up)), 2)).await;
    let r = gw.chat("gpt-test", "hi").await;
    let e = assert_openai_error(r, 400, "invalid_request_error", None).await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Invalid value for 'temperature'"),
        "the upstream's message is passed back: {e}"
    );
    assert_eq!(up.request_count(), 1, "a caller's mistake is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_500_twice_then_ok_takes_three_attempts() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([
        Fault::Status(500, openai_error("boom", "server_error")),
        Fault::Status(500, openai_error("boom again", "server_error")),
    ]);
    let gw = Gateway::start(with_retries(basic_config(Some(&up)), 2)).await;
    let r = gw.chat("gpt-test", "third time").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("3"));
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "third time"
    );
    assert_eq!(up.request_count(), 3);
    // Every attempt carried the same body.
    let bodies: Vec<_> = up.requests().into_iter().map(|r| r.body).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_429_with_retry_after_is_retried() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::StatusWith(
        429,
        vec![("retry-after", "0".to_owned())],
        openai_error("Rate limit reached", "requests"),
    )]);
    let gw = Gateway::start(with_retries(basic_config(Some(&up)), 1)).await;
    let r = gw.chat("gpt-test", "hi").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_always_500_is_502_without_the_provider_key() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Status(
        500,
        openai_error(
            &format!("internal error while using key {PROVIDER_KEY}"),
            "server_error",
        ),
    ));
    let gw = Gateway::start(with_retries(basic_config(Some(&up)), 2)).await;
    let r = gw.chat("gpt-test", "hi").await;
    let e = assert_openai_error(r, 502, "upstream_error", None).await;
    let msg = e["message"].as_str().unwrap();
    assert!(
        !msg.contains(PROVIDER_KEY),
        "the provider key leaked: {msg}"
    );
    assert!(
        !msg.contains("upstream-secret"),
        "part of the provider key leaked: {msg}"
    );
    assert!(
        msg.contains("500"),
        "the last upstream status is named: {msg}"
    );
    assert_eq!(up.request_count(), 3, "1 attempt + 2 retries");
    // Streaming requests fail the same way before the first byte.
    let body = json!({"model": "gpt-test", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_openai_error(r, 502, "upstream_error", None).await;
}

/// A custom OpenAI-compatible server (vLLM, Ollama…) with a key in a form the sanitiser does not
/// recognise by its shape: echoed back by the upstream, it still must not reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_key_of_any_shape_is_not_echoed() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let key = "token-abc123";
    up.set_default(Fault::Status(
        500,
        openai_error(&format!("bad request with key {key}"), "server_error"),
    ));
    let mut p = openai_provider("fake", &up);
    p["api_key"] = json!(key);
    let cfg = with_retries(config(vec![p], vec![model("gpt-test", "fake", "m")]), 0);
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "hi").await;
    let e = assert_openai_error(r, 502, "upstream_error", None).await;
    assert!(!e["message"].as_str().unwrap().contains(key), "{e}");
    assert!(
        !gw.logs().contains(key),
        "the provider key reached the logs"
    );
}

/// An upstream 401/403 means the gateway's provider key is wrong: not the caller's fault, so not
/// passed back as if the caller's gateway key were invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_401_is_502_not_the_callers_401() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Status(
        401,
        openai_error(
            &format!("Incorrect API key provided: {PROVIDER_KEY}."),
            "invalid_request_error",
        ),
    ));
    let gw = Gateway::start(with_retries(basic_config(Some(&up)), 0)).await;
    let r = gw.chat("gpt-test", "hi").await;
    let e = assert_openai_error(r, 502, "upstream_error", None).await;
    assert!(!e["message"].as_str().unwrap().contains(PROVIDER_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_attempt_timeout_then_502_after_retries() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Hang);
    let mut p = openai_provider("fake", &up);
    p["timeout"] = json!("200ms");
    let cfg = with_retries(
        config(vec![p], vec![model("gpt-test", "fake", "upstream-model")]),
        1,
    );
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "hi").await;
    assert_openai_error(r, 502, "upstream_error", None).await;
    assert_eq!(up.request_count(), 2, "1 attempt + 1 retry, each timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_first_attempt_times_out_and_retry_succeeds() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::Delay(std::time::Duration::from_secs(3))]);
    let mut p = openai_provider("fake", &up);
    p["timeout"] = json!("300ms");
    let cfg = with_retries(
        config(vec![p], vec![model("gpt-test", "fake", "upstream-model")]),
        1,
    );
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "second try").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "second try"
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_timeout_overrides_provider_timeout() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Hang);
    let mut m = model("gpt-test", "fake", "upstream-model");
    m["timeout"] = json!("200ms");
    m["retries"] = json!(0);
    let cfg = config(vec![openai_provider("fake", &up)], vec![m]);
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "hi").await;
    assert_openai_error(r, 502, "upstream_error", None).await;
    assert_eq!(up.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_is_504() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Hang);
    let mut p = openai_provider("fake", &up);
    p["timeout"] = json!("30s");
    let mut cfg = with_retries(
        config(vec![p], vec![model("gpt-test", "fake", "upstream-model")]),
        0,
    );
    cfg["server"] = json!({"request_timeout": "1s"});
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "hi").await;
    assert_openai_error(r, 504, "timeout", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_is_504_in_anthropic_shape_on_messages() {
    let up = FakeUpstream::start(Kind::Anthropic).await;
    up.set_default(Fault::Hang);
    let mut p = anthropic_provider("fake", &up);
    p["timeout"] = json!("30s");
    let mut cfg = with_retries(
        config(
            vec![p],
            vec![model("claude-test", "fake", "claude-upstream")],
        ),
        0,
    );
    cfg["server"] = json!({"request_timeout": "1s"});
    let gw = Gateway::start(cfg).await;
    let r = gw
        .post(
            "/v1/messages",
            Some(GW_KEY),
            &messages_body("claude-test", "hi"),
        )
        .await;
    assert_anthropic_error(r, 504, "timeout_error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_error_is_502_after_retries() {
    let port = free_port(); // nothing listens there
    let p = json!({"name": "dead", "type": "openai", "base_url": format!("http://127.0.0.1:{port}/v1"),
        "api_key": PROVIDER_KEY, "connect_timeout": "1s"});
    let cfg = with_retries(config(vec![p], vec![model("gpt-test", "dead", "m")]), 1);
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "hi").await;
    let e = assert_openai_error(r, 502, "upstream_error", None).await;
    assert!(!e["message"].as_str().unwrap().contains(PROVIDER_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_model_serves_when_every_attempt_failed() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Status(
        503,
        openai_error("overloaded", "server_error"),
    ));
    let mut primary = model("gpt-test", "fake", "upstream-model");
    primary["fallbacks"] = json!(["mock"]);
    primary["retries"] = json!(1);
    let cfg = config(
        vec![openai_provider("fake", &up), mock_provider("local")],
        vec![primary, model("mock", "local", "mock")],
    );
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "via fallback").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("local"));
    assert_eq!(header(&r, "x-gateway-attempts"), Some("3"));
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "via fallback"
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_deployment_serves_after_first_fails() {
    let bad = FakeUpstream::start(Kind::OpenAi).await;
    bad.set_default(Fault::Status(500, openai_error("down", "server_error")));
    let good = FakeUpstream::start(Kind::OpenAi).await;
    let cfg = with_retries(
        config(
            vec![openai_provider("bad", &bad), openai_provider("good", &good)],
            vec![json!({"name": "gpt-test", "deployments": [
                {"provider": "bad", "model": "m-bad", "priority": 0},
                {"provider": "good", "model": "m-good", "priority": 1},
            ]})],
        ),
        1,
    );
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "hi").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("good"));
    assert_eq!(header(&r, "x-gateway-deployment-model"), Some("m-good"));
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    assert_eq!(good.only_request().json()["model"], "m-good");
}
