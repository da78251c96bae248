//! Trends: how each eval suite (per provider set) and each benchmarked model moved over its
//! stored runs, oldest first — pass rate and cost of eval runs, p95 TTFT, error rate and
//! output throughput of bench runs — read from the runs' stored summaries.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sluice_store::Run;

/// One run's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The run.
    pub run_id: String,
    /// When it started, Unix ms.
    pub at_ms: i64,
    /// Its figures by name (`pass_rate`, `cost_usd`, `ttft_p95_ms`…); a figure the run did
    /// not record is absent.
    pub figures: BTreeMap<&'static str, f64>,
}

/// The runs of one suite and provider set, or of one benchmarked model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// `eval` or `bench`.
    pub kind: &'static str,
    /// The suite's description, or the model.
    pub name: String,
    /// The providers, for an eval suite.
    pub providers: Option<String>,
    /// Oldest first.
    pub points: Vec<Point>,
}

/// The figures each kind of run is followed by.
pub const EVAL_FIGURES: [&str; 2] = ["pass_rate", "cost_usd"];
/// See [`EVAL_FIGURES`].
pub const BENCH_FIGURES: [&str; 3] = ["ttft_p95_ms", "error_rate", "output_throughput"];

fn eval_point(run: &Run) -> BTreeMap<&'static str, f64> {
    let stats = &run.summary["stats"];
    [
        ("pass_rate", &stats["pass_rate"]),
        ("cost_usd", &stats["cost_usd"]),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_f64().map(|v| (name, v)))
    .collect()
}

fn bench_point(run: &Run) -> BTreeMap<&'static str, f64> {
    let s = &run.summary;
    [
        ("ttft_p95_ms", &s["p95_ttft_ms"]),
        ("error_rate", &s["error_rate"]),
        ("output_throughput", &s["output_throughput"]),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_f64().map(|v| (name, v)))
    .collect()
}

/// The series of `runs` (any order; runs still going are left out).
pub fn series(runs: &[Run]) -> Vec<Series> {
    let mut groups: BTreeMap<(&'static str, String, Option<String>), Vec<Point>> = BTreeMap::new();
    for run in runs {
        if run.finished_at_ms.is_none() {
            continue;
        }
        let (kind, providers, figures) = match run.kind {
            sluice_store::RunKind::Eval => {
                let providers = run.config["providers"].as_array().map(|p| {
                    p.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                ("eval", providers, eval_point(run))
            }
            sluice_store::RunKind::Bench => ("bench", None, bench_point(run)),
            _ => continue,
        };
        if figures.is_empty() {
            continue;
        }
        groups
            .entry((kind, run.name.clone(), providers))
            .or_default()
            .push(Point {
                run_id: run.id.as_str().to_owned(),
                at_ms: run.started_at_ms,
                figures,
            });
    }
    groups
        .into_iter()
        .map(|((kind, name, providers), mut points)| {
            points.sort_by(|a, b| (a.at_ms, &a.run_id).cmp(&(b.at_ms, &b.run_id)));
            Series {
                kind,
                name,
                providers,
                points,
            }
        })
        .collect()
}
