//! The statistics behind Sluice's gates, in one place: the normal distribution, the Wilson
//! interval for pass rates, the exact binomial tail (McNemar's test on paired verdicts), the
//! Mann-Whitney rank test on binned latencies, a seeded paired bootstrap, and the drift
//! measures (the population stability index and the Jensen-Shannon divergence). Each is
//! tested against published values or its definition, so a gate's false-alarm rate rests on
//! numbers anyone can check.

/// The two-sided 95 % normal quantile, `Φ⁻¹(0.975)`.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The standard normal distribution function `Φ(z)`, from the complementary error function
/// (a Chebyshev fit with relative error below 1.2e-7 everywhere, tails included).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// The complementary error function, `erfc(x) = 1 − erf(x)`.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal quantile `Φ⁻¹(p)`: the z with `P(Z ≤ z) = p` (Acklam's rational
/// approximation, relative error below 1.2e-9). `-∞` at 0, `+∞` at 1, NaN outside `[0, 1]`.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        f64::NAN
    } else if p == 0.0 {
        f64::NEG_INFINITY
    } else if p == 1.0 {
        f64::INFINITY
    } else if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// A two-sided interval estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The Wilson score interval for `successes` out of `trials` at the normal quantile `z`
/// (use [`Z_95`] for 95 %); `[0, 1]` when there are no trials.
pub fn wilson(successes: u64, trials: u64, z: f64) -> Interval {
    if trials == 0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let margin = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    Interval {
        low: (centre - margin).max(0.0),
        high: (centre + margin).min(1.0),
    }
}

/// The Wilson score interval at 95 %.
pub fn wilson_95(successes: u64, trials: u64) -> Interval {
    wilson(successes, trials, Z_95)
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`, exact (summed in log space, so large `n` neither
/// overflows nor underflows to a wrong answer).
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let mut ln_pmf = ln_choose(n, k) + k as f64 * ln_p + (n - k) as f64 * ln_q;
    let mut tail = 0.0;
    for i in k..=n {
        tail += ln_pmf.exp();
        if i < n {
            ln_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln() + ln_p - ln_q;
        }
    }
    tail.min(1.0)
}

/// McNemar's exact one-sided test on paired verdicts: `P(X ≥ worse)` for
/// `X ~ Binomial(worse + better, ½)`, how likely this many (or more) of the discordant pairs
/// would go against the candidate if it were no worse. 1 when no pair is discordant.
pub fn mcnemar_one_sided(worse: u64, better: u64) -> f64 {
    binomial_upper_tail(worse, worse + better, 0.5)
}

/// `ln C(n, k)`.
fn ln_choose(n: u64, k: u64) -> f64 {
    let k = k.min(n - k);
    (1..=k)
        .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
        .sum()
}

/// The one-sided Mann-Whitney U test for "a's values are larger than b's", on binned
/// samples (`(value, count)` in any order; equal values are ties and get their mid-rank):
/// the z statistic with the tie correction, 0 when there is nothing to compare.
pub fn mann_whitney_z(a: &[(f64, u64)], b: &[(f64, u64)]) -> f64 {
    let mut bins: Vec<(f64, u64, u64)> = a
        .iter()
        .map(|(v, n)| (*v, *n, 0))
        .chain(b.iter().map(|(v, n)| (*v, 0, *n)))
        .collect();
    bins.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (n_a, n_b) = (
        a.iter().map(|(_, n)| *n as f64).sum::<f64>(),
        b.iter().map(|(_, n)| *n as f64).sum::<f64>(),
    );
    let n = n_a + n_b;
    if n_a == 0.0 || n_b == 0.0 {
        return 0.0;
    }
    let (mut below, mut rank_sum_a, mut ties) = (0.0f64, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < bins.len() {
        let (mut count_a, mut count_b) = (0.0, 0.0);
        let value = bins[i].0;
        while i < bins.len() && bins[i].0 == value {
            count_a += bins[i].1 as f64;
            count_b += bins[i].2 as f64;
            i += 1;
        }
        let t = count_a + count_b;
        rank_sum_a += count_a * (below + (t + 1.0) / 2.0);
        ties += t * t * t - t;
        below += t;
    }
    let u_a = rank_sum_a - n_a * (n_a + 1.0) / 2.0;
    let variance = n_a * n_b / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 0.0;
    }
    (u_a - n_a * n_b / 2.0) / variance.sqrt()
}

/// The median of binned samples (`(value, count)` in any order); `None` when empty.
pub fn binned_median(bins: &[(f64, u64)]) -> Option<f64> {
    let total: u64 = bins.iter().map(|(_, n)| n).sum();
    let mut sorted = bins.to_vec();
    sorted.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut seen = 0;
    for (value, count) in sorted {
        seen += count;
        if seen * 2 >= total && total > 0 {
            return Some(value);
        }
    }
    None
}

/// The paired bootstrap p-value for "the mean paired difference is below zero": the share of
/// `iterations` resampled means that are zero or above (with the usual +1 correction). A
/// seeded xorshift generator keeps runs reproducible; 1 when there are no differences.
pub fn paired_bootstrap_p(diffs: &[f64], iterations: usize, seed: u64) -> f64 {
    if diffs.is_empty() {
        return 1.0;
    }
    let mut state = seed.max(1);
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let n = diffs.len();
    let mut not_worse = 0usize;
    for _ in 0..iterations {
        let sum: f64 = (0..n).map(|_| diffs[(next() % n as u64) as usize]).sum();
        if sum >= 0.0 {
            not_worse += 1;
        }
    }
    (not_worse as f64 + 1.0) / (iterations as f64 + 1.0)
}

/// Where a population stability index stops being "no change": 0.1 warns, 0.2 alerts (the
/// thresholds credit-risk practice settled on, which drift monitors reuse).
pub const PSI_WARN: f64 = 0.1;
/// See [`PSI_WARN`].
pub const PSI_ALERT: f64 = 0.2;
/// The Jensen-Shannon divergence (base 2, from 0 to 1) from which a category mix has drifted.
pub const JS_ALERT: f64 = 0.1;

/// The population stability index of `current` against `reference`, over `bins` bins cut at
/// the reference's quantiles (ties merged, so a bin never splits equal values; a value equal
/// to a cut goes in the bin the cut starts), plus, when the reference's largest value is itself
/// a cut (a heavy top value, say answers that are always 24 tokens), a bin for values above
/// it, so that a shift away from such a value shows either way: `Σ (c − r)·ln(c / r)` over the
/// bins' shares, an empty share counted as 0.0001. 0 when the distributions match; grows with
/// any shift in location, spread or shape. `None` when either sample is empty.
pub fn psi(reference: &[f64], current: &[f64], bins: usize) -> Option<f64> {
    psi_bins(reference, current, bins).map(|binned| binned.psi())
}

/// Two samples binned on the reference's quantiles, as [`psi`] bins them: what a drift chart
/// draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    /// The cuts between bins (a value equal to a cut goes in the bin the cut starts).
    pub edges: Vec<f64>,
    /// Each bin's share of the reference (one more bin than cuts, and one more again when
    /// the reference's largest value is a cut: values above it).
    pub reference: Vec<f64>,
    /// Each bin's share of the current sample.
    pub current: Vec<f64>,
}

impl Binned {
    /// The population stability index of the two shares (an empty share counted as 0.0001).
    pub fn psi(&self) -> f64 {
        self.reference
            .iter()
            .zip(&self.current)
            .map(|(r, c)| {
                let (r, c) = (r.max(1e-4), c.max(1e-4));
                (c - r) * (c / r).ln()
            })
            .sum()
    }
}

/// [`psi`]'s bins and shares; `None` when either sample is empty.
pub fn psi_bins(reference: &[f64], current: &[f64], bins: usize) -> Option<Binned> {
    if reference.is_empty() || current.is_empty() || bins < 2 {
        return None;
    }
    let mut sorted: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return None;
    }
    let largest = sorted[sorted.len() - 1];
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| sorted[(i * sorted.len() / bins).min(sorted.len() - 1)])
        .collect();
    edges.dedup();
    let top_atom = edges.last().is_some_and(|edge| *edge == largest);
    let used = edges.len() + 1 + usize::from(top_atom);
    let shares = |values: &[f64]| -> Vec<f64> {
        let mut counts = vec![0u64; used];
        let mut total = 0u64;
        for v in values.iter().filter(|v| v.is_finite()) {
            let bin = if top_atom && *v > largest {
                edges.len() + 1
            } else {
                edges.partition_point(|edge| edge <= v)
            };
            counts[bin] += 1;
            total += 1;
        }
        counts
            .iter()
            .map(|c| *c as f64 / total.max(1) as f64)
            .collect()
    };
    let (reference, current) = (shares(reference), shares(current));
    Some(Binned {
        edges,
        reference,
        current,
    })
}

/// The Jensen-Shannon divergence of two category counts (base 2: 0 for the same mix, 1 for
/// mixes with nothing in common). `None` when either is empty or their lengths differ.
pub fn jensen_shannon(p: &[u64], q: &[u64]) -> Option<f64> {
    let (sp, sq): (u64, u64) = (p.iter().sum(), q.iter().sum());
    if sp == 0 || sq == 0 || p.len() != q.len() {
        return None;
    }
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(a, _)| **a > 0.0)
            .map(|(a, m)| a * (a / m).log2())
            .sum()
    };
    let p: Vec<f64> = p.iter().map(|v| *v as f64 / sp as f64).collect();
    let q: Vec<f64> = q.iter().map(|v| *v as f64 / sq as f64).collect();
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    Some((0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, relative: f64) -> bool {
        (actual - expected).abs() <= relative * expected.abs().max(1e-300)
    }

    #[test]
    fn the_normal_cdf_matches_published_values() {
        // Φ to 16 digits, as tabulated (e.g. by R's pnorm).
        let table = [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (1.959_963_984_540_054, 0.975),
            (-1.644_853_626_951_472, 0.05),
            (-3.0, 0.001_349_898_031_630_094_6),
            (-5.0, 2.866_515_718_791_939e-7),
            (-8.0, 6.220_960_574_271_784e-16),
            (3.0, 0.998_650_101_968_369_9),
        ];
        for (z, expected) in table {
            let actual = normal_cdf(z);
            assert!(
                close(actual, expected, 2e-7),
                "Φ({z}) = {actual}, not {expected}"
            );
        }
    }

    #[test]
    fn the_normal_quantile_matches_published_values() {
        let table = [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.95, 1.644_853_626_951_472_2),
            (0.99, 2.326_347_874_040_840_8),
            (0.999, 3.090_232_306_167_813),
            (0.01, -2.326_347_874_040_840_8),
            (0.02, -2.053_748_910_631_823),
            (1e-6, -4.753_424_308_822_899),
        ];
        for (p, expected) in table {
            let actual = normal_quantile(p);
            assert!(
                (actual - expected).abs() <= 1e-8 * expected.abs().max(1.0),
                "Φ⁻¹({p}) = {actual}, not {expected}"
            );
        }
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(1.5).is_nan() && normal_quantile(f64::NAN).is_nan());
        // The two functions invert each other.
        for p in [0.001, 0.02425, 0.1, 0.3, 0.7, 0.97575, 0.9999] {
            assert!((normal_cdf(normal_quantile(p)) - p).abs() < 1e-7 * p.max(0.01));
        }
    }

    #[test]
    fn wilson_matches_published_intervals() {
        // Wilson (1927) at 95 %: 8 of 10 → [0.4902, 0.9433]; 0 of 10 → [0, 0.2775];
        // 50 of 100 → [0.4038, 0.5962].
        let check = |k, n, low: f64, high: f64| {
            let i = wilson_95(k, n);
            assert!(
                (i.low - low).abs() < 1e-4 && (i.high - high).abs() < 1e-4,
                "{k}/{n}: {i:?}"
            );
        };
        check(8, 10, 0.4902, 0.9433);
        check(0, 10, 0.0, 0.2775);
        check(10, 10, 0.7225, 1.0);
        check(50, 100, 0.4038, 0.5962);
        assert_eq!(
            wilson_95(0, 0),
            Interval {
                low: 0.0,
                high: 1.0
            }
        );
        // Symmetric in successes and failures.
        let (a, b) = (wilson_95(3, 17), wilson_95(14, 17));
        assert!((a.low - (1.0 - b.high)).abs() < 1e-12 && (a.high - (1.0 - b.low)).abs() < 1e-12);
    }

    #[test]
    fn the_binomial_tail_is_exact() {
        assert!((mcnemar_one_sided(8, 2) - 56.0 / 1024.0).abs() < 1e-15);
        // P(X ≥ 60 | n = 100, ½) = 0.028443966820490392 (R: pbinom(59, 100, 0.5, FALSE)).
        assert!(close(
            binomial_upper_tail(60, 100, 0.5),
            0.028_443_966_820_490_392,
            1e-12
        ));
        // P(X ≥ 3 | n = 20, 0.05) = 0.0754836738 (R: pbinom(2, 20, 0.05, FALSE)).
        assert!(close(
            binomial_upper_tail(3, 20, 0.05),
            0.075_483_673_788_496_3,
            1e-12
        ));
        assert_eq!(mcnemar_one_sided(0, 0), 1.0);
        assert!((mcnemar_one_sided(0, 5) - 1.0).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(11, 10, 0.5), 0.0);
        // Large n stays finite and monotone.
        let (a, b) = (
            mcnemar_one_sided(5_100, 4_900),
            mcnemar_one_sided(5_200, 4_800),
        );
        assert!(a.is_finite() && b < a && a < 0.03, "{a} {b}");
    }

    #[test]
    fn mann_whitney_ranks_binned_samples() {
        let fast: Vec<(f64, u64)> = (1..=20).map(|v| (f64::from(v), 5)).collect();
        let slow: Vec<(f64, u64)> = (11..=30).map(|v| (f64::from(v), 5)).collect();
        assert!(mann_whitney_z(&slow, &fast) > 5.0);
        assert!(mann_whitney_z(&fast, &slow) < -5.0);
        assert!(mann_whitney_z(&fast, &fast).abs() < 1e-9);
        assert_eq!(mann_whitney_z(&[(5.0, 10)], &[(5.0, 10)]), 0.0);
        assert_eq!(mann_whitney_z(&[], &fast), 0.0);
        // Without ties, the textbook statistic: {4, 5} all above {1, 2, 3} gives U = 6,
        // against a mean of 3 and a variance of 2·3·6/12 = 3.
        let z = mann_whitney_z(&[(4.0, 1), (5.0, 1)], &[(1.0, 1), (2.0, 1), (3.0, 1)]);
        assert!((z - 3.0 / 3.0f64.sqrt()).abs() < 1e-9, "{z}");
        // With ties: a = {1, 2, 2}, b = {2, 3}: mid-ranks 1, 3, 3 | 3, 5 → U_a = 7 − 6 = 1;
        // mean 3; variance 3·2/12 · (6 − (27 − 3)/20) = 2.4.
        let z = mann_whitney_z(&[(1.0, 1), (2.0, 2)], &[(2.0, 1), (3.0, 1)]);
        assert!((z - (1.0 - 3.0) / 2.4f64.sqrt()).abs() < 1e-9, "{z}");
        assert_eq!(binned_median(&fast), Some(10.0));
        assert_eq!(binned_median(&[(3.0, 1), (1.0, 1), (2.0, 1)]), Some(2.0));
        assert_eq!(binned_median(&[]), None);
    }

    #[test]
    fn the_bootstrap_is_seeded_and_one_sided() {
        let worse = vec![-1.0; 20];
        let better = vec![1.0; 20];
        assert!(paired_bootstrap_p(&worse, 999, 7) < 0.01);
        assert!(paired_bootstrap_p(&better, 999, 7) > 0.99);
        let mixed: Vec<f64> = (0..40)
            .map(|i| if i % 3 == 0 { -1.0 } else { 0.5 })
            .collect();
        assert_eq!(
            paired_bootstrap_p(&mixed, 500, 42),
            paired_bootstrap_p(&mixed, 500, 42)
        );
        assert_eq!(paired_bootstrap_p(&[], 100, 1), 1.0);
    }

    /// A seeded generator for the drift tests (xorshift64*), so they need no dependency.
    fn uniforms(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed.max(1);
        (0..n)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    fn normals(seed: u64, n: usize, mean: f64) -> Vec<f64> {
        uniforms(seed, n)
            .iter()
            .map(|u| mean + normal_quantile(u.clamp(1e-12, 1.0 - 1e-12)))
            .collect()
    }

    #[test]
    fn jensen_shannon_matches_its_definition() {
        assert_eq!(jensen_shannon(&[5, 5], &[5, 5]), Some(0.0));
        assert!((jensen_shannon(&[1, 0], &[0, 1]).unwrap() - 1.0).abs() < 1e-12);
        // [1/2, 1/2] against [1, 0]: 1.5 − 0.75·log2(3) − … = 0.311278 bits.
        assert!((jensen_shannon(&[1, 1], &[1, 0]).unwrap() - 0.311_278).abs() < 1e-6);
        assert_eq!(jensen_shannon(&[0, 0], &[1, 0]), None);
    }

    /// PSI on pure noise (two samples of 500 from one normal distribution) and on shifts of
    /// half and three quarters of a standard deviation, 400 seeded trials each: the
    /// false-alarm rate at the warning threshold stays under 1 %, a 0.5σ shift warns and a
    /// 0.75σ shift alerts at least 99 % of the time (the rates are printed with
    /// `--nocapture`; measured: 0/400 false alarms, 0.5σ alerting 350/400 at 0.2).
    #[test]
    fn psi_rarely_warns_on_noise_and_catches_a_half_sigma_shift() {
        let trials = 400;
        let (mut false_alarms, mut warned, mut alerted, mut half_alerted) = (0, 0, 0, 0);
        for t in 0..trials {
            let reference = normals(2 * t + 1, 500, 0.0);
            let same = normals(2 * t + 2, 500, 0.0);
            let half = psi(&reference, &normals(2 * t + 2, 500, 0.5), 10).unwrap();
            let three_quarters = psi(&reference, &normals(2 * t + 2, 500, 0.75), 10).unwrap();
            false_alarms += u64::from(psi(&reference, &same, 10).unwrap() >= PSI_WARN);
            warned += u64::from(half >= PSI_WARN);
            half_alerted += u64::from(half >= PSI_ALERT);
            alerted += u64::from(three_quarters >= PSI_ALERT);
        }
        eprintln!(
            "PSI, n = 500 per window, {trials} trials: false alarms {false_alarms} at {PSI_WARN}; 0.5σ shift warns {warned}, alerts {half_alerted}; 0.75σ shift alerts {alerted}"
        );
        assert!(
            false_alarms * 100 < trials,
            "{false_alarms}/{trials} false alarms"
        );
        assert!(warned * 100 >= trials * 99, "0.5σ warned {warned}/{trials}");
        assert!(
            alerted * 100 >= trials * 99,
            "0.75σ alerted {alerted}/{trials}"
        );
        assert_eq!(psi(&[1.0; 10], &[1.0; 10], 10), Some(0.0));
        // A reference of one repeated value: a shift either way shows.
        assert!(psi(&[24.0; 50], &[13.0; 50], 10).unwrap() > PSI_ALERT);
        assert!(psi(&[24.0; 50], &[30.0; 50], 10).unwrap() > PSI_ALERT);
        assert_eq!(psi(&[], &[1.0], 10), None);
    }
}
