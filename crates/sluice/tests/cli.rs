//! End-to-end tests of the `sluice` binary over loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{Simulate, sluice};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_only_working_commands_and_version_prints() {
    let output = run(sluice().arg("--help"));
    assert!(output.status.success());
    let help = stdout(&output);
    for command in ["quickstart", "simulate", "chat", "store"] {
        assert!(help.contains(command), "{help}");
    }
    let version = run(sluice().arg("--version"));
    assert_eq!(
        stdout(&version).trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = run(sluice().arg("frobnicate"));
    assert_eq!(output.status.code(), Some(2));
    let output = run(sluice().args(["chat", "--model", "m", "hi", "--log-format", "xml"]));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn simulate_and_chat_over_loopback() {
    let sim = Simulate::with_args(&[
        "--config",
        repo_root().join("examples/sim.yaml").to_str().unwrap(),
        "--seed",
        "1",
    ]);
    let output = run(sluice().args([
        "chat",
        "--base-url",
        &sim.base_url,
        "--model",
        "stable",
        "What is the capital of France?",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "Paris.");
    let timing = stderr(&output);
    assert!(
        timing.contains("TTFT") && timing.contains("(usage)"),
        "{timing}"
    );

    let output = run(sluice().args([
        "chat",
        "--base-url",
        &sim.base_url,
        "--model",
        "stable",
        "--no-stream",
        "--json",
        "ping",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["text"], "pong");
    assert_eq!(json["tokens"]["completion_source"], "usage");
    assert!(json["timing"]["e2e_ms"].as_f64().unwrap() >= 50.0);

    let output = run(sluice().args([
        "chat",
        "--base-url",
        &sim.base_url,
        "--model",
        "missing",
        "hi",
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("404") && stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );

    let status = sim.terminate();
    assert!(status.success(), "simulate exited with {status}");
}

#[test]
fn a_bad_simulator_config_names_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.yaml");
    std::fs::write(&path, "models:\n  a:\n    ttft_ms: fast\n    tokens_per_secnd: 3\n  b:\n    script: [{answer: x}]\n").unwrap();
    let output = run(sluice().args([
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--config",
        path.to_str().unwrap(),
    ]));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    let file = path.display().to_string();
    assert!(
        message.contains(&format!("{file}:3:14: models.a.ttft_ms")),
        "{message}"
    );
    assert!(message.contains(&format!("{file}:4:5: models.a.tokens_per_secnd: unknown field `tokens_per_secnd`, did you mean `tokens_per_second`?")), "{message}");
    assert!(
        !message.contains("panicked") && !message.contains("RUST_BACKTRACE"),
        "{message}"
    );

    std::fs::write(&path, "models:\n  a: [1, 2\n").unwrap();
    let output = run(sluice().args([
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--config",
        path.to_str().unwrap(),
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid YAML"),
        "{}",
        stderr(&output)
    );

    let output = run(sluice().args([
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--config",
        "/nonexistent/sim.yaml",
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/nonexistent/sim.yaml")
            && stderr(&output).contains("cannot read file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_endpoint_is_one_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let output = run(sluice().args([
        "chat",
        "--base-url",
        &format!("http://{address}/v1"),
        "--model",
        "m",
        "--max-retries",
        "0",
        "hi",
    ]));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.starts_with("error: cannot connect to"), "{message}");
    assert!(message.contains(&address.to_string()), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn an_api_key_comes_from_a_named_variable_and_is_never_printed() {
    let sim = Simulate::with_args(&[]);
    let output = run(sluice()
        .args([
            "--log-level",
            "trace",
            "chat",
            "--base-url",
            &sim.base_url,
            "--model",
            "any",
            "--api-key-env",
            "MY_KEY",
            "--json",
            "hello",
        ])
        .env("MY_KEY", "sk-proj-cli-secret-1234567890"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stdout(&output).contains("cli-secret") && !stderr(&output).contains("cli-secret"));
    assert!(
        stderr(&output).contains("Sending request."),
        "trace logs missing: {}",
        stderr(&output)
    );
    let output = run(sluice().args([
        "chat",
        "--base-url",
        &sim.base_url,
        "--model",
        "any",
        "--api-key-env",
        "UNSET_KEY_VAR",
        "hi",
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("`UNSET_KEY_VAR`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let output = run(sluice().args([
        "--log-format",
        "json",
        "--log-level",
        "info",
        "--store",
        store.to_str().unwrap(),
        "store",
        "info",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    let logs = stderr(&output);
    assert!(!logs.is_empty());
    for line in logs.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string());
    }
}

#[test]
fn quickstart_runs_locally_and_records_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let output = run(sluice().args(["--store", store.to_str().unwrap(), "quickstart", "--json"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        summary["summary"]["chat"]["answer"],
        "The capital of France is Paris."
    );
    assert_eq!(summary["summary"]["json_answer_valid"], true);
    assert_eq!(summary["summary"]["eval_gate"]["stable"]["passed"], true);
    assert_eq!(
        summary["summary"]["bench"]["stable"]["thresholds_passed"],
        true
    );
    assert_eq!(
        summary["summary"]["bench"]["candidate"]["thresholds_passed"],
        false
    );
    let canary = &summary["summary"]["canary"];
    assert_eq!(canary["rolled_back"], true, "{canary:#}");
    assert_eq!(canary["final_candidate_weight"], 0.0, "{canary:#}");
    assert!(canary["detected_ms"].as_u64().is_some(), "{canary:#}");
    assert_eq!(
        summary["summary"]["eval_gate"]["candidate"]["passed"],
        false
    );
    let run_id = summary["run_id"].as_str().unwrap();
    let output = run(sluice().args([
        "--store",
        store.to_str().unwrap(),
        "store",
        "runs",
        "--json",
    ]));
    let runs: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let find = |id: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no run {id} in {runs:#}"))
    };
    assert_eq!(find(run_id)["status"], "passed");
    // The steps ran as a pipeline, recorded with the runs its stages made; its files stay.
    let pipeline = &summary["summary"]["pipeline"];
    let stages: Vec<(&str, &str)> = pipeline["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    for expected in [
        ("eval-stable", "succeeded"),
        ("eval-candidate", "failed"),
        ("bench-stable", "succeeded"),
        ("bench-candidate", "failed"),
        ("canary", "failed"),
    ] {
        assert!(stages.contains(&expected), "{expected:?} not in {stages:?}");
    }
    assert_eq!(
        find(pipeline["run_id"].as_str().unwrap())["kind"],
        "pipeline"
    );
    for gate in ["eval_gate", "bench"] {
        let id = summary["summary"][gate]["stable"]["run_id"]
            .as_str()
            .unwrap();
        assert_eq!(find(id)["status"], "passed");
    }
    assert!(dir.path().join("quickstart/pipeline.yaml").is_file());
    assert!(dir.path().join("quickstart/logs/canary.log").is_file());
    // The canary's rollout is a run of its own, rolled back.
    let rollout = find(canary["rollout_run"].as_str().unwrap());
    assert_eq!(rollout["kind"], "rollout");
    assert_eq!(rollout["status"], "failed");
}

/// The official `openai` Python SDK talks to `sluice simulate`. `.ci/run` installs the SDK and
/// sets `SLUICE_REQUIRE_OPENAI_SDK=1`, so there a missing SDK fails the test; elsewhere the
/// test says it was skipped.
#[test]
fn the_openai_python_sdk_talks_to_the_simulator() {
    if !common::openai_sdk_available() {
        return;
    }
    let sim = Simulate::with_args(&[
        "--config",
        repo_root().join("examples/sim.yaml").to_str().unwrap(),
    ]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_sdk.py");
    let output = run(Command::new("python3").arg(script).arg(&sim.base_url));
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("all checks passed"));
}

#[test]
fn validate_checks_model_yaml_files_and_its_exit_code_is_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("models/chat-small");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(
        good.join("model.yaml"),
        "name: chat-small\nversion: 1.0.0\narchitecture: llama\nresources: {memory_gb: 24, gpu_count: 1, gpu_type: L4}\n",
    )
    .unwrap();
    let ok = sluice().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 file(s) checked: 1 valid, 0 invalid"));

    let bad = dir.path().join("models/broken");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("model.yaml"),
        "name: broken\nversion: one\narchitecture: llama\nresources: {memory_gb: 8, gpu_count: 4, gpu_type: L4}\n",
    )
    .unwrap();
    let failed = sluice().arg("validate").arg(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(
        text.contains("broken/model.yaml:2:10: version: expected a version MAJOR.MINOR.PATCH"),
        "{text}"
    );
    assert!(
        text.contains("model.yaml:4:24: resources.memory_gb: expected at least 8 GB per GPU"),
        "{text}"
    );
    let github = sluice()
        .args(["validate", "--format", "github"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&github.stdout).contains(",line=2,col=10::version: expected"),
        "{}",
        String::from_utf8_lossy(&github.stdout)
    );
    let json = sluice()
        .args(["validate", "--format", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["files"].as_array().map(Vec::len), Some(2));

    let missing = sluice()
        .arg("validate")
        .arg(dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
