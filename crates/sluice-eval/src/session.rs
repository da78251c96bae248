//! One eval run from start to verdict, as a library, so that the CLI, the pipeline runner and
//! tests drive the same protocol: check the gate's settings, create (or resume) the stored
//! run and hold it, run the suite, store every row *before* any report shows it, compare with
//! a baseline, look for flakiness across the suite's history, and finish the stored run.
//!
//! Rows reach the store through a [`RowSink`] in batches (at most [`STORE_BATCH`] rows, at
//! most [`STORE_FLUSH_EVERY`] old); only rows a sink has accepted go on to the report files,
//! so a report never shows a row a crash could lose.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use sluice_store::{
    NewRun, ResultRecord, Run, RunHold, RunId, RunKind, RunStatus, Store, StoreError,
};
use tokio::sync::mpsc;

use crate::compare::{KeyResult, Regression};
use crate::lm_eval::TaskMetric;
use crate::report::{FAILING_SAMPLE, Report, ReportError, ReportFiles};
use crate::runner::{self, ProviderSetupError, to_record};
use crate::{EvalRow, Gate, RunOptions, Suite, Summary};

/// Rows written to the store per transaction, at most.
pub const STORE_BATCH: usize = 256;
/// The longest a completed row waits before it is stored (what a crash can lose).
pub const STORE_FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How many earlier runs of the same suite are read for flakiness across history.
const HISTORY_RUNS: usize = 10;

/// Why a session could not reach a verdict.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A flag or option is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A report file could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A provider could not be set up.
    #[error(transparent)]
    Setup(#[from] ProviderSetupError),
    /// No run of this id is stored.
    #[error("no run `{0}` in the store; see `sluice eval list`")]
    NoSuchRun(String),
    /// The run to resume, or a run named as a baseline, is not usable.
    #[error("{0}")]
    Run(String),
    /// The baseline could not be read or does not fit the suite.
    #[error("baseline {name}: {reason}")]
    Baseline {
        /// The file or run named.
        name: String,
        /// Why.
        reason: String,
    },
    /// A stored row of a resumed run does not read as an eval row.
    #[error("stored result #{seq} of `{run}` is not an eval row")]
    StoredRow {
        /// Its sequence number.
        seq: i64,
        /// The run.
        run: String,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// The runner task ended without an answer (it panicked).
    #[error("the eval runner stopped unexpectedly: {0}")]
    Stopped(String),
}

/// The gate from the command line's settings: a pass rate given as a fraction or a
/// percentage (none: every row must pass, or, with a baseline, the comparison alone decides),
/// and the provider errors tolerated.
pub fn gate(pass_rate: Option<f64>, max_errors: u64, baseline: bool) -> Result<Gate, SessionError> {
    let asked = pass_rate.unwrap_or(if baseline { 0.0 } else { 1.0 });
    let min_pass_rate = if asked > 1.0 { asked / 100.0 } else { asked };
    if !(0.0..=1.0).contains(&min_pass_rate) {
        return Err(SessionError::Invalid(format!(
            "--pass-rate must be a fraction between 0 and 1 or a percentage between 0 and 100, found {asked}"
        )));
    }
    Ok(Gate {
        min_pass_rate,
        max_errors,
    })
}

/// Checks the regression test's settings: confidence in `[0.5, 1)`, tolerance in `[0, 1]`.
pub fn check_regression_settings(
    confidence: f64,
    tolerance: Option<f64>,
) -> Result<(), SessionError> {
    if !(0.5..1.0).contains(&confidence) {
        return Err(SessionError::Invalid(format!(
            "--confidence must be at least 0.5 and below 1, found {confidence}"
        )));
    }
    if let Some(tolerance) = tolerance
        && !(0.0..=1.0).contains(&tolerance)
    {
        return Err(SessionError::Invalid(format!(
            "--tolerance must be a fraction between 0 and 1, found {tolerance}"
        )));
    }
    Ok(())
}

/// What a run is compared with.
#[derive(Debug, Clone)]
pub enum Baseline {
    /// Per-key results of a stored run or a JSON report.
    Keyed(BTreeMap<String, KeyResult>),
    /// Task aggregates of an lm-evaluation-harness results file.
    LmEval(Vec<TaskMetric>),
}

impl Baseline {
    /// A baseline file: a Sluice or promptfoo JSON report, or lm-evaluation-harness results
    /// (whose metrics must match the suite's).
    pub fn from_file(path: &Path, suite: &Suite) -> Result<Self, SessionError> {
        let name = path.display().to_string();
        let failed = |reason: String| SessionError::Baseline {
            name: name.clone(),
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read: {e}")))?;
        let report: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| failed(format!("not JSON: {e}")))?;
        if crate::lm_eval::is_results_file(&report) {
            let tasks = crate::lm_eval::read(&report).map_err(failed)?;
            crate::lm_eval::check_matches(&tasks, &suite.metric_names()).map_err(failed)?;
            return Ok(Baseline::LmEval(tasks));
        }
        crate::compare::keyed_from_report(&report)
            .map(Baseline::Keyed)
            .map_err(failed)
    }

    /// A stored eval run's results.
    pub async fn from_run(store: &Store, id: &str) -> Result<Self, SessionError> {
        let (_, records) = stored_run(store, id).await.map_err(|e| match e {
            SessionError::NoSuchRun(_) => SessionError::Run(format!(
                "baseline `{id}` is neither a file nor a run in the store ({}); see `sluice store runs --kind eval`",
                store.location().display()
            )),
            other => other,
        })?;
        Ok(Baseline::Keyed(crate::compare::keyed_from_records(
            &records,
        )))
    }

    fn compare(
        &self,
        keyed: &BTreeMap<String, KeyResult>,
        summary: &Summary,
        confidence: f64,
        tolerance: Option<f64>,
    ) -> Result<Regression, SessionError> {
        Ok(match self {
            Baseline::Keyed(baseline) => Regression::Paired(crate::compare::compare(
                baseline, keyed, confidence, tolerance,
            )),
            Baseline::LmEval(tasks) => Regression::Aggregate(
                crate::lm_eval::compare(tasks, summary, confidence, tolerance).map_err(
                    |reason| SessionError::Baseline {
                        name: "(lm-eval results)".into(),
                        reason,
                    },
                )?,
            ),
        })
    }
}

/// A stored eval run and its results; any other kind of run is refused.
pub async fn stored_run(store: &Store, id: &str) -> Result<(Run, Vec<ResultRecord>), SessionError> {
    let run_id = RunId(id.to_owned());
    let run = store
        .get_run(&run_id)
        .await?
        .ok_or_else(|| SessionError::NoSuchRun(id.to_owned()))?;
    if run.kind != RunKind::Eval {
        return Err(SessionError::Run(format!(
            "run `{id}` is a {} run, not an eval run",
            run.kind
        )));
    }
    let records = store.results(&run_id).await?;
    Ok((run, records))
}

/// What a finished eval run keeps of its summary, read back from the store (a run still
/// going, or one that errored, has none of it).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct StoredSummary {
    /// The counts.
    #[serde(default)]
    pub stats: Option<StoredStats>,
    /// The gate's verdict.
    #[serde(default)]
    pub gate: Option<StoredGate>,
}

/// A finished run's counts.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct StoredStats {
    /// Rows that passed.
    pub successes: u64,
    /// Rows that failed.
    pub failures: u64,
    /// Rows without a verdict.
    pub errors: u64,
}

/// A finished run's gate.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct StoredGate {
    /// Whether it passed.
    #[serde(default)]
    pub passed: bool,
    /// Why not.
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl StoredSummary {
    /// The summary a run stored; empty when it stored none (or one this build cannot read).
    pub fn of(run: &Run) -> Self {
        serde_json::from_value(run.summary.clone()).unwrap_or_default()
    }
}

/// A stored result as the eval row it was; `None` for a record of another shape.
pub fn stored_row(record: &ResultRecord) -> Option<EvalRow> {
    serde_json::from_value(record.data.clone()).ok()
}

/// The test descriptions whose results did not all pass in a stored run (`--filter-failing`).
pub fn failing_tests(records: &[ResultRecord]) -> HashSet<String> {
    records
        .iter()
        .filter(|r| r.pass != Some(true))
        .filter_map(|r| r.key.split(':').next().map(str::to_owned))
        .collect()
}

/// Where rows go, durably, before any report shows them.
#[async_trait]
pub trait RowSink: Send {
    /// Stores these rows; once it returns `Ok`, they survive a crash.
    async fn store(&mut self, rows: &[EvalRow]) -> Result<(), SessionError>;

    /// Records the run's end: its status and what is kept of its summary.
    async fn finish(
        &mut self,
        status: RunStatus,
        summary: serde_json::Value,
    ) -> Result<(), SessionError>;

    /// Keys whose verdicts differ across this run and the last finished runs of the suite.
    async fn flaky_in_history(
        &mut self,
        current: &BTreeMap<String, KeyResult>,
    ) -> Result<Vec<String>, SessionError>;
}

/// A run kept nowhere (`--no-write`).
#[derive(Debug, Default)]
pub struct NoStore;

#[async_trait]
impl RowSink for NoStore {
    async fn store(&mut self, _rows: &[EvalRow]) -> Result<(), SessionError> {
        Ok(())
    }

    async fn finish(&mut self, _: RunStatus, _: serde_json::Value) -> Result<(), SessionError> {
        Ok(())
    }

    async fn flaky_in_history(
        &mut self,
        _current: &BTreeMap<String, KeyResult>,
    ) -> Result<Vec<String>, SessionError> {
        Ok(Vec::new())
    }
}

/// A run in the store, held by this process while it runs.
#[derive(Debug)]
pub struct StoredRun {
    store: Store,
    id: RunId,
    replay: Vec<ResultRecord>,
    _hold: RunHold,
}

impl StoredRun {
    /// Creates the run for `suite` (read from `path`), or resumes `resume`: an interrupted
    /// run of the same plan, whose stored rows are kept and not run again.
    pub async fn begin(
        store: &Store,
        suite: &Suite,
        path: &Path,
        plan: &str,
        resume: Option<&str>,
    ) -> Result<Self, SessionError> {
        let (id, replay) = match resume {
            Some(resume) => {
                let (run, records) = stored_run(store, resume).await?;
                if run.status != RunStatus::Running {
                    return Err(SessionError::Run(format!(
                        "run `{resume}` is already {}; only an interrupted (running) run can be resumed",
                        run.status.as_str()
                    )));
                }
                if run.config["plan"].as_str() != Some(plan) {
                    return Err(SessionError::Run(format!(
                        "the suite or its options changed since run `{resume}` started; resume it with the same suite, --repeat and --filter-pattern, or start a new run"
                    )));
                }
                (run.id, records)
            }
            None => {
                let config = json!({
                    "suite": path.display().to_string(),
                    "providers": suite.providers.iter().map(|p| &p.id).collect::<Vec<_>>(),
                    "prompts": suite.prompts.iter().map(|p| &p.label).collect::<Vec<_>>(),
                    "tests": suite.tests.len(),
                    "tags": suite.tags,
                    "plan": plan,
                });
                let name = if suite.description.is_empty() {
                    path.display().to_string()
                } else {
                    suite.description.clone()
                };
                let id = store
                    .create_run(NewRun {
                        kind: RunKind::Eval,
                        name,
                        config,
                    })
                    .await?;
                (id, Vec::new())
            }
        };
        let hold = store.hold_run(id.as_str()).await?;
        Ok(Self {
            store: store.clone(),
            id,
            replay,
            _hold: hold,
        })
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The rows a resumed run had stored, in order (taken once).
    pub fn take_replay(&mut self) -> Result<Vec<EvalRow>, SessionError> {
        std::mem::take(&mut self.replay)
            .into_iter()
            .map(|record| {
                serde_json::from_value(record.data).map_err(|source| SessionError::StoredRow {
                    seq: record.seq,
                    run: self.id.as_str().to_owned(),
                    source,
                })
            })
            .collect()
    }
}

#[async_trait]
impl RowSink for StoredRun {
    async fn store(&mut self, rows: &[EvalRow]) -> Result<(), SessionError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.store
            .append_results(&self.id, rows.iter().map(to_record).collect())
            .await?;
        Ok(())
    }

    async fn finish(
        &mut self,
        status: RunStatus,
        summary: serde_json::Value,
    ) -> Result<(), SessionError> {
        self.store.finish_run(&self.id, status, summary).await?;
        Ok(())
    }

    async fn flaky_in_history(
        &mut self,
        current: &BTreeMap<String, KeyResult>,
    ) -> Result<Vec<String>, SessionError> {
        let Some(this) = self.store.get_run(&self.id).await? else {
            return Ok(Vec::new());
        };
        let earlier = self
            .store
            .list_runs(sluice_store::RunFilter {
                kind: Some(RunKind::Eval),
                status: None,
                limit: 200,
            })
            .await?;
        let mut seen: BTreeMap<&str, (bool, bool)> = current
            .iter()
            .map(|(key, r)| (key.as_str(), (r.passed > 0, r.passed < r.graded)))
            .collect();
        for run in earlier
            .iter()
            .filter(|r| r.id != this.id && r.name == this.name && r.status != RunStatus::Running)
            .take(HISTORY_RUNS)
        {
            for (key, pass) in self.store.verdicts(&run.id).await? {
                if let (Some(pass), Some(entry)) = (pass, seen.get_mut(key.as_str())) {
                    entry.0 |= pass;
                    entry.1 |= !pass;
                }
            }
        }
        Ok(seen
            .into_iter()
            .filter(|(_, (passed, failed))| *passed && *failed)
            .map(|(key, _)| key.to_owned())
            .collect())
    }
}

/// What one session is asked to do.
#[derive(Debug, Clone)]
pub struct Session {
    /// The compiled suite.
    pub suite: Arc<Suite>,
    /// How to run it.
    pub options: RunOptions,
    /// The gate.
    pub gate: Gate,
    /// What to compare with, if anything.
    pub baseline: Option<Baseline>,
    /// The regression test's confidence.
    pub confidence: f64,
    /// The regression test's relative tolerance.
    pub tolerance: Option<f64>,
}

/// A finished session: everything a report needs.
#[derive(Debug)]
pub struct Finished {
    /// The stored run's id (`not-stored` without a store).
    pub run_id: String,
    /// The suite's description.
    pub description: String,
    /// The aggregates.
    pub summary: Summary,
    /// A sample of the failing rows, in plan order.
    pub failing: Vec<EvalRow>,
    /// The gate applied.
    pub gate: Gate,
    /// The comparison with the baseline.
    pub comparison: Option<Regression>,
    /// Keys that passed in some stored runs of this suite and failed in others.
    pub flaky_in_history: Vec<String>,
    /// Wall time.
    pub duration_s: f64,
    /// Answers replayed from the response cache.
    pub cached: usize,
    /// Whether the gate passed.
    pub passed: bool,
}

impl Finished {
    /// The report of this session.
    pub fn report(&self) -> Report<'_> {
        Report {
            flaky_in_history: &self.flaky_in_history,
            run_id: &self.run_id,
            description: &self.description,
            failing: &self.failing,
            summary: &self.summary,
            gate: &self.gate,
            duration_s: self.duration_s,
            comparison: self.comparison.as_ref(),
        }
    }
}

/// Aggregates kept in memory while rows stream past.
#[derive(Default)]
struct Tally {
    summary: Summary,
    failing: Vec<EvalRow>,
    keyed: BTreeMap<String, KeyResult>,
    cached: usize,
}

impl Tally {
    fn add(&mut self, row: EvalRow) {
        self.summary.add(&row);
        self.cached += usize::from(row.cached);
        crate::compare::add_row(&mut self.keyed, &row);
        if !row.pass && self.failing.len() < FAILING_SAMPLE {
            self.failing.push(row);
        }
    }
}

impl Session {
    /// Runs the session: `replay` (a resumed run's stored rows) counts as if just run, then
    /// every planned item not yet stored runs; each row is stored through `sink`, then written
    /// to `files`; `progress` hears `(done, errors)` after each row. The stored run is
    /// finished with its verdict (or as errored when a provider cannot be set up).
    pub async fn run(
        &self,
        run_id: &str,
        replay: Vec<EvalRow>,
        sink: &mut dyn RowSink,
        files: &mut ReportFiles,
        progress: &mut (dyn FnMut(usize, u64) + Send),
    ) -> Result<Finished, SessionError> {
        let started = Instant::now();
        let mut options = self.options.clone();
        options.skip = replay.iter().map(|row| row.seq).collect();
        let (sender, mut receiver) = mpsc::channel::<EvalRow>(1024);
        let runner = {
            let (suite, options) = (Arc::clone(&self.suite), options.clone());
            tokio::spawn(async move { runner::run(&suite, &options, sender).await })
        };
        let mut tally = Tally::default();
        let mut done = 0;
        for row in replay {
            files.row(&row)?;
            tally.add(row);
            done += 1;
        }
        let mut pending: Vec<EvalRow> = Vec::new();
        let mut last_flush = Instant::now();
        loop {
            let next = tokio::time::timeout(STORE_FLUSH_EVERY, receiver.recv()).await;
            let finished = matches!(next, Ok(None));
            if let Ok(Some(row)) = next {
                pending.push(row);
            }
            if finished
                || pending.len() >= STORE_BATCH
                || (!pending.is_empty() && last_flush.elapsed() >= STORE_FLUSH_EVERY)
            {
                sink.store(&pending).await?;
                last_flush = Instant::now();
                for row in pending.drain(..) {
                    files.row(&row)?;
                    tally.add(row);
                    done += 1;
                    progress(done, tally.summary.total.errors);
                }
            }
            if finished {
                break;
            }
        }
        let setup = runner
            .await
            .map_err(|e| SessionError::Stopped(e.to_string()))?;
        if let Err(error) = setup {
            sink.finish(RunStatus::Errored, json!({"error": error.to_string()}))
                .await?;
            return Err(error.into());
        }
        let Tally {
            summary,
            mut failing,
            keyed,
            cached,
        } = tally;
        failing.sort_by_key(|row| row.seq);
        let comparison = match &self.baseline {
            Some(baseline) => {
                Some(baseline.compare(&keyed, &summary, self.confidence, self.tolerance)?)
            }
            None => None,
        };
        let flaky_in_history = sink.flaky_in_history(&keyed).await?;
        let mut finished = Finished {
            run_id: run_id.to_owned(),
            description: self.suite.description.clone(),
            summary,
            failing,
            gate: self.gate,
            comparison,
            flaky_in_history,
            duration_s: started.elapsed().as_secs_f64(),
            cached,
            passed: false,
        };
        let report = finished.report();
        let (passed, _) = report.verdict();
        let stats = report.summary_json();
        let kept = json!({"stats": stats["stats"], "gate": stats["gate"], "pairs": stats["pairs"], "flaky": stats["flaky"],
                          "named_scores": stats["named_scores"], "comparison": stats["comparison"]});
        let status = if passed {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        sink.finish(status, kept).await?;
        finished.passed = passed;
        Ok(finished)
    }
}
