//! Async jobs: `/v1/async/…`, `/v1/jobs/{id}`, on the embedded queue and on a real
//! `nats-server -js`, including `kill -9` of the gateway and a NATS restart mid-queue. This file:
//! the helpers (also used by other test files) and the scenarios run on both queues.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use nix::sys::signal::Signal;

use crate::support::*;

mod embedded;
mod keys;
mod nats;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The basic configuration plus quick job and webhook settings (loopback webhooks allowed).
pub fn jobs_config(up: &FakeUpstream) -> Value {
    let mut c = basic_config(Some(up));
    c["jobs"] = json!({
        "workers": 8,
        "max_attempts": 3,
        "webhook": {
            "secret": SECRET,
            "timeout": "2s",
            "max_attempts": 5,
            "backoff_initial": "50ms",
            "backoff_max": "200ms",
            "allow_private_networks": true,
        },
    });
    c
}

pub async fn submit(
    gw: &Gateway,
    key: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = gw.client().post(gw.url(path)).bearer_auth(key).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.expect("submit")
}

/// Submit and expect a 202; the job.
pub async fn submit_ok(gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> Value {
    let r = submit(gw, GW_KEY, "/v1/async/chat/completions", body, headers).await;
    let status = r.status().as_u16();
    let v = json_of(r).await;
    assert_eq!(status, 202, "{v}");
    v
}

pub async fn get_job(gw: &Gateway, key: &str, id: &str) -> (u16, Value) {
    let r = gw.get(&format!("/v1/jobs/{id}"), Some(key)).await;
    let s = r.status().as_u16();
    (s, json_of(r).await)
}

/// Poll until the job is in a terminal status (bounded); the job. A 503 of the job store (a
/// NATS cluster electing a new leader after a node went away answers "temporarily unavailable")
/// is polled again, as a client retries it; any other status fails at once.
pub async fn wait_job(gw: &Gateway, id: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (s, v) = get_job(gw, GW_KEY, id).await;
        let store_unavailable = s == 503 && v["error"]["type"] == "service_unavailable";
        assert!(s == 200 || store_unavailable, "{s}: {v}");
        if ["succeeded", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not end within {timeout:?}: {v}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until `cond` holds on the job (bounded).
pub async fn wait_job_until(
    gw: &Gateway,
    id: &str,
    timeout: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (_, v) = get_job(gw, GW_KEY, id).await;
        if cond(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id}: condition not met within {timeout:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn metric(gw: &Gateway, line_start: &str) -> f64 {
    let text = gw.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn idempotency(gw: &Gateway) {
    let body = chat_body("gpt-test", "once");
    let first = submit_ok(gw, &body, &[("idempotency-key", "order-42")]).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let c = gw.client().clone();
        let url = gw.url("/v1/async/chat/completions");
        let body = body.clone();
        set.spawn(async move {
            let r = c
                .post(url)
                .bearer_auth(GW_KEY)
                .header("idempotency-key", "order-42")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            assert_eq!(r.headers().get("idempotent-replayed").unwrap(), "true");
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        });
    }
    while let Some(id) = set.join_next().await {
        assert_eq!(id.unwrap(), first["id"].as_str().unwrap());
    }
    // Another key with the same Idempotency-Key gets its own job; so does another value.
    let other = submit(
        gw,
        GPT_KEY,
        "/v1/async/chat/completions",
        &body,
        &[("idempotency-key", "order-42")],
    )
    .await;
    assert_eq!(other.status(), 202);
    let other = json_of(other).await;
    assert_ne!(other["id"], first["id"]);
    let third = submit_ok(gw, &body, &[("idempotency-key", "order-43")]).await;
    assert_ne!(third["id"], first["id"]);
    let done = wait_job(gw, first["id"].as_str().unwrap(), Duration::from_secs(15)).await;
    assert_eq!(done["status"], "succeeded");
}

/// `DELETE /v1/jobs/{id}` with `key`.
async fn delete_job(gw: &Gateway, key: &str, id: &str) -> reqwest::Response {
    gw.client()
        .delete(gw.url(&format!("/v1/jobs/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// With one worker busy on a slow job, a queued job is cancelled (200, `cancelled`), never reaches
/// the upstream, and cannot be cancelled again once ended (409); the running one cannot be
/// cancelled (409) and succeeds. `gw` has one worker and `up` answers slowly.
async fn cancel_while_one_runs(gw: &Gateway, up: &FakeUpstream) {
    let a = submit_ok(gw, &chat_body("gpt-test", "slow first"), &[]).await;
    let a_id = a["id"].as_str().unwrap();
    wait_job_until(gw, a_id, Duration::from_secs(5), |v| {
        v["status"] == "running"
    })
    .await;
    let b = submit_ok(gw, &chat_body("gpt-test", "never runs"), &[]).await;
    let b_id = b["id"].as_str().unwrap();
    let r = delete_job(gw, GW_KEY, b_id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["status"], "cancelled");
    assert_openai_error(
        delete_job(gw, GW_KEY, a_id).await,
        409,
        "invalid_request_error",
        None,
    )
    .await;
    let a = wait_job(gw, a_id, Duration::from_secs(10)).await;
    assert_eq!(a["status"], "succeeded");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = wait_job(gw, b_id, Duration::from_secs(1)).await;
    assert_eq!(b["status"], "cancelled");
    assert!(
        up.requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("never runs"))
    );
    assert_eq!(
        delete_job(gw, GW_KEY, b_id).await.status(),
        409,
        "an ended job cannot be cancelled"
    );
}

async fn failing_upstream(gw: &Gateway, up: &FakeUpstream, rx: &WebhookReceiver) {
    let job = submit_ok(
        gw,
        &chat_body("gpt-test", "doomed"),
        &[("x-webhook-url", &rx.url())],
    )
    .await;
    let done = wait_job(gw, job["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["error"]["type"], "upstream_error", "{done}");
    assert!(
        done["error"]["message"].as_str().unwrap().contains("boom"),
        "{done}"
    );
    assert!(done.get("result").is_none());
    // 2 job attempts × (1 + 1 retry) upstream attempts.
    assert_eq!(up.request_count(), 4);
    assert!(wait_until(Duration::from_secs(10), || !rx.deliveries().is_empty()).await);
    assert_eq!(rx.deliveries()[0].json()["status"], "failed");
    // A caller error (400 from the upstream) fails at once, without retries.
    up.push([Fault::Status(
        400,
        json!({"error": {"message": "bad thing", "type": "invalid_request_error"}}).to_string(),
    )]);
    let before = up.request_count();
    let job = submit_ok(gw, &chat_body("gpt-test", "caller-fault"), &[]).await;
    let done = wait_job(gw, job["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["attempts"], 1);
    assert_eq!(up.request_count(), before + 1);
}

/// Submit `n` jobs with distinct prompts and webhooks; their ids by prompt.
async fn submit_many(gw: &Gateway, n: usize, hook: &str) -> HashMap<String, String> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = gw.client().clone();
        let url = gw.url("/v1/async/chat/completions");
        let hook = hook.to_owned();
        set.spawn(async move {
            let prompt = format!("job number {i}");
            let r = c
                .post(url)
                .bearer_auth(GW_KEY)
                .header("x-webhook-url", hook)
                .json(&chat_body("gpt-test", &prompt))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            (prompt, v["id"].as_str().unwrap().to_owned())
        });
    }
    let mut out = HashMap::new();
    while let Some(r) = set.join_next().await {
        let (p, id) = r.unwrap();
        out.insert(p, id);
    }
    out
}

/// 200 jobs for 16 workers; the gateway killed (`kill -9`) once some finished, with jobs
/// running and queued, then started again on `cfg`: every job succeeds and ends once, and
/// duplicate upstream executions are bounded by the jobs running at the kill.
async fn kill_9_with_200_jobs_in_flight(mut cfg: Value, up: &FakeUpstream, rx: &WebhookReceiver) {
    cfg["jobs"]["workers"] = json!(16);
    let mut gw = Gateway::start(cfg.clone()).await;
    let ids = submit_many(&gw, 200, &rx.url()).await;
    assert!(wait_until(Duration::from_secs(20), || up.request_count() >= 40).await);
    gw.send_signal(Signal::SIGKILL);
    gw.wait_exit(Duration::from_secs(5)).await;
    assert!(
        rx.deliveries().len() < 200,
        "the kill came too late to test anything"
    );
    up.set_default(Fault::Normal);
    let gw2 = Gateway::start(cfg).await;
    assert_all_succeeded_once(&gw2, &ids, rx).await;
    assert!(
        up.request_count() <= 200 + 16,
        "{} upstream calls",
        up.request_count()
    );
}

/// Every job succeeded with its own answer, and ended once: each webhook id was delivered with
/// one `finished_at`, the one the record shows.
async fn assert_all_succeeded_once(
    gw: &Gateway,
    ids: &HashMap<String, String>,
    rx: &WebhookReceiver,
) {
    let mut records = HashMap::new();
    for (prompt, id) in ids {
        let v = wait_job(gw, id, Duration::from_secs(90)).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(
            v["result"]["choices"][0]["message"]["content"],
            prompt.as_str(),
            "{v}"
        );
        records.insert(id.clone(), v);
    }
    let all: HashSet<&String> = ids.values().collect();
    let arrived = wait_until(Duration::from_secs(60), || {
        let got: HashSet<String> = rx.deliveries().into_iter().map(|d| d.id).collect();
        all.iter().all(|id| got.contains(*id))
    })
    .await;
    if !arrived {
        let got: HashSet<String> = rx.deliveries().into_iter().map(|d| d.id).collect();
        let missing: Vec<&&String> = all.iter().filter(|id| !got.contains(**id)).collect();
        let (_, first) = get_job(gw, GW_KEY, missing[0]).await;
        let logs: String = gw
            .logs()
            .lines()
            .filter(|l| !l.contains("\"access\""))
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{} webhooks missing; first: {first}\nlogs:\n{logs}",
            missing.len()
        );
    }
    let mut finished: HashMap<String, HashSet<u64>> = HashMap::new();
    for d in rx.deliveries() {
        assert!(d.verifies(SECRET));
        let v = d.json();
        assert_eq!(v["status"], "succeeded");
        finished
            .entry(d.id.clone())
            .or_default()
            .insert(v["finished_at"].as_u64().unwrap());
    }
    for (id, v) in &records {
        let f = &finished[id];
        assert_eq!(f.len(), 1, "job {id} ended more than once: {f:?}");
        assert!(f.contains(&v["finished_at"].as_u64().unwrap()));
        assert!(v["attempts"].as_u64().unwrap() <= 2, "{v}");
    }
}

fn nats_config(up: &FakeUpstream, nats: &NatsServer) -> Value {
    let mut c = jobs_config(up);
    c["state"] = json!({"nats_url": nats.url()});
    c
}

/// SIGTERM: a job that ends within the grace finishes; one that does not is released to the
/// queue (that attempt does not count) and runs again on the next process.
async fn sigterm_finishes_or_releases(cfg: serde_json::Value, up: &FakeUpstream) {
    up.push([Fault::Delay(Duration::from_millis(500))]);
    up.set_default(Fault::Delay(Duration::from_secs(10)));
    let mut gw = Gateway::start(cfg.clone()).await;
    let a = submit_ok(&gw, &chat_body("gpt-test", "short"), &[]).await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    wait_job_until(&gw, &a_id, Duration::from_secs(5), |v| {
        v["status"] == "running"
    })
    .await;
    let b = submit_ok(&gw, &chat_body("gpt-test", "long"), &[]).await;
    let b_id = b["id"].as_str().unwrap().to_owned();
    wait_job_until(&gw, &b_id, Duration::from_secs(5), |v| {
        v["status"] == "running"
    })
    .await;
    let t = std::time::Instant::now();
    gw.send_signal(Signal::SIGTERM);
    gw.wait_exit(Duration::from_secs(6)).await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "exit within the grace: {:?}",
        t.elapsed()
    );
    up.set_default(Fault::Normal);
    let t = std::time::Instant::now();
    let gw2 = Gateway::start(cfg).await;
    let a = wait_job(&gw2, &a_id, Duration::from_secs(5)).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(a["attempts"], 1);
    let b = wait_job(&gw2, &b_id, Duration::from_secs(8)).await;
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["attempts"], 1, "the released attempt does not count: {b}");
    assert_eq!(b["result"]["choices"][0]["message"]["content"], "long");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "released at once, not after an ack timeout"
    );
}
