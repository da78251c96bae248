//! `sluice pipeline run` as a user runs it: the exit code is the verdict, a bad file is
//! refused with its place before anything runs, `--dry-run` runs nothing, and the `finally`
//! stage sees the pipeline's status.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use common::sluice;

const PIPELINE: &str = "stages:
  lint: {run: 'echo linting', tier: quality}
  test: {run: 'sleep 0.2', needs: [lint]}
  docs: {run: 'exit 3', allow_failure: true}
  flaky: {run: 'exit 1', retry: {limit: 1, backoff: 50ms}}
  deploy: {run: 'touch deployed', needs: [test, flaky]}
finally:
  notify: {run: 'echo $SLUICE_PIPELINE_STATUS > status'}
";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_failing_stage_fails_the_run_its_dependents_are_skipped_and_finally_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), PIPELINE).unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--json", "--logs", "logs"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let state = |name: &str| {
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(state("lint"), "succeeded");
    assert_eq!(state("docs"), "failed");
    assert_eq!(state("flaky"), "failed");
    assert_eq!(state("deploy"), "skipped");
    assert_eq!(state("notify"), "succeeded");
    assert!(!dir.path().join("deployed").exists());
    let status = std::fs::read_to_string(dir.path().join("status")).unwrap();
    assert_eq!(status.trim(), "failed");
    let log = std::fs::read_to_string(dir.path().join("logs/lint.log")).unwrap();
    assert_eq!(log.trim(), "linting");

    // Once the failing stage is fixed, the run passes and the table says so.
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        PIPELINE.replace("run: 'exit 1'", "run: 'true'"),
    )
    .unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("pipeline.yaml passed"), "{stdout}");
    assert!(stdout.contains("exited 3 (allowed)"), "{stdout}");
    assert!(dir.path().join("deployed").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("status"))
            .unwrap()
            .trim(),
        "succeeded"
    );
}

#[test]
fn a_bad_pipeline_is_refused_before_anything_runs_and_dry_run_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "stages:\n  a: {run: 'touch ran', needs: [b]}\n  b: {run: 'touch ran', needs: [a]}\n  c: {run: 'touch ran', needs: [lnt]}\n  lint: {run: 'touch ran'}\n",
    )
    .unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the needs form a cycle: a → b → a"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "bad.yaml:4:33: stages.c.needs[0]: `lnt` is no stage of `stages`; did you mean `lint`?"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("ran").exists());

    std::fs::write(dir.path().join("pipeline.yaml"), PIPELINE).unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let plan = text(&output.stdout);
    let position = |needle: &str| {
        plan.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {plan}"))
    };
    assert!(position("stage    lint") < position("stage    test (needs lint)"));
    assert!(position("stage    deploy (needs test, flaky)") < position("finally  notify"));
    assert!(!dir.path().join("status").exists(), "nothing ran");
}
