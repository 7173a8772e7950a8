//! Costs of the translations through the chat pivot to Gemini and Bedrock Converse: one
//! realistic request each way out (a system prompt, 3 turns, 2 tools), one answer each way
//! back, a 20-event Gemini SSE stream (parse + convert) and a 20-frame Bedrock event stream
//! (decode + convert), SigV4 signing, and the chat -> Anthropic request for comparison; also the
//! presets' quirks (a request with a refused field rewritten, a clean one left alone, a stream
//! chunk's `reasoning` renamed).

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use ai_gateway::config::ProviderType;
use ai_gateway::providers::aws::eventstream::{self, EventStreamDecoder};
use ai_gateway::providers::aws::sigv4::SigV4;
use ai_gateway::providers::aws::{ConverseStreamToChat, bedrock_base_url, bedrock_url};
use ai_gateway::providers::quirks;
use ai_gateway::{sse::SseParser, translate as tr};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CHAT_REQUEST: &str = r#"{
  "model": "assistant",
  "messages": [
    {"role": "system", "content": "You are a travel assistant with access to tools. Answer concisely, cite the tool results you used and never invent data that a tool did not return."},
    {"role": "user", "content": "What's the weather in Lisbon tomorrow, and is there a direct train from Porto?"},
    {"role": "assistant", "content": "Let me check both.", "tool_calls": [
      {"id": "call_Lx9PqW2mZt8c", "type": "function", "function": {"name": "get_forecast", "arguments": "{\"city\": \"Lisbon, Portugal\", \"day\": \"tomorrow\", \"unit\": \"celsius\"}"}},
      {"id": "call_Rk3vN7bYq1sd", "type": "function", "function": {"name": "find_trains", "arguments": "{\"from\":\"Porto\",\"to\":\"Lisbon\",\"direct\":true}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_Lx9PqW2mZt8c", "content": "{\"high\": 21, \"low\": 14, \"conditions\": \"sunny\", \"wind_kph\": 9}"},
    {"role": "tool", "tool_call_id": "call_Rk3vN7bYq1sd", "content": "[{\"dep\": \"07:39\", \"arr\": \"10:27\", \"train\": \"AP 121\"}, {\"dep\": \"09:39\", \"arr\": \"12:27\", \"train\": \"AP 123\"}]"},
    {"role": "assistant", "content": "Tomorrow Lisbon will be sunny, 14-21\u00b0C. Direct Alfa Pendular trains leave Porto at 07:39 and 09:39 (about 2h50).\nShall I book one?"},
    {"role": "user", "content": [
      {"type": "text", "text": "Yes, the 09:39 one. Here is my ticket from last time:\n\"Porto Campanh\u00e3 \u2192 Lisboa Santa Apol\u00f3nia, coach 4\"."},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="}}
    ]}
  ],
  "tools": [
    {"type": "function", "function": {"name": "get_forecast", "description": "Weather forecast for a city and day",
      "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City and country"}, "day": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "day"], "additionalProperties": false}}},
    {"type": "function", "function": {"name": "find_trains", "description": "Trains between two stations",
      "parameters": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}, "direct": {"type": "boolean"}}, "required": ["from", "to"]}}}
  ],
  "tool_choice": "auto",
  "max_completion_tokens": 1024,
  "temperature": 0.3,
  "stream": true,
  "stream_options": {"include_usage": true}
}"#;

const GEMINI_ANSWER: &str = r#"{"candidates":[{"content":{"parts":[{"text":"I booked the 09:39 Alfa Pendular (AP 123) from Porto Campanh\u00e3 to Lisboa Santa Apol\u00f3nia, coach 4.\nIt arrives at 12:27; tomorrow will be sunny in Lisbon, 14-21\u00b0C."},{"functionCall":{"name":"book_train","args":{"train":"AP 123","coach":4,"date":"tomorrow"}},"thoughtSignature":"CiQBcsjafE9Qm3rE5a8Ew0tO6i7H5xq0kP2d8vS1"}],"role":"model"},"finishReason":"STOP","index":0,"safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"NEGLIGIBLE"}]}],"usageMetadata":{"promptTokenCount":412,"candidatesTokenCount":61,"totalTokenCount":601,"thoughtsTokenCount":128},"modelVersion":"gemini-2.5-flash","responseId":"mEQraLzYL8bT7M8Py8W0gAw"}"#;

const CONVERSE_ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"I booked the 09:39 Alfa Pendular (AP 123) from Porto Campanh\u00e3 to Lisboa Santa Apol\u00f3nia, coach 4.\nIt arrives at 12:27; tomorrow will be sunny in Lisbon, 14-21\u00b0C."},{"toolUse":{"toolUseId":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","name":"book_train","input":{"train":"AP 123","coach":4,"date":"tomorrow"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":412,"outputTokens":61,"totalTokens":473},"metrics":{"latencyMs":1203}}"#;

const DELTA_TEXT: &str = " the 09:39 Alfa Pendular leaves from \\\"Campanh\\u00e3\\\",\\n";

/// A Gemini stream of 20 events as it comes off the wire (`\r\n\r\n` between events).
fn gemini_stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..20 {
        let last = i == 19;
        s.push_str(&format!(
            r#"data: {{"candidates": [{{"content": {{"parts": [{{"text": "{DELTA_TEXT}"}}],"role": "model"}},"index": 0{}}}],"usageMetadata": {{"promptTokenCount": 412,"candidatesTokenCount": {},"totalTokenCount": {}}},"modelVersion": "gemini-2.5-flash","responseId": "mEQraLzYL8bT7M8Py8W0gAw"}}"#,
            if last { r#","finishReason": "STOP""# } else { "" },
            i * 8,
            412 + i * 8
        ));
        s.push_str("\r\n\r\n");
    }
    s.into_bytes()
}

fn frame(event: &str, payload: &str) -> Vec<u8> {
    eventstream::event(event, payload.as_bytes())
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// A ConverseStream body of 20 frames.
fn bedrock_stream() -> Vec<u8> {
    let mut s = frame("messageStart", r#"{"role":"assistant","p":"abcdefghijkl"}"#);
    for _ in 0..16 {
        s.extend(frame(
            "contentBlockDelta",
            &format!(
                r#"{{"contentBlockIndex":0,"delta":{{"text":"{DELTA_TEXT}"}},"p":"abcdefghijklmnopqrstu"}}"#
            ),
        ));
    }
    s.extend(frame(
        "contentBlockStop",
        r#"{"contentBlockIndex":0,"p":"abcd"}"#,
    ));
    s.extend(frame(
        "messageStop",
        r#"{"stopReason":"end_turn","p":"abcdefg"}"#,
    ));
    s.extend(frame(
        "metadata",
        r#"{"usage":{"inputTokens":412,"outputTokens":128,"totalTokens":540},"metrics":{"latencyMs":980},"p":"abc"}"#,
    ));
    s
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub_request");
    g.throughput(Throughput::Bytes(CHAT_REQUEST.len() as u64));
    g.bench_function("chat_to_anthropic", |b| {
        b.iter(|| {
            tr::chat_request_to_messages(
                black_box(CHAT_REQUEST.as_bytes()),
                "claude-sonnet-4-5",
                &mut Default::default(),
            )
        })
    });
    g.bench_function("chat_to_gemini", |b| {
        b.iter(|| {
            let mut d = tr::Dropped::default();
            tr::chat_request_to_gemini(
                black_box(CHAT_REQUEST.as_bytes()),
                "gemini-2.5-flash",
                &mut d,
            )
        })
    });
    g.bench_function("chat_to_converse", |b| {
        b.iter(|| {
            let mut d = tr::Dropped::default();
            tr::chat_request_to_bedrock(
                black_box(CHAT_REQUEST.as_bytes()),
                "anthropic.claude-sonnet-4-20250514-v1:0",
                &mut d,
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("preset_quirks");
    let clean = bytes::Bytes::from_static(CHAT_REQUEST.as_bytes());
    let refused = bytes::Bytes::from(CHAT_REQUEST.replace(
        "\"temperature\": 0.3,",
        "\"temperature\": 0.3, \"logprobs\": true,",
    ));
    let groq = quirks::of(ProviderType::Groq);
    g.bench_function("groq_request_clean", |b| {
        b.iter(|| {
            let mut d = tr::Dropped::default();
            groq.request(black_box(clean.clone()), &mut d)
        })
    });
    g.bench_function("groq_request_strip_logprobs", |b| {
        b.iter(|| {
            let mut d = tr::Dropped::default();
            groq.request(black_box(refused.clone()), &mut d)
        })
    });
    let chunk = bytes::Bytes::from_static(
        br#"data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"deepseek/deepseek-r1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning":" so the 09:39 train"},"finish_reason":null}]}

"#,
    );
    let or = quirks::of(ProviderType::Openrouter);
    g.bench_function("openrouter_reasoning_chunk", |b| {
        b.iter(|| or.answer(black_box(chunk.clone())))
    });
    g.finish();

    let mut g = c.benchmark_group("hub_answer");
    g.bench_function("gemini_to_chat", |b| {
        b.iter(|| tr::gemini_response_to_chat(black_box(GEMINI_ANSWER.as_bytes()), "assistant"))
    });
    g.bench_function("converse_to_chat", |b| {
        b.iter(|| tr::bedrock_response_to_chat(black_box(CONVERSE_ANSWER.as_bytes()), "assistant"))
    });
    g.finish();
}

fn streams(c: &mut Criterion) {
    let stream = gemini_stream();
    let pieces: Vec<&[u8]> = stream.chunks(256).collect();
    let mut g = c.benchmark_group("hub_gemini_20_events");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse_and_convert", |b| {
        let mut out = Vec::with_capacity(stream.len() * 2);
        b.iter(|| {
            out.clear();
            let mut p = SseParser::new();
            let mut s = tr::GeminiToChatStream::new("assistant", true);
            for piece in &pieces {
                p.push(black_box(piece), |e| s.on_data(e.data, &mut out));
            }
            s.finish(&mut out);
            out.len()
        })
    });
    g.finish();

    let stream = bedrock_stream();
    let pieces: Vec<&[u8]> = stream.chunks(256).collect();
    let mut g = c.benchmark_group("hub_bedrock_20_frames");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut d = EventStreamDecoder::new();
            let mut n = 0usize;
            for piece in &pieces {
                d.push(black_box(piece));
                while let Ok(Some(f)) = d.next_frame() {
                    n += f.payload().len();
                }
            }
            n
        })
    });
    g.bench_function("decode_and_convert", |b| {
        let mut out = Vec::with_capacity(stream.len() * 2);
        b.iter(|| {
            out.clear();
            let mut s = ConverseStreamToChat::new(tr::BedrockToChatStream::new("assistant", true));
            for piece in &pieces {
                s.on_bytes(black_box(piece), &mut out);
            }
            s.finish(&mut out);
            out.len()
        })
    });
    g.finish();
}

fn signing(c: &mut Criterion) {
    let mut d = tr::Dropped::default();
    let body = tr::chat_request_to_bedrock(
        CHAT_REQUEST.as_bytes(),
        "anthropic.claude-sonnet-4-20250514-v1:0",
        &mut d,
    )
    .unwrap_or_default();
    let url = bedrock_url(
        &bedrock_base_url("us-east-1"),
        "anthropic.claude-sonnet-4-20250514-v1:0",
        true,
    );
    let signer = SigV4::bedrock(
        "us-east-1",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN"),
    );
    let time = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let mut g = c.benchmark_group("hub_sigv4");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("sign_converse_request", |b| {
        b.iter(|| {
            signer.sign(
                "POST",
                black_box(&url),
                &[("content-type", "application/json")],
                black_box(&body),
                time,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, requests, streams, signing);
criterion_main!(benches);
