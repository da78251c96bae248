//! `sluice serve` over loopback: the API lists what the store holds, compares two eval runs
//! test by test, answers unknown ids and other methods with JSON errors, describes itself with
//! an OpenAPI document (fuzzed by schemathesis where it is installed), and drains on SIGTERM.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use std::path::Path;

use common::{Simulate, examples, exchange, sluice, spawn_with_banner};

/// A running `sluice serve`, stopped when dropped.
struct Serve {
    child: std::process::Child,
    address: String,
}

impl Serve {
    fn start(store: &Path) -> Self {
        Self::start_with(store, &[])
    }

    fn start_with(store: &Path, extra: &[&std::ffi::OsStr]) -> Self {
        Self::start_with_env(store, extra, &[])
    }

    fn start_with_env(store: &Path, extra: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Self {
        let mut command = sluice();
        command
            .envs(env.iter().copied())
            .arg("--store")
            .arg(store)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        let (child, banner, lines) = spawn_with_banner(&mut command);
        std::thread::spawn(move || lines.for_each(drop));
        let address = banner
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{banner}"))
            .to_owned();
        Serve { child, address }
    }

    /// `(status, JSON body)` of a request.
    fn call(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        let response = exchange(&self.address, &format!("{method} {path} HTTP/1.1"), "", "");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium and playwright-core, when installed (`SLUICE_CHROMIUM`, `SLUICE_PLAYWRIGHT`);
/// where `SLUICE_REQUIRE_BROWSER` is set, their absence fails the test.
fn browser() -> Option<(std::ffi::OsString, std::ffi::OsString)> {
    match (
        std::env::var_os("SLUICE_CHROMIUM"),
        std::env::var_os("SLUICE_PLAYWRIGHT"),
    ) {
        (Some(chromium), Some(playwright)) => Some((chromium, playwright)),
        _ => {
            assert!(
                std::env::var_os("SLUICE_REQUIRE_BROWSER").is_none(),
                "SLUICE_CHROMIUM and SLUICE_PLAYWRIGHT are required here"
            );
            eprintln!("skipped: set SLUICE_CHROMIUM and SLUICE_PLAYWRIGHT");
            None
        }
    }
}

/// A gateway whose route `chat` sends everything to version `version`, the simulator's
/// model `model`; and its `host:port`.
fn chat_gateway(
    dir: &Path,
    store: &Path,
    sim: &Simulate,
    version: &str,
    model: &str,
) -> (common::Gateway, String) {
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: {version}, url: \"{}\", model: {model}}}\n    split: {{weights: {{{version}: 100}}}}\n",
            sim.base_url
        ),
    )
    .unwrap();
    let gateway = common::Gateway::start(&config, store);
    let address = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    (gateway, address)
}

/// One chat request through the gateway at `address`; the whole response.
fn chat(address: &str, content: &str) -> String {
    exchange(
        address,
        "POST /v1/chat/completions HTTP/1.1",
        "content-type: application/json\r\n",
        &format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"{content}"}}]}}"#),
    )
}

fn eval(sim: &Simulate, store: &Path) -> String {
    let output = sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .arg("--store")
        .arg(store)
        .args(["eval", "--max-retries", "0", "-c"])
        .arg(examples().join("eval/promptfooconfig.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let runs = common::stored_runs(store, "eval");
    runs.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned()
}

#[test]
fn the_api_lists_runs_diffs_them_and_answers_errors_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    let good = eval(&sim, &store);
    // The stable model forgets the capital of France: exactly that test's rows flip.
    sim.put_profile("stable", "script:\n  - {match: capital, answer: Lyon.}\n  - {regex: \"(?i)json\", answer: '{\"name\": \"Ada\", \"age\": 36}'}\n  - {exact: ping, answer: pong}\ndefault: echo\n");
    let bad = eval(&sim, &store);
    let serve = Serve::start(&store);

    let (status, body) = serve.call("GET", "/api/v1/runs?kind=eval");
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bad.as_str(), good.as_str()], "newest first");

    let (status, body) = serve.call(
        "GET",
        &format!("/api/v1/runs/{bad}?failures_first=true&limit=2"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["id"], bad.as_str());
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    assert_eq!(body["results"][0]["pass"], false, "{body}");

    let (status, body) = serve.call("GET", &format!("/api/v1/runs/{good}/diff/{bad}"));
    assert_eq!(status, 200, "{body}");
    let regressions = body["comparison"]["regressions"].as_array().unwrap();
    assert!(!regressions.is_empty(), "{body}");
    for flip in regressions {
        assert!(
            flip["description"].as_str().unwrap().contains("capital"),
            "only the capital test flipped: {body}"
        );
    }
    assert!(
        body["comparison"]["fixes"].as_array().unwrap().is_empty(),
        "{body}"
    );

    // The suite's trend: both runs, oldest first, the pass rate falling.
    let (status, body) = serve.call("GET", "/api/v1/trends");
    assert_eq!(status, 200, "{body}");
    let series = &body["series"][0];
    assert_eq!(series["kind"], "eval", "{body}");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{body}");
    assert_eq!(points[0]["run_id"], good.as_str());
    assert!(
        points[0]["figures"]["pass_rate"].as_f64() > points[1]["figures"]["pass_rate"].as_f64(),
        "{body}"
    );

    // Embedding drift needs the server's own embeddings endpoint: none here.
    let (status, body) = serve.call("GET", "/api/v1/drift?route=chat&version=v&embeddings=true");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["type"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--embeddings-url"),
        "{body}"
    );

    let (status, body) = serve.call("GET", "/api/v1/runs/eval-nope");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found");
    let (status, body) = serve.call("GET", "/api/v1/runs?limit=0");
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, body) = serve.call("GET", "/api/v1/runs?kind=evals");
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown run kind"),
        "{body}"
    );
    let (status, body) = serve.call("POST", "/api/v1/runs");
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, _) = serve.call("GET", "/nothing/here");
    assert_eq!(status, 404);
    let (status, body) = serve.call("GET", "/api/v1/models");
    assert_eq!(
        (status, body["models"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    let (status, document) = serve.call("GET", "/api/v1/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
    assert!(document["paths"]["/api/v1/runs/{baseline}/diff/{candidate}"].is_object());

    // SIGTERM: it stops accepting, drains, and exits 0.
    let mut serve = serve;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = serve.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
}

/// schemathesis (from PyPI) fuzzes every operation of the OpenAPI document against a served
/// store and checks each answer against it: no server error, declared status codes, content
/// types and schemas. `SLUICE_SCHEMATHESIS` names its command; `.ci/run` installs it and sets
/// `SLUICE_REQUIRE_SCHEMATHESIS`.
#[test]
fn schemathesis_finds_the_api_true_to_its_document() {
    let Some(schemathesis) = std::env::var_os("SLUICE_SCHEMATHESIS") else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_SCHEMATHESIS").is_none(),
            "SLUICE_SCHEMATHESIS is required here"
        );
        eprintln!("skipped: set SLUICE_SCHEMATHESIS to a schemathesis command");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    eval(&sim, &store);
    let serve = Serve::start(&store);
    let output = std::process::Command::new(schemathesis)
        .args([
            "run",
            "--checks",
            "all",
            "--max-examples",
            "30",
            "--seed",
            "1",
        ])
        .arg(format!("http://{}/api/v1/openapi.json", serve.address))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A pipeline run's stages arrive on its event stream as they end, then `end`; a client that
/// reconnects with `Last-Event-ID` gets only what came after.
#[test]
fn a_run_streams_its_events_live_and_a_reconnect_resumes() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "stages:\n  first: {run: 'true'}\n  second: {run: 'while [ ! -f go ]; do sleep 0.05; done', needs: [first]}\n",
    )
    .unwrap();
    let mut runner = sluice()
        .current_dir(dir.path())
        .arg("--store")
        .arg(&store)
        .args(["pipeline", "run", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve::start(&store);
    // The run exists once the runner has started.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let id = loop {
        let (_, body) = serve.call("GET", "/api/v1/pipelines");
        if let Some(id) = body["runs"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no pipeline run");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stream = std::net::TcpStream::connect(&serve.address).unwrap();
    write!(
        stream,
        "GET /api/v1/pipelines/{id}/stream HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
    let next_data = |lines: &mut std::io::Lines<BufReader<std::net::TcpStream>>| {
        lines
            .by_ref()
            .map(Result::unwrap)
            .find(|l| l.starts_with("data: ") || l.starts_with("event: end"))
            .unwrap()
    };
    let first = next_data(&mut lines);
    assert!(first.contains("\"name\":\"first\""), "{first}");
    // `second` is still waiting: it arrives once it ends.
    std::fs::write(dir.path().join("go"), "").unwrap();
    let second = next_data(&mut lines);
    assert!(second.contains("\"name\":\"second\""), "{second}");
    assert_eq!(next_data(&mut lines), "event: end");
    assert!(runner.wait().unwrap().success());

    // Reconnecting after the first event: only the second, then the end.
    let (_, body) = serve.call("GET", &format!("/api/v1/pipelines/{id}"));
    let first_seq = body["events"][0]["seq"].as_i64().unwrap();
    let response = exchange(
        &serve.address,
        &format!("GET /api/v1/pipelines/{id}/stream HTTP/1.1"),
        &format!("last-event-id: {first_seq}\r\n"),
        "",
    );
    assert!(response.contains("text/event-stream"), "{response}");
    assert!(!response.contains("\"name\":\"first\""), "{response}");
    assert!(
        response.contains("\"name\":\"second\"") && response.contains("event: end"),
        "{response}"
    );
    let (status, _) = serve.call("GET", "/api/v1/rollouts/rollout-nope/stream");
    assert_eq!(status, 404);
}

/// Every dashboard page in headless Chromium (`SLUICE_CHROMIUM`, and `SLUICE_PLAYWRIGHT` a
/// directory whose `node_modules` has playwright-core; `.ci/run` installs both and sets
/// `SLUICE_REQUIRE_BROWSER`): each renders with no console error, failed request or script
/// error, and the diff page lists exactly the tests that flipped.
#[test]
fn every_dashboard_page_renders_in_chromium_and_the_diff_lists_the_flipped_tests() {
    let Some((chromium, playwright)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    let good = eval(&sim, &store);
    sim.put_profile("stable", "script:\n  - {match: capital, answer: Lyon.}\n  - {regex: \"(?i)json\", answer: '{\"name\": \"Ada\", \"age\": 36}'}\n  - {exact: ping, answer: pong}\ndefault: echo\n");
    let bad = eval(&sim, &store);
    let serve = Serve::start(&store);
    let (_, api) = serve.call("GET", &format!("/api/v1/runs/{good}/diff/{bad}"));
    let mut expected: Vec<String> = api["comparison"]["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["description"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    let base = format!("http://{}", serve.address);
    let pages = [
        "/".to_owned(),
        "/runs".to_owned(),
        "/runs?kind=eval&status=failed".to_owned(),
        format!("/runs/{bad}"),
        format!("/runs/{good}/diff/{bad}"),
        "/rollouts".to_owned(),
        "/models".to_owned(),
        "/drift".to_owned(),
        "/drift?route=chat&version=stable".to_owned(),
        "/feedback".to_owned(),
        "/feedback?route=chat".to_owned(),
        "/alerts".to_owned(),
        "/alerts?route=chat".to_owned(),
        "/cost".to_owned(),
        "/cost?route=chat".to_owned(),
        "/trends".to_owned(),
    ];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard.cjs");
    let output = std::process::Command::new("node")
        .arg(script)
        .arg(&chromium)
        .args(pages.iter().map(|p| format!("{base}{p}")))
        .env("NODE_PATH", Path::new(&playwright).join("node_modules"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for page in &pages {
        let seen = &report[format!("{base}{page}")];
        assert_eq!(seen["status"], 200, "{page}: {seen}");
        assert_eq!(seen["problems"], serde_json::json!([]), "{page}: {seen}");
        assert!(
            seen["title"].as_str().unwrap().ends_with("· Sluice"),
            "{seen}"
        );
    }
    let diff = &report[format!("{base}/runs/{good}/diff/{bad}")];
    let mut regressed: Vec<String> = diff["tables"]["regressed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    regressed.sort();
    assert_eq!(regressed, expected, "{diff}");
    assert_eq!(diff["tables"]["fixed"], serde_json::json!([]), "{diff}");
}

/// The rollout page in headless Chromium while `sluice quickstart` runs its canary: each
/// weight change shows within 2 s of being stored, and the automatic rollback shows as it
/// happens (the page follows the event stream, then reloads with the rollback listed).
#[test]
fn the_rollout_page_follows_a_canary_live_to_its_rollback() {
    let Some((chromium, playwright)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let serve = Serve::start(&store);
    let mut quickstart = sluice()
        .arg("--store")
        .arg(&store)
        .args(["quickstart", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rollout-live.cjs");
    let output = std::process::Command::new("node")
        .arg(script)
        .arg(&chromium)
        .arg(format!("http://{}", serve.address))
        .env("NODE_PATH", Path::new(&playwright).join("node_modules"))
        .output()
        .unwrap();
    let finished = quickstart.wait().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(finished.success());
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("{seen}");
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert!(
        !seen["status"].as_str().unwrap().contains("running"),
        "{seen}"
    );
    assert_eq!(seen["rollback_listed"], true, "{seen}");
    let changes = seen["changes"].as_array().unwrap();
    assert!(
        !changes.is_empty(),
        "the page showed no weight change: {seen}"
    );
    let (_, body) = serve.call(
        "GET",
        &format!("/api/v1/rollouts/{}", seen["id"].as_str().unwrap()),
    );
    let states: Vec<(i64, String)> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "state")
        .map(|e| {
            (
                e["at_ms"].as_i64().unwrap(),
                format!("{} %", e["payload"]["state"]["weight"]),
            )
        })
        .collect();
    for change in changes {
        let (shown_at, weight) = (
            change["at"].as_i64().unwrap(),
            change["weight"].as_str().unwrap(),
        );
        let stored_at = states
            .iter()
            .filter(|(at, w)| w == weight && *at <= shown_at)
            .map(|(at, _)| *at)
            .max()
            .unwrap_or_else(|| panic!("no stored state with weight {weight}: {body}"));
        assert!(
            shown_at - stored_at <= 2_000,
            "weight {weight} shown {} ms after it was stored",
            shown_at - stored_at
        );
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Traffic through the gateway shifts (the model starts refusing, with shorter answers):
/// the drift report of the request log flags exactly answer length and refusals, and not the
/// prompts, JSON answers, errors or safety hits that did not change.
#[test]
fn drift_is_reported_on_exactly_the_descriptors_that_shifted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    sim.put_profile(
        "drifty",
        "ttft_ms: 1\ntokens_per_second: 100000\ndefault: lorem\nlorem_tokens: 24\n",
    );
    let (gateway, _) = chat_gateway(dir.path(), &store, &sim, "candidate", "drifty");
    let traffic = || {
        let output = sluice()
            .args([
                "bench",
                "--url",
                &gateway.url,
                "--model",
                "chat",
                "--requests",
                "600",
            ])
            .args([
                "--rate",
                "400",
                "--input-tokens",
                "32",
                "--output-tokens",
                "24",
            ])
            // A busy test machine must not make the traffic generator call its run invalid.
            .args([
                "--no-stream",
                "--no-write",
                "--seed",
                "5",
                "--max-lag",
                "10s",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    traffic();
    // The request log is written in batches: let the first phase land before the split.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let split = now_ms();
    sim.put_profile(
        "drifty",
        "ttft_ms: 1\ntokens_per_second: 100000\ndefault: \"I'm sorry, but I can't help with that.\"\n",
    );
    traffic();
    std::thread::sleep(std::time::Duration::from_millis(600));
    // The prompts' embeddings too, through the simulator's embeddings endpoint.
    let serve = Serve::start_with(
        &store,
        &[
            "--embeddings-url".as_ref(),
            sim.base_url.as_ref(),
            "--embeddings-model".as_ref(),
            "drifty".as_ref(),
        ],
    );
    let (status, report) = serve.call(
        "GET",
        &format!(
            "/api/v1/drift?route=chat&version=candidate&reference_from=0&reference_to={split}&current_from={split}&current_to={}&embeddings=true",
            now_ms() + 1
        ),
    );
    assert_eq!(status, 200, "{report}");
    // Each phase is 600 requests and the bench's warm-up.
    for window in 0..2 {
        assert!(
            report["samples"][window].as_u64().unwrap() >= 600,
            "{report}"
        );
    }
    let mut drifted: Vec<&str> = report["drifted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    drifted.sort_unstable();
    // Latency may move with the answers' length; the others must not.
    drifted.retain(|d| *d != "latency_ms");
    // The prompts did not change (the same generator in both phases): their embeddings are
    // not called drifted.
    assert_eq!(drifted, ["completion_tokens", "refusal"], "{report}");
    let embedding = &report["embedding"];
    assert_eq!(
        embedding["samples"],
        serde_json::json!([200, 200]),
        "{report}"
    );
    assert_eq!(embedding["verdict"], "ok", "{report}");
    assert!(embedding["p_value"].as_f64().unwrap() >= 0.01, "{report}");
    // The page draws each judged number's two windows.
    let page = exchange(
        &serve.address,
        &format!(
            "GET /drift?route=chat&version=candidate&reference_from=0&reference_to={split}&current_from={split}&current_to={} HTTP/1.1",
            now_ms() + 1
        ),
        "",
        "",
    );
    // Prompt and answer tokens and latency; TTFT has no samples (the traffic is not streamed).
    assert_eq!(page.matches(r#"<svg class="dist""#).count(), 3, "{page}");
    let (status, body) = serve.call("GET", "/api/v1/drift?route=chat");
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("bad_request"))
    );
}

/// 120 negative ratings of one version through the gateway fire the retraining trigger
/// once: the webhook gets the evidence (counts, the worst rated requests) with the comments'
/// personal data redacted, the firing is stored, and neither the next evaluations nor a
/// restarted server fire it again within the cooldown.
#[test]
fn negative_ratings_fire_the_retraining_trigger_once_with_redacted_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    let (_gateway, address) = chat_gateway(dir.path(), &store, &sim, "v2", "stable");
    for i in 0..120 {
        let response = chat(&address, &format!("question {i}"));
        let request_id = response
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-request-id:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("{response}"));
        let rating = format!(
            r#"{{"request_id":"{request_id}","rating":1,"comment":"useless; mail jane.doe@example.com or call +1 415 555 0132"}}"#
        );
        let stored = exchange(
            &address,
            "POST /v1/feedback HTTP/1.1",
            "content-type: application/json\r\n",
            &rating,
        );
        assert!(stored.starts_with("HTTP/1.1 200"), "{stored}");
    }
    let (hook, hooks) = common::receiver();
    let monitor = dir.path().join("monitor.yaml");
    std::fs::write(
        &monitor,
        format!(
            "interval: 200ms\nfeedback:\n  - route: chat\n    window: 1h\n    min_samples: 100\n    cooldown: 1h\n    webhook: \"{hook}\"\n"
        ),
    )
    .unwrap();
    let serve = Serve::start_with(&store, &["--monitor".as_ref(), monitor.as_os_str()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while hooks.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the trigger never fired"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Five more evaluations: the cooldown holds.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let fired = hooks.lock().unwrap().clone();
    assert_eq!(fired.len(), 1, "{fired:?}");
    let evidence = &fired[0];
    assert_eq!(evidence["kind"], "retraining_trigger");
    assert_eq!(evidence["version"], "v2");
    assert_eq!(evidence["feedback"]["samples"], 120);
    assert_eq!(evidence["feedback"]["negative"], 120);
    let text = evidence.to_string();
    assert!(
        evidence["feedback"]["worst"].as_array().unwrap().len() == 5,
        "{text}"
    );
    for secret in ["jane.doe@example.com", "555 0132"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let (_, body) = serve.call("GET", "/api/v1/feedback?route=chat");
    assert_eq!(body["triggers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["versions"][0]["satisfaction_rate"], 0.0);
    drop(serve);
    // A restarted server keeps the cooldown: it is in the store.
    let again = Serve::start_with(&store, &["--monitor".as_ref(), monitor.as_os_str()]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(hooks.lock().unwrap().len(), 1);
    let (_, body) = again.call("GET", "/api/v1/feedback?route=chat");
    assert_eq!(body["triggers"].as_array().unwrap().len(), 1, "{body}");
}

/// An alert rule on the gateway's traffic: errors cross the rule and the alert is sent once
/// (not again while it stays open), shown as open; once the errors stop and the window holds
/// only good requests, it is resolved and that is sent too.
#[test]
fn an_error_rate_alert_fires_once_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    sim.put_profile("flaky", "ttft_ms: 1\ntokens_per_second: 100000\ndefault: ok\nfaults: {error_rate: 0.5, error_status: 500}\n");
    let (_gateway, address) = chat_gateway(dir.path(), &store, &sim, "v1", "flaky");
    let traffic = |n: usize| {
        for _ in 0..n {
            chat(&address, "hi");
        }
    };
    let (hook, hooks) = common::receiver();
    let monitor = dir.path().join("monitor.yaml");
    std::fs::write(
        &monitor,
        format!(
            "interval: 200ms\nalerts:\n  - {{name: chat errors, route: chat, metric: error_rate, max: 0.05, window: 3s, min_samples: 20, severity: critical, cooldown: 1h, webhook: \"{hook}\"}}\n"
        ),
    )
    .unwrap();
    let serve = Serve::start_with(&store, &["--monitor".as_ref(), monitor.as_os_str()]);
    traffic(60);
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while hooks.lock().unwrap().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                hooks.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for(1);
    std::thread::sleep(std::time::Duration::from_millis(800));
    {
        let sent = hooks.lock().unwrap();
        assert_eq!(sent.len(), 1, "sent once while open: {sent:?}");
        assert_eq!(sent[0]["kind"], "alert");
        assert_eq!(sent[0]["severity"], "critical");
        assert!(sent[0]["value"].as_f64().unwrap() > 0.05, "{}", sent[0]);
    }
    let (_, body) = serve.call("GET", "/api/v1/alerts?route=chat");
    assert_eq!(body["open"].as_array().unwrap().len(), 1, "{body}");
    // The overview lists it too.
    let overview = exchange(&serve.address, "GET / HTTP/1.1", "", "");
    assert!(
        overview.contains("id=\"open-alerts\"") && overview.contains("chat errors"),
        "{overview}"
    );
    // The errors stop; once the window holds only good requests, the alert resolves.
    sim.put_profile(
        "flaky",
        "ttft_ms: 1\ntokens_per_second: 100000\ndefault: ok\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(3200));
    traffic(40);
    wait_for(2);
    let sent = hooks.lock().unwrap().clone();
    assert_eq!(sent[1]["kind"], "alert_resolved", "{sent:?}");
    let (_, body) = serve.call("GET", "/api/v1/alerts?route=chat");
    assert!(body["open"].as_array().unwrap().is_empty(), "{body}");
}

/// A smoke test in production run by the monitor: three failures in a row open an alert
/// (sent once), the next pass resolves it (sent).
#[test]
fn a_failing_smoke_test_alerts_after_three_failures_and_resolves_on_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let ok = dir.path().join("ok");
    let (hook, hooks) = common::receiver();
    let monitor = dir.path().join("monitor.yaml");
    std::fs::write(
        &monitor,
        format!(
            "smoke:\n  - {{name: production, command: \"test -f {}\", every: 150ms, timeout: 5s, alert_after: 3, webhook: \"{hook}\"}}\n",
            ok.display()
        ),
    )
    .unwrap();
    let serve = Serve::start_with(&store, &["--monitor".as_ref(), monitor.as_os_str()]);
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while hooks.lock().unwrap().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                hooks.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
    };
    wait_for(1);
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(hooks.lock().unwrap().len(), 1, "sent once while failing");
    let fired = hooks.lock().unwrap()[0].clone();
    assert_eq!(fired["kind"], "alert");
    assert!(fired["failures_in_a_row"].as_u64().unwrap() >= 3, "{fired}");
    let (_, body) = serve.call("GET", "/api/v1/alerts?route=smoke");
    assert_eq!(body["open"].as_array().unwrap().len(), 1, "{body}");
    std::fs::write(&ok, "").unwrap();
    wait_for(2);
    assert_eq!(hooks.lock().unwrap()[1]["kind"], "alert_resolved");
    let (_, body) = serve.call("GET", "/api/v1/alerts?route=smoke");
    assert!(body["open"].as_array().unwrap().is_empty(), "{body}");
}

/// Promote from the rollout page in headless Chromium: without logging in there is no button
/// and a form post or API call made from the page is refused (the rollout stays paused); after
/// logging in with the admin token, the Promote button sends the rollout on to its end.
#[test]
fn promote_from_the_page_needs_the_admin_token() {
    let Some((chromium, playwright)) = browser() else {
        return;
    };
    const TOKEN: &str = "a-long-enough-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: stable, url: \"{0}\", model: stable}}\n      - {{name: candidate, url: \"{0}\", model: stable}}\n    split: {{weights: {{stable: 100, candidate: 0}}}}\n",
            sim.base_url
        ),
    )
    .unwrap();
    let gateway = common::Gateway::start(&config, &store);
    let spec = dir.path().join("rollout.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: by-hand\ngateway: {{admin_url: \"{}\"}}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps:\n      - set_weight: 10\n      - pause: {{}}\n      - set_weight: 100\nanalysis:\n  rules: []\n",
            gateway.admin
        ),
    )
    .unwrap();
    let mut rollout = sluice()
        .arg("--store")
        .arg(&store)
        .args(["rollout", "start"])
        .arg(&spec)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve::start_with_env(
        &store,
        &["--admin-token-env".as_ref(), "PROMOTE_TOKEN".as_ref()],
        &[("PROMOTE_TOKEN", TOKEN)],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promote.cjs");
    let output = std::process::Command::new("node")
        .arg(script)
        .arg(&chromium)
        .arg(format!("http://{}", serve.address))
        .arg(TOKEN)
        .env("NODE_PATH", Path::new(&playwright).join("node_modules"))
        .output()
        .unwrap();
    let ended = rollout.wait().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("{seen}");
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["button_without_login"], 0, "{seen}");
    assert_eq!(seen["login_link"], 1, "{seen}");
    let refused: Vec<u64> = seen["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert!(refused.iter().all(|s| *s == 401 || *s == 403), "{seen}");
    assert_eq!(seen["status_after_refusal"], "running", "{seen}");
    assert_eq!(
        seen["url_after_login"],
        format!("/rollouts/{}", seen["id"].as_str().unwrap())
    );
    assert_eq!(seen["button_after_login"], 1, "{seen}");
    assert_eq!(seen["final_status"], "passed", "{seen}");
    assert!(ended.success(), "the rollout was promoted to its end");
    // Undone from the page afterwards: the gateway's route is all on stable again.
    assert_eq!(seen["undo_button"], 1, "{seen}");
    assert_eq!(seen["undo_events"], 1, "{seen}");
    let routes = exchange(
        gateway.admin.trim_start_matches("http://"),
        "GET /admin/routes HTTP/1.1",
        "",
        "",
    );
    let body: serde_json::Value =
        serde_json::from_str(routes.split_once("\r\n\r\n").unwrap().1).unwrap();
    let versions = body["routes"]["chat"]["versions"].as_array().unwrap();
    let weight = |name: &str| {
        versions
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["weight"].clone())
    };
    assert_eq!(weight("stable"), Some(serde_json::json!(100.0)), "{body}");
    assert_eq!(weight("candidate"), Some(serde_json::json!(0.0)), "{body}");
}

/// Alert rules on what traffic costs and on what users think of it: a version whose priced
/// requests run over an hourly budget, and one whose mean feedback falls under a floor, each
/// open an alert that is sent with its value.
#[test]
fn cost_budget_and_feedback_floor_alerts_fire() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    sim.put_profile(
        "pricey",
        "ttft_ms: 1\ntokens_per_second: 100000\ndefault: lorem\nlorem_tokens: 20\n",
    );
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions:\n      - {{name: v1, url: \"{}\", model: pricey}}\nprices: {{pricey: {{input: 1000, output: 1000}}}}\n",
            sim.base_url
        ),
    )
    .unwrap();
    let gateway = common::Gateway::start(&config, &store);
    let address = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    let (hook, hooks) = common::receiver();
    let monitor = dir.path().join("monitor.yaml");
    std::fs::write(
        &monitor,
        format!(
            "interval: 200ms\nalerts:\n  - {{name: budget, route: chat, metric: cost_per_hour_usd, max: 5, window: 1m, min_samples: 10, webhook: \"{hook}\"}}\n  - {{name: quality, route: chat, metric: feedback_score, min: 0.7, window: 1m, min_samples: 5, webhook: \"{hook}\"}}\n"
        ),
    )
    .unwrap();
    let serve = Serve::start_with(&store, &["--monitor".as_ref(), monitor.as_os_str()]);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let answer = chat(&address, "hi");
        let id = answer
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .unwrap()
            .trim()
            .to_owned();
        ids.push(id);
    }
    for id in &ids[..6] {
        let answer = exchange(
            &address,
            "POST /v1/feedback HTTP/1.1",
            "content-type: application/json\r\n",
            &format!(r#"{{"request_id":"{id}","rating":1}}"#),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while hooks.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            hooks.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = hooks.lock().unwrap().clone();
    let find = |rule: &str| {
        sent.iter()
            .find(|s| s["rule"] == rule)
            .unwrap_or_else(|| panic!("no {rule} in {sent:?}"))
            .clone()
    };
    let budget = find("budget");
    assert_eq!(budget["metric"], "cost_per_hour_usd");
    // 20 requests of a few dozen tokens at $1,000 per million, in a minute: well over $5/h.
    assert!(budget["value"].as_f64().unwrap() > 5.0, "{budget}");
    assert_eq!(budget["samples"], 20, "{budget}");
    let quality = find("quality");
    assert_eq!(quality["value"], 0.0, "{quality}");
    assert_eq!(quality["min"], 0.7, "{quality}");
    assert_eq!(quality["samples"], 6, "{quality}");
    // The cost view: the same requests, priced, with their tokens.
    let (status, body) = serve.call("GET", "/api/v1/cost?route=chat&window_s=60");
    assert_eq!(status, 200, "{body}");
    let v1 = &body["versions"][0];
    assert_eq!(
        (
            v1["version"].as_str(),
            v1["requests"].as_u64(),
            v1["priced"].as_u64()
        ),
        (Some("v1"), Some(20), Some(20)),
        "{body}"
    );
    let tokens = v1["prompt_tokens"].as_u64().unwrap() + v1["completion_tokens"].as_u64().unwrap();
    let cost = v1["cost_usd"].as_f64().unwrap();
    assert!((cost - tokens as f64 * 1000.0 / 1e6).abs() < 1e-9, "{body}");
    assert!(
        (v1["cost_per_hour_usd"].as_f64().unwrap() - cost * 60.0).abs() < 1e-9,
        "{body}"
    );
    let (status, _) = serve.call("GET", "/api/v1/cost?route=chat&window_s=0");
    assert_eq!(status, 400);
    let page = exchange(&serve.address, "GET /cost?route=chat HTTP/1.1", "", "");
    assert!(page.contains("id=\"cost\""), "{page}");
}

/// The gateway runs the same monitor file itself (`sluice gateway --monitor`): its alert rule
/// opens an alert on the traffic it serves, with no control plane running.
#[test]
fn the_gateway_runs_the_monitor_file_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let sim = Simulate::start();
    sim.put_profile(
        "flaky",
        "ttft_ms: 1\ntokens_per_second: 100000\ndefault: ok\nfaults: {error_rate: 0.5, error_status: 500}\n",
    );
    let (hook, hooks) = common::receiver();
    let monitor = dir.path().join("monitor.yaml");
    std::fs::write(
        &monitor,
        format!(
            "interval: 200ms\nalerts:\n  - {{name: chat errors, route: chat, metric: error_rate, max: 0.05, window: 1m, min_samples: 20, webhook: \"{hook}\"}}\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions: [{{name: v1, url: \"{}\", model: flaky}}]\n",
            sim.base_url
        ),
    )
    .unwrap();
    let (gateway, _) = common::Gateway::start_with(
        &config,
        &store,
        &["--monitor".as_ref(), monitor.as_os_str()],
    );
    let address = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    for _ in 0..40 {
        chat(&address, "hi");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while hooks.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no alert was sent");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = hooks.lock().unwrap().clone();
    assert_eq!(sent[0]["kind"], "alert", "{sent:?}");
    assert_eq!(sent[0]["rule"], "chat errors", "{sent:?}");
    // And a gateway without a store is refused the monitor.
    let output = sluice()
        .args(["gateway", "--no-store", "--monitor"])
        .arg(&monitor)
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("drop `--no-store`"));
}
