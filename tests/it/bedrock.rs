//! `type: bedrock` end to end: OpenAI and Anthropic clients through the gateway to an
//! in-process server speaking Bedrock's Converse API (JSON, and binary AWS event-stream frames
//! for ConverseStream, including a corrupted frame and cut streams), SigV4-signed.

use serde_json::{Value, json};

use crate::support::native::{FakeNative, NativeFault};
use crate::support::*;

const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

async fn setup() -> (FakeNative, Gateway) {
    let up = FakeNative::start(PROVIDER_KEY).await;
    let cfg = config(
        vec![
            json!({"name": "aws", "type": "bedrock", "base_url": up.base_url(), "region": "eu-west-1",
            "aws_access_key_id": "AKIDFAKE", "aws_secret_access_key": "${AWS_SECRET_ACCESS_KEY}",
            "aws_session_token": "${AWS_SESSION_TOKEN:-}"}),
        ],
        vec![model("haiku", "aws", MODEL)],
    );
    let gw = Gateway::start_with_env(
        cfg,
        &[
            ("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key-0005"),
            ("AWS_SESSION_TOKEN", "fake-session-token-0006"),
        ],
    )
    .await;
    (up, gw)
}

fn stream_body(text: &str) -> Value {
    json!({"model": "haiku", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn openai_chat_is_signed_and_translated() {
    let (up, gw) = setup().await;
    let body = json!({"model": "haiku", "max_tokens": 99, "seed": 3,
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello bedrock"}]});
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-dropped"), Some("seed"));
    let v = json_of(r).await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello bedrock");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let sent = up.last();
    assert_eq!(
        sent.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    let auth = sent.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDFAKE/")
            && auth.contains("/eu-west-1/bedrock/aws4_request")
            && auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
        "{auth}"
    );
    assert_eq!(
        sent.header("x-amz-security-token"),
        Some("fake-session-token-0006")
    );
    let b = sent.json();
    assert_eq!(b["system"][0]["text"], "sys");
    assert_eq!(b["inferenceConfig"]["maxTokens"], 99);
    assert!(!gw.logs().contains("fake-secret-access-key-0005"));
}

#[tokio::test]
async fn streams_decode_event_stream_frames() {
    let (up, gw) = setup().await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("a b c d e"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let datas = sse_data(&r.text().await.unwrap());
    assert_eq!(joined_content(&datas), "a b c d e");
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&datas[datas.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    let sent = up.last();
    assert!(sent.path.ends_with("/converse-stream"), "{}", sent.path);
    assert_eq!(
        sent.header("accept"),
        Some("application/vnd.amazon.eventstream")
    );

    // Anthropic client, streamed, with a forced tool.
    let body = json!({"model": "haiku", "max_tokens": 64, "stream": true,
        "tools": [{"name": "lookup", "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}}}],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "find"}]});
    let r = gw.post("/v1/messages", Some(GW_KEY), &body).await;
    let events = sse_events(&r.text().await.unwrap());
    let json_parts: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/delta/partial_json")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(json_parts, r#"{"input":"find"}"#);
    let stop = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.pointer("/delta/stop_reason").cloned());
    assert_eq!(stop, Some(json!("tool_use")));
}

#[tokio::test]
async fn a_corrupt_frame_or_a_cut_stream_is_an_upstream_error_never_a_panic() {
    let (up, gw) = setup().await;
    for (fault, needle) in [
        (NativeFault::Corrupt(3), "event stream is broken"),
        (
            NativeFault::CutMidFrame(3),
            "ended before the message was complete",
        ),
        (NativeFault::Cut(3), "ended before the message was complete"),
    ] {
        up.push([fault.clone()]);
        let r = gw
            .post(
                "/v1/chat/completions",
                Some(GW_KEY),
                &stream_body("one two three four five six"),
            )
            .await;
        assert_eq!(r.status(), 200);
        let datas = sse_data(&r.text().await.unwrap());
        assert_eq!(
            datas.last().map(String::as_str),
            Some("[DONE]"),
            "{fault:?}"
        );
        let err: Value = serde_json::from_str(&datas[datas.len() - 2]).unwrap();
        assert_eq!(
            err["error"]["type"], "upstream_error",
            "{fault:?}: {datas:?}"
        );
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{fault:?}: {err}"
        );
        assert!(joined_content(&datas).starts_with("one two"), "{datas:?}");
    }
    // The gateway still serves.
    let v = json_of(gw.chat("haiku", "still here").await).await;
    assert_eq!(v["choices"][0]["message"]["content"], "still here");
}

#[tokio::test]
async fn exceptions_and_error_statuses() {
    let (up, gw) = setup().await;
    // A throttling exception before any output: a failed attempt, retried.
    up.push([NativeFault::Exception("throttlingException")]);
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(GW_KEY),
            &stream_body("try again"),
        )
        .await;
    assert_eq!(header(&r, "x-gateway-attempts"), Some("2"));
    assert_eq!(
        joined_content(&sse_data(&r.text().await.unwrap())),
        "try again"
    );
    // Bedrock's error type comes in a header.
    up.push([NativeFault::Status(
        400,
        vec![(
            "x-amzn-errortype",
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/".to_owned(),
        )],
        json!({"message": "The provided model identifier is invalid."}).to_string(),
    )]);
    let e = assert_openai_error(
        gw.chat("haiku", "x").await,
        400,
        "invalid_request_error",
        None,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("model identifier is invalid"),
        "{e}"
    );
    // Anthropic clients get Anthropic's error shape.
    up.push([NativeFault::Status(
        400,
        vec![("x-amzn-errortype", "ValidationException".to_owned())],
        json!({"message": "bad"}).to_string(),
    )]);
    let r = gw
        .post("/v1/messages", Some(GW_KEY), &messages_body("haiku", "x"))
        .await;
    assert_anthropic_error(r, 400, "invalid_request_error").await;
    // Embeddings: Converse has none.
    let r = gw
        .post(
            "/v1/embeddings",
            Some(GW_KEY),
            &json!({"model": "haiku", "input": "x"}),
        )
        .await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    // Safety: a guardrail intervention is content_filter.
    let v = json_of(gw.chat("haiku", "BLOCKME please").await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
}
