//! The semantic cache's index shared by replicas through a real `redis-server` (the index on its
//! own: the request path uses it from phase 2 on). Each "replica" is an index with its own Redis
//! connection, as two gateway processes would have.

use std::sync::Arc;
use std::time::Duration;

use ai_gateway::cache::semantic::{Index, Match, NewEntry, Options, STREAM_KEY, bag_of_words};
use ai_gateway::clock::unix_ms;
use ai_gateway::state::Redis;

use crate::support::redis::RedisServer;

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
