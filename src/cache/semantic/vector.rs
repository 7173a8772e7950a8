//! Vector arithmetic of the semantic cache: unit normalisation, the dot product (cosine
//! similarity of unit vectors) and the distance the ANN index orders by, plus a deterministic
//! bag-of-words embedding for tests, benches and offline demos.

use hnsw_rs::anndists::dist::Distance;

/// Scale `v` to unit length in place. `false` (and `v` untouched) when it has a non-finite
/// component or no length: such a vector can be neither stored nor looked up.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = dot(v, v).sqrt();
    if !norm.is_finite() || norm <= f32::EPSILON {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// The dot product, in 16 independent lanes so that the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `1 - cosine similarity` of two unit vectors, clamped to `[0, 2]`, never NaN (the index
/// crate asserts that distances are non-negative numbers).
#[derive(Debug, Clone, Copy, Default)]
pub struct DotDistance;

impl Distance<f32> for DotDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = 1.0 - dot(a, b);
        if d.is_nan() { 2.0 } else { d.clamp(0.0, 2.0) }
    }
}

/// The similarity a distance stands for.
pub fn similarity(distance: f32) -> f32 {
    (1.0 - distance).clamp(-1.0, 1.0)
}

/// A deterministic "bag of words" embedding: each lower-cased alphanumeric word (stop words
/// aside) hashed into one of `dims` buckets, then normalised. Texts sharing most of their words
/// are similar, unrelated ones are not; word order does not matter. Tests and benches use it as
/// a stand-in for an embedding model (it is no model: synonyms are unrelated to it).
pub fn bag_of_words(text: &str, dims: usize) -> Vec<f32> {
    const STOP: &[&str] = &[
        "a", "an", "the", "is", "are", "was", "of", "to", "in", "on", "for", "and", "or", "me",
        "my", "i", "you", "your", "please", "can", "could", "would", "do", "does", "what", "how",
        "tell", "about", "it", "its", "be", "with",
    ];
    let dims = dims.max(1);
    let mut v = vec![0f32; dims];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let w = word.to_lowercase();
        if STOP.contains(&w.as_str()) {
            continue;
        }
        // FNV-1a: stable across runs and platforms.
        let h = w.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let bucket = usize::try_from(h % dims as u64).unwrap_or(0);
        v[bucket] += 1.0;
    }
    if !normalize(&mut v) {
        // No words: a fixed unit vector, so that the result is always a valid embedding.
        v[0] = 1.0;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paraphrases_are_close_and_unrelated_texts_are_not() {
        let a = bag_of_words("What is the capital of France?", 256);
        let b = bag_of_words("Tell me the capital of France, please", 256);
        let c = bag_of_words("How do I bake sourdough bread at home?", 256);
        assert!(dot(&a, &b) > 0.99, "{}", dot(&a, &b));
        assert!(dot(&a, &c) < 0.3, "{}", dot(&a, &c));
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(bag_of_words("", 8)[0], 1.0);
    }

    #[test]
    fn distance_is_clamped_and_never_nan() {
        let v = bag_of_words("same text", 64);
        assert!(DotDistance.eval(&v, &v) < 1e-6);
        let nan = vec![f32::NAN; 64];
        assert_eq!(DotDistance.eval(&v, &nan), 2.0);
        let mut bad = vec![0.0, f32::INFINITY];
        assert!(!normalize(&mut bad));
        assert!(!normalize(&mut [0.0, 0.0]));
    }

    #[test]
    fn dot_matches_the_naive_sum_with_a_tail() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
