//! Deployments' `rpm` shared by replicas through Redis: two gateway processes on one real
//! redis-server together never send a deployment more than its `rpm`; the router sends the rest
//! to a deployment with room, and counts in its own process while Redis is down.

use serde_json::{Value, json};

use crate::support::redis::{RedisServer, wait_redis_ok};
use crate::support::*;

/// Model `capped`: deployment on upstream A with `rpm: 3` first, then one on B without a limit.
/// Model `only-capped`: A alone (same deployment, same bucket).
fn capacity_config(a: &FakeUpstream, b: &FakeUpstream, redis: &RedisServer) -> Value {
    let mut cfg = config(
        vec![openai_provider("a", a), openai_provider("b", b)],
        vec![
            json!({"name": "capped", "routing": "priority", "retries": 0, "deployments": [
                {"provider": "a", "model": "m", "rpm": 3, "priority": 0},
                {"provider": "b", "model": "m", "priority": 1},
            ]}),
            json!({"name": "only-capped", "retries": 0, "deployments": [
                {"provider": "a", "model": "m", "rpm": 3},
            ]}),
        ],
    );
    cfg["state"] = json!({"redis_url": redis.url()});
    cfg
}

#[tokio::test]
async fn two_replicas_together_never_exceed_a_deployments_rpm() {
    let redis = RedisServer::start().await;
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    let cfg = capacity_config(&a, &b, &redis);
    let g1 = Gateway::start(cfg.clone()).await;
    let g2 = Gateway::start(cfg).await;
    wait_redis_ok(&g1).await;
    wait_redis_ok(&g2).await;
    let mut providers = Vec::new();
    for i in 0..10 {
        let gw = if i % 2 == 0 { &g1 } else { &g2 };
        let r = gw.chat("capped", &format!("n{i}")).await;
        assert_eq!(r.status(), 200);
        providers.push(header(&r, "x-gateway-provider").unwrap().to_owned());
    }
    // Each process alone saw at most 5 requests (under 3 + 3): only the shared count stops A.
    assert_eq!(a.request_count(), 3, "{providers:?}");
    assert_eq!(b.request_count(), 7);
    // A model whose only deployment is at its shared limit: 429, and A gets nothing more.
    let r = g2.chat("only-capped", "more").await;
    assert_openai_error(r, 429, "rate_limit_error", Some("rate_limit_exceeded")).await;
    let r = g1.chat("only-capped", "more").await;
    assert_eq!(r.status(), 429);
    assert_eq!(a.request_count(), 3);
}

#[tokio::test]
async fn with_redis_down_each_process_counts_its_own() {
    let mut redis = RedisServer::start().await;
    let a = FakeUpstream::start(Kind::OpenAi).await;
    let b = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(capacity_config(&a, &b, &redis)).await;
    wait_redis_ok(&gw).await;
    redis.stop();
    let mut ok = 0;
    for i in 0..5 {
        let r = gw.chat("only-capped", &format!("n{i}")).await;
        if r.status() == 200 {
            ok += 1;
        } else {
            assert_eq!(r.status(), 429);
        }
    }
    assert_eq!(ok, 3, "the local window still holds A to its rpm");
    assert_eq!(a.request_count(), 3);
    // Redis back: counting is shared again, and the bucket in Redis is fresh.
    redis.restart().await;
    wait_redis_ok(&gw).await;
    let r = gw.chat("only-capped", "shared again").await;
    assert_eq!(r.status(), 200);
    assert_eq!(a.request_count(), 4);
}
