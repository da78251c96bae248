//! k6-style thresholds over a run's results: `ttft.p99<500ms`, `e2el.p95<2s`,
//! `error_rate<0.01`, `goodput>=20`, `output_throughput>1000`. Latency metrics take an
//! aggregate (`mean`, `median`, `std`, `min`, `max`, `p50`, `p90`, `p95`, `p99`, `p99.9`) and a
//! value in `us`, `ms` (the default) or `s`; rates and throughputs are plain numbers.

use std::fmt;

/// Latency metrics a threshold can name.
pub const LATENCY_METRICS: &[&str] = &[
    "ttft",
    "tpot",
    "itl",
    "itl_token",
    "e2el",
    "ttft_intended",
    "e2el_intended",
    "queue",
    "schedule_lag",
];

/// Whole-run numbers a threshold can name.
pub const RUN_METRICS: &[&str] = &[
    "error_rate",
    "errors",
    "completed",
    "goodput",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
];

const AGGREGATES: &[&str] = &[
    "mean", "median", "std", "min", "max", "p50", "p90", "p95", "p99", "p99.9",
];

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Op {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Eq => (left - right).abs() < 1e-9,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written.
    pub source: String,
    /// The metric (`ttft`, `error_rate`).
    pub metric: String,
    /// The aggregate, for latency metrics (`p99`).
    pub aggregate: Option<String>,
    /// The comparison.
    pub op: Op,
    /// The bound, in milliseconds for latency metrics.
    pub value: f64,
}

/// A threshold that does not parse: the text, the 1-based column and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("threshold `{text}`: column {column}: {message}")]
pub struct ThresholdError {
    /// The threshold as written.
    pub text: String,
    /// Where (1-based, in characters).
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

impl Threshold {
    /// Parses `metric[.aggregate] op value[unit]`.
    pub fn parse(text: &str) -> Result<Self, ThresholdError> {
        let fail = |at: usize, message: String| ThresholdError {
            text: text.to_owned(),
            column: text[..at.min(text.len())].chars().count() + 1,
            message,
        };
        let op_at = text.find(['<', '>', '=']).ok_or_else(|| {
            fail(
                text.len(),
                "expected a comparison: <, <=, >, >= or ==".into(),
            )
        })?;
        let name = text[..op_at].trim();
        let (metric, aggregate) = match name.split_once('.') {
            Some((metric, aggregate)) => (metric.trim(), Some(aggregate.trim())),
            None => (name, None),
        };
        let latency = LATENCY_METRICS.contains(&metric);
        if !latency && !RUN_METRICS.contains(&metric) {
            let known: Vec<&str> = LATENCY_METRICS.iter().chain(RUN_METRICS).copied().collect();
            return Err(fail(
                text.find(metric).unwrap_or(0),
                format!("unknown metric `{metric}` (known: {})", known.join(", ")),
            ));
        }
        match (latency, aggregate) {
            (true, None) => {
                return Err(fail(
                    op_at,
                    format!(
                        "`{metric}` needs an aggregate, e.g. `{metric}.p99` (one of {})",
                        AGGREGATES.join(", ")
                    ),
                ));
            }
            (true, Some(a)) if !AGGREGATES.contains(&a) => {
                return Err(fail(
                    text.find('.').map_or(0, |i| i + 1),
                    format!("unknown aggregate `{a}` (one of {})", AGGREGATES.join(", ")),
                ));
            }
            (false, Some(a)) => {
                return Err(fail(
                    text.find('.').map_or(0, |i| i + 1),
                    format!("`{metric}` is a single number and takes no aggregate (`.{a}`)"),
                ));
            }
            _ => {}
        }
        let rest = &text[op_at..];
        let (op, width) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find(|(symbol, _)| rest.starts_with(symbol))
        .map(|(symbol, op)| (op, symbol.len()))
        .ok_or_else(|| fail(op_at, "expected a comparison: <, <=, >, >= or ==".into()))?;
        let value_at = op_at + width;
        let value_text = text[value_at..].trim();
        let value_start = value_at + (text[value_at..].len() - text[value_at..].trim_start().len());
        let split = value_text
            .find(|c: char| {
                !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+')
            })
            .unwrap_or(value_text.len());
        let (number, unit) = value_text.split_at(split);
        let number: f64 = number.parse().map_err(|_| {
            fail(
                value_start,
                format!("expected a number, found `{value_text}`"),
            )
        })?;
        let scale = match (latency, unit.trim()) {
            (true, "" | "ms") => 1.0,
            (true, "us" | "µs") => 0.001,
            (true, "s") => 1000.0,
            (false, "") => 1.0,
            (true, other) => {
                return Err(fail(
                    value_start + split,
                    format!("unknown unit `{other}` (us, ms or s)"),
                ));
            }
            (false, other) => {
                return Err(fail(
                    value_start + split,
                    format!("`{metric}` is a plain number; drop the unit `{other}`"),
                ));
            }
        };
        Ok(Threshold {
            source: text.to_owned(),
            metric: metric.to_owned(),
            aggregate: aggregate.map(str::to_owned),
            op,
            value: number * scale,
        })
    }

    /// Whether `actual` satisfies it.
    pub fn holds(&self, actual: f64) -> bool {
        self.op.holds(actual, self.value)
    }

    /// The aggregate as a percentile, when it is one (`p99.9` → 99.9).
    pub fn percentile(&self) -> Option<f64> {
        self.aggregate.as_deref()?.strip_prefix('p')?.parse().ok()
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.aggregate {
            Some(a) => write!(
                f,
                "{}.{a} {} {}ms",
                self.metric,
                self.op.symbol(),
                self.value
            ),
            None => write!(f, "{} {} {}", self.metric, self.op.symbol(), self.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_units() {
        let t = Threshold::parse("ttft.p99<500ms").unwrap();
        assert_eq!((t.metric.as_str(), t.op, t.value), ("ttft", Op::Lt, 500.0));
        assert_eq!(t.percentile(), Some(99.0));
        assert_eq!(Threshold::parse("e2el.p95 < 2s").unwrap().value, 2000.0);
        assert_eq!(Threshold::parse("itl.p99.9<=800us").unwrap().value, 0.8);
        assert_eq!(
            Threshold::parse("itl.p99.9<=800us").unwrap().percentile(),
            Some(99.9)
        );
        let g = Threshold::parse("goodput>=20").unwrap();
        assert!(g.holds(20.0) && !g.holds(19.9));
        assert!(Threshold::parse("error_rate<0.01").unwrap().holds(0.0));
    }

    #[test]
    fn bad_thresholds_name_the_column_and_the_problem() {
        let e = Threshold::parse("ttft.p99<<5").unwrap_err();
        assert_eq!(e.column, 10, "{e}");
        assert!(e.message.contains("expected a number"), "{e}");
        let e = Threshold::parse("latency.p99<5").unwrap_err();
        assert_eq!(e.column, 1);
        assert!(e.message.contains("unknown metric `latency`"), "{e}");
        let e = Threshold::parse("ttft.p42<5").unwrap_err();
        assert_eq!(e.column, 6, "{e}");
        assert!(
            Threshold::parse("ttft<5")
                .unwrap_err()
                .message
                .contains("needs an aggregate")
        );
        assert!(Threshold::parse("goodput.p99>5").is_err());
        assert!(
            Threshold::parse("ttft.p99 500")
                .unwrap_err()
                .message
                .contains("comparison")
        );
        assert!(
            Threshold::parse("ttft.p99<5h")
                .unwrap_err()
                .message
                .contains("unknown unit `h`")
        );
        assert_eq!(
            Threshold::parse("error_rate<1%").unwrap_err().to_string(),
            "threshold `error_rate<1%`: column 13: `error_rate` is a plain number; drop the unit `%`"
        );
    }
}
