//! The response cache against a real redis-server: L1 and L2 hits, a second gateway sharing
//! Redis, single flight, stream replay, Cache-Control, key canonicalisation, Redis outages.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::redis::{RedisServer, wait_redis_ok};
use crate::support::*;

fn cached_config(up: &FakeUpstream, redis: Option<&RedisServer>) -> Value {
    let mut cfg = basic_config(Some(up));
    cfg["cache"] = json!({"enabled": true, "ttl": "1h"});
    if let Some(r) = redis {
        cfg["state"] = json!({"redis_url": r.url()});
    }
    cfg
}

async fn ask(
    gw: &Gateway,
    body: &Value,
) -> (reqwest::StatusCode, Option<String>, Option<String>, Value) {
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), body).await;
    let status = r.status();
    let cache = header(&r, "x-cache").map(str::to_owned);
    let layer = header(&r, "x-cache-layer").map(str::to_owned);
    (status, cache, layer, json_of(r).await)
}

/// Send `body` to `gw` in a task of its own: status, `x-cache-layer` and the JSON answer.
fn spawn_ask(gw: &Gateway, body: &Value) -> tokio::task::JoinHandle<(u16, Option<String>, Value)> {
    let (url, body) = (gw.url("/v1/chat/completions"), body.clone());
    tokio::spawn(async move {
        let r = client()
            .post(url)
            .bearer_auth(GW_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let layer = header(&r, "x-cache-layer").map(str::to_owned);
        (r.status().as_u16(), layer, r.json::<Value>().await.unwrap())
    })
}

/// Wait until Redis holds a cache entry (L2 writes go in the background).
async fn wait_l2_entry(redis: &RedisServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "--scan",
                "--pattern",
                "aigw:cache:*",
            ])
            .output()
            .expect("redis-cli");
        if !out.stdout.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no L2 entry was written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn l1_hit_after_a_miss() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cached_config(&up, None)).await;
    let body = chat_body("gpt-test", "cache this");
    let (s, c, _, first) = ask(&gw, &body).await;
    assert_eq!((s.as_u16(), c.as_deref()), (200, Some("MISS")));
    let (s, c, layer, second) = ask(&gw, &body).await;
    assert_eq!(
        (s.as_u16(), c.as_deref(), layer.as_deref()),
        (200, Some("HIT"), Some("l1"))
    );
    assert_eq!(first, second);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn a_second_gateway_hits_through_redis() {
    let redis = RedisServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let one = Gateway::start(cached_config(&up, Some(&redis))).await;
    let two = Gateway::start(cached_config(&up, Some(&redis))).await;
    wait_redis_ok(&one).await;
    wait_redis_ok(&two).await;
    let body = chat_body("gpt-test", "shared by replicas");
    let (_, c, _, a) = ask(&one, &body).await;
    assert_eq!(c.as_deref(), Some("MISS"));
    wait_l2_entry(&redis).await;
    let (_, c, layer, b) = ask(&two, &body).await;
    assert_eq!((c.as_deref(), layer.as_deref()), (Some("HIT"), Some("l2")));
    assert_eq!(a, b);
    // Copied into its L1.
    let (_, c, layer, _) = ask(&two, &body).await;
    assert_eq!((c.as_deref(), layer.as_deref()), (Some("HIT"), Some("l1")));
}

#[tokio::test]
async fn twenty_identical_concurrent_requests_reach_the_upstream_once() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(300)));
    let gw = Gateway::start(cached_config(&up, None)).await;
    let body = chat_body("gpt-test", "only once please");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(spawn_ask(&gw, &body));
    }
    let mut answers = Vec::new();
    for t in tasks {
        let (s, _, v) = t.await.unwrap();
        assert_eq!(s, 200);
        answers.push(v["choices"][0]["message"]["content"].clone());
    }
    assert!(answers.iter().all(|a| a == "only once please"));
    assert_eq!(up.request_count(), 1);
}

/// Identical requests on two replicas at once: one replica claims the key in Redis and fetches,
/// the other waits for the answer in L2. The upstream is asked once.
#[tokio::test]
async fn identical_requests_on_two_replicas_reach_the_upstream_once() {
    let redis = RedisServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.set_default(Fault::Delay(Duration::from_millis(400)));
    let one = Gateway::start(cached_config(&up, Some(&redis))).await;
    let two = Gateway::start(cached_config(&up, Some(&redis))).await;
    wait_redis_ok(&one).await;
    wait_redis_ok(&two).await;
    let body = chat_body("gpt-test", "once across replicas");
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(spawn_ask(if i % 2 == 0 { &one } else { &two }, &body));
    }
    let mut layers = Vec::new();
    for t in tasks {
        let (s, layer, v) = t.await.unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "once across replicas"
        );
        layers.push(layer);
    }
    assert_eq!(up.request_count(), 1, "{layers:?}");
    assert!(layers.contains(&Some("l2".to_owned())), "{layers:?}");
}

/// The replica that claimed a key gives up (its deadline passes on a hanging upstream): the
/// claim goes with it, and the waiting replica fetches the answer itself.
#[tokio::test]
async fn a_replica_waiting_on_a_failed_claim_fetches_itself() {
    let redis = RedisServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::Hang]);
    let mut short = cached_config(&up, Some(&redis));
    short["server"] = json!({"request_timeout": "500ms"});
    short["resilience"]["retries"] = json!(0);
    let one = Gateway::start(short).await;
    let two = Gateway::start(cached_config(&up, Some(&redis))).await;
    wait_redis_ok(&one).await;
    wait_redis_ok(&two).await;
    let body = chat_body("gpt-test", "the first fetch hangs");
    let first = spawn_ask(&one, &body);
    // The first replica holds the claim once its request reached the upstream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while up.request_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no upstream call");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, c, _, v) = ask(&two, &body).await;
    assert_eq!((s.as_u16(), c.as_deref()), (200, Some("MISS")), "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "the first fetch hangs"
    );
    assert_eq!(first.await.unwrap().0, 504);
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn a_streamed_answer_is_stored_and_replayed() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cached_config(&up, None)).await;
    let mut body = chat_body("gpt-test", "stream and replay me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let first = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(header(&first, "x-cache"), Some("MISS"));
    let first = first.text().await.unwrap();
    let second = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(header(&second, "x-cache"), Some("HIT"));
    assert_eq!(
        header(&second, "content-type").map(|c| c.starts_with("text/event-stream")),
        Some(true)
    );
    let second = second.text().await.unwrap();
    assert_eq!(
        joined_content(&sse_data(&first)),
        joined_content(&sse_data(&second))
    );
    assert_eq!(sse_data(&second).last().map(String::as_str), Some("[DONE]"));
    let usage = |t: &str| {
        sse_data(t)
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
    };
    assert_eq!(usage(&first), usage(&second));
    // A replay of the same stored answer is the same every time.
    let third = gw
        .post("/v1/chat/completions", Some(GW_KEY), &body)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(second, third);
    // A non-streamed request is served from it too.
    let (_, c, _, v) = ask(&gw, &chat_body("gpt-test", "stream and replay me")).await;
    assert_eq!(c.as_deref(), Some("HIT"));
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "stream and replay me"
    );
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn a_broken_stream_is_not_stored() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    up.push([Fault::DropMidStream(2)]);
    let gw = Gateway::start(cached_config(&up, None)).await;
    let mut body = chat_body("gpt-test", "one two three four");
    body["stream"] = json!(true);
    let _ = gw
        .post("/v1/chat/completions", Some(GW_KEY), &body)
        .await
        .text()
        .await;
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &body).await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn cache_control_semantics() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cached_config(&up, None)).await;
    let body = chat_body("gpt-test", "control");
    let send = |cc: Option<&'static str>, ttl: Option<&'static str>| {
        let mut rb = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(GW_KEY)
            .json(&body);
        if let Some(cc) = cc {
            rb = rb.header("cache-control", cc);
        }
        if let Some(t) = ttl {
            rb = rb.header("x-gateway-cache-ttl", t);
        }
        async move {
            let r = rb.send().await.unwrap();
            header(&r, "x-cache").map(str::to_owned)
        }
    };
    // no-store: neither read nor written.
    assert_eq!(
        send(Some("no-store"), None).await.as_deref(),
        Some("BYPASS")
    );
    assert_eq!(send(None, Some("1")).await.as_deref(), Some("MISS"));
    assert_eq!(send(None, None).await.as_deref(), Some("HIT"));
    // no-cache: not read, but the fresh answer is stored.
    assert_eq!(send(Some("no-cache"), None).await.as_deref(), Some("MISS"));
    // max-age: an entry older than N seconds is not accepted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(Some("max-age=0"), None).await.as_deref(), Some("MISS"));
    assert_eq!(send(Some("max-age=60"), None).await.as_deref(), Some("HIT"));
    // x-gateway-cache-ttl: 1 second, then expired.
    let other = chat_body("gpt-test", "short lived");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(GW_KEY)
        .header("x-gateway-cache-ttl", "1")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = gw.post("/v1/chat/completions", Some(GW_KEY), &other).await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
}

#[tokio::test]
async fn per_model_cache_false_bypasses() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let mut cfg = cached_config(&up, None);
    cfg["models"][1]["cache"] = json!(false);
    let gw = Gateway::start(cfg).await;
    for _ in 0..2 {
        let (_, c, _, _) = ask(&gw, &chat_body("gpt-test", "no cache for me")).await;
        assert_eq!(c.as_deref(), Some("BYPASS"));
    }
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn field_order_hits_and_semantic_changes_miss() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cached_config(&up, None)).await;
    let url = gw.url("/v1/chat/completions");
    let raw = |s: &'static str| {
        let url = url.clone();
        async move {
            let r = client()
                .post(url)
                .bearer_auth(GW_KEY)
                .header("content-type", "application/json")
                .body(s)
                .send()
                .await
                .unwrap();
            header(&r, "x-cache").map(str::to_owned)
        }
    };
    assert_eq!(raw(r#"{"model":"gpt-test","temperature":0.5,"messages":[{"role":"user","content":"order"}]}"#).await.as_deref(), Some("MISS"));
    assert_eq!(raw(r#"{ "messages" : [ {"content":"order","role":"user"} ], "temperature":0.50, "model":"gpt-test", "user":"u-1" }"#).await.as_deref(), Some("HIT"));
    assert_eq!(raw(r#"{"model":"gpt-test","temperature":0.7,"messages":[{"role":"user","content":"order"}]}"#).await.as_deref(), Some("MISS"));
    assert_eq!(raw(r#"{"model":"gpt-test","temperature":0.5,"messages":[{"role":"user","content":"order!"}]}"#).await.as_deref(), Some("MISS"));
    assert_eq!(up.request_count(), 3);
}

#[tokio::test]
async fn keys_do_not_share_entries_by_default() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cached_config(&up, None)).await;
    let body = chat_body("gpt-test", "scoped");
    assert_eq!(
        header(
            &gw.post("/v1/chat/completions", Some(GW_KEY), &body).await,
            "x-cache"
        ),
        Some("MISS")
    );
    assert_eq!(
        header(
            &gw.post("/v1/chat/completions", Some(GPT_KEY), &body).await,
            "x-cache"
        ),
        Some("MISS")
    );
    assert_eq!(
        header(
            &gw.post("/v1/chat/completions", Some(GPT_KEY), &body).await,
            "x-cache"
        ),
        Some("HIT")
    );
}

/// `x-cache` of `body` sent with `key`.
async fn cache_state(gw: &Gateway, key: &str, body: &Value) -> Option<String> {
    let r = gw.post("/v1/chat/completions", Some(key), body).await;
    assert_eq!(r.status(), 200);
    header(&r, "x-cache").map(str::to_owned)
}

#[tokio::test]
async fn a_new_key_with_a_revoked_keys_name_misses_its_entries() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let redis = RedisServer::start().await;
    let mut cfg = cached_config(&up, Some(&redis));
    cfg["auth"]["master_key"] = json!(MASTER_KEY);
    let gw = Gateway::start(cfg).await;
    wait_redis_ok(&gw).await;
    let body = chat_body("gpt-test", "keyed by id");
    let (a_id, a_key) = create_key(&gw, json!({"name": "cache-name"})).await;
    assert_eq!(
        cache_state(&gw, &a_key, &body).await.as_deref(),
        Some("MISS")
    );
    wait_l2_entry(&redis).await;
    assert_eq!(
        cache_state(&gw, &a_key, &body).await.as_deref(),
        Some("HIT")
    );
    revoke_key(&gw, &a_id).await;
    let (_, b_key) = create_key(&gw, json!({"name": "cache-name"})).await;
    // Neither L1 nor the L2 entry A left in Redis answers B.
    assert_eq!(
        cache_state(&gw, &b_key, &body).await.as_deref(),
        Some("MISS")
    );
    assert_eq!(
        cache_state(&gw, &b_key, &body).await.as_deref(),
        Some("HIT")
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn redis_down_never_fails_a_request_and_l2_resumes() {
    let mut redis = RedisServer::start().await;
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cached_config(&up, Some(&redis))).await;
    wait_redis_ok(&gw).await;
    redis.stop();
    for i in 0..30 {
        let (s, _, _, _) = ask(&gw, &chat_body("gpt-test", &format!("during outage {i}"))).await;
        assert_eq!(s, 200);
    }
    let ready = gw.get("/ready", None).await;
    assert_eq!(ready.status(), 200);
    let v = json_of(ready).await;
    assert_eq!(v["redis"], "down", "{v}");
    assert_eq!(v["status"], "degraded", "{v}");
    redis.restart().await;
    wait_redis_ok(&gw).await;
    // L2 works again: a second gateway sees what this one stores now.
    let body = chat_body("gpt-test", "after the outage");
    ask(&gw, &body).await;
    wait_l2_entry(&redis).await;
    let two = Gateway::start(cached_config(&up, Some(&redis))).await;
    wait_redis_ok(&two).await;
    let mut layer = None;
    for _ in 0..50 {
        let (_, c, l, _) = ask(&two, &body).await;
        if c.as_deref() == Some("HIT") {
            layer = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(layer.as_deref(), Some("l2"));
}

#[tokio::test]
async fn anthropic_clients_are_cached_in_their_own_format() {
    let up = FakeUpstream::start(Kind::OpenAi).await;
    let gw = Gateway::start(cached_config(&up, None)).await;
    let body = messages_body("gpt-test", "anthropic cache");
    let r = gw.post("/v1/messages", Some(GW_KEY), &body).await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    let first = json_of(r).await;
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = gw.post("/v1/messages", Some(GW_KEY), &sbody).await;
    assert_eq!(header(&r, "x-cache"), Some("HIT"));
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(
        events.first().and_then(|e| e.0.as_deref()),
        Some("message_start")
    );
    assert_eq!(
        events.last().and_then(|e| e.0.as_deref()),
        Some("message_stop")
    );
    assert_eq!(first["content"][0]["text"], "anthropic cache");
    assert_eq!(up.request_count(), 1);
}
