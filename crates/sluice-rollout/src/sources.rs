//! Where a rule's number comes from, one function per kind of source: a metric of the
//! candidate's gateway window, the sequential error-rate judge, the latency judge (Mann-Whitney
//! on both versions' latency bins), and any JSON endpoint. Prometheus queries are
//! `sluice_readiness::prometheus::query`. Each gives a value and the samples it rests on,
//! `None` when there are too few samples, or an error when the source cannot be read.

use std::borrow::Cow;

use serde_json::Value;
use sluice_core::stats::{binned_median, mann_whitney_z};
use sluice_gateway::metrics::{WindowStats, Windows};

use crate::sequential::{ErrorRateTest, Totals};
use crate::spec::Metric;

/// A value and its sample count; `Ok(None)` when there is no data, `Err` when the source
/// cannot be read.
pub(crate) type Reading = Result<Option<(f64, u64)>, String>;

/// `version`'s window on `route` (an empty one when the gateway has none).
pub(crate) fn window<'w>(windows: &'w Windows, route: &str, version: &str) -> Cow<'w, WindowStats> {
    windows
        .get(route)
        .and_then(|versions| versions.get(version))
        .map_or_else(|| Cow::Owned(WindowStats::default()), Cow::Borrowed)
}

/// A metric of the candidate's window, when it rests on at least `min_samples`.
pub(crate) fn gateway_metric(
    windows: &Windows,
    route: &str,
    candidate: &str,
    metric: &Metric,
    min_samples: u64,
) -> Option<(f64, u64)> {
    let window = window(windows, route, candidate);
    let samples = metric.samples(&window);
    metric
        .read(&window)
        .filter(|_| samples >= min_samples)
        .map(|v| (v, samples))
}

/// The sequential error-rate judge's evidence, fed the gateway's monotonic totals; a reading
/// once both sides have been judged `min_samples` times.
pub(crate) fn error_rate_judge(
    test: &mut ErrorRateTest,
    windows: &Windows,
    route: &str,
    candidate: &str,
    stable: &str,
    min_samples: u64,
) -> Option<(f64, u64)> {
    let totals = |version: &str| {
        let window = window(windows, route, version);
        Totals {
            judged: window.total_judged,
            errors: window.total_errors,
        }
    };
    let evidence = test.observe(totals(candidate), totals(stable));
    let (judged_candidate, judged_stable) = test.judged();
    (judged_candidate.min(judged_stable) >= min_samples).then_some((evidence, judged_candidate))
}

/// The latency judge: the Mann-Whitney z of "the candidate is slower" over both versions'
/// latency bins, counted only when the candidate's median is slower by more than `tolerance`
/// (a significant but immaterial slowdown counts as none).
pub(crate) fn latency_judge(
    windows: &Windows,
    route: &str,
    candidate: &str,
    stable: &str,
    tolerance: f64,
    min_samples: u64,
) -> Option<(f64, u64)> {
    let bins = |version: &str| -> Vec<(f64, u64)> {
        window(windows, route, version)
            .latency_histogram
            .clone()
            .unwrap_or_default()
    };
    let (candidate, stable) = (bins(candidate), bins(stable));
    let count = |b: &[(f64, u64)]| b.iter().map(|(_, n)| n).sum::<u64>();
    let n_candidate = count(&candidate);
    if n_candidate.min(count(&stable)) < min_samples {
        return None;
    }
    let z = mann_whitney_z(&candidate, &stable);
    let slower = match (binned_median(&candidate), binned_median(&stable)) {
        (Some(c), Some(s)) if s > 0.0 => c / s > 1.0 + tolerance,
        (Some(c), Some(_)) => c > 0.0,
        _ => false,
    };
    Some((if slower { z } else { z.min(0.0) }, n_candidate))
}

/// A number at a JSON pointer of what `url` answers (`null` or absent: no data).
pub(crate) async fn web(client: &reqwest::Client, url: &str, pointer: &str) -> Reading {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url} unreachable: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let body = response
        .json::<Value>()
        .await
        .map_err(|e| format!("{url} answered something that is not JSON: {e}"))?;
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(|v| Some((v, 1)))
            .ok_or_else(|| format!("{url}: `{pointer}` is {value}, not a number")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn windows(candidate: Vec<(f64, u64)>, stable: Vec<(f64, u64)>) -> Windows {
        let stats = |bins| WindowStats {
            latency_histogram: Some(bins),
            ..WindowStats::default()
        };
        BTreeMap::from([(
            "chat".to_owned(),
            BTreeMap::from([
                ("b".to_owned(), stats(candidate)),
                ("a".to_owned(), stats(stable)),
            ]),
        )])
    }

    #[test]
    fn the_latency_judge_counts_only_material_slowdowns() {
        let fast: Vec<(f64, u64)> = (1..=20).map(|v| (f64::from(v), 5)).collect();
        let slow: Vec<(f64, u64)> = (11..=30).map(|v| (f64::from(v), 5)).collect();
        let slightly: Vec<(f64, u64)> = (2..=21).map(|v| (f64::from(v), 5)).collect();
        let judge = |c: &[(f64, u64)], s: &[(f64, u64)], tolerance| {
            latency_judge(
                &windows(c.to_vec(), s.to_vec()),
                "chat",
                "b",
                "a",
                tolerance,
                50,
            )
        };
        let (z, n) = judge(&slow, &fast, 0.1).unwrap_or_else(|| panic!("no reading"));
        assert!(z > 5.0 && n == 100, "{z} {n}");
        // Faster never counts against the candidate.
        assert!(judge(&fast, &slow, 0.1).is_some_and(|(z, _)| z < -5.0));
        // A one-unit shift of a median of ten is 10 %: within a 20 % tolerance it is no slowdown.
        assert!(judge(&slightly, &fast, 0.2).is_some_and(|(z, _)| z <= 0.0));
        // Too few samples on either side: no reading.
        assert_eq!(judge(&slow[..5], &fast, 0.1), None);
        assert_eq!(
            latency_judge(&Windows::new(), "chat", "b", "a", 0.1, 1),
            None
        );
    }

    #[test]
    fn a_gateway_metric_reads_the_candidates_window_once_it_has_its_samples() {
        let stats = WindowStats {
            requests: 40,
            error_rate: 0.05,
            ..WindowStats::default()
        };
        let windows: Windows =
            BTreeMap::from([("chat".to_owned(), BTreeMap::from([("b".to_owned(), stats)]))]);
        let read = |min| gateway_metric(&windows, "chat", "b", &Metric::ErrorRate, min);
        assert_eq!(read(40), Some((0.05, 40)));
        assert_eq!(read(41), None);
        // Another version's (missing) window is empty: no data.
        assert_eq!(
            gateway_metric(&windows, "chat", "a", &Metric::ErrorRate, 1),
            None
        );
    }
}
