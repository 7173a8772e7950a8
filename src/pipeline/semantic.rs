//! The semantic cache on the request path (`docs/cache.md`, "Semantic cache"): on an exact-cache
//! miss the last user message is embedded through the configured embedding model (the gateway's
//! own routing, bounded by [`EMBED_BUDGET`]) and looked up in the index among entries of the
//! same partition; a hit is read from the exact cache under the entry's key. Once an answer is
//! stored in the exact cache, its vector is added to the index.
//!
//! With `cache.semantic.enabled: false` at start there is no index and nothing here runs.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::auth::Caller;
use crate::cache::semantic::{Index, NewEntry, PartitionKey, Shape, prepare};
use crate::cache::{self, Cache, Entry, Policy};
use crate::providers::{CallCtx, Op};
use crate::runtime::Runtime;
use crate::wire::Format;

/// The longest the embedding call may take; past it (or on its failure) the request goes on
/// to the upstream as a miss.
pub const EMBED_BUDGET: Duration = Duration::from_millis(500);

/// A request's place in the index: its partition and the embedding of its last user message.
pub struct Probe {
    partition: PartitionKey,
    vector: Vec<f32>,
}

/// The index for `cache.semantic` (created at start when enabled; shared with the other
/// replicas through Redis when `state.redis_url` is set).
pub fn index(
    cfg: &crate::config::Config,
    redis: Option<&Arc<crate::state::Redis>>,
) -> Option<Arc<Index>> {
    let s = &cfg.cache.semantic;
    if !s.enabled {
        return None;
    }
    let opts = crate::cache::semantic::Options {
        max_entries: usize::try_from(s.max_entries).unwrap_or(usize::MAX),
    };
    Some(match redis {
        Some(r) => Index::with_redis(opts, r.clone()),
        None => Arc::new(Index::new(opts)),
    })
}

/// The request's probe: `None` when it has no user text, or the embedding failed or was slow.
pub async fn probe(
    rt: &Runtime,
    client: Format,
    caller: &Caller,
    body: &[u8],
    deadline: Instant,
    ctx: &CallCtx,
) -> Option<Probe> {
    let cfg = &rt.config.cache.semantic;
    if !cfg.enabled {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let shape = match client {
        Format::OpenAi => Shape::ChatCompletions,
        Format::Anthropic => Shape::Messages,
    };
    let scope = cache::scope(&rt.config.cache, caller.id());
    let prepared = prepare(shape, scope, &cfg.embedding_model, &value)?;
    let until = deadline.min(Instant::now() + EMBED_BUDGET);
    let vector = tokio::time::timeout_at(
        until,
        embed(rt, &cfg.embedding_model, &prepared.text, until, ctx),
    )
    .await;
    match vector {
        Ok(Ok(vector)) => Some(Probe {
            partition: prepared.partition,
            vector,
        }),
        Ok(Err(why)) => {
            tracing::debug!(error = %why, "semantic cache: no embedding; the request goes on as a miss");
            None
        }
        Err(_) => {
            tracing::debug!(
                "semantic cache: the embedding call was slow; the request goes on as a miss"
            );
            None
        }
    }
}

#[derive(Deserialize)]
struct Embeddings {
    data: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    embedding: Vec<f32>,
}

/// One text's embedding from `model`, through the gateway's routing.
async fn embed(
    rt: &Runtime,
    model: &str,
    text: &str,
    deadline: Instant,
    ctx: &CallCtx,
) -> Result<Vec<f32>, String> {
    let input = crate::wire::json_string(text);
    let body = super::side_call(rt, model, Op::Embeddings, &input, deadline, ctx).await?;
    let mut e: Embeddings = serde_json::from_slice(&body)
        .map_err(|_| "the embeddings answer has no float embedding".to_owned())?;
    e.data
        .pop()
        .map(|d| d.embedding)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "the embeddings answer is empty".to_owned())
}

/// The stored answer of the nearest entry at or above `threshold`, and its similarity.
pub async fn lookup(
    cache: &Cache,
    index: &Index,
    probe: &Probe,
    threshold: f32,
    policy: &Policy,
) -> Option<(Arc<Entry>, f32)> {
    if !policy.read {
        return None;
    }
    let found = index.lookup(&probe.partition, &probe.vector, threshold);
    let result = match found {
        Some(m) => cache
            .get_fresh(&m.exact_key, policy)
            .await
            .map(|e| (e, m.similarity)),
        None => None,
    };
    let label = if result.is_some() { "hit" } else { "miss" };
    metrics::counter!(crate::metrics::CACHE, "layer" => "semantic", "result" => label).increment(1);
    result
}

/// The index entry to add once the answer is stored under `exact_key`.
pub fn entry(probe: Probe, exact_key: cache::Key, policy: &Policy) -> Option<NewEntry> {
    policy.write.then(|| NewEntry {
        partition: probe.partition,
        vector: probe.vector,
        exact_key,
        expires_ms: crate::clock::unix_ms()
            .saturating_add(u64::try_from(policy.ttl.as_millis()).unwrap_or(u64::MAX)),
    })
}
