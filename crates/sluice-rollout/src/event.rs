//! A rollout's history as typed events. Each is stored as one store event (`kind` is the
//! variant's name, `payload` its fields) and read back through [`RolloutEvent::read`], so the
//! controller, the CLI and anything else that reads a rollout (a dashboard, a pipeline) share
//! one definition instead of indexing JSON by field name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_gateway::metrics::WindowStats;
use sluice_store::{Event, NewEvent};

use crate::machine::{Action, Input, Outcome, State};

/// An operator's command to a running rollout, sent through the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Skip the current pause, or (`full`) every remaining step.
    Promote {
        /// Go straight to 100 %.
        #[serde(default)]
        full: bool,
    },
    /// Pause by hand.
    Pause,
    /// Undo a manual pause.
    Resume,
    /// Roll back now.
    Abort {
        /// Why (the default says it was by hand).
        #[serde(default)]
        reason: Option<String>,
    },
}

impl Command {
    /// The command's verb, as typed on the command line.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Promote { .. } => "promote",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Abort { .. } => "abort",
        }
    }

    /// The state machine's input for this command.
    pub fn input(&self) -> Input {
        match self {
            Command::Promote { full } => Input::Promote { full: *full },
            Command::Pause => Input::Pause,
            Command::Resume => Input::Resume,
            Command::Abort { reason } => Input::Abort {
                reason: reason
                    .clone()
                    .unwrap_or_else(|| "aborted by hand".to_owned()),
            },
        }
    }
}

/// Which instance a process event is about, and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceEvent {
    /// `stable` or `candidate`.
    pub version: String,
    /// The instance's index in the spec.
    pub index: usize,
    /// Its base URL.
    pub url: String,
    /// Its process id.
    pub pid: u32,
    /// Its log file, when it was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Set when the instance was stopped (else it was started).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// One line for people.
    pub summary: String,
}

/// The end of a rollout that people are told of (the body alert receivers get).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    /// A key stable across retries (`RUN-promoted`).
    pub id: String,
    /// The rollout's name.
    pub rollout: String,
    /// Its run.
    pub run: String,
    /// The route.
    pub route: String,
    /// The version now serving all of it.
    pub version: String,
    /// One line for people.
    pub summary: String,
}

/// Both versions' live windows when a rollout rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackMetrics {
    /// Stable's window over the last five minutes.
    pub stable: Option<WindowStats>,
    /// The candidate's.
    pub candidate: Option<WindowStats>,
}

/// A rollback, with what triggered it and both versions' windows at the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// A key stable across retries (`RUN-rollback`).
    pub id: String,
    /// The rollout's name.
    pub rollout: String,
    /// Its run.
    pub run: String,
    /// The route.
    pub route: String,
    /// The version traffic left.
    pub from_version: String,
    /// The version traffic went back to.
    pub to_version: String,
    /// The rule (or `manual abort`) that triggered it.
    pub trigger: String,
    /// Why.
    pub reason: String,
    /// Both versions' windows, when the gateway could be read.
    pub metrics: Option<RollbackMetrics>,
    /// When, Unix ms.
    pub at_ms: i64,
    /// One line for people.
    pub summary: String,
}

/// What a rollout's run stores as its config when it starts, and what a resumed controller,
/// `rollout retry` and `rollout undo` read back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The route steered.
    #[serde(default)]
    pub route: String,
    /// The stable version (as resolved, for registry references).
    #[serde(default)]
    pub stable: String,
    /// The candidate version (as resolved).
    #[serde(default)]
    pub candidate: String,
    /// The gateway's admin API, when the rollout runs outside the gateway.
    #[serde(default)]
    pub admin_url: Option<String>,
    /// The steps, for people.
    #[serde(default)]
    pub steps: String,
    /// The rules, for people.
    #[serde(default)]
    pub rules: Vec<String>,
    /// The spec's text, when it was read from a file.
    #[serde(default)]
    pub spec_yaml: Option<String>,
    /// The registry side, for rollouts of registered versions.
    #[serde(default)]
    pub registry: Option<crate::registry_link::RegistryLink>,
}

impl RunConfig {
    /// A stored run's config; empty fields where it stored none.
    pub fn of(run: &sluice_store::Run) -> Self {
        serde_json::from_value(run.config.clone()).unwrap_or_default()
    }
}

/// One event of a rollout's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum RolloutEvent {
    /// The runbook, written when the run started.
    Runbook {
        /// Markdown.
        markdown: String,
    },
    /// A transition of the state machine, stored before its actions are carried out.
    State {
        /// The state after it.
        state: State,
        /// What the controller must do.
        #[serde(default)]
        actions: Vec<Action>,
        /// What caused it (none for the initial state).
        #[serde(default)]
        input: Option<Input>,
    },
    /// An operator's command.
    Command(Command),
    /// The gateway's weights differed from the stored state and were set again.
    Reasserted {
        /// The weights the gateway had.
        found: BTreeMap<String, f64>,
        /// The candidate's stored weight, set again.
        candidate_weight: u32,
    },
    /// A rule was measured.
    Measurement {
        /// The rule, as written.
        rule: String,
        /// Its index in the spec.
        index: usize,
        /// What it found.
        outcome: Outcome,
        /// The value measured, when there was one.
        value: Option<f64>,
        /// How many samples it rests on.
        samples: u64,
        /// One line for people.
        detail: String,
    },
    /// An instance was started or stopped.
    Instance(InstanceEvent),
    /// The candidate was promoted.
    Promoted(Promoted),
    /// The rollout rolled back.
    Rollback(Box<Rollback>),
    /// A finished rollout was undone by hand.
    Undo {
        /// The version now serving the route.
        to_version: String,
        /// When, Unix ms.
        at_ms: i64,
        /// One line for people.
        summary: String,
    },
}

/// A stored event that is not a rollout event this build reads.
#[derive(Debug, thiserror::Error)]
#[error("event {seq} (`{kind}`) is not a rollout event this build reads: {source}")]
pub struct UnreadableEvent {
    /// Its sequence number.
    pub seq: i64,
    /// Its kind.
    pub kind: String,
    /// What did not fit.
    #[source]
    pub source: serde_json::Error,
}

impl RolloutEvent {
    /// Reads a stored event.
    pub fn read(event: &Event) -> Result<Self, UnreadableEvent> {
        let tagged = serde_json::json!({"kind": event.kind, "payload": event.payload});
        serde_json::from_value(tagged).map_err(|source| UnreadableEvent {
            seq: event.seq,
            kind: event.kind.clone(),
            source,
        })
    }

    /// The store event that records this one under `subject`.
    pub fn to_new(&self, subject: &str) -> NewEvent {
        let (kind, payload) = match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => (
                map.remove("kind")
                    .and_then(|k| k.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                map.remove("payload").unwrap_or(Value::Null),
            ),
            _ => (String::new(), Value::Null),
        };
        NewEvent {
            subject: subject.to_owned(),
            kind,
            payload,
        }
    }

    /// The variant's stored kind (`state`, `command`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            RolloutEvent::Runbook { .. } => "runbook",
            RolloutEvent::State { .. } => "state",
            RolloutEvent::Command(_) => "command",
            RolloutEvent::Reasserted { .. } => "reasserted",
            RolloutEvent::Measurement { .. } => "measurement",
            RolloutEvent::Instance(_) => "instance",
            RolloutEvent::Promoted(_) => "promoted",
            RolloutEvent::Rollback(_) => "rollback",
            RolloutEvent::Undo { .. } => "undo",
        }
    }

    /// The body alert receivers get: the payload with its `kind`.
    pub fn alert_body(&self) -> Value {
        let NewEvent { kind, payload, .. } = self.to_new("");
        match payload {
            Value::Object(mut map) => {
                map.insert("kind".to_owned(), Value::String(kind));
                Value::Object(map)
            }
            other => other,
        }
    }
}

/// The rollout events among stored events, in order; events of other kinds (or from another
/// build) are skipped.
pub fn read_all(events: &[Event]) -> Vec<(i64, RolloutEvent)> {
    events
        .iter()
        .filter_map(|e| RolloutEvent::read(e).ok().map(|r| (e.seq, r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: i64, new: NewEvent) -> Event {
        Event {
            seq,
            subject: new.subject,
            kind: new.kind,
            payload: new.payload,
            at_ms: 0,
        }
    }

    #[test]
    fn every_event_round_trips_through_the_store_shape() {
        let events = [
            RolloutEvent::Runbook {
                markdown: "# r".into(),
            },
            RolloutEvent::State {
                state: State::new(),
                actions: vec![Action::SetWeight(10)],
                input: Some(Input::Pause),
            },
            RolloutEvent::Command(Command::Promote { full: true }),
            RolloutEvent::Command(Command::Abort { reason: None }),
            RolloutEvent::Reasserted {
                found: BTreeMap::from([("a".into(), 100.0)]),
                candidate_weight: 10,
            },
            RolloutEvent::Measurement {
                rule: "error_rate < 0.01".into(),
                index: 0,
                outcome: Outcome::Pass,
                value: Some(0.001),
                samples: 500,
                detail: "ok".into(),
            },
            RolloutEvent::Instance(InstanceEvent {
                version: "stable".into(),
                index: 1,
                url: "http://x".into(),
                pid: 42,
                log: None,
                stopped: true,
                summary: "stopped".into(),
            }),
            RolloutEvent::Undo {
                to_version: "a".into(),
                at_ms: 5,
                summary: "undone".into(),
            },
        ];
        for (i, event) in events.iter().enumerate() {
            let new = event.to_new("rollout/r-1");
            assert_eq!(new.kind, event.kind());
            assert_eq!(new.subject, "rollout/r-1");
            let back = RolloutEvent::read(&stored(i as i64, new)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&back, event);
        }
    }

    #[test]
    fn commands_are_stored_as_operators_have_always_sent_them() {
        let new = RolloutEvent::Command(Command::Promote { full: false }).to_new("s");
        assert_eq!(
            new.payload,
            serde_json::json!({"command": "promote", "full": false})
        );
        // An abort without a reason, as older builds stored it, reads with the default.
        let old = Event {
            seq: 1,
            subject: "s".into(),
            kind: "command".into(),
            payload: serde_json::json!({"command": "abort", "reason": null}),
            at_ms: 0,
        };
        match RolloutEvent::read(&old) {
            Ok(RolloutEvent::Command(command)) => assert_eq!(
                command.input(),
                Input::Abort {
                    reason: "aborted by hand".into()
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_foreign_or_malformed_event_is_named_not_guessed() {
        let unknown = Event {
            seq: 7,
            subject: "s".into(),
            kind: "command".into(),
            payload: serde_json::json!({"command": "explode"}),
            at_ms: 0,
        };
        let error = RolloutEvent::read(&unknown).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("event 7 (`command`)")),
            "{error:?}"
        );
        assert!(read_all(&[unknown]).is_empty());
    }

    #[test]
    fn alerts_carry_the_kind() {
        let body = RolloutEvent::Promoted(Promoted {
            id: "r-promoted".into(),
            rollout: "r".into(),
            run: "r-1".into(),
            route: "chat".into(),
            version: "b".into(),
            summary: "promoted".into(),
        })
        .alert_body();
        assert_eq!(body["kind"], "promoted");
        assert_eq!(body["id"], "r-promoted");
    }
}
