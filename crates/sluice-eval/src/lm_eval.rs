//! Baselines from lm-evaluation-harness `results.json` files.
//!
//! Such a file holds one aggregate per task and metric (`results.<task>."acc,none"`, with
//! `"acc_stderr,none"`), not per-sample results, so it cannot be paired with a run. Each task is
//! matched with the candidate's named metric of the same name (`metric: <task>` on its
//! assertions), or, when the file has a single task and the suite names no such metric, with
//! the candidate's pass rate. The two are compared by a one-sided **unpaired** z-test on the
//! difference of means with both standard errors (as lm-eval's own model comparator does), and
//! by the relative-drop tolerance rule when one is asked for.

use serde::Serialize;
use serde_json::Value;
use sluice_core::stats::normal_cdf;

use crate::Summary;

/// The metrics tried, in order, as a task's headline metric.
const PREFERRED: &[&str] = &[
    "exact_match",
    "acc",
    "acc_norm",
    "pass@1",
    "f1",
    "em",
    "mcc",
    "bleu",
];

/// One task's headline metric in the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMetric {
    /// The task (`gsm8k`).
    pub task: String,
    /// The metric (`exact_match`).
    pub metric: String,
    /// The filter it was computed under (`none`, `strict-match`).
    pub filter: String,
    /// Its value.
    pub value: f64,
    /// Its standard error, when the file gives one.
    pub stderr: Option<f64>,
    /// Documents evaluated, when the file says.
    pub samples: Option<u64>,
}

/// Whether `json` looks like an lm-evaluation-harness results file.
pub fn is_results_file(json: &Value) -> bool {
    json.get("results").is_some_and(Value::is_object)
        && (json.get("configs").is_some()
            || json.get("versions").is_some()
            || json.get("n-samples").is_some()
            || json.get("higher_is_better").is_some())
}

/// Reads each task's headline metric from a results file.
pub fn read(json: &Value) -> Result<Vec<TaskMetric>, String> {
    let results = json
        .get("results")
        .and_then(Value::as_object)
        .ok_or("expected an lm-evaluation-harness results file with a `results` object")?;
    let mut tasks = Vec::new();
    for (task, metrics) in results {
        let metrics = metrics
            .as_object()
            .ok_or_else(|| format!("results.{task} is not an object"))?;
        // Keys are `<metric>,<filter>`; stderr keys are `<metric>_stderr,<filter>`.
        let values: Vec<(&str, &str, f64)> = metrics
            .iter()
            .filter_map(|(key, value)| {
                let (metric, filter) = key.split_once(',')?;
                if metric.ends_with("_stderr") {
                    return None;
                }
                Some((metric, filter, value.as_f64()?))
            })
            .collect();
        // Of a metric's filters, one with a stderr wins, then `none`.
        let has_stderr = |metric: &str, filter: &str| {
            metrics
                .get(&format!("{metric}_stderr,{filter}"))
                .is_some_and(Value::is_number)
        };
        let best_filter = |wanted: &str| {
            let mut candidates: Vec<&(&str, &str, f64)> = values
                .iter()
                .filter(|(metric, ..)| *metric == wanted)
                .collect();
            candidates.sort_by_key(|(metric, filter, _)| {
                (!has_stderr(metric, filter), *filter != "none")
            });
            candidates.first().copied()
        };
        let chosen = PREFERRED
            .iter()
            .find_map(|wanted| best_filter(wanted))
            .or_else(|| values.first().and_then(|(metric, ..)| best_filter(metric)));
        let Some(&(metric, filter, value)) = chosen else {
            continue;
        };
        let higher_is_better = json
            .pointer(&format!(
                "/higher_is_better/{}/{}",
                escape(task),
                escape(metric)
            ))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !higher_is_better {
            return Err(format!(
                "results.{task}: `{metric}` is lower-is-better; only scores where higher is better can be compared with a run's metrics"
            ));
        }
        let stderr = metrics
            .get(&format!("{metric}_stderr,{filter}"))
            .and_then(Value::as_f64);
        let samples = json
            .pointer(&format!("/n-samples/{}/effective", escape(task)))
            .and_then(Value::as_u64);
        tasks.push(TaskMetric {
            task: task.clone(),
            metric: metric.to_owned(),
            filter: filter.to_owned(),
            value,
            stderr,
            samples,
        });
    }
    if tasks.is_empty() {
        return Err("the results file holds no numeric task metrics".to_owned());
    }
    Ok(tasks)
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// One task compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskComparison {
    /// The baseline's task and metric.
    pub baseline: TaskMetric,
    /// What of the candidate it was compared with: `metric <name>` or `pass rate`.
    pub candidate_source: String,
    /// The candidate's value.
    pub candidate: f64,
    /// The candidate's standard error.
    pub candidate_stderr: f64,
    /// The candidate's sample count.
    pub candidate_samples: u64,
    /// One-sided p-value for "the candidate is worse" (absent without a baseline stderr).
    pub p_value: Option<f64>,
    /// Significantly worse at the chosen confidence.
    pub significantly_worse: bool,
    /// `(baseline − candidate) / baseline`.
    pub relative_drop: f64,
    /// The tolerance rule's verdict.
    pub beyond_tolerance: bool,
}

/// The comparison of a run with an lm-evaluation-harness baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateComparison {
    /// Always `unpaired_z`: aggregates cannot be paired.
    pub method: &'static str,
    /// The significance level used (1 − confidence).
    pub alpha: f64,
    /// The tolerance rule's limit, when asked for.
    pub tolerance: Option<f64>,
    /// Each matched task.
    pub tasks: Vec<TaskComparison>,
    /// Baseline tasks with nothing to compare with in the candidate.
    pub unmatched: Vec<String>,
}

impl AggregateComparison {
    /// Whether the comparison fails the gate.
    pub fn fails(&self) -> bool {
        self.tasks.iter().any(|t| self.task_fails(t))
    }

    fn task_fails(&self, t: &TaskComparison) -> bool {
        crate::compare::regressed(
            t.significantly_worse,
            self.tolerance.is_some(),
            t.beyond_tolerance,
        )
    }

    /// Why it fails, in words.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for t in self.tasks.iter().filter(|t| self.task_fails(t)) {
            if t.significantly_worse {
                reasons.push(format!(
                    "{}: significantly worse than the lm-eval baseline: {:.1}% vs {} {:.1}% (unpaired z-test p = {:.4} < {:.2})",
                    t.baseline.task,
                    t.candidate * 100.0,
                    t.baseline.metric,
                    t.baseline.value * 100.0,
                    t.p_value.unwrap_or(1.0),
                    self.alpha
                ));
            }
            if t.beyond_tolerance {
                reasons.push(format!(
                    "{}: dropped {:.1}% relative to the lm-eval baseline (tolerance {:.1}%)",
                    t.baseline.task,
                    t.relative_drop * 100.0,
                    self.tolerance.unwrap_or_default() * 100.0
                ));
            }
        }
        reasons
    }
}

/// Checks, before a run, that some baseline task will have something to compare with: a named
/// metric of the suite, or the pass rate when the file has one task and the suite no metrics.
pub fn check_matches(
    tasks: &[TaskMetric],
    metrics: &std::collections::BTreeSet<String>,
) -> Result<(), String> {
    if tasks.iter().any(|t| metrics.contains(&t.task)) || (tasks.len() == 1 && metrics.is_empty()) {
        return Ok(());
    }
    let names: Vec<&str> = tasks.iter().map(|t| t.task.as_str()).collect();
    Err(format!(
        "none of its tasks ({}) matches a metric of the suite{}: name them with `metric: <task>` on the assertions",
        names.join(", "),
        if metrics.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                metrics.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    ))
}

/// Compares the run summarised by `summary` with the baseline `tasks`.
pub fn compare(
    tasks: &[TaskMetric],
    summary: &Summary,
    confidence: f64,
    tolerance: Option<f64>,
) -> Result<AggregateComparison, String> {
    let alpha = 1.0 - confidence;
    let mut compared = Vec::new();
    let mut unmatched = Vec::new();
    for task in tasks {
        let candidate = summary
            .named_metric(&task.task)
            .map(|stats| (format!("metric {}", task.task), stats))
            .or_else(|| {
                (tasks.len() == 1 && summary.named_scores.is_empty())
                    .then(|| ("pass rate".to_owned(), summary.pass_rate_stats()))
            });
        let Some((source, (mean, samples, stderr))) = candidate else {
            unmatched.push(task.task.clone());
            continue;
        };
        if samples == 0 {
            unmatched.push(task.task.clone());
            continue;
        }
        let p_value = task.stderr.map(|baseline_stderr| {
            let spread = (baseline_stderr.powi(2) + stderr.powi(2)).sqrt();
            if spread > 0.0 {
                normal_cdf((mean - task.value) / spread)
            } else if mean < task.value {
                0.0
            } else {
                1.0
            }
        });
        let relative_drop = if task.value > 0.0 {
            (task.value - mean) / task.value
        } else {
            0.0
        };
        compared.push(TaskComparison {
            baseline: task.clone(),
            candidate_source: source,
            candidate: mean,
            candidate_stderr: stderr,
            candidate_samples: samples,
            p_value,
            significantly_worse: p_value.is_some_and(|p| p < alpha),
            relative_drop,
            beyond_tolerance: tolerance.is_some_and(|t| relative_drop > t),
        });
    }
    if compared.is_empty() {
        let names: Vec<&str> = tasks.iter().map(|t| t.task.as_str()).collect();
        return Err(format!(
            "none of the baseline's tasks ({}) matches a metric of this run: name them with `metric: <task>` on the assertions",
            names.join(", ")
        ));
    }
    Ok(AggregateComparison {
        method: "unpaired_z",
        alpha,
        tolerance,
        tasks: compared,
        unmatched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn results(value: f64, stderr: f64) -> Value {
        json!({
            "results": {"gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": value,
                "exact_match_stderr,strict-match": stderr,
                "exact_match,flexible-extract": 0.9,
            }},
            "higher_is_better": {"gsm8k": {"exact_match": true}},
            "n-samples": {"gsm8k": {"original": 1319, "effective": 400}},
        })
    }

    #[test]
    fn reads_the_headline_metric_with_its_stderr_and_sample_count() {
        let json = results(0.8, 0.02);
        assert!(is_results_file(&json));
        assert!(!is_results_file(&json!({"results": []})));
        let tasks = read(&json).unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].metric, "exact_match");
        assert_eq!(tasks[0].stderr, Some(0.02));
        assert_eq!(tasks[0].samples, Some(400));
        let lower = json!({"results": {"wikitext": {"word_perplexity,none": 12.0}},
            "higher_is_better": {"wikitext": {"word_perplexity": false}}});
        assert!(read(&lower).unwrap_err().contains("lower-is-better"));
    }
}
