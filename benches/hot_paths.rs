//! Criterion benches of the gateway's hot paths: request parsing and the `model` splice, the
//! cache key, the routing decision over 10 deployments, the local rate-limit check, and the
//! circuit breaker's admission, the prompt-token count of a key with a tpm limit (ours, and
//! tiktoken-rs's for comparison), and the metrics one proxied request records. The translation
//! and SSE benches are in `benches/translate.rs`.

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;

use ai_gateway::cache::key::key;
use ai_gateway::config::{RateLimitsConfig, RoutingStrategy};
use ai_gateway::error::LimitReason;
use ai_gateway::limits::{Bucket, Limiter};
use ai_gateway::router::strategy::{Candidate, pick};
use ai_gateway::runtime::breaker::Breaker;
use ai_gateway::wire::Endpoint;
use ai_gateway::wire::{parse_openai_chat, splice_model};
use criterion::{Criterion, criterion_group, criterion_main};

const BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence, and then explain in two more sentences why greetings matter in human cultures."}],"max_tokens":64,"temperature":0.7,"stream":false}"#;

fn request(c: &mut Criterion) {
    c.bench_function("parse_openai_chat", |b| {
        b.iter(|| parse_openai_chat(black_box(BODY)))
    });
    let head = parse_openai_chat(BODY).unwrap();
    c.bench_function("splice_model", |b| {
        let body = bytes::Bytes::from_static(BODY);
        b.iter(|| splice_model(black_box(&body), &head.model_span, "gpt-4o-mini-2024-07-18"))
    });
    let bpe = ai_gateway::tokens::Tokenizer::o200k_base().unwrap();
    // The same body again and again: both texts are remembered after the first count.
    c.bench_function("prompt_tokens", |b| {
        b.iter(|| ai_gateway::tokens::count_openai_chat_with(&bpe, black_box(BODY)))
    });
    // A new user message every time after the same system prompt (built outside the timing).
    let mut n = 0u64;
    c.bench_function("prompt_tokens_new_user_message", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!(
                    r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"Say hello in {n} short sentences, and then explain in two more sentences why greetings matter."}}],"max_tokens":64}}"#
                )
            },
            |body| ai_gateway::tokens::count_openai_chat_with(&bpe, body.as_bytes()),
            criterion::BatchSize::SmallInput,
        )
    });
    // A 4 KiB system prompt, as applications send with every call: counted, and remembered.
    let long: String = "You answer questions about the user's orders. Be brief and precise; cite the order number. "
        .repeat(45);
    c.bench_function("prompt_tokens_4k_system_prompt_counted", |b| {
        b.iter(|| bpe.count(black_box(&long)))
    });
    c.bench_function("prompt_tokens_4k_system_prompt_remembered", |b| {
        b.iter(|| bpe.count_remembered(black_box(&long)))
    });
    let tiktoken = tiktoken_rs::o200k_base().unwrap();
    let text = "You are a helpful assistant.\nSay hello in one short sentence, and then explain in two more sentences why greetings matter in human cultures.";
    c.bench_function("prompt_tokens_text", |b| {
        b.iter(|| bpe.count(black_box(text)))
    });
    c.bench_function("prompt_tokens_text_tiktoken_rs", |b| {
        b.iter(|| tiktoken.encode_ordinary(black_box(text)).len())
    });
    c.bench_function("cache_key", |b| {
        b.iter(|| {
            key(
                Endpoint::Chat(ai_gateway::wire::Format::OpenAi),
                "team-a",
                black_box(BODY),
            )
        })
    });
}

fn routing(c: &mut Criterion) {
    let cands: Vec<Candidate> = (0..10)
        .map(|i| Candidate {
            index: i,
            priority: i as i32,
            weight: 1 + i as u32,
            latency_ms: Some(10.0 + i as f64),
            in_flight: (i % 3) as u32,
            cost: Some(0.001 * (10 - i) as f64),
        })
        .collect();
    let mut rng = rand::rng();
    for (name, s) in [
        ("route_priority_10", RoutingStrategy::Priority),
        ("route_weighted_10", RoutingStrategy::Weighted),
        ("route_latency_10", RoutingStrategy::Latency),
        ("route_cost_10", RoutingStrategy::Cost),
        ("route_least_busy_10", RoutingStrategy::LeastBusy),
    ] {
        c.bench_function(name, |b| b.iter(|| pick(s, black_box(&cands), &mut rng)));
    }
    let breaker = Breaker::new(5, 30_000);
    c.bench_function("breaker_admit", |b| {
        b.iter(|| breaker.admit(black_box(1000)))
    });
}

fn limits(c: &mut Criterion) {
    let limiter = Limiter::new(&RateLimitsConfig::default(), None);
    let buckets = [Bucket {
        key: "k:key_abc:rpm".into(),
        limit: u64::MAX / 2,
        cost: 1,
        reason: LimitReason::Requests,
    }];
    let mut now = 0.0;
    c.bench_function("rate_limit_local_check", |b| {
        b.iter(|| {
            now += 1.0;
            limiter.check_local(black_box(&buckets), now)
        })
    });
}

/// What one proxied request records, into the Prometheus recorder the gateway installs: the
/// in-flight gauge up and down, the request (counter and duration), the upstream attempt (counter
/// and duration) and the tokens, all under labels already seen (the steady state).
fn metrics_recording(c: &mut Criterion) {
    let _handle = ai_gateway::metrics::install().unwrap();
    let took = std::time::Duration::from_micros(850);
    c.bench_function("metrics_record_request", |b| {
        b.iter(|| {
            ai_gateway::metrics::in_flight(true);
            ai_gateway::metrics::attempt(
                black_box("openai"),
                black_box("gpt-4o-mini"),
                "success",
                took,
            );
            ai_gateway::metrics::tokens(black_box("gpt-4o-mini"), black_box("openai"), 27, 19);
            ai_gateway::metrics::request(
                "/v1/chat/completions",
                black_box("gpt-4o-mini"),
                black_box("openai"),
                200,
                took,
            );
            ai_gateway::metrics::in_flight(false);
        })
    });
}

criterion_group!(benches, request, routing, limits, metrics_recording);
criterion_main!(benches);
