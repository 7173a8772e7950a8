//! Snapshot tests: realistic request, response and event-sequence pairs in both directions.
//! Each snapshot holds the input and its translation. `created` is fixed and every id comes
//! from the input, so the snapshots are deterministic.

use serde_json::{Value, json};

use super::response::messages_response_to_chat_at;
use super::*;
use crate::sse::SseParser;

const CREATED: u64 = 1_764_000_000;

// Snapshot files are named after the test alone, so they do not depend on the crate's name.
macro_rules! snap_json {
    ($v:expr) => {
        insta::with_settings!({ prepend_module_to_snapshot => false }, {
            insta::assert_json_snapshot!($v);
        })
    };
}

macro_rules! snap {
    ($v:expr) => {
        insta::with_settings!({ prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($v);
        })
    };
}

fn val(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("output is JSON")
}

fn pair(input: &str, output: &[u8]) -> Value {
    json!({ "from": serde_json::from_str::<Value>(input).expect("input is JSON"), "to": val(output) })
}

fn o2a(input: &str) -> Value {
    pair(
        input,
        &chat_request_to_messages(
            input.as_bytes(),
            "claude-sonnet-4-5-20250929",
            &mut Default::default(),
        )
        .expect("translates"),
    )
}

fn a2o(input: &str) -> Value {
    pair(
        input,
        &messages_request_to_chat(
            input.as_bytes(),
            "gpt-4o-2024-08-06",
            &mut Default::default(),
        )
        .expect("translates"),
    )
}

// ----------------------------------------------------------------------------------------------
// Requests, OpenAI -> Anthropic
// ----------------------------------------------------------------------------------------------

#[test]
fn request_openai_system_string_multi_turn() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy? Say \"Rome\" if you're sure.\nThanks!"}
      ],
      "max_tokens": 256,
      "temperature": 0.7,
      "top_p": 0.9,
      "stop": "\n\nHuman:",
      "stream": true,
      "stream_options": {"include_usage": true},
      "user": "user-1234",
      "n": 1,
      "seed": 42,
      "logprobs": false,
      "presence_penalty": 0.5,
      "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    }"#;
    snap_json!(o2a(req));
}

#[test]
fn request_openai_system_blocks_and_developer() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "system", "content": [
          {"type": "text", "text": "You are a contract analyst.", "cache_control": {"type": "ephemeral"}},
          {"type": "text", "text": "<contract>... 40 pages ...</contract>", "cache_control": {"type": "ephemeral"}}
        ]},
        {"role": "user", "content": "Summarise clause 4."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Keep it short."}]}
      ],
      "max_completion_tokens": 1024,
      "max_tokens": 10
    }"#;
    snap_json!(o2a(req));
}

#[test]
fn request_openai_consecutive_same_role() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "user", "content": "First question: 2+2?"},
        {"role": "user", "content": "Second question: 3+3?"},
        {"role": "assistant", "content": "4."},
        {"role": "assistant", "content": [{"type": "text", "text": "6."}]},
        {"role": "user", "content": ""},
        {"role": "user", "content": "Thanks"}
      ],
      "stop": ["END", "\n", "STOP"],
      "temperature": 1.5,
      "top_p": 1
    }"#;
    snap_json!(o2a(req));
}

#[test]
fn request_openai_images() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "user", "content": [
          {"type": "text", "text": "Compare these two images."},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "detail": "high"}},
          {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
          {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}},
          {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
          {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}}
        ]}
      ],
      "max_tokens": 300
    }"#;
    snap_json!(o2a(req));
}

#[test]
fn request_openai_tools_and_results() {
    let req = r#"{
      "model": "claude-sonnet",
      "messages": [
        {"role": "system", "content": "Use tools when useful."},
        {"role": "user", "content": "What's the weather in Paris and the time in Tokyo?"},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}"}},
          {"id": "call_7x8Qm2yZ", "type": "function", "function": {"name": "get_time", "arguments": "{\"timezone\":\"Asia/Tokyo\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "content": "{\"temperature\": 14, \"conditions\": \"cloudy\"}"},
        {"role": "tool", "tool_call_id": "call_7x8Qm2yZ", "content": [{"type": "text", "text": "21:04"}]},
        {"role": "user", "content": "Also, should I take an umbrella?"}
      ],
      "tools": [
        {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a given location", "strict": true,
          "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "no_params"}}
      ],
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
      "parallel_tool_calls": false
    }"#;
    snap_json!(o2a(req));
}

#[test]
fn request_openai_tool_choice_variants() {
    let cases = [
        (json!("auto"), None, json!({"type": "auto"})),
        (json!("required"), None, json!({"type": "any"})),
        (json!("none"), None, json!({"type": "none"})),
        (
            json!("auto"),
            Some(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
        (
            json!("required"),
            Some(false),
            json!({"type": "any", "disable_parallel_tool_use": true}),
        ),
        (json!("none"), Some(false), json!({"type": "none"})),
        (
            Value::Null,
            Some(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
        (Value::Null, Some(true), Value::Null),
    ];
    for (choice, parallel, want) in cases {
        let mut req = json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        });
        if !choice.is_null() {
            req["tool_choice"] = choice.clone();
        }
        if let Some(p) = parallel {
            req["parallel_tool_calls"] = json!(p);
        }
        let out = val(&chat_request_to_messages(
            req.to_string().as_bytes(),
            "c",
            &mut Default::default(),
        )
        .unwrap());
        assert_eq!(out["tool_choice"], want, "{choice} {parallel:?}");
    }
    // tool_choice without tools is dropped
    let req =
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}"#;
    let out = val(&chat_request_to_messages(req.as_bytes(), "c", &mut Default::default()).unwrap());
    assert!(out.get("tool_choice").is_none());
}

#[test]
fn request_openai_defaults_and_errors() {
    let out = val(&chat_request_to_messages(
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        "claude-x",
        &mut Default::default(),
    )
    .unwrap());
    assert_eq!(
        out,
        json!({"model":"claude-x","messages":[{"role":"user","content":"hi"}],"max_tokens":DEFAULT_MAX_TOKENS})
    );
    let bad: [(&[u8], &str); 6] = [
        (
            br#"{"model":"m","messages":"hi"}"#,
            "`messages` must be an array",
        ),
        (br#"{"model":"m"}"#, "`messages` is required"),
        (br#"[1]"#, "invalid request"),
        (
            br#"{"messages":[{"role":"user","content":"a"},{"role":"user","content":5}]}"#,
            "invalid `messages[1]`",
        ),
        (
            br#"{"messages":[{"role":"wizard","content":"a"}]}"#,
            "unknown role \"wizard\"",
        ),
        (
            br#"{"messages":[{"role":"tool","content":"a"}]}"#,
            "tool_call_id",
        ),
    ];
    for (body, want) in bad {
        let e = chat_request_to_messages(body, "c", &mut Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
    assert!(chat_request_to_messages(b"\xff\xfe", "c", &mut Default::default()).is_err());
}

// ----------------------------------------------------------------------------------------------
// Requests, Anthropic -> OpenAI
// ----------------------------------------------------------------------------------------------

#[test]
fn request_anthropic_system_string_multi_turn() {
    let req = r#"{
      "model": "gpt-4o",
      "max_tokens": 1024,
      "system": "You are a concise assistant.",
      "messages": [
        {"role": "user", "content": "Hello, Claude"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": [{"type": "text", "text": "Tell me a joke."}, {"type": "text", "text": "About cats."}]}
      ],
      "temperature": 0.2,
      "top_k": 40,
      "stop_sequences": ["\n\nHuman:"],
      "metadata": {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"}
    }"#;
    snap_json!(a2o(req));
}

#[test]
fn request_anthropic_system_blocks_tools_images() {
    let req = r#"{
      "model": "gpt-4o",
      "max_tokens": 4096,
      "stream": true,
      "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Project rules: be careful.", "cache_control": {"type": "ephemeral"}}
      ],
      "tools": [
        {"name": "get_weather", "description": "Get the current weather in a given location",
         "input_schema": {"type": "object", "properties": {"location": {"type": "string", "description": "The city and state"}}, "required": ["location"]},
         "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "custom", "name": "read_file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}
      ],
      "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
      "thinking": {"type": "enabled", "budget_tokens": 2000},
      "messages": [
        {"role": "user", "content": [
          {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcG"}},
          {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
          {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}, "title": "report.pdf"},
          {"type": "text", "text": "What is in these, and what's the weather in SF?", "cache_control": {"type": "ephemeral"}}
        ]},
        {"role": "assistant", "content": [
          {"type": "thinking", "thinking": "The user wants the weather...", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."},
          {"type": "text", "text": "Let me check the weather."},
          {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA"}},
          {"type": "tool_use", "id": "toolu_02B", "name": "read_file", "input": {"path": "/etc/motd"}}
        ]},
        {"role": "user", "content": [
          {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees, sunny"},
          {"type": "tool_result", "tool_use_id": "toolu_02B", "is_error": true, "content": [
            {"type": "text", "text": "permission denied"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "text", "text": "(errno 13)"}
          ]},
          {"type": "text", "text": "Thanks. Anything else?"}
        ]}
      ]
    }"#;
    snap_json!(a2o(req));
}

#[test]
fn request_anthropic_tool_choice_variants() {
    let cases = [
        (json!({"type": "auto"}), json!("auto"), Value::Null),
        (json!({"type": "any"}), json!("required"), Value::Null),
        (json!({"type": "none"}), json!("none"), Value::Null),
        (
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}),
            json!({"type": "function", "function": {"name": "f"}}),
            json!(false),
        ),
    ];
    for (choice, want, parallel) in cases {
        let req = json!({
            "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": choice,
        });
        let out = val(&messages_request_to_chat(
            req.to_string().as_bytes(),
            "g",
            &mut Default::default(),
        )
        .unwrap());
        assert_eq!(out["tool_choice"], want);
        assert_eq!(
            out.get("parallel_tool_calls")
                .cloned()
                .unwrap_or(Value::Null),
            parallel
        );
    }
    let e = messages_request_to_chat(
        br#"{"messages":[{"role":"system","content":"x"}]}"#,
        "g",
        &mut Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown role"), "{e}");
    let e = messages_request_to_chat(br#"{"messages":{}}"#, "g", &mut Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be an array"), "{e}");
}

// ----------------------------------------------------------------------------------------------
// Responses
// ----------------------------------------------------------------------------------------------

fn a_resp_to_o(input: &str) -> Value {
    pair(
        input,
        &messages_response_to_chat_at(input.as_bytes(), "claude-sonnet", None, CREATED)
            .expect("translates"),
    )
}

fn o_resp_to_a(input: &str) -> Value {
    pair(
        input,
        &chat_response_to_messages(input.as_bytes(), "gpt-4o").expect("translates"),
    )
}

#[test]
fn response_anthropic_text_with_cache_usage() {
    let resp = r#"{
      "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
      "type": "message",
      "role": "assistant",
      "model": "claude-sonnet-4-5-20250929",
      "content": [
        {"type": "thinking", "thinking": "Simple greeting.", "signature": "abc"},
        {"type": "text", "text": "Hi! My name is Claude.\nHow can I help?"}
      ],
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2048, "output_tokens": 15, "service_tier": "standard"}
    }"#;
    snap_json!(a_resp_to_o(resp));
}

#[test]
fn response_anthropic_tool_use() {
    let resp = r#"{
      "id": "msg_01Aq9w938a90dw8q",
      "type": "message",
      "role": "assistant",
      "model": "claude-sonnet-4-5-20250929",
      "content": [
        {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA", "unit": "celsius"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}
      ],
      "stop_reason": "tool_use",
      "stop_sequence": null,
      "usage": {"input_tokens": 472, "output_tokens": 89}
    }"#;
    snap_json!(a_resp_to_o(resp));
}

#[test]
fn response_anthropic_each_stop_reason() {
    let mut got = Vec::new();
    for reason in [
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
    ] {
        let resp = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "x"}], "stop_reason": reason,
            "stop_sequence": if reason == "stop_sequence" { json!("###") } else { Value::Null },
            "usage": {"input_tokens": 1, "output_tokens": 1}
        });
        let out =
            val(
                &messages_response_to_chat_at(resp.to_string().as_bytes(), "m", None, CREATED)
                    .unwrap(),
            );
        got.push(json!([reason, out["choices"][0]["finish_reason"]]));
    }
    snap_json!(got);
}

#[test]
fn response_openai_text() {
    let resp = r#"{
      "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
      "object": "chat.completion",
      "created": 1741569952,
      "model": "gpt-4o-2024-08-06",
      "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I assist you \"today\"?", "refusal": null, "annotations": []},
        "logprobs": null,
        "finish_reason": "stop"
      }],
      "usage": {"prompt_tokens": 2019, "completion_tokens": 10, "total_tokens": 2029,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
      "service_tier": "default",
      "system_fingerprint": "fp_fc9f1d7035"
    }"#;
    snap_json!(o_resp_to_a(resp));
}

#[test]
fn response_openai_tool_calls() {
    let resp = r#"{
      "id": "chatcmpl-abc123",
      "object": "chat.completion",
      "created": 1699896916,
      "model": "gpt-4o-mini",
      "choices": [{
        "index": 0,
        "message": {
          "role": "assistant",
          "content": null,
          "tool_calls": [
            {"id": "call_abc123", "type": "function", "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}},
            {"id": "call_def456", "type": "function", "function": {"name": "get_time", "arguments": "not json"}}
          ]
        },
        "logprobs": null,
        "finish_reason": "tool_calls"
      }],
      "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
    }"#;
    snap_json!(o_resp_to_a(resp));
}

#[test]
fn response_openai_each_finish_reason() {
    let mut got = Vec::new();
    for reason in [
        "stop",
        "length",
        "tool_calls",
        "content_filter",
        "function_call",
    ] {
        let resp = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": reason}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        });
        let out = val(&chat_response_to_messages(resp.to_string().as_bytes(), "m").unwrap());
        got.push(json!([reason, out["stop_reason"]]));
    }
    // A refusal becomes text with stop_reason "refusal".
    let resp = br#"{"id":"chatcmpl-2","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#;
    let out = val(&chat_response_to_messages(resp, "m").unwrap());
    got.push(json!(["refusal", out["stop_reason"], out["content"]]));
    snap_json!(got);
}

#[test]
fn errors_both_shapes() {
    assert_eq!(
        error_from_anthropic(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        ),
        Some(("overloaded_error".into(), "Overloaded".into()))
    );
    assert_eq!(error_from_anthropic(b"<html>"), None);
    assert_eq!(error_from_anthropic(br#"{"type":"message"}"#), None);
    assert_eq!(
        error_from_openai(
            br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#
        ),
        Some(("requests".into(), "Rate limit reached for gpt-4o".into()))
    );
    assert_eq!(
        error_from_openai(br#"{"error":{"message":"bad","type":null,"code":"invalid_api_key"}}"#),
        Some(("invalid_api_key".into(), "bad".into()))
    );
    assert_eq!(
        error_from_openai(br#"{"error":"model not loaded"}"#),
        Some(("api_error".into(), "model not loaded".into()))
    );
    assert_eq!(
        error_from_openai(br#"{"message":"nope"}"#),
        Some(("api_error".into(), "nope".into()))
    );
    assert_eq!(error_from_openai(b"not json"), None);
    assert!(chat_response_to_messages(b"{}", "m").is_err());
    assert!(messages_response_to_chat(b"{\"type\":\"message\"}", "m").is_err());
}

// ----------------------------------------------------------------------------------------------
// Streams
// ----------------------------------------------------------------------------------------------

/// Run an upstream Anthropic SSE byte stream (fed in small pieces) through the parser and the
/// translator.
fn run_anthropic_stream(upstream: &str, include_usage: bool, finish: bool) -> String {
    let mut tr = MessagesToChatStream::new("claude-sonnet", include_usage).with_created(CREATED);
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for piece in upstream.as_bytes().chunks(37) {
        parser.push(piece, |ev| tr.on_event(ev.event, ev.data, &mut out));
    }
    if finish {
        tr.finish(&mut out);
        tr.finish(&mut out);
    }
    let out = String::from_utf8(out).expect("utf-8");
    check_openai_frames(&out);
    format!("=== upstream (Anthropic) ===\n{upstream}\n=== client (OpenAI) ===\n{out}")
}

fn run_openai_stream(upstream: &str) -> String {
    let mut tr = ChatToMessagesStream::new("gpt-4o");
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for piece in upstream.as_bytes().chunks(41) {
        parser.push(piece, |ev| tr.on_data(ev.data, &mut out));
    }
    tr.finish(&mut out);
    tr.finish(&mut out);
    let out = String::from_utf8(out).expect("utf-8");
    check_anthropic_frames(&out);
    format!("=== upstream (OpenAI) ===\n{upstream}\n=== client (Anthropic) ===\n{out}")
}

/// Every frame is `data: JSON` (or `[DONE]`, once, last).
fn check_openai_frames(out: &str) {
    let frames: Vec<&str> = out.split_terminator("\n\n").collect();
    for (i, f) in frames.iter().enumerate() {
        let data = f.strip_prefix("data: ").expect("data frame");
        if data == "[DONE]" {
            assert_eq!(i, frames.len() - 1, "[DONE] is last");
        } else {
            serde_json::from_str::<Value>(data).expect("frame is JSON");
        }
    }
    assert_eq!(out.matches("[DONE]").count(), 1);
}

fn check_anthropic_frames(out: &str) {
    for f in out.split_terminator("\n\n") {
        let (ev, data) = f.split_once('\n').expect("two lines");
        let ev = ev.strip_prefix("event: ").expect("event line");
        let v: Value =
            serde_json::from_str(data.strip_prefix("data: ").expect("data line")).expect("JSON");
        assert_eq!(v["type"], ev);
    }
}

const ANTHROPIC_TEXT_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":1024,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! \"Quoted\"\nand caf\u00e9 ☕"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[test]
fn stream_anthropic_text_to_openai_with_usage() {
    snap!(run_anthropic_stream(ANTHROPIC_TEXT_STREAM, true, true));
}

#[test]
fn stream_anthropic_text_to_openai_without_usage() {
    snap!(run_anthropic_stream(ANTHROPIC_TEXT_STREAM, false, true));
}

#[test]
fn stream_anthropic_tool_use_to_openai() {
    let upstream = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"I need the weather and the time."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let me check."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":", \"unit\": \"fahrenheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_01Xk9","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"tz\": \"America/Los_Angeles\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;
    let got = run_anthropic_stream(upstream, true, true);
    // The streamed arguments of each call concatenate to its input.
    let client = got.split("=== client (OpenAI) ===\n").nth(1).unwrap();
    let mut args = [String::new(), String::new()];
    for f in client.split_terminator("\n\n") {
        let data = f.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        for tc in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            args[i].push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&args[0]).unwrap(),
        json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&args[1]).unwrap(),
        json!({"tz": "America/Los_Angeles"})
    );
    snap!(got);
}

#[test]
fn stream_anthropic_error_and_truncation() {
    // An error event mid-stream becomes an OpenAI error frame and [DONE].
    let upstream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
        event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
        event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let error = run_anthropic_stream(upstream, true, true);
    // Cut short: no message_delta, then the upstream closes.
    let cut = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\"}}\n\n\
        data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n";
    let truncated = run_anthropic_stream(cut, false, true);
    // message_delta seen but no message_stop: the closing frames are still owed.
    let no_stop = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_3\",\"usage\":{\"input_tokens\":3}}}\n\n\
        data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":7}}\n\n";
    let owed = run_anthropic_stream(no_stop, true, true);
    snap!(format!("{error}\n\n{truncated}\n\n{owed}"));
}

const OPENAI_TEXT_STREAM: &str = r#"data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":"The"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" answer is \"42\".\n"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[],"usage":{"prompt_tokens":1219,"completion_tokens":8,"total_tokens":1227,"prompt_tokens_details":{"cached_tokens":1152,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"#;

#[test]
fn stream_openai_text_to_anthropic() {
    snap!(run_openai_stream(OPENAI_TEXT_STREAM));
}

#[test]
fn stream_openai_two_tool_calls_to_anthropic() {
    let upstream = r#"data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Paris, France\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_7x8Qm2yZLr1u","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"timezone\""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":": \"Europe/Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-AZcQ7mGnXl0kGmlzCm0FQyAbKoSVw","object":"chat.completion.chunk","created":1733013671,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0705bf87c0","choices":[],"usage":{"prompt_tokens":88,"completion_tokens":46,"total_tokens":134,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}}}

data: [DONE]

"#;
    let got = run_openai_stream(upstream);
    // The partial_json fragments of each block concatenate to the call's arguments.
    let client = got.split("=== client (Anthropic) ===\n").nth(1).unwrap();
    let mut json_by_block: std::collections::BTreeMap<u64, String> = Default::default();
    for f in client.split_terminator("\n\n") {
        let v: Value = serde_json::from_str(f.split_once("\ndata: ").unwrap().1).unwrap();
        if v["delta"]["type"] == "input_json_delta" {
            json_by_block
                .entry(v["index"].as_u64().unwrap())
                .or_default()
                .push_str(v["delta"]["partial_json"].as_str().unwrap());
        }
    }
    let parsed: Vec<Value> = json_by_block
        .values()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(
        parsed,
        vec![
            json!({"location": "Paris, France"}),
            json!({"timezone": "Europe/Paris"})
        ]
    );
    snap!(got);
}

#[test]
fn stream_openai_text_then_tool_and_edge_cases() {
    // Text, then a tool call whose first chunk already has all arguments (as some
    // OpenAI-compatible servers send), no [DONE] (the upstream just closes after finish_reason).
    let upstream = r#"data: {"id":"chatcmpl-x1","choices":[{"index":0,"delta":{"role":"assistant","content":"Checking."}}]}

data: {"id":"chatcmpl-x1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":\"rust\"}"}}]}}]}

data: {"id":"chatcmpl-x1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}

"#;
    let no_done = run_openai_stream(upstream);
    // An error object mid-stream.
    let err = r#"data: {"id":"chatcmpl-x2","choices":[{"index":0,"delta":{"content":"Hi"}}]}

data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}

"#;
    let error = run_openai_stream(err);
    // Cut short before any finish_reason.
    let cut = "data: {\"id\":\"chatcmpl-x3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    let truncated = run_openai_stream(cut);
    snap!(format!("{no_done}\n\n{error}\n\n{truncated}"));
}

#[test]
fn stream_errors_in_each_format() {
    let mut o = Vec::new();
    openai_stream_error(
        "timeout",
        "the request did not finish within its deadline",
        &mut o,
    );
    let mut a = Vec::new();
    anthropic_stream_error("upstream_error", "upstream said \"no\"", &mut a);
    assert_eq!(
        String::from_utf8(o).unwrap(),
        "data: {\"error\":{\"message\":\"the request did not finish within its deadline\",\"type\":\"timeout\",\"param\":null,\"code\":null}}\n\ndata: [DONE]\n\n"
    );
    assert_eq!(
        String::from_utf8(a).unwrap(),
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"upstream_error\",\"message\":\"upstream said \\\"no\\\"\"}}\n\n"
    );
}

#[test]
fn stream_events_without_event_names_and_garbage() {
    // `event:` absent: the data's type is used. Unreadable data is skipped, never a panic.
    let mut tr = MessagesToChatStream::new("m", false).with_created(CREATED);
    let mut out = Vec::new();
    tr.on_event(
        "",
        r#"{"type":"message_start","message":{"id":"msg_9"}}"#,
        &mut out,
    );
    tr.on_event("", "not json", &mut out);
    tr.on_event(
        "content_block_delta",
        r#"{"index":0,"delta":{"type":"text_delta","text":"ok"}}"#,
        &mut out,
    );
    tr.on_event("", r#"{"type":"message_stop"}"#, &mut out);
    tr.on_event("", r#"{"type":"message_stop"}"#, &mut out);
    tr.finish(&mut out);
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains(r#""delta":{"content":"ok"}"#), "{s}");
    assert_eq!(s.matches("[DONE]").count(), 1);
    assert!(s.contains("chatcmpl-msg_9"));

    let mut tr = ChatToMessagesStream::new("m");
    let mut out = Vec::new();
    tr.on_data("{\"choices\":[{\"delta\":{\"content\":5}}]}", &mut out);
    tr.on_data("[DONE]", &mut out);
    tr.on_data("[DONE]", &mut out);
    tr.finish(&mut out);
    let s = String::from_utf8(out).unwrap();
    assert_eq!(s.matches("message_stop").count(), 2, "{s}"); // event name + type
}

/// The `tool_use` blocks (id, name, joined partial_json) of an Anthropic event stream.
fn tool_blocks(out: &str) -> Vec<(String, String, String)> {
    let mut blocks: Vec<(u64, String, String, String)> = Vec::new();
    for f in out.split_terminator("\n\n") {
        let v: Value = serde_json::from_str(f.split_once("\ndata: ").unwrap().1).unwrap();
        if v["type"] == "content_block_start" && v["content_block"]["type"] == "tool_use" {
            let b = &v["content_block"];
            blocks.push((
                v["index"].as_u64().unwrap(),
                b["id"].as_str().unwrap().into(),
                b["name"].as_str().unwrap().into(),
                String::new(),
            ));
        }
        if v["delta"]["type"] == "input_json_delta" {
            let b = blocks
                .iter_mut()
                .find(|b| Some(b.0) == v["index"].as_u64())
                .unwrap();
            b.3.push_str(v["delta"]["partial_json"].as_str().unwrap());
        }
    }
    blocks.into_iter().map(|(_, id, n, a)| (id, n, a)).collect()
}

#[test]
fn stream_openai_tool_call_shapes_of_compatible_servers() {
    let run = |chunks: &[&str]| {
        let mut tr = ChatToMessagesStream::new("m");
        let mut out = Vec::new();
        for c in chunks {
            tr.on_data(c, &mut out);
        }
        tr.on_data("[DONE]", &mut out);
        let out = String::from_utf8(out).unwrap();
        check_anthropic_frames(&out);
        tool_blocks(&out)
    };
    let want = vec![
        (
            "toolu_a".to_owned(),
            "f".to_owned(),
            r#"{"x":1}"#.to_owned(),
        ),
        (
            "toolu_b".to_owned(),
            "g".to_owned(),
            r#"{"y":2}"#.to_owned(),
        ),
    ];
    // Both calls complete in one chunk.
    assert_eq!(
        run(&[
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"f","arguments":"{\"x\":1}"}},{"index":1,"id":"call_b","function":{"name":"g","arguments":"{\"y\":2}"}}]}}]}"#
        ]),
        want
    );
    // Every call with index 0 but its own id; the id repeated on later fragments.
    assert_eq!(
        run(&[
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"f","arguments":"{\"x\""}}]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","function":{"arguments":":1}"}}]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_b","function":{"name":"g","arguments":"{\"y\":2}"}}]}}]}"#,
        ]),
        want
    );
}

#[test]
fn stream_anthropic_tool_use_with_input_in_start() {
    let mut tr = MessagesToChatStream::new("m", false).with_created(CREATED);
    let mut out = Vec::new();
    tr.on_event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1"}}"#,
        &mut out,
    );
    tr.on_event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":"b\"c"}}}"#,
        &mut out,
    );
    tr.on_event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"}}"#,
        &mut out,
    );
    tr.finish(&mut out);
    let s = String::from_utf8(out).unwrap();
    check_openai_frames(&s);
    let args: String = s
        .split_terminator("\n\n")
        .filter_map(|f| serde_json::from_str::<Value>(f.strip_prefix("data: ")?).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"a": "b\"c"})
    );
    assert!(s.contains(r#""finish_reason":"tool_calls""#));
}
