//! Whose jobs: a job is visible only to its key (by its id, not its name), runs as that key, and is
//! refused over its budget.

use super::*;

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
