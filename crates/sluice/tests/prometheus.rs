//! A real Prometheus server (Debian's `prometheus`; `SLUICE_PROMETHEUS` names its binary,
//! `.ci/run` installs it and sets `SLUICE_REQUIRE_PROMETHEUS`) scrapes the gateway's
//! `/metrics`; the readiness gate reads the service levels back through its default PromQL
//! queries over those metrics, and a canary is rolled back by a rule whose measurement is a
//! PromQL query to that server.

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
            "routes:\n  chat:\n    versions:\n      - {{name: v1, url: \"{0}\", model: stable}}\n      - {{name: candidate, url: \"{0}\", model: broken}}\n    split: {{weights: {{v1: 100, candidate: 0}}}}\n",
            sim.base_url
        ),
    )
    .unwrap();
    sim.put_profile(
        "broken",
        "ttft_ms: 1\ndefault: lorem\nlorem_tokens: 4\nfaults: {error_rate: 0.5, error_status: [500]}\n",
    );
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
        canary_rolled_back_by_promql(dir.path(), &store, &gateway, &prometheus);
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A canary of `candidate` (which fails half its requests) at 50 %, judged by a rule whose
/// measurement is a PromQL query to the real server over the gateway's scraped counters:
/// rolled back, with the query's value in the reason.
fn canary_rolled_back_by_promql(
    dir: &std::path::Path,
    store: &std::path::Path,
    gateway: &common::Gateway,
    prometheus: &str,
) {
    let query = r#"sum(rate(sluice_gateway_requests_total{route="chat",version="candidate",class!="ok"}[15s])) / sum(rate(sluice_gateway_requests_total{route="chat",version="candidate"}[15s]))"#;
    let spec = dir.join("rollout.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: judged-by-prometheus\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: v1\ncandidate: candidate\nstrategy:\n  canary:\n    steps:\n      - set_weight: 50\n      - pause: {{duration: 60s}}\n      - set_weight: 100\nanalysis:\n  rules:\n    - metric: candidate_error_ratio\n      max: 0.05\n      interval: 1s\n      source: {{prometheus: {{url: \"http://{prometheus}\", query: '{query}'}}}}\n",
            gateway.admin
        ),
    )
    .unwrap();
    let gateway_address = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                exchange(
                    &gateway_address,
                    "POST /v1/chat/completions HTTP/1.1",
                    "content-type: application/json\r\n",
                    r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let output = sluice()
        .arg("--store")
        .arg(store)
        .args(["rollout", "start"])
        .arg(&spec)
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.join().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("{text}");
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert!(text.contains("candidate_error_ratio"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the rule did not see the errors before the pause ended: {text}"
    );
}

fn exchange_ok(address: &str, request_line: &str) -> bool {
    std::net::TcpStream::connect(address).is_ok()
        && exchange(address, request_line, "", "").starts_with("HTTP/1.1 200")
}
