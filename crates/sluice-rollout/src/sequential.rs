//! The canary's error-rate judge as an always-valid sequential test, so that checking it every
//! second for as long as a rollout runs keeps the chance of rolling back a healthy canary at
//! the configured α over *all* looks (a fixed-sample test checked again and again does not:
//! at 95 % confidence and one look a second it rolled back a third of healthy canaries).
//!
//! The test conditions on errors. Every request goes to the candidate or to stable by the
//! router, whatever its outcome; so if both versions fail at the same rate, each error that
//! happens in an interval is the candidate's with probability `q`, the candidate's share of
//! the requests judged in that interval. If the candidate fails `r` times as often as stable,
//! that probability is `q' = r·q / (r·q + 1 − q)`. The likelihood ratio of the errors seen
//! so far, under `r` against under equality, is a martingale under equality whose expected
//! value is 1, and so is any weighted mixture over several `r`; by Ville's inequality it
//! ever reaches `1/α` with probability at most `α`. The judge reports its logarithm and fails
//! once it passes `ln(1/α)` (a mixture SPRT, in the manner of the always-valid tests of
//! Johari et al. that Optimizely's and Netflix's sequential experiments use).
//!
//! Conditioning on errors makes the test exact for rare events (no normal approximation with
//! a handful of errors), indifferent to how much traffic each side gets, and correct while
//! the weights move step by step. It uses every judged request since the rule first looked,
//! from the gateway's monotonic counters: a counter that goes backwards (the gateway
//! restarted) starts a new interval from zero, and the evidence so far is kept.

/// Rate ratios (candidate over stable) that the mixture weighs equally: from a slight to a
/// gross regression, so that large ones are caught fast and moderate ones still are.
const RATIOS: [f64; 5] = [1.5, 2.0, 3.0, 5.0, 10.0];

/// What the gateway has judged of one version since its metrics began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests judged (a client leaving or a malformed request is not).
    pub judged: u64,
    /// Errors among them.
    pub errors: u64,
}

/// One rule's running test: the evidence so far and the counters at the last look.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorRateTest {
    /// The log likelihood ratio under each of [`RATIOS`].
    log_ratios: [f64; RATIOS.len()],
    /// The counters at the last look.
    last: Option<(Totals, Totals)>,
    /// Requests judged since the first look, candidate and stable.
    judged: (u64, u64),
}

/// What `now` adds to `before`; a counter that went backwards was reset, and counts from 0.
fn since(before: Totals, now: Totals) -> Totals {
    if now.judged < before.judged || now.errors < before.errors {
        now
    } else {
        Totals {
            judged: now.judged - before.judged,
            errors: now.errors - before.errors,
        }
    }
}

impl ErrorRateTest {
    /// Takes in the counters at one look (the first look only sets the starting point) and
    /// returns the evidence that the candidate fails more often than stable: the logarithm of
    /// the mixture likelihood ratio, 0 before any evidence.
    pub fn observe(&mut self, candidate: Totals, stable: Totals) -> f64 {
        if let Some((last_candidate, last_stable)) = self.last {
            let c = since(last_candidate, candidate);
            let s = since(last_stable, stable);
            self.judged.0 += c.judged;
            self.judged.1 += s.judged;
            let judged = c.judged + s.judged;
            if judged > 0 && c.errors + s.errors > 0 {
                let q = c.judged as f64 / judged as f64;
                if q > 0.0 && q < 1.0 {
                    for (log_ratio, r) in self.log_ratios.iter_mut().zip(RATIOS) {
                        let shifted = r * q / (r * q + 1.0 - q);
                        *log_ratio += c.errors as f64 * (shifted / q).ln()
                            + s.errors as f64 * ((1.0 - shifted) / (1.0 - q)).ln();
                    }
                }
            }
        }
        self.last = Some((candidate, stable));
        self.evidence()
    }

    /// The logarithm of the mixture likelihood ratio so far.
    pub fn evidence(&self) -> f64 {
        let max = self
            .log_ratios
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let mean =
            self.log_ratios.iter().map(|l| (l - max).exp()).sum::<f64>() / RATIOS.len() as f64;
        (max + mean.ln()).max(0.0)
    }

    /// Requests judged since the first look: the candidate's, then stable's.
    pub fn judged(&self) -> (u64, u64) {
        self.judged
    }
}

/// The evidence threshold for a false-rollback rate of `1 − confidence` over all looks.
pub fn threshold(confidence: f64) -> f64 {
    (1.0 / (1.0 - confidence).max(f64::MIN_POSITIVE)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(judged: u64, errors: u64) -> Totals {
        Totals { judged, errors }
    }

    #[test]
    fn errors_on_the_candidate_beyond_its_share_raise_the_evidence() {
        let mut test = ErrorRateTest::default();
        assert_eq!(test.observe(totals(0, 0), totals(0, 0)), 0.0);
        // Half the traffic each; the candidate has every one of 8 errors.
        let evidence = test.observe(totals(400, 8), totals(400, 0));
        assert!(evidence > threshold(0.95), "{evidence}");
        // Errors spread by share leave it where it was or lower.
        let mut fair = ErrorRateTest::default();
        fair.observe(totals(0, 0), totals(0, 0));
        assert!(fair.observe(totals(100, 1), totals(900, 9)) < 0.5);
    }

    #[test]
    fn a_restarted_gateway_counts_from_zero_and_keeps_the_evidence() {
        let mut test = ErrorRateTest::default();
        test.observe(totals(1000, 10), totals(1000, 10));
        let before = test.observe(totals(1100, 16), totals(1100, 10));
        let after = test.observe(totals(50, 3), totals(50, 0));
        assert!(after > before, "{before} then {after}");
        assert_eq!(test.judged(), (150, 150));
    }

    #[test]
    fn the_threshold_is_the_log_of_one_over_alpha() {
        assert!((threshold(0.95) - 20f64.ln()).abs() < 1e-12);
    }
}
