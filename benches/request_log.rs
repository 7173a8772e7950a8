//! Criterion benches of the request log's writer, per entry: the counters of a batch of 2,048
//! entries (`counters::deltas`), and that batch written to the embedded store with its counters
//! (`encode` and `Embedded::write`: one append, the counter rows, one commit without a sync), as the
//! writer does at full load (docs/benchmarks.md, "The request log and usage report").

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;

use ai_gateway::request_log::Entry;
use ai_gateway::request_log::counters::deltas;
use ai_gateway::request_log::embedded::{Embedded, encode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 2048;

/// A batch as the bench's load makes it: two keys, one model, one provider, one day.
fn batch() -> Vec<Entry> {
    (0..BATCH)
        .map(|i| Entry {
            id: format!("01JF6Z8Q7R{i:016}"),
            created_at: 1_796_515_200 + (i as u64 / 500),
            endpoint: "/v1/chat/completions".into(),
            key: Some(if i % 2 == 0 { "bench" } else { "team-a" }.into()),
            model: Some("gpt-4o-mini".into()),
            provider: Some("upstream".into()),
            deployment_model: Some("gpt-4o-mini".into()),
            status: 200,
            latency_ms: 1 + (i as u64 % 40),
            ttft_ms: None,
            attempts: Some(1),
            cache: Some("MISS".into()),
            input_tokens: Some(31),
            output_tokens: Some(18),
            cost_usd: Some(0.000_015_45),
            ..Entry::default()
        })
        .collect()
}

fn writer(c: &mut Criterion) {
    let entries = batch();
    let mut g = c.benchmark_group("request_log");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("deltas_2048", |b| b.iter(|| deltas(black_box(&entries))));

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Embedded::open(dir.path(), 100_000, 400).unwrap();
    g.bench_function("embedded_write_2048", |b| {
        b.iter(|| {
            let d = deltas(&entries);
            let row = encode(&entries).unwrap();
            rt.block_on(store.write(row, d)).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);
