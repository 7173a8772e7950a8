//! Redis as production runs it: a 3-master Redis Cluster (shared limits exact across two
//! gateways, L2 hits, admin-made keys and stored responses across replicas, a primary killed and
//! its replica promoted while requests flow), TLS with a password (`rediss://`, a CA file), and a
//! Sentinel-managed primary followed through `SENTINEL FAILOVER`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::cluster::{MASTER_NAME, RedisCluster, Sentinel, TlsRedis};
use crate::support::redis::wait_redis_ok;
use crate::support::*;

/// The mock model with a price, auth with a master key, the cache on, and `state`.
fn scale_config(state: Value, keys: Value) -> Value {
    let mut cfg = config(
        vec![mock_provider("local")],
        vec![
            json!({"name": "mock", "deployments": [{"provider": "local", "model": "mock",
            "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 1.0}]}),
        ],
    );
    cfg["auth"] = json!({"master_key": MASTER_KEY, "keys": keys});
    cfg["cache"] = json!({"enabled": true, "ttl": "1h"});
    cfg["state"] = state;
    cfg
}

fn cluster_state(c: &RedisCluster) -> Value {
    json!({"redis_cluster_urls": c.urls()})
}

const TEN: &str = "sk-test-scale-rpm-ten-0001";
const FREE: &str = "sk-test-scale-free-000004";

/// 30 requests of `key` spread over the gateways, 3 at a time per task: how many were let
/// through (every other answer must be a 429 of the limit).
async fn spread_requests(gws: &[&Gateway], key: &str, prompt: &str) -> usize {
    let mut tasks = Vec::new();
    for i in 0..10 {
        let url = gws[i % gws.len()].url("/v1/chat/completions");
        let (key, prompt) = (key.to_owned(), prompt.to_owned());
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut ok = 0;
            for j in 0..3 {
                // Distinct prompts: no answer comes from the cache.
                let r = c
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&chat_body("mock", &format!("{prompt} {i} {j}")))
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 => ok += 1,
                    429 => assert_eq!(r.headers()["x-ratelimit-limit-requests"], "10"),
                    s => panic!("unexpected status {s}: {}", r.text().await.unwrap()),
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    ok
}

#[tokio::test]
async fn on_a_redis_cluster_limits_are_exact_and_cache_keys_and_responses_are_shared() {
    let cluster = RedisCluster::start(3, 0).await;
    let keys = json!([{"name": "ten", "key": TEN, "rpm": 10}, {"name": "free", "key": FREE}]);
    let a = Gateway::start(scale_config(cluster_state(&cluster), keys.clone())).await;
    let b = Gateway::start(scale_config(cluster_state(&cluster), keys)).await;
    wait_redis_ok(&a).await;
    wait_redis_ok(&b).await;
    assert!(
        a.logs().contains("redis cluster via 3 seed node(s)"),
        "the start-up summary names the topology:\n{}",
        a.logs()
    );
    assert_eq!(
        spread_requests(&[&a, &b], TEN, "limits").await,
        10,
        "exactly the limit, across both replicas"
    );

    // The L2 cache: a miss on one replica, a hit from Redis on the other.
    let body = chat_body("mock", "shared through the cluster");
    let r = a.post("/v1/chat/completions", Some(FREE), &body).await;
    let first = header(&r, "x-cache").map(str::to_owned);
    assert_eq!(r.status(), 200);
    assert_eq!(first.as_deref(), Some("MISS"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = b.post("/v1/chat/completions", Some(FREE), &body).await;
        let layer = header(&r, "x-cache-layer").map(str::to_owned);
        if layer.as_deref() == Some("l2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no L2 hit: {layer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An admin-made key (one script over its record and indexes) made on one, used on the other.
    let (id, key) = create_key(&a, json!({"name": "on-the-cluster", "rpm": 1000})).await;
    let r = b
        .post("/v1/chat/completions", Some(&key), &chat_body("mock", "k"))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let again = admin_keys(
        &b,
        reqwest::Method::POST,
        "",
        Some(&json!({"name": "on-the-cluster"})),
    )
    .await;
    assert_eq!(again.status(), 409, "names are unique across replicas");
    revoke_key(&b, &id).await;

    // A stored response written through one replica is read through the other.
    let r = a
        .post(
            "/v1/responses",
            Some(FREE),
            &json!({"model": "mock", "input": "remember me"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = json_of(r).await["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = b.get(&format!("/v1/responses/{id}"), Some(FREE)).await;
        if r.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cluster_primary_killed_while_requests_flow_fails_none_and_limits_come_back() {
    let mut cluster = RedisCluster::start(3, 1).await;
    let keys = json!([{"name": "ten", "key": TEN, "rpm": 10},
                      {"name": "busy", "key": "sk-test-scale-busy-00002", "rpm": 1000000}]);
    let a = Gateway::start(scale_config(cluster_state(&cluster), keys.clone())).await;
    let b = Gateway::start(scale_config(cluster_state(&cluster), keys)).await;
    wait_redis_ok(&a).await;
    wait_redis_ok(&b).await;

    // Requests flow on both replicas while the primary of the limits' slot dies.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flows = Vec::new();
    for (i, gw) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (url, stop) = (gw.url("/v1/chat/completions"), stop.clone());
        flows.push(tokio::spawn(async move {
            let c = client();
            let mut statuses = Vec::new();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = tokio::time::Instant::now();
                let r = c
                    .post(&url)
                    .bearer_auth("sk-test-scale-busy-00002")
                    .json(&chat_body("mock", &format!("flow {i} {}", n % 7)))
                    .send()
                    .await
                    .unwrap();
                statuses.push((r.status().as_u16(), t.elapsed()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead = cluster.primary_of("aigw:rl:{limits}:x");
    cluster.kill(dead);
    cluster.wait_failover("aigw:rl:{limits}:x", dead).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for f in flows {
        all.extend(f.await.unwrap());
    }
    assert!(all.len() > 40, "requests flowed: {}", all.len());
    let failed: Vec<_> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "no request failed: {failed:?}");
    // None waited on Redis beyond its call timeouts (a few of them at most in a request).
    let slowest = all.iter().map(|(_, d)| *d).max().unwrap();
    assert!(slowest < Duration::from_secs(3), "slowest {slowest:?}");

    // Counting is shared again once the replica took over.
    wait_redis_ok(&a).await;
    wait_redis_ok(&b).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        spread_requests(&[&a, &b], TEN, "after the failover").await,
        10,
        "exact across replicas on the promoted primary"
    );
}

#[tokio::test]
async fn redis_over_tls_with_a_password_and_a_ca_file() {
    let redis = TlsRedis::start("tls-pass-SECRET-9").await;
    let keys = json!([{"name": "two", "key": "sk-test-scale-tls-two-003", "rpm": 2}]);
    let state = json!({"redis_url": redis.url(), "redis_tls": {"ca_file": redis.certs.ca()}});
    let gw = Gateway::start(scale_config(state, keys.clone())).await;
    wait_redis_ok(&gw).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let r = gw
            .post(
                "/v1/chat/completions",
                Some("sk-test-scale-tls-two-003"),
                &chat_body("mock", &format!("tls {i}")),
            )
            .await;
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 429]);
    // The buckets are in that Redis (reached over TLS, authenticated).
    let names = redis.cli(&["--scan", "--pattern", "aigw:rl:*"]);
    assert!(names.contains("aigw:rl:{limits}:"), "{names}");
    assert!(gw.logs().contains("rediss://127.0.0.1:"), "{}", gw.logs());
    assert!(gw.logs().contains("(TLS, CA file)"), "{}", gw.logs());

    // Without the CA (system roots), the self-signed certificate is refused: Redis is down,
    // requests still served, and the password is in no log line.
    let state = json!({"redis_url": redis.url()});
    let untrusting = Gateway::start(scale_config(state, keys.clone())).await;
    untrusting.wait_log("redis call failed").await;
    let ready = json_of(untrusting.get("/ready", None).await).await;
    assert_eq!(ready["redis"], "down", "{ready}");
    let r = untrusting
        .post(
            "/v1/chat/completions",
            Some("sk-test-scale-tls-two-003"),
            &chat_body("mock", "no redis"),
        )
        .await;
    assert_eq!(r.status(), 200);
    // A wrong password: refused, and said without the password.
    let state = json!({"redis_url": format!("rediss://:wrong-PASS-7@127.0.0.1:{}", redis.port),
                       "redis_tls": {"ca_file": redis.certs.ca()}});
    let wrong = Gateway::start(scale_config(state, keys.clone())).await;
    wrong.wait_log("redis call failed").await;
    // Insecure: accepted without the CA, with a warning.
    let state = json!({"redis_url": redis.url(), "redis_tls": {"insecure_skip_verify": true}});
    let insecure = Gateway::start(scale_config(state, keys)).await;
    wait_redis_ok(&insecure).await;
    insecure.wait_log("insecure_skip_verify is on").await;
    for gw in [&gw, &untrusting, &wrong, &insecure] {
        let logs = gw.logs();
        assert!(
            !logs.contains("tls-pass-SECRET-9") && !logs.contains("wrong-PASS-7"),
            "a password in the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn a_sentinel_failover_is_followed() {
    let sentinel = Sentinel::start().await;
    let state = json!({"redis_sentinel": {"master_name": MASTER_NAME, "urls": [sentinel.url()]}});
    let gw = Gateway::start(scale_config(state, json!([]))).await;
    wait_redis_ok(&gw).await;
    assert!(
        gw.logs()
            .contains("redis primary mymaster via 1 sentinel(s)"),
        "{}",
        gw.logs()
    );
    let (_, before) = create_key(&gw, json!({"name": "before-failover"})).await;
    // Written to the primary the sentinel named.
    let n = crate::support::cluster::cli(sentinel.primary, &["DBSIZE"]);
    assert_ne!(n.trim(), "0");
    sentinel.failover().await;
    gw.wait_log("redis primary changed").await;
    wait_redis_ok(&gw).await;
    // The key made before is there (replicated), and writes go to the new primary.
    let r = gw
        .post(
            "/v1/chat/completions",
            Some(&before),
            &chat_body("mock", "after"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = admin_keys(
            &gw,
            reqwest::Method::POST,
            "",
            Some(&json!({"name": "after-failover"})),
        )
        .await;
        if r.status() == 201 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sentinel.current_primary(), sentinel.replica);
}
