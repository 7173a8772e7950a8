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
    let keys = json!([{"name": "tok", "key": "sk-test-tpm-000000000003", "tpm": 2000},
                      {"name": "other", "key": "sk-test-tpm-other-0000003b", "tpm": 2000}]);
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
    // Another key with the same tpm is unaffected: its own bucket is full.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some("sk-test-tpm-other-0000003b"),
            &body,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), Some("2000"));
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
    revoke_key(&a, &id).await;
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

/// Create a key with a gateway of `cfg` that then stops: the key's id and plaintext.
async fn made_by_a_stopped_gateway(cfg: &Value, body: Value) -> (String, String) {
    let gw = Gateway::start(cfg.clone()).await;
    create_key(&gw, body).await
}

/// The configuration with the embedded store in `data` and the file's keys `keys`.
fn embedded_config(data: &tempfile::TempDir, keys: Value) -> Value {
    let mut cfg = limited_config(None, keys);
    cfg["state"] = json!({"data_dir": data.path()});
    cfg
}

#[tokio::test]
async fn keys_persist_across_restarts_embedded_and_redis() {
    // Embedded: the same data_dir.
    let data = tempfile::tempdir().unwrap();
    let cfg = embedded_config(&data, json!([]));
    let key = made_by_a_stopped_gateway(&cfg, json!({"name": "durable"}))
        .await
        .1;
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
    let body = chat_body("mock", "x");
    assert_eq!(status(&gw, "sk-test-static-secret-00005", &body).await, 200);
    assert_eq!(status(&gw, &created, &body).await, 200);
    assert_eq!(status(&gw, "sk-test-wrong-key-000000006", &body).await, 401);
    let r = client()
        .get(gw.url("/admin/keys"))
        .bearer_auth("not-the-master")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
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

// ---------------------------------------------------------------- key names and ids

/// Assert a 409 `key_name_taken` in OpenAI's shape naming `name`.
async fn assert_name_taken(r: reqwest::Response, name: &str) {
    assert_eq!(header(&r, "x-should-retry"), Some("false"));
    let e = assert_openai_error(r, 409, "invalid_request_error", Some("key_name_taken")).await;
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&format!("\"{name}\"")), "{msg}");
}

fn patch(id: &str) -> String {
    format!("/{id}")
}

#[tokio::test]
async fn key_names_are_unique_among_live_keys() {
    use reqwest::Method;
    let keys = json!([{"name": "from-file", "key": "sk-test-names-file-00000007"}]);
    let gw = Gateway::start(limited_config(None, keys)).await;
    let (first_id, first_key) = create_key(&gw, json!({"name": "dup"})).await;
    // A second live key with the name, or a name of the file's keys: 409.
    let r = admin_keys(&gw, Method::POST, "", Some(&json!({"name": "dup"}))).await;
    assert_name_taken(r, "dup").await;
    let r = admin_keys(&gw, Method::POST, "", Some(&json!({"name": "from-file"}))).await;
    assert_name_taken(r, "from-file").await;
    // A rename onto a live name: 409, and the key keeps its name.
    let (other_id, _) = create_key(&gw, json!({"name": "other"})).await;
    for taken in ["dup", "from-file"] {
        let r = admin_keys(
            &gw,
            Method::PATCH,
            &patch(&other_id),
            Some(&json!({"name": taken, "rpm": 5})),
        )
        .await;
        assert_name_taken(r, taken).await;
    }
    let rec = json_of(admin_keys(&gw, Method::GET, &patch(&other_id), None).await).await;
    assert_eq!(rec["name"], "other");
    assert_eq!(
        rec["rpm"],
        Value::Null,
        "a refused change changes nothing: {rec}"
    );
    // Other changes, with or without its own name, are fine; a rename frees the old name.
    for body in [json!({"rpm": 5}), json!({"name": "other", "rpm": 6})] {
        let r = admin_keys(&gw, Method::PATCH, &patch(&other_id), Some(&body)).await;
        assert_eq!(r.status(), 200);
    }
    let r = admin_keys(
        &gw,
        Method::PATCH,
        &patch(&other_id),
        Some(&json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    create_key(&gw, json!({"name": "other"})).await;
    // A revoked key's name may be reused: by another key, with another id.
    revoke_key(&gw, &first_id).await;
    let (new_id, new_key) = create_key(&gw, json!({"name": "dup"})).await;
    assert_ne!(new_id, first_id);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&gw, &first_key, &chat_body("mock", "x")).await, 401);
    assert_eq!(status(&gw, &new_key, &chat_body("mock", "x")).await, 200);
    // Renaming the revoked key back onto the live name does not take it from the new key.
    let r = admin_keys(
        &gw,
        Method::PATCH,
        &patch(&first_id),
        Some(&json!({"name": "dup", "metadata": {"note": "old"}})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = admin_keys(&gw, Method::POST, "", Some(&json!({"name": "dup"}))).await;
    assert_name_taken(r, "dup").await;
}

#[tokio::test]
async fn key_names_are_unique_across_replicas_sharing_redis() {
    let redis = RedisServer::start().await;
    let a = Gateway::start(limited_config(Some(&redis), json!([]))).await;
    let b = Gateway::start(limited_config(Some(&redis), json!([]))).await;
    wait_redis_ok(&a).await;
    wait_redis_ok(&b).await;
    // Eight creates of one name at once, half on each replica: one wins.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { &a } else { &b }.url("/admin/keys");
        set.spawn(async move {
            client()
                .post(url)
                .bearer_auth(MASTER_KEY)
                .json(&json!({"name": "shared-name"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut codes = Vec::new();
    while let Some(c) = set.join_next().await {
        codes.push(c.unwrap());
    }
    codes.sort_unstable();
    assert_eq!(codes, [201, 409, 409, 409, 409, 409, 409, 409]);
    // Revoked on one replica, the name is free on the other.
    let list = json_of(a.get("/admin/keys", Some(MASTER_KEY)).await).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    revoke_key(&a, &id).await;
    let (new_id, _) = create_key(&b, json!({"name": "shared-name"})).await;
    assert_ne!(new_id, id);
}

#[tokio::test]
async fn keys_stored_before_names_were_unique_are_indexed_at_start() {
    let redis = RedisServer::start().await;
    // Two live keys sharing a name, as an earlier version could store them (no name index).
    for (id, created) in [
        ("key_0000000000000000000000a1", 1),
        ("key_0000000000000000000000b2", 2),
    ] {
        let rec = json!({"id": id, "name": "twin", "key_prefix": "sk-gw-xxxx…",
            "key_sha256": format!("{:0>64}", created), "models": ["*"], "rpm": null, "tpm": null,
            "budget_usd": null, "budget_period": null, "expires_at": null, "metadata": {},
            "created_at": created, "revoked": false});
        redis.cli(&["SET", &format!("aigw:keys:id:{id}"), &rec.to_string()]);
        redis.cli(&["SADD", "aigw:keys:all", id]);
    }
    let gw = Gateway::start(limited_config(Some(&redis), json!([]))).await;
    gw.wait_log("two live admin-made keys share a name").await;
    // The older holds the name; a new key cannot take it.
    assert_eq!(
        redis.cli(&["GET", "aigw:{keys}:name:twin"]).trim(),
        "key_0000000000000000000000a1"
    );
    let r = admin_keys(
        &gw,
        reqwest::Method::POST,
        "",
        Some(&json!({"name": "twin"})),
    )
    .await;
    assert_name_taken(r, "twin").await;
    // What the log says to do: rename the younger twin; then the name is the older one's alone,
    // and once that is revoked a new key may have it.
    let r = admin_keys(
        &gw,
        reqwest::Method::PATCH,
        "/key_0000000000000000000000b2",
        Some(&json!({"name": "twin-2"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    revoke_key(&gw, "key_0000000000000000000000a1").await;
    let (new_id, _) = create_key(&gw, json!({"name": "twin"})).await;
    assert_eq!(redis.cli(&["GET", "aigw:{keys}:name:twin"]).trim(), new_id);
}

#[tokio::test]
async fn a_reload_giving_a_file_key_a_live_admin_keys_name_is_refused() {
    let keys = json!([{"name": "file-key", "key": "sk-test-reload-clash-000008"}]);
    let cfg = limited_config(None, keys);
    let gw = Gateway::start(cfg.clone()).await;
    let (id, key) = create_key(&gw, json!({"name": "made-by-admin"})).await;
    let mut clash = cfg.clone();
    clash["auth"]["keys"][0]["name"] = json!("made-by-admin");
    gw.write_config(clash);
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    let e = assert_openai_error(r, 400, "invalid_request_error", Some("invalid_config")).await;
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("\"made-by-admin\"") && msg.contains(&id),
        "names the clash: {msg}"
    );
    // The running configuration stays: both keys work, under their names.
    let body = chat_body("mock", "x");
    assert_eq!(status(&gw, "sk-test-reload-clash-000008", &body).await, 200);
    assert_eq!(status(&gw, &key, &body).await, 200);
    let list = json_of(gw.get("/admin/keys", Some(MASTER_KEY)).await).await;
    assert!(list.to_string().contains("\"file-key\""), "{list}");
    // Once the admin-made key is revoked the same file is taken.
    revoke_key(&gw, &id).await;
    let r = gw.post("/admin/reload", Some(MASTER_KEY), &json!({})).await;
    assert_eq!(r.status(), 200);
    let list = json_of(gw.get("/admin/keys", Some(MASTER_KEY)).await).await;
    let file_key = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["source"] == "config")
        .unwrap()
        .clone();
    assert_eq!(file_key["name"], "made-by-admin");
}

#[tokio::test]
async fn a_start_with_a_file_key_named_like_a_live_admin_key_says_so_and_serves_both() {
    let data = tempfile::tempdir().unwrap();
    let made =
        made_by_a_stopped_gateway(&embedded_config(&data, json!([])), json!({"name": "both"}))
            .await;
    // The file changed while the gateway was stopped.
    let keys = json!([{"name": "both", "key": "sk-test-start-clash-000011"}]);
    let gw = Gateway::start(embedded_config(&data, keys)).await;
    gw.wait_log(&format!(
        "is also the name of the live admin-made key {}",
        made.0
    ))
    .await;
    let body = chat_body("mock", "x");
    assert_eq!(status(&gw, &made.1, &body).await, 200);
    assert_eq!(status(&gw, "sk-test-start-clash-000011", &body).await, 200);
}

#[tokio::test]
async fn a_file_keys_id_follows_its_secret_and_takes_over_its_earlier_spend() {
    let redis = RedisServer::start().await;
    // Spend an earlier version recorded under the old id `cfg_<name>`, this period (30 days).
    let period_ms: u64 = 30 * 86_400 * 1000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start = now - now % period_ms;
    let old = format!("aigw:usage:cfg_app:{start}");
    redis.cli(&["HSET", &old, "spend", "2.5", "requests", "7"]);
    let keys = json!([{"name": "app", "key": "sk-test-file-id-0000000009", "budget_usd": 100}]);
    let cfg = limited_config(Some(&redis), keys);
    let gw = Gateway::start(cfg.clone()).await;
    // Moved once Redis answers (in the background: the gateway does not wait for Redis).
    gw.wait_log("spend of the period carried to the key's id")
        .await;
    let file_key = |list: &Value| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["source"] == "config")
            .unwrap()
            .clone()
    };
    let k = file_key(&json_of(gw.get("/admin/keys", Some(MASTER_KEY)).await).await);
    let id = k["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("cfg_") && id.len() == 20 && id != "cfg_app",
        "{k}"
    );
    assert_eq!(k["spend_usd"], 2.5, "the spend moved to the new id: {k}");
    assert_eq!(k["usage"]["requests"], 7, "{k}");
    assert_eq!(redis.cli(&["EXISTS", &old]).trim(), "0");
    // Renamed in the file: the same key, the same id and spend.
    let mut renamed = cfg.clone();
    renamed["auth"]["keys"][0]["name"] = json!("app-renamed");
    gw.write_config(renamed);
    assert_eq!(
        gw.post("/admin/reload", Some(MASTER_KEY), &json!({}))
            .await
            .status(),
        200
    );
    let k = file_key(&json_of(gw.get("/admin/keys", Some(MASTER_KEY)).await).await);
    assert_eq!(
        (k["name"].as_str(), k["id"].as_str()),
        (Some("app-renamed"), Some(id.as_str()))
    );
    assert_eq!(k["spend_usd"], 2.5);
    // A new secret under the old name is another key: a new id, nothing spent.
    let mut rotated = cfg;
    rotated["auth"]["keys"][0]["key"] = json!("sk-test-file-id-new-secret-10");
    gw.write_config(rotated);
    assert_eq!(
        gw.post("/admin/reload", Some(MASTER_KEY), &json!({}))
            .await
            .status(),
        200
    );
    let k = file_key(&json_of(gw.get("/admin/keys", Some(MASTER_KEY)).await).await);
    assert_eq!(k["name"], "app");
    assert_ne!(k["id"], id.as_str());
    assert_eq!(k["spend_usd"], 0.0);
}
