//! Async jobs on a real `nats-server -js`: any replica, idempotency, failures, `kill -9`, a NATS
//! restart mid-queue, worker mode, SIGTERM, the object store.

use super::*;

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
    let cfg = nats_config(&up, &nats);
    // The killed process's running jobs come back after the consumer's AckWait (10 s).
    kill_9_with_200_jobs_in_flight(cfg, &up, &rx).await;
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
