//! The in-process index of the semantic cache: per partition, an HNSW graph (`hnsw_rs`) over
//! unit vectors, each entry naming the exact-cache key of its stored answer and when it expires.
//!
//! - **Reads** (`lookup`) take a shard's read lock just long enough to clone the partition's
//!   `Arc<Graph>`, then search it without any lock of ours (the crate's graph takes concurrent
//!   searches and inserts); the entries' metadata sits behind a per-graph `RwLock` that writers
//!   hold for microseconds. Reads never block each other.
//! - **Writes** are applied by one writer (a dedicated thread fed by a bounded queue, so that a
//!   request task never spends an insert's milliseconds of CPU on the runtime): insert, evict
//!   oldest-first past `max_entries`, drop expired entries, compact.
//! - **Deletion**: the crate cannot delete, so an evicted or expired entry is a tombstone (never
//!   matched) until its partition is compacted: rebuilt from its live entries, off the read path,
//!   once it holds more tombstones than live entries, then swapped in whole. A partition whose
//!   last entry goes is dropped.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use hnsw_rs::hnsw::Hnsw;

use super::shared::Stream;
use super::vector::{QuantizedDot, normalize, quantize, similarity};
use crate::cache::Key;
use crate::clock::unix_ms;
use crate::state::Redis;

/// Which entries may match each other: a hash of everything in a request but its last user
/// message's text (see [`super::request`]).
pub type PartitionKey = [u8; 32];

/// Links per node and layer (the layer-0 graph has twice as many).
const CONNECTIONS: usize = 16;
/// Candidates weighed while inserting (recall of the graph against build cost).
const EF_CONSTRUCTION: usize = 64;
/// Candidates weighed while searching, by default (recall against look-up time).
pub const EF_SEARCH: usize = 64;
/// Nearest entries fetched per look-up; the best live one among them is the answer.
const CANDIDATES: usize = 8;
const MAX_LAYERS: usize = 16;
/// Largest vector accepted (OpenAI's largest embedding has 3072 dimensions).
pub const MAX_DIMENSIONS: usize = 16_384;
/// Inserts waiting for the writer; past this they are dropped (a missed cache fill).
const QUEUE: usize = 4096;
/// A partition is compacted once it holds more tombstones than live entries, and at least this
/// many.
const COMPACT_MIN_DEAD: usize = 8;
/// How often the writer drops expired entries when no insert comes.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SHARDS: usize = 16;

/// Sizing of the index.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Live entries at most; past it the oldest is evicted.
    pub max_entries: usize,
}

/// A stored entry that matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The exact-cache key of the stored answer.
    pub exact_key: Key,
    /// Cosine similarity of the request's vector to the entry's, in `[-1, 1]`.
    pub similarity: f32,
}

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub partition: PartitionKey,
    /// The embedding of the last user message (normalised on insert).
    pub vector: Vec<f32>,
    pub exact_key: Key,
    /// Unix milliseconds after which it never matches.
    pub expires_ms: u64,
}

/// Counters for tests, the bench and the admin view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub partitions: usize,
    /// Inserts dropped because the writer's queue was full.
    pub dropped: u64,
    /// Inserts refused: bad vector (empty, too long, not finite) or already expired.
    pub rejected: u64,
    /// Inserts applied (this replica's and those read from other replicas).
    pub applied: u64,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    exact_key: Key,
    expires_ms: u64,
    seq: u64,
    live: bool,
}

/// One partition's graph over 8-bit quantised vectors (see `vector::quantize`). Node ids
/// (`DataId`) index `meta`.
struct Graph {
    dim: usize,
    hnsw: Hnsw<'static, i8, QuantizedDot>,
    meta: RwLock<Vec<Meta>>,
}

impl Graph {
    fn new(dim: usize, capacity: usize) -> Self {
        Self {
            dim,
            hnsw: Hnsw::new(
                CONNECTIONS,
                capacity.max(16),
                MAX_LAYERS,
                EF_CONSTRUCTION,
                QuantizedDot,
            ),
            meta: RwLock::new(Vec::with_capacity(capacity)),
        }
    }

    /// Add a quantised vector; its node id, or `None` if the graph failed (its partition is
    /// then dropped by the caller).
    fn add(&self, vector: &[i8], meta: Meta) -> Option<usize> {
        let id = {
            let mut m = self.meta.write().unwrap_or_else(PoisonError::into_inner);
            m.push(meta);
            m.len() - 1
        };
        catch_unwind(AssertUnwindSafe(|| self.hnsw.insert_slice((vector, id)))).ok()?;
        Some(id)
    }

    fn search(&self, query: &[i8], threshold: f32, ef: usize, now_ms: u64) -> Option<Match> {
        let hits = catch_unwind(AssertUnwindSafe(|| {
            self.hnsw.search(query, CANDIDATES, ef.max(CANDIDATES))
        }))
        .ok()?;
        let meta = self.meta.read().unwrap_or_else(PoisonError::into_inner);
        // Nearest first: the first live entry is the best match there is.
        let (m, distance) = hits.iter().find_map(|h| {
            meta.get(h.d_id)
                .filter(|m| m.live && m.expires_ms > now_ms)
                .map(|m| (m, h.distance))
        })?;
        let similarity = similarity(distance);
        (similarity >= threshold).then_some(Match {
            exact_key: m.exact_key,
            similarity,
        })
    }
}

type Shard = RwLock<HashMap<PartitionKey, Arc<Graph>>>;

/// What readers see.
struct Shared {
    shards: [Shard; SHARDS],
    entries: AtomicUsize,
    dropped: AtomicU64,
    rejected: AtomicU64,
    applied: AtomicU64,
    ef_search: AtomicUsize,
}

impl Shared {
    fn shard(&self, p: &PartitionKey) -> &Shard {
        &self.shards[usize::from(p[0]) % SHARDS]
    }

    fn publish(&self, p: PartitionKey, g: Arc<Graph>) {
        self.shard(&p)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(p, g);
    }

    fn unpublish(&self, p: &PartitionKey) {
        self.shard(p)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(p);
    }
}

/// The writer's view of a partition.
struct Part {
    graph: Arc<Graph>,
    /// Live entries: sequence number -> node id.
    by_seq: HashMap<u64, usize>,
    /// Live entries: exact key -> sequence number (one entry per stored answer).
    by_key: HashMap<Key, u64>,
    dead: usize,
}

/// All mutation, in one place (see the module doc).
struct Writer {
    shared: Arc<Shared>,
    max_entries: usize,
    parts: HashMap<PartitionKey, Part>,
    /// Every entry in insertion order: evicted from the front. Records of entries already gone
    /// (replaced, compacted away) are skipped when they come up.
    order: VecDeque<(PartitionKey, u64, u64)>,
    live: usize,
    next_seq: u64,
}

impl Writer {
    fn insert(&mut self, mut e: NewEntry, now_ms: u64) {
        self.sweep(now_ms);
        let dim = e.vector.len();
        if dim == 0 || dim > MAX_DIMENSIONS || e.expires_ms <= now_ms || !normalize(&mut e.vector) {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Another embedding size in this partition (the embedding model changed): start over.
        if self
            .parts
            .get(&e.partition)
            .is_some_and(|p| p.graph.dim != dim)
        {
            self.drop_partition(&e.partition);
        }
        // The same answer again (another replica's insert, a refresh): the newer one stays.
        if let Some(seq) = self
            .parts
            .get(&e.partition)
            .and_then(|p| p.by_key.get(&e.exact_key).copied())
        {
            self.tombstone(&e.partition, seq, now_ms);
        }
        while self.live >= self.max_entries.max(1) {
            let Some((p, seq, _)) = self.order.pop_front() else {
                break;
            };
            self.tombstone(&p, seq, now_ms);
        }
        let part = match self.parts.entry(e.partition) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let graph = Arc::new(Graph::new(dim, 64));
                self.shared.publish(e.partition, graph.clone());
                v.insert(Part {
                    graph,
                    by_seq: HashMap::new(),
                    by_key: HashMap::new(),
                    dead: 0,
                })
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let meta = Meta {
            exact_key: e.exact_key,
            expires_ms: e.expires_ms,
            seq,
            live: true,
        };
        let Some(id) = part.graph.add(&quantize(&e.vector), meta) else {
            self.drop_partition(&e.partition);
            return;
        };
        part.by_seq.insert(seq, id);
        part.by_key.insert(e.exact_key, seq);
        self.order.push_back((e.partition, seq, e.expires_ms));
        self.live += 1;
        self.shared.entries.store(self.live, Ordering::Relaxed);
        self.shared.applied.fetch_add(1, Ordering::Relaxed);
    }

    /// Drop the expired entries at the front of the order.
    fn sweep(&mut self, now_ms: u64) {
        while let Some(&(p, seq, expires)) = self.order.front()
            && expires <= now_ms
        {
            self.order.pop_front();
            self.tombstone(&p, seq, now_ms);
        }
    }

    /// Make an entry unmatchable; drop or compact its partition when that is due.
    fn tombstone(&mut self, p: &PartitionKey, seq: u64, now_ms: u64) {
        let Some(part) = self.parts.get_mut(p) else {
            return;
        };
        let Some(id) = part.by_seq.remove(&seq) else {
            return;
        };
        {
            let mut meta = part
                .graph
                .meta
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = meta.get_mut(id) {
                m.live = false;
                if part.by_key.get(&m.exact_key) == Some(&seq) {
                    part.by_key.remove(&m.exact_key);
                }
            }
        }
        part.dead += 1;
        self.live -= 1;
        self.shared.entries.store(self.live, Ordering::Relaxed);
        if part.by_seq.is_empty() {
            self.drop_partition(p);
        } else if part.dead >= COMPACT_MIN_DEAD && part.dead > part.by_seq.len() {
            self.compact(p, now_ms);
        }
    }

    fn drop_partition(&mut self, p: &PartitionKey) {
        if let Some(part) = self.parts.remove(p) {
            self.live -= part.by_seq.len();
            self.shared.entries.store(self.live, Ordering::Relaxed);
            self.shared.unpublish(p);
        }
    }

    /// Rebuild a partition's graph from its live, unexpired entries and swap it in. Readers use
    /// the old graph meanwhile.
    fn compact(&mut self, p: &PartitionKey, now_ms: u64) {
        let Some(old) = self.parts.get(p).map(|part| part.graph.clone()) else {
            return;
        };
        let Some((fresh, by_seq)) = rebuild(&old, now_ms) else {
            self.drop_partition(p);
            return;
        };
        let Some(part) = self.parts.get_mut(p) else {
            return;
        };
        // Entries that expired since their last look are not in the new graph.
        let gone = part.by_seq.len().saturating_sub(by_seq.len());
        part.by_key.retain(|_, seq| by_seq.contains_key(seq));
        part.by_seq = by_seq;
        part.graph = fresh.clone();
        part.dead = 0;
        self.live -= gone;
        self.shared.entries.store(self.live, Ordering::Relaxed);
        self.shared.publish(*p, fresh);
    }
}

/// A new graph of `old`'s live, unexpired entries and their node ids by sequence number; `None`
/// when there are none or the graph failed.
fn rebuild(old: &Graph, now_ms: u64) -> Option<(Arc<Graph>, HashMap<u64, usize>)> {
    let meta = old.meta.read().unwrap_or_else(PoisonError::into_inner);
    let keep = meta
        .iter()
        .filter(|m| m.live && m.expires_ms > now_ms)
        .count();
    if keep == 0 {
        return None;
    }
    let fresh = Arc::new(Graph::new(old.dim, keep * 2));
    let mut by_seq = HashMap::with_capacity(keep);
    for point in old.hnsw.get_point_indexation() {
        let Some(m) = meta.get(point.get_origin_id()) else {
            continue;
        };
        if m.live && m.expires_ms > now_ms {
            by_seq.insert(m.seq, fresh.add(point.get_v(), *m)?);
        }
    }
    Some((fresh, by_seq))
}

enum Op {
    Insert(NewEntry),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The semantic cache's index. Cheap to share (`Arc`); dropping the last handle stops its writer
/// thread.
pub struct Index {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Writer>>,
    tx: SyncSender<Op>,
    /// The Redis stream shared with other replicas, when there is one.
    stream: Option<Arc<Stream>>,
}

impl Index {
    /// An index of this process only.
    pub fn new(opts: Options) -> Self {
        let shared = Arc::new(Shared {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            entries: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            ef_search: AtomicUsize::new(EF_SEARCH),
        });
        let writer = Arc::new(Mutex::new(Writer {
            shared: shared.clone(),
            max_entries: opts.max_entries,
            parts: HashMap::new(),
            order: VecDeque::new(),
            live: 0,
            next_seq: 0,
        }));
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let w = writer.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("semantic-index".into())
            .spawn(move || write_loop(&w, &rx))
        {
            // Without its thread the index still answers; queued inserts are never applied.
            tracing::error!(error = %e, "semantic cache: cannot start the index writer");
        }
        Self {
            shared,
            writer,
            tx,
            stream: None,
        }
    }

    /// An index shared with the other replicas through Redis (see `shared.rs`): its inserts are
    /// published, theirs read into it by a task that ends when the index is dropped. Call
    /// within a tokio runtime.
    pub fn with_redis(opts: Options, redis: Arc<Redis>) -> Arc<Self> {
        let stream = Arc::new(Stream::new(redis, opts.max_entries));
        let index = Arc::new(Self {
            stream: Some(stream.clone()),
            ..Self::new(opts)
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            crate::tasks::service_on(&rt, stream.tail(Arc::downgrade(&index)));
        }
        index
    }

    /// The best live entry of `partition` whose similarity to `vector` is at least `threshold`.
    /// CPU only (no await), well under a millisecond at 100,000 entries (`benches/semantic.rs`).
    pub fn lookup(
        &self,
        partition: &PartitionKey,
        vector: &[f32],
        threshold: f32,
    ) -> Option<Match> {
        self.lookup_at(partition, vector, threshold, unix_ms())
    }

    /// [`Index::lookup`] as of `now_ms` (tests).
    pub fn lookup_at(
        &self,
        partition: &PartitionKey,
        vector: &[f32],
        threshold: f32,
        now_ms: u64,
    ) -> Option<Match> {
        let graph = self
            .shared
            .shard(partition)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(partition)
            .cloned()?;
        if graph.dim != vector.len() {
            return None;
        }
        let mut q = vector.to_vec();
        if !normalize(&mut q) {
            return None;
        }
        let ef = self.shared.ef_search.load(Ordering::Relaxed);
        graph.search(&quantize(&q), threshold, ef, now_ms)
    }

    /// Change how many candidates a look-up weighs ([`EF_SEARCH`] by default; benches).
    pub fn set_ef_search(&self, ef: usize) {
        self.shared.ef_search.store(ef, Ordering::Relaxed);
    }

    /// Queue an insert for the writer (and publish it to the other replicas); `false` when the
    /// queue is full (the insert is dropped and counted). Never blocks.
    pub fn insert(&self, entry: NewEntry) -> bool {
        if let Some(stream) = &self.stream {
            stream.publish(&entry);
        }
        match self.tx.try_send(Op::Insert(entry)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Apply an insert on this thread, now (benches, tests, loading). Blocks for its CPU time.
    pub fn insert_now(&self, entry: NewEntry) {
        self.insert_now_at(entry, unix_ms());
    }

    /// [`Index::insert_now`] as of `now_ms` (tests).
    pub fn insert_now_at(&self, entry: NewEntry, now_ms: u64) {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(entry, now_ms);
    }

    /// Wait until every insert queued before this call is applied.
    pub async fn flush(&self) {
        let (done, applied) = tokio::sync::oneshot::channel();
        let tx = self.tx.clone();
        // `send` waits for room in the queue: off the runtime.
        let sent = tokio::task::spawn_blocking(move || tx.send(Op::Flush(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = applied.await;
        }
    }

    pub fn stats(&self) -> Stats {
        let partitions = self
            .shared
            .shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum();
        Stats {
            entries: self.shared.entries.load(Ordering::Relaxed),
            partitions,
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            applied: self.shared.applied.load(Ordering::Relaxed),
        }
    }
}

fn write_loop(writer: &Mutex<Writer>, rx: &Receiver<Op>) {
    loop {
        let op = match rx.recv_timeout(SWEEP_EVERY) {
            Ok(op) => Some(op),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
        match op {
            Some(Op::Insert(e)) => w.insert(e, unix_ms()),
            Some(Op::Flush(done)) => {
                let _ = done.send(());
            }
            None => w.sweep(unix_ms()),
        }
    }
}

#[cfg(test)]
mod tests;
