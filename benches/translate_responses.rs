//! The Responses API translation's costs: a realistic Responses request (instructions, three
//! turns, two tools) -> chat; a chat answer -> Response object; one chat chunk -> events; SSE
//! parsing plus translation of a 20-chunk chat stream -> Responses events (beside the plain copy
//! of the same bytes that a pass-through does).

#![expect(clippy::panic, reason = "benchmark setup")]

use std::hint::black_box;

use ai_gateway::{sse::SseParser, translate as tr};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const REQUEST: &str = r#"{
  "model": "gpt-4.1",
  "instructions": "You are a helpful assistant with access to tools. Answer concisely and cite the tool results you used. Never invent data that a tool did not return.",
  "input": [
    {"role": "user", "content": "What's the weather in Paris and the time in Tokyo?"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look those up.", "annotations": []}]},
    {"type": "function_call", "call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "arguments": "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}"},
    {"type": "function_call", "call_id": "call_7x8Qm2yZLr1u", "name": "get_time", "arguments": "{\"timezone\":\"Asia/Tokyo\"}"},
    {"type": "function_call_output", "call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "output": "{\"temperature\": 14, \"conditions\": \"cloudy\", \"humidity\": 0.81, \"wind_kph\": 12}"},
    {"type": "function_call_output", "call_id": "call_7x8Qm2yZLr1u", "output": "2025-11-26T21:04:00+09:00"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "In Paris it is 14\u00b0C and cloudy; in Tokyo it is 21:04.\nAnything else?", "annotations": []}]},
    {"role": "user", "content": [
      {"type": "input_text", "text": "Summarise this note:\n\"Quarterly review moved to Thursday. Bring the Q3 numbers, the hiring plan and the draft budget. Lunch is provided.\""},
      {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "detail": "low"}
    ]}
  ],
  "tools": [
    {"type": "function", "name": "get_weather", "description": "Get the current weather in a given location",
      "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City and country"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}},
    {"type": "function", "name": "get_time", "description": "Current local time in a timezone",
      "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}
  ],
  "tool_choice": "auto",
  "max_output_tokens": 1024,
  "temperature": 0.3,
  "metadata": {"session": "abc-123"},
  "stream": true,
  "user": "user-1234"
}"#;

const ANSWER: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"The quarterly review moved to \"Thursday\": bring the Q3 numbers, the hiring plan and the draft budget. Lunch is provided.\nShall I add it to your calendar?","refusal":null,"annotations":[],"tool_calls":[{"id":"call_Qm2yZLr1u7x8","type":"function","function":{"name":"add_event","arguments":"{\"title\":\"Quarterly review\",\"day\":\"Thursday\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":412,"completion_tokens":58,"total_tokens":470,"prompt_tokens_details":{"cached_tokens":256,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_eb9dce56a8"}"#;

const CHUNK: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" the quarterly review moved to \"Thursday\",\n"},"logprobs":null,"finish_reason":null}],"usage":null}"#;

/// A chat stream of 20 chunks (role, 16 text, finish, usage, [DONE]).
fn chat_stream() -> Vec<u8> {
    let mut s = String::new();
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":"#;
    let mut data = |d: &str| s.push_str(&format!("data: {d}\n\n"));
    data(&format!(
        r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
    ));
    for _ in 0..16 {
        data(CHUNK);
    }
    data(&format!(
        r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
    ));
    data(&format!(
        r#"{head}[],"usage":{{"prompt_tokens":19,"completion_tokens":160,"total_tokens":179,"prompt_tokens_details":{{"cached_tokens":0}}}}}}"#
    ));
    data("[DONE]");
    s.into_bytes()
}

fn head() -> tr::ResponsesHead {
    let ids = tr::ResponseIds::new();
    match tr::responses_request_to_chat(
        REQUEST.as_bytes(),
        &[],
        "gpt-4.1-2025-04-14",
        &ids,
        &mut tr::Dropped::default(),
    ) {
        Ok(r) => r.head,
        Err(e) => panic!("the bench request translates: {e}"),
    }
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("responses");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    let ids = tr::ResponseIds::new();
    g.bench_function("request_to_chat", |b| {
        b.iter(|| {
            let mut dropped = tr::Dropped::default();
            tr::responses_request_to_chat(
                black_box(REQUEST.as_bytes()),
                &[],
                "gpt-4.1-2025-04-14",
                &ids,
                &mut dropped,
            )
        })
    });
    let head = head();
    g.bench_function("answer_to_response", |b| {
        b.iter(|| tr::chat_response_to_responses(black_box(ANSWER.as_bytes()), &head, &ids))
    });
    g.bench_function("stream_chunk", |b| {
        let mut s = tr::ChatToResponsesStream::new(head.clone(), ids.clone());
        let mut out = Vec::with_capacity(1024);
        s.on_data(CHUNK, &mut out);
        b.iter(|| {
            out.clear();
            s.on_data(black_box(CHUNK), &mut out);
            black_box(out.len())
        })
    });
    g.finish();

    let stream = chat_stream();
    let pieces: Vec<&[u8]> = stream.chunks(256).collect();
    let mut g = c.benchmark_group("responses_sse_20_chunks");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse_and_translate", |b| {
        let mut out = Vec::with_capacity(stream.len() * 3);
        b.iter(|| {
            out.clear();
            let mut p = SseParser::new();
            let mut s = tr::ChatToResponsesStream::new(head.clone(), ids.clone());
            for piece in &pieces {
                p.push(black_box(piece), |e| s.on_data(e.data, &mut out));
            }
            s.finish(&mut out);
            black_box(s.take_answer());
            out.len()
        })
    });
    g.bench_function("passthrough_copy", |b| {
        let mut out = Vec::with_capacity(stream.len());
        b.iter(|| {
            out.clear();
            for piece in &pieces {
                out.extend_from_slice(black_box(piece));
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
