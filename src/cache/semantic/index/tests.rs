use super::*;
use crate::cache::semantic::bag_of_words;

/// Test times are hours apart: the writer thread's own sweep (by the real clock, every
/// second) must expire nothing a test has not expired itself.
const H: u64 = 3_600_000;
static NOW: std::sync::LazyLock<u64> = std::sync::LazyLock::new(unix_ms);
const DIMS: usize = 256;

fn entry(p: u8, text: &str, key: u8, expires_ms: u64) -> NewEntry {
    NewEntry {
        partition: [p; 32],
        vector: bag_of_words(text, DIMS),
        exact_key: [key; 32],
        expires_ms,
    }
}

fn find(ix: &Index, p: u8, text: &str, threshold: f32, now: u64) -> Option<Match> {
    ix.lookup_at(&[p; 32], &bag_of_words(text, DIMS), threshold, now)
}

fn index(max_entries: usize) -> Index {
    Index::new(Options { max_entries })
}

#[test]
fn a_paraphrase_hits_at_or_above_the_threshold_and_misses_below() {
    let ix = index(100);
    ix.insert_now_at(
        entry(1, "What is the capital of France?", 7, *NOW + H),
        *NOW,
    );
    ix.insert_now_at(
        entry(1, "How do I bake sourdough bread?", 8, *NOW + H),
        *NOW,
    );
    let hit = find(&ix, 1, "tell me the capital of France", 0.9, *NOW).unwrap();
    assert_eq!(hit.exact_key, [7; 32]);
    assert!(hit.similarity > 0.99, "{}", hit.similarity);
    // Exactly at the threshold is a hit; just above the similarity is a miss.
    let at = find(&ix, 1, "capital France", hit.similarity, *NOW).unwrap();
    assert_eq!(at.exact_key, [7; 32]);
    let partial = find(&ix, 1, "capital of Spain", -1.0, *NOW).unwrap();
    assert!(partial.similarity < 0.9);
    assert_eq!(
        find(&ix, 1, "capital of Spain", partial.similarity + 0.01, *NOW),
        None
    );
    assert_eq!(
        find(&ix, 1, "quantum chromodynamics lecture", 0.5, *NOW),
        None
    );
    assert_eq!(ix.stats().entries, 2);
}

#[test]
fn partitions_never_mix() {
    let ix = index(100);
    ix.insert_now_at(
        entry(1, "What is the capital of France?", 7, *NOW + H),
        *NOW,
    );
    assert!(find(&ix, 1, "capital of France", 0.9, *NOW).is_some());
    assert_eq!(find(&ix, 2, "capital of France", 0.0, *NOW), None);
    ix.insert_now_at(
        entry(2, "What is the capital of France?", 9, *NOW + H),
        *NOW,
    );
    assert_eq!(
        find(&ix, 2, "capital of France", 0.9, *NOW)
            .unwrap()
            .exact_key,
        [9; 32]
    );
    assert_eq!(
        find(&ix, 1, "capital of France", 0.9, *NOW)
            .unwrap()
            .exact_key,
        [7; 32]
    );
    assert_eq!(ix.stats().partitions, 2);
}

#[test]
fn entries_expire() {
    let ix = index(100);
    ix.insert_now_at(entry(1, "capital of France", 7, *NOW + H), *NOW);
    ix.insert_now_at(entry(1, "capital of Italy", 8, *NOW + 5 * H), *NOW);
    assert!(find(&ix, 1, "capital of France", 0.99, *NOW + H - 1).is_some());
    assert_eq!(find(&ix, 1, "capital of France", 0.99, *NOW + H), None);
    // The other entry still answers; an insert after the expiry sweeps the expired one.
    assert!(find(&ix, 1, "capital of Italy", 0.99, *NOW + H).is_some());
    ix.insert_now_at(entry(3, "unrelated", 9, *NOW + 9 * H), *NOW + 2 * H);
    assert_eq!(ix.stats().entries, 2);
    // Already expired: refused.
    ix.insert_now_at(entry(1, "late", 1, *NOW), *NOW);
    assert_eq!(ix.stats().rejected, 1);
    // The last entry of a partition going drops the partition.
    ix.insert_now_at(entry(3, "another", 10, *NOW + 9 * H), *NOW + 6 * H);
    assert_eq!(ix.stats().partitions, 1);
}

#[test]
fn the_oldest_entry_is_evicted_past_max_entries() {
    let ix = index(3);
    for (i, t) in ["alpha one", "beta two", "gamma three", "delta four"]
        .iter()
        .enumerate()
    {
        ix.insert_now_at(entry(1 + (i as u8 % 2), t, i as u8, *NOW + H), *NOW);
    }
    assert_eq!(ix.stats().entries, 3);
    assert_eq!(find(&ix, 1, "alpha one", 0.99, *NOW), None);
    for (p, t) in [(2, "beta two"), (1, "gamma three"), (2, "delta four")] {
        assert!(find(&ix, p, t, 0.99, *NOW).is_some(), "{t}");
    }
}

#[test]
fn bad_vectors_are_refused_and_other_dimensions_never_match() {
    let ix = index(10);
    let mut e = entry(1, "x", 1, *NOW + H);
    e.vector = vec![f32::NAN; 4];
    ix.insert_now_at(e, *NOW);
    let mut e = entry(1, "x", 1, *NOW + H);
    e.vector.clear();
    ix.insert_now_at(e, *NOW);
    assert_eq!(ix.stats().rejected, 2);
    ix.insert_now_at(entry(1, "capital of France", 7, *NOW + H), *NOW);
    assert_eq!(ix.lookup_at(&[1; 32], &[1.0, 0.0], 0.0, *NOW), None);
    assert_eq!(ix.lookup_at(&[1; 32], &vec![0.0; DIMS], 0.0, *NOW), None);
    // A new embedding size replaces the partition.
    let mut e = entry(1, "capital of France", 8, *NOW + H);
    e.vector = bag_of_words("capital of France", 64);
    ix.insert_now_at(e, *NOW);
    assert_eq!(ix.stats().entries, 1);
    let hit = ix.lookup_at(&[1; 32], &bag_of_words("capital of France", 64), 0.99, *NOW);
    assert_eq!(hit.unwrap().exact_key, [8; 32]);
}

#[test]
fn the_same_answer_stored_again_replaces_its_entry() {
    let ix = index(10);
    ix.insert_now_at(entry(1, "capital of France", 7, *NOW + H), *NOW);
    ix.insert_now_at(entry(1, "capital of France", 7, *NOW + 5 * H), *NOW + 10);
    assert_eq!(ix.stats().entries, 1);
    assert!(find(&ix, 1, "capital of France", 0.99, *NOW + 2 * H).is_some());
}

/// Points 0.03 rad apart on an arc: each is its own nearest (quantisation moves them by
/// less than 0.01 rad).
fn on_circle(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIMS];
    let a = i as f32 * 0.03;
    (v[0], v[1]) = (a.cos(), a.sin());
    v
}

#[test]
fn compaction_keeps_every_live_entry_findable() {
    let ix = index(40);
    for i in 0..200usize {
        let mut e = entry(1, "", 0, *NOW + H);
        e.vector = on_circle(i);
        e.exact_key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        ix.insert_now_at(e, *NOW);
    }
    // 160 evictions went through compactions; the newest 40 are there, and only they.
    assert_eq!(ix.stats().entries, 40);
    {
        let w = ix.writer.lock().unwrap();
        let part = w.parts.get(&[1; 32]).unwrap();
        assert!(part.dead <= part.by_seq.len(), "{} dead", part.dead);
        assert!(part.graph.hnsw.get_nb_point() < 100);
    }
    for i in 0..200usize {
        let got = ix.lookup_at(&[1; 32], &on_circle(i), 0.999, *NOW);
        let own = (i as u64).to_le_bytes();
        if i < 160 {
            assert!(got.is_none_or(|m| m.exact_key[..8] != own), "{i}");
        } else {
            let k = got.unwrap_or_else(|| panic!("{i} not found")).exact_key;
            assert_eq!(k[..8], own);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_while_the_writer_inserts() {
    let ix = Arc::new(index(10_000));
    let now = unix_ms();
    ix.insert_now(entry(1, "capital of France", 1, now + 600_000));
    // Readers of the partition being written: an approximate index may miss now and then
    // while its graph changes, but never answers with a wrong entry.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let ix = ix.clone();
            tokio::task::spawn_blocking(move || {
                (0..300)
                    .filter_map(|_| find(&ix, 1, "the capital of France", 0.99, unix_ms()))
                    .all(|m| m.exact_key == [1; 32])
            })
        })
        .collect();
    let topics = [
        "rust", "redis", "bread", "tides", "chess", "opera", "golf", "moss",
    ];
    for i in 0..300u32 {
        let t = topics[i as usize % topics.len()];
        let text = format!("{t} question {i} on {t} with detail {}", i * 31);
        let mut e = entry(1, &text, 2, now + 600_000);
        e.exact_key[..4].copy_from_slice(&i.to_le_bytes());
        assert!(ix.insert(e));
    }
    ix.flush().await;
    for r in readers {
        assert!(r.await.unwrap());
    }
    assert_eq!(ix.stats().entries, 301);
    assert_eq!(ix.stats().dropped, 0);
    let hit = find(&ix, 1, "the capital of France", 0.99, unix_ms()).unwrap();
    assert_eq!(hit.exact_key, [1; 32]);
    for i in (0..300u32).step_by(37) {
        let t = topics[i as usize % topics.len()];
        let text = format!("{t} question {i} on {t} with detail {}", i * 31);
        let hit = find(&ix, 1, &text, 0.99, unix_ms()).unwrap();
        assert_eq!(hit.exact_key[..4], i.to_le_bytes());
    }
}
