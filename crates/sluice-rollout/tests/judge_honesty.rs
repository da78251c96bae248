//! The canary judge's honesty, by seeded simulation: canaries of a candidate exactly as good as
//! stable (1 % errors each) must rarely be rolled back however often the judge looks, and a
//! candidate at 5 % against stable's 1 % must be caught, and fast. The rules are those of
//! `examples/rollout.yaml`: the error-rate judge at 95 % confidence with 50 samples, and
//! `error_rate <= 0.05` over 60 s with 20 samples, both checked every second, no failure
//! tolerated. Figures are printed for `BENCHMARKS.md` ("Gate honesty").

#![allow(clippy::unwrap_used, reason = "test code")]

use std::collections::VecDeque;

use sluice_rollout::sequential::{ErrorRateTest, Totals, threshold};

/// Requests a second through the gateway.
const RATE: u32 = 20;
/// The canary's steps: (candidate weight in percent, seconds).
const STEPS: [(f64, u32); 3] = [(10.0, 60), (25.0, 60), (50.0, 60)];

/// How one simulated rollout ended: the second a rule rolled it back, if one did, and which.
struct Ending {
    second: Option<u32>,
    by_judge: bool,
}

fn rollout(
    rng: &mut fastrand::Rng,
    stable_rate: f64,
    candidate_rate: f64,
    threshold_rule: bool,
) -> Ending {
    let mut judge = ErrorRateTest::default();
    let (mut candidate, mut stable) = (Totals::default(), Totals::default());
    judge.observe(candidate, stable);
    // The candidate's last 60 one-second buckets, (requests, errors).
    let mut window: VecDeque<(u64, u64)> = VecDeque::new();
    let mut second = 0;
    for (weight, seconds) in STEPS {
        for _ in 0..seconds {
            second += 1;
            let mut bucket = (0, 0);
            for _ in 0..RATE {
                if rng.f64() * 100.0 < weight {
                    let error = rng.f64() < candidate_rate;
                    candidate.judged += 1;
                    candidate.errors += u64::from(error);
                    bucket.0 += 1;
                    bucket.1 += u64::from(error);
                } else {
                    stable.judged += 1;
                    stable.errors += u64::from(rng.f64() < stable_rate);
                }
            }
            window.push_back(bucket);
            if window.len() > 60 {
                window.pop_front();
            }
            let evidence = judge.observe(candidate, stable);
            let (judged_candidate, judged_stable) = judge.judged();
            if judged_candidate.min(judged_stable) >= 50 && evidence > threshold(0.95) {
                return Ending {
                    second: Some(second),
                    by_judge: true,
                };
            }
            let (requests, errors) = window
                .iter()
                .fold((0, 0), |(r, e), (br, be)| (r + br, e + be));
            if threshold_rule && requests >= 20 && errors as f64 / requests as f64 > 0.05 {
                return Ending {
                    second: Some(second),
                    by_judge: false,
                };
            }
        }
    }
    Ending {
        second: None,
        by_judge: false,
    }
}

/// Of `n` rollouts: the share rolled back, the share of those by the judge, and the median
/// second of the rollbacks.
fn simulate(
    seed: u64,
    n: usize,
    stable: f64,
    candidate: f64,
    threshold_rule: bool,
) -> (f64, f64, u32) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let endings: Vec<Ending> = (0..n)
        .map(|_| rollout(&mut rng, stable, candidate, threshold_rule))
        .collect();
    let mut seconds: Vec<u32> = endings.iter().filter_map(|e| e.second).collect();
    seconds.sort_unstable();
    let rolled_back = seconds.len() as f64 / n as f64;
    let by_judge = endings.iter().filter(|e| e.by_judge).count() as f64 / n as f64;
    (
        rolled_back,
        by_judge,
        seconds.get(seconds.len() / 2).copied().unwrap_or(0),
    )
}

#[test]
fn healthy_canaries_are_rarely_rolled_back_and_bad_ones_are_caught() {
    let (judge_noise, _, _) = simulate(1, 400, 0.01, 0.01, false);
    let (rules_noise, _, _) = simulate(2, 400, 0.01, 0.01, true);
    let (judge_power, _, judge_median) = simulate(3, 200, 0.01, 0.05, false);
    let (rules_power, by_judge, rules_median) = simulate(4, 200, 0.01, 0.05, true);
    eprintln!(
        "equal 1 % errors, 400 canaries over 3 min at {RATE} req/s, looks every second: judge alone rolls back {:.1} %, \
         with the 5 % threshold rule {:.1} %; 5 % vs 1 %: judge alone catches {:.1} % (median {} s), \
         both rules {:.1} % (median {} s, {:.1} % by the judge)",
        judge_noise * 100.0,
        rules_noise * 100.0,
        judge_power * 100.0,
        judge_median,
        rules_power * 100.0,
        rules_median,
        by_judge * 100.0
    );
    assert!(judge_noise <= 0.05, "the judge alone: {judge_noise}");
    assert!(rules_noise <= 0.10, "the example's rules: {rules_noise}");
    assert!(judge_power >= 0.95, "the judge alone caught {judge_power}");
    assert!(
        rules_power >= 0.95,
        "the example's rules caught {rules_power}"
    );
}
