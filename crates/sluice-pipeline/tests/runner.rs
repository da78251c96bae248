//! The runner against real processes: parallelism, skipping, allowed failures, retries,
//! timeouts that stop a whole process group, `finally` stages, and cancellation.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::time::Duration;

use sluice_config::Document;
use sluice_pipeline::{Pipeline, Report, RunOptions, State, run};
use tokio::sync::watch;

fn pipeline(text: &str) -> Pipeline {
    let document = Document::parse_literal("pipeline.yaml", text).unwrap();
    Pipeline::from_document(&document).unwrap_or_else(|e| panic!("{e}"))
}

async fn run_in(dir: &std::path::Path, text: &str) -> Report {
    let (_stop, cancel) = watch::channel(false);
    run(&pipeline(text), &options(dir), cancel, |_| {}).await
}

fn options(dir: &std::path::Path) -> RunOptions {
    RunOptions {
        grace: Duration::from_millis(500),
        ..RunOptions::new(dir.to_owned(), dir.to_owned())
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
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "failure");
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

fn outcome<'r>(report: &'r Report, name: &str) -> &'r sluice_pipeline::Outcome {
    report
        .outcomes
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#?}"))
}

#[tokio::test]
async fn conditions_outputs_and_substitutions() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.ci.insert("ref".into(), "refs/heads/feature".into());
    let pipeline = pipeline(
        "stages:
  eval: {run: 'echo pass_rate=0.93 >> $SLUICE_OUTPUT; echo run_id=eval-7 >> $SLUICE_OUTPUT'}
  gate: {run: 'echo ${{ needs.eval.outputs.run_id }} > gate.txt', needs: [eval], if: \"needs.eval.outputs.pass_rate >= 0.9\"}
  deploy: {run: 'true', needs: [gate], if: \"github.ref == 'refs/heads/main'\"}
  bad: {run: 'exit 1', allow_failure: true}
  on_bad: {run: 'true', needs: [bad], if: \"needs.bad.result == 'success'\"}
  broken: {run: 'echo x > version.txt; echo \"$(cat version.txt)\"', outputs: {version: version.txt}}
finally:
  notify: {run: 'echo ${{ pipeline.status }} > status.txt'}
  only_on_failure: {run: 'true', if: failure()}
",
    );
    let (_stop, cancel) = watch::channel(false);
    let report = run(&pipeline, &options, cancel, |_| {}).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(outcome(&report, "eval").outputs["pass_rate"], "0.93");
    assert_eq!(state(&report, "gate"), State::Succeeded);
    let gate = std::fs::read_to_string(dir.path().join("gate.txt")).unwrap();
    assert_eq!(gate.trim(), "eval-7");
    assert_eq!(state(&report, "deploy"), State::Skipped);
    assert_eq!(outcome(&report, "deploy").reason, "its `if` is false");
    assert_eq!(
        state(&report, "on_bad"),
        State::Succeeded,
        "allowed is success"
    );
    assert_eq!(outcome(&report, "broken").outputs["version"], "x");
    let status = std::fs::read_to_string(dir.path().join("status.txt")).unwrap();
    assert_eq!(status.trim(), "success");
    assert_eq!(state(&report, "only_on_failure"), State::Skipped);
}

#[tokio::test]
async fn failure_and_always_stages_run_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_in(
        dir.path(),
        "stages:
  test: {run: 'exit 2'}
  triage: {run: 'true', needs: [test], if: failure()}
  report: {run: 'true', needs: [test], if: always()}
  deploy: {run: 'true', needs: [test]}
  unrelated: {run: 'true', needs: [triage], if: success()}
",
    )
    .await;
    assert!(!report.passed);
    assert_eq!(state(&report, "triage"), State::Succeeded);
    assert_eq!(state(&report, "report"), State::Succeeded);
    assert_eq!(state(&report, "deploy"), State::Skipped);
    assert_eq!(state(&report, "unrelated"), State::Skipped);
}

/// A failed stage keeps the outputs it handed back (an eval's run id, say) for the stages
/// that run after it, as a failed GitHub Actions job does.
#[tokio::test]
async fn a_failed_stage_keeps_the_outputs_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_in(
        dir.path(),
        "stages:
  eval: {run: 'echo run_id=eval-9 >> $SLUICE_OUTPUT; exit 1', outputs: {missing: never.txt}}
  triage: {run: 'test ${{ needs.eval.outputs.run_id }} = eval-9', needs: [eval], if: failure()}
",
    )
    .await;
    assert_eq!(state(&report, "eval"), State::Failed);
    assert_eq!(outcome(&report, "eval").outputs["run_id"], "eval-9");
    assert_eq!(state(&report, "triage"), State::Succeeded, "{report:#?}");
}

fn inventory(gpus: u32) -> sluice_pipeline::gpu::Pool {
    sluice_pipeline::gpu::Pool::from_groups(&[sluice_readiness::GpuGroup {
        gpu_type: "H100".into(),
        memory_gb: 80.0,
        count: gpus,
        node: Some("node-a".into()),
        spot: false,
        hourly_price: Some(2.0),
    }])
}

#[tokio::test]
async fn four_gpus_run_two_stages_of_two_and_queue_the_third() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.gpus = inventory(4);
    let stage = |name: &str, priority: i32| {
        format!(
            "  {name}: {{run: 'echo $CUDA_VISIBLE_DEVICES > {name}.gpus; sleep 0.4', gpu: {{count: 2, memory_gb: 40}}, priority: {priority}}}\n"
        )
    };
    let text = format!(
        "stages:\n{}{}{}",
        stage("a", 0),
        stage("b", 0),
        stage("c", 5)
    );
    let pipeline = pipeline(&text);
    assert!(pipeline.check_gpus(&options.gpus).is_empty());
    let (_stop, cancel) = watch::channel(false);
    let report = run(&pipeline, &options, cancel, |_| {}).await;
    assert!(report.passed, "{report:#?}");
    let span = |name: &str| {
        let o = outcome(&report, name);
        (
            o.started.unwrap(),
            o.started.unwrap() + o.duration,
            o.gpu_wait,
        )
    };
    let (a, b, c) = (span("a"), span("b"), span("c"));
    // `c` has the highest priority: it and `a` start at once; `b` waits for GPUs.
    assert!(c.0 < a.1 && a.0 < c.1, "a and c overlap: {report:#?}");
    assert!(b.0 >= a.1.min(c.1), "b waits for two GPUs: {report:#?}");
    assert!(
        b.2 >= Duration::from_millis(300),
        "b's wait is counted: {report:#?}"
    );
    let devices = |name: &str| {
        std::fs::read_to_string(dir.path().join(format!("{name}.gpus")))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_ne!(devices("a"), devices("c"));
    for name in ["a", "b", "c"] {
        assert_eq!(devices(name).split(',').count(), 2);
    }
    let cost = outcome(&report, "a").cost.unwrap();
    assert!(cost > 0.0 && cost < 0.01, "2 GPUs × $2/h × ~0.4 s: {cost}");

    let too_big = pipeline_of("stages:\n  x: {run: 'true', gpu: {count: 5}}\n");
    let problems = too_big.check_gpus(&options.gpus);
    assert!(
        problems[0].contains("stage `x` asks for GPUs that never fit: no node has 5 GPU(s)"),
        "{problems:?}"
    );
}

fn pipeline_of(text: &str) -> Pipeline {
    pipeline(text)
}

#[tokio::test]
async fn a_preempted_spot_stage_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.gpus = inventory(1);
    let report = run_in_with(
        &options,
        "stages:\n  train: {run: 'if [ -f $SLUICE_CHECKPOINT_DIR/step ]; then exit 0; else touch $SLUICE_CHECKPOINT_DIR/step; exit 143; fi', gpu: {count: 1, preempted_exit_codes: [143]}}\n",
    )
    .await;
    let train = outcome(&report, "train");
    assert_eq!(
        (train.state, train.attempts),
        (State::Succeeded, 2),
        "{report:#?}"
    );
    assert!(
        train.reason.contains("preempted 1 time(s)"),
        "{}",
        train.reason
    );
}

/// A spot node's shutdown kills the command with `TERM`: with `preempted_signals` that is a
/// preemption (retried from the checkpoint directory); without, a failure naming the signal.
#[tokio::test]
async fn a_stage_killed_by_a_preemption_signal_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.gpus = inventory(1);
    let train = "if [ -f $SLUICE_CHECKPOINT_DIR/step ]; then exit 0; else touch $SLUICE_CHECKPOINT_DIR/step; kill -TERM $$; fi";
    let report = run_in_with(
        &options,
        &format!("stages:\n  train: {{run: '{train}', gpu: {{count: 1, preempted_signals: [SIGTERM]}}}}\n"),
    )
    .await;
    let outcome_of_train = outcome(&report, "train");
    assert_eq!(
        (outcome_of_train.state, outcome_of_train.attempts),
        (State::Succeeded, 2),
        "{report:#?}"
    );
    let other = tempfile::tempdir().unwrap();
    let mut options = self::options(other.path());
    options.gpus = inventory(1);
    let report = run_in_with(
        &options,
        &format!("stages:\n  train: {{run: '{train}', gpu: {{count: 1}}}}\n"),
    )
    .await;
    let failed = outcome(&report, "train");
    assert_eq!(failed.state, State::Failed, "{report:#?}");
    assert_eq!(failed.reason, "killed by signal 15");
    let bad = Document::parse_literal(
        "pipeline.yaml",
        "stages:\n  t: {run: 'true', gpu: {count: 1, preempted_signals: [TERM, SIGNOPE]}}\n",
    )
    .unwrap();
    let error = Pipeline::from_document(&bad).unwrap_err().to_string();
    assert!(error.contains("`SIGNOPE` is not a signal"), "{error}");
    assert!(error.contains("pipeline.yaml:2:"), "{error}");
}

async fn run_in_with(options: &RunOptions, text: &str) -> Report {
    let (_stop, cancel) = watch::channel(false);
    run(&pipeline(text), options, cancel, |_| {}).await
}

#[tokio::test]
async fn a_cached_stage_is_restored_until_an_input_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.cache = Some(sluice_pipeline::cache::CacheDir::new(
        dir.path().join("cache"),
    ));
    std::fs::write(dir.path().join("data.txt"), "one").unwrap();
    let text = "stages:\n  build: {run: 'echo built >> runs.txt; cp data.txt out.txt; echo digest=abc >> $SLUICE_OUTPUT', cache: {inputs: ['*.txt'], paths: [out.txt]}}\n  use: {run: 'test ${{ needs.build.outputs.digest }} = abc', needs: [build]}\n";
    let first = run_in_with(&options, text).await;
    assert_eq!(state(&first, "build"), State::Succeeded, "{first:#?}");
    std::fs::remove_file(dir.path().join("out.txt")).unwrap();
    // runs.txt is an input too: keep it out of the way so the key only sees data.txt.
    std::fs::rename(dir.path().join("runs.txt"), dir.path().join("runs.log")).unwrap();
    let second = run_in_with(&options, text).await;
    assert_eq!(state(&second, "build"), State::Cached, "{second:#?}");
    assert_eq!(
        state(&second, "use"),
        State::Succeeded,
        "outputs restored: {second:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "one"
    );
    assert!(
        !dir.path().join("runs.txt").exists(),
        "the command did not run"
    );
    std::fs::write(dir.path().join("data.txt"), "two").unwrap();
    let third = run_in_with(&options, text).await;
    assert_eq!(state(&third, "build"), State::Succeeded, "{third:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "two"
    );
}

#[tokio::test]
async fn a_resumed_run_keeps_what_ended_well() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "stages:\n  a: {run: 'echo a >> ran.txt'}\n  b: {run: 'echo b >> ran.txt', needs: [a]}\n";
    let first = run_in(dir.path(), text).await;
    let mut options = options(dir.path());
    options.resumed = first
        .outcomes
        .iter()
        .filter(|o| o.name == "a")
        .map(|o| (o.name.clone(), o.clone()))
        .collect();
    let second = run_in_with(&options, text).await;
    assert!(second.passed);
    assert!(outcome(&second, "a").reason.contains("in the run resumed"));
    let ran = std::fs::read_to_string(dir.path().join("ran.txt")).unwrap();
    assert_eq!(ran, "a\nb\nb\n", "only b ran again");
}

#[tokio::test]
async fn a_matrix_stage_runs_once_per_combination_and_its_dependents_wait_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(
        "stages:
  test: {run: 'echo ${{ matrix.python }}-${{ matrix.os }} >> ran.txt', matrix: {python: ['3.10', '3.11'], os: [linux, mac]}}
  report: {run: 'echo ${{ needs.test.result }} > result.txt', needs: [test]}
",
    );
    assert_eq!(pipeline.stages.len(), 5);
    assert!(
        pipeline.stages.contains_key("test (linux, 3.10)"),
        "{:?}",
        pipeline.stages.keys()
    );
    assert_eq!(pipeline.stages["report"].needs.len(), 4);
    let (_stop, cancel) = watch::channel(false);
    let report = run(&pipeline, &options(dir.path()), cancel, |_| {}).await;
    assert!(report.passed, "{report:#?}");
    let mut ran: Vec<String> = std::fs::read_to_string(dir.path().join("ran.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    assert_eq!(ran, ["3.10-linux", "3.10-mac", "3.11-linux", "3.11-mac"]);
    let result = std::fs::read_to_string(dir.path().join("result.txt")).unwrap();
    assert_eq!(result.trim(), "success");
    let only = pipeline.select(&["test".to_owned()], None, None).unwrap();
    assert_eq!(only.stages.len(), 4);

    let document = Document::parse_literal(
        "pipeline.yaml",
        "stages:\n  t: {run: 'echo ${{ matrix.pyton }}', matrix: {python: ['3.10'], empty: []}}\n",
    )
    .unwrap();
    let error = Pipeline::from_document(&document).unwrap_err().to_string();
    assert!(
        error.contains("`matrix.pyton` is not in this stage's `matrix`"),
        "{error}"
    );
    assert!(
        error.contains("stages.t.matrix: `empty` has no values"),
        "{error}"
    );
}
