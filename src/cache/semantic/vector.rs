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

/// A unit vector in 8 bits a component: a scale (as the four little-endian bytes of an f32)
/// followed by each component / (largest magnitude / 127), rounded. The scale is the inverse of
/// the rounded components' length, so that a quantised vector has unit length too and is most
/// similar to itself. A quarter of the memory of f32 and of the bytes a look-up reads; the dot
/// product of two quantised vectors is within about 0.002 of the exact one.
pub fn quantize(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let step = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut out = vec![0i8; 4];
    out.extend(
        v.iter()
            .map(|x| (x / step).round().clamp(-127.0, 127.0) as i8),
    );
    let len = (dot_i8(&out[4..], &out[4..]) as f32).sqrt();
    let scale = if len > 0.0 { 1.0 / len } else { 0.0 };
    out[..4].copy_from_slice(&scale.to_le_bytes().map(|b| b as i8));
    out
}

fn scale(q: &[i8]) -> f32 {
    match q {
        [a, b, c, d, ..] => f32::from_le_bytes([*a as u8, *b as u8, *c as u8, *d as u8]),
        _ => 0.0,
    }
}

/// The dot product of two quantised vectors' components, in 16 independent i32 lanes (the
/// compiler vectorises it; no overflow below 130,000 dimensions).
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 16;
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// `1 - cosine similarity` of two [`quantize`]d unit vectors, clamped to `[0, 2]` and never NaN
/// (the index crate asserts that distances are non-negative numbers); 2.0, the farthest, for
/// malformed ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuantizedDot;

impl Distance<i8> for QuantizedDot {
    fn eval(&self, a: &[i8], b: &[i8]) -> f32 {
        if a.len() != b.len() || a.len() < 4 {
            return 2.0;
        }
        let d = 1.0 - dot_i8(&a[4..], &b[4..]) as f32 * scale(a) * scale(b);
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
        let v = quantize(&bag_of_words("same text", 64));
        assert!(QuantizedDot.eval(&v, &v) < 1e-3);
        let mut opposite = v.clone();
        opposite[4..].iter_mut().for_each(|x| *x = -*x);
        assert_eq!(QuantizedDot.eval(&v, &opposite), 2.0);
        let mut nan = v.clone();
        nan[..4].copy_from_slice(&f32::NAN.to_le_bytes().map(|b| b as i8));
        assert_eq!(QuantizedDot.eval(&v, &nan), 2.0);
        let mut bad = vec![0.0, f32::INFINITY];
        assert!(!normalize(&mut bad));
        assert!(!normalize(&mut [0.0, 0.0]));
    }

    #[test]
    fn quantised_similarity_is_close_to_the_exact_one() {
        for (x, y) in [
            (
                "What is the capital of France?",
                "Tell me the capital of France",
            ),
            ("capital of France", "capital of Spain"),
            ("bake bread at home", "the capital of France"),
        ] {
            for dims in [64, 384, 1536] {
                let (a, b) = (bag_of_words(x, dims), bag_of_words(y, dims));
                let exact = dot(&a, &b);
                let q = 1.0 - QuantizedDot.eval(&quantize(&a), &quantize(&b));
                assert!(
                    (exact - q).abs() < 0.005,
                    "{x} / {y} @ {dims}: {exact} vs {q}"
                );
            }
        }
        assert_eq!(QuantizedDot.eval(&[1, 2], &[1, 2]), 2.0);
        assert_eq!(quantize(&[0.0, 0.0]).len(), 6);
    }

    #[test]
    fn dot_matches_the_naive_sum_with_a_tail() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
