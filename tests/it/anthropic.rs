//! `/v1/messages`: pass-through to an Anthropic upstream, and (once translation lands) Anthropic
//! ↔ OpenAI translation both ways, plain and streamed.

use serde_json::{Value, json};

use crate::support::*;

/// Model `claude-test` on an Anthropic upstream (upstream model `claude-upstream`), `gpt-test` on
/// an OpenAI upstream, `mock` on the mock provider.
fn mixed_config(anth: &FakeUpstream, oai: &FakeUpstream) -> Value {
    config(
        vec![
            anthropic_provider("anth", anth),
            openai_provider("oai", oai),
            mock_provider("local"),
        ],
        vec![
            model("claude-test", "anth", "claude-upstream"),
            model("gpt-test", "oai", "upstream-model"),
            model("mock", "local", "mock"),
        ],
    )
}

async fn setup() -> (FakeUpstream, FakeUpstream, Gateway) {
    let anth = FakeUpstream::start(Kind::Anthropic).await;
    let oai = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(mixed_config(&anth, &oai)).await;
    (anth, oai, gw)
}

async fn post_messages(gw: &Gateway, body: impl Into<reqwest::Body>) -> reqwest::Response {
    gw.client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", GW_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn anthropic_text(v: &Value) -> String {
    v["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect()
}

/// Checks an Anthropic event stream's order and returns (joined text, final output_tokens).
fn check_anthropic_stream(body: &str) -> (String, Option<u64>) {
    let events = sse_events(body);
    let names: Vec<&str> = events
        .iter()
        .map(|(e, _)| e.as_deref().unwrap_or(""))
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{body}");
    assert_eq!(names.last(), Some(&"message_stop"), "{body}");
    assert!(names.contains(&"content_block_start"), "{body}");
    assert!(names.contains(&"content_block_stop"), "{body}");
    let md = names
        .iter()
        .position(|n| *n == "message_delta")
        .expect("message_delta");
    assert_eq!(
        md,
        names.len() - 2,
        "message_delta comes right before message_stop"
    );
    let mut text = String::new();
    let mut out_tokens = None;
    for (name, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap_or_else(|_| panic!("event data {data}"));
        assert_eq!(
            Some(v["type"].as_str().unwrap()),
            name.as_deref(),
            "type matches event name"
        );
        if name.as_deref() == Some("content_block_delta") && v["delta"]["type"] == "text_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap());
        }
        if name.as_deref() == Some("message_delta") {
            out_tokens = v["usage"]["output_tokens"].as_u64();
        }
    }
    (text, out_tokens)
}

// ------------------------------------------------------------------ pass-through (no translation)

const MESSAGES_BODY: &str = r#"{"model":"claude-test", "max_tokens": 256,
  "system": [{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
  "messages":[{"role":"user","content":[{"type":"text","text":"hello claude"},
    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}],
  "temperature": 0.70, "top_k": 5, "stop_sequences": ["\n\nHuman:"],
  "metadata": {"user_id": "u-1"},
  "tools":[{"name":"lookup","description":"d","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}}],
  "tool_choice":{"type":"auto"}
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_passthrough_byte_for_byte_with_provider_key() {
    let (anth, oai, gw) = setup().await;
    let r = post_messages(&gw, MESSAGES_BODY).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("anth"));
    assert_eq!(
        header(&r, "x-gateway-deployment-model"),
        Some("claude-upstream")
    );
    assert_eq!(header(&r, "x-gateway-attempts"), Some("1"));
    let v = json_of(r).await;
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(anthropic_text(&v), "hello claude");
    assert_eq!(v["usage"]["output_tokens"], 2);

    let got = anth.only_request();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        MESSAGES_BODY.replacen("\"claude-test\"", "\"claude-upstream\"", 1)
    );
    assert_eq!(got.header("x-api-key"), Some(PROVIDER_KEY));
    assert!(got.header("anthropic-version").is_some());
    for (name, value) in &got.headers {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains(GW_KEY),
            "caller key in upstream header {name}"
        );
    }
    assert_eq!(oai.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stream_passthrough() {
    let (anth, _oai, gw) = setup().await;
    let body = json!({"model": "claude-test", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "stream this text"}]});
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let (joined, out) = check_anthropic_stream(&text);
    assert_eq!(joined, "stream this text");
    assert_eq!(out, Some(3));
    // The upstream's event sequence arrives as it was sent, ping included.
    let names: Vec<String> = sse_events(&text)
        .into_iter()
        .filter_map(|(e, _)| e)
        .collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(anth.only_request().json()["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_upstream_400_passed_back_in_anthropic_shape() {
    let (anth, _oai, gw) = setup().await;
    anth.set_default(Fault::Status(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "max_tokens: 999999 > 8192, which is the maximum"}})
        .to_string(),
    ));
    let r = post_messages(&gw, messages_body("claude-test", "hi").to_string()).await;
    let e = assert_anthropic_error(r, 400, "invalid_request_error").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens: 999999"),
        "{e}"
    );
    assert_eq!(anth.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_upstream_529_overloaded_is_retried() {
    let (anth, _oai, gw) = setup().await;
    anth.push([Fault::Status(
        529,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            .to_string(),
    )]);
    let r = post_messages(&gw, messages_body("claude-test", "again").to_string()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    assert_eq!(anthropic_text(&json_of(r).await), "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_upstream_always_failing_is_502_api_error() {
    let (anth, _oai, gw) = setup().await;
    anth.set_default(Fault::Status(
        500,
        json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
            .to_string(),
    ));
    let r = post_messages(&gw, messages_body("claude-test", "hi").to_string()).await;
    assert_anthropic_error(r, 502, "api_error").await;
    assert_eq!(anth.request_count(), 3);
}

// ------------------------------------------------------------------ translation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_to_anthropic_upstream() {
    let (anth, _oai, gw) = setup().await;
    let body = json!({"model": "claude-test", "max_tokens": 100, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "translated hello"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("anth"));
    let v = json_of(r).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "translated hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert!(v["usage"]["prompt_tokens"].as_u64().is_some());
    assert!(v["usage"]["total_tokens"].as_u64().is_some());

    let up = anth.only_request();
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.header("x-api-key"), Some(PROVIDER_KEY));
    let req = up.json();
    assert_eq!(req["model"], "claude-upstream");
    assert_eq!(req["max_tokens"], 100);
    let sys = &req["system"];
    assert!(
        sys == "be brief" || sys[0]["text"] == "be brief",
        "system message moved to `system`: {req}"
    );
    let msgs = req["messages"].as_array().unwrap();
    assert!(msgs.iter().all(|m| m["role"] != "system"), "{req}");
    assert_eq!(msgs.last().unwrap()["role"], "user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_to_anthropic_upstream_gets_a_default_max_tokens() {
    let (anth, _oai, gw) = setup().await;
    let r = gw.chat("claude-test", "no limit given").await;
    assert_eq!(r.status(), 200);
    assert!(
        anth.only_request().json()["max_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
}

/// An Anthropic pass-through stream the upstream ends cleanly mid-answer (no `message_delta`,
/// no `message_stop`) ends with Anthropic's error event; the breaker counts the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stream_cut_cleanly_mid_answer_ends_with_error_event() {
    let anth = FakeUpstream::start(Kind::Anthropic).await;
    let oai = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = mixed_config(&anth, &oai);
    cfg["resilience"]["circuit_breaker"] = json!({"failure_threshold": 1, "open_for": "60s"});
    let gw = Gateway::start(cfg).await;
    // message_start, content_block_start, ping and two words; then a clean end.
    anth.push([Fault::Cut(5)]);
    let body = json!({"model": "claude-test", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "a b c d"}]});
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{text}");
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "upstream_error", "{v}");
    assert_eq!(
        v["error"]["message"],
        "the upstream stream ended before the message was complete"
    );
    assert!(
        !events
            .iter()
            .any(|(n, _)| n.as_deref() == Some("message_stop")),
        "{text}"
    );
    // The failure opened the circuit (threshold 1): the next call is not sent upstream.
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
    assert_eq!(anth.request_count(), 1);
}

/// A stream that ends after `message_delta` (the stop reason) is complete: the gateway adds the
/// `message_stop` the upstream did not send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stream_ending_after_message_delta_is_completed() {
    let (anth, _oai, gw) = setup().await;
    // Every event of "a b c" but the last (message_stop).
    anth.push([Fault::Cut(8)]);
    let body = json!({"model": "claude-test", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "a b c"}]});
    let r = post_messages(&gw, body.to_string()).await;
    let text = r.text().await.unwrap();
    let (joined, _) = check_anthropic_stream(&text);
    assert_eq!(joined, "a b c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_streams_from_anthropic_upstream_with_usage() {
    let (_anth, _oai, gw) = setup().await;
    let body = json!({"model": "claude-test", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "one two three"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let datas = sse_data(&text);
    assert_eq!(datas.last().unwrap(), "[DONE]", "{text}");
    assert_eq!(joined_content(&datas), "one two three");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{text}"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"),
        "a finish_reason stop chunk: {text}"
    );
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 3, "{text}");
    assert!(usage["prompt_tokens"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_tools_translated_to_anthropic_and_back() {
    let (anth, _oai, gw) = setup().await;
    let body = json!({"model": "claude-test", "messages": [{"role": "user", "content": "find cats"}],
        "tools": [{"type": "function", "function": {"name": "search", "description": "Search",
            "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}}],
        "tool_choice": "required"});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "search");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"input": "find cats"}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let req = anth.only_request().json();
    assert_eq!(req["tools"][0]["name"], "search");
    assert_eq!(req["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(req["tool_choice"]["type"], "any");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_client_to_openai_upstream() {
    let (_anth, oai, gw) = setup().await;
    let body = json!({"model": "gpt-test", "max_tokens": 64, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "to openai"}]}]});
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("oai"));
    let v = json_of(r).await;
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(anthropic_text(&v), "to openai");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 2);
    assert!(v["usage"]["input_tokens"].as_u64().is_some());

    let up = oai.only_request();
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(
        up.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    let req = up.json();
    assert_eq!(req["model"], "upstream-model");
    let msgs = req["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs.last().unwrap()["role"], "user");
    assert!(
        req["max_tokens"] == 64 || req["max_completion_tokens"] == 64,
        "max_tokens carried over: {req}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_client_streams_from_openai_upstream() {
    let (_anth, _oai, gw) = setup().await;
    let body = json!({"model": "gpt-test", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "stream to anthropic"}]});
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let (joined, out) = check_anthropic_stream(&text);
    assert_eq!(joined, "stream to anthropic");
    assert_eq!(out, Some(3), "output tokens in message_delta: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_client_to_mock() {
    let (_anth, _oai, gw) = setup().await;
    let r = post_messages(&gw, messages_body("mock", "mock via messages").to_string()).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(anthropic_text(&v), "mock via messages");
    let body = json!({"model": "mock", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "mock stream"}]});
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 200);
    let (joined, _) = check_anthropic_stream(&r.text().await.unwrap());
    assert_eq!(joined, "mock stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_tools_translated_to_openai_and_back() {
    let (_anth, oai, gw) = setup().await;
    let body = json!({"model": "gpt-test", "max_tokens": 64,
        "messages": [{"role": "user", "content": "find dogs"}],
        "tools": [{"name": "search", "description": "Search",
            "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}}}],
        "tool_choice": {"type": "any"}});
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    let block = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("a tool_use block: {v}"))
        .clone();
    assert_eq!(block["name"], "search");
    assert_eq!(block["input"], json!({"input": "find dogs"}));
    assert_eq!(v["stop_reason"], "tool_use");
    let req = oai.only_request().json();
    assert_eq!(req["tools"][0]["type"], "function");
    assert_eq!(req["tools"][0]["function"]["name"], "search");
    assert_eq!(req["tool_choice"], "required");
}

/// `response_format: json_schema` towards Anthropic: sent as a forced tool; its call comes back as
/// the message's JSON content with finish reason `stop`, whole and streamed. What Anthropic
/// cannot take is named in `x-gateway-dropped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_json_schema_through_a_forced_anthropic_tool_and_dropped_header() {
    let (anth, _oai, gw) = setup().await;
    let body = json!({"model": "claude-test", "messages": [{"role": "user", "content": "find cats"}],
        "seed": 7, "logprobs": true,
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
            "schema": {"type": "object", "properties": {"input": {"type": "string"}}}}}});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-dropped"), Some("logprobs,seed"));
    let v = json_of(r).await;
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(content).unwrap(),
        json!({"input": "find cats"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    let req = anth.only_request().json();
    assert_eq!(req["tools"][0]["name"], "answer");
    assert_eq!(
        req["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );
    assert!(req.get("seed").is_none() && req.get("response_format").is_none());

    let mut body = body;
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-dropped"), Some("logprobs,seed"));
    let text = r.text().await.unwrap();
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&content).unwrap(),
        json!({"input": "find cats"}),
        "{text}"
    );
    assert!(!text.contains("tool_calls"), "{text}");
    assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
}

/// An Anthropic client's `thinking` reaches an OpenAI upstream as `reasoning_effort`; `top_k`,
/// which OpenAI has no word for, is named in `x-gateway-dropped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_thinking_becomes_reasoning_effort_and_top_k_is_named() {
    let (_anth, oai, gw) = setup().await;
    let body = json!({"model": "gpt-test", "max_tokens": 20000, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "messages": [{"role": "user", "content": "think"}]});
    let r = post_messages(&gw, body.to_string()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-dropped"), Some("top_k"));
    let req = oai.only_request().json();
    assert_eq!(req["reasoning_effort"], "medium");
    assert!(req.get("top_k").is_none() && req.get("thinking").is_none());
}
