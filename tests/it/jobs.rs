//! Async jobs: `/v1/async/…`, `/v1/jobs/{id}`, on the embedded queue and on a real
//! `nats-server -js`, including `kill -9` of the gateway and a NATS restart mid-queue.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use nix::sys::signal::Signal;

use crate::support::*;

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

/// Poll until the job is in a terminal status (bounded); the job.
pub async fn wait_job(gw: &Gateway, id: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (s, v) = get_job(gw, GW_KEY, id).await;
        assert_eq!(s, 200, "{v}");
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

// ---------------------------------------------------------------- embedded

#[tokio::test]
async fn embedded_job_runs_and_its_webhook_verifies() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    let gw = Gateway::start(jobs_config(&up)).await;
    let job = submit_ok(
        &gw,
        &chat_body("gpt-test", "hello async"),
        &[
            ("x-webhook-url", &rx.url()),
            ("x-request-id", "req-async-1"),
        ],
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("job_") && id.len() == 30, "{job}");
    assert_eq!(job["object"], "job");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["endpoint"], "/v1/chat/completions");
    assert_eq!(job["status_url"], format!("/v1/jobs/{id}"));
    assert!(job["created_at"].as_u64().unwrap() > 1_700_000_000);

    let done = wait_job(&gw, &id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["request_id"], "req-async-1");
    assert_eq!(done["result"]["object"], "chat.completion");
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"],
        "hello async"
    );
    assert!(done["started_at"].as_u64().is_some() && done["finished_at"].as_u64().is_some());
    // The upstream got a non-streaming request with the caller's request id.
    let req = up.only_request();
    assert_eq!(req.header("x-request-id"), Some("req-async-1"));

    assert!(
        wait_until(Duration::from_secs(10), || !rx.deliveries().is_empty()).await,
        "no webhook; logs:\n{}",
        gw.logs()
    );
    let d = &rx.deliveries()[0];
    assert_eq!(d.id, id);
    assert!(d.verifies(SECRET), "signature must verify: {d:?}");
    let ts: u64 = d.timestamp.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) <= 5);
    let body = d.json();
    assert_eq!(body["id"], id);
    assert_eq!(body["status"], "succeeded");
    assert_eq!(
        body["result"]["choices"][0]["message"]["content"],
        "hello async"
    );
    // A tampered body does not verify.
    let mut tampered = d.clone();
    tampered.body = bytes::Bytes::from(
        d.body
            .iter()
            .map(|b| if *b == b'h' { b'H' } else { *b })
            .collect::<Vec<u8>>(),
    );
    assert!(!tampered.verifies(SECRET));
    let w = wait_job_until(&gw, &id, Duration::from_secs(5), |v| {
        v["webhook"]["status"] == "delivered"
    })
    .await;
    assert_eq!(w["webhook"]["attempts"], 1);
    assert_eq!(w["webhook"]["url"], rx.url());

    // Metrics.
    assert!(metric(&gw, "ai_gateway_jobs_total{status=\"succeeded\"}").await >= 1.0);
    assert!(
        metric(
            &gw,
            "ai_gateway_webhook_deliveries_total{outcome=\"delivered\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        gw.get("/metrics", None)
            .await
            .text()
            .await
            .unwrap()
            .contains("ai_gateway_jobs_queued")
    );
}

#[tokio::test]
async fn embeddings_and_messages_jobs_and_streams_become_plain_answers() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let anth = FakeUpstream::start(Kind::Anthropic).await;
    let mut cfg = jobs_config(&up);
    cfg["providers"]
        .as_array_mut()
        .unwrap()
        .push(anthropic_provider("anth", &anth));
    cfg["models"]
        .as_array_mut()
        .unwrap()
        .push(model("claude-test", "anth", "claude-up"));
    let gw = Gateway::start(cfg).await;
    let r = submit(
        &gw,
        GW_KEY,
        "/v1/async/embeddings",
        &json!({"model": "gpt-test", "input": "abc"}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 202);
    let e = json_of(r).await;
    let mut body = messages_body("claude-test", "hi anthropic");
    body["stream"] = json!(true);
    let r = submit(&gw, GW_KEY, "/v1/async/messages", &body, &[]).await;
    assert_eq!(r.status(), 202);
    let m = json_of(r).await;
    let mut sbody = chat_body("gpt-test", "streamed");
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let s = submit_ok(&gw, &sbody, &[]).await;

    let e = wait_job(&gw, e["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["endpoint"], "/v1/embeddings");
    assert_eq!(e["result"]["object"], "list");
    let m = wait_job(&gw, m["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(m["status"], "succeeded", "{m}");
    assert_eq!(m["result"]["type"], "message");
    assert_eq!(m["result"]["content"][0]["text"], "hi anthropic");
    let s = wait_job(&gw, s["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(s["result"]["object"], "chat.completion", "{s}");
    for r in up.requests().into_iter().chain(anth.requests()) {
        assert_ne!(
            r.json()["stream"],
            json!(true),
            "jobs never stream upstream"
        );
    }
    // A submission is counted with the model it named, like a synchronous call.
    let text = gw.get("/metrics", None).await.text().await.unwrap();
    for (endpoint, model) in [
        ("/v1/async/embeddings", "gpt-test"),
        ("/v1/async/messages", "claude-test"),
        ("/v1/async/chat/completions", "gpt-test"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ai_gateway_requests_total{")
                    && l.contains(&format!("endpoint=\"{endpoint}\""))
                    && l.contains(&format!("model=\"{model}\""))
                    && l.contains("status=\"202\"")),
            "no request count for {endpoint} with model {model}:\n{text}"
        );
    }
}

#[tokio::test]
async fn submissions_are_validated_like_the_synchronous_endpoints() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(jobs_config(&up)).await;
    let path = "/v1/async/chat/completions";
    let r = gw.post(path, None, &chat_body("gpt-test", "x")).await;
    assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
    let r = gw.post_raw(path, Some(GW_KEY), "{not json").await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw
        .post(path, Some(GW_KEY), &json!({"model": "gpt-test"}))
        .await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw.post(path, Some(GW_KEY), &chat_body("nope", "x")).await;
    assert_openai_error(r, 404, "invalid_request_error", Some("model_not_found")).await;
    let r = gw.post(path, Some(GPT_KEY), &chat_body("mock", "x")).await;
    assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
    let r = gw
        .post(
            "/v1/async/messages",
            Some(GW_KEY),
            &json!({"model": "gpt-test"}),
        )
        .await;
    assert_anthropic_error(r, 400, "invalid_request_error").await;
    let r = submit(
        &gw,
        GW_KEY,
        path,
        &chat_body("gpt-test", "x"),
        &[("x-webhook-url", "ftp://example.com/x")],
    )
    .await;
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = gw
        .get("/v1/jobs/job_00000000000000000000000000", Some(GW_KEY))
        .await;
    assert_eq!(r.status(), 404);
    let r = gw.get("/v1/jobs/../../etc", Some(GW_KEY)).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        up.request_count(),
        0,
        "nothing invalid reached the upstream"
    );
}

#[tokio::test]
async fn idempotent_submission_returns_the_same_job() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(jobs_config(&up)).await;
    idempotency(&gw).await;
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

#[tokio::test]
async fn a_job_is_visible_only_to_its_key() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(jobs_config(&up)).await;
    let job = submit_ok(&gw, &chat_body("gpt-test", "mine"), &[]).await;
    let id = job["id"].as_str().unwrap();
    let (s, _) = get_job(&gw, GPT_KEY, id).await;
    assert_eq!(s, 404);
    assert_eq!(delete_job(&gw, GPT_KEY, id).await.status(), 404);
    let (s, _) = get_job(&gw, GW_KEY, id).await;
    assert_eq!(s, 200);
}

/// Poll a job with `key` until it ended (bounded).
async fn wait_job_as(gw: &Gateway, key: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = get_job(gw, key, id).await;
        assert_eq!(s, 200, "{v}");
        if ["succeeded", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {id}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Key A makes a job with an `Idempotency-Key`, is revoked, and key B is created with A's
/// name: B gets the 404 any other key gets for A's job (read and cancel), and A's
/// `Idempotency-Key` makes B a job of its own. `gw` has a master key.
async fn a_reused_name_sees_nothing(gw: &Gateway) {
    let path = "/v1/async/chat/completions";
    let (a_id, a_key) = create_key(gw, json!({"name": "same-name"})).await;
    let r = submit(
        gw,
        &a_key,
        path,
        &chat_body("gpt-test", "a's"),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(r.status(), 202);
    let job = json_of(r).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_job_as(gw, &a_key, &id).await["status"], "succeeded");
    revoke_key(gw, &a_id).await;
    let (b_id, b_key) = create_key(gw, json!({"name": "same-name"})).await;
    assert_ne!(a_id, b_id);
    // The same 404 as for a job that is not there at all.
    let (s, v) = get_job(gw, &b_key, &id).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(
        v["error"]["message"],
        format!("no job {id} for this key"),
        "{v}"
    );
    let missing = "job_00000000000000000000000000";
    let (_, none) = get_job(gw, &b_key, missing).await;
    assert_eq!(v["error"]["type"], none["error"]["type"]);
    assert_eq!(v["error"]["code"], none["error"]["code"]);
    let r = delete_job(gw, &b_key, &id).await;
    assert_eq!(r.status(), 404);
    // A's Idempotency-Key is not B's: a new job, not a replay.
    let r = submit(
        gw,
        &b_key,
        path,
        &chat_body("gpt-test", "b's"),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let b_job = json_of(r).await;
    assert_ne!(b_job["id"], job["id"]);
    let done = wait_job_as(gw, &b_key, b_job["id"].as_str().unwrap()).await;
    assert_eq!(done["result"]["choices"][0]["message"]["content"], "b's");
    // And B's replays are B's.
    let r = submit(
        gw,
        &b_key,
        path,
        &chat_body("gpt-test", "b's"),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(r.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(json_of(r).await["id"], b_job["id"]);
}

#[tokio::test]
async fn a_new_key_with_a_revoked_keys_name_sees_none_of_its_jobs() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = jobs_config(&up);
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    let gw = Gateway::start(cfg).await;
    a_reused_name_sees_nothing(&gw).await;
}

#[tokio::test]
async fn nats_a_new_key_with_a_revoked_keys_name_sees_none_of_its_jobs() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = nats_config(&up, &nats);
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    let gw = Gateway::start(cfg).await;
    a_reused_name_sees_nothing(&gw).await;
}

#[tokio::test]
async fn a_file_keys_jobs_follow_its_secret_not_its_name() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = jobs_config(&up);
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    let gw = Gateway::start(cfg.clone()).await;
    let job = submit_ok(
        &gw,
        &chat_body("gpt-test", "mine"),
        &[("idempotency-key", "f-1")],
    )
    .await;
    let id = job["id"].as_str().unwrap();
    wait_job(&gw, id, Duration::from_secs(10)).await;
    // GW_KEY renamed, and a new secret given its old name.
    let new_secret = "sk-gw-new-secret-under-old-name-0005";
    cfg["auth"]["keys"][0]["name"] = json!("all-renamed");
    cfg["auth"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "all", "key": new_secret, "models": ["*"]}));
    gw.write_config(cfg);
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    assert_eq!(r.status(), 200);
    let (s, _) = get_job(&gw, GW_KEY, id).await;
    assert_eq!(s, 200, "the renamed key keeps its job");
    let (s, _) = get_job(&gw, new_secret, id).await;
    assert_eq!(s, 404, "a new key under the old name sees none");
    let path = "/v1/async/chat/completions";
    let r = submit(
        &gw,
        GW_KEY,
        path,
        &chat_body("gpt-test", "mine"),
        &[("idempotency-key", "f-1")],
    )
    .await;
    assert_eq!(
        json_of(r).await["id"],
        job["id"],
        "replayed for the renamed key"
    );
    let r = submit(
        &gw,
        new_secret,
        path,
        &chat_body("gpt-test", "new"),
        &[("idempotency-key", "f-1")],
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_ne!(json_of(r).await["id"], job["id"]);
}

#[tokio::test]
async fn cancel_a_queued_job_and_409_once_it_runs() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(1500)));
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["workers"] = json!(1);
    let gw = Gateway::start(cfg).await;
    cancel_while_one_runs(&gw, &up).await;
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

#[tokio::test]
async fn a_failing_upstream_ends_the_job_failed_after_max_attempts() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Status(
        500,
        json!({"error": {"message": "boom", "type": "server_error"}}).to_string(),
    ));
    let rx = WebhookReceiver::start().await;
    let mut cfg = jobs_config(&up);
    cfg["jobs"]["max_attempts"] = json!(2);
    cfg["resilience"]["retries"] = json!(1);
    let gw = Gateway::start(cfg).await;
    failing_upstream(&gw, &up, &rx).await;
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

#[tokio::test]
async fn embedded_queue_survives_kill_9_with_200_jobs_in_flight() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(100)));
    let rx = WebhookReceiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["jobs"]["workers"] = json!(16);
    let mut gw = Gateway::start(cfg.clone()).await;
    let ids = submit_many(&gw, 200, &rx.url()).await;
    // Let some finish, then kill -9 with jobs running and queued.
    assert!(wait_until(Duration::from_secs(20), || up.request_count() >= 40).await);
    gw.send_signal(Signal::SIGKILL);
    gw.wait_exit(Duration::from_secs(5)).await;
    let done_before = rx.deliveries().len();
    assert!(done_before < 200, "the kill came too late to test anything");
    up.set_default(Fault::Normal);
    let gw2 = Gateway::start(cfg).await;
    assert_all_succeeded_once(&gw2, &ids, &rx).await;
    // Duplicate upstream executions are bounded by the jobs running at the kill.
    assert!(
        up.request_count() <= 200 + 16,
        "{} upstream calls",
        up.request_count()
    );
}

// ---------------------------------------------------------------- NATS

fn nats_config(up: &FakeUpstream, nats: &NatsServer) -> Value {
    let mut c = jobs_config(up);
    c["state"] = json!({"nats_url": nats.url()});
    c
}

#[tokio::test]
async fn nats_job_runs_and_its_webhook_verifies_on_any_replica() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    let a = Gateway::start(nats_config(&up, &nats)).await;
    let b = Gateway::start(nats_config(&up, &nats)).await;
    let ready = json_of(a.get("/ready", None).await).await;
    assert_eq!(ready["nats"], "ok", "{ready}");
    let job = submit_ok(
        &a,
        &chat_body("gpt-test", "over nats"),
        &[("x-webhook-url", &rx.url())],
    )
    .await;
    let id = job["id"].as_str().unwrap();
    // Any replica answers.
    let done = wait_job(&b, id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"],
        "over nats"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !rx.deliveries().is_empty()).await,
        "{}",
        a.logs()
    );
    let d = &rx.deliveries()[0];
    assert_eq!(d.id, id);
    assert!(d.verifies(SECRET));
    wait_job_until(&b, id, Duration::from_secs(5), |v| {
        v["webhook"]["status"] == "delivered"
    })
    .await;
    let (s, _) = get_job(&b, GPT_KEY, id).await;
    assert_eq!(s, 404, "only its key sees it");
    // Webhook retries over NATS: fails twice, then delivered, same id each time.
    rx.push(&[500, 503]);
    let job = submit_ok(
        &b,
        &chat_body("gpt-test", "retry me"),
        &[("x-webhook-url", &rx.url())],
    )
    .await;
    let id2 = job["id"].as_str().unwrap().to_owned();
    let w = wait_job_until(&a, &id2, Duration::from_secs(15), |v| {
        v["webhook"]["status"] == "delivered"
    })
    .await;
    assert_eq!(w["webhook"]["attempts"], 3, "{w}");
    let mine: Vec<_> = rx
        .deliveries()
        .into_iter()
        .filter(|d| d.id == id2)
        .collect();
    assert_eq!(mine.len(), 3);
    assert!(mine.iter().all(|d| d.verifies(SECRET)));
}

#[tokio::test]
async fn nats_idempotent_submission_and_cancel() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(nats_config(&up, &nats)).await;
    idempotency(&gw).await;
    // Cancel: one slow worker, a second job waits in the queue.
    up.set_default(Fault::Delay(Duration::from_millis(1500)));
    drop(gw);
    let mut cfg = nats_config(&up, &nats);
    cfg["jobs"]["workers"] = json!(1);
    let gw = Gateway::start(cfg).await;
    cancel_while_one_runs(&gw, &up).await;
}

/// NATS data of an earlier version: a job of the file key `all` recorded under its former id
/// `cfg_all`, and its `Idempotency-Key` scoped by the key's *name*. The first gateway of this
/// version rescopes the entry by key id: the key still gets its job back, another key does not.
#[tokio::test]
async fn nats_idempotency_keys_of_an_earlier_version_keep_working() {
    use sha2::{Digest, Sha256};
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    // A first start makes the buckets (and marks them rescoped: nothing to do yet).
    drop(Gateway::start(nats_config(&up, &nats)).await);
    let id = "job_01JAAAAAAAAAAAAAAAAAAAAAAA";
    {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value("aigw_jobs").await.unwrap();
        let record = json!({"id": id, "status": "succeeded", "endpoint": "/v1/chat/completions",
            "model": "gpt-test", "caller": "all", "caller_id": "cfg_all", "request_id": "req-old",
            "created_at": 1_764_000_000, "finished_at": 1_764_000_001, "attempts": 1,
            "idempotency_key": "legacy-k"});
        kv.put(format!("j.{id}"), record.to_string().into())
            .await
            .unwrap();
        let mut h = Sha256::new();
        h.update(b"all\0legacy-k");
        let scoped = format!("i.{}", hex::encode(h.finalize()));
        kv.put(scoped, id.as_bytes().to_vec().into()).await.unwrap();
        // As if no gateway of this version had run yet.
        let meta = js.get_key_value("aigw_meta").await.unwrap();
        meta.purge("idem_scope").await.unwrap();
    }
    let gw = Gateway::start(nats_config(&up, &nats)).await;
    gw.wait_log("idempotency keys of earlier jobs rescoped")
        .await;
    let (s, v) = get_job(&gw, GW_KEY, id).await;
    assert_eq!((s, v["request_id"].as_str()), (200, Some("req-old")), "{v}");
    let body = chat_body("gpt-test", "again");
    let again = |key: &'static str| {
        submit(
            &gw,
            key,
            "/v1/async/chat/completions",
            &body,
            &[("idempotency-key", "legacy-k")],
        )
    };
    let r = again(GW_KEY).await;
    assert_eq!(r.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(json_of(r).await["id"], id);
    let (s, _) = get_job(&gw, GPT_KEY, id).await;
    assert_eq!(s, 404);
    let r = again(GPT_KEY).await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_ne!(json_of(r).await["id"], id);
}

#[tokio::test]
async fn nats_failing_upstream_ends_the_job_failed() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Status(
        500,
        json!({"error": {"message": "boom", "type": "server_error"}}).to_string(),
    ));
    let rx = WebhookReceiver::start().await;
    let mut cfg = nats_config(&up, &nats);
    cfg["jobs"]["max_attempts"] = json!(2);
    cfg["resilience"]["retries"] = json!(1);
    let gw = Gateway::start(cfg).await;
    failing_upstream(&gw, &up, &rx).await;
}

#[tokio::test]
async fn nats_kill_9_gateway_with_200_jobs_in_flight_loses_none() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(100)));
    let rx = WebhookReceiver::start().await;
    let mut cfg = nats_config(&up, &nats);
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
    // The killed process's running jobs come back after the consumer's AckWait (10 s).
    assert_all_succeeded_once(&gw2, &ids, &rx).await;
    assert!(
        up.request_count() <= 200 + 16,
        "{} upstream calls",
        up.request_count()
    );
}

#[tokio::test]
async fn nats_restart_mid_queue_loses_no_job() {
    let mut nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(50)));
    let rx = WebhookReceiver::start().await;
    let mut cfg = nats_config(&up, &nats);
    cfg["jobs"]["workers"] = json!(8);
    let gw = Gateway::start(cfg).await;
    let ids = submit_many(&gw, 200, &rx.url()).await;
    assert!(wait_until(Duration::from_secs(20), || up.request_count() >= 30).await);
    nats.kill();
    let ready = json_of(gw.get("/ready", None).await).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = submit(
        &gw,
        GW_KEY,
        "/v1/async/chat/completions",
        &chat_body("gpt-test", "while down"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 503, "no job is accepted that cannot be stored");
    let ready2 = json_of(gw.get("/ready", None).await).await;
    assert_eq!(ready2["nats"], "down", "{ready} {ready2}");
    assert_eq!(ready2["status"], "degraded");
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart().await;
    assert_all_succeeded_once(&gw, &ids, &rx).await;
    let ready = json_of(gw.get("/ready", None).await).await;
    assert_eq!(ready["nats"], "ok");
}

#[tokio::test]
async fn worker_mode_runs_jobs_without_the_api() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(100)));
    let mut cfg = nats_config(&up, &nats);
    cfg["jobs"]["workers"] = json!(1);
    let api = Gateway::start(cfg.clone()).await;
    cfg["jobs"]["workers"] = json!(8);
    let worker = Gateway::start_worker(cfg).await;
    assert_eq!(worker.get("/health", None).await.status(), 200);
    assert_eq!(
        json_of(worker.get("/ready", None).await).await["nats"],
        "ok"
    );
    let r = worker.chat("gpt-test", "x").await;
    assert_eq!(r.status(), 404, "a worker serves no API");
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            submit_ok(&api, &chat_body("gpt-test", &format!("w{i}")), &[]).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        assert_eq!(
            wait_job(&api, id, Duration::from_secs(20)).await["status"],
            "succeeded"
        );
    }
    let by_worker = metric(&worker, "ai_gateway_jobs_total{status=\"succeeded\"}").await;
    assert!(by_worker >= 10.0, "the worker ran {by_worker} of 30");
}

#[tokio::test]
async fn worker_mode_needs_nats() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.json");
    std::fs::write(&path, serde_json::to_vec(&jobs_config(&up)).unwrap()).unwrap();
    let out = gateway::command()
        .arg("worker")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nats_url"));
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

#[tokio::test]
async fn embedded_sigterm_finishes_or_releases_running_jobs() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = jobs_config(&up);
    cfg["state"] = json!({"data_dir": data.path().to_str().unwrap()});
    cfg["server"] = json!({"shutdown_grace": "2s"});
    sigterm_finishes_or_releases(cfg, &up).await;
}

#[tokio::test]
async fn nats_sigterm_finishes_or_releases_running_jobs() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = nats_config(&up, &nats);
    cfg["server"] = json!({"shutdown_grace": "2s"});
    sigterm_finishes_or_releases(cfg, &up).await;
}

#[tokio::test]
async fn nats_bodies_and_results_larger_than_a_message_go_through_the_object_store() {
    let nats = NatsServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let rx = WebhookReceiver::start().await;
    let gw = Gateway::start(nats_config(&up, &nats)).await;
    // nats-server's default max_payload is 1 MiB.
    let big = "a".repeat(3 * 1024 * 1024);
    let job = submit_ok(
        &gw,
        &chat_body("gpt-test", &big),
        &[("x-webhook-url", &rx.url())],
    )
    .await;
    let done = wait_job(&gw, job["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(
        done["status"],
        "succeeded",
        "{}",
        &done.to_string()[..300.min(done.to_string().len())]
    );
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        big.len()
    );
    assert!(wait_until(Duration::from_secs(10), || !rx.deliveries().is_empty()).await);
    let d = &rx.deliveries()[0];
    assert!(d.verifies(SECRET));
    assert_eq!(
        d.json()["result"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        big.len()
    );
}

#[tokio::test]
async fn a_job_runs_as_its_admin_made_key_and_fails_once_the_key_is_revoked() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(800)));
    let mut cfg = jobs_config(&up);
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    cfg["jobs"]["workers"] = json!(1);
    let gw = Gateway::start(cfg).await;
    let (id, key) = create_key(&gw, json!({"name": "made", "models": ["gpt-*"]})).await;
    let path = "/v1/async/chat/completions";
    let first =
        json_of(submit(&gw, &key, path, &chat_body("gpt-test", "by made key"), &[]).await).await;
    assert!(wait_until(Duration::from_secs(5), || up.request_count() == 1).await);
    let _second =
        json_of(submit(&gw, &key, path, &chat_body("gpt-test", "after revoke"), &[]).await).await;
    let (s, _) = get_job(&gw, GW_KEY, first["id"].as_str().unwrap()).await;
    assert_eq!(s, 404, "another key does not see it");
    // Revoke while the first runs and the second waits.
    revoke_key(&gw, &id).await;
    // The revoked key can no longer read its jobs; the metrics tell how they ended.
    let ended = wait_until_async(Duration::from_secs(15), || async {
        metric(&gw, "ai_gateway_jobs_total{status=\"succeeded\"}").await == 1.0
            && metric(&gw, "ai_gateway_jobs_total{status=\"failed\"}").await == 1.0
    })
    .await;
    assert!(
        ended,
        "one job succeeded as the key, the other failed once it was revoked"
    );
    assert_eq!(
        up.request_count(),
        1,
        "a revoked key's queued job does not run"
    );
    assert!(String::from_utf8_lossy(&up.requests()[0].body).contains("by made key"));
}

async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_key_over_budget_is_refused_at_submission() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = jobs_config(&up);
    cfg["auth"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "broke", "key": "sk-gw-broke-0009", "budget_usd": 0.0}));
    let gw = Gateway::start(cfg).await;
    let r = submit(
        &gw,
        "sk-gw-broke-0009",
        "/v1/async/chat/completions",
        &chat_body("gpt-test", "x"),
        &[],
    )
    .await;
    assert_openai_error(r, 429, "insufficient_quota", Some("budget_exceeded")).await;
    assert_eq!(up.request_count(), 0);
}
