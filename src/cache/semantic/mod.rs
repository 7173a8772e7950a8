//! The semantic cache's index: a request that misses the exact cache can be answered by a stored
//! answer to a request of the same partition (everything but the last user message's text, see
//! `request.rs`) whose last user message means nearly the same (cosine similarity of their
//! embeddings at or above a threshold).
//!
//! - `request.rs`: the text to embed and the partition key, for OpenAI chat, Anthropic messages
//!   and Responses bodies.
//! - `index.rs`: the in-process approximate-nearest-neighbour index (HNSW per partition, bounded,
//!   TTL, oldest-first eviction, one writer thread, lock-free reads of the graphs).
//! - `shared.rs`: sharing the index between replicas through a capped Redis stream.
//! - `vector.rs`: normalisation, dot product, the bag-of-words test embedding.
//!
//! The index stores no answers: each entry names the exact-cache key of its answer, which lives
//! in the exact cache (L1/L2).

mod index;
mod request;
mod shared;
mod vector;

pub use index::{EF_SEARCH, Index, MAX_DIMENSIONS, Match, NewEntry, Options, PartitionKey, Stats};
pub use request::{Prepared, Shape, prepare};
pub use shared::STREAM_KEY;
pub use vector::{bag_of_words, dot, normalize};

use std::sync::Arc;

use super::{Cache, Entry, Key, Policy, fresh};

impl Cache {
    /// The stored answer under `key` if it is fresh for `policy` (L1, then L2, copied into L1
    /// on a hit); no single flight (a semantic match reads an answer stored earlier).
    pub async fn get_fresh(&self, key: &Key, policy: &Policy) -> Option<Arc<Entry>> {
        if let Some(e) = self.l1.get(key).await
            && fresh(&e, policy)
        {
            return Some(e);
        }
        let e = Arc::new(self.l2_get(key).await.filter(|e| fresh(e, policy))?);
        self.l1.insert(*key, e.clone()).await;
        Some(e)
    }
}
