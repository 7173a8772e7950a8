//! Criterion benches of hedging and shadow traffic on the router path: `router::send` to the
//! mock provider (no latency) for a plain model, one with `hedge` configured but never triggered
//! (`after: 10s`, and `after: p95` with a warm sketch), and one with `shadow` configured at
//! `sample: 0`; and the latency sketch's update and quantile read.

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;
use std::time::Duration;

use ai_gateway::providers::{CallCtx, Op};
use ai_gateway::router::{self, Call};
use ai_gateway::runtime::sketch::Sketch;
use ai_gateway::runtime::{ClientPool, Runtime};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

const BODY: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}"#;

const CONFIG: &str = r#"
providers:
  - {name: a, type: mock}
  - {name: b, type: mock}
models:
  - name: plain
    deployments: [{provider: a, model: m}, {provider: b, model: m}]
  - name: hedged
    deployments: [{provider: a, model: m}, {provider: b, model: m}]
    hedge: {after: 10s}
  - name: hedged-p95
    deployments: [{provider: a, model: m}, {provider: b, model: m}]
    hedge: {after: p95}
  - name: shadowed
    deployments: [{provider: a, model: m}, {provider: b, model: m}]
    shadow: {model: plain, sample: 0}
"#;

fn sketch(c: &mut Criterion) {
    let s = Sketch::new(0.95);
    let mut us = 1u64;
    c.bench_function("sketch_record", |b| {
        b.iter(|| {
            us = (us * 7 + 13) % 2_000_000;
            s.record(black_box(Duration::from_micros(us)));
        })
    });
    c.bench_function("sketch_quantile", |b| b.iter(|| black_box(s.quantile())));
}

fn send(c: &mut Criterion) {
    let cfg = ai_gateway::config::load_str(CONFIG, &|_| None).unwrap();
    let rt = Runtime::build(cfg, &mut ClientPool::default()).unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = CallCtx {
        request_id: "bench".into(),
        traceparent: None,
        anthropic_beta: None,
        usage: None,
    };
    let body = Bytes::from_static(BODY);
    let build = |_: &ai_gateway::runtime::Deployment| Ok(body.clone());
    let once = |model: &str| {
        let m = rt.models.get(model).unwrap();
        tokio.block_on(async {
            let now = tokio::time::Instant::now();
            let call = Call {
                op: Op::Chat,
                stream: false,
                deadline: now + Duration::from_secs(60),
                ctx: &ctx,
                input_tokens: 20,
                max_tokens: 64,
                started: now,
                may_hedge: true,
                limiter: None,
            };
            let served = router::send(&rt, m, &call, &build).await.unwrap();
            black_box(served.attempts)
        })
    };
    // A warm sketch: p95 of the mock's latency, never reached by these requests' own hedges
    // (the mock answers within the same poll).
    for _ in 0..100 {
        once("hedged-p95");
    }
    let mut g = c.benchmark_group("router_send");
    for model in ["plain", "hedged", "hedged-p95", "shadowed"] {
        g.bench_function(model, |b| b.iter(|| once(model)));
    }
    g.finish();
}

criterion_group!(benches, sketch, send);
criterion_main!(benches);
