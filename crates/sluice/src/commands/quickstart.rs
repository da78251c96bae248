//! `sluice quickstart`: the whole local loop in one command, on a simulated model server.
//!
//! It starts the simulator with a healthy `stable` and a slower, flakier `candidate`, sends
//! sample requests through the real client (chat streaming and not, completions, embeddings),
//! compares the two models' latency and errors, gates both on a small eval suite (the
//! candidate fails it), and records the run in the store.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use sluice_config::{Document, MapEnv};
use sluice_llm::types::{ChatRequest, CompletionRequest, EmbeddingRequest, OneOrMany};
use sluice_llm::{Client, ClientConfig, RetryPolicy};
use sluice_sim::{SimConfig, Simulator};
use sluice_store::{NewRun, RunStatus};

use super::{Outcome, open_store};
use crate::cli::QuickstartArgs;

const PROFILES: &str = include_str!("quickstart.yaml");
const COMPARISON_REQUESTS: usize = 24;

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
    let run_id = store
        .create_run(NewRun {
            kind: "quickstart".into(),
            name: "quickstart".into(),
            config: json!({"simulator": base_url}),
        })
        .await?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
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
    let result = exercise(&client, &say).await;
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
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"run_id": run_id, "summary": summary}))?
        );
    } else {
        println!("  recorded    run {run_id} in {store_location}");
        println!(
            "Next: `sluice simulate --config examples/sim.yaml`, then `sluice eval -c examples/eval/promptfooconfig.yaml`."
        );
    }
    Ok(Outcome::Ok)
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

async fn exercise(client: &Client, say: &impl Fn(String)) -> anyhow::Result<serde_json::Value> {
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

    let mut comparison = serde_json::Map::new();
    for model in ["stable", "candidate"] {
        let requests = (0..COMPARISON_REQUESTS).map(|i| {
            let client = client.clone();
            let request = ChatRequest::user(model, format!("Tell me a story, part {i}."));
            async move { client.chat_stream(&request).await }
        });
        let results = join_all_limited(requests.collect(), 6).await;
        let mut ttfts: Vec<f64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter_map(|g| g.timing.ttft.map(ms))
            .collect();
        ttfts.sort_by(f64::total_cmp);
        let errors = results.iter().filter(|r| r.is_err()).count();
        let quantile = |q: f64| {
            ttfts
                .get(((ttfts.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        let (p50, p95) = (quantile(0.5), quantile(0.95));
        say(format!(
            "  compare     {model:<9} {COMPARISON_REQUESTS} streamed requests: TTFT p50 {p50} ms, p95 {p95} ms, {errors} errors"
        ));
        comparison.insert(model.into(), json!({"requests": COMPARISON_REQUESTS, "errors": errors, "ttft_p50_ms": p50, "ttft_p95_ms": p95}));
    }
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
    Ok(json!({
        "eval_gate": gate,
        "chat": {"answer": streamed.text, "ttft_ms": ttft},
        "json_answer_valid": parsed,
        "completion_tokens": tokens,
        "embedding_cosine": {"similar": similar, "unrelated": unrelated},
        "comparison": comparison,
    }))
}

/// Runs futures with at most `limit` in flight, keeping their order.
async fn join_all_limited<F, T>(futures: Vec<F>, limit: usize) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(limit));
    let handles: Vec<_> = futures
        .into_iter()
        .map(|future| {
            let semaphore = semaphore.clone();
            tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                future.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}
