//! The canary state machine, pure: a [`State`] and an [`Input`] give the next state and the
//! [`Action`]s to carry out. The controller stores each new state with its actions *before*
//! carrying them out, and every action is idempotent (an absolute weight, an alert with an id),
//! so replaying the last stored transition after a crash applies nothing twice.
//!
//! Phases follow Argo Rollouts: `Progressing` while steps run, `Paused` on a pause step or a
//! manual pause, `Healthy` once the candidate has all traffic, `Degraded` after an abort (with
//! `aborted` set and the weight back at 0).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::spec::{Spec, Step};

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Steps are running.
    Progressing,
    /// Waiting: on a pause step or a manual pause.
    Paused,
    /// Finished: the candidate serves all traffic.
    Healthy,
    /// Aborted: traffic is back on stable.
    Degraded,
}

/// A rule's running counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounts {
    /// Failed measurements.
    pub failures: u32,
    /// Measurement errors in a row.
    pub consecutive_errors: u32,
    /// Inconclusive measurements since the last promote or resume.
    #[serde(default)]
    pub inconclusive: u32,
    /// Passing measurements during the current analysis step.
    #[serde(default)]
    pub passes: u32,
}

/// The whole state of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Phase.
    pub phase: Phase,
    /// Index of the next step to run.
    pub step: usize,
    /// The candidate's weight, in percent, as last set.
    pub weight: u32,
    /// On a pause step.
    pub step_pause: bool,
    /// When a timed pause step ends (Unix ms); `None` with `step_pause` waits for promote.
    pub pause_until_ms: Option<i64>,
    /// Paused by hand (on top of any pause step).
    pub manual_pause: bool,
    /// Set once aborted.
    pub aborted: bool,
    /// Counts per rule (by index in the spec).
    pub rules: BTreeMap<usize, RuleCounts>,
    /// The latest reason or message.
    pub message: String,
    /// Transitions so far; also the id of the next one.
    pub version: u64,
    /// Candidate instances started (by index).
    #[serde(default)]
    pub started: BTreeSet<usize>,
    /// Stable instances stopped (by index).
    #[serde(default)]
    pub stopped: BTreeSet<usize>,
    /// Why the rollout is paused, when it is.
    #[serde(default)]
    pub pause_reason: Option<PauseReason>,
    /// The rules of the analysis step running now (the steps wait until they pass).
    #[serde(default)]
    pub analysis: Option<Vec<usize>>,
}

/// Why a rollout waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseReason {
    /// A pause step.
    Step,
    /// `sluice rollout pause`.
    Manual,
    /// A rule's measurements were inconclusive too often.
    Inconclusive,
}

impl State {
    /// A new rollout, before its first step.
    pub fn new() -> Self {
        Self {
            phase: Phase::Progressing,
            step: 0,
            weight: 0,
            step_pause: false,
            pause_until_ms: None,
            manual_pause: false,
            aborted: false,
            rules: BTreeMap::new(),
            message: "started".into(),
            version: 0,
            started: BTreeSet::new(),
            stopped: BTreeSet::new(),
            pause_reason: None,
            analysis: None,
        }
    }

    fn settle_phase(&mut self) {
        if self.is_finished() {
            self.pause_reason = None;
            return;
        }
        (self.phase, self.pause_reason) = if self.manual_pause {
            let reason = match self.pause_reason {
                Some(PauseReason::Inconclusive) => PauseReason::Inconclusive,
                _ => PauseReason::Manual,
            };
            (Phase::Paused, Some(reason))
        } else if self.step_pause {
            (Phase::Paused, Some(PauseReason::Step))
        } else {
            (Phase::Progressing, None)
        };
    }

    /// Whether the rollout has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Healthy | Phase::Degraded)
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// What a rule measurement found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Within bounds.
    Pass,
    /// Out of bounds.
    Fail,
    /// Between the pass and fail bounds.
    Inconclusive,
    /// Too few samples to say.
    NoData,
    /// The source could not be read.
    Error,
}

/// Something that happens to a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// Time passes; steps that can run, run.
    Tick {
        /// Now, Unix ms.
        now_ms: i64,
    },
    /// A rule was measured.
    Measured {
        /// The rule's index in the spec.
        rule: usize,
        /// What it found.
        outcome: Outcome,
        /// Its description, for messages.
        detail: String,
    },
    /// Skip the current pause, or (`full`) every remaining step.
    Promote {
        /// Go straight to 100 %.
        full: bool,
    },
    /// Pause by hand.
    Pause,
    /// Undo a manual pause.
    Resume,
    /// Stop and send all traffic back to stable.
    Abort {
        /// Why.
        reason: String,
    },
}

/// What the controller must do after a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Set the candidate's weight (the stable version gets the rest).
    SetWeight(u32),
    /// Mirror this percent of the route's requests to the candidate (0 stops).
    SetShadow(u32),
    /// Tell people the rollout was rolled back.
    AlertRollback {
        /// Why.
        reason: String,
    },
    /// Tell people the rollout finished.
    AlertPromoted,
    /// Turn the feature flag's segments on or off.
    SetFlag(bool),
    /// Start these candidate instances, wait until healthy, and make the candidate's
    /// upstreams the started ones.
    StartCandidate(Vec<usize>),
    /// Make the stable upstreams the instances still up, then stop these.
    StopStable(Vec<usize>),
    /// Start these stopped stable instances again and give the stable version all of its
    /// instances back.
    RestoreStable(Vec<usize>),
    /// Stop these candidate instances.
    StopCandidate(Vec<usize>),
}

/// The next state and the actions it needs.
pub fn next(spec: &Spec, state: &State, input: &Input) -> (State, Vec<Action>) {
    let mut s = state.clone();
    let mut actions = Vec::new();
    if s.is_finished() {
        return (s, actions);
    }
    match input {
        Input::Tick { now_ms } => {
            if s.step_pause && s.pause_until_ms.is_some_and(|until| *now_ms >= until) {
                s.step_pause = false;
                s.pause_until_ms = None;
            }
            run_steps(spec, &mut s, *now_ms, &mut actions, false);
        }
        Input::Measured {
            rule,
            outcome,
            detail,
        } => {
            let Some(limits) = spec.rules.get(*rule) else {
                return (s, actions);
            };
            let in_step = s
                .analysis
                .as_ref()
                .is_some_and(|rules| rules.contains(rule));
            let counts = s.rules.entry(*rule).or_default();
            if in_step && *outcome == Outcome::Pass {
                counts.passes += 1;
            }
            // Only what decides an abort is state: passes and no-data are in the measurement
            // events, not here (so a healthy rollout stores no transition per measurement).
            match outcome {
                Outcome::Pass | Outcome::NoData => counts.consecutive_errors = 0,
                Outcome::Inconclusive => {
                    counts.inconclusive += 1;
                    counts.consecutive_errors = 0;
                }
                Outcome::Fail => {
                    counts.failures += 1;
                    counts.consecutive_errors = 0;
                }
                Outcome::Error => counts.consecutive_errors += 1,
            }
            let counts = *counts;
            let reason = if counts.failures > limits.failure_limit {
                Some(format!(
                    "analysis failed: {} ({detail}); {} failed measurement(s), {} allowed",
                    limits.describe(),
                    counts.failures,
                    limits.failure_limit
                ))
            } else if counts.consecutive_errors > limits.consecutive_error_limit {
                Some(format!(
                    "analysis errored: {} could not be measured {} times in a row ({detail})",
                    limits.describe(),
                    counts.consecutive_errors
                ))
            } else {
                None
            };
            if reason.is_none()
                && let Some(rules) = &s.analysis
                && rules.iter().all(|i| {
                    let needed = spec.rules.get(*i).map_or(1, |r| r.count);
                    s.rules.get(i).is_some_and(|c| c.passes >= needed)
                })
            {
                s.analysis = None;
                s.message = "step analysis passed".into();
            }
            if let Some(reason) = reason {
                abort(spec, &mut s, reason, &mut actions);
            } else if counts.inconclusive > limits.inconclusive_limit && !s.manual_pause {
                // Argo Rollouts' semantics: an inconclusive analysis waits for a person.
                s.manual_pause = true;
                s.pause_reason = Some(PauseReason::Inconclusive);
                s.message = format!(
                    "paused: {} inconclusive {} time(s) ({detail}); promote or abort",
                    limits.describe(),
                    counts.inconclusive
                );
            }
        }
        Input::Promote { full } => {
            // A promote also skips an analysis step that is running.
            s.analysis = None;
            if *full {
                s.step = spec.steps.len();
                s.step_pause = false;
                s.manual_pause = false;
                s.pause_until_ms = None;
                run_steps(spec, &mut s, 0, &mut actions, true);
                s.message = "promoted in full by hand".into();
            } else if s.step_pause || s.manual_pause {
                s.step_pause = false;
                s.manual_pause = false;
                s.pause_until_ms = None;
                s.message = "promoted past the pause".into();
            }
            clear_inconclusive(&mut s);
        }
        Input::Pause => {
            s.manual_pause = true;
            s.message = "paused by hand".into();
        }
        Input::Resume => {
            if s.manual_pause {
                s.manual_pause = false;
                s.message = "resumed".into();
            }
            clear_inconclusive(&mut s);
        }
        Input::Abort { reason } => abort(spec, &mut s, reason.clone(), &mut actions),
    }
    s.settle_phase();
    if s != *state {
        s.version += 1;
    }
    (s, actions)
}

/// A person has looked: inconclusive counts start again.
fn clear_inconclusive(s: &mut State) {
    for counts in s.rules.values_mut() {
        counts.inconclusive = 0;
    }
}

fn abort(spec: &Spec, s: &mut State, reason: String, actions: &mut Vec<Action>) {
    s.aborted = true;
    s.phase = Phase::Degraded;
    s.step_pause = false;
    s.manual_pause = false;
    s.pause_until_ms = None;
    s.analysis = None;
    s.weight = 0;
    s.message = reason.clone();
    // Traffic first, then mirroring (when the strategy mirrors), then the announcement.
    actions.push(Action::SetWeight(0));
    if spec
        .steps
        .iter()
        .any(|step| matches!(step, Step::Shadow(_)))
    {
        actions.push(Action::SetShadow(0));
    }
    if spec.flag.is_some() {
        actions.push(Action::SetFlag(false));
    }
    actions.push(Action::AlertRollback { reason });
    // Then the processes: stable instances back first, the candidate's stopped last.
    if !s.stopped.is_empty() {
        actions.push(Action::RestoreStable(
            std::mem::take(&mut s.stopped).into_iter().collect(),
        ));
    }
    if !s.started.is_empty() {
        actions.push(Action::StopCandidate(
            std::mem::take(&mut s.started).into_iter().collect(),
        ));
    }
}

/// Runs steps from `s.step` until one has to wait, or all are done.
///
/// At most one weight is set per call: the controller does not tick again until the gateway
/// has taken it, so the stored state never runs ahead of the traffic. A full promotion
/// (`at_once`) goes straight to 100 % and Healthy.
fn run_steps(spec: &Spec, s: &mut State, now_ms: i64, actions: &mut Vec<Action>, at_once: bool) {
    if s.step_pause || s.manual_pause || s.analysis.is_some() {
        return;
    }
    if let Some(step) = spec.steps.get(s.step) {
        s.step += 1;
        match step {
            Step::SetWeight(weight) => {
                s.weight = *weight;
                s.message = format!("set weight {weight}");
                actions.push(Action::SetWeight(*weight));
                return;
            }
            Step::Shadow(percent) => {
                s.message = format!("mirroring {percent} % to the candidate");
                actions.push(Action::SetShadow(*percent));
                return;
            }
            Step::Flag(on) => {
                s.message = format!("feature-flag segments {}", if *on { "on" } else { "off" });
                actions.push(Action::SetFlag(*on));
                return;
            }
            Step::StartCandidate(indices) => {
                s.started.extend(indices.iter().copied());
                s.message = format!("starting candidate instance(s) {indices:?}");
                actions.push(Action::StartCandidate(indices.clone()));
                return;
            }
            Step::Analysis(rules) => {
                for rule in rules {
                    s.rules.entry(*rule).or_default().passes = 0;
                }
                s.analysis = Some(rules.clone());
                s.message = "running the step's analysis".into();
                return;
            }
            Step::StopStable(indices) => {
                s.stopped.extend(indices.iter().copied());
                s.message = format!("stopping stable instance(s) {indices:?}");
                actions.push(Action::StopStable(indices.clone()));
                return;
            }
            Step::Pause(duration) => {
                s.step_pause = true;
                s.pause_until_ms = duration.map(|d| now_ms + d.as_millis() as i64);
                s.message = match duration {
                    Some(d) => format!("paused for {} ms", d.as_millis()),
                    None => "paused until promoted".into(),
                };
                return;
            }
        }
    }
    if s.weight != 100 {
        s.weight = 100;
        actions.push(Action::SetWeight(100));
        if !at_once {
            s.message = "set weight 100".into();
            return;
        }
    }
    s.phase = Phase::Healthy;
    s.message = "promoted: the candidate serves all traffic".into();
    actions.push(Action::AlertPromoted);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::spec::{Metric, Rule};

    fn spec(steps: Vec<Step>) -> Spec {
        Spec {
            name: "r".into(),
            admin_url: Some("http://x".into()),
            admin_token: None,
            route: "chat".into(),
            stable: "a".into(),
            candidate: "b".into(),
            steps,
            rules: vec![Rule {
                min_samples: 10,
                failure_limit: 1,
                consecutive_error_limit: 2,
                ..Rule::gateway(Metric::ErrorRate, Some(0.05), None)
            }],
            cooldown: Duration::ZERO,
            alerts: Vec::new(),
            flag: None,
            instances: Default::default(),
            promote_alias: None,
        }
    }

    fn measured(outcome: Outcome) -> Input {
        Input::Measured {
            rule: 0,
            outcome,
            detail: String::new(),
        }
    }

    #[test]
    fn a_canary_walks_its_steps_and_waits_on_pauses() {
        let spec = spec(vec![
            Step::SetWeight(10),
            Step::Pause(Some(Duration::from_secs(5))),
            Step::SetWeight(50),
            Step::Pause(None),
            Step::SetWeight(100),
        ]);
        let (s, a) = next(&spec, &State::new(), &Input::Tick { now_ms: 1000 });
        assert_eq!((s.phase, s.weight), (Phase::Progressing, 10));
        assert_eq!(a, vec![Action::SetWeight(10)], "one weight per tick");
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 1000 });
        assert_eq!((s.phase, s.pause_until_ms), (Phase::Paused, Some(6000)));
        assert!(a.is_empty());
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 5999 });
        assert!(a.is_empty());
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 6000 });
        assert_eq!((s.phase, s.weight), (Phase::Progressing, 50));
        assert_eq!(a, vec![Action::SetWeight(50)]);
        let (s, _) = next(&spec, &s, &Input::Tick { now_ms: 6000 });
        assert_eq!((s.phase, s.step_pause), (Phase::Paused, true));
        let (s, _) = next(&spec, &s, &Input::Tick { now_ms: 99_999 });
        assert_eq!(
            s.phase,
            Phase::Paused,
            "an indefinite pause waits for promote"
        );
        let (s, _) = next(&spec, &s, &Input::Promote { full: false });
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 100_000 });
        assert_eq!((s.phase, s.weight), (Phase::Progressing, 100));
        assert_eq!(a, vec![Action::SetWeight(100)]);
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 100_000 });
        assert_eq!(s.phase, Phase::Healthy);
        assert_eq!(a, vec![Action::AlertPromoted]);
    }

    #[test]
    fn a_shadow_rollout_mirrors_then_promotes_and_an_abort_stops_mirroring() {
        let spec = spec(crate::spec::shadow_strategy_steps(
            30,
            Duration::from_secs(5),
        ));
        let (s, a) = next(&spec, &State::new(), &Input::Tick { now_ms: 0 });
        assert_eq!((a, s.weight), (vec![Action::SetShadow(30)], 0));
        let (s, _) = next(&spec, &s, &Input::Tick { now_ms: 0 });
        assert_eq!(s.phase, Phase::Paused);
        let (aborted, a) = next(&spec, &s, &Input::Abort { reason: "x".into() });
        assert!(aborted.aborted);
        assert_eq!(&a[..2], &[Action::SetWeight(0), Action::SetShadow(0)]);
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 5000 });
        assert_eq!(a, vec![Action::SetShadow(0)]);
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 5000 });
        assert_eq!((a, s.weight), (vec![Action::SetWeight(100)], 100));
        let (s, _) = next(&spec, &s, &Input::Tick { now_ms: 5000 });
        assert_eq!(s.phase, Phase::Healthy);
    }

    #[test]
    fn failures_and_errors_beyond_their_limits_abort() {
        let spec = spec(vec![Step::SetWeight(20), Step::Pause(None)]);
        let (s, _) = next(&spec, &State::new(), &Input::Tick { now_ms: 0 });
        let (s, a) = next(&spec, &s, &measured(Outcome::Fail));
        assert!(
            a.is_empty() && !s.aborted,
            "one failure is within the limit of 1"
        );
        let (s, _) = next(&spec, &s, &measured(Outcome::NoData));
        let (s, a) = next(&spec, &s, &measured(Outcome::Fail));
        assert!(s.aborted && s.phase == Phase::Degraded && s.weight == 0);
        assert_eq!(a[0], Action::SetWeight(0));
        let (after, a) = next(&spec, &s, &Input::Promote { full: true });
        assert_eq!((after, a.len()), (s, 0), "a finished rollout ignores input");

        let (s, _) = next(&spec, &State::new(), &Input::Tick { now_ms: 0 });
        let (s, _) = next(&spec, &s, &measured(Outcome::Error));
        let (s, _) = next(&spec, &s, &measured(Outcome::Error));
        let (s, _) = next(&spec, &s, &measured(Outcome::Pass));
        let (s, _) = next(&spec, &s, &measured(Outcome::Error));
        let (s, _) = next(&spec, &s, &measured(Outcome::Error));
        assert!(!s.aborted, "a pass resets the errors in a row");
        let (s, _) = next(&spec, &s, &measured(Outcome::Error));
        assert!(s.aborted, "{}", s.message);
    }

    #[test]
    fn a_rolling_rollout_replaces_instances_and_an_abort_puts_them_back() {
        let spec = spec(crate::spec::rolling_steps(2, 2, 1, Duration::from_secs(1)));
        let mut s = State::new();
        let mut all = Vec::new();
        for _ in 0..3 {
            let (n, a) = next(&spec, &s, &Input::Tick { now_ms: 0 });
            all.extend(a);
            s = n;
        }
        assert_eq!(
            all,
            vec![
                Action::StartCandidate(vec![0]),
                Action::SetWeight(50),
                Action::StopStable(vec![0]),
            ]
        );
        let (aborted, a) = next(&spec, &s, &measured(Outcome::Error));
        assert!(!aborted.aborted);
        let (aborted, _) = next(&spec, &aborted, &measured(Outcome::Error));
        let (aborted, a2) = next(&spec, &aborted, &measured(Outcome::Error));
        assert!(a.is_empty() && aborted.aborted, "{}", aborted.message);
        assert_eq!(a2[0], Action::SetWeight(0), "traffic first");
        assert_eq!(
            &a2[2..],
            &[
                Action::RestoreStable(vec![0]),
                Action::StopCandidate(vec![0])
            ]
        );
        assert!(aborted.started.is_empty() && aborted.stopped.is_empty());
        // Healthy: all replaced.
        let mut s = State::new();
        for now_ms in [0, 0, 0, 0, 1000, 1000, 1000, 1000, 1000] {
            s = next(&spec, &s, &Input::Tick { now_ms }).0;
        }
        assert_eq!(s.phase, Phase::Healthy, "{}", s.message);
        assert_eq!(s.started.len(), 2);
        assert_eq!(s.stopped.len(), 2);
    }

    #[test]
    fn an_analysis_step_waits_for_its_passes() {
        let mut spec = spec(vec![
            Step::SetWeight(20),
            Step::Analysis(vec![1]),
            Step::SetWeight(100),
        ]);
        spec.rules.push(Rule {
            step_only: true,
            count: 2,
            ..Rule::gateway(Metric::ErrorRate, Some(0.05), None)
        });
        let pass = Input::Measured {
            rule: 1,
            outcome: Outcome::Pass,
            detail: String::new(),
        };
        let (s, _) = next(&spec, &State::new(), &Input::Tick { now_ms: 0 });
        let (s, _) = next(&spec, &s, &pass);
        assert_eq!(
            s.rules[&1].passes, 0,
            "a pass before the step does not count"
        );
        let (s, _) = next(&spec, &s, &Input::Tick { now_ms: 0 });
        assert_eq!(s.analysis, Some(vec![1]));
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 1 });
        assert!(a.is_empty(), "the steps wait on the analysis");
        let (s, _) = next(&spec, &s, &pass);
        let (s, _) = next(&spec, &s, &measured(Outcome::Pass));
        assert!(
            s.analysis.is_some(),
            "another rule's pass is not this step's"
        );
        let (s, _) = next(&spec, &s, &pass);
        assert_eq!(s.analysis, None, "{}", s.message);
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 2 });
        assert_eq!((a, s.weight), (vec![Action::SetWeight(100)], 100));

        let (s, _) = next(&spec, &State::new(), &Input::Tick { now_ms: 0 });
        let (s, _) = next(&spec, &s, &Input::Tick { now_ms: 0 });
        let fail = Input::Measured {
            rule: 1,
            outcome: Outcome::Fail,
            detail: String::new(),
        };
        let (s, a) = next(&spec, &s, &fail);
        assert!(s.aborted && s.analysis.is_none());
        assert_eq!(a[0], Action::SetWeight(0));
    }

    #[test]
    fn inconclusive_measurements_pause_for_a_person() {
        let mut spec = spec(vec![Step::SetWeight(20), Step::SetWeight(100)]);
        spec.rules[0].pass_max = Some(0.01);
        spec.rules[0].inconclusive_limit = 1;
        assert_eq!(spec.rules[0].judge(0.005), Outcome::Pass);
        assert_eq!(spec.rules[0].judge(0.03), Outcome::Inconclusive);
        assert_eq!(spec.rules[0].judge(0.06), Outcome::Fail);
        let (s, _) = next(&spec, &State::new(), &Input::Tick { now_ms: 0 });
        let inconclusive = measured(Outcome::Inconclusive);
        let (s, _) = next(&spec, &s, &inconclusive);
        assert_eq!(s.phase, Phase::Progressing, "one is within the limit");
        let (s, _) = next(&spec, &s, &inconclusive);
        assert_eq!(
            (s.phase, s.pause_reason),
            (Phase::Paused, Some(PauseReason::Inconclusive))
        );
        let (same, a) = next(&spec, &s, &Input::Tick { now_ms: 1 });
        assert!(a.is_empty() && same.weight == 20, "no step while paused");
        let (s, _) = next(&spec, &s, &Input::Promote { full: false });
        assert_eq!((s.phase, s.pause_reason), (Phase::Progressing, None));
        let (s, _) = next(&spec, &s, &inconclusive);
        assert_eq!(s.phase, Phase::Progressing, "the count started again");
    }

    #[test]
    fn a_feature_flag_abort_turns_the_segments_off() {
        let mut spec = spec(crate::spec::feature_flag_steps(
            &[10, 100],
            Duration::from_secs(1),
        ));
        spec.flag = Some(crate::spec::Flag {
            sticky_key: "user".into(),
            segments: Vec::new(),
        });
        let (s, a) = next(&spec, &State::new(), &Input::Tick { now_ms: 0 });
        assert_eq!(a, vec![Action::SetFlag(true)]);
        let (s, a) = next(&spec, &s, &Input::Tick { now_ms: 0 });
        assert_eq!(a, vec![Action::SetWeight(10)]);
        let (_, a) = next(&spec, &s, &Input::Abort { reason: "x".into() });
        assert_eq!(&a[..2], &[Action::SetWeight(0), Action::SetFlag(false)]);
    }

    /// A reference model: what the weight and the end must be, from the inputs alone.
    fn reference(spec: &Spec, inputs: &[Input]) -> (bool, bool, u32) {
        let (mut failures, mut errors) = (0u32, 0u32);
        let limits = &spec.rules[0];
        let mut weight = 0;
        let (mut step, mut paused_until, mut manual, mut promoted_past) =
            (0usize, None::<i64>, false, false);
        for input in inputs {
            match input {
                Input::Abort { .. } => return (true, false, 0),
                Input::Measured { outcome, .. } => {
                    match outcome {
                        Outcome::Fail => {
                            failures += 1;
                            errors = 0;
                        }
                        Outcome::Error => errors += 1,
                        _ => errors = 0,
                    }
                    if failures > limits.failure_limit || errors > limits.consecutive_error_limit {
                        return (true, false, 0);
                    }
                }
                Input::Promote { full: true } => return (false, true, 100),
                Input::Promote { full: false } => {
                    if paused_until.is_some() || manual {
                        paused_until = None;
                        manual = false;
                        promoted_past = true;
                    }
                }
                Input::Pause => manual = true,
                Input::Resume => manual = false,
                Input::Tick { now_ms } => {
                    if manual {
                        continue;
                    }
                    if let Some(until) = paused_until
                        && (promoted_past || *now_ms >= until)
                    {
                        paused_until = None;
                    }
                    promoted_past = false;
                    if paused_until.is_some() {
                        continue;
                    }
                    // One step per tick, as the controller applies them.
                    match spec.steps.get(step) {
                        Some(Step::SetWeight(w)) => {
                            weight = *w;
                            step += 1;
                        }
                        Some(Step::Pause(d)) => {
                            step += 1;
                            paused_until =
                                Some(d.map_or(i64::MAX, |d| now_ms + d.as_millis() as i64));
                        }
                        // Mirroring, flags and processes move no weight.
                        Some(
                            Step::Shadow(_)
                            | Step::Flag(_)
                            | Step::StartCandidate(_)
                            | Step::StopStable(_),
                        ) => step += 1,
                        Some(Step::Analysis(_)) => {
                            panic!("the property's spec has no analysis step")
                        }
                        None if weight != 100 => weight = 100,
                        None => return (false, true, 100),
                    }
                }
            }
        }
        (false, false, weight)
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            4 => (0i64..20_000).prop_map(|now_ms| Input::Tick { now_ms }),
            3 => prop_oneof![Just(Outcome::Pass), Just(Outcome::Fail), Just(Outcome::NoData), Just(Outcome::Error)]
                .prop_map(measured),
            1 => any::<bool>().prop_map(|full| Input::Promote { full }),
            1 => Just(Input::Pause),
            1 => Just(Input::Resume),
            1 => Just(Input::Abort { reason: "by hand".into() }),
        ]
    }

    proptest! {
        #[test]
        fn the_machine_agrees_with_a_reference_model(mut inputs in proptest::collection::vec(input(), 0..40)) {
            // Time only moves forward.
            let mut now = 0;
            for input in &mut inputs {
                if let Input::Tick { now_ms } = input {
                    now += *now_ms / 10;
                    *now_ms = now;
                }
            }
            let spec = spec(vec![
                Step::SetWeight(10),
                Step::Pause(Some(Duration::from_millis(500))),
                Step::SetWeight(40),
                Step::Pause(None),
                Step::SetWeight(100),
            ]);
            let mut state = State::new();
            let mut last_weight = 0;
            for input in &inputs {
                let (next_state, actions) = next(&spec, &state, input);
                for action in &actions {
                    if let Action::SetWeight(w) = action {
                        last_weight = *w;
                    }
                }
                prop_assert_eq!(next_state.weight, last_weight, "the applied weight is the state's");
                prop_assert!(next_state.version >= state.version);
                state = next_state;
            }
            let (aborted, healthy, weight) = reference(&spec, &inputs);
            prop_assert_eq!(state.aborted, aborted, "{:?}", state);
            prop_assert_eq!(state.phase == Phase::Healthy, healthy, "{:?}", state);
            prop_assert_eq!(state.weight, weight, "{:?}", state);
        }
    }
}
