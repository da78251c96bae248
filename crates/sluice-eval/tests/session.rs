//! The eval session as a library: a row reaches a report only after its sink stored it, a
//! sink that fails stops the run with nothing unstored reported, and a resumed run runs only
//! what was not stored.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sluice_config::{Document, MapEnv};
use sluice_eval::compare::KeyResult;
use sluice_eval::report::ReportFiles;
use sluice_eval::session::{self, RowSink, Session, SessionError, StoredRun};
use sluice_eval::{EvalRow, RunOptions};
use sluice_sim::{SimConfig, SimServer, Simulator};
use sluice_store::{RunId, RunStatus, Store};

async fn simulator() -> SimServer {
    let document =
        Document::parse("sim.yaml", "models:\n  echo: {}\n", &MapEnv::default()).unwrap();
    let config = SimConfig::from_document(&document).unwrap();
    Simulator::start(config, Some(7), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn suite(base_url: &str, tests: usize) -> Arc<sluice_eval::Suite> {
    let tests: String = (0..tests)
        .map(|i| format!("  - {{vars: {{q: 'question {i}'}}, assert: [{{type: contains, value: question}}]}}\n"))
        .collect();
    let text = format!(
        "providers: [{{id: 'openai:chat:echo', config: {{apiBaseUrl: '{base_url}'}}}}]\nprompts: ['{{{{q}}}}']\ntests:\n{tests}"
    );
    Arc::new(
        sluice_eval::suite::parse("suite.yaml", &text, Path::new("."), &MapEnv::default()).unwrap(),
    )
}

fn session(suite: Arc<sluice_eval::Suite>) -> Session {
    Session {
        suite,
        options: RunOptions {
            max_concurrency: Some(4),
            ..RunOptions::default()
        },
        gate: session::gate(None, 0, false).unwrap(),
        baseline: None,
        confidence: 0.95,
        tolerance: None,
    }
}

/// A sink that keeps rows in memory, records every call, and fails from the `fail_at`-th
/// batch on.
#[derive(Default, Clone)]
struct Recording {
    stored: Arc<Mutex<Vec<u64>>>,
    batches: Arc<Mutex<usize>>,
    fail_at: Option<usize>,
}

#[async_trait]
impl RowSink for Recording {
    async fn store(&mut self, rows: &[EvalRow]) -> Result<(), SessionError> {
        let mut batches = self.batches.lock().unwrap();
        *batches += 1;
        if self.fail_at.is_some_and(|n| *batches >= n) {
            return Err(SessionError::Run("the store is gone".into()));
        }
        self.stored
            .lock()
            .unwrap()
            .extend(rows.iter().map(|r| r.seq));
        Ok(())
    }

    async fn finish(&mut self, _: RunStatus, _: serde_json::Value) -> Result<(), SessionError> {
        Ok(())
    }

    async fn flaky_in_history(
        &mut self,
        _: &BTreeMap<String, KeyResult>,
    ) -> Result<Vec<String>, SessionError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_row_is_stored_before_any_report_shows_it() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    let mut files = ReportFiles::create(std::slice::from_ref(&rows)).unwrap();
    let mut sink = Recording::default();
    let checker = sink.clone();
    let path = rows.clone();
    // Every time progress is reported, every row in the report file is already stored.
    let mut progress = move |_done: usize, _errors: u64| {
        let stored = checker.stored.lock().unwrap().clone();
        for seq in reported_so_far(&path) {
            assert!(
                stored.contains(&seq),
                "row {seq} reported before it was stored"
            );
        }
    };
    let finished = session(suite(&sim.base_url(), 40))
        .run("r", Vec::new(), &mut sink, &mut files, &mut progress)
        .await
        .unwrap();
    assert_eq!(finished.summary.total.total(), 40);
    assert!(finished.passed);
    files.finish(&finished.report()).unwrap();
    let mut stored = sink.stored.lock().unwrap().clone();
    stored.sort_unstable();
    let mut shown = reported_so_far(&rows);
    shown.sort_unstable();
    assert_eq!(stored, shown);
    assert_eq!(shown.len(), 40);
    sim.shutdown().await;
}

/// The rows a report file holds so far (a buffered writer may not have written them all).
fn reported_so_far(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|row| row["seq"].as_u64())
        .collect()
}

#[tokio::test]
async fn a_store_that_fails_stops_the_run_and_reports_nothing_unstored() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    let mut files = ReportFiles::create(std::slice::from_ref(&rows)).unwrap();
    let mut sink = Recording {
        fail_at: Some(1),
        ..Recording::default()
    };
    let result = session(suite(&sim.base_url(), 10))
        .run("r", Vec::new(), &mut sink, &mut files, &mut |_, _| {})
        .await;
    assert!(matches!(result, Err(SessionError::Run(_))), "{result:?}");
    drop(files);
    assert!(reported_so_far(&rows).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_resumed_run_runs_only_what_was_not_stored() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("store.db"))
        .await
        .unwrap();
    let suite = suite(&sim.base_url(), 12);
    let session = session(Arc::clone(&suite));
    let plan = sluice_eval::runner::plan_fingerprint(&suite, &session.options);
    // A first process stored four rows and died.
    let first = StoredRun::begin(&store, &suite, Path::new("suite.yaml"), &plan, None)
        .await
        .unwrap();
    let id = first.id().to_owned();
    let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
    sluice_eval::runner::run(&suite, &session.options, sender)
        .await
        .unwrap();
    let mut all = Vec::new();
    while let Some(row) = receiver.recv().await {
        all.push(row);
    }
    all.sort_by_key(|r: &EvalRow| r.seq);
    store
        .append_results(
            &RunId(id.clone()),
            all[..4]
                .iter()
                .map(sluice_eval::runner::to_record)
                .collect(),
        )
        .await
        .unwrap();
    drop(first);
    store.unclaim(&format!("run:{id}")).await.unwrap();
    // The second resumes it: only eight rows are run, twelve are reported.
    let mut resumed = StoredRun::begin(&store, &suite, Path::new("suite.yaml"), &plan, Some(&id))
        .await
        .unwrap();
    let replay = resumed.take_replay().unwrap();
    assert_eq!(replay.len(), 4);
    let mut files = ReportFiles::create(&[]).unwrap();
    let mut ran = 0;
    let finished = session
        .run(&id, replay, &mut resumed, &mut files, &mut |done, _| {
            ran = done
        })
        .await
        .unwrap();
    assert_eq!(finished.summary.total.total(), 12);
    assert_eq!(ran, 12);
    assert_eq!(store.results(&RunId(id.clone())).await.unwrap().len(), 12);
    let run = store.get_run(&RunId(id.clone())).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Passed);
    // A run that is finished cannot be resumed again.
    let again = StoredRun::begin(&store, &suite, Path::new("suite.yaml"), &plan, Some(&id)).await;
    assert!(matches!(again, Err(SessionError::Run(_))));
    sim.shutdown().await;
}
