//! Interval estimates for pass rates.

/// The Wilson score interval for `successes` out of `trials` at ~95 % confidence (z = 1.96).
/// Returns `(low, high)`; `(0, 1)` when there are no trials.
pub fn wilson_95(successes: u64, trials: u64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = trials as f64;
    let p = successes as f64 / n;
    let denominator = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denominator;
    let margin = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    ((center - margin).max(0.0), (center + margin).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_reference_values() {
        // Reference: 8 of 10 → [0.490, 0.943]; 0 of 10 → [0, 0.278]; 10 of 10 → [0.722, 1].
        let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
        let (low, high) = wilson_95(8, 10);
        assert!(close(low, 0.490) && close(high, 0.943), "{low} {high}");
        let (low, high) = wilson_95(0, 10);
        assert!(close(low, 0.0) && close(high, 0.278), "{low} {high}");
        let (low, high) = wilson_95(10, 10);
        assert!(close(low, 0.722) && close(high, 1.0), "{low} {high}");
        assert_eq!(wilson_95(0, 0), (0.0, 1.0));
    }
}
