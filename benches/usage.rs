//! Criterion benches of usage accounting, per answer: the usage read from a whole answer
//! (`usage::parse_body`, which also proves the answer is one JSON value), followed through a
//! stream of 20 OpenAI chunks with its usage chunk (`StreamUsage`), and the key's spend recorded
//! in the process's own table (`Spend::record_local`), as every answer of a key does without Redis
//! (docs/benchmarks.md, "Usage accounting").

use std::hint::black_box;
use std::time::Duration;

use ai_gateway::limits::spend::Spend;
use ai_gateway::usage::{StreamUsage, Usage, parse_body};
use criterion::{Criterion, criterion_group, criterion_main};

/// The bench's upstream answer: the mock's echo of the bench prompt with its usage.
const ANSWER: &str = r#"{"id":"chatcmpl-mock0123456789abcdef","object":"chat.completion","created":1796515200,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Please write one short friendly sentence that greets the reader and wishes them a very pleasant productive day"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":18,"total_tokens":49,"prompt_tokens_details":{"cached_tokens":0}}}"#;

/// 18 content chunks, the finish chunk, the usage chunk and `[DONE]`, as one upstream delivers them.
fn stream_chunks() -> Vec<Vec<u8>> {
    let words = "Please write one short friendly sentence that greets the reader and wishes them a very pleasant productive day";
    let mut out = Vec::new();
    for w in words.split(' ') {
        out.push(format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1796515200,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w} \"}},\"finish_reason\":null}}]}}\n\n").into_bytes());
    }
    out.push(b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_vec());
    out.push(b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":18,\"total_tokens\":49}}\n\n".to_vec());
    out.push(b"data: [DONE]\n\n".to_vec());
    out
}

fn usage(c: &mut Criterion) {
    let mut g = c.benchmark_group("usage");
    g.bench_function("parse_body_answer", |b| {
        b.iter(|| parse_body(black_box(ANSWER.as_bytes())))
    });
    let chunks = stream_chunks();
    g.bench_function("stream_21_chunks", |b| {
        b.iter(|| {
            let mut s = StreamUsage::new();
            for c in &chunks {
                s.push(black_box(c));
            }
            black_box(s.usage(31))
        })
    });
    let spend = Spend::new(None, None);
    let u = Usage {
        input: 31,
        output: 18,
        cached: 0,
        exact: true,
    };
    g.bench_function("spend_record_local", |b| {
        b.iter(|| {
            spend.record_local(
                black_box("key_01JF6Z8Q7R"),
                Duration::from_secs(30 * 86_400),
                u,
                0.000_015_45,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, usage);
criterion_main!(benches);
