//! Snapshot tests: realistic chat requests and the Gemini bodies they become (with what was
//! dropped), and Gemini answers, stream chunks and blocked prompts (shaped after Google's
//! Gemini API reference) with the chat completions and chunks they become. `created` is fixed
//! and generated ids are redacted, so the snapshots are deterministic.

use serde_json::{Value, json};

use super::super::Dropped;
use super::super::pivot::testing::{redact, snap_json, sse_data, translated};
use super::response::gemini_response_to_chat_at;
use super::{GeminiToChatStream, chat_request_to_gemini};
use crate::sse::SseParser;

const CREATED: u64 = 1_764_000_000;

fn request(req: &str, model: &str) -> Value {
    let mut dropped = Dropped::default();
    let out = chat_request_to_gemini(req.as_bytes(), model, &mut dropped).expect("translates");
    translated(req, &out, Some(&dropped))
}

fn answer(body: &str) -> Value {
    let out =
        gemini_response_to_chat_at(body.as_bytes(), "gemini-flash", CREATED).expect("translates");
    translated(body, &out, None)
}

/// A stream as it comes off the wire (events separated by `\r\n\r\n`, split into network
/// chunks at awkward places), through the SSE parser and the converter.
fn stream(events: &[&str], include_usage: bool) -> Value {
    let wire: String = events
        .iter()
        .map(|e| format!("data: {e}\r\n\r\n"))
        .collect();
    let mut conv = GeminiToChatStream::new("gemini-flash", include_usage).with_created(CREATED);
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for chunk in wire.as_bytes().chunks(37) {
        parser.push(chunk, |ev| conv.on_data(ev.data, &mut out));
    }
    // The upstream's body ended.
    conv.finish(&mut out);
    let mut v = json!({
        "from": events.iter().map(|e| serde_json::from_str::<Value>(e).expect("input is JSON")).collect::<Vec<_>>(),
        "to": sse_data(&out),
    });
    redact(&mut v);
    v
}

// ----------------------------------------------------------------------------------------------
// Requests
// ----------------------------------------------------------------------------------------------

#[test]
fn request_gemini_system_multi_turn_sampling() {
    let req = r#"{
      "model": "gemini-flash",
      "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "And of Italy?"},
        {"role": "user", "content": [{"type": "text", "text": "Say \"Rome\" if you're sure.\nThanks!"}]}
      ],
      "max_completion_tokens": 256,
      "max_tokens": 10,
      "temperature": 0.7,
      "top_p": 0.9,
      "stop": ["\n\nUser:", "END"],
      "n": 2,
      "seed": 42,
      "presence_penalty": 0.5,
      "frequency_penalty": 0.25,
      "response_format": {"type": "json_object"},
      "stream": true,
      "stream_options": {"include_usage": true},
      "user": "user-1234",
      "logprobs": true,
      "top_logprobs": 3
    }"#;
    snap_json!(request(req, "gemini-2.5-flash"));
}

#[test]
fn request_gemini_tools_and_results() {
    let req = r#"{
      "model": "gemini-flash",
      "messages": [
        {"role": "user", "content": "What's the weather in Paris and the time in Tokyo?"},
        {"role": "assistant", "content": "Let me look those up.", "tool_calls": [
          {"id": "call_0123456789abcdef0123456789abcdef_ts_--__Pj8BAgMEBQ", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}"}},
          {"id": "call_7x8Qm2yZLr1u", "type": "function", "function": {"name": "get_time", "arguments": "{\"timezone\":\"Asia/Tokyo\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_0123456789abcdef0123456789abcdef_ts_--__Pj8BAgMEBQ", "content": "{\"temperature\": 14, \"conditions\": \"cloudy\"}"},
        {"role": "tool", "tool_call_id": "call_7x8Qm2yZLr1u", "content": "2025-11-26T21:04:00+09:00"},
        {"role": "user", "content": "Thanks. Book a table for two."}
      ],
      "tools": [
        {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a given location", "strict": true,
          "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": false,
            "properties": {"location": {"type": "string", "description": "City and country"}, "unit": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit"]}},
            "required": ["location", "unit"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "Current local time in a timezone",
          "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}},
        {"type": "function", "function": {"name": "list_bookings", "description": "The user's bookings", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "book_table"}}
      ],
      "tool_choice": {"type": "function", "function": {"name": "book_table"}},
      "parallel_tool_calls": false
    }"#;
    snap_json!(request(req, "gemini-2.5-flash"));
}

#[test]
fn request_gemini_media() {
    let req = r#"{
      "model": "gemini-flash",
      "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Describe what you get."}, {"type": "image_url", "image_url": {"url": "https://example.com/logo.png"}}]},
        {"role": "user", "content": [
          {"type": "text", "text": "What is in these?"},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "detail": "low"}},
          {"type": "image_url", "image_url": {"url": "https://upload.example.org/photos/Cat03.JPG?width=640"}},
          {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZFZm10IBAAAAABAAEA", "format": "wav"}},
          {"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}},
          {"type": "file", "file": {"file_id": "file-abc123"}},
          {"type": "image_url", "image_url": {"url": "ftp://example.com/x.gif"}}
        ]}
      ]
    }"#;
    snap_json!(request(req, "gemini-2.5-flash"));
}

#[test]
fn request_gemini_json_schema_and_reasoning() {
    // The schema the openai SDK writes for a pydantic model with a nested model and an
    // Optional field.
    let req = r##"{
      "model": "gemini-pro",
      "messages": [{"role": "user", "content": "Extract the person: Ada, who lives in London."}],
      "reasoning_effort": "high",
      "response_format": {"type": "json_schema", "json_schema": {"name": "Person", "strict": true, "schema": {
        "$defs": {"Address": {"additionalProperties": false, "properties": {"city": {"title": "City", "type": "string"}}, "required": ["city"], "title": "Address", "type": "object"}},
        "additionalProperties": false,
        "properties": {
          "name": {"title": "Name", "type": "string"},
          "home": {"$ref": "#/$defs/Address"},
          "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]}
        },
        "required": ["name", "home", "work"],
        "title": "Person",
        "type": "object"
      }}}
    }"##;
    snap_json!(request(req, "gemini-2.5-pro"));
}

// ----------------------------------------------------------------------------------------------
// Answers
// ----------------------------------------------------------------------------------------------

#[test]
fn response_gemini_text_thoughts_usage() {
    let body = r#"{
      "candidates": [{
        "content": {"parts": [
          {"text": "The user asks for a haiku about the sea. Five, seven, five.", "thought": true},
          {"text": "Grey waves fold and break,\n"},
          {"text": "salt wind carries \"gull\" cries—\nthe tide keeps its time."}
        ], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
      }],
      "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 21, "totalTokenCount": 97, "thoughtsTokenCount": 64, "cachedContentTokenCount": 8,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]},
      "modelVersion": "gemini-2.5-flash",
      "responseId": "mEQraLzYL8bT7M8Py8W0gAw"
    }"#;
    snap_json!(answer(body));
}

#[test]
fn response_gemini_function_calls() {
    let body = r#"{
      "candidates": [{
        "content": {"parts": [
          {"functionCall": {"name": "get_weather", "args": {"location": "Paris, France", "unit": "celsius"}}, "thoughtSignature": "++//Pj8BAgMEBQ=="},
          {"functionCall": {"name": "get_time", "args": {"timezone": "Asia/Tokyo"}}}
        ], "role": "model"},
        "finishReason": "STOP",
        "index": 0
      }],
      "usageMetadata": {"promptTokenCount": 96, "candidatesTokenCount": 28, "totalTokenCount": 124},
      "responseId": "fc-1"
    }"#;
    snap_json!(answer(body));
}

#[test]
fn response_gemini_finish_reasons_and_candidates() {
    let body = r#"{
      "candidates": [
        {"content": {"parts": [{"text": "Once upon a time"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 0},
        {"content": {"parts": [], "role": "model"}, "finishReason": "SAFETY", "index": 1,
         "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
        {"finishReason": "RECITATION", "index": 2},
        {"content": {"parts": [{"text": "A"}], "role": "model"}, "finishReason": "OTHER", "index": 3}
      ],
      "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4, "totalTokenCount": 9}
    }"#;
    snap_json!(answer(body));
}

#[test]
fn response_gemini_blocked_prompt() {
    let body = r#"{
      "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH", "blocked": true}]},
      "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
      "modelVersion": "gemini-2.5-flash",
      "responseId": "blk-1"
    }"#;
    snap_json!(answer(body));
}

// ----------------------------------------------------------------------------------------------
// Streams
// ----------------------------------------------------------------------------------------------

#[test]
fn stream_gemini_text_thoughts_usage() {
    let events = [
        r#"{"candidates": [{"content": {"parts": [{"text": "Counting the letters.", "thought": true}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "s-1"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": "There are three"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}, "responseId": "s-1"}"#,
        r#"{"candidates": [{"content": {"parts": [{"text": " \"r\"s in\n\"strawberry\"."}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 11, "thoughtsTokenCount": 40, "totalTokenCount": 60}, "responseId": "s-1"}"#,
    ];
    snap_json!(stream(&events, true));
}

#[test]
fn stream_gemini_function_call() {
    let events = [
        r#"{"candidates": [{"content": {"parts": [{"text": "Checking."}], "role": "model"}, "index": 0}], "responseId": "s-2"}"#,
        r#"{"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "++//Pj8BAgMEBQ=="}, {"functionCall": {"name": "get_time", "args": {}}}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12, "totalTokenCount": 42}, "responseId": "s-2"}"#,
    ];
    snap_json!(stream(&events, false));
}

#[test]
fn stream_gemini_blocked_cut_and_error() {
    let blocked = [
        r#"{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "responseId": "s-3"}"#,
    ];
    let cut = [
        r#"{"candidates": [{"content": {"parts": [{"text": "The first part"}], "role": "model"}, "index": 0}], "responseId": "s-4"}"#,
    ];
    let error = [
        r#"{"candidates": [{"content": {"parts": [{"text": "Hal"}], "role": "model"}, "index": 0}], "responseId": "s-5"}"#,
        r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#,
    ];
    snap_json!(json!({
        "blocked": stream(&blocked, true),
        // No finishReason before the body ended.
        "cut": stream(&cut, true),
        "error": stream(&error, false),
    }));
}

#[test]
fn stream_ignores_what_follows_done_and_unreadable_chunks() {
    let mut conv = GeminiToChatStream::new("m", false).with_created(CREATED);
    let mut out = Vec::new();
    conv.on_data("not json", &mut out);
    assert!(out.is_empty());
    conv.on_data(
        r#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}]}"#,
        &mut out,
    );
    conv.finish(&mut out);
    let n = out.len();
    conv.on_data(
        r#"{"candidates":[{"content":{"parts":[{"text":"b"}]}}]}"#,
        &mut out,
    );
    conv.finish(&mut out);
    assert_eq!(out.len(), n);
    assert_eq!(String::from_utf8_lossy(&out).matches("[DONE]").count(), 1);
}
