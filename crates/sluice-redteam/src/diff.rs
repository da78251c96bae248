//! Two stored red-team runs compared probe by probe (`sluice redteam diff`): which attacks now
//! succeed, which are now resisted, the attack success rate per category on both sides, and
//! the packs whose versions changed between the runs (their probes may differ).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_store::{ResultRecord, Run, RunId, RunKind, Store, StoreError};

/// Why a stored run cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The store failed.
    #[error("the store")]
    Store(#[from] StoreError),
    /// No run has that id.
    #[error("no run `{0}` in the store; see `sluice store runs --kind redteam`")]
    NoSuchRun(String),
    /// The run is not a red-team run.
    #[error("run `{id}` is a {kind} run, not a redteam run")]
    NotRedteam {
        /// The run.
        id: String,
        /// What it is.
        kind: RunKind,
    },
}

/// A stored red-team run and its attempts.
pub async fn stored_run(store: &Store, id: &str) -> Result<(Run, Vec<ResultRecord>), DiffError> {
    let run_id = RunId(id.to_owned());
    let run = store
        .get_run(&run_id)
        .await?
        .ok_or_else(|| DiffError::NoSuchRun(id.to_owned()))?;
    if run.kind != RunKind::Redteam {
        return Err(DiffError::NotRedteam {
            id: id.to_owned(),
            kind: run.kind,
        });
    }
    let results = store.results(&run_id).await?;
    Ok((run, results))
}

/// One probe whose verdict flipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flip {
    /// The attempt's key (probe and strategy chain).
    pub key: String,
    /// Its category.
    pub category: String,
}

/// A category's attack success rate on both sides (absent where a run has no such category).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryRates {
    /// The category.
    pub category: String,
    /// In the baseline.
    pub baseline: Option<f64>,
    /// In the candidate.
    pub candidate: Option<f64>,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDiff {
    /// The baseline run's id.
    pub baseline: String,
    /// The candidate run's id.
    pub candidate: String,
    /// Attacks the baseline resisted that now succeed.
    pub newly_successful: Vec<Flip>,
    /// Attacks that succeeded in the baseline and are now resisted.
    pub newly_resisted: Vec<Flip>,
    /// Attempts only the baseline has.
    pub only_in_baseline: usize,
    /// Attempts only the candidate has.
    pub only_in_candidate: usize,
    /// `NAME OLD → NEW` for each pack whose version changed.
    pub changed_packs: Vec<String>,
    /// Every category of either run, sorted.
    pub categories: Vec<CategoryRates>,
}

/// What a stored attempt's data holds that a comparison reads.
#[derive(Debug, Default, Deserialize)]
struct StoredAttempt {
    #[serde(default = "unknown_category")]
    category: String,
}

fn unknown_category() -> String {
    "?".to_owned()
}

/// What a stored summary holds that a comparison reads.
#[derive(Debug, Default, Deserialize)]
struct StoredSummary {
    #[serde(default)]
    categories: Vec<StoredCategory>,
    /// Pack versions as stored (a version or null), compared as stored.
    #[serde(default)]
    packs: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct StoredCategory {
    category: String,
    success: StoredRate,
}

#[derive(Debug, Deserialize)]
struct StoredRate {
    rate: f64,
}

impl StoredSummary {
    fn of(run: &Run) -> Self {
        Self::deserialize(&run.summary).unwrap_or_default()
    }

    fn rates(&self) -> BTreeMap<String, f64> {
        self.categories
            .iter()
            .map(|c| (c.category.clone(), c.success.rate))
            .collect()
    }
}

/// Compares the candidate run with the baseline run.
pub fn diff(
    (baseline_run, baseline): (&Run, &[ResultRecord]),
    (candidate_run, candidate): (&Run, &[ResultRecord]),
) -> RunDiff {
    let verdicts = |results: &[ResultRecord]| {
        results
            .iter()
            .map(|r| {
                let attempt = StoredAttempt::deserialize(&r.data).unwrap_or_default();
                (r.key.clone(), (r.pass, attempt.category))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let (before, after) = (verdicts(baseline), verdicts(candidate));
    let mut newly_successful = Vec::new();
    let mut newly_resisted = Vec::new();
    for (key, (pass, category)) in &after {
        let flip = || Flip {
            key: key.clone(),
            category: category.clone(),
        };
        match (before.get(key).map(|(p, _)| *p), pass) {
            (Some(Some(true)), Some(false)) => newly_successful.push(flip()),
            (Some(Some(false)), Some(true)) => newly_resisted.push(flip()),
            _ => {}
        }
    }
    let only_in = |a: &BTreeMap<String, _>, b: &BTreeMap<String, _>| {
        a.keys().filter(|k| !b.contains_key(*k)).count()
    };
    let (base_summary, candidate_summary) = (
        StoredSummary::of(baseline_run),
        StoredSummary::of(candidate_run),
    );
    // Runs are comparable probe by probe only on the same pack versions.
    let changed_packs = match (&base_summary.packs, &candidate_summary.packs) {
        (Some(old), Some(new)) => new
            .iter()
            .filter_map(|(name, version)| {
                let old = old.get(name)?;
                (old != version).then(|| format!("{name} {old} → {version}"))
            })
            .collect(),
        _ => Vec::new(),
    };
    let (base_rates, candidate_rates) = (base_summary.rates(), candidate_summary.rates());
    let mut names: Vec<&String> = base_rates.keys().chain(candidate_rates.keys()).collect();
    names.sort();
    names.dedup();
    RunDiff {
        baseline: baseline_run.id.to_string(),
        candidate: candidate_run.id.to_string(),
        only_in_baseline: only_in(&before, &after),
        only_in_candidate: only_in(&after, &before),
        newly_successful,
        newly_resisted,
        changed_packs,
        categories: names
            .into_iter()
            .map(|name| CategoryRates {
                category: name.clone(),
                baseline: base_rates.get(name).copied(),
                candidate: candidate_rates.get(name).copied(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_store::RunStatus;

    use super::*;

    fn run(id: &str, summary: Value) -> Run {
        Run {
            id: RunId(id.to_owned()),
            kind: RunKind::Redteam,
            name: id.to_owned(),
            status: RunStatus::Passed,
            config: Value::Null,
            summary,
            started_at_ms: 0,
            finished_at_ms: Some(1),
        }
    }

    fn attempt(seq: i64, key: &str, pass: bool, category: &str) -> ResultRecord {
        ResultRecord {
            seq,
            key: key.to_owned(),
            pass: Some(pass),
            score: None,
            error: None,
            data: json!({"category": category}),
        }
    }

    #[test]
    fn flips_rates_and_changed_packs_are_found() {
        let base = run(
            "a",
            json!({"categories": [{"category": "jailbreak", "success": {"rate": 0.1}}],
                   "packs": {"core": "1", "extra": null}}),
        );
        let candidate = run(
            "b",
            json!({"categories": [{"category": "leak", "success": {"rate": 0.5}}],
                   "packs": {"core": "2", "extra": null}}),
        );
        let base_results = [
            attempt(0, "p1", true, "jailbreak"),
            attempt(1, "p2", false, "leak"),
            attempt(2, "p3", true, "leak"),
            attempt(3, "gone", true, "leak"),
        ];
        let candidate_results = [
            attempt(0, "p1", false, "jailbreak"),
            attempt(1, "p2", true, "leak"),
            attempt(2, "p3", true, "leak"),
            attempt(3, "new", true, "leak"),
        ];
        let diff = diff((&base, &base_results), (&candidate, &candidate_results));
        assert_eq!(
            diff.newly_successful,
            [Flip {
                key: "p1".into(),
                category: "jailbreak".into()
            }]
        );
        assert_eq!(diff.newly_resisted[0].key, "p2");
        assert_eq!((diff.only_in_baseline, diff.only_in_candidate), (1, 1));
        assert_eq!(diff.changed_packs, [r#"core "1" → "2""#]);
        assert_eq!(
            diff.categories,
            [
                CategoryRates {
                    category: "jailbreak".into(),
                    baseline: Some(0.1),
                    candidate: None
                },
                CategoryRates {
                    category: "leak".into(),
                    baseline: None,
                    candidate: Some(0.5)
                },
            ]
        );
    }

    #[test]
    fn a_summary_of_another_shape_compares_as_empty() {
        let odd = run("a", json!({"categories": "not a list"}));
        let diff = diff((&odd, &[]), (&odd, &[]));
        assert!(diff.categories.is_empty() && diff.changed_packs.is_empty());
    }
}
