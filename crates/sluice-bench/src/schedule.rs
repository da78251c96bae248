//! Open-loop arrival schedules, computed before the run so that dispatch only waits for
//! absolute instants: constant gaps, Poisson arrivals, or gamma-distributed gaps with a
//! burstiness factor (vLLM's model: shape `b`, scale `1/(rate·b)`, so the mean gap is `1/rate`
//! and the coefficient of variation `1/√b`; `b = 1` is Poisson).

use std::time::Duration;

/// How gaps between arrivals are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Every gap is `1/rate`.
    Constant,
    /// Exponential gaps (gamma with shape 1).
    Poisson,
    /// Gamma gaps with this shape (burstiness); below 1 is burstier than Poisson.
    Gamma(f64),
}

/// `count` send offsets from the start of the run at `rate` requests per second, seeded.
/// Random gaps are rescaled so that the last arrival lands exactly at `count / rate`, as vLLM
/// does, which removes the seed-to-seed spread of the run's length.
pub fn offsets(count: usize, rate: f64, arrival: Arrival, seed: u64) -> Vec<Duration> {
    if count == 0 || !(rate.is_finite() && rate > 0.0) {
        return vec![Duration::ZERO; count];
    }
    let mean_gap = 1.0 / rate;
    let mut rng = fastrand::Rng::with_seed(seed);
    let gaps: Vec<f64> = (0..count)
        .map(|_| match arrival {
            Arrival::Constant => mean_gap,
            Arrival::Poisson => gamma(&mut rng, 1.0) * mean_gap,
            Arrival::Gamma(shape) => gamma(&mut rng, shape) / shape * mean_gap,
        })
        .collect();
    let mut at = 0.0;
    let mut times: Vec<f64> = gaps
        .iter()
        .map(|gap| {
            at += gap;
            at
        })
        .collect();
    // The first request goes at once; the rest keep their gaps.
    let first = times[0];
    times.iter_mut().for_each(|t| *t -= first);
    let last = times[count - 1];
    let target = (count - 1) as f64 * mean_gap;
    if arrival != Arrival::Constant && last > 0.0 {
        let scale = target / last;
        times.iter_mut().for_each(|t| *t *= scale);
    }
    times.into_iter().map(Duration::from_secs_f64).collect()
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang; shapes below 1 boosted by `U^(1/shape)`).
fn gamma(rng: &mut fastrand::Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.f64().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.f64().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(offsets: &[Duration]) -> Vec<f64> {
        offsets
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }

    fn cv(values: &[f64]) -> f64 {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        var.sqrt() / mean
    }

    #[test]
    fn constant_gaps_are_exact() {
        let at = offsets(5, 10.0, Arrival::Constant, 1);
        assert_eq!(at[0], Duration::ZERO);
        assert!((at[4].as_secs_f64() - 0.4).abs() < 1e-9);
        assert!(gaps(&at).iter().all(|g| (g - 0.1).abs() < 1e-9));
    }

    #[test]
    fn random_schedules_keep_the_rate_and_their_spread() {
        let n = 20_000;
        for (arrival, expected_cv) in [
            (Arrival::Poisson, 1.0),
            (Arrival::Gamma(4.0), 0.5),
            (Arrival::Gamma(0.25), 2.0),
        ] {
            let at = offsets(n, 100.0, arrival, 7);
            let end = at[n - 1].as_secs_f64();
            assert!(
                (end - (n - 1) as f64 / 100.0).abs() < 1e-6,
                "{arrival:?} ends at {end}"
            );
            let spread = cv(&gaps(&at));
            assert!(
                (spread - expected_cv).abs() < 0.1 * expected_cv,
                "{arrival:?}: coefficient of variation {spread}"
            );
            assert!(at.windows(2).all(|w| w[0] <= w[1]));
        }
        assert_eq!(
            offsets(100, 50.0, Arrival::Poisson, 3),
            offsets(100, 50.0, Arrival::Poisson, 3),
            "seeded"
        );
    }
}
