//! Embedding drift of prompts: what users ask about, beyond how long they ask. Up to
//! [`SAMPLES`] prompts of each window (evenly spread) are embedded through the embeddings
//! endpoint the server was started with, and the two clouds are compared two ways: the cosine
//! distance between their centroids, judged by a permutation test (the windows' labels
//! shuffled [`PERMUTATIONS`] times, so that the chance of calling unchanged traffic drifted is
//! [`ALPHA`] whatever the embedding's geometry), and the Jensen-Shannon divergence of their
//! shares of the reference's clusters (k-means), which says where the mass moved.

use serde::Serialize;
use sluice_core::stats::jensen_shannon;

/// Prompts embedded from each window, at most.
pub const SAMPLES: usize = 200;
/// Prompts needed in each window for a verdict.
pub const MIN_SAMPLES: usize = 50;
/// Label shuffles in the permutation test.
pub const PERMUTATIONS: usize = 500;
/// The permutation test's false-alarm rate.
pub const ALPHA: f64 = 0.01;
/// Clusters of the reference, at most.
const CLUSTERS: usize = 8;

/// Where prompts are embedded.
#[derive(Debug, Clone)]
pub struct EmbeddingSource {
    /// The embeddings endpoint's client.
    pub client: sluice_llm::Client,
    /// The model asked for.
    pub model: String,
}

/// The embedding drift of one version's prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingDrift {
    /// Prompts embedded from the reference and the current window.
    pub samples: (usize, usize),
    /// `1 − cos` of the two windows' mean embeddings.
    pub centroid_distance: Option<f64>,
    /// The permutation test's p-value for that distance.
    pub p_value: Option<f64>,
    /// Jensen-Shannon divergence of the windows' shares of the reference's clusters.
    pub cluster_js: Option<f64>,
    /// `alert` (p-value under [`ALPHA`]), `ok`, or `insufficient`.
    pub verdict: &'static str,
}

/// The user's text in a logged request body (chat messages' contents, or a completion's
/// prompt); the whole text when it is not such a body.
pub fn prompt_text(request: &str) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(request) else {
        return request.to_owned();
    };
    if let Some(messages) = value["messages"].as_array() {
        return messages
            .iter()
            .filter(|m| m["role"] == "user")
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
    }
    match &value["prompt"] {
        serde_json::Value::String(prompt) => prompt.clone(),
        _ => request.to_owned(),
    }
}

/// `n` of `items`, evenly spread (all of them when there are no more).
pub fn spread<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// Embeds `texts` through `source`, 64 at a time.
pub async fn embed(source: &EmbeddingSource, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(64) {
        let request = sluice_llm::types::EmbeddingRequest {
            model: source.model.clone(),
            input: sluice_llm::types::OneOrMany::Many(batch.to_vec()),
            extra: serde_json::Map::new(),
        };
        let (response, _) = source
            .client
            .embeddings(&request)
            .await
            .map_err(|e| format!("the embeddings endpoint failed: {e}"))?;
        if response.data.len() != batch.len() {
            return Err(format!(
                "the embeddings endpoint answered {} vectors for {} inputs",
                response.data.len(),
                batch.len()
            ));
        }
        vectors.extend(response.data.into_iter().map(|d| d.embedding));
    }
    Ok(vectors)
}

fn mean(vectors: &[&Vec<f32>]) -> Vec<f64> {
    let dims = vectors.first().map_or(0, |v| v.len());
    let mut sum = vec![0.0; dims];
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v.iter()) {
            *s += f64::from(*x);
        }
    }
    let n = vectors.len().max(1) as f64;
    sum.iter().map(|s| s / n).collect()
}

fn cosine_distance(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        1.0 - dot / denominator
    }
}

fn squared_distance(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, c)| (f64::from(*x) - c).powi(2))
        .sum()
}

/// The index of the centroid nearest `v`.
fn nearest(v: &[f32], centroids: &[Vec<f64>]) -> usize {
    centroids
        .iter()
        .enumerate()
        .map(|(i, c)| (i, squared_distance(v, c)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i)
}

/// K-means of `points` (k-means++ start from `rng`, 20 rounds at most).
fn kmeans(points: &[Vec<f32>], k: usize, rng: &mut fastrand::Rng) -> Vec<Vec<f64>> {
    let as_f64 = |v: &Vec<f32>| v.iter().map(|x| f64::from(*x)).collect::<Vec<f64>>();
    let mut centroids = vec![as_f64(&points[rng.usize(..points.len())])];
    while centroids.len() < k {
        let weights: Vec<f64> = points
            .iter()
            .map(|p| squared_distance(p, &centroids[nearest(p, &centroids)]))
            .collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            break;
        }
        let mut pick = rng.f64() * total;
        let index = weights
            .iter()
            .position(|w| {
                pick -= w;
                pick <= 0.0
            })
            .unwrap_or(points.len() - 1);
        centroids.push(as_f64(&points[index]));
    }
    for _ in 0..20 {
        let mut sums = vec![vec![0.0; centroids[0].len()]; centroids.len()];
        let mut counts = vec![0usize; centroids.len()];
        for p in points {
            let c = nearest(p, &centroids);
            counts[c] += 1;
            for (s, x) in sums[c].iter_mut().zip(p) {
                *s += f64::from(*x);
            }
        }
        let next: Vec<Vec<f64>> = sums
            .into_iter()
            .zip(&counts)
            .zip(&centroids)
            .map(|((sum, n), old)| {
                if *n == 0 {
                    old.clone()
                } else {
                    sum.iter().map(|s| s / *n as f64).collect()
                }
            })
            .collect();
        if next == centroids {
            break;
        }
        centroids = next;
    }
    centroids
}

/// Compares two windows' prompt embeddings (the same dimensions); `seed` makes the
/// permutations and clusters repeatable.
pub fn compare(reference: &[Vec<f32>], current: &[Vec<f32>], seed: u64) -> EmbeddingDrift {
    let samples = (reference.len(), current.len());
    if reference.len() < MIN_SAMPLES || current.len() < MIN_SAMPLES {
        return EmbeddingDrift {
            samples,
            centroid_distance: None,
            p_value: None,
            cluster_js: None,
            verdict: "insufficient",
        };
    }
    let statistic = |a: &[&Vec<f32>], b: &[&Vec<f32>]| cosine_distance(&mean(a), &mean(b));
    let pooled: Vec<&Vec<f32>> = reference.iter().chain(current).collect();
    let observed = statistic(&pooled[..reference.len()], &pooled[reference.len()..]);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut shuffled = pooled.clone();
    let mut as_large = 0usize;
    for _ in 0..PERMUTATIONS {
        rng.shuffle(&mut shuffled);
        let (a, b) = shuffled.split_at(reference.len());
        if statistic(a, b) >= observed {
            as_large += 1;
        }
    }
    let p_value = (1 + as_large) as f64 / (1 + PERMUTATIONS) as f64;
    let k = CLUSTERS.min(reference.len() / 10).max(2);
    let centroids = kmeans(reference, k, &mut rng);
    let counts = |vectors: &[Vec<f32>]| -> Vec<u64> {
        let mut counts = vec![0u64; centroids.len()];
        for v in vectors {
            counts[nearest(v, &centroids)] += 1;
        }
        counts
    };
    EmbeddingDrift {
        samples,
        centroid_distance: Some(observed),
        p_value: Some(p_value),
        cluster_js: jensen_shannon(&counts(reference), &counts(current)),
        verdict: if p_value < ALPHA { "alert" } else { "ok" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` unit vectors around `center` with some noise.
    fn cloud(center: &[f32], n: usize, rng: &mut fastrand::Rng) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                let v: Vec<f32> = center.iter().map(|c| c + (rng.f32() - 0.5) * 1.5).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    /// Seeded: unchanged prompts are called drifted at about the test's α, and prompts
    /// about another subject almost always.
    #[test]
    fn false_alarms_stay_near_alpha_and_a_topic_shift_is_found() {
        let mut rng = fastrand::Rng::with_seed(11);
        let topic: Vec<f32> = (0..16).map(|i| if i < 4 { 1.0 } else { 0.0 }).collect();
        let other: Vec<f32> = (0..16)
            .map(|i| if (4..8).contains(&i) { 1.0 } else { 0.0 })
            .collect();
        let mixed: Vec<f32> = topic
            .iter()
            .zip(&other)
            .map(|(a, b)| 0.8 * a + 0.2 * b)
            .collect();
        let trials = 60;
        let (mut false_alarms, mut found) = (0, 0);
        for trial in 0..trials {
            let reference = cloud(&topic, 100, &mut rng);
            let same = cloud(&topic, 100, &mut rng);
            let shifted = cloud(&mixed, 100, &mut rng);
            if compare(&reference, &same, trial).verdict == "alert" {
                false_alarms += 1;
            }
            if compare(&reference, &shifted, trial).verdict == "alert" {
                found += 1;
            }
        }
        eprintln!("false alarms {false_alarms}/{trials}, shifts found {found}/{trials}");
        // α = 1 %: 0.6 expected in 60; 4 would happen by chance once in several hundred runs.
        assert!(false_alarms <= 3, "{false_alarms} false alarms in {trials}");
        assert!(found >= trials * 9 / 10, "found {found} of {trials} shifts");
        let reference = cloud(&topic, 100, &mut rng);
        let moved = compare(&reference, &cloud(&other, 100, &mut rng), 1);
        assert!(moved.cluster_js.unwrap() > 0.1, "{moved:?}");
        assert_eq!(
            compare(&reference[..10], &reference, 1).verdict,
            "insufficient"
        );
    }

    #[test]
    fn prompts_are_read_from_logged_bodies() {
        assert_eq!(
            prompt_text(
                r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"capital of France?"}]}"#
            ),
            "capital of France?"
        );
        assert_eq!(
            prompt_text(r#"{"model":"m","prompt":"Once upon"}"#),
            "Once upon"
        );
        assert_eq!(prompt_text("not json"), "not json");
        assert_eq!(spread(&[1, 2, 3, 4, 5, 6], 3), [1, 3, 5]);
    }
}
