//! Plain chat completions: the mock provider, and pass-through to an OpenAI upstream.

use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_via_mock_echoes_last_user_message() {
    let gw = Gateway::start(basic_config(None)).await;
    let body = serde_json::json!({"model": "mock", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "hello gateway world"},
    ]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("local"));
    assert_eq!(header(&r, "x-gateway-deployment-model"), Some("mock"));
    assert_eq!(header(&r, "x-gateway-attempts"), Some("1"));
    assert!(header(&r, "x-request-id").is_some_and(|v| !v.is_empty()));
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let v = json_of(r).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "hello gateway world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_via_mock_forced_tool_call() {
    let gw = Gateway::start(basic_config(None)).await;
    let body = serde_json::json!({"model": "mock",
        "messages": [{"role": "user", "content": "weather in Paris"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}}],
        "tool_choice": "required"});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, serde_json::json!({"input": "weather in Paris"}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

/// A body exercising every pass-through field, written with unusual spacing, number forms and
/// escapes, so any re-serialisation by the gateway would show.
const RICH_BODY: &str = r#"{ "model" :  "gpt-test",
  "messages": [
    {"role":"system","content":"be brief"},
    {"role":"user","content":[
      {"type":"text","text":"what is in this image? caf\u00e9"},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==","detail":"low"}}]}
  ],
  "tools":[{"type":"function","function":{"name":"lookup","description":"Look it up","parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}],
  "tool_choice":{"type":"function","function":{"name":"lookup"}},
  "response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}}}}},
  "n": 2, "stop": ["\n\n", "END"], "seed": 42, "logprobs": true, "top_logprobs": 3,
  "temperature": 0.50, "max_completion_tokens": 100,
  "x_vendor_extension": {"keep": [1, 2.50, 1e3, "\ud83d\ude00"]}
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_passthrough_is_byte_for_byte_except_model() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("content-type", "application/json")
        .body(RICH_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(header(&r, "x-gateway-provider"), Some("fake"));
    assert_eq!(
        header(&r, "x-gateway-deployment-model"),
        Some("upstream-model")
    );
    assert_eq!(header(&r, "x-gateway-attempts"), Some("1"));

    let got = up.only_request();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/v1/chat/completions");
    let expected = RICH_BODY.replacen("\"gpt-test\"", "\"upstream-model\"", 1);
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        expected,
        "the upstream must get the client's bytes with only model replaced"
    );
    // Each pass-through field arrives unchanged (also checked structurally).
    let sent: Value = serde_json::from_str(RICH_BODY).unwrap();
    let recv = got.json();
    for f in [
        "tools",
        "tool_choice",
        "response_format",
        "n",
        "stop",
        "seed",
        "logprobs",
        "top_logprobs",
        "messages",
        "x_vendor_extension",
    ] {
        assert_eq!(recv[f], sent[f], "field {f}");
    }
    assert_eq!(recv["model"], "upstream-model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_gets_provider_key_never_the_callers() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(basic_config(Some(&up))).await;
    // The caller's key in every form a client might send it.
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("x-api-key", GW_KEY)
        .header("api-key", GW_KEY)
        .json(&chat_body("gpt-test", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.only_request();
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    for (name, value) in &got.headers {
        let v = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !v.contains(GW_KEY),
            "the caller's gateway key reached the upstream in header {name}"
        );
    }
    assert!(!String::from_utf8_lossy(&got.body).contains(GW_KEY));
    assert!(
        got.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    // One `host`, the provider's authority (the gateway sets it; the client would add its own).
    let hosts: Vec<_> = got.headers.get_all("host").iter().collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].to_str().unwrap(), up.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answer_passes_through_unchanged() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let answer = r#"{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"upstream-model","choices":[{"index":0,"message":{"role":"assistant","content":"caf\u00e9 2.50"},"logprobs":{"content":[]},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"b"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"x_extra":1.0}"#;
    up.push([Fault::Body(answer.to_owned())]);
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let r = gw.chat("gpt-test", "hi").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_provider_headers_are_sent() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut p = openai_provider("fake", &up);
    p["headers"] = serde_json::json!({"x-org-tag": "team-a"});
    let cfg = config(vec![p], vec![model("gpt-test", "fake", "upstream-model")]);
    let gw = Gateway::start(cfg).await;
    let r = gw.chat("gpt-test", "hi").await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.only_request().header("x-org-tag"), Some("team-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_sent_upstream() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(basic_config(Some(&up))).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("traceparent", tp)
        .json(&chat_body("gpt-test", "traced"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.only_request().header("traceparent"), Some(tp));
}

/// Providers are reached with hyper's client directly, unless the environment's proxy settings
/// cover their host: then through the proxy (reqwest's client). Here the fake upstream plays an
/// HTTP proxy (it answers the absolute-form request line), and the provider's host does not
/// even resolve, so an answer proves the request went through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_covered_by_the_environments_proxy_is_reached_through_it() {
    let proxy = FakeUpstream::start(Kind::OpenAi).await;
    let far = serde_json::json!({"name": "far", "type": "openai",
        "base_url": "http://upstream.invalid/v1", "api_key": PROVIDER_KEY});
    let cfg = config(vec![far], vec![model("gpt-far", "far", "upstream-model")]);
    let proxy_url = format!("http://{}", proxy.addr);
    let gw = Gateway::start_with_env(
        cfg,
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "localhost"),
        ],
    )
    .await;
    gw.wait_log("through a proxy").await;
    let r = gw.chat("gpt-far", "via the proxy").await;
    assert_eq!(r.status(), 200);
    let seen = proxy.only_request();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.header("host"), Some("upstream.invalid"));
    assert_eq!(seen.json()["model"], "upstream-model");
}

/// A process that sees one CPU runs on a current-thread runtime (main.rs): chat, a stream, an
/// async job (the embedded queue's blocking work) and the metrics all work there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cpu_runs_on_the_current_thread_runtime() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start_on_one_cpu(crate::jobs::jobs_config(&up)).await;
    gw.wait_log("async runtime: current-thread").await;
    let r = gw.chat("mock", "hello from one cpu").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "hello from one cpu"
    );
    let mut stream = chat_body("gpt-test", "streamed on one cpu");
    stream["stream"] = serde_json::json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &stream).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let job = crate::jobs::submit_ok(&gw, &chat_body("gpt-test", "queued"), &[]).await;
    let id = job["id"].as_str().unwrap();
    let done = crate::jobs::wait_job(&gw, id, std::time::Duration::from_secs(20)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let r = gw.get("/metrics", None).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("ai_gateway_requests_total")
    );
}
