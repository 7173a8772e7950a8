//! `type: gemini` end to end: OpenAI and Anthropic clients through the gateway to an in-process
//! server speaking Google's Gemini API (JSON, SSE with `\r\n\r\n`, batchEmbedContents).

use serde_json::{Value, json};

use crate::support::native::{FakeNative, NativeFault};
use crate::support::*;

async fn setup() -> (FakeNative, Gateway) {
    let up = FakeNative::start(PROVIDER_KEY).await;
    let cfg = config(
        vec![
            json!({"name": "gem", "type": "gemini", "base_url": up.base_url(), "api_key": PROVIDER_KEY}),
        ],
        vec![
            model("gemini-flash", "gem", "gemini-2.5-flash"),
            model("gem-embed", "gem", "gemini-embedding-001"),
        ],
    );
    let gw = Gateway::start(cfg).await;
    (up, gw)
}

#[tokio::test]
async fn openai_chat_reaches_gemini_and_comes_back_as_chat() {
    let (up, gw) = setup().await;
    let body = json!({"model": "gemini-flash", "max_tokens": 50, "temperature": 0.2, "logprobs": true,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there gemini"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-provider"), Some("gem"));
    assert_eq!(header(&r, "x-gateway-dropped"), Some("logprobs"));
    let v = json_of(r).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "hello there gemini");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let sent = up.last();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some(PROVIDER_KEY));
    assert_eq!(sent.header("authorization"), None);
    let g = sent.json();
    assert_eq!(g["systemInstruction"]["parts"][0]["text"], "be brief");
    assert_eq!(g["contents"][0]["role"], "user");
    assert_eq!(g["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(g["generationConfig"]["temperature"], 0.2);
    assert!(g.get("model").is_none() && g.get("logprobs").is_none());
}

#[tokio::test]
async fn streamed_chat_and_usage() {
    let (up, gw) = setup().await;
    let body = json!({"model": "gemini-flash", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "one two three four"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let datas = sse_data(&text);
    assert_eq!(joined_content(&datas), "one two three four");
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-gem-resp-1"));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    assert_eq!(
        up.last().path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
}

#[tokio::test]
async fn anthropic_client_plain_and_streamed() {
    let (_up, gw) = setup().await;
    let r = gw
        .post(
            "/v1/messages",
            Some(GW_KEY),
            &messages_body("gemini-flash", "hi from claude code"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "hi from claude code");
    assert_eq!(v["stop_reason"], "end_turn");
    let mut body = messages_body("gemini-flash", "streamed to anthropic");
    body["stream"] = json!(true);
    let r = gw.post("/v1/messages", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/delta/text")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "streamed to anthropic");
}

#[tokio::test]
async fn tools_safety_and_embeddings() {
    let (up, gw) = setup().await;
    let body = json!({"model": "gemini-flash", "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters":
            {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"], "additionalProperties": false}}}],
        "messages": [{"role": "user", "content": "find it"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(
        header(&r, "x-gateway-dropped"),
        Some("schema.additionalProperties")
    );
    let v = json_of(r).await;
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(call["function"]["arguments"], r#"{"input":"find it"}"#);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        up.last().json()["toolConfig"]["functionCallingConfig"]["mode"],
        "ANY"
    );

    let v = json_of(gw.chat("gemini-flash", "please BLOCKME now").await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");

    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "gem-embed", "input": ["ab", "abcd"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["embedding"], json!([0.25, -0.5, 4.0]));
    assert_eq!(
        up.last().path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
}

#[tokio::test]
async fn errors_in_the_api_shape_and_in_the_stream() {
    let (up, gw) = setup().await;
    // A caller's mistake is passed back with Google's message, not retried.
    up.push([NativeFault::Status(
        400,
        vec![],
        json!({"error": {"code": 400, "message": "Invalid value at 'contents'", "status": "INVALID_ARGUMENT"}}).to_string(),
    )]);
    let e = assert_openai_error(
        gw.chat("gemini-flash", "x").await,
        400,
        "invalid_request_error",
        None,
    )
    .await;
    assert!(
        e["message"].as_str().unwrap().contains("Invalid value"),
        "{e}"
    );
    // Quota exhausted: retried, and the retry is served.
    up.push([NativeFault::Status(
        429,
        vec![],
        json!({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}).to_string(),
    )]);
    let r = gw.chat("gemini-flash", "again").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    // An error event before anything was streamed is a failed attempt: retried.
    up.push([NativeFault::StreamError(503, "UNAVAILABLE")]);
    let body = json!({"model": "gemini-flash", "stream": true, "messages": [{"role": "user", "content": "retry me"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    assert_eq!(
        joined_content(&sse_data(&r.text().await.unwrap())),
        "retry me"
    );
    // A stream that ends before any candidate finished ends with an error event.
    up.push([NativeFault::Cut(1)]);
    let body = json!({"model": "gemini-flash", "stream": true, "messages": [{"role": "user", "content": "cut short here"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    let datas = sse_data(&r.text().await.unwrap());
    let err: Value = serde_json::from_str(&datas[datas.len() - 2]).unwrap();
    assert_eq!(err["error"]["type"], "upstream_error", "{datas:?}");
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    // A key Google refuses: its answer is passed back, and the key never reaches the logs.
    let up2 = FakeNative::start("another-key").await;
    let cfg = config(
        vec![
            json!({"name": "gem", "type": "gemini", "base_url": up2.base_url(), "api_key": PROVIDER_KEY}),
        ],
        vec![model("g", "gem", "gemini-2.5-flash")],
    );
    let gw2 = Gateway::start(cfg).await;
    let r = gw2.chat("g", "x").await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(
        !gw2.logs().contains(PROVIDER_KEY),
        "the key never reaches the logs"
    );
}
