//! The semantic cache's index at 100,000 entries, 384 and 1536 dimensions, all in one partition
//! (the worst case: one model, one key, one system prompt): the look-up (the contract asks for
//! under 1 ms p50, the embedding call excluded), an insert into the full index (it evicts the
//! oldest), the time to build it and the memory it takes.
//!
//! The vectors are clustered like embeddings of real questions (1,000 topics, each entry its
//! topic's direction plus noise); look-ups are paraphrases of stored entries (a stored vector
//! plus a little noise). Besides criterion's own report, the build time, resident memory and
//! look-up p50/p95 over 2,000 look-ups are printed, for a few search widths (`ef`), in the
//! look-up thread's CPU time (what the look-up costs; on a machine shared with other work the
//! wall time adds the waits for a core) and wall time. `SEMANTIC_BENCH_ENTRIES` changes the
//! entry count.

#![expect(
    clippy::print_stdout,
    reason = "the bench prints its percentiles and memory"
)]
use std::hint::black_box;
use std::time::{Duration, Instant};

use ai_gateway::cache::semantic::{EF_SEARCH, Index, NewEntry, Options, normalize};
use criterion::{Criterion, criterion_group, criterion_main};

const TOPICS: usize = 1000;
const PARTITION: [u8; 32] = [1; 32];

fn entries() -> usize {
    std::env::var("SEMANTIC_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    assert!(normalize(&mut v));
    v
}

struct Data {
    topics: Vec<Vec<f32>>,
    rng: fastrand::Rng,
    dim: usize,
}

impl Data {
    fn new(dim: usize) -> Self {
        let mut rng = fastrand::Rng::with_seed(7);
        let topics = (0..TOPICS)
            .map(|_| unit((0..dim).map(|_| rng.f32() - 0.5).collect()))
            .collect();
        Self { topics, rng, dim }
    }

    /// A question on a random topic.
    fn vector(&mut self) -> Vec<f32> {
        let t = &self.topics[self.rng.usize(..TOPICS)];
        let noise = 1.2 / (self.dim as f32).sqrt();
        unit(
            t.iter()
                .map(|x| x + (self.rng.f32() - 0.5) * noise)
                .collect(),
        )
    }

    /// A paraphrase of `v`.
    fn near(&mut self, v: &[f32]) -> Vec<f32> {
        let noise = 0.2 / (self.dim as f32).sqrt();
        unit(
            v.iter()
                .map(|x| x + (self.rng.f32() - 0.5) * noise)
                .collect(),
        )
    }
}

fn entry(vector: Vec<f32>, i: u64) -> NewEntry {
    let mut exact_key = [0u8; 32];
    exact_key[..8].copy_from_slice(&i.to_le_bytes());
    NewEntry {
        partition: PARTITION,
        vector,
        exact_key,
        expires_ms: ai_gateway::clock::unix_ms() + 24 * 3_600_000,
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn bench_dim(c: &mut Criterion, dim: usize) -> Index {
    let n = entries();
    let mut data = Data::new(dim);
    let stored: Vec<Vec<f32>> = (0..n).map(|_| data.vector()).collect();
    let before = rss_bytes();
    let index = Index::new(Options { max_entries: n });
    let started = Instant::now();
    let cpu = cpu_time::ThreadTime::now();
    for (i, v) in stored.iter().enumerate() {
        index.insert_now(entry(v.clone(), i as u64));
    }
    let (build, build_cpu) = (started.elapsed(), cpu.elapsed());
    let memory = rss_bytes().saturating_sub(before);
    assert_eq!(index.stats().entries, n);
    println!(
        "semantic index, {n} entries x {dim} dims: build {:.1} s wall, {:.1} s CPU ({:.0} us CPU \
         per insert), resident memory +{} MiB ({:.1} KiB per entry)",
        build.as_secs_f64(),
        build_cpu.as_secs_f64(),
        build_cpu.as_secs_f64() * 1e6 / n as f64,
        memory >> 20,
        memory as f64 / 1024.0 / n as f64,
    );

    let queries: Vec<(usize, Vec<f32>)> = (0..2000)
        .map(|i| {
            let target = (i * 7919) % n;
            (target, data.near(&stored[target]))
        })
        .collect();
    for ef in [16, 32, EF_SEARCH] {
        index.set_ef_search(ef);
        let (mut cpu, mut wall, mut found) = (Vec::new(), Vec::new(), 0);
        for (target, q) in &queries {
            let (t, c) = (Instant::now(), cpu_time::ThreadTime::now());
            let m = index.lookup(&PARTITION, q, 0.95);
            cpu.push(c.elapsed());
            wall.push(t.elapsed());
            found +=
                usize::from(m.is_some_and(|m| m.exact_key[..8] == (*target as u64).to_le_bytes()));
        }
        cpu.sort();
        wall.sort();
        println!(
            "  lookup ef={ef}: CPU p50 {:.0} us p95 {:.0} us; wall p50 {:.0} us p95 {:.0} us; \
             {found}/2000 paraphrases found their own entry",
            percentile(&cpu, 0.50).as_secs_f64() * 1e6,
            percentile(&cpu, 0.95).as_secs_f64() * 1e6,
            percentile(&wall, 0.50).as_secs_f64() * 1e6,
            percentile(&wall, 0.95).as_secs_f64() * 1e6,
        );
    }
    index.set_ef_search(EF_SEARCH);

    let mut g = c.benchmark_group(format!("semantic_{dim}d_{n}"));
    g.sample_size(30);
    let mut qi = 0;
    g.bench_function("lookup", |b| {
        b.iter(|| {
            qi = (qi + 1) % queries.len();
            black_box(index.lookup(&PARTITION, &queries[qi].1, 0.95))
        })
    });
    let mut next = n as u64;
    g.bench_function("insert_evicting_the_oldest", |b| {
        b.iter_batched(
            || {
                next += 1;
                entry(data.vector(), next)
            },
            |e| index.insert_now(e),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
    index
}

fn semantic(c: &mut Criterion) {
    // Both kept until the end, so that the second's resident memory is its own.
    let small = bench_dim(c, 384);
    let large = bench_dim(c, 1536);
    drop((small, large));
}

criterion_group!(benches, semantic);
criterion_main!(benches);
