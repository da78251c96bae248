//! `sluice bench` end to end: the real binary loading `sluice simulate` over loopback, with
//! latency models whose figures are known.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;

use common::{Simulate, sluice};

const SIM: &str = "models:
  fast:
    ttft_ms: 20
    tokens_per_second: 1000
    default: lorem
    lorem_tokens: 8
  ttft40:
    ttft_ms: 40
    tokens_per_second: 200
    default: lorem
    lorem_tokens: 6
  stalls:
    ttft_ms: 10
    tokens_per_second: 1000
    default: lorem
    lorem_tokens: 4
    faults: {stall_every_ms: 1000, stall_ms: 400}
";

fn simulator(dir: &Path) -> Simulate {
    let path = dir.join("sim.yaml");
    std::fs::write(&path, SIM).unwrap();
    Simulate::with_config(&path)
}

fn bench(dir: &Path, args: &[&str]) -> Output {
    sluice()
        .arg("--store")
        .arg(dir.join("sluice.db"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

/// `--url`, `--model`, short prompts and a lag bound that tolerates a busy test machine.
fn target<'a>(sim: &'a Simulate, model: &'a str) -> Vec<&'a str> {
    vec![
        "--url",
        &sim.base_url,
        "--model",
        model,
        "--input-tokens",
        "8",
        "--max-lag",
        "50ms",
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn result_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

fn number(result: &Value, field: &str) -> f64 {
    result[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no `{field}` in {result:#}"))
}

#[test]
fn thresholds_that_hold_exit_0_and_one_that_fails_exits_99() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(dir.path());
    let mut common = target(&sim, "fast");
    common.extend(["--rate", "20", "--requests", "30"]);
    let json = dir.path().join("result.json");
    let csv = dir.path().join("result.csv");
    let mut args = common.clone();
    args.extend([
        "--threshold",
        "ttft.p99<500ms",
        "--threshold",
        "error_rate<0.01",
        "--goodput",
        "ttft:500",
        "e2el:2000",
        "-o",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let output = bench(dir.path(), &args);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("✓ ttft.p99<500ms"), "{stdout}");
    assert!(stdout.contains("recorded run bench-"), "{stdout}");

    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(number(&result, "completed"), 30.0);
    for field in [
        "p99_ttft_ms",
        "median_tpot_ms",
        "mean_itl_ms",
        "p99_e2el_ms",
        "p99_e2el_intended_ms",
        "p99_schedule_lag_ms",
        "output_throughput",
        "request_goodput",
    ] {
        assert!(result[field].is_number(), "{field} missing: {result:#}");
    }
    assert!(result["histograms"]["ttft"].is_string());
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.lines().count(), 2, "{csv_text}");
    assert!(csv_text.starts_with("model,load,completed"), "{csv_text}");

    let runs = common::stored_runs(dir.path().join("sluice.db"), "bench");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs:#}");

    let mut args = common;
    args.extend(["--threshold", "ttft.p50<1ms", "--no-write"]);
    let output = bench(dir.path(), &args);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(99),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("✗ ttft.p50<1ms (measured 2"), "{stdout}");
}

#[test]
fn ttft_ignores_the_role_only_first_chunk_and_matches_the_latency_model() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(dir.path());
    // The simulator sends `{"role": "assistant", "content": ""}` at once, then the first token
    // after 40 ms, then one every 5 ms: six tokens, so E2EL is 40 + 5 × 5 = 65 ms.
    let output = bench(
        dir.path(),
        &[
            target(&sim, "ttft40"),
            vec![
                "--rate",
                "10",
                "--arrival",
                "constant",
                "--requests",
                "20",
                "--json",
                "--no-write",
            ],
        ]
        .concat(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let result = result_json(&output);
    // A client that took the role-only chunk for the first token would report about 0 ms.
    // The 1 ms accuracy bound itself is asserted by sluice-bench's own accuracy test; this
    // test shares the machine with the overload test, so it allows 2 ms.
    for (metric, expected) in [("ttft", 40.0), ("tpot", 5.0), ("itl", 5.0), ("e2el", 65.0)] {
        let median = number(&result, &format!("median_{metric}_ms"));
        assert!(
            (median - expected).abs() <= 2.0,
            "median {metric} {median} ms, expected {expected} ± 2"
        );
    }
}

#[test]
fn a_stalling_server_shows_in_intended_latencies_not_in_the_uncorrected_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(dir.path());
    // The model stalls for 400 ms of every second. With at most two requests in flight, the
    // requests due during a stall wait in the client: a closed-loop view (latency from the
    // actual send) hides them; the latency from the intended send shows them.
    let output = bench(
        dir.path(),
        &[
            target(&sim, "stalls"),
            vec![
                "--rate",
                "40",
                "--arrival",
                "constant",
                "--max-concurrency",
                "2",
                "--duration",
                "3s",
                "--json",
                "--no-write",
            ],
        ]
        .concat(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let result = result_json(&output);
    let actual = number(&result, "p90_e2el_ms");
    let intended = number(&result, "p90_e2el_intended_ms");
    assert!(actual < 100.0, "uncorrected p90 {actual} ms");
    assert!(intended > 150.0, "corrected p90 {intended} ms");
    assert!(number(&result, "p90_queue_ms") > 100.0, "{result:#}");
}

#[test]
fn a_client_that_cannot_keep_its_schedule_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(dir.path());
    let output = bench(
        dir.path(),
        &[
            target(&sim, "fast"),
            vec![
                "--rate",
                "100000",
                "--requests",
                "2000",
                "--output-tokens",
                "2",
                "--max-lag",
                "5ms",
                "--threshold",
                "error_rate<1",
                "--no-write",
            ],
        ]
        .concat(),
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("INVALID: the client fell behind its schedule"),
        "{stdout}"
    );
}

#[test]
fn bad_input_is_named_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(dir.path());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--threshold".into(), "ttft.p99<<5ms".into()],
            "threshold `ttft.p99<<5ms`: column",
        ),
        (
            vec!["--threshold".into(), "tfft.p99<5ms".into()],
            "unknown metric `tfft`",
        ),
        (
            vec!["--rate".into(), "0".into()],
            "--rate must be a positive number",
        ),
        (
            vec![
                "--dataset".into(),
                "missing.jsonl".into(),
                "--rate".into(),
                "1".into(),
            ],
            "missing.jsonl: cannot read the dataset",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["--url", &sim.base_url, "--model", "fast", "--no-write"];
        args.extend(extra.iter().map(String::as_str));
        if !extra.iter().any(|a| a == "--rate") {
            args.extend(["--rate", "1"]);
        }
        let output = bench(dir.path(), &args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // Nobody listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}");
    let output = bench(
        dir.path(),
        &["--url", &url, "--model", "m", "--rate", "1", "--no-write"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pre-flight request to"), "{stderr}");
    assert!(stderr.contains("nothing was measured"), "{stderr}");

    // A server that answers, but not with the OpenAI API.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let page = "<html>welcome</html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    let output = bench(
        dir.path(),
        &["--url", &url, "--model", "m", "--rate", "1", "--no-write"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pre-flight request to"), "{stderr}");

    // A profile with a misspelt key and a bad threshold: located errors.
    let profile = dir.path().join("bench.yaml");
    std::fs::write(
        &profile,
        format!("url: {}\nmodel: fast\nrat: 5\n", sim.base_url),
    )
    .unwrap();
    let output = bench(dir.path(), &["-c", profile.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bench.yaml:3:1"), "{stderr}");
    assert!(stderr.contains("unknown field `rat`"), "{stderr}");
    std::fs::write(
        &profile,
        format!(
            "url: {}\nmodel: fast\nrate: 5\nthresholds:\n  - ttft.p99<5ms\n  - e2el.p42<1s\n",
            sim.base_url
        ),
    )
    .unwrap();
    let output = bench(dir.path(), &["-c", profile.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bench.yaml:6:5: thresholds[1]"), "{stderr}");
    assert!(stderr.contains("unknown aggregate `p42`"), "{stderr}");
}

#[test]
fn a_profile_a_sweep_a_preset_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(dir.path());
    let profile = dir.path().join("bench.yaml");
    let a = dir.path().join("a.json");
    std::fs::write(
        &profile,
        format!(
            "url: {}\nmodel: fast\nconcurrency: 2\nrequests: 20\ninput_tokens: 8\nmax_lag: 50ms\nthresholds: [e2el.p99<2s]\ngoodput: {{ttft: 500}}\noutput: {}\n",
            sim.base_url,
            a.display()
        ),
    )
    .unwrap();
    let output = bench(dir.path(), &["-c", profile.to_str().unwrap(), "--no-write"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let b = dir.path().join("b.json");
    let output = bench(
        dir.path(),
        &[
            "-c",
            profile.to_str().unwrap(),
            "--concurrency",
            "4",
            "-o",
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let b_result: Value = serde_json::from_str(&std::fs::read_to_string(&b).unwrap()).unwrap();
    assert_eq!(b_result["max_concurrency"], 4);

    let output = bench(
        dir.path(),
        &["compare", a.to_str().unwrap(), b.to_str().unwrap()],
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("ttft p50 (ms)"), "{stdout}");
    assert!(stdout.contains("request_throughput"), "{stdout}");

    let output = bench(
        dir.path(),
        &[
            target(&sim, "fast"),
            vec![
                "--sweep",
                "4",
                "--requests",
                "20",
                "--max-concurrency",
                "8",
                "--max-lag",
                "50ms",
                "--no-write",
            ],
        ]
        .concat(),
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("concurrency 1"), "{stdout}");
    assert!(stdout.contains("concurrency 8"), "{stdout}");
    assert_eq!(stdout.matches("rate ").count(), 2, "{stdout}");
    assert!(stdout.contains("← knee"), "{stdout}");

    let output = bench(
        dir.path(),
        &[
            target(&sim, "fast"),
            vec![
                "--preset",
                "batch-sizes",
                "--output-tokens",
                "2",
                "--json",
                "--no-write",
            ],
        ]
        .concat(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let result = result_json(&output);
    let stages = result["stages"].as_array().unwrap();
    let sizes: Vec<&Value> = stages.iter().map(|s| &s["max_concurrency"]).collect();
    assert_eq!(sizes, [1, 4, 8, 16]);
    for stage in stages {
        let batch = stage["max_concurrency"].as_f64().unwrap();
        assert_eq!(number(stage, "completed"), 50.0 * batch, "{stage:#}");
    }
}

/// A model the built-in price list knows gets the run's cost at its list price (from the
/// tokens the answers' usage reported); any other model has no cost, not a cost of 0.
#[test]
fn a_listed_model_gets_its_cost_and_another_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(dir.path());
    sim.put_profile(
        "gpt-4o-mini",
        "ttft_ms: 1\ndefault: lorem\nlorem_tokens: 10\n",
    );
    let mut args = target(&sim, "gpt-4o-mini");
    args.extend(["--requests", "10", "--rate", "200", "--json", "--no-write"]);
    let output = bench(dir.path(), &args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let result = result_json(&output);
    let (input, output_tokens) = (
        number(&result, "total_input_tokens"),
        number(&result, "total_output_tokens"),
    );
    assert!(input > 0.0 && output_tokens > 0.0, "{result:#}");
    let cost = number(&result, "cost_usd");
    assert!(
        (cost - (input * 0.15 + output_tokens * 0.60) / 1e6).abs() < 1e-12,
        "{result:#}"
    );
    let mut args = target(&sim, "fast");
    args.extend(["--requests", "5", "--rate", "200", "--json", "--no-write"]);
    let result = result_json(&bench(dir.path(), &args));
    assert!(result["cost_usd"].is_null(), "{result:#}");
}
