//! `sluice redteam`: probes sent, answers judged, the gate applied, reports written and the
//! run stored (every attempt a result, keyed by probe and strategy).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use sluice_config::ProcessEnv;
use sluice_redteam::{Config, report, run};
use sluice_store::{NewRun, ResultRecord, RunId, RunStatus};

use super::{Outcome, link_run, model_version, open_store};
use crate::cli::RedteamArgs;

pub async fn run(args: RedteamArgs, store_location: &str) -> anyhow::Result<Outcome> {
    for output in &args.outputs {
        let extension = output
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !matches!(extension, "sarif" | "json") {
            anyhow::bail!(
                "{}: unknown report format `.{extension}` (expected .sarif or .json)",
                output.display()
            );
        }
    }
    let config = Config::load(&args.config, &ProcessEnv)?;
    let client = run::client(&config).context("the target")?;
    let store = if args.no_write {
        None
    } else {
        Some(open_store(store_location).await?)
    };
    let version = model_version(store.as_ref(), args.model_version.as_deref()).await?;
    let run_id = match &store {
        Some(store) => Some(
            store
                .create_run(NewRun {
                    kind: "redteam".into(),
                    name: config.description.clone(),
                    config: json!({
                        "config": args.config.display().to_string(),
                        "target": {"url": config.target.url, "model": config.target.model},
                        "probes": config.probes.len(),
                        "strategies": config.strategies.iter().map(|c| c.iter().map(|s| s.name()).collect::<Vec<_>>().join("+")).collect::<Vec<_>>(),
                    }),
                })
                .await?,
        ),
        None => None,
    };
    if let Some(id) = &run_id {
        link_run(store.as_ref(), version.as_ref(), "redteam", id.as_str()).await?;
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ u64::from(std::process::id());
    let canary = sluice_safety::canary_token(seed);
    let planned = run::plan(&config).len();
    eprintln!(
        "red-teaming {} ({}) with {} probes, {planned} attempts",
        config.target.model,
        config.target.url,
        config.probes.len()
    );
    let mut done = 0;
    let attempts = run::run(&config, &client, &canary, |_| {
        done += 1;
        if done % 50 == 0 {
            eprintln!("  {done}/{planned}");
        }
    })
    .await;
    let summary = report::summarise(&attempts, &config.gate);
    if let (Some(store), Some(id)) = (&store, &run_id) {
        let records = attempts
            .iter()
            .enumerate()
            .map(|(seq, a)| ResultRecord {
                seq: seq as i64,
                key: a.key(),
                pass: a.hit.map(|hit| !hit),
                score: None,
                error: a.error.clone(),
                data: json!({
                    "category": a.probe.category,
                    "owasp": a.probe.owasp,
                    "strategy": a.strategy,
                    "evidence": a.evidence,
                    "answer": sluice_safety::redact(&a.answer),
                }),
            })
            .collect::<Vec<_>>();
        for batch in records.chunks(500) {
            store.append_results(id, batch.to_vec()).await?;
        }
        store
            .finish_run(
                &RunId(id.0.clone()),
                if summary.passed {
                    RunStatus::Passed
                } else {
                    RunStatus::Failed
                },
                serde_json::to_value(&summary)?,
            )
            .await?;
    }
    for output in &args.outputs {
        let body = match output.extension().and_then(|e| e.to_str()) {
            Some("sarif") => report::sarif(
                &attempts,
                &args.config.display().to_string(),
                env!("CARGO_PKG_VERSION"),
            ),
            _ => report::json_report(&summary, &attempts),
        };
        if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(output, serde_json::to_string_pretty(&body)?)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    print!("{}", report::console(&summary));
    if let Some(id) = &run_id {
        println!("recorded run {id}");
    }
    Ok(if summary.passed {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}
