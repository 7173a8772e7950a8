//! Translation costs: one realistic request each way, one stream chunk each way, and SSE parsing
//! plus translation of a 20-chunk stream.

use std::hint::black_box;

use ai_gateway::{sse::SseParser, translate as tr};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const OPENAI_REQUEST: &str = r#"{
  "model": "claude-sonnet",
  "messages": [
    {"role": "system", "content": "You are a helpful assistant with access to tools. Answer concisely and cite the tool results you used. Never invent data that a tool did not return."},
    {"role": "user", "content": "What's the weather in Paris and the time in Tokyo? Also summarise the attached note."},
    {"role": "assistant", "content": "Let me look those up.", "tool_calls": [
      {"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}"}},
      {"id": "call_7x8Qm2yZLr1u", "type": "function", "function": {"name": "get_time", "arguments": "{\"timezone\":\"Asia/Tokyo\"}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "content": "{\"temperature\": 14, \"conditions\": \"cloudy\", \"humidity\": 0.81, \"wind_kph\": 12}"},
    {"role": "tool", "tool_call_id": "call_7x8Qm2yZLr1u", "content": "2025-11-26T21:04:00+09:00"},
    {"role": "assistant", "content": "In Paris it is 14\u00b0C and cloudy; in Tokyo it is 21:04.\nWhich note do you mean?"},
    {"role": "user", "content": [
      {"type": "text", "text": "This one:\n\"Quarterly review moved to Thursday. Bring the Q3 numbers, the hiring plan and the draft budget. Lunch is provided.\""},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "detail": "low"}}
    ]}
  ],
  "tools": [
    {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a given location",
      "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City and country"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Current local time in a timezone",
      "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}},
    {"type": "function", "function": {"name": "search_notes", "description": "Full-text search over the user's notes",
      "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 50}}, "required": ["query"]}}}
  ],
  "tool_choice": "auto",
  "max_tokens": 1024,
  "temperature": 0.3,
  "stream": true,
  "stream_options": {"include_usage": true},
  "user": "user-1234"
}"#;

const ANTHROPIC_START: &str = r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#;
const ANTHROPIC_BLOCK_START: &str =
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
const ANTHROPIC_DELTA: &str = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the quarterly review moved to \"Thursday\",\n"}}"#;
const OPENAI_CHUNK: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" the quarterly review moved to \"Thursday\",\n"},"logprobs":null,"finish_reason":null}],"usage":null}"#;

/// An Anthropic stream of 20 events as it comes off the wire.
fn anthropic_stream() -> Vec<u8> {
    let mut s = String::new();
    let mut ev = |name: &str, data: &str| s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    ev("message_start", ANTHROPIC_START);
    ev("content_block_start", ANTHROPIC_BLOCK_START);
    ev("ping", r#"{"type": "ping"}"#);
    for _ in 0..14 {
        ev("content_block_delta", ANTHROPIC_DELTA);
    }
    ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    ev(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":150}}"#,
    );
    ev("message_stop", r#"{"type":"message_stop"}"#);
    s.into_bytes()
}

/// An OpenAI stream of 20 chunks (role, 16 text, finish, usage, [DONE]).
fn openai_stream() -> Vec<u8> {
    let mut s = String::new();
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","choices":"#;
    let mut data = |d: &str| s.push_str(&format!("data: {d}\n\n"));
    data(&format!(
        r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
    ));
    for _ in 0..16 {
        data(OPENAI_CHUNK);
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

/// Network chunks of about `n` bytes (cutting frames anywhere, as TCP does).
fn network_chunks(stream: &[u8], n: usize) -> Vec<&[u8]> {
    stream.chunks(n).collect()
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Bytes(OPENAI_REQUEST.len() as u64));
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| {
            tr::chat_request_to_messages(
                black_box(OPENAI_REQUEST.as_bytes()),
                "claude-sonnet-4-5",
                &mut Default::default(),
            )
        })
    });
    let anthropic = tr::chat_request_to_messages(
        OPENAI_REQUEST.as_bytes(),
        "claude-sonnet-4-5",
        &mut Default::default(),
    )
    .unwrap_or_default();
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| {
            tr::messages_request_to_chat(black_box(&anthropic), "gpt-4o", &mut Default::default())
        })
    });
    g.finish();
}

fn chunks(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_chunk");
    g.bench_function("anthropic_to_openai", |b| {
        let mut s = tr::MessagesToChatStream::new("claude-sonnet", true);
        let mut out = Vec::with_capacity(1024);
        s.on_event("message_start", ANTHROPIC_START, &mut out);
        s.on_event("content_block_start", ANTHROPIC_BLOCK_START, &mut out);
        b.iter(|| {
            out.clear();
            s.on_event("content_block_delta", black_box(ANTHROPIC_DELTA), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("openai_to_anthropic", |b| {
        let mut s = tr::ChatToMessagesStream::new("gpt-4o");
        let mut out = Vec::with_capacity(1024);
        s.on_data(OPENAI_CHUNK, &mut out);
        b.iter(|| {
            out.clear();
            s.on_data(black_box(OPENAI_CHUNK), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn sse(c: &mut Criterion) {
    let stream = anthropic_stream();
    let pieces = network_chunks(&stream, 256);
    let mut g = c.benchmark_group("sse_20_events");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0usize;
            for piece in &pieces {
                p.push(black_box(piece), |e| n += e.data.len());
            }
            n
        })
    });
    g.bench_function("parse_and_translate_to_openai", |b| {
        let mut out = Vec::with_capacity(stream.len() * 2);
        b.iter(|| {
            out.clear();
            let mut p = SseParser::new();
            let mut s = tr::MessagesToChatStream::new("claude-sonnet", true);
            for piece in &pieces {
                p.push(black_box(piece), |e| s.on_event(e.event, e.data, &mut out));
            }
            s.finish(&mut out);
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

    let stream = openai_stream();
    let pieces = network_chunks(&stream, 256);
    let mut g = c.benchmark_group("sse_20_chunks_openai");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse_and_translate_to_anthropic", |b| {
        let mut out = Vec::with_capacity(stream.len() * 2);
        b.iter(|| {
            out.clear();
            let mut p = SseParser::new();
            let mut s = tr::ChatToMessagesStream::new("gpt-4o");
            for piece in &pieces {
                p.push(black_box(piece), |e| s.on_data(e.data, &mut out));
            }
            s.finish(&mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, requests, chunks, sse);
criterion_main!(benches);
