//! Multi-stage runs: the rate sweep (synchronous, then maximum throughput, then evenly spaced
//! open-loop rates between the two, as guidellm does) with the knee of the latency curve, and
//! the batch-size preset (lock-step batches of 1, 4, 8 and 16).

use tokio::sync::watch;

use crate::schedule::Arrival;
use crate::{BenchConfig, BenchError, BenchResult, Limit, Live, Load};

/// The batch sizes of `--preset batch-sizes`.
pub const BATCH_SIZES: &[usize] = &[1, 4, 8, 16];
/// Measured batches per size in the preset.
pub const BATCH_ITERATIONS: usize = 50;
/// Unmeasured leading batches per size in the preset.
pub const BATCH_WARMUP: usize = 3;

/// Several runs, one per stage.
#[derive(Debug, Clone)]
pub struct Stages {
    /// Each stage's result, in the order run.
    pub stages: Vec<BenchResult>,
    /// The stage at the knee of the latency-versus-throughput curve (sweeps only).
    pub knee: Option<usize>,
}

/// Runs a sweep of `size` stages (at least 3): synchronous, throughput with
/// `max_concurrency` workers, then `size − 2` open-loop rates evenly spaced between the two
/// throughputs (the last is the throughput rate itself). `base`'s limit applies to each stage.
pub async fn sweep(
    base: &BenchConfig,
    size: usize,
    max_concurrency: usize,
    live: Option<watch::Sender<Live>>,
    mut on_stage: impl FnMut(&BenchResult),
) -> Result<Stages, BenchError> {
    let size = size.max(3);
    let arrival = match base.load {
        Load::Rate { arrival, .. } => arrival,
        _ => Arrival::Constant,
    };
    let mut stages = Vec::with_capacity(size);
    for load in [
        Load::Concurrency(1),
        Load::Concurrency(max_concurrency.max(1)),
    ] {
        let result = crate::run_with(stage(base, load), live.clone()).await?;
        on_stage(&result);
        stages.push(result);
    }
    let low = stages[0].number("request_throughput").unwrap_or(0.0);
    let high = stages[1].number("request_throughput").unwrap_or(0.0);
    if !(low > 0.0 && high > 0.0) {
        return Err(BenchError::Config(format!(
            "the sweep cannot space its rates: the synchronous stage reached {low:.2} req/s and the throughput stage {high:.2} req/s (did every request fail?)"
        )));
    }
    let (low, high) = (low.min(high), low.max(high));
    let steps = size - 2;
    for i in 1..=steps {
        let rate = low + (high - low) * i as f64 / steps as f64;
        let load = Load::Rate {
            rate,
            arrival,
            max_concurrency: None,
        };
        let result = crate::run_with(stage(base, load), live.clone()).await?;
        on_stage(&result);
        stages.push(result);
    }
    let knee = knee(&stages);
    Ok(Stages { stages, knee })
}

/// Runs the batch-size preset: for each of [`BATCH_SIZES`], [`BATCH_WARMUP`] unmeasured
/// batches, then [`BATCH_ITERATIONS`] measured ones.
pub async fn batch_sizes(
    base: &BenchConfig,
    live: Option<watch::Sender<Live>>,
    mut on_stage: impl FnMut(&BenchResult),
) -> Result<Stages, BenchError> {
    let mut stages = Vec::with_capacity(BATCH_SIZES.len());
    for size in BATCH_SIZES {
        let config = BenchConfig {
            limit: Limit::Requests(size * BATCH_ITERATIONS),
            ..stage(
                base,
                Load::Batch {
                    size: *size,
                    warmup: BATCH_WARMUP,
                },
            )
        };
        let result = crate::run_with(config, live.clone()).await?;
        on_stage(&result);
        stages.push(result);
    }
    Ok(Stages { stages, knee: None })
}

fn stage(base: &BenchConfig, load: Load) -> BenchConfig {
    BenchConfig {
        load,
        ..base.clone()
    }
}

/// The knee of the median-E2EL-versus-achieved-throughput curve: with both axes scaled to
/// [0, 1], the stage where throughput most exceeds latency (the Kneedle rule for an
/// increasing convex curve). Invalid stages and stages with no answers are left out.
pub fn knee(stages: &[BenchResult]) -> Option<usize> {
    let points: Vec<(usize, f64, f64)> = stages
        .iter()
        .enumerate()
        .filter(|(_, r)| crate::invalid_reason(r).is_none())
        .filter_map(|(i, r)| {
            let x = r.number("request_throughput")?;
            let y = r.stats("e2el");
            (y.count > 0).then_some((i, x, y.median))
        })
        .collect();
    let range = |values: Vec<f64>| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, (max - min).max(f64::EPSILON))
    };
    let (x0, xs) = range(points.iter().map(|p| p.1).collect());
    let (y0, ys) = range(points.iter().map(|p| p.2).collect());
    points
        .iter()
        .map(|(i, x, y)| (*i, (x - x0) / xs - (y - y0) / ys))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// A table of the stages, one line each, the knee marked.
pub fn table(stages: &Stages) -> String {
    let mut out = format!(
        "  {:<3} {:<28} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
        "#",
        "load",
        "req/s",
        "out tok/s",
        "ttft p50",
        "ttft p99",
        "itl p50",
        "e2el p50",
        "e2el p99",
        "errors"
    );
    for (i, r) in stages.stages.iter().enumerate() {
        let ttft = r.stats("ttft");
        let e2el = r.stats("e2el");
        let p99 = |s: &crate::Stats| s.percentile(99.0).unwrap_or(0.0);
        let mark = if stages.knee == Some(i) {
            "  ← knee"
        } else if crate::invalid_reason(r).is_some() {
            "  INVALID (client fell behind)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:<3} {:<28} {:>9.2} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}{mark}\n",
            i + 1,
            r.load_label(),
            r.number("request_throughput").unwrap_or(0.0),
            r.number("output_throughput").unwrap_or(0.0),
            ttft.median,
            p99(&ttft),
            r.stats("itl").median,
            e2el.median,
            p99(&e2el),
            r.recorder.failed,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metric;
    use crate::{Endpoint, Goodput, Recorder};

    /// A stage that completed `throughput` requests per second with this median E2EL.
    fn stage(throughput: f64, e2el_ms: u64) -> BenchResult {
        let mut recorder = Recorder::default();
        let mut metric = Metric::default();
        metric.record(Duration::from_millis(e2el_ms));
        recorder.metrics.insert("e2el", metric);
        recorder.completed = (throughput * 10.0) as u64;
        BenchResult {
            config: BenchConfig {
                target: sluice_core::EndpointSpec::new("", "m"),
                endpoint: Endpoint::Chat,
                dataset: crate::dataset::Dataset::Random,
                load: Load::Concurrency(1),
                limit: Limit::Requests(1),
                warmup: Duration::ZERO,
                input_tokens: 1,
                output_tokens: 1,
                range_ratio: 0.0,
                stream: true,
                ignore_eos: false,
                goodput: Goodput::default(),
                thresholds: Vec::new(),
                max_lag: Duration::from_millis(10),
                timeout: Duration::from_secs(1),
                seed: 0,
            },
            duration_s: 10.0,
            recorder,
            usage_warning: None,
        }
    }

    #[test]
    fn the_knee_is_where_throughput_stops_paying_for_latency() {
        // Latency flat until 40 req/s, then it climbs steeply for little more throughput.
        let stages = [
            stage(10.0, 100),
            stage(20.0, 102),
            stage(30.0, 105),
            stage(40.0, 110),
            stage(44.0, 400),
            stage(45.0, 1500),
        ];
        assert_eq!(knee(&stages), Some(3));
        assert_eq!(knee(&[]), None);
        let table = table(&Stages {
            stages: stages.to_vec(),
            knee: Some(3),
        });
        assert_eq!(table.matches("← knee").count(), 1, "{table}");
    }
}
