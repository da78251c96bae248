//! How alike a shadow's answer is to the primary's: exact match, token F1 (bag of words) and
//! ROUGE-L (longest common subsequence of words, F-measure). Words are lower-cased runs of
//! letters and digits.

use std::collections::HashMap;

use serde::Serialize;

/// The comparison of two answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Similarity {
    /// The texts are identical after trimming.
    pub exact: bool,
    /// Token-overlap F1, 0 to 1.
    pub token_f1: f64,
    /// ROUGE-L F-measure, 0 to 1.
    pub rouge_l: f64,
    /// Cosine of the two answers' embeddings, when an embedding model is configured.
    pub cosine: Option<f64>,
}

/// The cosine of two vectors (0 when either is all zeros or their lengths differ).
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn f_measure(overlap: f64, a: usize, b: usize) -> f64 {
    if overlap == 0.0 {
        return 0.0;
    }
    let precision = overlap / b as f64;
    let recall = overlap / a as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Compares `primary` with `shadow`.
pub fn compare(primary: &str, shadow: &str) -> Similarity {
    let (a, b) = (words(primary), words(shadow));
    let exact = primary.trim() == shadow.trim();
    if a.is_empty() || b.is_empty() {
        let same = a.is_empty() && b.is_empty();
        let score = if same { 1.0 } else { 0.0 };
        return Similarity {
            exact,
            token_f1: score,
            rouge_l: score,
            cosine: None,
        };
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &a {
        *counts.entry(w).or_default() += 1;
    }
    let mut overlap = 0.0;
    for w in &b {
        if let Some(n) = counts.get_mut(w.as_str())
            && *n > 0
        {
            *n -= 1;
            overlap += 1.0;
        }
    }
    // LCS by dynamic programming over one row (answers are short enough).
    let mut row = vec![0usize; b.len() + 1];
    for x in &a {
        let mut previous = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                previous + 1
            } else {
                above.max(row[j])
            };
            previous = above;
        }
    }
    let lcs = row[b.len()] as f64;
    Similarity {
        exact,
        token_f1: f_measure(overlap, a.len(), b.len()),
        rouge_l: f_measure(lcs, a.len(), b.len()),
        cosine: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_partial_and_disjoint_answers() {
        let same = compare("The capital is Paris.", "The capital is Paris.");
        assert!(same.exact && same.token_f1 == 1.0 && same.rouge_l == 1.0);
        let partial = compare("the cat sat on the mat", "the cat lay on a mat");
        assert!(!partial.exact);
        assert!((partial.token_f1 - 4.0 / 6.0).abs() < 1e-9, "{partial:?}");
        assert!((partial.rouge_l - 4.0 / 6.0).abs() < 1e-9, "{partial:?}");
        let order = compare("a b c d", "d c b a");
        assert_eq!(order.token_f1, 1.0);
        assert!((order.rouge_l - 0.25).abs() < 1e-9);
        assert_eq!(compare("yes", "no").token_f1, 0.0);
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
