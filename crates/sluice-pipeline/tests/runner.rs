//! The runner against real processes: parallelism, skipping, allowed failures, retries,
//! timeouts that stop a whole process group, `finally` stages, and cancellation.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::time::Duration;

use sluice_config::{Document, MapEnv};
use sluice_pipeline::{Pipeline, Report, RunOptions, State, run};
use tokio::sync::watch;

fn pipeline(text: &str) -> Pipeline {
    let document = Document::parse("pipeline.yaml", text, &MapEnv::default()).unwrap();
    Pipeline::from_document(&document).unwrap_or_else(|e| panic!("{e}"))
}

async fn run_in(dir: &std::path::Path, text: &str) -> Report {
    let (_stop, cancel) = watch::channel(false);
    run(&pipeline(text), &options(dir), cancel, |_| {}).await
}

fn options(dir: &std::path::Path) -> RunOptions {
    RunOptions {
        max_parallel: 4,
        log_dir: dir.to_owned(),
        grace: Duration::from_millis(500),
    }
}

fn state(report: &Report, name: &str) -> State {
    report
        .outcomes
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#?}"))
        .state
}

#[tokio::test]
async fn independent_stages_overlap_and_dependents_wait() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_in(
        dir.path(),
        "stages:\n  a: {run: sleep 0.5}\n  b: {run: sleep 0.5}\n  c: {run: 'true', needs: [a, b]}\n",
    )
    .await;
    assert!(report.passed, "{report:#?}");
    let at = |name: &str| {
        let o = report.outcomes.iter().find(|o| o.name == name).unwrap();
        (o.started.unwrap(), o.started.unwrap() + o.duration)
    };
    let ((a0, a1), (b0, b1), (c0, _)) = (at("a"), at("b"), at("c"));
    assert!(a0 < b1 && b0 < a1, "a and b overlap: {report:#?}");
    assert!(c0 >= a1 && c0 >= b1, "c waits for both: {report:#?}");
    assert!(report.duration < Duration::from_millis(950), "{report:#?}");
}

#[tokio::test]
async fn a_failure_skips_its_dependents_stops_new_work_and_finally_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    let report = run_in(
        dir.path(),
        &format!(
            "stages:\n  bad: {{run: 'exit 3'}}\n  after: {{run: 'true', needs: [bad]}}\n  later: {{run: 'true', needs: [slow]}}\n  slow: {{run: sleep 0.3}}\nfinally:\n  notify: {{run: 'echo $SLUICE_PIPELINE_STATUS > {}'}}\n",
            status.display()
        ),
    )
    .await;
    assert!(!report.passed);
    assert_eq!(state(&report, "bad"), State::Failed);
    assert_eq!(state(&report, "after"), State::Skipped);
    assert_eq!(
        state(&report, "slow"),
        State::Succeeded,
        "running stages finish"
    );
    assert_eq!(
        state(&report, "later"),
        State::Cancelled,
        "no new work after a failure"
    );
    assert_eq!(state(&report, "notify"), State::Succeeded);
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "failed");
    let bad = report.outcomes.iter().find(|o| o.name == "bad").unwrap();
    assert_eq!(bad.exit_code, Some(3));
    assert_eq!(report.outcomes.last().unwrap().name, "notify");
}

#[tokio::test]
async fn allowed_failures_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let report = run_in(
        dir.path(),
        &format!(
            "stages:\n  docs: {{run: 'exit 3', allow_failure: true}}\n  codes: {{run: 'exit 4', allow_failure: [4]}}\n  flaky: {{run: 'echo x >> {c}; [ $(wc -l < {c}) -ge 3 ]', retry: {{limit: 2, backoff: 10ms}}}}\n  next: {{run: 'true', needs: [docs, codes, flaky]}}\n",
            c = count.display()
        ),
    )
    .await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(state(&report, "docs"), State::Failed);
    assert_eq!(state(&report, "next"), State::Succeeded);
    let flaky = report.outcomes.iter().find(|o| o.name == "flaky").unwrap();
    assert_eq!((flaky.state, flaky.attempts), (State::Succeeded, 3));
    let log = std::fs::read_to_string(dir.path().join("flaky.log")).unwrap();
    assert!(log.contains("--- attempt 3 ---"), "{log}");

    let report = run_in(
        dir.path(),
        "stages:\n  strict: {run: 'exit 5', allow_failure: [4], retry: {limit: 1}}\n",
    )
    .await;
    assert!(!report.passed);
    let strict = &report.outcomes[0];
    assert_eq!(
        (strict.state, strict.attempts, strict.allowed),
        (State::Failed, 2, false)
    );
    assert_eq!(strict.reason, "exited 5 after 2 attempts");
}

#[tokio::test]
async fn a_timeout_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild");
    let report = run_in(
        dir.path(),
        &format!(
            "stages:\n  slow: {{run: 'sh -c \"trap \\\"\\\" TERM; sleep 30\" & echo $! > {}; wait', timeout: 300ms}}\n",
            pid_file.display()
        ),
    )
    .await;
    assert_eq!(state(&report, "slow"), State::TimedOut, "{report:#?}");
    assert!(report.duration < Duration::from_secs(5), "{report:#?}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    // Gone, or a zombie waiting for init to reap it.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    assert!(
        state.is_none_or(|s| s == "Z"),
        "the grandchild {pid} (which ignores SIGTERM) still runs: {stat}"
    );
}

#[tokio::test]
async fn cancelling_stops_running_stages_and_runs_finally() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, cancel) = watch::channel(false);
    let pipeline = pipeline(
        "stages:\n  long: {run: sleep 30}\n  next: {run: 'true', needs: [long]}\nfinally:\n  clean: {run: 'true'}\n",
    );
    let options = options(dir.path());
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop.send(true);
        stop
    });
    let report = run(&pipeline, &options, cancel, |_| {}).await;
    let _ = stopper.await;
    assert!(!report.passed);
    assert_eq!(state(&report, "long"), State::Cancelled);
    assert_eq!(state(&report, "next"), State::Cancelled);
    assert_eq!(state(&report, "clean"), State::Succeeded);
    assert!(report.duration < Duration::from_secs(5), "{report:#?}");
}
