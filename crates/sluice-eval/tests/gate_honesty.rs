//! The eval gate's honesty, by seeded simulation: how often the baseline comparison fails a
//! run of an unchanged model (false alarms) and how often it catches a real drop (power), with
//! default flags and with a tolerance. Figures are printed for `BENCHMARKS.md` ("Gate
//! honesty"); the assertions are the promises.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::collections::BTreeMap;

use sluice_eval::compare::{KeyResult, compare};

/// A suite of `tests` tests whose pass probabilities are spread as real suites' are: most easy,
/// some hard, a few coin flips.
fn suite(rng: &mut fastrand::Rng, tests: usize) -> Vec<f64> {
    (0..tests)
        .map(|_| match rng.u8(0..10) {
            0..=5 => 0.9 + 0.1 * rng.f64(),
            6..=8 => 0.4 + 0.5 * rng.f64(),
            _ => 0.5,
        })
        .collect()
}

/// One run: each test graded `repeat` times with its probability lowered by `drop`.
fn run(
    rng: &mut fastrand::Rng,
    probabilities: &[f64],
    repeat: u64,
    drop: f64,
) -> BTreeMap<String, KeyResult> {
    probabilities
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p = (p - drop).max(0.0);
            let passed = (0..repeat).filter(|_| rng.f64() < p).count() as u64;
            (
                format!("t{i}"),
                KeyResult {
                    passed,
                    graded: repeat,
                    description: String::new(),
                },
            )
        })
        .collect()
}

/// The share of `pairs` simulated baseline/candidate pairs that the gate fails.
fn failure_rate(
    seed: u64,
    pairs: usize,
    tests: usize,
    repeat: u64,
    drop: f64,
    tolerance: Option<f64>,
) -> f64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut failed = 0;
    for _ in 0..pairs {
        let probabilities = suite(&mut rng, tests);
        let baseline = run(&mut rng, &probabilities, repeat, 0.0);
        let candidate = run(&mut rng, &probabilities, repeat, drop);
        failed += usize::from(compare(&baseline, &candidate, 0.95, tolerance).fails());
    }
    failed as f64 / pairs as f64
}

/// What a bare relative-drop rule would fail on its own, for comparison.
fn tolerance_alone_rate(seed: u64, pairs: usize, tests: usize, tolerance: f64) -> f64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut failed = 0;
    for _ in 0..pairs {
        let probabilities = suite(&mut rng, tests);
        let baseline = run(&mut rng, &probabilities, 1, 0.0);
        let candidate = run(&mut rng, &probabilities, 1, 0.0);
        let comparison = compare(&baseline, &candidate, 0.95, Some(tolerance));
        failed += usize::from(comparison.relative_drop > tolerance);
    }
    failed as f64 / pairs as f64
}

#[test]
fn the_default_comparison_rarely_fails_noise_and_catches_real_drops() {
    // Default flags: confidence 0.95, no tolerance; one sample per test (exact McNemar).
    let noise = failure_rate(1, 400, 100, 1, 0.0, None);
    let power = failure_rate(2, 200, 100, 1, 0.2, None);
    let small = failure_rate(2, 200, 100, 1, 0.1, None);
    let medium = failure_rate(2, 200, 100, 1, 0.15, None);
    let alone = tolerance_alone_rate(3, 400, 100, 0.02);
    let narrowed = failure_rate(1, 400, 100, 1, 0.0, Some(0.02));
    eprintln!(
        "McNemar, 100 tests: noise fails {:.1} % of 400 pairs; a 10/15/20-point drop is caught \
         in {:.1} / {:.1} / {:.1} % of 200; a 2 % tolerance alone would fail {:.1} % of noise, \
         with the test {:.1} %",
        noise * 100.0,
        small * 100.0,
        medium * 100.0,
        power * 100.0,
        alone * 100.0,
        narrowed * 100.0
    );
    assert!(noise <= 0.07, "false alarms {noise}");
    assert!(power >= 0.95, "power {power}");
    assert!(narrowed <= noise, "a tolerance only narrows the test");
    assert!(alone > 0.15, "the bare tolerance rule is noisy: {alone}");
}

#[test]
fn with_repeats_the_paired_bootstrap_holds_its_level_too() {
    let noise = failure_rate(5, 200, 40, 3, 0.0, None);
    let power = failure_rate(6, 100, 40, 3, 0.2, None);
    eprintln!(
        "paired bootstrap, 40 tests × 3 repeats: noise fails {:.1} % of 200 pairs; a 20-point \
         drop is caught in {:.1} % of 100",
        noise * 100.0,
        power * 100.0
    );
    assert!(noise <= 0.07, "false alarms {noise}");
    assert!(power >= 0.95, "power {power}");
}
