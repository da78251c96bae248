//! Reloads and restarts of the gateway while rollouts run and after they end: the store's
//! rollout state is the truth, and no reload, restart or stray admin call undoes it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{Gateway, Simulate, exchange, sluice};

const SIM: &str = "models:
  stable: {default: stable answer}
  candidate: {default: candidate answer}
  broken:
    faults: {error_rate: 1.0, error_status: 500}
";

fn gateway_file(path: &Path, sim: &str, candidate_model: &str, weights: (u32, u32)) {
    std::fs::write(
        path,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: stable, url: \"{sim}\", model: stable}}\n      - {{name: candidate, url: \"{sim}\", model: {candidate_model}}}\n    split: {{weights: {{stable: {}, candidate: {}}}}}\n",
            weights.0, weights.1
        ),
    )
    .unwrap();
}

fn weights(gateway: &Gateway) -> (f64, f64) {
    let address = gateway.admin.trim_start_matches("http://");
    let response = exchange(address, "GET /admin/routes HTTP/1.1", "", "");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let routes: Value = serde_json::from_str(body).unwrap();
    let versions = &routes["routes"]["chat"]["versions"];
    (
        versions[0]["weight"].as_f64().unwrap(),
        versions[1]["weight"].as_f64().unwrap(),
    )
}

fn reload(gateway: &Gateway) -> Value {
    let address = gateway.admin.trim_start_matches("http://");
    let response = exchange(
        address,
        "POST /admin/reload HTTP/1.1",
        "content-type: application/json\r\n",
        "",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}

fn spec(dir: &Path, name: &str, admin: &str, steps: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {name}\ngateway: {{admin_url: \"{admin}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps: {steps}\nanalysis:\n  rules:\n    - {{metric: error_rate, max: 0.05, window: 10s, min_samples: 5, interval: 200ms}}\n"
        ),
    )
    .unwrap();
    path
}

/// Chat requests in a loop until `stop`; counts those that did not get a 200.
fn traffic(
    url: &str,
    stop: Arc<AtomicBool>,
) -> (
    std::thread::JoinHandle<()>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
) {
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, f) = (Arc::clone(&sent), Arc::clone(&failed));
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let response = exchange(
                &address,
                "POST /v1/chat/completions HTTP/1.1",
                "content-type: application/json\r\n",
                r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
            );
            s.fetch_add(1, Ordering::Relaxed);
            if !response.starts_with("HTTP/1.1 200") {
                f.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (thread, sent, failed)
}

#[test]
fn a_reload_or_a_restart_never_undoes_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, SIM).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let config = dir.path().join("gateway.yaml");
    // The file gives a failing candidate 10 %: what a reload used to bring back.
    gateway_file(&config, &sim.base_url, "broken", (90, 10));
    let store = dir.path().join("sluice.db");
    let gateway = Gateway::start(&config, &store);
    let stop = Arc::new(AtomicBool::new(false));
    let (thread, _, _) = traffic(&gateway.url, Arc::clone(&stop));
    let spec = spec(
        dir.path(),
        "bad",
        &gateway.admin,
        "[{set_weight: 20}, {pause: {duration: 30s}}]",
    );
    let output = sluice()
        .arg("--store")
        .arg(&store)
        .args(["rollout", "start"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(weights(&gateway), (100.0, 0.0));

    // A reload of the unchanged file keeps the rollback, by SIGHUP and by the admin API.
    gateway.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(weights(&gateway), (100.0, 0.0), "after SIGHUP");
    let report = reload(&gateway);
    assert_eq!(
        report["routes"]["unchanged"],
        serde_json::json!(["chat"]),
        "{report}"
    );
    assert_eq!(weights(&gateway), (100.0, 0.0), "after POST /admin/reload");

    // A restarted gateway takes the rollback from the store, not the file's 10 %.
    drop(gateway);
    let gateway = Gateway::start(&config, &store);
    assert_eq!(weights(&gateway), (100.0, 0.0), "after a restart");

    // A file edited after the rollout is the newer word: its change applies.
    gateway_file(&config, &sim.base_url, "candidate", (70, 30));
    let report = reload(&gateway);
    assert_eq!(
        report["routes"]["changed"],
        serde_json::json!(["chat"]),
        "{report}"
    );
    assert_eq!(weights(&gateway), (70.0, 30.0));
}

#[test]
fn weight_changes_and_reloads_during_a_rollout_fail_no_request_and_leave_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, SIM).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let config = dir.path().join("gateway.yaml");
    gateway_file(&config, &sim.base_url, "candidate", (100, 0));
    let store = dir.path().join("sluice.db");
    let gateway = Gateway::start(&config, &store);
    let stop = Arc::new(AtomicBool::new(false));
    let (thread, sent, failed) = traffic(&gateway.url, Arc::clone(&stop));
    let spec = spec(
        dir.path(),
        "steady",
        &gateway.admin,
        "[{set_weight: 10}, {pause: {duration: 3s}}, {set_weight: 50}, {pause: {duration: 3s}}, {set_weight: 100}]",
    );
    let mut rollout = sluice()
        .arg("--store")
        .arg(&store)
        .args(["rollout", "start"])
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // For four seconds: someone else's weights every 100 ms, and a reload of a file whose
    // weights change every 500 ms.
    let admin = gateway.admin.trim_start_matches("http://").to_owned();
    let chaos_until = Instant::now() + Duration::from_secs(4);
    let mut round = 0u32;
    let mut held = 0;
    while Instant::now() < chaos_until {
        round += 1;
        let stray = round * 7 % 100;
        let response = exchange(
            &admin,
            "PUT /admin/routes/chat/weights HTTP/1.1",
            "content-type: application/json\r\n",
            &format!(r#"{{"stable": {}, "candidate": {stray}}}"#, 100 - stray),
        );
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        if round.is_multiple_of(5) {
            gateway_file(
                &config,
                &sim.base_url,
                "candidate",
                (100 - round % 40, round % 40),
            );
            let report = reload(&gateway);
            held += report["routes"]["held"].as_array().map_or(0, Vec::len);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = rollout.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the rollout did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    rollout
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{out}");
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();

    assert!(sent.load(Ordering::Relaxed) > 100, "too little traffic");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed client requests");
    assert!(held > 0, "reloads during the rollout held the route");
    // The gateway ends where the stored state says: the candidate has everything.
    assert_eq!(weights(&gateway), (0.0, 100.0));
    let runs = common::stored_runs(&store, "rollout");
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "steady")
        .unwrap();
    assert_eq!(run["summary"]["state"]["weight"], 100, "{run}");
    // The controller saw the stray weights and set its own again.
    let mut stream = std::net::TcpStream::connect(&admin).unwrap();
    write!(
        stream,
        "GET /admin/routes HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut routes = String::new();
    stream.read_to_string(&mut routes).unwrap();
    assert!(routes.contains("\"owner\":null"), "released: {routes}");
}

/// A promoted rollout that was undone stays undone when its gateway restarts: the store's undo
/// is newer than the rollout's last weights (a restart used to bring the candidate back).
#[test]
fn a_restart_keeps_an_undo() {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, SIM).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let config = dir.path().join("gateway.yaml");
    gateway_file(&config, &sim.base_url, "candidate", (100, 0));
    let store = dir.path().join("sluice.db");
    let gateway = Gateway::start(&config, &store);
    let spec = spec(dir.path(), "good", &gateway.admin, "[{set_weight: 100}]");
    let run = |args: &[&str]| {
        sluice()
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&["rollout", "start", spec.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(weights(&gateway), (0.0, 100.0), "promoted");
    let output = run(&["rollout", "undo", "good"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(weights(&gateway), (100.0, 0.0), "undone");
    drop(gateway);
    let gateway = Gateway::start(&config, &store);
    assert_eq!(weights(&gateway), (100.0, 0.0), "after a restart");
}

/// Two gateway replicas on one store (`--replica`): a rollout steers one of them, and the
/// other follows its weights through the store within about a second — every step, the
/// promotion, and the undo.
#[test]
fn replicas_on_one_store_follow_a_rollout_that_steers_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, SIM).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let config = dir.path().join("gateway.yaml");
    gateway_file(&config, &sim.base_url, "candidate", (100, 0));
    let store = dir.path().join("sluice.db");
    let replica = ["--replica".as_ref()];
    let (steered, _) = Gateway::start_with(&config, &store, &replica);
    let (follower, _) = Gateway::start_with(&config, &store, &replica);
    let spec = spec(
        dir.path(),
        "spread",
        &steered.admin,
        "[{set_weight: 30}, {pause: {duration: 4s}}, {set_weight: 100}]",
    );
    let mut rollout = sluice()
        .arg("--store")
        .arg(&store)
        .args(["rollout", "start"])
        .arg(&spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = |gateway: &Gateway, want: (f64, f64), what: &str| {
        let deadline = Instant::now() + Duration::from_secs(3);
        while weights(gateway) != want {
            assert!(
                Instant::now() < deadline,
                "{what}: {:?}, not {want:?}",
                weights(gateway)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until(&steered, (70.0, 30.0), "the steered replica at 30 %");
    until(&follower, (70.0, 30.0), "the other replica at 30 %");
    assert!(rollout.wait().unwrap().success());
    until(&follower, (0.0, 100.0), "the other replica promoted");
    let output = sluice()
        .arg("--store")
        .arg(&store)
        .args(["rollout", "undo", "spread"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    until(&steered, (100.0, 0.0), "the steered replica undone");
    until(&follower, (100.0, 0.0), "the other replica undone");
    // Weights set by hand on a replica stay: the store has nothing newer to say.
    let admin = follower.admin.trim_start_matches("http://").to_owned();
    let response = exchange(
        &admin,
        "PUT /admin/routes/chat/weights HTTP/1.1",
        "content-type: application/json\r\n",
        r#"{"stable": 90, "candidate": 10}"#,
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(weights(&follower), (90.0, 10.0));
}
