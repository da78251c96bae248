//! The kinds of run Sluice stores: what a run id starts with, what a stored run's `kind` says,
//! and which runs a model version's lineage may name.

use std::fmt;
use std::str::FromStr;

/// What produced a stored run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunKind {
    /// `sluice eval`.
    Eval,
    /// `sluice bench`.
    Bench,
    /// `sluice redteam`.
    Redteam,
    /// `sluice rollout` (and a gateway's own rollouts).
    Rollout,
    /// `sluice quickstart`'s demonstration.
    Quickstart,
    /// `sluice pipeline run`.
    Pipeline,
}

impl RunKind {
    /// Every kind, in the order they are listed to people.
    pub const ALL: [RunKind; 6] = [
        RunKind::Eval,
        RunKind::Redteam,
        RunKind::Bench,
        RunKind::Rollout,
        RunKind::Quickstart,
        RunKind::Pipeline,
    ];

    /// Its stored name (`eval`, `bench`, `redteam`, `rollout`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Eval => "eval",
            RunKind::Bench => "bench",
            RunKind::Redteam => "redteam",
            RunKind::Rollout => "rollout",
            RunKind::Quickstart => "quickstart",
            RunKind::Pipeline => "pipeline",
        }
    }

    /// Whether a model version's lineage may name a run of this kind as evidence: an eval,
    /// red-team, bench run or a rollout, not a demonstration or a pipeline (whose stages'
    /// own runs are the evidence).
    pub fn is_evidence(self) -> bool {
        !matches!(self, RunKind::Quickstart | RunKind::Pipeline)
    }

    /// The kinds that are evidence, joined with `, `.
    pub fn evidence_names() -> String {
        Self::ALL
            .into_iter()
            .filter(|kind| kind.is_evidence())
            .map(Self::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every kind's name joined with `, `, for "expected one of …" messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no run kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRunKind(pub String);

impl fmt::Display for UnknownRunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown run kind `{}`: expected one of {}",
            self.0,
            RunKind::names()
        )
    }
}

impl std::error::Error for UnknownRunKind {}

impl FromStr for RunKind {
    type Err = UnknownRunKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownRunKind(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_their_kind() {
        for kind in RunKind::ALL {
            assert_eq!(kind.as_str().parse::<RunKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let error = "evals".parse::<RunKind>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown run kind `evals`: expected one of eval, redteam, bench, rollout, quickstart, pipeline"
        );
        assert_eq!(RunKind::evidence_names(), "eval, redteam, bench, rollout");
        assert!(!RunKind::Quickstart.is_evidence());
    }
}
