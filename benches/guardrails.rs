//! Criterion benches of the guardrails: the scan of a realistic 2 KB prompt (with and without
//! PII) for every PII entity and three regex patterns, masking a prompt and restoring the
//! answer, the request walker over a 2 KB chat body, and streamed answers per chunk (restoring
//! only, and restoring with output checks).

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;
use std::sync::Arc;

use ai_gateway::guardrails::text::{RequestFormat, guard_request};
use ai_gateway::guardrails::{
    Action, Entities, Entity, Guardrail, Guardrails, Plan, Report, Restorer, TextStream, Vault,
    guard_text,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// About 2 KB of a support conversation: prose, numbers, dates, a version, a URL, code.
const CLEAN: &str = "Hello team, I am writing about the order we placed on 2024-03-15 for 12 units of the \
Model X-200 router (firmware v3.2.1). The delivery was expected within 5 business days, but as of \
today the tracking page at https://shipping.example.com/track?id=AB1234 still says the parcel is \
waiting at the depot. Could you please check what happened? Our purchase order number is \
PO-2024-0042 and the invoice total was 1,249.50 EUR including VAT at 21%. We also noticed that the \
configuration guide mentions a default timeout of 30 seconds, while the admin console shows 45; \
which one is right? For context, our network has about 250 devices across 3 floors, and the new \
routers are meant to replace the old ones in rooms 101 to 115. Here is the snippet we use to \
provision them:\n\nfor (let i = 0; i < devices.length; i++) {\n  await provision(devices[i], \
{ retries: 3, backoff: 1.5 });\n}\n\nThe script fails on roughly 1 in 20 devices with error code \
E_TIMEOUT after 3 retries. We tried raising the backoff to 2.5 and the retries to 5 with no \
change. Is there a known issue with firmware 3.2.1 and bulk provisioning? We would also like to \
know whether the warranty covers the two units that arrived with damaged power supplies; photos \
are attached to the ticket. Finally, please confirm whether the maintenance window on Saturday \
from 02:00 to 04:00 UTC will affect the cloud console, since our night shift relies on it for \
monitoring. Thanks a lot for your help, and sorry for the long message; we want to get the \
rollout done before the end of the quarter, which for us is the 31st of March. Best regards from \
the infrastructure team, and have a great week ahead. P.S. The previous ticket was closed without \
an answer, so we are opening this one again with all the details in one place.";

/// The same prompt with one value of each entity and a regex match.
fn with_pii() -> String {
    CLEAN.replacen(
        "Thanks a lot for your help",
        "You can reach me at jane.doe@example.com or +44 20 7946 0958; the card on file is \
         4111 1111 1111 1111 and refunds go to DE89 3704 0044 0532 0130 00. The device at \
         10.20.30.40 uses the key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z for Project Falcon. \
         Thanks a lot for your help",
        1,
    )
}

fn plan() -> Plan {
    Plan::new(vec![
        Arc::new(Guardrail::pii("pii", Entities::all(), Action::Mask)),
        Arc::new(Guardrail::regex("projects", &["(?i)project\\s+falcon"], Action::Mask).unwrap()),
        Arc::new(Guardrail::regex("codes", &["ACME-\\d{6}"], Action::Redact).unwrap()),
        Arc::new(
            Guardrail::regex("internal", &["(?i)\\binternal only\\b"], Action::Block).unwrap(),
        ),
    ])
}

fn scan(c: &mut Criterion) {
    let plan = plan();
    let dirty = with_pii();
    let mut hits = Vec::new();
    let mut g = c.benchmark_group("guardrails_scan");
    g.throughput(Throughput::Bytes(CLEAN.len() as u64));
    g.bench_function("clean_2k", |b| {
        b.iter(|| plan.scan(black_box(CLEAN), &mut hits))
    });
    g.throughput(Throughput::Bytes(dirty.len() as u64));
    g.bench_function("pii_2k", |b| {
        b.iter(|| plan.scan(black_box(&dirty), &mut hits))
    });
    g.finish();
    // Each detector alone over the prompt with PII, to see where the time goes.
    let mut g = c.benchmark_group("guardrails_scan_one");
    for e in Entity::ALL {
        let one = Plan::new(vec![Arc::new(Guardrail::pii(
            "one",
            Entities::of(&[e]),
            Action::Mask,
        ))]);
        g.bench_function(e.name(), |b| {
            b.iter(|| one.scan(black_box(&dirty), &mut hits))
        });
    }
    let regexes = Plan::new(plan.rails()[1..].to_vec());
    g.bench_function("3_regex_patterns", |b| {
        b.iter(|| regexes.scan(black_box(&dirty), &mut hits))
    });
    g.finish();
}

fn mask_restore(c: &mut Criterion) {
    let plan = plan();
    let dirty = with_pii();
    let mut hits = Vec::new();
    c.bench_function("guardrails_mask_and_restore_2k", |b| {
        b.iter(|| {
            let mut vault = Vault::default();
            let mut report = Report::new(&plan);
            let masked = guard_text(&plan, black_box(&dirty), &mut vault, &mut report, &mut hits)
                .unwrap()
                .unwrap();
            vault.restore(&masked, false)
        })
    });
    let body = |text: &str| {
        bytes::Bytes::from(
            serde_json::json!({"model":"gpt-4o-mini","messages":[
                {"role":"system","content":"You are a helpful support assistant."},
                {"role":"user","content":text}]})
            .to_string(),
        )
    };
    let (clean, dirty) = (body(CLEAN), body(&dirty));
    let mut g = c.benchmark_group("guardrails_request");
    for (name, b) in [("clean_2k", &clean), ("pii_2k", &dirty)] {
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut vault = Vault::default();
                let mut report = Report::new(&plan);
                guard_request(
                    &plan,
                    RequestFormat::OpenAiChat,
                    black_box(b),
                    &mut vault,
                    &mut report,
                )
            })
        });
    }
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let plan = plan();
    let mut vault = Vault::default();
    let mut report = Report::new(&plan);
    let mut hits = Vec::new();
    let masked = guard_text(&plan, &with_pii(), &mut vault, &mut report, &mut hits)
        .unwrap()
        .unwrap();
    // An answer that quotes the masked prompt, streamed in 4-byte deltas (about one token).
    let chunks: Vec<&str> = {
        let mut v = Vec::new();
        let mut i = 0;
        while i < masked.len() {
            let mut j = (i + 4).min(masked.len());
            while !masked.is_char_boundary(j) {
                j += 1;
            }
            v.push(&masked[i..j]);
            i = j;
        }
        v
    };
    let mut g = c.benchmark_group("guardrails_stream");
    g.throughput(Throughput::Elements(chunks.len() as u64));
    g.bench_function("restore_per_chunk", |b| {
        let mut out = String::with_capacity(masked.len() * 2);
        b.iter(|| {
            out.clear();
            let mut r = Restorer::new(false);
            for ch in &chunks {
                r.push(&vault, black_box(ch), &mut out);
            }
            r.finish(&mut out);
        })
    });
    let output = Plan::new(vec![Arc::new(Guardrail::pii(
        "pii",
        Entities::all(),
        Action::Redact,
    ))]);
    g.bench_function("checks_and_restore_per_chunk", |b| {
        let mut out = String::with_capacity(masked.len() * 2);
        b.iter(|| {
            out.clear();
            let mut v = Vault::default();
            v.placeholder("EMAIL", "jane.doe@example.com", true);
            let mut r = Report::new(&output);
            let mut s = TextStream::new(true, false);
            for ch in &chunks {
                let _ = s.push(
                    Some(&output),
                    &mut v,
                    &mut r,
                    &mut hits,
                    black_box(ch),
                    &mut out,
                );
            }
            let _ = s.finish(Some(&output), &mut v, &mut r, &mut hits, &mut out);
        })
    });
    g.finish();
}

/// Which guardrails apply to a request: with none configured the pipeline checks one `Option`;
/// configured, one map look-up per request (the selection of each configured model is made at
/// load).
fn select(c: &mut Criterion) {
    let yaml = "providers: [{name: m, type: mock}]\nmodels:\n  - {name: gpt-4o, deployments: [{provider: m, model: x}]}\n  - {name: claude, deployments: [{provider: m, model: x}]}\nguardrails:\n  - {name: pii, type: pii, models: [\"gpt-*\"]}\n  - {name: falcon, type: regex, patterns: [\"(?i)falcon\"], models: [\"gpt-*\"]}\n";
    let cfg = ai_gateway::config::load_str(yaml, &|_| None).unwrap();
    let configured = Guardrails::build(&cfg, |_| None).unwrap();
    let none: Option<Guardrails> = None;
    c.bench_function("guardrails_select_none_configured", |b| {
        b.iter(|| {
            black_box(&none)
                .as_ref()
                .and_then(|g| g.select(black_box("gpt-4o"), ""))
        });
    });
    c.bench_function("guardrails_select_configured_not_applying", |b| {
        b.iter(|| {
            black_box(&configured)
                .as_ref()
                .and_then(|g| g.select(black_box("claude"), ""))
        });
    });
    c.bench_function("guardrails_select_configured_applying", |b| {
        b.iter(|| {
            black_box(&configured)
                .as_ref()
                .and_then(|g| g.select(black_box("gpt-4o"), ""))
        });
    });
}

criterion_group!(benches, scan, mask_restore, streaming, select);
criterion_main!(benches);
