//! `sluice readiness` end to end: the gate passes and fails on service levels read from a real
//! gateway's request log in the store, and on figures from a Prometheus-compatible endpoint;
//! capacity comes from an inventory file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{Gateway, Simulate, ask, override_to, sluice};

const MODEL_YAML: &str = "name: chat
version: 1.0.0
architecture: llama
resources: {memory_gb: 24, gpu_count: 1, gpu_type: L4}
";

fn sluice_ok(store: &Path, args: &[&str]) {
    let output = sluice()
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A store with chat/1.0.0 and chat/2.0.0 registered, and an inventory of one L4.
fn registered(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let store = dir.join("s.db");
    let config = dir.join("models/chat/model.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, MODEL_YAML).unwrap();
    for version in ["1.0.0", "2.0.0"] {
        sluice_ok(
            &store,
            &[
                "registry",
                "register",
                "chat",
                "--version",
                version,
                "--artifact",
                "s3://models/chat.safetensors",
                "--config",
                config.to_str().unwrap(),
            ],
        );
    }
    let inventory = dir.join("inventory.yaml");
    std::fs::write(
        &inventory,
        "gpus:\n  - {type: NVIDIA L4, memory_gb: 24, count: 1}\n",
    )
    .unwrap();
    (store, inventory)
}

fn readiness(store: &Path, args: &[&str]) -> (Output, Value) {
    let output = sluice()
        .arg("--store")
        .arg(store)
        .arg("readiness")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, report)
}

fn verdict(report: &Value, name: &str) -> String {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| c["verdict"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn readiness_passes_and_fails_on_the_gateway_log_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, inventory) = registered(dir.path());
    let sim_config = dir.path().join("sim.yaml");
    std::fs::write(
        &sim_config,
        "models:
  fast: {ttft_ms: 1, tokens_per_second: 5000, default: ok}
  faulty: {ttft_ms: 1, tokens_per_second: 5000, default: ok, faults: {error_rate: 0.3, error_status: 500}}
",
    )
    .unwrap();
    let sim = Simulate::with_config(&sim_config);
    let gateway_config = dir.path().join("gateway.yaml");
    std::fs::write(
        &gateway_config,
        format!(
            "routes:
  chat:
    versions:
      - {{name: 1.0.0, url: \"{url}\", model: fast}}
      - {{name: 2.0.0, url: \"{url}\", model: faulty}}
    split: {{weights: {{1.0.0: 100, 2.0.0: 0}}, overrides: true, override_token_env: SLUICE_TEST_OVERRIDE_TOKEN}}
",
            url = sim.base_url
        ),
    )
    .unwrap();
    let gateway = Gateway::start(&gateway_config, &store);
    for i in 0..150 {
        ask(&gateway.url, &format!("u{i}"), "");
        ask(&gateway.url, &format!("u{i}"), &override_to("2.0.0"));
    }
    // The request log is written in batches: wait until the store has every request.
    let inventory = inventory.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (output, report) = loop {
        let (output, report) = readiness(&store, &["chat/1.0.0", "--inventory", inventory]);
        let requests = report["checks"][0]["value"].as_f64().unwrap_or(0.0);
        if requests >= 150.0 || Instant::now() > deadline {
            break (output, report);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ready"], true);
    assert_eq!(report["version"], "chat/1.0.0");
    for name in [
        "requests",
        "availability",
        "p95_latency",
        "error_rate",
        "gpus",
        "gpu_memory",
    ] {
        assert_eq!(verdict(&report, name), "pass", "{name}: {report:#}");
    }

    // The faulty version: availability and error rate fail the gate.
    sluice_ok(
        &store,
        &["registry", "alias", "set", "chat", "canary", "2.0.0"],
    );
    let (output, report) = readiness(&store, &["chat@canary", "--inventory", inventory]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["ready"], false);
    assert_eq!(verdict(&report, "availability"), "fail", "{report:#}");
    assert_eq!(verdict(&report, "error_rate"), "fail", "{report:#}");
    assert_eq!(verdict(&report, "p95_latency"), "pass", "{report:#}");

    // Capacity for two replicas is not there; too few requests cannot be judged.
    let (output, report) = readiness(
        &store,
        &[
            "chat/1.0.0",
            "--inventory",
            inventory,
            "--replicas",
            "2",
            "--min-requests",
            "1000",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(verdict(&report, "gpus"), "fail", "{report:#}");
    assert_eq!(verdict(&report, "requests"), "fail", "{report:#}");
    assert_eq!(verdict(&report, "availability"), "unknown", "{report:#}");

    // The human table names each check.
    let output = sluice()
        .arg("--store")
        .arg(&store)
        .args(["readiness", "chat/1.0.0", "--no-capacity"])
        .output()
        .unwrap();
    let table = text(&output.stdout);
    assert!(
        table.contains("p95_latency") && table.ends_with("READY\n"),
        "{table}"
    );
}

/// A Prometheus-compatible `/api/v1/query` that answers each of the default queries.
fn prometheus(p95_seconds: f64) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 8192];
            let n = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let value = if request.contains("histogram_quantile") {
                p95_seconds
            } else if request.contains("increase") {
                5000.0
            } else if request.contains("upstream_connect") {
                0.9995
            } else {
                0.002
            };
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000,"{value}"]}}]}}}}"#
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn readiness_reads_a_prometheus_compatible_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (store, inventory) = registered(dir.path());
    let inventory = inventory.to_str().unwrap();
    let fast = prometheus(0.35);
    let (output, report) = readiness(
        &store,
        &[
            "chat/1.0.0",
            "--prometheus",
            &fast,
            "--inventory",
            inventory,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert!(report["source"].as_str().unwrap().contains("Prometheus"));
    let slow = prometheus(3.1);
    let (output, report) = readiness(
        &store,
        &[
            "chat/1.0.0",
            "--prometheus",
            &slow,
            "--inventory",
            inventory,
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(verdict(&report, "p95_latency"), "fail");
    assert_eq!(verdict(&report, "availability"), "pass");

    // An unreachable endpoint, an unknown version and a bad flag are usage errors.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (output, _) = readiness(
        &store,
        &[
            "chat/1.0.0",
            "--prometheus",
            &format!("http://127.0.0.1:{port}"),
            "--no-capacity",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("Prometheus unreachable"),
        "{}",
        text(&output.stderr)
    );
    let (output, _) = readiness(&store, &["chat/9.0.0", "--no-capacity"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("chat has no version 9.0.0"));
    let (output, _) = readiness(&store, &["chat/1.0.0", "--min-availability", "120"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("expected a percentage"));
}

/// Two gateway processes and a rollout controller write to one PostgreSQL store at once: every
/// request is logged once, the rollout's transitions are all there, and readiness counts both
/// gateways' traffic.
#[test]
fn two_gateways_and_a_controller_share_one_postgres_store() {
    let Some(store) = common::postgres_store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim_config = dir.path().join("sim.yaml");
    std::fs::write(
        &sim_config,
        "models:\n  fast: {ttft_ms: 1, tokens_per_second: 5000, default: ok}\n",
    )
    .unwrap();
    let sim = Simulate::with_config(&sim_config);
    let gateway_config = dir.path().join("gateway.yaml");
    std::fs::write(
        &gateway_config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: 1.0.0, url: \"{url}\", model: fast}}\n      - {{name: 2.0.0, url: \"{url}\", model: fast}}\n    split: {{weights: {{1.0.0: 100, 2.0.0: 0}}, overrides: true, override_token_env: SLUICE_TEST_OVERRIDE_TOKEN}}\n",
            url = sim.base_url
        ),
    )
    .unwrap();
    let store_path = Path::new(&store);
    let (a, b) = (
        Gateway::start(&gateway_config, store_path),
        Gateway::start(&gateway_config, store_path),
    );
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: shared\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: 1.0.0\ncandidate: 2.0.0\nstrategy:\n  canary:\n    steps:\n      - set_weight: 50\n      - pause: {{duration: 1s}}\n      - set_weight: 100\n",
            a.admin
        ),
    )
    .unwrap();
    let controller = sluice()
        .args(["--store", &store, "rollout", "start"])
        .arg(&spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both gateways take traffic while the controller writes its transitions.
    let senders: Vec<_> = [a.url.clone(), b.url.clone()]
        .into_iter()
        .map(|url| {
            std::thread::spawn(move || {
                for i in 0..100 {
                    ask(&url, &format!("u{i}"), &override_to("1.0.0"));
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let output = controller.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let status = sluice()
        .args(["--store", &store, "rollout", "status", "shared", "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["status"], "passed", "{status:#}");

    let config = dir.path().join("models/chat/model.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, MODEL_YAML).unwrap();
    let registered = sluice()
        .args([
            "--store",
            &store,
            "registry",
            "register",
            "chat",
            "--version",
            "1.0.0",
        ])
        .args(["--artifact", "s3://models/chat.bin", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(registered.status.success(), "{}", text(&registered.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let output = sluice()
            .args([
                "--store",
                &store,
                "readiness",
                "chat/1.0.0",
                "--no-capacity",
                "--json",
            ])
            .args(["--min-requests", "200"])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if report["checks"][0]["value"].as_f64() == Some(200.0) || Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(report["checks"][0]["value"], 200.0, "{report:#}");
    assert_eq!(report["ready"], true, "{report:#}");
}
