//! Who drives a run: one controller per rollout (a second is refused, saying who holds it),
//! and runs whose process died show as interrupted instead of running for ever.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Gateway, Simulate, sluice};

fn kill_hard(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn runs_text(store: &std::path::Path) -> String {
    let output = sluice()
        .arg("--store")
        .arg(store)
        .args(["store", "runs"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_controller_for_a_live_rollout_is_refused_and_a_dead_ones_run_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulate::start();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: stable, url: \"{0}\", model: stable}}\n      - {{name: candidate, url: \"{0}\", model: candidate}}\n    split: {{weights: {{stable: 100, candidate: 0}}}}\n",
            sim.base_url
        ),
    )
    .unwrap();
    let store = dir.path().join("sluice.db");
    let gateway = Gateway::start(&config, &store);
    let spec = dir.path().join("held.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: held\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps: [{{set_weight: 10}}, {{pause: {{}}}}]\n",
            gateway.admin
        ),
    )
    .unwrap();
    let start = || {
        sluice()
            .arg("--store")
            .arg(&store)
            .args(["rollout", "start"])
            .arg(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start();
    wait_for("the first controller's run", || {
        runs_text(&store).contains("running")
    });

    let second = start().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("driven by another controller")
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );
    assert!(!runs_text(&store).contains("interrupted"));

    // Killed, its run shows as interrupted, and the next controller takes it over at once.
    kill_hard(&mut first);
    assert!(
        runs_text(&store).contains("interrupted"),
        "{}",
        runs_text(&store)
    );
    let mut third = start();
    wait_for("the run to be driven again", || {
        !runs_text(&store).contains("interrupted")
    });
    let output = sluice()
        .arg("--store")
        .arg(&store)
        .args(["store", "runs", "--kind", "rollout", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        1,
        "resumed, not started anew: {runs}"
    );
    kill_hard(&mut third);
}

#[test]
fn a_killed_eval_shows_as_interrupted_and_store_info_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, "models:\n  slow: {default: ok, ttft_ms: 2000}\n").unwrap();
    let sim = Simulate::with_config(&sim_path);
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "providers:\n  - id: openai:chat:slow\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{{q}}']\ntests:\n  - vars: {q: one}\n  - vars: {q: two}\n",
    )
    .unwrap();
    let store = dir.path().join("sluice.db");
    let mut eval = sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .arg("--store")
        .arg(&store)
        .args(["eval", "-j", "1", "-c"])
        .arg(&suite)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the eval run", || runs_text(&store).contains("running"));
    assert!(!runs_text(&store).contains("interrupted"));
    // Resuming a run another live process is working on is refused.
    let runs = common::stored_runs(&store, "eval");
    let id = runs[0]["id"].as_str().unwrap().to_owned();
    let resumed = sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .arg("--store")
        .arg(&store)
        .args(["eval", "--resume", &id, "-c"])
        .arg(&suite)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is still being run by"), "{stderr}");
    kill_hard(&mut eval);
    let text = runs_text(&store);
    assert!(
        text.contains("interrupted") && !text.contains("running"),
        "{text}"
    );
    let info = sluice()
        .arg("--store")
        .arg(&store)
        .args(["store", "info"])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("(1 interrupted)") && info.contains("write-ahead log"),
        "{info}"
    );
}
