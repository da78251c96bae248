//! Regression against a baseline: pair the two runs' results by key (test × prompt ×
//! provider) and decide whether the candidate is *significantly* worse, not merely different.
//!
//! With one graded result per key on both sides the test is an exact one-sided McNemar test on
//! the discordant pairs (baseline passed and candidate failed, versus the reverse). With
//! repeats, per-key pass fractions are compared by a paired bootstrap of their mean difference.
//! A relative drop beyond a tolerance may narrow that test (fail only when both say worse); it
//! never fails a run on its own, since alone it fails a third to 40 % of pure-noise pairs.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_core::stats::{mcnemar_one_sided, paired_bootstrap_p};

/// One side's results for a key: passes out of graded results, and a label for reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyResult {
    /// Passing results.
    pub passed: u64,
    /// Graded results (errors excluded).
    pub graded: u64,
    /// A description for reports.
    pub description: String,
}

impl KeyResult {
    fn rate(&self) -> f64 {
        if self.graded == 0 {
            0.0
        } else {
            self.passed as f64 / self.graded as f64
        }
    }
}

/// Which test decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Exact McNemar on discordant pairs.
    Mcnemar,
    /// Paired bootstrap of per-key pass fractions.
    PairedBootstrap,
}

/// A key whose verdict changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flip {
    /// The key.
    pub key: String,
    /// Its description.
    pub description: String,
    /// Baseline pass fraction.
    pub baseline: f64,
    /// Candidate pass fraction.
    pub candidate: f64,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The test used.
    pub method: Method,
    /// Keys present in both runs.
    pub paired: usize,
    /// Keys only in the candidate (not compared).
    pub only_candidate: usize,
    /// Keys only in the baseline (not compared).
    pub only_baseline: usize,
    /// Baseline pass rate over paired keys.
    pub baseline_rate: f64,
    /// Candidate pass rate over paired keys.
    pub candidate_rate: f64,
    /// Baseline passed, candidate failed (McNemar) — or keys that got worse.
    pub worse: usize,
    /// Baseline failed, candidate passed — or keys that got better.
    pub better: usize,
    /// One-sided p-value for "the candidate is worse".
    pub p_value: f64,
    /// The significance level used (1 − confidence).
    pub alpha: f64,
    /// Significantly worse.
    pub significantly_worse: bool,
    /// The relative drop, `(baseline − candidate) / baseline`.
    pub relative_drop: f64,
    /// The tolerance rule's limit, when asked for.
    pub tolerance: Option<f64>,
    /// The tolerance rule's verdict.
    pub beyond_tolerance: bool,
    /// Keys that went from passing to failing.
    pub regressions: Vec<Flip>,
    /// Keys that went from failing to passing.
    pub fixes: Vec<Flip>,
}

impl Comparison {
    /// Whether the comparison fails the gate: significantly worse and, when a tolerance is
    /// set, also beyond it (see [`regressed`]).
    pub fn fails(&self) -> bool {
        regressed(
            self.significantly_worse,
            self.tolerance.is_some(),
            self.beyond_tolerance,
        )
    }

    /// Why it fails, in words (nothing when it does not).
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.fails() {
            return reasons;
        }
        if self.significantly_worse {
            reasons.push(format!(
                "significantly worse than the baseline: pass rate {:.1}% vs {:.1}% over {} paired results ({} worse, {} better; {} p = {:.4} < {:.2})",
                self.candidate_rate * 100.0,
                self.baseline_rate * 100.0,
                self.paired,
                self.worse,
                self.better,
                match self.method {
                    Method::Mcnemar => "exact McNemar",
                    Method::PairedBootstrap => "paired bootstrap",
                },
                self.p_value,
                self.alpha
            ));
        }
        if self.beyond_tolerance {
            reasons.push(format!(
                "pass rate dropped {:.1}% relative to the baseline (tolerance {:.1}%)",
                self.relative_drop * 100.0,
                self.tolerance.unwrap_or_default() * 100.0
            ));
        }
        reasons
    }
}

/// A comparison with a baseline of either kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Regression {
    /// Results paired by key with a run or a report.
    Paired(Comparison),
    /// Aggregates compared with an lm-evaluation-harness results file.
    Aggregate(crate::lm_eval::AggregateComparison),
}

impl Regression {
    /// Whether the comparison fails the gate.
    pub fn fails(&self) -> bool {
        match self {
            Regression::Paired(c) => c.fails(),
            Regression::Aggregate(c) => c.fails(),
        }
    }

    /// Why it fails, in words.
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Regression::Paired(c) => c.reasons(),
            Regression::Aggregate(c) => c.reasons(),
        }
    }
}

/// Compares `candidate` with `baseline` at `confidence` (e.g. 0.95), optionally also applying
/// the relative-drop `tolerance` rule.
pub fn compare(
    baseline: &BTreeMap<String, KeyResult>,
    candidate: &BTreeMap<String, KeyResult>,
    confidence: f64,
    tolerance: Option<f64>,
) -> Comparison {
    let alpha = 1.0 - confidence;
    let pairs: Vec<(&String, &KeyResult, &KeyResult)> = candidate
        .iter()
        .filter_map(|(key, c)| baseline.get(key).map(|b| (key, b, c)))
        .filter(|(_, b, c)| b.graded > 0 && c.graded > 0)
        .collect();
    let only_candidate = candidate
        .keys()
        .filter(|k| !baseline.contains_key(*k))
        .count();
    let only_baseline = baseline
        .keys()
        .filter(|k| !candidate.contains_key(*k))
        .count();
    let mean = |f: &dyn Fn(&KeyResult) -> f64, side: usize| -> f64 {
        if pairs.is_empty() {
            return 0.0;
        }
        pairs
            .iter()
            .map(|(_, b, c)| f(if side == 0 { b } else { c }))
            .sum::<f64>()
            / pairs.len() as f64
    };
    let baseline_rate = mean(&KeyResult::rate, 0);
    let candidate_rate = mean(&KeyResult::rate, 1);
    let binary = pairs.iter().all(|(_, b, c)| b.graded == 1 && c.graded == 1);
    let diffs: Vec<f64> = pairs.iter().map(|(_, b, c)| c.rate() - b.rate()).collect();
    let worse = diffs.iter().filter(|d| **d < 0.0).count();
    let better = diffs.iter().filter(|d| **d > 0.0).count();
    let (method, p_value) = if binary {
        (
            Method::Mcnemar,
            mcnemar_one_sided(worse as u64, better as u64),
        )
    } else {
        (
            Method::PairedBootstrap,
            paired_bootstrap_p(&diffs, 10_000, 0x5eed),
        )
    };
    let relative_drop = if baseline_rate > 0.0 {
        (baseline_rate - candidate_rate) / baseline_rate
    } else {
        0.0
    };
    let flip = |(key, b, c): &(&String, &KeyResult, &KeyResult)| Flip {
        key: (*key).clone(),
        description: c.description.clone(),
        baseline: b.rate(),
        candidate: c.rate(),
    };
    Comparison {
        method,
        paired: pairs.len(),
        only_candidate,
        only_baseline,
        baseline_rate,
        candidate_rate,
        worse,
        better,
        p_value,
        alpha,
        significantly_worse: !pairs.is_empty() && p_value < alpha,
        relative_drop,
        tolerance,
        beyond_tolerance: tolerance.is_some_and(|t| relative_drop > t),
        regressions: pairs
            .iter()
            .filter(|(_, b, c)| c.rate() < b.rate())
            .map(flip)
            .collect(),
        fixes: pairs
            .iter()
            .filter(|(_, b, c)| c.rate() > b.rate())
            .map(flip)
            .collect(),
    }
}

/// The gate's rule: a run regressed when it is significantly worse than its baseline and, if a
/// tolerance is set, its relative drop is also beyond it. A relative-drop rule alone fails
/// a third to 40 % of pure-noise pairs (a small suite's pass rate moves by more than 2 % between
/// two runs of the same model), so it only ever narrows the significance test to drops that
/// matter; it never fails a run on its own.
pub fn regressed(significantly_worse: bool, tolerance_set: bool, beyond_tolerance: bool) -> bool {
    significantly_worse && (!tolerance_set || beyond_tolerance)
}

/// Per-key results of rows of this run.
pub fn keyed_from_rows(rows: &[crate::EvalRow]) -> BTreeMap<String, KeyResult> {
    let mut keyed = BTreeMap::new();
    for row in rows {
        add_row(&mut keyed, row);
    }
    keyed
}

/// Adds one row to per-key results (for runs that do not keep their rows).
pub fn add_row(keyed: &mut BTreeMap<String, KeyResult>, row: &crate::EvalRow) {
    let entry = keyed.entry(row.key.clone()).or_insert_with(|| KeyResult {
        description: row.description.clone(),
        ..KeyResult::default()
    });
    if row.error.is_none() {
        entry.graded += 1;
        entry.passed += u64::from(row.pass);
    }
}

/// Per-key results of a stored run.
pub fn keyed_from_records(records: &[sluice_store::ResultRecord]) -> BTreeMap<String, KeyResult> {
    let mut keyed: BTreeMap<String, KeyResult> = BTreeMap::new();
    for record in records {
        let entry = keyed
            .entry(record.key.clone())
            .or_insert_with(|| KeyResult {
                description: record
                    .data
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                ..KeyResult::default()
            });
        if let Some(pass) = record.pass {
            entry.graded += 1;
            entry.passed += u64::from(pass);
        }
    }
    keyed
}

/// Per-key results from a run's verdicts alone (`(key, pass)`), without descriptions: for
/// comparing large runs, whose flipped keys' descriptions are read afterwards.
pub fn keyed_from_verdicts(verdicts: &[(String, Option<bool>)]) -> BTreeMap<String, KeyResult> {
    let mut keyed: BTreeMap<String, KeyResult> = BTreeMap::new();
    for (key, pass) in verdicts {
        let entry = keyed.entry(key.clone()).or_default();
        if let Some(pass) = pass {
            entry.graded += 1;
            entry.passed += u64::from(*pass);
        }
    }
    keyed
}

/// Per-key results of a JSON report written by `sluice eval -o results.json`.
pub fn keyed_from_report(
    report: &serde_json::Value,
) -> Result<BTreeMap<String, KeyResult>, String> {
    let rows = report.get("results").and_then(|r| r.as_array()).ok_or_else(|| {
        "expected a `sluice eval -o results.json` report with a `results` list, or an lm-evaluation-harness results file".to_owned()
    })?;
    let mut keyed: BTreeMap<String, KeyResult> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        let key = row
            .get("key")
            .and_then(|k| k.as_str())
            .ok_or_else(|| format!("results[{index}] has no `key`"))?;
        let entry = keyed.entry(key.to_owned()).or_insert_with(|| KeyResult {
            description: row
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned(),
            ..KeyResult::default()
        });
        if row.get("error").is_none_or(|e| e.is_null()) {
            let pass = row
                .get("pass")
                .and_then(|p| p.as_bool())
                .ok_or_else(|| format!("results[{index}] has no boolean `pass`"))?;
            entry.graded += 1;
            entry.passed += u64::from(pass);
        }
    }
    Ok(keyed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(rates: &[(u64, u64)]) -> BTreeMap<String, KeyResult> {
        rates
            .iter()
            .enumerate()
            .map(|(i, (passed, graded))| {
                (
                    format!("k{i}"),
                    KeyResult {
                        passed: *passed,
                        graded: *graded,
                        description: format!("test {i}"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn balanced_flips_are_noise_and_a_lopsided_drop_is_not() {
        let baseline = side(&[(1, 1); 100]);
        let mut noisy = vec![(1, 1); 100];
        let mut dropped = vec![(1, 1); 100];
        for i in 0..12 {
            noisy[i] = (0, 1);
            dropped[i] = (0, 1);
        }
        // Noise: as many other keys improved; here the baseline had failures that now pass.
        let mut baseline_with_failures = baseline.clone();
        for i in 50..62 {
            baseline_with_failures.insert(
                format!("k{i}"),
                KeyResult {
                    passed: 0,
                    graded: 1,
                    description: String::new(),
                },
            );
        }
        let noise = compare(&baseline_with_failures, &side(&noisy), 0.95, None);
        assert_eq!(noise.method, Method::Mcnemar);
        assert_eq!((noise.worse, noise.better), (12, 12));
        assert!(!noise.fails(), "{noise:?}");
        let drop = compare(&baseline, &side(&dropped), 0.95, None);
        assert!(drop.significantly_worse, "{drop:?}");
        assert_eq!(drop.regressions.len(), 12);
        assert!(drop.reasons()[0].contains("exact McNemar"));
    }

    #[test]
    fn repeats_use_the_paired_bootstrap_and_the_tolerance_rule_is_optional() {
        let baseline = side(&[(4, 5); 60]);
        let same = compare(&baseline, &side(&[(4, 5); 60]), 0.95, Some(0.02));
        assert_eq!(same.method, Method::PairedBootstrap);
        assert!(!same.fails(), "{same:?}");
        let worse = compare(&baseline, &side(&[(3, 5); 60]), 0.95, None);
        assert!(worse.significantly_worse, "{worse:?}");
        // A small uniform drop fails only the tolerance rule when its effect is tiny.
        let mut slightly: Vec<(u64, u64)> = vec![(4, 5); 60];
        slightly[0] = (3, 5);
        let slight = compare(&baseline, &side(&slightly), 0.95, Some(0.001));
        assert!(
            !slight.significantly_worse && slight.beyond_tolerance,
            "{slight:?}"
        );
    }

    #[test]
    fn unpaired_keys_are_counted_not_compared() {
        let comparison = compare(
            &side(&[(1, 1), (1, 1)]),
            &side(&[(1, 1), (1, 1), (0, 1)]),
            0.95,
            None,
        );
        assert_eq!(
            (
                comparison.paired,
                comparison.only_candidate,
                comparison.only_baseline
            ),
            (2, 1, 0)
        );
        assert!(!comparison.fails());
    }
}
