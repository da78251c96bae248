//! The records the store keeps.

use serde::{Deserialize, Serialize, Serializer};
pub use sluice_core::RunKind;

/// A run id, e.g. `eval-20261123-040105-3fa9c1`: kind, UTC start time, random suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// A fresh id for a run of `kind` started at `unix_ms`.
    pub fn generate(kind: RunKind, unix_ms: i64) -> Self {
        let (date, time) = civil_from_unix_ms(unix_ms);
        Self(format!(
            "{kind}-{date}-{time}-{:06x}",
            fastrand::u32(..0x100_0000)
        ))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `YYYY-MM-DD HH:MM:SSZ` (UTC) for unix milliseconds: how times are shown.
pub fn utc_timestamp(unix_ms: i64) -> String {
    let (date, time) = civil_from_unix_ms(unix_ms);
    format!(
        "{}-{}-{} {}:{}:{}Z",
        &date[..4],
        &date[4..6],
        &date[6..8],
        &time[..2],
        &time[2..4],
        &time[4..6]
    )
}

/// `YYYYMMDD` and `HHMMSS` in UTC (Howard Hinnant's days-to-civil algorithm).
fn civil_from_unix_ms(unix_ms: i64) -> (String, String) {
    let seconds = unix_ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}{month:02}{day:02}"),
        format!(
            "{:02}{:02}{:02}",
            second_of_day / 3600,
            second_of_day % 3600 / 60,
            second_of_day % 60
        ),
    )
}

/// A run's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, not finished (or interrupted: resumable).
    Running,
    /// Finished and the gate passed.
    Passed,
    /// Finished and the gate failed.
    Failed,
    /// Stopped by an error before it could decide.
    Errored,
}

impl RunStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Errored => "errored",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "passed" => RunStatus::Passed,
            "failed" => RunStatus::Failed,
            "errored" => RunStatus::Errored,
            _ => return None,
        })
    }
}

/// A run kind written as its name.
pub(crate) fn kind_name<S: Serializer>(kind: &RunKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

/// A stored run kind read back; a name no kind has means the store was written by something
/// else.
pub(crate) fn stored_kind(
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<RunKind, crate::StoreError> {
    text.parse().map_err(
        |e: sluice_core::UnknownRunKind| crate::StoreError::CorruptJson {
            what: what(),
            reason: e.to_string(),
        },
    )
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// What produces it.
    pub kind: RunKind,
    /// A human name (suite description, bench label).
    pub name: String,
    /// The resolved config, as JSON (secrets already removed by the caller).
    pub config: serde_json::Value,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Id.
    pub id: RunId,
    /// Kind.
    #[serde(serialize_with = "kind_name")]
    pub kind: RunKind,
    /// Name.
    pub name: String,
    /// Status.
    pub status: RunStatus,
    /// Config JSON.
    pub config: serde_json::Value,
    /// Summary JSON, `null` until finished.
    pub summary: serde_json::Value,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds, when finished.
    pub finished_at_ms: Option<i64>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only this kind.
    pub kind: Option<RunKind>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// At most this many (0 means 100).
    pub limit: u32,
}

/// One result of a run: an eval test × prompt × provider × repeat, a bench request, …
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRecord {
    /// Position within the run (unique per run; results of a resumed run continue it).
    pub seq: i64,
    /// A stable identity across runs (e.g. a test id), used to pair results of two runs.
    pub key: String,
    /// Whether it passed, when that applies.
    pub pass: Option<bool>,
    /// Its score, when that applies.
    pub score: Option<f64>,
    /// The error that kept it from producing a verdict.
    pub error: Option<String>,
    /// Everything else.
    pub data: serde_json::Value,
}

/// An event to append to a subject's log (a rollout, a model version, a run).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What the event is about, e.g. `rollout:chat-v2`.
    pub subject: String,
    /// Event type, e.g. `weight_changed`.
    pub kind: String,
    /// Details.
    pub payload: serde_json::Value,
}

/// A lease: `holder` has `name` (a rollout run's controller, a running command) until
/// `expires_at_ms`, unless it renews it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// What is held (`rollout:RUN`, `run:RUN`).
    pub name: String,
    /// Who holds it: host, process id and a start stamp, as [`Lease::holder_here`] makes.
    pub holder: String,
    /// When the holder took it, Unix milliseconds.
    pub acquired_at_ms: i64,
    /// When it lapses unless renewed, Unix milliseconds.
    pub expires_at_ms: i64,
}

impl Lease {
    /// This process as a lease holder: `HOST pid N`.
    pub fn holder_here() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host} pid {}", std::process::id())
    }

    /// Whether it still holds at `now_ms`.
    pub fn live(&self, now_ms: i64) -> bool {
        self.expires_at_ms > now_ms
    }

    /// Whether its holder is a process on this host that has exited (so the lease need not
    /// be waited out). A holder elsewhere is never judged gone: only its lease says.
    pub fn holder_gone(&self) -> bool {
        let here = Self::holder_here();
        let (Some((host, _)), Some((_, pid))) =
            (here.split_once(" pid "), self.holder.split_once(" pid "))
        else {
            return false;
        };
        self.holder.starts_with(&format!("{host} pid "))
            && pid.parse::<u32>().is_ok_and(|pid| {
                pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
    }
}

/// What asking for a lease gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// It is ours until `expires_at_ms` (taken, renewed, or taken over after it lapsed).
    Acquired {
        /// When it lapses unless renewed.
        expires_at_ms: i64,
    },
    /// Someone else holds it.
    Held(Lease),
}

/// A stored event as stored: its payload still JSON text, for readers that take only some
/// of its fields from many events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// Global sequence number, increasing.
    pub seq: i64,
    /// Subject.
    pub subject: String,
    /// Type.
    pub kind: String,
    /// Details, as JSON text.
    pub payload: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

impl RawEvent {
    /// The event with its payload read.
    pub fn parse(self) -> Result<Event, crate::StoreError> {
        Ok(Event {
            payload: crate::parse_json(&self.payload, || format!("events.payload #{}", self.seq))?,
            seq: self.seq,
            subject: self.subject,
            kind: self.kind,
            at_ms: self.at_ms,
        })
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Global sequence number, increasing.
    pub seq: i64,
    /// Subject.
    pub subject: String,
    /// Type.
    pub kind: String,
    /// Details.
    pub payload: serde_json::Value,
    /// Unix milliseconds.
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_carry_kind_and_utc_time() {
        let id = RunId::generate(RunKind::Eval, 1_795_406_465_000);
        assert!(id.as_str().starts_with("eval-20261123-"), "{id}");
        assert_eq!(
            civil_from_unix_ms(0),
            ("19700101".to_owned(), "000000".to_owned())
        );
        assert_eq!(civil_from_unix_ms(951_782_400_000).0, "20000229");
        assert_eq!(utc_timestamp(1_795_406_465_000), "2026-11-23 04:01:05Z");
    }
}
