//! Two results side by side: each latency metric's median and p99 from the histograms embedded
//! in the result JSON (so nothing is lost to rounding), and the whole-run throughputs, with the
//! relative change of each.

use serde_json::{Value, json};

use crate::metrics::Metric;
use crate::threshold::LATENCY_METRICS;

/// Whole-run figures compared, with vLLM's field names.
const RUN_FIELDS: &[&str] = &[
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "request_goodput",
    "error_rate",
];

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `ttft p50`, `output_throughput`, …
    pub name: String,
    /// The baseline's value.
    pub baseline: f64,
    /// The candidate's value.
    pub candidate: f64,
}

impl Row {
    /// Relative change from the baseline, when the baseline is not zero.
    pub fn change(&self) -> Option<f64> {
        (self.baseline != 0.0).then(|| (self.candidate - self.baseline) / self.baseline)
    }
}

/// Why two results cannot be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// One side holds several stages.
    #[error("the {0} holds a sweep or preset (several stages); compare single runs")]
    Stages(&'static str),
    /// One side is not a bench result.
    #[error("the {0} is not a `sluice bench` result (no `histograms` object)")]
    NotAResult(&'static str),
    /// An embedded histogram does not decode.
    #[error("histogram `{metric}`")]
    Histogram {
        /// The metric.
        metric: String,
        /// Why.
        #[source]
        source: crate::metrics::DecodeError,
    },
}

/// Compares two result JSON documents (`sluice bench -o`).
pub fn compare(baseline: &Value, candidate: &Value) -> Result<Vec<Row>, CompareError> {
    for (name, value) in [("baseline", baseline), ("candidate", candidate)] {
        if value.get("stages").is_some() {
            return Err(CompareError::Stages(name));
        }
        if value.get("histograms").and_then(Value::as_object).is_none() {
            return Err(CompareError::NotAResult(name));
        }
    }
    let mut rows = Vec::new();
    for metric in LATENCY_METRICS {
        let (Some(a), Some(b)) = (histogram(baseline, metric)?, histogram(candidate, metric)?)
        else {
            continue;
        };
        let (a, b) = (a.stats(), b.stats());
        rows.push(Row {
            name: format!("{metric} p50 (ms)"),
            baseline: a.median,
            candidate: b.median,
        });
        rows.push(Row {
            name: format!("{metric} p99 (ms)"),
            baseline: a.percentile(99.0).unwrap_or(0.0),
            candidate: b.percentile(99.0).unwrap_or(0.0),
        });
    }
    for field in RUN_FIELDS {
        if let (Some(a), Some(b)) = (
            baseline.get(field).and_then(Value::as_f64),
            candidate.get(field).and_then(Value::as_f64),
        ) {
            rows.push(Row {
                name: (*field).to_owned(),
                baseline: a,
                candidate: b,
            });
        }
    }
    Ok(rows)
}

fn histogram(result: &Value, metric: &str) -> Result<Option<Metric>, CompareError> {
    result
        .get("histograms")
        .and_then(|h| h.get(metric))
        .and_then(Value::as_str)
        .map(|text| {
            Metric::decode(text).map_err(|source| CompareError::Histogram {
                metric: metric.to_owned(),
                source,
            })
        })
        .transpose()
        .map(|m| m.filter(|m| m.count() > 0))
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "  {:<28} {:>12} {:>12} {:>9}\n",
        "metric", "baseline", "candidate", "change"
    );
    for row in rows {
        let change = row
            .change()
            .map_or_else(|| "-".to_owned(), |c| format!("{:+.1}%", c * 100.0));
        out.push_str(&format!(
            "  {:<28} {:>12.3} {:>12.3} {:>9}\n",
            row.name, row.baseline, row.candidate, change
        ));
    }
    out
}

/// The rows as JSON.
pub fn json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| json!({"metric": r.name, "baseline": r.baseline, "candidate": r.candidate, "change": r.change()}))
            .collect(),
    )
}
