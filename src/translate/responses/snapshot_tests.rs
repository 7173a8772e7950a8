//! Snapshot tests: realistic Responses requests with the chat requests they become (and the echo,
//! stored items and dropped fields), chat answers with the Response objects they become, and
//! chat streams with the events they become. Ids and times are fixed, so the snapshots are
//! deterministic.

use serde_json::{Value, json};

use super::answer::chat_response_to_responses_at;
use super::*;
use crate::sse::SseParser;
use crate::translate::Dropped;

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

fn ids() -> ResponseIds {
    ResponseIds::with("resp_68af1c2b9e3c8190a1b2c3d4e5f60718".into(), CREATED)
}

fn val(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("output is JSON")
}

fn translate(input: &str, history: &[&serde_json::value::RawValue]) -> (ResponsesRequest, Dropped) {
    let mut dropped = Dropped::default();
    let r = responses_request_to_chat(
        input.as_bytes(),
        history,
        "gpt-4o-2024-08-06",
        &ids(),
        &mut dropped,
    )
    .expect("translates");
    (r, dropped)
}

/// The request, the chat request, the echoed fields, the stored input items and what was dropped.
fn request_snapshot(input: &str) -> Value {
    let (r, dropped) = translate(input, &[]);
    json!({
        "from": serde_json::from_str::<Value>(input).expect("input is JSON"),
        "chat": val(&r.chat),
        "head": {"model": r.head.model, "stream": r.head.stream, "store": r.head.store,
                 "background": r.head.background, "previous_response_id": r.head.previous_response_id,
                 "echo": serde_json::from_str::<Value>(&format!("{{{}}}", r.head.echo)).expect("echo is JSON members")},
        "input_items": val(&r.input_items),
        "dropped": dropped.join(","),
    })
}

fn plain_head() -> ResponsesHead {
    translate(r#"{"model":"gpt-4o","input":"hi","stream":true}"#, &[])
        .0
        .head
}

fn answer(head: &ResponsesHead, chat: &str) -> Value {
    let a = chat_response_to_responses_at(chat.as_bytes(), head, &ids(), CREATED + 3)
        .expect("translates");
    json!({"from": serde_json::from_str::<Value>(chat).expect("chat is JSON"), "to": val(&a.body),
           "output_items": val(&a.output_items), "status": a.status})
}

/// The events the chunks become (one `data:` payload each; `finish` when the upstream ended
/// without `[DONE]`), with the final Response's status.
fn stream(chunks: &[&str], finish: bool) -> String {
    let mut conv = ChatToResponsesStream::new(plain_head(), ids()).with_completed_at(CREATED + 3);
    let mut wire = String::new();
    for c in chunks {
        wire.push_str("data: ");
        wire.push_str(c);
        wire.push_str("\n\n");
    }
    let mut out = Vec::new();
    let mut parser = SseParser::new();
    parser.push(wire.as_bytes(), |e| conv.on_data(e.data, &mut out));
    if finish {
        conv.finish(&mut out);
    }
    let status = conv.take_answer().map_or("(none)", |a| a.status);
    format!(
        "{}-- final status: {status}\n",
        String::from_utf8_lossy(&out)
    )
}

// ----------------------------------------------------------------------------------------------
// Requests
// ----------------------------------------------------------------------------------------------

#[test]
fn responses_request_string_input() {
    snap_json!(request_snapshot(
        r#"{"model": "gpt-4o", "input": "Tell me a three sentence bedtime story about a unicorn."}"#
    ));
}

#[test]
fn responses_request_items_tools_and_format() {
    let req = r#"{
      "model": "gpt-4.1",
      "instructions": "You are a travel assistant. Answer with JSON.",
      "input": [
        {"role": "user", "content": [
          {"type": "input_text", "text": "What's the weather in Paris? Here is my itinerary:"},
          {"type": "input_image", "image_url": "https://example.com/itinerary.png", "detail": "high"},
          {"type": "input_file", "filename": "plan.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="}
        ]},
        {"type": "reasoning", "id": "rs_abc", "summary": [], "encrypted_content": "gAAAA..."},
        {"type": "message", "role": "assistant", "id": "msg_prev", "status": "completed",
         "content": [{"type": "output_text", "text": "Let me check the \"weather\".", "annotations": []}]},
        {"type": "function_call", "id": "fc_prev", "call_id": "call_8Uv3", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}", "status": "completed"},
        {"type": "function_call", "call_id": "call_9Xw4", "name": "get_time", "arguments": "{\"tz\":\"Europe/Paris\"}"},
        {"type": "function_call_output", "call_id": "call_8Uv3", "output": "{\"temp\":14,\"sky\":\"cloudy\"}"},
        {"type": "function_call_output", "call_id": "call_9Xw4", "output": [{"type": "input_text", "text": "21:04"}]},
        {"role": "developer", "content": "Keep it short."},
        {"role": "user", "content": "And tomorrow?"}
      ],
      "tools": [
        {"type": "function", "name": "get_weather", "description": "Current weather for a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                        "required": ["city", "unit"], "additionalProperties": false},
         "strict": true},
        {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
        {"type": "web_search_preview"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]}
      ],
      "tool_choice": "required",
      "parallel_tool_calls": false,
      "text": {"format": {"type": "json_schema", "name": "forecast", "strict": true,
                          "schema": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false}},
               "verbosity": "low"},
      "reasoning": {"effort": "medium", "summary": "auto"},
      "max_output_tokens": 1024,
      "temperature": 0.4,
      "top_p": 0.95,
      "user": "user-1234",
      "safety_identifier": "hash-5678",
      "prompt_cache_key": "travel-v1",
      "service_tier": "flex",
      "metadata": {"trip": "paris-2025"},
      "store": true,
      "stream": true,
      "truncation": "auto",
      "include": ["reasoning.encrypted_content"],
      "top_logprobs": 3,
      "max_tool_calls": 5
    }"#;
    snap_json!(request_snapshot(req));
}

#[test]
fn responses_request_tool_choices_and_formats() {
    let cases = [
        r#"{"model":"m","input":"x","tools":[{"type":"function","name":"a"},{"type":"function","name":"b"}],
            "tool_choice":{"type":"allowed_tools","mode":"required","tools":[{"type":"function","name":"a"},{"type":"mcp","server_label":"deepwiki"}]}}"#,
        r#"{"model":"m","input":"x","tools":[{"type":"function","name":"a"}],"tool_choice":{"type":"function","name":"a"},"text":{"format":{"type":"json_object"}}}"#,
        r#"{"model":"m","input":"x","tools":[{"type":"function","name":"a"}],"tool_choice":{"type":"file_search"},"text":{"format":{"type":"text"}}}"#,
        r#"{"model":"m","input":"x","tools":[{"type":"web_search"}],"tool_choice":"required","parallel_tool_calls":true}"#,
        r#"{"model":"m","input":"x","tool_choice":"auto","store":false,"background":true,"previous_response_id":"resp_1","stream_options":{"include_obfuscation":true}}"#,
    ];
    let v: Vec<Value> = cases.iter().map(|c| request_snapshot(c)).collect();
    snap_json!(v);
}

#[test]
fn responses_request_continues_stored_history() {
    // The stored items of a first turn (its input, then its output) continue the conversation.
    let first = translate(
        r#"{"model":"gpt-4o","instructions":"Be brief.","input":"What is 2+2?"}"#,
        &[],
    )
    .0;
    let chat = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"4.","tool_calls":[
        {"id":"call_1","type":"function","function":{"name":"calc","arguments":"{\"e\":\"2+2\"}"}}]},"finish_reason":"tool_calls"}]}"#;
    let out = chat_response_to_responses_at(chat.as_bytes(), &first.head, &ids(), CREATED)
        .expect("translates");
    let input: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(&first.input_items).expect("array");
    let output: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(&out.output_items).expect("array");
    let history: Vec<_> = input.into_iter().chain(output).collect();
    let second = r#"{"model":"claude-sonnet","previous_response_id":"resp_68af1c2b9e3c8190a1b2c3d4e5f60718",
        "instructions":"Answer in French.",
        "input":[{"type":"function_call_output","call_id":"call_1","output":"4"},{"role":"user","content":"And 3+3?"}]}"#;
    let (r, dropped) = translate(second, &history);
    snap_json!(json!({
        "history": history.iter().map(|h| serde_json::from_str::<Value>(h.get()).expect("JSON")).collect::<Vec<_>>(),
        "request": serde_json::from_str::<Value>(second).expect("JSON"),
        "chat": val(&r.chat),
        "input_items": val(&r.input_items),
        "dropped": dropped.join(","),
    }));
}

#[test]
fn responses_request_errors() {
    let cases = [
        "not json",
        r#"{"model":"m"}"#,
        r#"{"model":"m","instructions":"only instructions"}"#,
        r#"{"model":"m","input":5}"#,
        r#"{"model":"m","input":[{"role":"user","content":"ok"},{"role":"robot","content":"x"}]}"#,
        r#"{"model":"m","input":[{"role":"user"}]}"#,
        r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_audio"}]}]}"#,
        r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#,
        r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","detail":"low"}]}]}"#,
        r#"{"model":"m","input":[{"role":"user","content":7}]}"#,
        r#"{"model":"m","input":[{"type":"function_call","name":"f"}]}"#,
        r#"{"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}"#,
        r#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#,
        r#"{"model":"m","input":[{"type":"telepathy"}]}"#,
        r#"{"model":"m","input":["just a string in a list"]}"#,
        r#"{"model":"m","input":"x","instructions":["not","a","string"]}"#,
        r#"{"model":"m","input":"x","conversation":"conv_1"}"#,
        r#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#,
        r#"{"model":"m","input":"x","tools":{"type":"function"}}"#,
        r#"{"model":"m","input":"x","tool_choice":{"type":"function"}}"#,
        r#"{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"x"}}}"#,
        r#"{"model":"m","input":"x","temperature":"hot"}"#,
    ];
    let mut out = String::new();
    for c in cases {
        let mut dropped = Dropped::default();
        let e = responses_request_to_chat(c.as_bytes(), &[], "m", &ids(), &mut dropped)
            .expect_err("refused");
        out.push_str(&format!("{c}\n  -> {e}\n"));
    }
    snap!(out);
}

// ----------------------------------------------------------------------------------------------
// Answers
// ----------------------------------------------------------------------------------------------

#[test]
fn responses_answer_text_with_usage() {
    let head = translate(
        r#"{"model":"gpt-4o","instructions":"Be kind.","input":"hi","temperature":0.5,"metadata":{"k":"v"},"store":false}"#,
        &[],
    )
    .0
    .head;
    snap_json!(answer(
        &head,
        r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,
        "model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant",
        "content":"Hello! How can I help you today? \"Quotes\" stay\nescaped.","refusal":null,"annotations":[]},
        "logprobs":null,"finish_reason":"stop"}],
        "usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
        "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},
        "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
        "service_tier":"default","system_fingerprint":"fp_50cad350e4"}"#
    ));
}

#[test]
fn responses_answer_reasoning_and_tool_calls() {
    snap_json!(answer(
        &plain_head(),
        r#"{"id":"chatcmpl-2","object":"chat.completion","created":1741570283,"model":"deepseek-reasoner",
        "choices":[{"index":0,"message":{"role":"assistant","content":"I'll look both up.",
        "reasoning_content":"The user asks for weather and time; call both tools.",
        "tool_calls":[
          {"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Paris, France\"}"}},
          {"id":"call_7x8Qm2yZLr1u","type":"function","function":{"name":"get_time","arguments":"{\"timezone\":\"Asia/Tokyo\"}"}}]},
        "finish_reason":"tool_calls"}],
        "usage":{"prompt_tokens":120,"completion_tokens":80,"total_tokens":200,
        "prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":42}}}"#
    ));
}

#[test]
fn responses_answer_incomplete_and_refusal() {
    let head = plain_head();
    let v = vec![
        answer(
            &head,
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"The list goes: one, two,"},"finish_reason":"length"}],
            "usage":{"prompt_tokens":10,"completion_tokens":16,"total_tokens":26}}"#,
        ),
        answer(
            &head,
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I'm sorry, I can't assist with that."},"finish_reason":"content_filter"}]}"#,
        ),
        answer(
            &head,
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"text","text":"Part one. "},{"type":"text","text":"Part two."}]},"finish_reason":"stop"}]}"#,
        ),
        answer(
            &head,
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#,
        ),
    ];
    snap_json!(v);
}

#[test]
fn responses_answer_errors() {
    let head = plain_head();
    for body in [
        "",
        "[]",
        r#"{"choices":null}"#,
        r#"{"object":"chat.completion"}"#,
    ] {
        assert!(
            chat_response_to_responses(body.as_bytes(), &head, &ids()).is_err(),
            "{body}"
        );
    }
}

// ----------------------------------------------------------------------------------------------
// Streams
// ----------------------------------------------------------------------------------------------

const HEAD: &str = r#""id":"chatcmpl-B9MH","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8""#;

fn c(choices: &str) -> String {
    format!(r#"{{{HEAD},"choices":{choices},"usage":null}}"#)
}

#[test]
fn responses_stream_text_with_usage() {
    let chunks = [
        c(
            r#"[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]"#,
        ),
        c(r#"[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]"#),
        c(
            r#"[{"index":0,"delta":{"content":" \"world\"\n"},"logprobs":null,"finish_reason":null}]"#,
        ),
        c(r#"[{"index":0,"delta":{"content":"é😀"},"logprobs":null,"finish_reason":null}]"#),
        c(r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#),
        format!(
            r#"{{{HEAD},"choices":[],"usage":{{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{{"cached_tokens":0}}}}}}"#
        ),
        "[DONE]".to_owned(),
    ];
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    snap!(stream(&chunks, true));
}

#[test]
fn responses_stream_reasoning_text_and_tool_calls() {
    let chunks = [
        c(
            r#"[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"Weather "},"finish_reason":null}]"#,
        ),
        c(r#"[{"index":0,"delta":{"reasoning_content":"needs a tool."},"finish_reason":null}]"#),
        c(r#"[{"index":0,"delta":{"content":"Checking."},"finish_reason":null}]"#),
        c(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]"#,
        ),
        c(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]"#,
        ),
        c(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]"#,
        ),
        c(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]"#,
        ),
        c(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"late"}}]},"finish_reason":null}]"#,
        ),
        c(r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#),
        "[DONE]".to_owned(),
    ];
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    snap!(stream(&chunks, true));
}

#[test]
fn responses_stream_incomplete_refusal_and_empty() {
    let length = [
        c(r#"[{"index":0,"delta":{"role":"assistant","content":"Cut"},"finish_reason":null}]"#),
        c(r#"[{"index":0,"delta":{"content":" short"},"finish_reason":"length"}]"#),
        "[DONE]".to_owned(),
    ];
    let refusal = [
        c(r#"[{"index":0,"delta":{"role":"assistant","content":"Well, "},"finish_reason":null}]"#),
        c(r#"[{"index":0,"delta":{"refusal":"I can't."},"finish_reason":null}]"#),
        c(r#"[{"index":0,"delta":{},"finish_reason":"content_filter"}]"#),
    ];
    let length: Vec<&str> = length.iter().map(String::as_str).collect();
    let refusal: Vec<&str> = refusal.iter().map(String::as_str).collect();
    snap!(format!(
        "== length\n{}== refusal, no [DONE]\n{}== empty\n{}",
        stream(&length, true),
        stream(&refusal, true),
        stream(&["[DONE]"], true)
    ));
}

#[test]
fn responses_stream_failures() {
    let error = [
        c(r#"[{"index":0,"delta":{"role":"assistant","content":"Part"},"finish_reason":null}]"#),
        r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#.to_owned(),
        c(r#"[{"index":0,"delta":{"content":"ignored after the error"},"finish_reason":null}]"#),
    ];
    let truncated = [c(
        r#"[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\""}}]},"finish_reason":null}]"#,
    )];
    let error: Vec<&str> = error.iter().map(String::as_str).collect();
    let truncated: Vec<&str> = truncated.iter().map(String::as_str).collect();
    snap!(format!(
        "== upstream error\n{}== truncated\n{}== nothing at all\n{}",
        stream(&error, true),
        stream(&truncated, true),
        stream(&[], true)
    ));
}
