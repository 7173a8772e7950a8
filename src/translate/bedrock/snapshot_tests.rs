//! Snapshot tests: realistic chat requests and the Converse bodies they become (with what was
//! dropped), and Converse answers and ConverseStream event sequences (shaped after AWS's
//! Bedrock API reference; the streams framed by `aws-smithy-eventstream`'s encoder and decoded
//! by ours) with the chat completions and chunks they become. `created` is fixed and generated
//! ids are redacted, so the snapshots are deterministic.

use serde_json::{Value, json};

use super::super::Dropped;
use super::super::pivot::testing::{redact, snap_json, sse_data, translated};
use super::response::bedrock_response_to_chat_at;
use super::{BedrockToChatStream, chat_request_to_bedrock};
use crate::providers::aws::ConverseStreamToChat;
use crate::providers::aws::eventstream::testing::{event, exception};

const CREATED: u64 = 1_764_000_000;
const CLAUDE: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";

fn request(req: &str, model: &str) -> Value {
    let mut dropped = Dropped::default();
    let out = chat_request_to_bedrock(req.as_bytes(), model, &mut dropped).expect("translates");
    translated(req, &out, Some(&dropped))
}

fn answer(body: &str) -> Value {
    let out =
        bedrock_response_to_chat_at(body.as_bytes(), "claude-sonnet", CREATED).expect("translates");
    translated(body, &out, None)
}

/// `(event type, payload)` frames (an `!` before the type makes an exception frame) through
/// the decoder and the converter, the body split into 29-byte network chunks; `cut` bytes are
/// left off the end.
fn stream(frames: &[(&str, &str)], include_usage: bool, cut: usize) -> Value {
    let mut body = Vec::new();
    for (kind, payload) in frames {
        body.extend(match kind.strip_prefix('!') {
            Some(kind) => exception(kind, payload),
            None => event(kind, payload),
        });
    }
    body.truncate(body.len() - cut);
    let conv = BedrockToChatStream::new("claude-sonnet", include_usage).with_created(CREATED);
    let mut conv = ConverseStreamToChat::new(conv);
    let mut out = Vec::new();
    for chunk in body.chunks(29) {
        conv.on_bytes(chunk, &mut out);
    }
    conv.finish(&mut out);
    let mut v = json!({
        "from": frames.iter().map(|(k, p)| json!([k, serde_json::from_str::<Value>(p).expect("input is JSON")])).collect::<Vec<_>>(),
        "to": sse_data(&out),
    });
    redact(&mut v);
    v
}

// ----------------------------------------------------------------------------------------------
// Requests
// ----------------------------------------------------------------------------------------------

#[test]
fn request_bedrock_system_multi_turn_sampling() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "system", "content": [
          {"type": "text", "text": "You are a contract analyst.", "cache_control": {"type": "ephemeral"}},
          {"type": "text", "text": "Answer briefly."}
        ]},
        {"role": "user", "content": "Summarise clause 4."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Keep it \"short\".\nThanks"}, {"type": "text", "text": "   "}]},
        {"role": "assistant", "content": "La clause 4 fixe les délais."},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Merci"}
      ],
      "max_tokens": 512,
      "temperature": 0.3,
      "top_p": 0.9,
      "stop": ["END", "\n\nHuman:"],
      "n": 3,
      "seed": 7,
      "presence_penalty": 0.1,
      "response_format": {"type": "json_object"},
      "user": "user-1234",
      "stream": true,
      "stream_options": {"include_usage": true}
    }"#;
    snap_json!(request(req, CLAUDE));
}

#[test]
fn request_bedrock_tools_and_results() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "user", "content": "What's the weather in Paris and the time in Tokyo?"},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris, France\"}"}},
          {"id": "toolu.01:x", "type": "function", "function": {"name": "get_time", "arguments": ""}}
        ]},
        {"role": "tool", "tool_call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "content": "{\"temperature\": 14}"},
        {"role": "tool", "tool_call_id": "toolu.01:x", "content": [{"type": "text", "text": "21:04"}, {"type": "text", "text": "JST"}]},
        {"role": "user", "content": "Thanks!"}
      ],
      "tools": [
        {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather", "strict": true,
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "web_search_preview"}
      ],
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
      "parallel_tool_calls": false
    }"#;
    snap_json!(request(req, "amazon.nova-pro-v1:0"));
}

#[test]
fn request_bedrock_media_and_reasoning() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "user", "content": [
          {"type": "text", "text": "Compare the chart with the report."},
          {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ==", "detail": "high"}},
          {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}},
          {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
          {"type": "file", "file": {"filename": "Q3 report (final).pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}},
          {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxiCjEsMgo="}},
          {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
        ]}
      ],
      "reasoning_effort": "low",
      "max_completion_tokens": 2048
    }"#;
    snap_json!(request(req, CLAUDE));
}

// ----------------------------------------------------------------------------------------------
// Answers
// ----------------------------------------------------------------------------------------------

#[test]
fn response_bedrock_text_reasoning_usage() {
    let body = r#"{
      "output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "The user wants a one-line summary.", "signature": "EqQBCkgIARABGAIiQL..."}}},
        {"text": "Clause 4 sets the delivery deadlines:\n"},
        {"text": "30 days from the \"order date\"."}
      ]}},
      "stopReason": "end_turn",
      "usage": {"inputTokens": 30, "outputTokens": 40, "totalTokens": 1270, "cacheReadInputTokens": 1200},
      "metrics": {"latencyMs": 812}
    }"#;
    snap_json!(answer(body));
}

#[test]
fn response_bedrock_tool_use() {
    let body = r#"{
      "output": {"message": {"role": "assistant", "content": [
        {"text": "I'll check the weather."},
        {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"location": "Paris, France", "unit": "celsius"}}}
      ]}},
      "stopReason": "tool_use",
      "usage": {"inputTokens": 402, "outputTokens": 73, "totalTokens": 475},
      "metrics": {"latencyMs": 1203}
    }"#;
    snap_json!(answer(body));
}

#[test]
fn response_bedrock_stop_reasons() {
    let reasons: Vec<Value> = [
        "end_turn",
        "stop_sequence",
        "max_tokens",
        "tool_use",
        "guardrail_intervened",
        "content_filtered",
        "model_context_window_exceeded",
    ]
    .iter()
    .map(|r| {
        let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
            "stopReason": r, "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}});
        let out = bedrock_response_to_chat_at(body.to_string().as_bytes(), "m", CREATED)
            .expect("translates");
        let out: Value = serde_json::from_slice(&out).expect("json");
        json!([r, out["choices"][0]["finish_reason"]])
    })
    .collect();
    snap_json!(reasons);
}

// ----------------------------------------------------------------------------------------------
// Streams
// ----------------------------------------------------------------------------------------------

#[test]
fn stream_bedrock_reasoning_text_tool_usage() {
    let frames = [
        ("messageStart", r#"{"role":"assistant","p":"abcdefgh"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Need the weather."}},"p":"ab"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"EqQBCkgIARAB"}},"p":"abc"}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0,"p":"abcd"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"Let me check "},"p":"abcde"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"the \"weather\".\n"},"p":"a"}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":1,"p":"ab"}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","name":"get_weather"}},"p":"abc"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"location\": \"Pa"}},"p":"abcdef"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"ris\"}"}},"p":"ab"}"#,
        ),
        (
            "contentBlockStop",
            r#"{"contentBlockIndex":2,"p":"abcdefghij"}"#,
        ),
        (
            "messageStop",
            r#"{"stopReason":"tool_use","p":"abcdefghijklm"}"#,
        ),
        (
            "metadata",
            r#"{"usage":{"inputTokens":402,"outputTokens":73,"totalTokens":475},"metrics":{"latencyMs":1203},"p":"abc"}"#,
        ),
    ];
    snap_json!(stream(&frames, true, 0));
}

#[test]
fn stream_bedrock_exception_cut_and_corrupt() {
    let exception = [
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hal"}}"#,
        ),
        (
            "!modelStreamErrorException",
            r#"{"message":"The model encountered an error while streaming.","originalStatusCode":500}"#,
        ),
    ];
    let cut = [
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"The first part"}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":" and the second"}}"#,
        ),
    ];
    // messageStop arrived, metadata did not: the answer is whole, usage unknown.
    let no_metadata = [
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Done."}}"#,
        ),
        ("messageStop", r#"{"stopReason":"max_tokens"}"#),
    ];
    // A corrupt frame: a payload byte flipped after the frame was encoded.
    let mut body = [
        event("messageStart", r#"{"role":"assistant"}"#),
        event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ),
    ]
    .concat();
    let last = body.len() - 10;
    body[last] ^= 0x20;
    let mut conv = ConverseStreamToChat::new(
        BedrockToChatStream::new("claude-sonnet", false).with_created(CREATED),
    );
    let mut out = Vec::new();
    conv.on_bytes(&body, &mut out);
    conv.on_bytes(
        &event("messageStop", r#"{"stopReason":"end_turn"}"#),
        &mut out,
    );
    conv.finish(&mut out);
    let mut corrupt = Value::Array(sse_data(&out));
    redact(&mut corrupt);
    snap_json!(json!({
        "exception": stream(&exception, false, 0),
        "cut": stream(&cut, true, 9),
        "no_metadata": stream(&no_metadata, true, 0),
        "corrupt": corrupt,
    }));
}

#[test]
fn stream_ignores_unreadable_events() {
    let mut conv = BedrockToChatStream::new("m", false).with_created(CREATED);
    let mut out = Vec::new();
    conv.on_event("contentBlockDelta", b"not json", &mut out);
    conv.on_event("somethingNew", b"{}", &mut out);
    assert!(out.is_empty());
    conv.on_event("messageStop", br#"{"stopReason":"end_turn"}"#, &mut out);
    conv.on_event("metadata", br#"{"usage":{}}"#, &mut out);
    conv.finish(&mut out);
    conv.on_exception("throttlingException", b"{}", &mut out);
    assert_eq!(String::from_utf8_lossy(&out).matches("[DONE]").count(), 1);
    assert!(!String::from_utf8_lossy(&out).contains("error"));
}
