//! Issue 20 point 7 between OpenAI chat and Anthropic messages: thinking <-> reasoning, JSON
//! answers through a forced tool, and what cannot be carried named in `Dropped`.

use serde_json::{Value, json};

use super::response::messages_response_to_chat_at;
use super::*;

fn val(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("output is JSON")
}

/// Anthropic events (name, data) through the stream translation, as the OpenAI chunks' JSON.
fn a2o_stream(events: &[(&str, Value)], json_tool: Option<&str>) -> Vec<Value> {
    let mut tr = MessagesToChatStream::new("m", false).with_json_tool(json_tool.map(str::to_owned));
    let mut out = Vec::new();
    for (name, data) in events {
        tr.on_event(name, &data.to_string(), &mut out);
    }
    tr.finish(&mut out);
    String::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn thinking_becomes_reasoning_effort() {
    let to = |thinking: Value| {
        let body = json!({"max_tokens": 30000, "messages": [{"role": "user", "content": "hi"}], "thinking": thinking});
        let mut d = Dropped::default();
        let v = val(&messages_request_to_chat(body.to_string().as_bytes(), "gpt", &mut d).unwrap());
        assert!(d.is_empty(), "{d:?}");
        v.get("reasoning_effort").cloned()
    };
    for (budget, effort) in [
        (1024, "low"),
        (4095, "low"),
        (8192, "medium"),
        (16383, "medium"),
        (24576, "high"),
    ] {
        assert_eq!(
            to(json!({"type": "enabled", "budget_tokens": budget})),
            Some(json!(effort))
        );
    }
    assert_eq!(to(json!({"type": "disabled"})), None);
    assert_eq!(to(json!({"type": "adaptive"})), None);
}

#[test]
fn uncarried_request_fields_are_named() {
    let mut d = Dropped::default();
    let body = br#"{"max_tokens":5,"messages":[{"role":"user","content":"hi"}],"top_k":3,"container":"c"}"#;
    messages_request_to_chat(body, "gpt", &mut d).unwrap();
    assert_eq!(d.join(","), "top_k,container");
    let mut d = Dropped::default();
    let body = br#"{"messages":[{"role":"user","content":"hi"}],"seed":1,"logprobs":true,"response_format":{"type":"json_object"}}"#;
    chat_request_to_messages(body, "claude", &mut d).unwrap();
    assert_eq!(d.join(","), "logprobs,seed");
}

#[test]
fn thinking_blocks_become_reasoning_content() {
    let resp = json!({"id": "msg_1", "content": [
        {"type": "thinking", "thinking": "let me see", "signature": "sig"},
        {"type": "text", "text": "42"}
    ], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2}});
    let v = val(&messages_response_to_chat_at(resp.to_string().as_bytes(), "m", None, 1).unwrap());
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "let me see"
    );
    assert_eq!(v["choices"][0]["message"]["content"], "42");

    let chunks = a2o_stream(
        &[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1"}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "42"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ],
        None,
    );
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(deltas[1], &json!({"reasoning_content": "hmm"}));
    assert_eq!(deltas[2], &json!({"content": "42"}));
    assert_eq!(chunks.len(), 4, "{chunks:?}");
}

#[test]
fn reasoning_content_becomes_thinking() {
    let resp = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "42", "reasoning_content": "let me see"}}]});
    let v = val(&chat_response_to_messages(resp.to_string().as_bytes(), "m").unwrap());
    assert_eq!(
        v["content"],
        json!([{"type": "thinking", "thinking": "let me see", "signature": ""}, {"type": "text", "text": "42"}])
    );

    let mut tr = ChatToMessagesStream::new("m");
    let mut out = Vec::new();
    for d in [
        json!({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "hm"}}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "m"}}]}),
        json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "42"}, "finish_reason": "stop"}]}),
    ] {
        tr.on_data(&d.to_string(), &mut out);
    }
    tr.on_data("[DONE]", &mut out);
    let events: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter_map(|f| {
            f.split_once("\ndata: ")
                .map(|(_, d)| serde_json::from_str(d).unwrap())
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[1]["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    assert_eq!(
        events[2]["delta"],
        json!({"type": "thinking_delta", "thinking": "hm"})
    );
    assert_eq!(events[5]["index"], 1);
}

#[test]
fn json_schema_is_a_forced_tool_and_comes_back_as_content() {
    let body = json!({"messages": [{"role": "user", "content": "weather?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "strict": true,
            "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}}});
    let v = val(&chat_request_to_messages(
        body.to_string().as_bytes(),
        "claude",
        &mut Dropped::default(),
    )
    .unwrap());
    assert_eq!(
        v["tools"],
        json!([{"name": "weather", "input_schema": {"type": "object", "properties": {"t": {"type": "number"}}}}])
    );
    assert_eq!(v["tool_choice"], json!({"type": "tool", "name": "weather"}));
    assert_eq!(
        json_answer_tool(body.to_string().as_bytes()).as_deref(),
        Some("weather")
    );

    let resp = json!({"id": "msg_1", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"t": 21.5}}],
        "stop_reason": "tool_use"});
    let v =
        val(
            &messages_response_to_chat_at(resp.to_string().as_bytes(), "m", Some("weather"), 1)
                .unwrap(),
        );
    assert_eq!(v["choices"][0]["message"]["content"], r#"{"t":21.5}"#);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());

    let chunks = a2o_stream(
        &[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1"}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"t\":"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "21.5}"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ],
        Some("weather"),
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, r#"{"t":21.5}"#);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn json_object_is_a_system_instruction_and_client_tools_stay() {
    let body = br#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#;
    let v = val(&chat_request_to_messages(body, "claude", &mut Dropped::default()).unwrap());
    assert!(v["system"][1]["text"].as_str().unwrap().contains("JSON"));
    let body = json!({"messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}});
    let v = val(&chat_request_to_messages(
        body.to_string().as_bytes(),
        "claude",
        &mut Dropped::default(),
    )
    .unwrap());
    assert_eq!(v["tools"].as_array().unwrap().len(), 2);
    assert_eq!(v["tool_choice"], json!({"type": "any"}));
}
