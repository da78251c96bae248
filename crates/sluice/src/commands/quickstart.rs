//! `sluice quickstart`: the whole local loop in one command, on a simulated model server.
//!
//! It starts the simulator with a healthy `stable` and a slower, flakier `candidate`, sends
//! sample requests through the real client (chat streaming and not, completions, embeddings),
//! puts the gateway in front of the simulator, then writes a pipeline and runs it as
//! `sluice pipeline run` would: each model gated on a small eval suite and on a short load
//! test (the candidate fails both gates), then a canary of a third model through the gateway,
//! made to fail half-way, which the rollout controller rolls back. The files stay beside the
//! store for a newcomer to read; everything is recorded in the store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sluice_config::{Document, MapEnv};
use sluice_llm::types::{ChatRequest, CompletionRequest, EmbeddingRequest, OneOrMany};
use sluice_llm::{Client, ClientConfig, RetryPolicy};
use sluice_pipeline::{Event, Outcome as StageOutcome, RunOptions, State};
use sluice_sim::{SimConfig, Simulator};
use sluice_store::{NewRun, RunId, RunKind, RunStatus, Store, StoreLocation};

use super::pipeline::{cli_builtins, execute, load, progress};
use super::{Outcome, open_store};
use crate::cli::QuickstartArgs;

const PROFILES: &str = include_str!("quickstart.yaml");
/// Requests per second sent through the gateway during the canary.
const CANARY_TRAFFIC: f64 = 100.0;

/// The pipeline quickstart runs.
const PIPELINE: &str = r#"# The pipeline `sluice quickstart` runs, against the simulator it starts. Each model is gated
# on the eval suite and on a short load test. The candidate is meant to fail both: its stages
# allow exactly the gate's exit code (1 for eval, 99 for a bench threshold) so that the demo
# goes on, where a real pipeline would stop there. Then candidate-v2 goes out as a canary
# behind the gateway; the simulator is made to fail it half-way, the rollout controller rolls
# it back, and the stage fails.
stages:
  eval-stable:
    uses: eval
    with: {config: evals/stable.yaml, max_retries: 0, no_cache: true}
    tier: eval
  eval-candidate:
    uses: eval
    with: {config: evals/candidate.yaml, max_retries: 0, no_cache: true}
    tier: eval
    allow_failure: [1]
  bench-stable:
    uses: bench
    with: {profile: bench/stable.yaml}
    tier: performance
  bench-candidate:
    uses: bench
    with: {profile: bench/candidate.yaml}
    tier: performance
    allow_failure: [99]
  canary:
    uses: rollout
    with: {spec: rollout.yaml}
    needs: [eval-stable, bench-stable]
"#;

/// The eval suite quickstart gates each model on (promptfoo's format).
const EVAL_SUITE: &str = r#"# The quickstart's eval gate for MODEL (promptfoo's format).
description: quickstart gate
providers:
  - id: openai:chat:MODEL
    config: {apiBaseUrl: "BASE_URL"}
prompts: ["{{question}}"]
tests:
  - description: capital of France
    vars: {question: What is the capital of France?}
    assert: [{type: icontains, value: paris}]
  - description: JSON answer
    vars: {question: Give me a person as JSON.}
    assert: [{type: is-json}, {type: contains-all, value: [name, born]}]
  - description: stays short
    vars: {question: [What is the capital of France?, Give me a person as JSON.]}
    assert: [{type: word-count, value: {max: 12}}]
"#;

/// The load test quickstart gates each model on (a `sluice bench` profile).
const BENCH_PROFILE: &str = r#"# The quickstart's load test of MODEL: 40 streamed requests at 20/s, gated on TTFT and errors.
url: BASE_URL
model: MODEL
endpoint: chat
rate: 20
arrival: poisson
requests: 40
input_tokens: 32
output_tokens: 24
range_ratio: 0
stream: true
thresholds: ["ttft.p99<300ms", "error_rate<0.05"]
max_lag: 50ms
timeout: 30s
seed: 42
"#;

/// The canary: 10 % → 50 % → 100 % with 3 s pauses, rolled back when the candidate's error
/// rate goes over 5 % in a 10 s window of at least 20 requests, checked every 250 ms.
const ROLLOUT: &str = r#"# The quickstart's canary of candidate-v2 (the gateway's version `candidate`).
name: NAME
gateway: {admin_url: "ADMIN_URL"}
route: chat
stable: stable
candidate: candidate
strategy:
  canary:
    steps:
      - set_weight: 10
      - pause: {duration: 3s}
      - set_weight: 50
      - pause: {duration: 3s}
      - set_weight: 100
analysis:
  rules:
    - {metric: error_rate, max: 0.05, window: 10s, min_samples: 20, interval: 250ms}
"#;

/// Says a line on stdout, unless the output is JSON.
#[derive(Debug, Clone, Copy)]
struct Say {
    quiet: bool,
}

impl Say {
    fn line(self, line: impl std::fmt::Display) {
        if !self.quiet {
            outln!("{line}");
        }
    }
}

pub async fn run(args: QuickstartArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let store = open_store(store_location).await?;
    let document = Document::parse("quickstart.yaml", PROFILES, &MapEnv::default())?;
    let config = SimConfig::from_document(&document)?;
    let server = Simulator::start(config, Some(42), "127.0.0.1:0".parse()?)
        .await
        .context("cannot start the simulator")?;
    let base_url = server.base_url();
    let (run_id, _heartbeat) = store
        .create_held_run(NewRun {
            kind: RunKind::Quickstart,
            name: "quickstart".into(),
            config: json!({"simulator": base_url}),
        })
        .await?;
    let say = Say { quiet: args.json };
    say.line("Sluice quickstart: everything runs on this machine; nothing leaves it.");
    say.line(format!(
        "  simulator   {base_url}  (a test tool, not a model; models: stable, candidate)"
    ));

    let client = Client::new(ClientConfig {
        retry: RetryPolicy::none(),
        ..ClientConfig::new(&base_url)
    })?;
    let result = async {
        let mut summary = endpoints(&client, say).await?;
        let flow = Flow {
            store: &store,
            store_location,
            base_url: &base_url,
            run_id: run_id.as_str(),
            say,
        };
        flow.run(&mut summary).await?;
        anyhow::Ok(summary)
    }
    .await;
    server.shutdown().await;
    let (status, summary) = match result {
        Ok(summary) => {
            let problems = unexpected(&summary);
            summary_status(problems, summary, say)
        }
        Err(error) => {
            store
                .finish_run(
                    &run_id,
                    RunStatus::Errored,
                    json!({"error": format!("{error:#}")}),
                )
                .await?;
            return Err(error);
        }
    };
    store.finish_run(&run_id, status, summary.clone()).await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"run_id": run_id, "summary": summary}))?
        );
    } else {
        print_next_steps(run_id.as_str(), store_location, &summary);
    }
    Ok(if status == RunStatus::Passed {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

/// The run's status: passed when every step ended as the demo means it to.
fn summary_status(
    problems: Vec<String>,
    mut summary: serde_json::Value,
    say: Say,
) -> (RunStatus, serde_json::Value) {
    if problems.is_empty() {
        return (RunStatus::Passed, summary);
    }
    say.line(format!(
        "  NOT AS DESIGNED: {} (each stage's output is in {}/logs)",
        problems.join("; "),
        summary["pipeline"]["dir"]
            .as_str()
            .unwrap_or("the pipeline's directory")
    ));
    summary["unexpected"] = json!(problems);
    (RunStatus::Failed, summary)
}

/// What did not end as the demo means it to: the stable model passes both gates, the
/// candidate fails both, and the canary is rolled back to a weight of 0.
fn unexpected(summary: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    let gate = &summary["eval_gate"];
    let bench = &summary["bench"];
    expect(
        gate["stable"]["passed"] == true,
        "stable failed its eval gate",
    );
    expect(
        gate["candidate"]["passed"] == false,
        "candidate passed its eval gate",
    );
    expect(
        bench["stable"]["thresholds_passed"] == true,
        "stable failed its load test",
    );
    expect(
        bench["candidate"]["thresholds_passed"] == false,
        "candidate passed its load test",
    );
    let canary = &summary["canary"];
    expect(
        canary["rolled_back"] == true,
        "the canary was not rolled back",
    );
    expect(
        canary["final_candidate_weight"] == 0.0,
        "the canary's weight is not back to 0",
    );
    problems
}

/// Where the run was recorded and what to try next.
fn print_next_steps(run_id: &str, store_location: &str, summary: &serde_json::Value) {
    outln!("  recorded    run {run_id} in {store_location}");
    if let Some(dir) = summary["pipeline"]["dir"].as_str() {
        outln!("  files       {dir}: pipeline.yaml, evals/, bench/, rollout.yaml, logs/");
    }
    if let Some(rollout) = summary["canary"]["rollout"].as_str() {
        outln!(
            "  look        `sluice rollout history {rollout}`, `sluice store runs`, `sluice serve`"
        );
    }
    outln!(
        "Next, against real endpoints: put them in a gateway config (examples/gateway.yaml), run `sluice gateway`, then `sluice rollout start` with a spec like examples/rollout.yaml; `sluice eval` and `sluice bench` take any OpenAI-compatible URL; `sluice init` scaffolds a repository with its own pipeline.yaml."
    );
}

/// The pipeline part of the quickstart.
struct Flow<'a> {
    store: &'a Store,
    store_location: &'a str,
    base_url: &'a str,
    run_id: &'a str,
    say: Say,
}

impl Flow<'_> {
    /// Starts the gateway, writes the pipeline's files and runs it; the canary stage gets
    /// traffic through the gateway and its fault while it runs.
    async fn run(&self, summary: &mut serde_json::Value) -> anyhow::Result<()> {
        let say = self.say;
        let gateway = start_gateway(self.store, self.base_url).await?;
        let gateway_url = format!("http://{}/v1", gateway.local_addr());
        say.line(format!(
            "  gateway     {gateway_url}  route `chat`: stable 100 %, candidate (candidate-v2) 0 %"
        ));
        let rollout = format!(
            "quickstart-canary-{}",
            self.run_id.rsplit('-').next().unwrap_or("run")
        );
        let dir = self.write_files(&format!("http://{}", gateway.admin_addr()), &rollout)?;
        say.line(format!(
            "  pipeline    {}: eval and bench of each model, then a canary of candidate-v2",
            dir.join("pipeline.yaml").display()
        ));
        let pipeline = load(&dir.join("pipeline.yaml"))?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let options = RunOptions {
            builtins: Some(cli_builtins(self.store_location)?),
            grace: Duration::from_secs(2),
            ..RunOptions::new(dir.clone(), logs)
        };
        let record = (
            self.store.clone(),
            dir.join("pipeline.yaml").display().to_string(),
            json!({"file": dir.join("pipeline.yaml"), "quickstart": self.run_id}),
        );
        let mut canary: Option<Canary> = None;
        let mut gates = Vec::new();
        let handle = gateway.handle();
        let (report, pipeline_run) =
            execute(&pipeline, &options, Some(record), progress::Mode::Quiet, |event| {
                match event {
                    Event::Started { name, .. } if *name == "canary" => {
                        say.line(format!(
                            "  traffic     {CANARY_TRAFFIC} requests/s of synthetic chat traffic through the gateway"
                        ));
                        say.line(format!(
                            "  rollout     canary {rollout}: 10 % → 50 % → 100 %, rolled back if the error rate is over 5 % over 10 s (≥ 20 requests)"
                        ));
                        canary = Some(Canary::start(self.base_url, &gateway_url, handle.clone(), say));
                    }
                    Event::Started { .. } => {}
                    Event::Finished(outcome) => {
                        if outcome.name == "canary"
                            && let Some(canary) = &canary
                        {
                            canary.stop_traffic();
                        }
                        match Gate::of(&outcome.name) {
                            Some(gate) => gates.push(tokio::spawn(gate.figures(
                                self.store.clone(),
                                (*outcome).clone(),
                                say,
                            ))),
                            None => say.line(describe(outcome)),
                        }
                    }
                }
            })
            .await?;
        let detected_ms = match canary {
            Some(canary) => canary.detected().await,
            None => None,
        };
        let windows = handle.windows(Duration::from_secs(60), false).await;
        let weight = candidate_weight(&handle);
        gateway.shutdown().await;
        for gate in gates {
            let (gate, figures) = gate.await?;
            summary[gate.key()][gate.model] = figures;
        }
        let canary_outcome = report.outcomes.iter().find(|o| o.name == "canary");
        let rollout_run = canary_outcome.and_then(|o| o.outputs.get("run_id").cloned());
        let rolled_back = match &rollout_run {
            Some(id) => self.stored(id).await?.map(|r| r.status) == Some(RunStatus::Failed),
            None => false,
        };
        say.line(if rolled_back {
            format!(
                "  rollback    candidate back to {weight} % {} after the fault",
                detected_ms.map_or_else(|| "?".to_owned(), |ms| format!("{ms} ms"))
            )
        } else {
            format!(
                "  rollout     ended without a rollback: {}",
                canary_outcome.map_or("it did not run", |o| o.reason.as_str())
            )
        });
        summary["canary"] = json!({
            "rollout": rollout,
            "rollout_run": rollout_run,
            "rolled_back": rolled_back,
            "final_candidate_weight": weight,
            "detected_ms": detected_ms,
            "reason": canary_outcome.map(|o| o.reason.clone()),
            "windows": windows.get("chat"),
        });
        summary["pipeline"] = json!({
            "run_id": pipeline_run,
            "dir": dir,
            "passed": report.passed,
            "stages": report.outcomes.iter().map(|o| json!({"name": o.name, "state": o.state.name(), "exit_code": o.exit_code})).collect::<Vec<_>>(),
        });
        Ok(())
    }

    /// Writes the pipeline and the files its stages read; they stay for the newcomer to
    /// read (beside a SQLite store, else in the temporary directory).
    fn write_files(&self, admin_url: &str, rollout: &str) -> anyhow::Result<PathBuf> {
        let dir = match StoreLocation::parse(self.store_location)? {
            StoreLocation::Sqlite(path) => path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join("quickstart"),
            StoreLocation::Postgres(_) => std::env::temp_dir().join("sluice-quickstart"),
        };
        let mut files = vec![
            ("pipeline.yaml".to_owned(), PIPELINE.to_owned()),
            (
                "rollout.yaml".to_owned(),
                ROLLOUT
                    .replace("NAME", rollout)
                    .replace("ADMIN_URL", admin_url),
            ),
        ];
        for model in ["stable", "candidate"] {
            let fill = |text: &str| {
                text.replace("MODEL", model)
                    .replace("BASE_URL", self.base_url)
            };
            files.push((format!("evals/{model}.yaml"), fill(EVAL_SUITE)));
            files.push((format!("bench/{model}.yaml"), fill(BENCH_PROFILE)));
        }
        for (name, text) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(dir)
    }

    async fn stored(&self, id: &str) -> anyhow::Result<Option<sluice_store::Run>> {
        stored(self.store, id).await
    }
}

async fn stored(store: &Store, id: &str) -> anyhow::Result<Option<sluice_store::Run>> {
    Ok(store.get_run(&RunId(id.to_owned())).await?)
}

/// A gate stage of the quickstart's pipeline: an eval or a bench of one model.
#[derive(Debug, Clone, Copy)]
struct Gate {
    bench: bool,
    model: &'static str,
}

impl Gate {
    fn of(stage: &str) -> Option<Gate> {
        let (kind, model) = stage.split_once('-')?;
        let model = ["stable", "candidate"].into_iter().find(|m| *m == model)?;
        match kind {
            "eval" => Some(Gate {
                bench: false,
                model,
            }),
            "bench" => Some(Gate { bench: true, model }),
            _ => None,
        }
    }

    /// Where its figures go in the summary.
    fn key(self) -> &'static str {
        if self.bench { "bench" } else { "eval_gate" }
    }

    /// The figures of the run the stage stored, told in one line.
    async fn figures(
        self,
        store: Store,
        outcome: StageOutcome,
        say: Say,
    ) -> (Gate, serde_json::Value) {
        let passed = outcome.state == State::Succeeded;
        let run_id = outcome.outputs.get("run_id").cloned();
        let run = match &run_id {
            Some(id) => stored(&store, id).await.ok().flatten(),
            None => None,
        };
        let Some(run) = run else {
            say.line(describe(&outcome));
            return (
                self,
                json!({"passed": passed, "thresholds_passed": passed, "reason": outcome.reason}),
            );
        };
        let s = &run.summary;
        let verdict = |reasons: Vec<String>| {
            if passed {
                "PASS".to_owned()
            } else {
                format!("FAIL ({})", reasons.join("; "))
            }
        };
        let model = self.model;
        if self.bench {
            let failed: Vec<String> = s["thresholds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["pass"] == false)
                .map(|t| {
                    format!(
                        "{} measured {:.3}",
                        t["threshold"].as_str().unwrap_or("?"),
                        t["value"].as_f64().unwrap_or(f64::NAN)
                    )
                })
                .collect();
            let requests = s["completed"].as_u64().unwrap_or(0) + s["failed"].as_u64().unwrap_or(0);
            let (p50, p99) = (s["p50_ttft_ms"].as_f64(), s["p99_ttft_ms"].as_f64());
            say.line(format!(
                "  bench       {model:<9} {requests} requests at {}/s: TTFT p50 {:.1} ms, p99 {:.1} ms, {} errors -> {}",
                s["request_rate"].as_f64().unwrap_or(f64::NAN),
                p50.unwrap_or(f64::NAN),
                p99.unwrap_or(f64::NAN),
                s["failed"].as_u64().unwrap_or(0),
                verdict(failed)
            ));
            let figures = json!({
                "thresholds_passed": passed,
                "requests": requests,
                "errors": s["failed"],
                "ttft_p50_ms": p50,
                "ttft_p99_ms": p99,
                "thresholds": s["thresholds"],
                "run_id": run_id,
            });
            (self, figures)
        } else {
            let stats = &s["stats"];
            let reasons = s["gate"]["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            say.line(format!(
                "  eval gate   {model:<9} {} passed, {} failed, {} errors -> {}",
                stats["successes"],
                stats["failures"],
                stats["errors"],
                verdict(reasons)
            ));
            let figures = json!({
                "passed": passed,
                "tests_passed": stats["successes"],
                "tests_failed": stats["failures"],
                "errors": stats["errors"],
                "pass_rate": stats["pass_rate"],
                "run_id": run_id,
            });
            (self, figures)
        }
    }
}

/// One line for a stage that ended: its state and what its run measured.
fn describe(outcome: &StageOutcome) -> String {
    let allowed = if outcome.allowed {
        " (allowed here: the gate did its job)"
    } else {
        ""
    };
    let pass_rate = outcome
        .outputs
        .get("pass_rate")
        .and_then(|r| r.parse::<f64>().ok())
        .map(|r| format!(", pass rate {:.0} %", r * 100.0))
        .unwrap_or_default();
    format!(
        "  stage       {:<16} {:<9} in {:.1}s{pass_rate}{allowed}  ({})",
        outcome.name,
        outcome.state.name(),
        outcome.duration.as_secs_f64(),
        outcome.reason
    )
}

/// The canary's side of the demo: traffic through the gateway, the fault the simulator is
/// told to inject, and a watch on the gateway's weight for the candidate.
struct Canary {
    traffic: tokio::task::JoinHandle<()>,
    fault: tokio::task::JoinHandle<()>,
    watch: tokio::task::JoinHandle<Option<u64>>,
}

impl Canary {
    fn start(
        base_url: &str,
        gateway_url: &str,
        gateway: sluice_gateway::GatewayHandle,
        say: Say,
    ) -> Self {
        let config = traffic(gateway_url);
        let traffic = tokio::spawn(async move {
            let _ = sluice_bench::run(config).await;
        });
        let (fault, injected) = break_candidate_later(base_url);
        let watch = tokio::spawn(watch_weight(gateway, injected, say));
        Canary {
            traffic,
            fault,
            watch,
        }
    }

    fn stop_traffic(&self) {
        self.traffic.abort();
        self.fault.abort();
    }

    /// How long after the fault the candidate's weight went back to 0, if it did.
    async fn detected(self) -> Option<u64> {
        self.stop_traffic();
        if !self.watch.is_finished() {
            // The stage ended without the weight going back to 0 first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.watch.abort();
        }
        self.watch.await.ok().flatten()
    }
}

/// Tells each new weight of the candidate and when the fault took effect; ends when the
/// weight goes back to 0 after being up, with how long after the fault that was.
async fn watch_weight(
    gateway: sluice_gateway::GatewayHandle,
    injected: Arc<Mutex<Option<Instant>>>,
    say: Say,
) -> Option<u64> {
    let mut last = candidate_weight(&gateway);
    let mut fault_told = false;
    let mut was_up = false;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let at = *injected.lock().unwrap_or_else(|p| p.into_inner());
        if at.is_some() && !fault_told {
            fault_told = true;
            say.line("  fault       the simulator now fails 60 % of candidate-v2's requests (fault injection)");
        }
        let weight = candidate_weight(&gateway);
        if weight == last {
            continue;
        }
        last = weight;
        if weight > 0.0 {
            was_up = true;
            say.line(format!("  canary      candidate at {weight} %"));
        } else if was_up {
            return at.map(|at| at.elapsed().as_millis() as u64);
        }
    }
}

/// The gateway's weight for the candidate now (-1 when the route has none).
fn candidate_weight(gateway: &sluice_gateway::GatewayHandle) -> f64 {
    gateway
        .snapshot()
        .routes
        .get("chat")
        .and_then(|r| r.weight("candidate"))
        .unwrap_or(-1.0)
}

/// A gateway in front of the simulator with route `chat`: `stable` at 100 %, `candidate`
/// (the simulator's `candidate-v2`) at 0 %.
async fn start_gateway(
    store: &sluice_store::Store,
    base_url: &str,
) -> anyhow::Result<sluice_gateway::GatewayServer> {
    let gateway_yaml = format!(
        "routes:\n  chat:\n    versions:\n      - {{name: stable, url: \"{base_url}\", model: stable}}\n      - {{name: candidate, url: \"{base_url}\", model: candidate-v2}}\n    split: {{weights: {{stable: 100, candidate: 0}}}}\n"
    );
    let document = Document::parse("quickstart gateway", &gateway_yaml, &MapEnv::default())?;
    let config =
        sluice_gateway::config::GatewayConfig::from_document(&document, &MapEnv::default())?;
    Ok(sluice_gateway::GatewayServer::start(
        config,
        None,
        Some(store.clone()),
        "127.0.0.1:0".parse()?,
        "127.0.0.1:0".parse()?,
    )
    .await?)
}

/// A minute of Poisson chat traffic through the gateway at the quickstart's rate.
fn traffic(gateway_url: &str) -> sluice_bench::BenchConfig {
    sluice_bench::BenchConfig {
        target: sluice_core::EndpointSpec::new(gateway_url, "chat"),
        endpoint: sluice_bench::Endpoint::Chat,
        dataset: sluice_bench::dataset::Dataset::Random,
        load: sluice_bench::Load::Rate {
            rate: CANARY_TRAFFIC,
            arrival: sluice_bench::schedule::Arrival::Poisson,
            max_concurrency: None,
        },
        limit: sluice_bench::Limit::Duration(Duration::from_secs(60)),
        warmup: Duration::ZERO,
        input_tokens: 8,
        output_tokens: 8,
        range_ratio: 0.0,
        stream: false,
        ignore_eos: false,
        goodput: sluice_bench::Goodput::default(),
        thresholds: Vec::new(),
        max_lag: Duration::from_secs(10),
        timeout: Duration::from_secs(10),
        seed: 7,
    }
}

/// Gives the candidate a healthy 1.5 s at 10 %, then makes the simulator fail 60 % of its
/// requests; the shared slot says when the fault took effect.
fn break_candidate_later(
    base_url: &str,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
) {
    let fault_url = format!(
        "{}/admin/models/candidate-v2",
        base_url.trim_end_matches("/v1")
    );
    let injected = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let slot = std::sync::Arc::clone(&injected);
    let fault = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let client = reqwest::Client::new();
        let response = client
            .put(&fault_url)
            .body("default: lorem\nlorem_tokens: 8\nfaults: {error_rate: 0.6, error_status: [500, 503]}\n")
            .send()
            .await;
        if response.is_ok_and(|r| r.status().is_success()) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        }
    });
    (fault, injected)
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// One streamed and one plain chat, a streamed completion, and embeddings compared by cosine.
async fn endpoints(client: &Client, say: Say) -> anyhow::Result<serde_json::Value> {
    let question = "What is the capital of France?";
    let streamed = client
        .chat_stream(&ChatRequest::user("stable", question))
        .await?;
    let ttft = streamed.timing.ttft.map(ms).unwrap_or_default();
    say.line(format!(
        "  chat        stable, streamed: {question:?} -> {:?}  (TTFT {ttft} ms, {} chunks)",
        streamed.text, streamed.timing.content_chunks
    ));

    let json_answer = client
        .chat(&ChatRequest::user("stable", "Give me a person as JSON."))
        .await?;
    let parsed = serde_json::from_str::<serde_json::Value>(&json_answer.text).is_ok();
    say.line(format!(
        "  chat        stable, not streamed: {}  (valid JSON: {parsed})",
        json_answer.text
    ));

    let completion = client
        .completion_stream(&CompletionRequest::new("stable", "Once upon a time"))
        .await?;
    let tokens = completion.tokens.map(|t| t.completion).unwrap_or_default();
    say.line(format!(
        "  completion  stable, streamed: {tokens} tokens, end-to-end {} ms",
        ms(completion.timing.e2e)
    ));

    let texts = [
        "Paris is the capital of France",
        "France's capital city is Paris",
        "Photosynthesis in green plants",
    ];
    let (embeddings, _) = client
        .embeddings(&EmbeddingRequest {
            model: "stable".into(),
            input: OneOrMany::Many(texts.iter().map(|t| (*t).to_owned()).collect()),
            extra: serde_json::Map::new(),
        })
        .await?;
    let cosine = |a: usize, b: usize| -> f32 {
        embeddings.data[a]
            .embedding
            .iter()
            .zip(&embeddings.data[b].embedding)
            .map(|(x, y)| x * y)
            .sum()
    };
    let (similar, unrelated) = (cosine(0, 1), cosine(0, 2));
    say.line(format!(
        "  embeddings  cosine(similar) {similar:.2} vs cosine(unrelated) {unrelated:.2}"
    ));
    Ok(json!({
        "chat": {"answer": streamed.text, "ttft_ms": ttft},
        "json_answer_valid": parsed,
        "completion_tokens": tokens,
        "embedding_cosine": {"similar": similar, "unrelated": unrelated},
    }))
}
