//! Keys, rate limits and budgets: admin-created keys, RPM/TPM limits shared by two replicas
//! through a real redis-server, budgets, persistence, Redis outages, and no key in any log.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::redis::{RedisServer, wait_redis_ok};
use crate::support::*;

fn limited_config(redis: Option<&RedisServer>, keys: Value) -> Value {
    let mut cfg = config(
        vec![mock_provider("local")],
        vec![
            json!({"name": "mock", "deployments": [{"provider": "local", "model": "mock",
            "input_cost_per_mtok": 1000000.0, "output_cost_per_mtok": 1000000.0}]}),
        ],
    );
    cfg["auth"] = json!({"master_key": MASTER_KEY, "keys": keys});
    if let Some(r) = redis {
        cfg["state"] = json!({"redis_url": r.url()});
    }
    cfg
}

async fn create_key(gw: &Gateway, body: Value) -> (String, String) {
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v = json_of(r).await;
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn status(gw: &Gateway, key: &str, body: &Value) -> u16 {
    gw.post("/v1/chat/completions", Some(key), body)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn rpm_is_exact_across_two_replicas() {
    let redis = RedisServer::start().await;
    let keys = json!([{"name": "ten", "key": "sk-test-rpm-ten-0000000001", "rpm": 10}]);
    let a = Gateway::start(limited_config(Some(&redis), keys.clone())).await;
    let b = Gateway::start(limited_config(Some(&redis), keys)).await;
    wait_redis_ok(&a).await;
    wait_redis_ok(&b).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let url = if i % 2 == 0 {
            a.url("/v1/chat/completions")
        } else {
            b.url("/v1/chat/completions")
        };
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut ok = 0;
            for _ in 0..3 {
                let r = c
                    .post(&url)
                    .bearer_auth("sk-test-rpm-ten-0000000001")
                    .json(&chat_body("mock", "x"))
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 => ok += 1,
                    429 => {
                        assert!(r.headers().contains_key("retry-after"));
                        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "10");
                        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
                    }
                    s => panic!("unexpected status {s}"),
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(
        ok, 10,
        "exactly the limit in the window, across both replicas"
    );
}

#[tokio::test]
async fn success_answers_carry_rate_limit_headers() {
    let keys =
        json!([{"name": "lim", "key": "sk-test-headers-0000000002", "rpm": 100, "tpm": 100000}]);
    let gw = Gateway::start(limited_config(None, keys)).await;
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-test-headers-0000000002"),
            &chat_body("mock", "x"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("100"));
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), Some("99"));
    assert!(header(&r, "x-ratelimit-reset-requests").is_some());
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), Some("100000"));
    assert!(header(&r, "x-ratelimit-remaining-tokens").is_some());
}

#[tokio::test]
async fn tpm_trips_on_token_volume() {
    let keys = json!([{"name": "tok", "key": "sk-test-tpm-000000000003", "tpm": 2000}]);
    let gw = Gateway::start(limited_config(None, keys)).await;
    let big = "word ".repeat(300);
    let mut body = chat_body("mock", &big);
    body["max_tokens"] = json!(200);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(status(&gw, "sk-test-tpm-000000000003", &body).await);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-test-tpm-000000000003"),
            &body,
        )
        .await;
    let e = assert_openai_error(r, 429, "rate_limit_error", Some("rate_limit_exceeded")).await;
    assert!(
        e["message"].as_str().unwrap().contains("tokens per minute"),
        "{e}"
    );
    // Small requests of another key are unaffected.
    let keys_ok = status(&gw, GW_KEY, &chat_body("mock", "x")).await;
    assert!(keys_ok == 401 || keys_ok == 200);
}

#[tokio::test]
async fn a_budget_stops_a_key() {
    let gw = Gateway::start(limited_config(None, json!([]))).await;
    // Prices make every token cost a dollar: each answer costs a few dollars.
    let (id, key) = create_key(
        &gw,
        json!({"name": "spender", "budget_usd": 5, "budget_period": "30d"}),
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(status(&gw, &key, &chat_body("mock", "one two")).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(codes[0], 200);
    assert_eq!(*codes.last().unwrap(), 429, "{codes:?}");
    let r = gw
        .post("/v1/chat/completions", Some(&key), &chat_body("mock", "x"))
        .await;
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    assert_openai_error(r, 429, "insufficient_quota", Some("budget_exceeded")).await;
    let rec = json_of(gw.get(&format!("/admin/keys/{id}"), Some(MASTER_KEY)).await).await;
    assert!(rec["spend_usd"].as_f64().unwrap() >= 5.0, "{rec}");
    assert!(rec["usage"]["requests"].as_u64().unwrap() >= 2, "{rec}");
    assert!(
        rec.get("key").is_none() && rec.get("key_sha256").is_none(),
        "no secret in records: {rec}"
    );
    let metrics = gw.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("ai_gateway_rate_limited_total{reason=\"budget\"}"));
    assert!(
        metrics.contains(
            "ai_gateway_cost_usd_total{model=\"mock\",provider=\"local\",key=\"spender\"}"
        )
    );
}

#[tokio::test]
async fn admin_keys_work_on_the_other_replica_and_revocation_reaches_it() {
    let redis = RedisServer::start().await;
    let a = Gateway::start(limited_config(Some(&redis), json!([]))).await;
    let b = Gateway::start(limited_config(Some(&redis), json!([]))).await;
    wait_redis_ok(&a).await;
    wait_redis_ok(&b).await;
    let (id, key) = create_key(&a, json!({"name": "roaming", "models": ["mock"]})).await;
    assert!(key.starts_with("sk-gw-") && key.len() >= 38);
    assert_eq!(status(&b, &key, &chat_body("mock", "x")).await, 200);
    let r = client()
        .delete(a.url(&format!("/admin/keys/{id}")))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = b
        .post("/v1/chat/completions", Some(&key), &chat_body("mock", "x"))
        .await;
    assert_openai_error(r, 401, "authentication_error", Some("invalid_api_key")).await;
    // The listing shows it revoked, without secrets.
    let list = json_of(b.get("/admin/keys", Some(MASTER_KEY)).await).await;
    let rec = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(rec["revoked"], true);
    assert!(!list.to_string().contains(&key));
}

#[tokio::test]
async fn admin_api_needs_the_master_key_and_validates() {
    let gw = Gateway::start(limited_config(None, json!([]))).await;
    let r = client()
        .post(gw.url("/admin/keys"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(GW_KEY)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"rpm": 5}))
        .send()
        .await
        .unwrap();
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "x", "expires_at": "soon"}))
        .send()
        .await
        .unwrap();
    assert_openai_error(r, 400, "invalid_request_error", None).await;
    let (id, key) = create_key(&gw, json!({"name": "patchable", "models": ["other-*"]})).await;
    let r = gw
        .post("/v1/chat/completions", Some(&key), &chat_body("mock", "x"))
        .await;
    assert_openai_error(r, 403, "permission_error", Some("model_not_allowed")).await;
    let r = client()
        .patch(gw.url(&format!("/admin/keys/{id}")))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"models": ["*"], "rpm": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&gw, &key, &chat_body("mock", "x")).await, 200);
    let r = client()
        .patch(gw.url(&format!("/admin/keys/{id}")))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"expires_at": "2001-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&gw, &key, &chat_body("mock", "x")).await, 401);
    let r = client()
        .get(gw.url("/admin/keys/key_nope"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn keys_persist_across_restarts_embedded_and_redis() {
    // Embedded: the same data_dir.
    let data = tempfile::tempdir().unwrap();
    let mut cfg = limited_config(None, json!([]));
    cfg["state"] = json!({"data_dir": data.path()});
    let key = {
        let gw = Gateway::start(cfg.clone()).await;
        create_key(&gw, json!({"name": "durable"})).await.1
    };
    let gw = Gateway::start(cfg).await;
    assert_eq!(status(&gw, &key, &chat_body("mock", "x")).await, 200);
    drop(gw);
    // Redis: a new gateway process on the same Redis.
    let redis = RedisServer::start().await;
    let key = {
        let gw = Gateway::start(limited_config(Some(&redis), json!([]))).await;
        wait_redis_ok(&gw).await;
        create_key(&gw, json!({"name": "durable-redis"})).await.1
    };
    let gw = Gateway::start(limited_config(Some(&redis), json!([]))).await;
    wait_redis_ok(&gw).await;
    assert_eq!(status(&gw, &key, &chat_body("mock", "x")).await, 200);
}

async fn outage_with(policy: &str) -> Vec<u16> {
    let mut redis = RedisServer::start().await;
    let keys = json!([{"name": "k", "key": "sk-test-outage-00000000004", "rpm": 1000}]);
    let mut cfg = limited_config(Some(&redis), keys);
    cfg["rate_limits"] = json!({"shared": true, "on_redis_error": policy});
    let gw = Gateway::start(cfg).await;
    wait_redis_ok(&gw).await;
    assert_eq!(
        status(&gw, "sk-test-outage-00000000004", &chat_body("mock", "x")).await,
        200
    );
    redis.stop();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(status(&gw, "sk-test-outage-00000000004", &chat_body("mock", "x")).await);
    }
    codes
}

#[tokio::test]
async fn redis_outage_policy_local() {
    assert!(outage_with("local").await.iter().all(|s| *s == 200));
}

#[tokio::test]
async fn redis_outage_policy_allow() {
    assert!(outage_with("allow").await.iter().all(|s| *s == 200));
}

#[tokio::test]
async fn redis_outage_policy_deny() {
    assert!(outage_with("deny").await.iter().all(|s| *s == 503));
}

#[tokio::test]
async fn no_key_appears_in_the_logs() {
    let redis = RedisServer::start().await;
    let keys = json!([{"name": "static", "key": "sk-test-static-secret-00005"}]);
    let gw = Gateway::start(limited_config(Some(&redis), keys)).await;
    wait_redis_ok(&gw).await;
    let (_, created) = create_key(&gw, json!({"name": "made"})).await;
    status(&gw, "sk-test-static-secret-00005", &chat_body("mock", "x")).await;
    status(&gw, &created, &chat_body("mock", "x")).await;
    status(&gw, "sk-test-wrong-key-000000006", &chat_body("mock", "x")).await;
    let _ = client()
        .get(gw.url("/admin/keys"))
        .bearer_auth("not-the-master")
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gw.logs();
    for secret in [
        "sk-test-static-secret-00005",
        created.as_str(),
        MASTER_KEY,
        "sk-test-wrong-key-000000006",
    ] {
        assert!(!logs.contains(secret), "a key leaked into the logs");
    }
}

/// With shared limits, the answer's settlement (the tpm bucket given back what the reservation
/// overestimated, and the spend record) is one Redis pipeline; after `SCRIPT FLUSH` (Redis lost
/// its scripts) the correction is still made. tpm 6000 and `max_tokens` 3500: a second request
/// fits only once the first's reservation was corrected to its real usage (the bucket refills
/// 100 tokens a second, so without the correction it would take ~10 s).
#[tokio::test]
async fn shared_limits_settle_in_one_round_trip_and_survive_a_script_flush() {
    let redis = RedisServer::start().await;
    let mut cfg = limited_config(Some(&redis), json!([]));
    cfg["rate_limits"] = json!({"shared": true});
    let gw = Gateway::start(cfg).await;
    wait_redis_ok(&gw).await;
    let (id, key) = create_key(&gw, json!({"name": "settle", "tpm": 6000})).await;
    let mut body = chat_body("mock", "hello there");
    body["max_tokens"] = json!(3500);
    let requests = |rec: &Value| rec["usage"]["requests"].as_u64().unwrap_or(0);
    let settled = |n: u64| {
        let gw = &gw;
        let id = id.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let rec =
                    json_of(gw.get(&format!("/admin/keys/{id}"), Some(MASTER_KEY)).await).await;
                if requests(&rec) >= n {
                    return rec;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the spend of {n} answers never showed: {rec}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Admitted once the earlier reservations were corrected (a 429 takes nothing).
    let admitted = |body: Value| {
        let gw = &gw;
        let key = key.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            loop {
                match status(gw, &key, &body).await {
                    200 => return,
                    429 => assert!(
                        tokio::time::Instant::now() < deadline,
                        "the earlier reservation was never given back"
                    ),
                    s => panic!("unexpected status {s}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(status(&gw, &key, &body).await, 200);
    settled(1).await;
    admitted(body.clone()).await;
    let rec = settled(2).await;
    assert!(rec["usage"]["input_tokens"].as_u64().unwrap() > 0, "{rec}");

    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    admitted(body.clone()).await;
    settled(3).await;
    admitted(body.clone()).await;
    settled(4).await;
}
