//! The semantic cache: its index shared by replicas through a real `redis-server` (each
//! "replica" an index with its own Redis connection, as two gateway processes would have), and
//! the gateway answering paraphrases from it, with an embedding model whose vectors are bags of
//! words (`support::ai::FakeAi`).

use std::sync::Arc;
use std::time::Duration;

use ai_gateway::cache::semantic::{Index, Match, NewEntry, Options, STREAM_KEY, bag_of_words};
use ai_gateway::clock::unix_ms;
use ai_gateway::state::Redis;

use serde_json::{Value, json};

use crate::support::ai::FakeAi;
use crate::support::redis::RedisServer;
use crate::support::{GPT_KEY, GW_KEY, Gateway, chat_body, header, json_of, keys, sse_data};

const DIMS: usize = 256;
const PARTITION: [u8; 32] = [5; 32];

async fn connect(url: &str) -> Arc<Redis> {
    let redis = Redis::new(url).unwrap();
    redis.maintain().await;
    assert!(redis.is_healthy());
    redis
}

fn replica(redis: Arc<Redis>) -> Arc<Index> {
    Index::with_redis(Options { max_entries: 1000 }, redis)
}

fn entry(text: &str, key: u8) -> NewEntry {
    NewEntry {
        partition: PARTITION,
        vector: bag_of_words(text, DIMS),
        exact_key: [key; 32],
        expires_ms: unix_ms() + 600_000,
    }
}

fn find(ix: &Index, text: &str) -> Option<Match> {
    ix.lookup(&PARTITION, &bag_of_words(text, DIMS), 0.9)
}

/// Wait (up to 10 s) until `ix` finds `text`'s entry, and return its key.
async fn found(ix: &Index, text: &str) -> [u8; 32] {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = find(ix, text) {
            return m.exact_key;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{text:?} never reached this replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn replicas_share_entries_through_a_redis_stream() {
    let mut server = RedisServer::start().await;
    let a = replica(connect(&server.url()).await);
    let b = replica(connect(&server.url()).await);

    assert!(a.insert(entry("What is the capital of France?", 1)));
    assert_eq!(found(&b, "tell me the capital of France").await, [1; 32]);
    assert!(b.insert(entry("How do I bake sourdough bread?", 2)));
    assert_eq!(found(&a, "sourdough bread, how to bake").await, [2; 32]);
    assert_eq!(find(&a, "knitting patterns for scarves"), None);

    // Each replica applied its own insert once, and the other's once (from the stream).
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.applied, sa.entries), (2, 2), "{sa:?}");
    assert_eq!((sb.applied, sb.entries), (2, 2), "{sb:?}");

    // The stream holds the vectors as little-endian f32 bytes, and no answers.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(STREAM_KEY)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 2);

    // A replica that starts later loads what the stream holds.
    let c = replica(connect(&server.url()).await);
    assert_eq!(found(&c, "capital of France?").await, [1; 32]);
    assert_eq!(found(&c, "bake sourdough bread").await, [2; 32]);

    // Redis gone: a replica's own index goes on working.
    server.stop();
    let rb = connect_down(&server.url()).await;
    let d = replica(rb);
    assert!(d.insert(entry("Which river flows through Paris?", 3)));
    d.flush().await;
    assert_eq!(
        find(&d, "which river flows through Paris").map(|m| m.exact_key),
        Some([3; 32])
    );
}

/// A connection to a Redis that is down (as the gateway's would be after its ping failed).
async fn connect_down(url: &str) -> Arc<Redis> {
    let redis = Redis::new(url).unwrap();
    redis.maintain().await;
    assert!(!redis.is_healthy());
    redis
}

fn gateway_config(ai: &FakeAi, redis: Option<&str>) -> Value {
    json!({
        "providers": [ai.provider("fake")],
        "models": [
            {"name": "gpt-sem", "deployments": [{"provider": "fake", "model": "up-model"}]},
            {"name": "emb", "deployments": [{"provider": "fake", "model": "embed-up"}]},
        ],
        "auth": keys(),
        "resilience": {"retries": 0},
        "state": {"redis_url": redis},
        "cache": {"enabled": true, "semantic": {"enabled": true, "embedding_model": "emb",
                  "threshold": 0.9}},
    })
}

async fn ask(gw: &Gateway, key: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = gw
        .client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

/// Ask (without storing the answer, so a miss leaves nothing behind) until the answer comes from
/// the semantic cache: inserts reach the index through its writer thread (and another replica's
/// through Redis). Bounded.
async fn semantic_hit(gw: &Gateway, body: &Value) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = ask(gw, GW_KEY, body, &[("x-gateway-cache-ttl", "0")]).await;
        if header(&r, "x-cache-layer") == Some("semantic") {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never a semantic hit: {:?}\n{}",
            r.headers(),
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_paraphrase_hits_and_an_unrelated_question_misses() {
    let ai = FakeAi::start().await;
    let gw = Gateway::start(gateway_config(&ai, None)).await;
    let first = "What is the capital of France?";

    let r = ask(&gw, GW_KEY, &chat_body("gpt-sem", first), &[]).await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    assert_eq!(json_of(r).await["choices"][0]["message"]["content"], first);
    // Only the last user message is embedded, by the embedding model's deployment.
    let e = ai.bodies("/embeddings");
    assert_eq!(e[0]["input"], first);
    assert_eq!(e[0]["model"], "embed-up");

    let r = semantic_hit(
        &gw,
        &chat_body("gpt-sem", "Tell me the capital of France, please"),
    )
    .await;
    assert_eq!(header(&r, "x-cache"), Some("HIT"));
    assert_eq!(header(&r, "x-gateway-attempts"), Some("0"));
    let sim: f32 = header(&r, "x-cache-similarity").unwrap().parse().unwrap();
    assert!((0.9..=1.0).contains(&sim), "{sim}");
    assert_eq!(json_of(r).await["choices"][0]["message"]["content"], first);

    // Streams are replayed from the stored answer.
    let mut body = chat_body("gpt-sem", "the capital of France?");
    body["stream"] = json!(true);
    let r = ask(&gw, GW_KEY, &body, &[]).await;
    assert_eq!(header(&r, "x-cache-layer"), Some("semantic"));
    let datas = sse_data(&r.text().await.unwrap());
    assert_eq!(crate::support::joined_content(&datas), first);

    // An unrelated question, `Cache-Control: no-cache`, another key's scope: misses.
    let before = ai.bodies("/chat/completions").len();
    let r = ask(
        &gw,
        GW_KEY,
        &chat_body("gpt-sem", "How do I bake sourdough bread?"),
        &[],
    )
    .await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    let paraphrase = chat_body("gpt-sem", "capital of France");
    let r = ask(&gw, GW_KEY, &paraphrase, &[("cache-control", "no-cache")]).await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    let r = ask(&gw, GPT_KEY, &paraphrase, &[]).await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    assert_eq!(ai.bodies("/chat/completions").len(), before + 3);

    // A slow embedding model: the request goes on upstream within the budget.
    ai.delay_embeddings(Duration::from_secs(5));
    let r = ask(
        &gw,
        GW_KEY,
        &chat_body("gpt-sem", "France capital city?"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    assert_eq!(
        json_of(r).await["choices"][0]["message"]["content"],
        "France capital city?"
    );
}

#[tokio::test]
async fn a_second_replica_hits_through_redis() {
    let server = RedisServer::start().await;
    let ai = FakeAi::start().await;
    let a = Gateway::start(gateway_config(&ai, Some(&server.url()))).await;
    let b = Gateway::start(gateway_config(&ai, Some(&server.url()))).await;
    let first = "Which river flows through Paris?";
    let r = ask(&a, GW_KEY, &chat_body("gpt-sem", first), &[]).await;
    assert_eq!(header(&r, "x-cache"), Some("MISS"));
    let r = semantic_hit(
        &b,
        &chat_body("gpt-sem", "Tell me which river flows through Paris"),
    )
    .await;
    assert_eq!(json_of(r).await["choices"][0]["message"]["content"], first);
}
