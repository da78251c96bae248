//! `sluice eval` end to end: the real binary against `sluice simulate` over loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::{Simulate, examples, sluice, stored_runs};

fn eval(sim: &Simulate, store: &Path, extra: &[&str]) -> Output {
    sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .arg("--store")
        .arg(store)
        .args(["eval", "-c"])
        .arg(examples().join("eval/promptfooconfig.yaml"))
        .args(extra)
        .output()
        .unwrap()
}

/// Reads one HTTP/1.1 request (headers and a content-length body) from a test server's socket.
fn read_request(stream: &mut TcpStream) -> String {
    let mut buffer = vec![0u8; 65536];
    let mut read = 0;
    loop {
        let n = stream.read(&mut buffer[read..]).unwrap_or(0);
        read += n;
        let text = String::from_utf8_lossy(&buffer[..read]).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if read >= end + 4 + length {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_passing_suite_exits_0_writes_reports_and_stores_every_row() {
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let (junit, json) = (
        dir.path().join("out/results.xml"),
        dir.path().join("results.json"),
    );
    let jsonl = dir.path().join("results.jsonl");
    let output = eval(
        &sim,
        &store,
        &[
            "-o",
            junit.to_str().unwrap(),
            "-o",
            json.to_str().unwrap(),
            "-o",
            jsonl.to_str().unwrap(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains("PASS 8 passed, 0 failed, 0 errors"),
        "{}",
        text(&output.stdout)
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["stats"]["successes"], 8);
    assert_eq!(report["gate"]["passed"], true);
    assert_eq!(report["results"].as_array().unwrap().len(), 8);
    assert_eq!(report["named_scores"]["structure"], 1.0);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuites name=\"Capital cities and JSON answers\" tests=\"8\" failures=\"0\" errors=\"0\""), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 8);
    assert_eq!(xml.matches("<testsuite ").count(), 2);
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(
        lines
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .count(),
        8
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "part files left behind: {leftovers:?}");

    let runs = sluice()
        .arg("--store")
        .arg(&store)
        .args(["store", "runs", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_str(&text(&runs.stdout)).unwrap();
    assert_eq!(runs[0]["kind"], "eval");
    assert_eq!(runs[0]["status"], "passed");
    assert_eq!(runs[0]["id"], report["run_id"]);
}

#[test]
fn a_regressed_model_fails_the_gate_with_exit_1_and_names_the_failures() {
    let sim = Simulate::start();
    // Only the capital answers regress; JSON and ping still answer as before.
    sim.put_profile(
        "stable",
        "script:\n  - {match: capital of France, answer: I think it is Lyon.}\n  - {regex: '(?i)json', answer: '{\"name\": \"Ada\", \"age\": 36}'}\n  - {exact: ping, answer: pong}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let junit = dir.path().join("results.xml");
    let html = dir.path().join("report.html");
    let output = eval(
        &sim,
        &store,
        &["-o", junit.to_str().unwrap(), "-o", html.to_str().unwrap()],
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.starts_with("<!doctype html>") && page.trim_end().ends_with("</html>"),
        "{page}"
    );
    assert!(
        page.contains("Gate failed:") && page.contains("<td class=fail>fail</td>"),
        "{page}"
    );
    assert_eq!(page.matches("<tr class=").count(), 8);
    assert!(
        page.contains("I think it is Lyon.") && !page.contains("<script"),
        "{page}"
    );
    assert!(!dir.path().join("report.html.part").exists());
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("FAIL 4 passed, 4 failed, 0 errors"),
        "{stdout}"
    );
    assert!(stdout.contains("knows the capital of France"), "{stdout}");
    assert!(
        stdout.contains("icontains: output does not contain \"paris\""),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure message=\"icontains: output does not contain"),
        "{xml}"
    );

    // A lower pass-rate gate accepts the same results.
    let output = eval(&sim, &store, &["--pass-rate", "50"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    let runs = sluice()
        .arg("--store")
        .arg(&store)
        .args(["store", "runs", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_str(&text(&runs.stdout)).unwrap();
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"failed") && statuses.contains(&"passed"),
        "{statuses:?}"
    );
}

#[test]
fn provider_errors_are_counted_apart_and_fail_the_gate_unless_allowed() {
    let sim = Simulate::start();
    sim.put_profile("stable", "faults: {error_rate: 1.0, error_status: 400}\n");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let output = eval(&sim, &store, &["--max-retries", "0"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("0 passed, 0 failed, 8 errors"), "{stdout}");
    assert!(
        stdout.contains("8 provider errors (at most 0 allowed)"),
        "{stdout}"
    );
    let output = eval(&sim, &store, &["--max-retries", "0", "--max-errors", "8"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
}

#[test]
fn a_bad_suite_exits_2_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, "providers: [openai:chat:m]\nprompts: ['{{q}}']\ntests:\n  - vars: {q: x}\n    assert:\n      - {type: icontain, value: x}\n      - {type: ruby, value: 'output.length > 3'}\n").unwrap();
    let output = sluice()
        .args(["eval", "--no-write", "-c"])
        .arg(&suite)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("suite.yaml:6:16: tests[0].assert[0].type: unknown assertion type `icontain`, did you mean `icontains`?"), "{stderr}");
    assert!(
        stderr.contains(
            "suite.yaml:7:16: tests[0].assert[1].type: `ruby` assertions are not supported"
        ),
        "{stderr}"
    );
    let output = sluice()
        .args([
            "eval",
            "--no-write",
            "-c",
            "/nonexistent/promptfooconfig.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("/nonexistent/promptfooconfig.yaml"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn no_write_leaves_no_store_behind() {
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("never.db");
    let output = eval(&sim, &store, &["--no-write"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!store.exists());
}

/// A 300-test suite against a model that answers right 80 % of the time: a second run is pure
/// sampling noise and must not fail the baseline gate; a drop to 70 % must.
#[test]
fn the_baseline_gate_passes_sampling_noise_and_fails_a_ten_point_drop() {
    let dir = tempfile::tempdir().unwrap();
    let profile = |right: u32| {
        format!(
            "script:\n  - regex: 'question \\d+'\n    answers: [{{text: right, weight: {right}}}, {{text: wrong, weight: {}}}]\n",
            100 - right
        )
    };
    let sim_config = dir.path().join("sim.yaml");
    std::fs::write(
        &sim_config,
        format!(
            "models:\n  noisy:\n{}",
            profile(80)
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        ),
    )
    .unwrap();
    let sim = Simulate::with_config(&sim_config);
    let mut csv = String::from("question,__expected\n");
    for i in 0..300 {
        csv.push_str(&format!("question {i},equals:right\n"));
    }
    std::fs::write(dir.path().join("tests.csv"), csv).unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, "providers:\n  - id: openai:chat:noisy\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{{question}}']\ntests: file://tests.csv\n").unwrap();
    let store = dir.path().join("s.db");
    let run = |extra: &[&str]| {
        sluice()
            .env("SLUICE_BASE_URL", &sim.base_url)
            .arg("--store")
            .arg(&store)
            .args(["eval", "-j", "1", "-c"])
            .arg(&suite)
            .args(extra)
            .output()
            .unwrap()
    };
    let baseline_report = dir.path().join("baseline.json");
    let output = run(&["--pass-rate", "0", "-o", baseline_report.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&baseline_report).unwrap()).unwrap();
    let baseline_id = report["run_id"].as_str().unwrap().to_owned();
    let rate = report["stats"]["pass_rate"].as_f64().unwrap();
    assert!((0.72..0.88).contains(&rate), "baseline pass rate {rate}");

    // Same model, new samples: noise, with default flags (with a baseline the gate is the
    // comparison alone). Against the stored run and against the report file.
    for baseline in [baseline_id.as_str(), baseline_report.to_str().unwrap()] {
        let output = run(&["--baseline", baseline]);
        let stdout = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "noise failed the gate:\n{stdout}"
        );
        assert!(stdout.contains("(no significant regression)"), "{stdout}");
    }

    // A real ten-point drop.
    let drop = profile(70);
    let address = sim
        .base_url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(stream, "PUT /admin/models/noisy HTTP/1.1\r\nhost: {address}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{drop}", drop.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let output = run(&["--baseline", &baseline_id]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a 10-point drop passed the gate:\n{stdout}"
    );
    assert!(
        stdout.contains("significantly worse than the baseline"),
        "{stdout}"
    );
    assert!(stdout.contains("exact McNemar"), "{stdout}");
    assert!(stdout.contains("regressed: "), "{stdout}");

    // A tolerance narrows the significance test (both must say worse): a significant drop
    // within it passes, one beyond it fails with both reasons. A bad baseline is a clear error.
    let output = run(&["--baseline", &baseline_id, "--tolerance", "0.5"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let output = run(&["--baseline", &baseline_id, "--tolerance", "0.02"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("relative to the baseline (tolerance 2.0%)")
            && stdout.contains("significantly worse than the baseline"),
        "{stdout}"
    );
    let output = run(&["--baseline", "eval-19700101-000000-000000"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("is neither a file nor a run in the store"),
        "{}",
        text(&output.stderr)
    );
}

/// Runs `suite` (its `${SLUICE_BASE_URL}` pointing at a simulator started with `sim_config`)
/// with no store, expecting the gate to fail; returns the JSON report.
fn failing_report(sim_config: &str, suite: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let sim_path = dir.path().join("sim.yaml");
    std::fs::write(&sim_path, sim_config).unwrap();
    let sim = Simulate::with_config(&sim_path);
    let suite_path = dir.path().join("suite.yaml");
    std::fs::write(&suite_path, suite).unwrap();
    let report = dir.path().join("r.json");
    let output = sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .args(["eval", "--no-write", "--max-retries", "0", "-c"])
        .arg(&suite_path)
        .arg("-o")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

/// The result row of the test with this description.
fn row(report: &serde_json::Value, description: &str) -> serde_json::Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["description"] == description)
        .unwrap()
        .clone()
}

/// An lm-evaluation-harness results file as the baseline: its task's headline metric against
/// the suite's metric of that name, by an unpaired z-test; noise passes, a real drop fails, and
/// a file whose tasks match nothing is refused before anything runs.
#[test]
fn lm_eval_results_files_are_compared_by_task_metric() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sim.yaml"), "{}").unwrap();
    let sim = Simulate::with_config(&dir.path().join("sim.yaml"));
    let baseline = dir.path().join("results_2026-11-01.json");
    std::fs::write(
        &baseline,
        r#"{"results": {"gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.8, "exact_match_stderr,strict-match": 0.02}},
            "higher_is_better": {"gsm8k": {"exact_match": true}},
            "n-samples": {"gsm8k": {"original": 1319, "effective": 400}},
            "versions": {"gsm8k": 3}}"#,
    )
    .unwrap();
    // The default model echoes: a row passes when its question says "ok".
    let suite = |passing: usize, metric: &str| {
        let rows: String = (0..50)
            .map(|i| {
                if i < passing {
                    format!("ok {i}\n")
                } else {
                    format!("bad {i}\n")
                }
            })
            .collect();
        std::fs::write(dir.path().join("tests.csv"), format!("question\n{rows}")).unwrap();
        let path = dir.path().join("suite.yaml");
        std::fs::write(
            &path,
            format!(
                "providers: [{{id: 'openai:chat:echo', config: {{apiBaseUrl: '${{SLUICE_BASE_URL}}'}}}}]\nprompts: ['{{{{question}}}}']\ndefaultTest:\n  assert: [{{type: contains, value: ok, metric: {metric}}}]\ntests: file://tests.csv\n"
            ),
        )
        .unwrap();
        path
    };
    let run = |suite: &Path| {
        sluice()
            .env("SLUICE_BASE_URL", &sim.base_url)
            .args(["eval", "--no-write", "--pass-rate", "0", "-c"])
            .arg(suite)
            .arg("--baseline")
            .arg(&baseline)
            .output()
            .unwrap()
    };

    let noise = run(&suite(39, "gsm8k"));
    assert_eq!(noise.status.code(), Some(0), "{}", text(&noise.stderr));
    let stdout = text(&noise.stdout);
    assert!(
        stdout.contains(
            "vs lm-eval gsm8k exact_match: 80.0% -> 78.0% (metric gsm8k over 50 results)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("no significant regression"), "{stdout}");

    let drop = run(&suite(25, "gsm8k"));
    assert_eq!(drop.status.code(), Some(1), "{}", text(&drop.stderr));
    let stdout = text(&drop.stdout);
    assert!(
        stdout.contains(
            "gsm8k: significantly worse than the lm-eval baseline: 50.0% vs exact_match 80.0%"
        ),
        "{stdout}"
    );

    let unmatched = run(&suite(50, "accuracy"));
    assert_eq!(unmatched.status.code(), Some(2));
    let stderr = text(&unmatched.stderr);
    assert!(
        stderr.contains("none of its tasks (gsm8k) matches a metric of the suite (accuracy)"),
        "{stderr}"
    );
}

/// Model-graded assertions with the simulator as both the model and the judge.
#[test]
fn model_graded_assertions_use_the_grader_and_never_pass_on_a_bad_verdict() {
    let report = failing_report(
        r#"models:
  answerer:
    script:
      - {match: capital of France, answer: The capital of France is Paris.}
  judge:
    script:
      - {regex: '(?s)Rubric:\s*mentions Paris.*Output:.*Paris', answer: '{"reason": "it names Paris", "pass": true, "score": 0.9}'}
      - {regex: '(?s)Rubric:\s*lenient', answer: '{"reason": "looks fine", "pass": true, "score": 0.2}'}
      - {regex: '(?s)Rubric:\s*garbage', answer: 'I cannot decide.'}
      - {regex: '(?s)Expert answer:\s*Paris.*Submission:.*Paris', answer: "Both name Paris.\nAnswer: C"}
      - {regex: '(?s)Expert answer:', answer: "They name different cities.\nAnswer: D"}
      - {regex: '(?s)Criterion:\s*is concise', answer: "One short sentence.\nY"}
    default: '{"reason": "no", "pass": false, "score": 0}'
"#,
        r#"providers:
  - id: openai:chat:answerer
    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}
prompts: ['{{question}}']
defaultTest:
  vars: {question: What is the capital of France?}
  options:
    provider: {id: openai:chat:judge, config: {apiBaseUrl: '${SLUICE_BASE_URL}'}}
tests:
  - description: graded pass
    assert:
      - {type: llm-rubric, value: mentions Paris}
      - {type: factuality, value: Paris}
      - {type: model-graded-closedqa, value: is concise}
      - type: similar
        value: The capital of France is Paris.
        threshold: 0.9
        provider: {id: openai:embedding:judge, config: {apiBaseUrl: '${SLUICE_BASE_URL}'}}
  - description: lenient judge under threshold
    assert: [{type: llm-rubric, value: lenient, threshold: 0.5}]
  - description: unreadable verdict
    assert: [{type: not-llm-rubric, value: garbage}]
  - description: factual disagreement
    assert: [{type: factuality, value: Lyon}]
"#,
    );
    let graded = row(&report, "graded pass");
    assert_eq!(graded["pass"], true, "{graded}");
    assert_eq!(graded["grades"].as_array().unwrap().len(), 4);
    let lenient = row(&report, "lenient judge under threshold");
    assert_eq!(lenient["pass"], false, "{lenient}");
    assert!(
        lenient["grades"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("score 0.20 against threshold 0.5"),
        "{lenient}"
    );
    let unreadable = row(&report, "unreadable verdict");
    assert_eq!(unreadable["pass"], false);
    assert!(
        unreadable["error"]
            .as_str()
            .unwrap()
            .contains("holds no JSON verdict"),
        "{unreadable}"
    );
    assert_eq!(row(&report, "factual disagreement")["pass"], false);
    assert_eq!(report["stats"]["errors"], 1);
}

/// `answer-relevance` and `context-faithfulness`: a text judge and an embedding model from one
/// `provider: {text, embedding}` grader; scores against thresholds; a missing var is an error.
#[test]
fn relevance_and_faithfulness_score_with_a_text_judge_and_embeddings() {
    let report = failing_report(
        r#"models:
  answerer:
    script:
      - {match: capital of France, answer: The capital of France is Paris.}
      - {match: weather, answer: Bananas are yellow.}
  judge:
    script:
      - {regex: '(?s)^Answer:.*Paris', answer: '{"questions": ["What is the capital of France?", "Which city is the capital of France?", "What is the capital city of France?"]}'}
      - {regex: '(?s)^Answer:.*Bananas', answer: '{"questions": ["What colour are bananas?", "Are ripe bananas yellow?", "Which fruit is yellow?"]}'}
      - {regex: '(?s)^Question:.*Answer:.*Paris', answer: '{"statements": ["The capital of France is Paris.", "Paris has forty million residents."]}'}
      - {regex: '(?s)^Context:.*1\. The capital.*2\. Paris has', answer: '{"verdicts": [{"statement": 1, "supported": true}, {"statement": 2, "supported": false}]}'}
    default: 'no idea'
"#,
        r#"providers:
  - id: openai:chat:answerer
    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}
prompts: ['{{query}}']
defaultTest:
  options:
    provider:
      text: {id: openai:chat:judge, config: {apiBaseUrl: '${SLUICE_BASE_URL}'}}
      embedding: {id: openai:embedding:judge, config: {apiBaseUrl: '${SLUICE_BASE_URL}'}}
tests:
  - description: relevant
    vars: {query: What is the capital of France?}
    assert: [{type: answer-relevance, threshold: 0.8}]
  - description: irrelevant
    vars: {query: What is the weather in Paris today?}
    assert: [{type: answer-relevance, threshold: 0.8}]
  - description: faithful enough
    vars: {query: What is the capital of France?, context: [Paris is the capital of France., It lies on the Seine.]}
    assert: [{type: context-faithfulness, threshold: 0.5}]
  - description: not faithful enough
    vars: {query: What is the capital of France?, context: Paris is the capital of France.}
    assert: [{type: context-faithfulness, threshold: 0.9}]
  - description: no context
    vars: {query: What is the capital of France?}
    assert: [{type: context-faithfulness}]
"#,
    );
    let score = |description: &str| {
        row(&report, description)["grades"][0]["score"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        row(&report, "relevant")["pass"],
        true,
        "{}",
        row(&report, "relevant")
    );
    assert!(score("relevant") > 0.8, "{}", row(&report, "relevant"));
    assert_eq!(
        row(&report, "irrelevant")["pass"],
        false,
        "{}",
        row(&report, "irrelevant")
    );
    assert!(score("irrelevant") < 0.5, "{}", row(&report, "irrelevant"));
    assert_eq!(
        row(&report, "faithful enough")["pass"],
        true,
        "{}",
        row(&report, "faithful enough")
    );
    assert_eq!(score("faithful enough"), 0.5);
    let unfaithful = row(&report, "not faithful enough");
    assert_eq!(unfaithful["pass"], false, "{unfaithful}");
    assert!(
        unfaithful["grades"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("forty million"),
        "{unfaithful}"
    );
    let missing = row(&report, "no context");
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("needs a `context` var"),
        "{missing}"
    );
    assert_eq!(report["stats"]["errors"], 1);
}

/// A run killed mid-way keeps what it stored, and `--resume` completes it without repeating
/// or losing a result.
#[test]
fn a_killed_run_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let sim_config = dir.path().join("sim.yaml");
    std::fs::write(
        &sim_config,
        "models:\n  slow:\n    ttft_ms: 40\n    default: ok\n",
    )
    .unwrap();
    let sim = Simulate::with_config(&sim_config);
    let mut csv = String::from("question,__expected\n");
    for i in 0..60 {
        csv.push_str(&format!("question {i},equals:ok\n"));
    }
    std::fs::write(dir.path().join("tests.csv"), csv).unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, "providers:\n  - id: openai:chat:slow\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{{question}}']\ntests: file://tests.csv\n").unwrap();
    let store = dir.path().join("s.db");
    let eval = |extra: &[&str]| {
        let mut command = sluice();
        command
            .env("SLUICE_BASE_URL", &sim.base_url)
            .arg("--store")
            .arg(&store)
            .args(["eval", "-j", "2", "-c"])
            .arg(&suite)
            .args(extra);
        command
    };
    let mut child = eval(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = || stored_runs(&store, "eval");
    let stored = |id: &str| {
        let show = sluice()
            .arg("--store")
            .arg(&store)
            .args(["eval", "show", id, "--json"])
            .output()
            .unwrap();
        let show: serde_json::Value = serde_json::from_str(&text(&show.stdout)).unwrap();
        show["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    // Killed once its first results are stored, mid-way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let run_id = loop {
        let runs = runs();
        if let Some(id) = runs[0]["id"].as_str()
            && !stored(id).is_empty()
        {
            break id.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was stored: {runs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = runs();
    assert_eq!(runs[0]["status"], "running", "{runs}");
    assert_eq!(runs[0]["id"], run_id.as_str(), "{runs}");
    let partial = stored(&run_id);
    assert!(
        !partial.is_empty() && partial.len() < 60,
        "{} results stored before the kill",
        partial.len()
    );

    // A changed suite cannot resume the run.
    let other = eval(&["--resume", &run_id, "--repeat", "2"])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(
        text(&other.stderr).contains("changed since run"),
        "{}",
        text(&other.stderr)
    );

    let resumed = eval(&["--resume", &run_id]).output().unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}\n{}",
        text(&resumed.stdout),
        text(&resumed.stderr)
    );
    assert!(
        text(&resumed.stdout).contains("PASS 60 passed, 0 failed, 0 errors"),
        "{}",
        text(&resumed.stdout)
    );
    let mut all = stored(&run_id);
    all.sort_unstable();
    assert_eq!(all, (0..60).collect::<Vec<u64>>());

    let again = eval(&["--resume", &run_id]).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("is already passed"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn filter_failing_reruns_only_what_failed() {
    let sim = Simulate::start();
    sim.put_profile("stable", "script:\n  - {match: capital of France, answer: Lyon}\n  - {regex: '(?i)json', answer: '{\"name\": \"Ada\", \"age\": 36}'}\n  - {exact: ping, answer: pong}\n");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let first = eval(&sim, &store, &[]);
    assert_eq!(first.status.code(), Some(1));
    let runs = sluice()
        .arg("--store")
        .arg(&store)
        .args(["eval", "list", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_str(&text(&runs.stdout)).unwrap();
    let failed_run = runs[0]["id"].as_str().unwrap().to_owned();
    let rerun = eval(&sim, &store, &["--filter-failing", &failed_run]);
    let stdout = text(&rerun.stdout);
    assert!(stdout.contains("0 passed, 4 failed, 0 errors"), "{stdout}");
}

#[test]
fn repeats_report_pass_at_k_and_flaky_tests_within_a_run_and_across_runs() {
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "description: coin\nproviders:\n  - id: openai:chat:stable\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{{q}}']\ntests:\n  - {description: coin, vars: {q: flip a coin}, assert: [{type: equals, value: heads}]}\n  - {description: ping, vars: {q: ping}, assert: [{type: equals, value: pong}]}\n",
    )
    .unwrap();
    let store = dir.path().join("s.db");
    let run = |extra: &[&str], report: &Path| {
        sluice()
            .env("SLUICE_BASE_URL", &sim.base_url)
            .arg("--store")
            .arg(&store)
            .args(["eval", "-j", "1", "--pass-rate", "0", "-c"])
            .arg(&suite)
            .arg("-o")
            .arg(report)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = dir.path().join("first.json");
    let output = run(&["--repeat", "8"], &first);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("flaky (1 tests passed and failed across repeats)"),
        "{}",
        text(&output.stdout)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&first).unwrap()).unwrap();
    let coin = &report["tests"][0];
    assert_eq!(coin["graded"], 8);
    assert_eq!(coin["flaky"], true);
    assert_eq!(coin["pass_at_n"], 1.0);
    assert_eq!(coin["pass_all_n"], 0.0);
    let ping = &report["tests"][1];
    assert_eq!(
        (ping["passed"].as_u64(), ping["pass_all_n"].as_f64()),
        (Some(8), Some(1.0))
    );

    // ping now fails: within this run it is stable, across the stored runs it is flaky.
    sim.put_profile("stable", "script:\n  - {exact: ping, answer: PONG}\n");
    let second = dir.path().join("second.json");
    run(&[], &second);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&second).unwrap()).unwrap();
    let flaky: Vec<&str> = report["flaky_in_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(flaky.len(), 2, "coin and ping: {flaky:?}");
}

#[test]
fn the_response_cache_replays_each_repeat_and_no_cache_bypasses_it() {
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "providers:\n  - id: openai:chat:stable\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{{q}}']\ntests:\n  - {description: coin, vars: {q: flip a coin}, assert: [{type: equals, value: heads}]}\n",
    )
    .unwrap();
    let run = |extra: &[&str], report: &Path| {
        let output = sluice()
            .env_remove("SLUICE_NO_CACHE")
            .env("SLUICE_BASE_URL", &sim.base_url)
            .args([
                "eval",
                "--no-write",
                "--pass-rate",
                "0",
                "--repeat",
                "6",
                "-j",
                "1",
                "--cache-dir",
            ])
            .arg(&cache)
            .arg("-c")
            .arg(&suite)
            .arg("-o")
            .arg(report)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
        let rows = report["results"].as_array().unwrap().clone();
        let outputs: Vec<(u64, String, bool)> = rows
            .iter()
            .map(|r| {
                (
                    r["repeat"].as_u64().unwrap(),
                    r["output"].as_str().unwrap().to_owned(),
                    r["cached"].as_bool().unwrap(),
                )
            })
            .collect();
        let mut sorted = outputs;
        sorted.sort();
        sorted
    };
    let first = run(&[], &dir.path().join("1.json"));
    assert!(first.iter().all(|(_, _, cached)| !cached));
    // The profile changes, but the cache answers every repeat exactly as before.
    sim.put_profile("stable", "default: changed\n");
    let second = run(&[], &dir.path().join("2.json"));
    assert!(second.iter().all(|(_, _, cached)| *cached));
    let strip = |rows: &[(u64, String, bool)]| {
        rows.iter()
            .map(|(r, o, _)| (*r, o.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first), strip(&second));
    let third = run(&["--no-cache"], &dir.path().join("3.json"));
    assert!(
        third
            .iter()
            .all(|(_, output, cached)| output == "changed" && !cached),
        "{third:?}"
    );
}

/// `python`, `exec` and `webhook` assertions, the webhook served on loopback by this test.
#[test]
fn scripted_assertions_run_python_commands_and_webhooks() {
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("check.py"), "def custom(output, context):\n    return {'pass': context['vars']['city'] in output, 'score': 1, 'reason': 'city named'}\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let webhook = format!("http://{}/grade", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            let request = read_request(&mut stream);
            let body = if request.contains("Paris") {
                r#"{"pass": true, "score": 1, "reason": "names Paris"}"#
            } else {
                r#"{"pass": false, "reason": "no Paris"}"#
            };
            write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
        }
    });
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        format!(
            r#"providers:
  - id: openai:chat:stable
    config: {{apiBaseUrl: '${{SLUICE_BASE_URL}}'}}
prompts: ['{{{{q}}}}']
defaultTest:
  vars: {{q: What is the capital of France?, city: Paris}}
tests:
  - description: python expression
    assert: [{{type: python, value: "'Paris' in output and context['vars']['city'] == 'Paris'"}}]
  - description: python function body under threshold
    assert:
      - type: python
        threshold: 0.5
        value: |
          words = len(output.split())
          return {{'score': 0.3, 'reason': f'{{words}} words'}}
  - description: python file
    assert: [{{type: python, value: 'file://check.py:custom'}}]
  - description: python error
    assert: [{{type: python, value: "1 / 0"}}]
  - description: exec exit codes
    assert:
      - {{type: exec, value: "grep -q Paris"}}
      - {{type: not-exec, value: "exit 3"}}
  - description: webhook
    assert: [{{type: webhook, value: '{webhook}'}}]
  - description: javascript
    assert: [{{type: javascript, value: "output.includes(context.vars.city) && context.prompt.length > 5"}}]
"#
        ),
    )
    .unwrap();
    let report = dir.path().join("r.json");
    let output = sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .args(["eval", "--no-write", "-c"])
        .arg(&suite)
        .arg("-o")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let row = |d: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["description"] == d)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row("python expression")["pass"],
        true,
        "{}",
        row("python expression")
    );
    let under = row("python function body under threshold");
    assert_eq!(under["pass"], false);
    assert!(
        under["grades"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("words"),
        "{under}"
    );
    assert_eq!(row("python file")["pass"], true, "{}", row("python file"));
    let error = row("python error");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError"),
        "{error}"
    );
    assert_eq!(
        row("exec exit codes")["pass"],
        true,
        "{}",
        row("exec exit codes")
    );
    assert_eq!(row("webhook")["pass"], true, "{}", row("webhook"));
    assert_eq!(row("javascript")["pass"], true, "{}", row("javascript"));
}

/// JUnit reports validate against the JUnit XSD (the one published in the `junit-report`
/// crate) with xmllint. `.ci/run` provides both and sets `SLUICE_REQUIRE_JUNIT_XSD`; elsewhere
/// the test says it was skipped when either is missing.
#[test]
fn junit_reports_validate_against_the_junit_schema() {
    let xsd = std::env::var_os("SLUICE_JUNIT_XSD")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file());
    let xmllint = Command::new("xmllint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let (Some(xsd), true) = (xsd, xmllint) else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_JUNIT_XSD").is_none(),
            "SLUICE_JUNIT_XSD and xmllint are required here"
        );
        eprintln!(
            "skipped: set SLUICE_JUNIT_XSD to a JUnit XSD and install xmllint (libxml2-utils)"
        );
        return;
    };
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let passing = dir.path().join("passing.xml");
    eval(&sim, &store, &["-o", passing.to_str().unwrap()]);
    // Failures (wrong answers) and errors (injected 400s) in one report.
    sim.put_profile("stable", "script:\n  - {match: capital, answer: Lyon <&> \"quoted\"}\ndefault: echo\nfaults: {error_rate: 0.3, error_status: 400}\n");
    let mixed = dir.path().join("mixed.xml");
    eval(
        &sim,
        &store,
        &["--max-retries", "0", "-o", mixed.to_str().unwrap()],
    );
    let text_of = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert!(
        text_of(&mixed).contains("<failure ") && text_of(&mixed).contains("<error "),
        "{}",
        text_of(&mixed)
    );
    for report in [&passing, &mixed] {
        let output = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&xsd)
            .arg(report)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            report.display(),
            text(&output.stderr)
        );
    }
}

/// A small service on loopback for the `http` provider suites: health, users, retrieve, qa.
/// `broken` makes every endpoint misbehave.
fn service(broken: bool) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let request = read_request(&mut stream);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let (status, body) = match (path.as_str(), broken) {
                ("/health", false) => (200, "ok".to_owned()),
                ("/health", true) => (503, "down".to_owned()),
                ("/users", false) => (201, r#"{"id": 7, "name": "Ada"}"#.to_owned()),
                ("/users", true) => (200, r#"{"id": "7"}"#.to_owned()),
                ("/retrieve", false) => (200, r#"{"documents": [{"id": "doc-1"}, {"id": "doc-2"}, {"id": "doc-9"}, {"id": "doc-3"}, {"id": "doc-4"}]}"#.to_owned()),
                ("/retrieve", true) => (200, r#"{"documents": [{"id": "doc-1"}, {"id": "doc-8"}, {"id": "doc-9"}]}"#.to_owned()),
                ("/qa", false) => (200, r#"{"answer": "Paris is the capital of France."}"#.to_owned()),
                ("/qa", true) => (200, r#"{"answer": "I do not know."}"#.to_owned()),
                _ => (404, "no route".to_owned()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn http_provider_suites_check_health_contracts_retrieval_and_answers() {
    let suites = ["health", "contract", "retrieval", "qa"];
    let run = |url: &str, suite: &str| {
        sluice()
            .env("SERVICE_URL", url)
            .args(["eval", "--no-write", "-c"])
            .arg(examples().join(format!("eval/service/{suite}.yaml")))
            .output()
            .unwrap()
    };
    let healthy = service(false);
    for suite in suites {
        let output = run(&healthy, suite);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{suite}:\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    }
    let broken = service(true);
    for suite in suites {
        let output = run(&broken, suite);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{suite} passed against a broken service:\n{}",
            text(&output.stdout)
        );
    }
    let output = run(&broken, "health");
    assert!(
        text(&output.stdout).contains("answered 503, which validateStatus does not accept"),
        "{}",
        text(&output.stdout)
    );
    let output = run(&broken, "retrieval");
    assert!(
        text(&output.stdout).contains("recall@3 0.25"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn costs_come_from_token_counts_and_provider_prices() {
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "providers:\n  - id: openai:chat:stable\n    label: priced\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}', inputCost: 0.000001, outputCost: 0.000002}\n  - id: openai:chat:stable\n    label: unpriced\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{{q}}']\ntests:\n  - {description: cheap enough, vars: {q: What is the capital of France?}, assert: [{type: cost, threshold: 0.001}]}\n  - {description: too dear, vars: {q: What is the capital of France?}, assert: [{type: cost, threshold: 0.000001}]}\n",
    )
    .unwrap();
    let report = dir.path().join("r.json");
    let output = sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .args(["eval", "--no-write", "-c"])
        .arg(&suite)
        .arg("-o")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rows = report["results"].as_array().unwrap();
    let find = |description: &str, provider: &str| {
        rows.iter()
            .find(|r| r["description"] == description && r["provider"] == provider)
            .unwrap()
            .clone()
    };
    let cheap = find("cheap enough", "priced");
    assert_eq!(cheap["pass"], true, "{cheap}");
    // The prompt is 7 tokens ("?" is one) and "Paris." 2: 7 × 1e-6 + 2 × 2e-6.
    assert_eq!(
        (
            cheap["tokens"]["prompt"].as_u64(),
            cheap["tokens"]["completion"].as_u64()
        ),
        (Some(7), Some(2))
    );
    assert!(
        (cheap["cost"].as_f64().unwrap() - 0.000011).abs() < 1e-12,
        "{cheap}"
    );
    assert_eq!(find("too dear", "priced")["pass"], false);
    let unpriced = find("cheap enough", "unpriced");
    assert_eq!(unpriced["pass"], false);
    assert!(
        unpriced["grades"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cost unknown"),
        "{unpriced}"
    );
    assert!(report["stats"]["cost_usd"].as_f64().unwrap() > 0.0);
}

#[test]
fn an_unknown_report_format_is_refused_before_anything_runs() {
    let sim = Simulate::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    let output = eval(
        &sim,
        &store,
        &["-o", dir.path().join("results.txt").to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("cannot tell the report format")
            && text(&output.stderr).contains(".html"),
        "{}",
        text(&output.stderr)
    );
    let runs = sluice()
        .arg("--store")
        .arg(&store)
        .args(["eval", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(text(&runs.stdout).trim(), "[]", "a run was recorded");
}

#[test]
fn github_actions_get_a_step_summary_annotations_and_templated_loops() {
    let sim = Simulate::start();
    sim.put_profile(
        "stable",
        "script:\n  - {match: capital of France, answer: Lyon}\ndefault: echo\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "description: gh\nproviders:\n  - id: openai:chat:stable\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{% for w in words %}{{ w | upper }} {% endfor %}{% if polite %}please{% endif %}']\ntests:\n  - {description: loop, vars: {words: [[a, b]], polite: true}, assert: [{type: equals, value: 'A B please'}]}\n  - {description: fails, vars: {words: [[x]], polite: false}, assert: [{type: equals, value: y}]}\n",
    )
    .unwrap();
    let output = sluice()
        .env("SLUICE_BASE_URL", &sim.base_url)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["eval", "--no-write", "-c"])
        .arg(&suite)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("::error title=sluice eval%3A fails::"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("::error title=sluice eval%3A loop::"),
        "the loop test should pass: {stdout}"
    );
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(
        markdown.contains("### ❌ gh") && markdown.contains("1 passed, 1 failed, 0 errors"),
        "{markdown}"
    );
}

/// A run compared with a baseline never reads the response cache: on the same model name and
/// URL it would replay the baseline's answers and hide a model that got worse.
#[test]
fn a_compared_run_sends_every_request_instead_of_replaying_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulate::with_config(&examples().join("sim.yaml"));
    let mut csv = String::from("question,__expected\n");
    for i in 0..40 {
        csv.push_str(&format!("question {i},equals:right\n"));
    }
    std::fs::write(dir.path().join("tests.csv"), csv).unwrap();
    let suite = dir.path().join("suite.yaml");
    std::fs::write(&suite, "providers:\n  - id: openai:chat:drifting\n    config: {apiBaseUrl: '${SLUICE_BASE_URL}'}\nprompts: ['{{question}}']\ntests: file://tests.csv\n").unwrap();
    sim.put_profile("drifting", "default: right\n");
    let store = dir.path().join("s.db");
    let run = |extra: &[&str]| {
        sluice()
            .env_remove("SLUICE_NO_CACHE")
            .env("SLUICE_BASE_URL", &sim.base_url)
            .arg("--store")
            .arg(&store)
            .args(["eval", "-j", "4", "--cache-dir"])
            .arg(dir.path().join("cache"))
            .arg("-c")
            .arg(&suite)
            .args(extra)
            .output()
            .unwrap()
    };
    let baseline_report = dir.path().join("baseline.json");
    let output = run(&["-o", baseline_report.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    // The same suite again is answered from the cache, and says so.
    let output = run(&[]);
    assert!(
        text(&output.stderr).contains("40 answer(s) replayed from the response cache"),
        "{}",
        text(&output.stderr)
    );
    // The model degrades; compared with its baseline, the run sees it.
    sim.put_profile("drifting", "default: wrong\n");
    let output = run(&["--baseline", baseline_report.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(
        text(&output.stderr).contains("the response cache was not read"),
        "{}",
        text(&output.stderr)
    );
}
