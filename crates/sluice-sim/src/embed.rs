//! Deterministic embeddings: a signed, hashed bag of lower-cased words, L2-normalized, so that
//! texts sharing words have a high cosine similarity and identical texts have exactly 1.

/// Embeds `text` into `dimensions` floats.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dimensions.max(1)];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let hash = fnv1a(word.to_lowercase().as_bytes());
        let index = (hash % vector.len() as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[index] += sign;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let a = embed("The capital of France is Paris", 256);
        let b = embed("Paris is the capital of France!", 256);
        let c = embed("Quantum chromodynamics lattice gauge", 256);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert!(cosine(&a, &b) > 0.95);
        assert!(cosine(&a, &c) < 0.5);
        assert_eq!(embed("", 8), vec![0.0; 8]);
    }
}
