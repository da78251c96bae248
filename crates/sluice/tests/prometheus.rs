//! A real Prometheus server (Debian's `prometheus`; `SLUICE_PROMETHEUS` names its binary,
//! `.ci/run` installs it and sets `SLUICE_REQUIRE_PROMETHEUS`) scrapes the gateway's
//! `/metrics`, and the readiness gate reads the service levels back through its default
//! PromQL queries over those metrics.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use std::time::{Duration, Instant};

use common::{Simulate, exchange, sluice};

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prometheus's answer to an instant query, as a number (`None`: no series yet).
fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let path = format!(
        "GET /api/v1/query?query={} HTTP/1.1",
        promql
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    );
    let response = exchange(prometheus, &path, "", "");
    let body = response.split_once("\r\n\r\n")?.1;
    // Chunked or not, the JSON object is the part between the first `{` and the last `}`.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn prometheus_scrapes_the_gateway_and_readiness_reads_it_back_with_promql() {
    let Some(binary) = std::env::var_os("SLUICE_PROMETHEUS") else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_PROMETHEUS").is_none(),
            "SLUICE_PROMETHEUS is required here"
        );
        eprintln!("skipped: set SLUICE_PROMETHEUS to a prometheus binary");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: v1, url: \"{}\", model: stable}}\n    split: {{weights: {{v1: 100}}}}\n",
            sim.base_url
        ),
    )
    .unwrap();
    let gateway = common::Gateway::start(&config, &store);
    let gateway_address = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    let port = free_port();
    let prometheus = format!("127.0.0.1:{port}");
    let scrape = dir.path().join("prometheus.yml");
    std::fs::write(
        &scrape,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [\"{gateway_address}\"]\n"
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(binary)
        .arg(format!("--config.file={}", scrape.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prometheus}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !exchange_ok(&prometheus, "GET /-/ready HTTP/1.1") {
            assert!(Instant::now() < deadline, "prometheus never got ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Traffic over a few scrapes, so that rate() has points to work with.
        for _ in 0..6 {
            for _ in 0..30 {
                exchange(
                    &gateway_address,
                    "POST /v1/chat/completions HTTP/1.1",
                    "content-type: application/json\r\n",
                    r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let scraped = query(
                &prometheus,
                r#"sum(sluice_gateway_requests_total{route="chat"})"#,
            );
            if scraped.is_some_and(|n| n >= 180.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "scraped {scraped:?} of 180 requests"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The readiness gate's own PromQL over the gateway's metrics, against the real server.
        let model = dir.path().join("models/chat/model.yaml");
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        std::fs::write(&model, "name: chat\nversion: 1.0.0\narchitecture: llama\nresources: {memory_gb: 24, gpu_count: 1, gpu_type: L4}\n").unwrap();
        let registered = sluice()
            .arg("--store")
            .arg(&store)
            .args([
                "registry",
                "register",
                "chat",
                "--version",
                "1.0.0",
                "--artifact",
                "s3://models/chat.safetensors",
                "--config",
            ])
            .arg(&model)
            .output()
            .unwrap();
        assert!(
            registered.status.success(),
            "{}",
            String::from_utf8_lossy(&registered.stderr)
        );
        let output = sluice()
            .arg("--store")
            .arg(&store)
            .args([
                "readiness",
                "chat/1.0.0",
                "--route",
                "chat",
                "--gateway-version",
                "v1",
            ])
            .args([
                "--prometheus",
                &format!("http://{prometheus}"),
                "--window",
                "1m",
            ])
            .args([
                "--min-requests",
                "50",
                "--max-p95",
                "5s",
                "--no-capacity",
                "--json",
            ])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
        assert_eq!(output.status.code(), Some(0), "{report}");
        let check = |name: &str| {
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name} in {report}"))
        };
        for name in ["availability", "p95_latency", "error_rate"] {
            assert_eq!(check(name)["verdict"], "pass", "{report}");
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn exchange_ok(address: &str, request_line: &str) -> bool {
    std::net::TcpStream::connect(address).is_ok()
        && exchange(address, request_line, "", "").starts_with("HTTP/1.1 200")
}
