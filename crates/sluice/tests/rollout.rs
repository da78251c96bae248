//! `sluice rollout` end to end: the real binary steering a real `sluice gateway` in front of
//! `sluice simulate`, with synthetic traffic from `sluice bench` and a local webhook receiver.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{Gateway, Simulate, ask, json_server, receiver, sluice};

const SIM: &str = "models:
  stable: {default: stable answer}
  candidate: {default: candidate answer}
  broken:
    faults: {error_rate: 1.0, error_status: 500}
  slow: {default: candidate answer, ttft_ms: 80}
";

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Simulator, gateway (route `chat`: stable, and the candidate served by `candidate_model`),
/// traffic and a webhook receiver.
struct Setup {
    dir: tempfile::TempDir,
    sim: Simulate,
    /// The gateway's public base URL.
    url: String,
    _gateway: Gateway,
    _traffic: Process,
    admin: String,
    hooks: Arc<Mutex<Vec<Value>>>,
    hook_url: String,
    /// What the spec names as `stable` and `candidate`.
    refs: (String, String),
}

fn setup(candidate_model: &str) -> Setup {
    setup_with(|_, sim_url| {
        format!(
            "      - {{name: stable, url: \"{sim_url}\", model: stable}}\n      - {{name: candidate, url: \"{sim_url}\", model: {candidate_model}}}\n"
        )
    })
}

/// The setup with the route's `versions` list written by `versions(dir, simulator URL)`.
fn setup_with(versions: impl FnOnce(&Path, &str) -> String) -> Setup {
    setup_named(("stable", "candidate"), versions)
}

/// The setup with the gateway's versions named `names` (stable, candidate).
fn setup_named(names: (&str, &str), versions: impl FnOnce(&Path, &str) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, SIM).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let gateway_config = dir.path().join("gateway.yaml");
    std::fs::write(
        &gateway_config,
        format!(
            "routes:\n  chat:\n    versions:\n{}    split: {{weights: {{{}: 100, {}: 0}}, overrides: true, override_token_env: SLUICE_TEST_OVERRIDE_TOKEN}}\n",
            versions(dir.path(), &sim.base_url),
            names.0,
            names.1
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&gateway_config, &dir.path().join("gateway.db"));
    let (url, admin) = (gateway.url.clone(), gateway.admin.clone());
    let traffic = sluice()
        .args([
            "bench",
            "--url",
            &url,
            "--model",
            "chat",
            "--rate",
            "100",
            "--duration",
            "60s",
        ])
        .args([
            "--no-stream",
            "--input-tokens",
            "4",
            "--max-lag",
            "10s",
            "--no-write",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (hook_url, hooks) = receiver();
    // Traffic must flow before any rollout moves weights (the load generator checks the
    // route once before it starts).
    let deadline = Instant::now() + Duration::from_secs(20);
    while stable_requests(&admin, names.0) < 10.0 {
        assert!(Instant::now() < deadline, "no traffic reached the gateway");
        std::thread::sleep(Duration::from_millis(50));
    }
    Setup {
        dir,
        sim,
        url,
        _gateway: gateway,
        _traffic: Process(traffic),
        admin,
        hooks,
        hook_url,
        refs: (names.0.to_owned(), names.1.to_owned()),
    }
}

/// An admin GET, returning the body as JSON.
fn admin_get(admin: &str, path: &str) -> Value {
    let address = admin.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return Value::Null;
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn stable_requests(admin: &str, stable: &str) -> f64 {
    admin_get(admin, "/admin/windows?seconds=60")["windows"]["chat"][stable]["requests"]
        .as_f64()
        .unwrap_or(0.0)
}

impl Setup {
    /// `sluice rollout start SPEC`, killed (and failed) if it runs past 60 s.
    fn start(&self, spec: &Path) -> Output {
        let mut child = self
            .rollout()
            .arg("start")
            .arg(spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().unwrap();
                panic!("the rollout did not end within 60 s:\n{}", text(&output));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    fn spec(&self, name: &str, steps: &str) -> PathBuf {
        self.spec_with(name, &format!("  canary:\n    steps:\n{steps}"))
    }

    fn spec_with(&self, name: &str, strategy: &str) -> PathBuf {
        self.spec_with_extra(name, strategy, "")
    }

    /// A spec with this strategy and more top-level YAML (`instances:`).
    fn spec_with_extra(&self, name: &str, strategy: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: {name}\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: {}\ncandidate: {}\nstrategy:\n{strategy}analysis:\n  rules:\n    - {{metric: error_rate, max: 0.05, window: 10s, min_samples: 5, interval: 200ms}}\nalerts:\n  - {{type: webhook, url: \"{}\"}}\n{extra}",
                self.admin, self.refs.0, self.refs.1, self.hook_url
            ),
        )
        .unwrap();
        path
    }

    fn rollout(&self) -> Command {
        let mut command = sluice();
        command
            .arg("--store")
            .arg(self.dir.path().join("rollout.db"))
            .arg("rollout");
        command
    }

    fn candidate_weight(&self) -> f64 {
        admin_get(&self.admin, "/admin/routes")["routes"]["chat"]["versions"][1]["weight"]
            .as_f64()
            .unwrap_or(-1.0)
    }

    fn wait_for_hook(&self, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(hook) = self
                .hooks
                .lock()
                .unwrap()
                .iter()
                .find(|h| h["kind"] == kind)
            {
                return hook.clone();
            }
            assert!(Instant::now() < deadline, "no {kind} alert arrived");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const STEPS: &str = "      - set_weight: 20\n      - pause: {duration: 1s}\n      - set_weight: 60\n      - pause: {duration: 1s}\n      - set_weight: 100\n";

#[test]
fn a_rollout_of_registered_versions_resolves_aliases_and_moves_production() {
    let mut setup = setup_named(("1.0.0", "2.0.0"), |_, sim_url| {
        format!(
            "      - {{name: 1.0.0, url: \"{sim_url}\", model: stable}}\n      - {{name: 2.0.0, url: \"{sim_url}\", model: candidate}}\n"
        )
    });
    let store = setup.dir.path().join("rollout.db");
    let registry = |args: &[&str]| {
        let output = sluice()
            .arg("--store")
            .arg(&store)
            .arg("registry")
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for version in ["1.0.0", "2.0.0"] {
        registry(&[
            "register",
            "chat",
            "--version",
            version,
            "--artifact",
            "s3://models/chat.bin",
        ]);
    }
    registry(&[
        "alias",
        "set",
        "chat",
        "production",
        "1.0.0",
        "--reason",
        "launch",
    ]);
    setup.refs = ("chat@production".into(), "chat/2.0.0".into());
    let spec = setup.spec("registered", STEPS);
    let output = setup.start(&spec);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(setup.candidate_weight(), 100.0);
    assert_eq!(setup.wait_for_hook("promoted")["version"], "2.0.0");
    let shown: Value =
        serde_json::from_str(&registry(&["show", "chat@production", "--json"])).unwrap();
    assert_eq!(shown["version"], "2.0.0");
    assert_eq!(shown["lineage"][0]["kind"], "rollout");
    let history: Value = serde_json::from_str(&registry(&[
        "alias",
        "history",
        "chat",
        "production",
        "--json",
    ]))
    .unwrap();
    assert_eq!(history[1]["from"], "1.0.0");
    assert_eq!(history[1]["to"], "2.0.0");
    assert_eq!(history[1]["actor"], "rollout:registered");

    // Undo goes back to what production pointed at before, alias and traffic both.
    let undo = setup
        .rollout()
        .args(["undo", "registered"])
        .output()
        .unwrap();
    assert!(undo.status.success(), "{}", text(&undo));
    assert!(
        text(&undo).contains("route back on 1.0.0"),
        "{}",
        text(&undo)
    );
    assert_eq!(setup.candidate_weight(), 0.0);
    let shown: Value =
        serde_json::from_str(&registry(&["show", "chat@production", "--json"])).unwrap();
    assert_eq!(shown["version"], "1.0.0");

    // A reference that does not resolve stops the rollout before it starts.
    setup.refs = ("chat@nope".into(), "chat/2.0.0".into());
    let spec = setup.spec("unresolved", STEPS);
    let output = setup.start(&spec);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("chat has no alias \"nope\""),
        "{}",
        text(&output)
    );
}

#[test]
fn a_healthy_candidate_is_promoted_to_all_traffic() {
    let setup = setup("candidate");
    let spec = setup.spec("healthy", STEPS);
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("weight  20 %") && out.contains("weight  60 %"),
        "{out}"
    );
    assert!(out.contains("rollout healthy: promoted"), "{out}");
    assert_eq!(setup.candidate_weight(), 100.0);
    let hook = setup.wait_for_hook("promoted");
    assert_eq!(hook["version"], "candidate");
    let status = setup
        .rollout()
        .args(["status", "healthy", "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["status"], "passed");
    assert_eq!(status["state"]["phase"], "Healthy");

    // Undo: the whole route back on stable, then (by choice) on the candidate again.
    let undo = setup.rollout().args(["undo", "healthy"]).output().unwrap();
    assert!(undo.status.success(), "{}", text(&undo));
    assert_eq!(setup.candidate_weight(), 0.0);
    let redo = setup
        .rollout()
        .args(["undo", "healthy", "--to-version", "candidate"])
        .output()
        .unwrap();
    assert!(redo.status.success(), "{}", text(&redo));
    assert_eq!(setup.candidate_weight(), 100.0);
    let history = text(
        &setup
            .rollout()
            .args(["history", "healthy"])
            .output()
            .unwrap(),
    );
    assert!(
        history.contains("undone: route chat is all on stable"),
        "{history}"
    );
}

#[test]
fn a_failing_candidate_is_rolled_back_with_an_event_a_snapshot_and_an_alert() {
    let setup = setup("broken");
    let spec = setup.spec("failing", "      - set_weight: 50\n      - pause: {}\n");
    let started = Instant::now();
    let output = setup.start(&spec);
    let took = started.elapsed();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("rolled back (analysis failed: error_rate <= 0.05"),
        "{out}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(setup.candidate_weight(), 0.0);
    let hook = setup.wait_for_hook("rollback");
    assert_eq!(hook["from_version"], "candidate");
    assert_eq!(hook["to_version"], "stable");
    assert_eq!(hook["trigger"], "error_rate <= 0.05");
    assert!(
        hook["metrics"]["candidate"]["error_rate"].as_f64().unwrap() > 0.05,
        "{hook:#}"
    );
    let history = setup
        .rollout()
        .args(["history", "failing"])
        .output()
        .unwrap();
    let history = text(&history);
    assert!(history.contains("rollback"), "{history}");
    assert!(history.contains("error_rate <= 0.05 → Fail"), "{history}");

    // Retry runs the stored spec again, as a new run (and the candidate fails again).
    let retried = setup.rollout().args(["retry", "failing"]).output().unwrap();
    assert_eq!(retried.status.code(), Some(1), "{}", text(&retried));
    let list = setup.rollout().args(["list", "--json"]).output().unwrap();
    let list: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list.iter().filter(|r| r["name"] == "failing").count(), 2);
    let undo = setup.rollout().args(["undo", "nothing"]).output().unwrap();
    assert_eq!(undo.status.code(), Some(2));
}

fn spawn_start(setup: &Setup, spec: &Path) -> Process {
    Process(
        setup
            .rollout()
            .arg("start")
            .arg(spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_phase(setup: &Setup, name: &str, phase: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let output = setup
            .rollout()
            .args(["status", name, "--json"])
            .output()
            .unwrap();
        if let Ok(status) = serde_json::from_slice::<Value>(&output.stdout)
            && status["state"]["phase"] == phase
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {phase}: {}",
            text(&output)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_exit(process: &mut Process) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "the controller did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn manual_promote_and_abort() {
    let setup = setup("candidate");
    let spec = setup.spec(
        "manual",
        "      - set_weight: 10\n      - pause: {}\n      - set_weight: 100\n",
    );
    let mut controller = spawn_start(&setup, &spec);
    wait_phase(&setup, "manual", "Paused");
    assert_eq!(setup.candidate_weight(), 10.0);
    let sent = setup
        .rollout()
        .args(["promote", "manual"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", text(&sent));
    assert_eq!(wait_exit(&mut controller), 0);
    assert_eq!(setup.candidate_weight(), 100.0);

    let spec = setup.spec("aborted", "      - set_weight: 30\n      - pause: {}\n");
    let mut controller = spawn_start(&setup, &spec);
    wait_phase(&setup, "aborted", "Paused");
    let sent = setup
        .rollout()
        .args(["abort", "aborted", "--reason", "not today"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", text(&sent));
    assert_eq!(wait_exit(&mut controller), 1);
    assert_eq!(setup.candidate_weight(), 0.0);
    let hook = setup.wait_for_hook("rollback");
    assert_eq!(hook["trigger"], "manual abort");
    assert_eq!(hook["reason"], "not today");
    let runbook = setup
        .rollout()
        .args(["runbook", "aborted"])
        .output()
        .unwrap();
    let runbook = text(&runbook);
    assert!(
        runbook.contains("# Runbook: rollout `aborted`"),
        "{runbook}"
    );
    assert!(
        runbook.contains("/admin/routes/chat/weights -d '{\"stable\": 100, \"candidate\": 0}'"),
        "{runbook}"
    );
    let watched = setup
        .rollout()
        .args(["status", "aborted", "--watch"])
        .output()
        .unwrap();
    assert!(
        text(&watched).contains("failed  Degraded (aborted)"),
        "{}",
        text(&watched)
    );
    let refused = setup
        .rollout()
        .args(["promote", "aborted"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("no rollout named `aborted` is running"));
}

/// Kill points (ms after each start) from a fixed pseudo-random sequence.
fn kill_points(count: usize, low: u64, high: u64) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            low + x % (high - low)
        })
        .collect()
}

/// Every stored run of a rollout: its status and its events.
fn runs_of(setup: &Setup, name: &str) -> Vec<(String, Vec<Value>)> {
    let list = setup.rollout().args(["list", "--json"]).output().unwrap();
    let list: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    let store = setup.dir.path().join("rollout.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    list.iter()
        .filter(|r| r["name"] == name)
        .map(|r| {
            let run = r["run"].as_str().unwrap().to_owned();
            let events = runtime.block_on(async {
                let store = sluice_store::Store::open_sqlite(&store).await.unwrap();
                sluice_rollout::controller::all_events(&store, &sluice_store::RunId(run.clone()))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| serde_json::json!({"kind": e.kind, "payload": e.payload}))
                    .collect()
            });
            (r["status"].as_str().unwrap().to_owned(), events)
        })
        .collect()
}

/// Each transition of a run stored once, in order, and each weight step applied once.
fn assert_consistent(events: &[Value]) {
    let states: Vec<&Value> = events.iter().filter(|e| e["kind"] == "state").collect();
    let versions: Vec<u64> = states
        .iter()
        .map(|e| e["payload"]["state"]["version"].as_u64().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "each transition stored once: {versions:?}"
    );
    let mut applied = std::collections::BTreeMap::new();
    for state in &states {
        for action in state["payload"]["actions"].as_array().unwrap() {
            if let Some(weight) = action["SetWeight"].as_u64() {
                *applied.entry(weight).or_insert(0) += 1;
            }
        }
    }
    assert!(
        applied.values().all(|n| *n == 1),
        "a weight stored twice: {applied:?}"
    );
}

#[test]
fn a_killed_controller_resumes_without_repeating_a_step() {
    let setup = setup("candidate");
    let steps = "      - set_weight: 30\n      - pause: {duration: 3s}\n      - set_weight: 70\n      - pause: {duration: 3s}\n      - set_weight: 100\n";
    let spec = setup.spec("resumed", steps);
    let points = kill_points(20, 80, 320);
    for kill_after in &points {
        let mut controller = spawn_start(&setup, &spec);
        std::thread::sleep(Duration::from_millis(*kill_after));
        let _ = controller.0.kill();
        let _ = controller.0.wait();
    }
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("resuming"), "{out}");
    assert_eq!(setup.candidate_weight(), 100.0);
    let runs = runs_of(&setup, "resumed");
    assert_eq!(runs.len(), 1, "one rollout across {} kills", points.len());
    let (status, events) = &runs[0];
    assert_eq!(status, "passed");
    assert_consistent(events);
    let promoted = events.iter().filter(|e| e["kind"] == "promoted").count();
    assert_eq!(promoted, 1, "one promoted announcement");
}

#[test]
fn killed_controllers_still_roll_a_failing_candidate_back() {
    let setup = setup("broken");
    let spec = setup.spec("doomed", "      - set_weight: 50\n      - pause: {}\n");
    for kill_after in kill_points(10, 50, 900) {
        let mut controller = spawn_start(&setup, &spec);
        std::thread::sleep(Duration::from_millis(kill_after));
        let _ = controller.0.kill();
        let _ = controller.0.wait();
    }
    // Whatever was left running ends now.
    let output = setup.start(&spec);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(setup.candidate_weight(), 0.0);
    let runs = runs_of(&setup, "doomed");
    assert!(!runs.is_empty());
    for (status, events) in &runs {
        assert_ne!(status, "running", "a rollout was left running");
        assert_consistent(events);
        let aborted = events
            .iter()
            .rfind(|e| e["kind"] == "state")
            .is_some_and(|e| e["payload"]["state"]["aborted"] == true);
        if status == "failed" {
            assert!(aborted, "{events:#?}");
            let rollbacks = events.iter().filter(|e| e["kind"] == "rollback").count();
            assert_eq!(rollbacks, 1, "{events:#?}");
        }
    }
}

/// Requests that ask for the candidate by header (blue-green's preview), until dropped.
struct Preview(Arc<std::sync::atomic::AtomicBool>);

impl Preview {
    fn start(url: &str) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, address) = (
            Arc::clone(&stop),
            url.trim_start_matches("http://")
                .trim_end_matches("/v1")
                .to_owned(),
        );
        std::thread::spawn(move || {
            let body = r#"{"model":"chat","messages":[{"role":"user","content":"preview"}]}"#;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                    let _ = write!(
                        stream,
                        "POST /v1/chat/completions HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n{}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        common::override_to("candidate"),
                        body.len()
                    );
                    let mut sink = Vec::new();
                    let _ = stream.read_to_end(&mut sink);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self(stop)
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

const BLUE_GREEN: &str = "  blue_green: {pre_promotion: 1500ms, post_promotion: 3s}\n";

#[test]
fn blue_green_switches_a_healthy_candidate_after_its_preview() {
    let setup = setup("candidate");
    let _preview = Preview::start(&setup.url);
    let spec = setup.spec_with("blue", BLUE_GREEN);
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("weight   0 %") && out.contains("weight 100 %"),
        "{out}"
    );
    assert_eq!(setup.candidate_weight(), 100.0);
}

#[test]
fn blue_green_never_switches_to_a_candidate_that_fails_its_preview() {
    let setup = setup("broken");
    let _preview = Preview::start(&setup.url);
    let spec = setup.spec_with("green", BLUE_GREEN);
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(!out.contains("weight 100 %"), "{out}");
    assert_eq!(setup.candidate_weight(), 0.0);
}

#[test]
fn blue_green_switches_back_when_the_candidate_fails_after_the_switch() {
    let setup = setup("candidate");
    let _preview = Preview::start(&setup.url);
    let spec = setup.spec_with(
        "teal",
        "  blue_green: {pre_promotion: 1s, post_promotion: 20s}\n",
    );
    let mut controller = spawn_start(&setup, &spec);
    let deadline = Instant::now() + Duration::from_secs(15);
    while setup.candidate_weight() != 100.0 {
        assert!(Instant::now() < deadline, "never switched");
        std::thread::sleep(Duration::from_millis(50));
    }
    setup
        .sim
        .put_profile("candidate", "faults: {error_rate: 1.0, error_status: 500}");
    assert_eq!(wait_exit(&mut controller), 1);
    assert_eq!(setup.candidate_weight(), 0.0);
    let hook = setup.wait_for_hook("rollback");
    assert_eq!(hook["to_version"], "stable");
}

/// Serves one JSON body to every request, on a free port.

#[test]
fn rules_read_web_and_prometheus_sources_and_unreachable_ones_are_errors() {
    let setup = setup("candidate");
    let web = json_server(r#"{"data": {"hallucination_rate": 0.4}}"#);
    let spec = setup.dir.path().join("web.yaml");
    let rollout = |name: &str, rule: &str| {
        format!(
            "name: {name}\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps: [{{set_weight: 20}}, {{pause: {{}}}}]\nanalysis:\n  rules:\n{rule}",
            setup.admin
        )
    };
    std::fs::write(
        &spec,
        rollout(
            "judged",
            &format!("    - {{metric: hallucination_rate, max: 0.1, interval: 200ms, source: {{web: {{url: \"{web}/score\", pointer: /data/hallucination_rate}}}}}}\n"),
        ),
    )
    .unwrap();
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("hallucination_rate <= 0.1 (measured 0.4000"),
        "{out}"
    );

    // Nobody listens here: every measurement is an error, and errors in a row abort.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    std::fs::write(
        &spec,
        rollout(
            "blind",
            &format!("    - {{metric: http_5xx_ratio, max: 0.01, interval: 100ms, consecutive_error_limit: 3, source: {{prometheus: {{url: \"{dead}\", query: \"sum(rate(errors[1m]))\"}}}}}}\n"),
        ),
    )
    .unwrap();
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "analysis errored: http_5xx_ratio <= 0.01 could not be measured 4 times in a row"
        ),
        "{out}"
    );
    assert!(out.contains("Prometheus unreachable"), "{out}");
    assert_eq!(setup.candidate_weight(), 0.0);
}

#[test]
fn steps_wait_while_the_gateway_cannot_take_a_weight() {
    let dir = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let spec = dir.path().join("stuck.yaml");
    std::fs::write(
        &spec,
        format!("name: stuck\ngateway: {{admin_url: \"{dead}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps: [{{set_weight: 50}}, {{set_weight: 100}}]\n"),
    )
    .unwrap();
    let store = dir.path().join("rollout.db");
    let rollout = || {
        let mut command = sluice();
        command.arg("--store").arg(&store).arg("rollout");
        command
    };
    let controller = Process(
        rollout()
            .arg("start")
            .arg(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = || {
        let output = rollout()
            .args(["status", "stuck", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&output.stdout).ok()
    };
    // Once the controller has stored its run, it keeps failing to set the first weight: give
    // it a second of retries, then it must still be waiting at its first step.
    let deadline = Instant::now() + Duration::from_secs(20);
    while status().is_none_or(|s| s["status"] != "running") {
        assert!(Instant::now() < deadline, "the rollout never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = status().unwrap();
    assert_eq!(status["status"], "running");
    assert_eq!(status["state"]["step"], 1, "{status:#}");
    assert_ne!(status["state"]["phase"], "Healthy", "{status:#}");
    drop(controller);
}

#[test]
fn the_judge_compares_the_candidate_with_stable_and_a_cooldown_holds_retries_back() {
    let setup = setup("broken");
    let spec = setup.dir.path().join("judged.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: judged\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\ncooldown: 1h\nstrategy:\n  canary:\n    steps: [{{set_weight: 30}}, {{pause: {{}}}}]\nanalysis:\n  rules:\n    - {{metric: error_rate_vs_stable, confidence: 0.95, window: 10s, min_samples: 5, interval: 200ms}}\n",
            setup.admin
        ),
    )
    .unwrap();
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("analysis failed: error_rate_vs_stable <= 2.99"),
        "{out}"
    );
    assert_eq!(setup.candidate_weight(), 0.0);
    let retried = setup.rollout().args(["retry", "judged"]).output().unwrap();
    assert_eq!(retried.status.code(), Some(2), "{}", text(&retried));
    assert!(
        text(&retried).contains("rolled back recently; its cooldown ends in"),
        "{}",
        text(&retried)
    );
}

const SHADOW: &str =
    "  shadow: {percent: 100, duration: 2s, min_similarity: 0.95, min_samples: 5}\n";

#[test]
fn a_shadow_rollout_promotes_a_candidate_that_answers_alike() {
    // The candidate version serves the same model as stable: identical answers.
    let setup = setup("stable");
    let spec = setup.spec_with("twin", SHADOW);
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("mirroring 100 % to the candidate"), "{out}");
    assert_eq!(setup.candidate_weight(), 100.0);
    let routes = admin_get(&setup.admin, "/admin/routes");
    assert!(routes["routes"]["chat"]["shadow"].is_null(), "{routes:#}");
}

#[test]
fn a_shadow_rollout_fails_a_candidate_that_answers_differently() {
    let setup = setup("candidate");
    let spec = setup.spec_with("stranger", SHADOW);
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("shadow_similarity >= 0.95 (measured 0.5000"),
        "{out}"
    );
    assert_eq!(setup.candidate_weight(), 0.0);
    let routes = admin_get(&setup.admin, "/admin/routes");
    assert!(
        routes["routes"]["chat"]["shadow"].is_null(),
        "mirroring stopped: {routes:#}"
    );
}

fn wait_weight(setup: &Setup, weight: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.candidate_weight() != weight {
        assert!(
            Instant::now() < deadline,
            "the weight never reached {weight}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const FLAG: &str = "  feature_flag:\n    percentages: [10, 50, 100]\n    pause: 2s\n    segments: [{header: x-beta, equals: \"1\"}, {users: [alice]}]\n";

#[test]
fn a_feature_flag_serves_its_segments_first_and_keeps_users_where_they_were() {
    let setup = setup("candidate");
    let spec = setup.spec_with("flag", FLAG);
    let mut controller = spawn_start(&setup, &spec);
    wait_weight(&setup, 10.0);
    assert_eq!(ask(&setup.url, "bob", "x-beta: 1\r\n"), "candidate answer");
    assert_eq!(ask(&setup.url, "alice", ""), "candidate answer");
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let at_10: Vec<&String> = users
        .iter()
        .filter(|u| ask(&setup.url, u, "") == "candidate answer")
        .collect();
    assert!(
        (5..=40).contains(&at_10.len()),
        "about 10 % of users: {}",
        at_10.len()
    );
    for user in &at_10 {
        assert_eq!(
            ask(&setup.url, user, ""),
            "candidate answer",
            "{user} is sticky"
        );
    }
    wait_weight(&setup, 50.0);
    for user in &at_10 {
        assert_eq!(
            ask(&setup.url, user, ""),
            "candidate answer",
            "{user} keeps the candidate as its share grows"
        );
    }
    assert_eq!(wait_exit(&mut controller), 0);
    assert_eq!(setup.candidate_weight(), 100.0);
    let routes = admin_get(&setup.admin, "/admin/routes");
    assert_eq!(
        routes["routes"]["chat"]["segments"],
        serde_json::json!([]),
        "the segments are off once everyone has the candidate: {routes:#}"
    );
    assert_eq!(routes["routes"]["chat"]["sticky_key"], "user");
}

#[test]
fn a_failing_feature_flag_is_turned_off_for_its_segments_too() {
    let setup = setup("broken");
    let spec = setup.spec_with("flag-broken", FLAG);
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("feature-flag segments on"), "{out}");
    assert_eq!(setup.candidate_weight(), 0.0);
    let routes = admin_get(&setup.admin, "/admin/routes");
    assert_eq!(routes["routes"]["chat"]["segments"], serde_json::json!([]));
    assert_eq!(ask(&setup.url, "bob", "x-beta: 1\r\n"), "stable answer");
    let hook = setup.wait_for_hook("rollback");
    assert_eq!(hook["trigger"], "error_rate <= 0.05");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Instances of the simulator on fixed ports: stable ones started here (as if started before
/// the rollout, each with its pid file), candidate ones only described (the controller starts
/// them). Every process still up is killed when dropped.
struct Fleet {
    stable: Vec<(u16, PathBuf)>,
    candidate: Vec<(u16, PathBuf)>,
    sim: PathBuf,
    children: Vec<Child>,
}

impl Fleet {
    fn new(dir: &Path, n: usize) -> Self {
        let sim = dir.join("fleet-sim.yaml");
        std::fs::write(&sim, SIM).unwrap();
        let ports = |side: &str| -> Vec<(u16, PathBuf)> {
            (0..n)
                .map(|i| (free_port(), dir.join(format!("{side}-{i}.pid"))))
                .collect()
        };
        let mut fleet = Self {
            stable: ports("stable"),
            candidate: ports("candidate"),
            sim,
            children: Vec::new(),
        };
        for i in 0..n {
            let (port, pid_file) = fleet.stable[i].clone();
            let child = sluice()
                .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--config")
                .arg(&fleet.sim)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::fs::write(&pid_file, child.id().to_string()).unwrap();
            fleet.children.push(child);
            assert!(fleet.wait_up(port), "stable instance {i} did not start");
        }
        fleet
    }

    fn command(&self, port: u16) -> String {
        format!(
            "exec '{}' simulate --listen 127.0.0.1:{port} --config '{}'",
            env!("CARGO_BIN_EXE_sluice"),
            self.sim.display()
        )
    }

    fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/v1")
    }

    fn up(port: u16) -> bool {
        !admin_get(&format!("http://127.0.0.1:{port}"), "/v1/models").is_null()
    }

    fn wait_up(&self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Self::up(port) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The route's versions: stable on its instances, the candidate (`model`) on its first.
    fn versions(&self, model: &str) -> String {
        let stable: Vec<String> = self
            .stable
            .iter()
            .map(|(p, _)| format!("\"{}\"", Self::url(*p)))
            .collect();
        format!(
            "      - {{name: stable, urls: [{}], model: stable}}\n      - {{name: candidate, url: \"{}\", model: {model}}}\n",
            stable.join(", "),
            Self::url(self.candidate[0].0)
        )
    }

    fn instances(&self) -> String {
        let list = |side: &[(u16, PathBuf)]| -> String {
            side.iter()
                .map(|(p, pid)| {
                    format!(
                        "    - {{url: \"{}\", command: \"{}\", pid_file: \"{}\"}}\n",
                        Self::url(*p),
                        self.command(*p).replace('"', "\\\""),
                        pid.display()
                    )
                })
                .collect()
        };
        format!(
            "instances:\n  stable:\n{}  candidate:\n{}",
            list(&self.stable),
            list(&self.candidate)
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, pid_file) in self.stable.iter().chain(&self.candidate) {
            if let Ok(pid) = std::fs::read_to_string(pid_file) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn instance_events(setup: &Setup, name: &str) -> Vec<Value> {
    runs_of(setup, name)
        .into_iter()
        .flat_map(|(_, events)| events)
        .filter(|e| e["kind"] == "instance")
        .collect()
}

#[test]
fn a_rolling_rollout_replaces_every_instance_in_batches() {
    let fleet_dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(fleet_dir.path(), 2);
    let setup = setup_with(|_, _| fleet.versions("candidate"));
    let spec = setup.spec_with_extra(
        "rolling",
        "  rolling: {batch: 1, pause: 1500ms}\n",
        &fleet.instances(),
    );
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("weight  50 %") && out.contains("weight 100 %"),
        "{out}"
    );
    for (port, _) in &fleet.candidate {
        assert!(Fleet::up(*port), "candidate instance on {port} serves");
    }
    for (port, _) in &fleet.stable {
        assert!(!Fleet::up(*port), "stable instance on {port} was stopped");
    }
    let routes = admin_get(&setup.admin, "/admin/routes");
    let urls: Vec<String> = fleet
        .candidate
        .iter()
        .map(|(p, _)| Fleet::url(*p))
        .collect();
    assert_eq!(
        routes["routes"]["chat"]["versions"][1]["urls"],
        serde_json::json!(urls),
        "{routes:#}"
    );
    let events = instance_events(&setup, "rolling");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["payload"]["stopped"] == true)
            .count(),
        2,
        "{events:#?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["payload"]["stopped"].is_null())
            .count(),
        2,
        "{events:#?}"
    );
    assert_eq!(ask(&setup.url, "anyone", ""), "candidate answer");

    // Undone after the promotion: stable's instances come back before traffic moves to them.
    let undo = setup.rollout().args(["undo", "rolling"]).output().unwrap();
    assert!(undo.status.success(), "{}", text(&undo));
    for (port, _) in &fleet.stable {
        assert!(Fleet::up(*port), "stable instance on {port} is back");
    }
    let routes = admin_get(&setup.admin, "/admin/routes");
    let stable_urls: Vec<String> = fleet.stable.iter().map(|(p, _)| Fleet::url(*p)).collect();
    assert_eq!(
        routes["routes"]["chat"]["versions"][0]["urls"],
        serde_json::json!(stable_urls),
        "{routes:#}"
    );
    assert_eq!(ask(&setup.url, "anyone", ""), "stable answer");
    let restarted = instance_events(&setup, "rolling")
        .into_iter()
        .filter(|e| {
            e["payload"]["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("undo: started stable"))
        })
        .count();
    assert_eq!(restarted, 2);
}

#[test]
fn a_failing_rolling_rollout_brings_the_stable_instances_back() {
    let fleet_dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(fleet_dir.path(), 2);
    let setup = setup_with(|_, _| fleet.versions("broken"));
    let spec = setup.spec_with_extra(
        "rolling-broken",
        "  rolling: {batch: 1, pause: 10s}\n",
        &fleet.instances(),
    );
    let output = setup.start(&spec);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("weight  50 %"), "{out}");
    assert!(!out.contains("weight 100 %"), "{out}");
    assert_eq!(setup.candidate_weight(), 0.0);
    for (port, _) in &fleet.stable {
        assert!(Fleet::up(*port), "stable instance on {port} is back");
    }
    assert!(
        !Fleet::up(fleet.candidate[0].0),
        "the candidate's instance was stopped"
    );
    let routes = admin_get(&setup.admin, "/admin/routes");
    assert_eq!(
        routes["routes"]["chat"]["versions"][0]["urls"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{routes:#}"
    );
    let hook = setup.wait_for_hook("rollback");
    assert_eq!(hook["to_version"], "stable");
    assert_eq!(ask(&setup.url, "anyone", ""), "stable answer");
}

fn judged_spec(setup: &Setup, name: &str, tolerance: f64) -> PathBuf {
    let spec = setup.dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &spec,
        format!(
            "name: {name}\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps: [{{set_weight: 30}}, {{pause: {{duration: 3s}}}}, {{set_weight: 100}}]\nanalysis:\n  rules:\n    - {{metric: latency_vs_stable, confidence: 0.99, tolerance: {tolerance}, window: 10s, min_samples: 20, interval: 200ms}}\n",
            setup.admin
        ),
    )
    .unwrap();
    spec
}

#[test]
fn the_latency_judge_rolls_back_a_slower_candidate_and_passes_a_like_one() {
    let setup = setup("slow");
    let output = setup.start(&judged_spec(&setup, "slower", 0.1));
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("analysis failed: latency_vs_stable <= 2.32"),
        "{out}"
    );
    assert_eq!(setup.candidate_weight(), 0.0);

    let setup = setup_with(|_, sim| {
        format!(
            "      - {{name: stable, url: \"{sim}\", model: stable}}\n      - {{name: candidate, url: \"{sim}\", model: stable}}\n"
        )
    });
    let output = setup.start(&judged_spec(&setup, "alike", 1.0));
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let events = runs_of(&setup, "alike")
        .into_iter()
        .flat_map(|(_, events)| events)
        .filter(|e| e["kind"] == "measurement" && e["payload"]["outcome"] == "Pass")
        .count();
    assert!(events > 0, "the judge measured and passed");
}

#[test]
fn a_rollout_runs_inside_the_gateway_and_rolls_back_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, SIM).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: stable, url: \"{0}\", model: stable}}\n      - {{name: candidate, url: \"{0}\", model: broken}}\n",
            sim.base_url
        ),
    )
    .unwrap();
    let (hook_url, hooks) = receiver();
    // No `gateway:` section: the gateway running it fills it in. The first pause lets the
    // load generator's pre-flight request through before the candidate gets traffic.
    let spec = dir.path().join("inproc.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: inproc\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps: [{{pause: {{duration: 2s}}}}, {{set_weight: 50}}, {{pause: {{}}}}]\nanalysis:\n  rules:\n    - {{metric: error_rate, max: 0.05, window: 10s, min_samples: 5, interval: 200ms}}\nalerts:\n  - {{type: webhook, url: \"{hook_url}\"}}\n"
        ),
    )
    .unwrap();
    let store = dir.path().join("store.db");

    // Without a gateway to steer, `sluice rollout start` says what to do.
    let refused = sluice()
        .arg("--store")
        .arg(&store)
        .args(["rollout", "start"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("sluice gateway --rollout SPEC"),
        "{}",
        text(&refused)
    );

    let (gateway, lines) =
        Gateway::start_with(&config, &store, &["--rollout".as_ref(), spec.as_os_str()]);
    let _traffic = Process(
        sluice()
            .args(["bench", "--url", &gateway.url, "--model", "chat"])
            .args(["--rate", "100", "--duration", "30s", "--no-stream"])
            .args(["--input-tokens", "4", "--max-lag", "10s", "--no-write"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = lines.lock().unwrap().clone();
        if seen
            .iter()
            .any(|l| l.starts_with("rollout inproc: rolled back"))
        {
            assert!(
                seen.iter()
                    .any(|l| l.contains("started run") && l.contains("in process")),
                "{seen:#?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no rollback: {seen:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let routes = admin_get(&gateway.admin, "/admin/routes");
    assert_eq!(routes["routes"]["chat"]["versions"][1]["weight"], 0.0);
    let status = sluice()
        .arg("--store")
        .arg(&store)
        .args(["rollout", "status", "inproc", "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"]["aborted"], true, "{status:#}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hooks
        .lock()
        .unwrap()
        .iter()
        .any(|h| h["kind"] == "rollback")
    {
        assert!(Instant::now() < deadline, "no rollback alert");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn step_analysis_spec(setup: &Setup, name: &str) -> PathBuf {
    let spec = setup.dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &spec,
        format!(
            "name: {name}\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps:\n      - set_weight: 30\n      - analysis: {{count: 3, rules: [{{metric: error_rate, max: 0.05, window: 10s, min_samples: 5, interval: 200ms}}]}}\n      - set_weight: 100\nalerts:\n  - {{type: webhook, url: \"{}\"}}\n",
            setup.admin, setup.hook_url
        ),
    )
    .unwrap();
    spec
}

#[test]
fn an_analysis_step_holds_the_canary_until_its_rules_pass_and_fails_a_bad_one() {
    let setup = setup("candidate");
    let output = setup.start(&step_analysis_spec(&setup, "stepped"));
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("running the step's analysis") && out.contains("step analysis passed"),
        "{out}"
    );
    assert_eq!(setup.candidate_weight(), 100.0);

    // The spec has no rollout-wide rules: only the step's rule can catch this one.
    let setup = setup_with(|_, sim| {
        format!(
            "      - {{name: stable, url: \"{sim}\", model: stable}}\n      - {{name: candidate, url: \"{sim}\", model: broken}}\n"
        )
    });
    let output = setup.start(&step_analysis_spec(&setup, "stepped-broken"));
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("analysis failed: error_rate <= 0.05"), "{out}");
    assert_eq!(setup.candidate_weight(), 0.0);
    assert_eq!(
        setup.wait_for_hook("rollback")["trigger"],
        "error_rate <= 0.05"
    );
}

/// `rollout export --to argo-rollouts`: a canary with its rules becomes a `Rollout` and its
/// `AnalysisTemplate`s that Argo Rollouts' published models accept (`SLUICE_K8S_MODELS`
/// names a `node_modules` with `@kubernetes-models/argo-rollouts` and `js-yaml`; `.ci/run`
/// installs them and sets `SLUICE_REQUIRE_K8S_MODELS`); what Argo Rollouts cannot say is
/// refused by name, with exit 2.
#[test]
fn a_canary_exports_as_argo_rollouts_objects_its_models_accept() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("rollout.yaml");
    std::fs::write(
        &spec,
        "name: chat-canary\ngateway: {admin_url: \"http://127.0.0.1:8081\"}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps:\n      - set_weight: 10\n      - pause: {duration: 30s}\n      - analysis:\n          count: 3\n          rules: [{metric: latency_p99_ms, max: 5000, window: 30s}]\n      - set_weight: 50\n      - pause: {}\n      - set_weight: 100\nanalysis:\n  rules:\n    - {metric: error_rate, max: 0.05, pass_max: 0.01, inconclusive_limit: 2, window: 60s}\n    - {metric: refusal_rate, max: 0.2}\n",
    )
    .unwrap();
    let out = dir.path().join("argo.yaml");
    let output = sluice()
        .args(["rollout", "export", "--to", "argo-rollouts"])
        .arg(&spec)
        .args([
            "--namespace",
            "prod",
            "--prometheus",
            "http://prometheus.monitoring:9090",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let written = std::fs::read_to_string(&out).unwrap();
    for line in [
        "kind: Rollout",
        "  namespace: prod",
        "      failureCondition: \"result[0] > 0.05\"",
        "      inconclusiveLimit: 2",
        "sluice_gateway_refusals_total",
    ] {
        assert!(written.contains(line), "{line:?} not in\n{written}");
    }
    // What Argo Rollouts cannot say: refused, every reason named.
    let shadow = dir.path().join("shadow.yaml");
    std::fs::write(
        &shadow,
        "name: s\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  shadow: {percent: 20, duration: 60s}\nanalysis:\n  rules: [{metric: error_rate_vs_stable, confidence: 0.95}]\n",
    )
    .unwrap();
    let refused = sluice()
        .args(["rollout", "export", "--to", "argo-rollouts"])
        .arg(&shadow)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let why = text(&refused);
    assert!(
        why.contains("shadow.yaml cannot be written as Argo Rollouts objects"),
        "{why}"
    );
    assert!(
        why.contains("(shadow: 20)") && why.contains("statistical judge"),
        "{why}"
    );

    let Some(models) = std::env::var_os("SLUICE_K8S_MODELS") else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_K8S_MODELS").is_none(),
            "SLUICE_K8S_MODELS is required here"
        );
        eprintln!(
            "skipped the models' check: set SLUICE_K8S_MODELS to a node_modules with @kubernetes-models/argo-rollouts and js-yaml"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/argo_rollouts.mjs");
    let checked = Command::new("node")
        .arg(&script)
        .arg(&out)
        .env("NODE_PATH", &models)
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", text(&checked));
    assert_eq!(
        text(&checked).matches(": ok").count(),
        3,
        "{}",
        text(&checked)
    );
    // The models do reject what Argo Rollouts would: a weight that is not a whole number.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        written.replacen("setWeight: 10\n", "setWeight: \"ten\"\n", 1),
    )
    .unwrap();
    let checked = Command::new("node")
        .arg(&script)
        .arg(&broken)
        .env("NODE_PATH", &models)
        .output()
        .unwrap();
    assert!(!checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains("setWeight must be integer"),
        "{}",
        text(&checked)
    );
}
