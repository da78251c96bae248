//! `sluice quickstart`: the whole local loop in one command, on a simulated model server.
//!
//! It starts the simulator with a healthy `stable` and a slower, flakier `candidate`, sends
//! sample requests through the real client (chat streaming and not, completions, embeddings),
//! load-tests both with `sluice bench`'s engine and gates them on latency and error
//! thresholds, gates both on a small eval suite (the candidate fails both gates), then puts the
//! gateway in front of the simulator and runs a canary of a third model that is made to fail
//! half-way: the rollout controller rolls it back. Everything is recorded in the store.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sluice_config::{Document, MapEnv};
use sluice_llm::types::{ChatRequest, CompletionRequest, EmbeddingRequest, OneOrMany};
use sluice_llm::{Client, ClientConfig, RetryPolicy};
use sluice_sim::{SimConfig, Simulator};
use sluice_store::{NewRun, RunKind, RunStatus};

use super::{Outcome, open_store};
use crate::cli::QuickstartArgs;

const PROFILES: &str = include_str!("quickstart.yaml");
/// The load quickstart puts on each model, and the gate on it.
const BENCH_RATE: f64 = 20.0;
const BENCH_REQUESTS: usize = 40;
const BENCH_THRESHOLDS: &[&str] = &["ttft.p99<300ms", "error_rate<0.05"];
/// Requests per second sent through the gateway during the canary.
const CANARY_TRAFFIC: f64 = 100.0;

/// The eval suite quickstart gates each model on (promptfoo's format).
const EVAL_SUITE: &str = r#"
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
    let say = |line: String| {
        if !args.json {
            outln!("{line}");
        }
    };
    say("Sluice quickstart: everything runs on this machine; nothing leaves it.".into());
    say(format!(
        "  simulator   {base_url}  (a test tool, not a model; models: stable, candidate)"
    ));

    let client = Client::new(ClientConfig {
        retry: RetryPolicy::none(),
        ..ClientConfig::new(&base_url)
    })?;
    let result = async {
        let mut summary = exercise(&client, &say).await?;
        summary["canary"] = canary(&store, &base_url, run_id.as_str(), &say).await?;
        anyhow::Ok(summary)
    }
    .await;
    server.shutdown().await;
    let summary = match result {
        Ok(summary) => summary,
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
    store
        .finish_run(&run_id, RunStatus::Passed, summary.clone())
        .await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"run_id": run_id, "summary": summary}))?
        );
    } else {
        print_next_steps(run_id.as_str(), store_location, &summary);
    }
    Ok(Outcome::Ok)
}

/// Where the run was recorded and what to try next.
fn print_next_steps(run_id: &str, store_location: &str, summary: &serde_json::Value) {
    outln!("  recorded    run {run_id} in {store_location}");
    if let Some(rollout) = summary["canary"]["rollout"].as_str() {
        outln!("  look        `sluice rollout history {rollout}`, `sluice store runs`");
    }
    outln!(
        "Next, against real endpoints: put them in a gateway config (examples/gateway.yaml), run `sluice gateway`, then `sluice rollout start` with a spec like examples/rollout.yaml; `sluice eval` and `sluice bench` take any OpenAI-compatible URL."
    );
}

/// The canary act: the gateway in front of the simulator, synthetic traffic, and a canary of
/// `candidate-v2` that starts healthy and is made to fail during its first pause; the rollout
/// controller sees the error rate cross its rule and sends all traffic back to stable.
async fn canary(
    store: &sluice_store::Store,
    base_url: &str,
    run_id: &str,
    say: &impl Fn(String),
) -> anyhow::Result<serde_json::Value> {
    let gateway = start_gateway(store, base_url).await?;
    let gateway_url = format!("http://{}/v1", gateway.local_addr());
    say(format!(
        "  gateway     {gateway_url}  route `chat`: stable 100 %, candidate (candidate-v2) 0 %"
    ));
    let traffic = tokio::spawn(sluice_bench::run(traffic(&gateway_url)));
    say(format!(
        "  traffic     {CANARY_TRAFFIC} requests/s of synthetic chat traffic through the gateway"
    ));
    let name = format!(
        "quickstart-canary-{}",
        run_id.rsplit('-').next().unwrap_or("run")
    );
    let spec = canary_spec(&name, format!("http://{}", gateway.admin_addr()));
    say(format!(
        "  rollout     canary {name}: 10 % → 50 % → 100 %, rolled back if {} over 10 s (≥ 20 requests)",
        spec.rules[0].describe()
    ));
    let (fault, injected) = break_candidate_later(base_url);
    let (controller, _) =
        sluice_rollout::controller::Controller::start(spec, store.clone(), None).await?;
    let rollout_run = controller.run_id().as_str().to_owned();
    let state = narrate(controller, &injected, say).await?;
    let rolled_back_at = std::time::Instant::now();
    fault.abort();
    traffic.abort();
    let detected_ms = injected
        .lock()
        .ok()
        .and_then(|i| *i)
        .map(|at| rolled_back_at.saturating_duration_since(at).as_millis() as u64);
    let windows = gateway
        .handle()
        .windows(Duration::from_secs(60), false)
        .await;
    let weight = candidate_weight(&gateway);
    gateway.shutdown().await;
    say(if state.aborted {
        format!(
            "  rollback    candidate back to {weight} % {} after the fault: {}",
            detected_ms.map_or_else(|| "?".to_owned(), |ms| format!("{ms} ms")),
            state.message
        )
    } else {
        format!("  rollout     ended without a rollback: {}", state.message)
    });
    Ok(json!({
        "rollout": name,
        "rollout_run": rollout_run,
        "rolled_back": state.aborted,
        "final_candidate_weight": weight,
        "detected_ms": detected_ms,
        "reason": state.message,
        "windows": windows.get("chat"),
    }))
}

/// The gateway's weight for the candidate now (-1 when the route has none).
fn candidate_weight(gateway: &sluice_gateway::GatewayServer) -> f64 {
    gateway
        .handle()
        .snapshot()
        .routes
        .get("chat")
        .and_then(|r| r.weight("candidate"))
        .unwrap_or(-1.0)
}

/// Runs the rollout to its end, saying when the fault took effect and each new weight.
async fn narrate(
    controller: sluice_rollout::controller::Controller,
    injected: &std::sync::Mutex<Option<std::time::Instant>>,
    say: &impl Fn(String),
) -> anyhow::Result<sluice_rollout::machine::State> {
    let mut last_weight = None;
    let mut fault_told = false;
    Ok(controller
        .run(|state| {
            if !fault_told && injected.lock().map(|i| i.is_some()).unwrap_or(false) {
                fault_told = true;
                say("  fault       the simulator now fails 60 % of candidate-v2's requests (fault injection)".into());
            }
            if last_weight != Some(state.weight) && !state.aborted {
                last_weight = Some(state.weight);
                say(format!("  canary      candidate at {} % ({})", state.weight, state.message));
            }
        })
        .await?)
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

/// The canary: 10 % → 50 % → 100 % with 3 s pauses, rolled back when the candidate's error
/// rate goes over 5 % in a 10 s window of at least 20 requests, checked every 250 ms.
fn canary_spec(name: &str, admin_url: String) -> sluice_rollout::spec::Spec {
    use sluice_rollout::spec::{Metric, Rule, Spec, Step};
    let rule = Rule {
        window: Duration::from_secs(10),
        min_samples: 20,
        interval: Duration::from_millis(250),
        ..Rule::gateway(Metric::ErrorRate, Some(0.05), None)
    };
    Spec {
        name: name.to_owned(),
        admin_url: Some(admin_url),
        admin_token: None,
        route: "chat".into(),
        stable: "stable".into(),
        candidate: "candidate".into(),
        steps: vec![
            Step::SetWeight(10),
            Step::Pause(Some(Duration::from_secs(3))),
            Step::SetWeight(50),
            Step::Pause(Some(Duration::from_secs(3))),
            Step::SetWeight(100),
        ],
        rules: vec![rule],
        cooldown: Duration::ZERO,
        alerts: Vec::new(),
        flag: None,
        instances: Default::default(),
        promote_alias: None,
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

/// The simulator's endpoints through the client, a bench of each model with thresholds, and the
/// eval gate on each model.
async fn exercise(client: &Client, say: &impl Fn(String)) -> anyhow::Result<serde_json::Value> {
    let mut summary = endpoints(client, say).await?;
    summary["bench"] = bench_models(client, say).await?;
    summary["eval_gate"] = eval_gate(client, say).await?;
    Ok(summary)
}

/// One streamed and one plain chat, a streamed completion, and embeddings compared by cosine.
async fn endpoints(client: &Client, say: &impl Fn(String)) -> anyhow::Result<serde_json::Value> {
    let question = "What is the capital of France?";
    let streamed = client
        .chat_stream(&ChatRequest::user("stable", question))
        .await?;
    let ttft = streamed.timing.ttft.map(ms).unwrap_or_default();
    say(format!(
        "  chat        stable, streamed: {question:?} -> {:?}  (TTFT {ttft} ms, {} chunks)",
        streamed.text, streamed.timing.content_chunks
    ));

    let json_answer = client
        .chat(&ChatRequest::user("stable", "Give me a person as JSON."))
        .await?;
    let parsed = serde_json::from_str::<serde_json::Value>(&json_answer.text).is_ok();
    say(format!(
        "  chat        stable, not streamed: {}  (valid JSON: {parsed})",
        json_answer.text
    ));

    let completion = client
        .completion_stream(&CompletionRequest::new("stable", "Once upon a time"))
        .await?;
    let tokens = completion.tokens.map(|t| t.completion).unwrap_or_default();
    say(format!(
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
    say(format!(
        "  embeddings  cosine(similar) {similar:.2} vs cosine(unrelated) {unrelated:.2}"
    ));
    Ok(json!({
        "chat": {"answer": streamed.text, "ttft_ms": ttft},
        "json_answer_valid": parsed,
        "completion_tokens": tokens,
        "embedding_cosine": {"similar": similar, "unrelated": unrelated},
    }))
}

/// A short streamed bench of each model, with the quickstart's thresholds.
async fn bench_models(client: &Client, say: &impl Fn(String)) -> anyhow::Result<serde_json::Value> {
    let mut bench = serde_json::Map::new();
    for model in ["stable", "candidate"] {
        let config = sluice_bench::BenchConfig {
            target: sluice_core::EndpointSpec::new(client.base_url(), model),
            endpoint: sluice_bench::Endpoint::Chat,
            dataset: sluice_bench::dataset::Dataset::Random,
            load: sluice_bench::Load::Rate {
                rate: BENCH_RATE,
                arrival: sluice_bench::schedule::Arrival::Poisson,
                max_concurrency: None,
            },
            limit: sluice_bench::Limit::Requests(BENCH_REQUESTS),
            warmup: Duration::ZERO,
            input_tokens: 32,
            output_tokens: 24,
            range_ratio: 0.0,
            stream: true,
            ignore_eos: false,
            goodput: sluice_bench::Goodput::default(),
            thresholds: BENCH_THRESHOLDS
                .iter()
                .map(|t| sluice_bench::threshold::Threshold::parse(t))
                .collect::<Result<_, _>>()?,
            max_lag: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
            seed: 42,
        };
        let result = sluice_bench::run(config).await?;
        let checks = result.check();
        let failed: Vec<String> = checks
            .iter()
            .filter(|(_, _, pass)| !pass)
            .map(|(t, value, _)| format!("{} measured {:.3}", t.source, value.unwrap_or(f64::NAN)))
            .collect();
        let ttft = result.stats("ttft");
        let p99 = ttft.percentile(99.0).unwrap_or_default();
        let errors = result.number("errors").unwrap_or_default();
        say(format!(
            "  bench       {model:<9} {BENCH_REQUESTS} requests at {BENCH_RATE}/s: TTFT p50 {:.1} ms, p99 {p99:.1} ms, {errors} errors -> {}",
            ttft.median,
            if failed.is_empty() {
                "PASS".to_owned()
            } else {
                format!("FAIL ({})", failed.join("; "))
            }
        ));
        bench.insert(model.into(), json!({"requests": BENCH_REQUESTS, "errors": errors, "ttft_p50_ms": ttft.median, "ttft_p99_ms": p99, "thresholds_passed": failed.is_empty()}));
    }
    Ok(bench.into())
}

/// The quickstart's eval suite on each model, with the default gate.
async fn eval_gate(client: &Client, say: &impl Fn(String)) -> anyhow::Result<serde_json::Value> {
    let mut gate = serde_json::Map::new();
    for model in ["stable", "candidate"] {
        let suite_text = EVAL_SUITE
            .replace("MODEL", model)
            .replace("BASE_URL", client.base_url());
        let suite = sluice_eval::suite::parse(
            "quickstart eval suite",
            &suite_text,
            std::path::Path::new("."),
            &MapEnv::default(),
        )?;
        let options = sluice_eval::RunOptions {
            max_retries: 0,
            ..sluice_eval::RunOptions::default()
        };
        let (_, summary) = sluice_eval::runner::collect(&suite, &options).await?;
        let (passed, reasons) = summary.verdict(&sluice_eval::Gate::default());
        let total = &summary.total;
        say(format!(
            "  eval gate   {model:<9} {} passed, {} failed, {} errors -> {}",
            total.passed,
            total.failed,
            total.errors,
            if passed {
                "PASS".to_owned()
            } else {
                format!("FAIL ({})", reasons.join("; "))
            }
        ));
        gate.insert(model.into(), json!({"passed": passed, "tests_passed": total.passed, "tests_failed": total.failed, "errors": total.errors}));
    }
    Ok(gate.into())
}
