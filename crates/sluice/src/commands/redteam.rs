//! `sluice redteam`: probes sent, answers judged, the gate applied, reports written and the
//! run stored (every attempt a result, keyed by probe and strategy); `sluice redteam diff`
//! compares two stored runs.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sluice_config::ProcessEnv;
use sluice_redteam::session::{self, StoredRun};
use sluice_redteam::{Config, diff, report, run};
use sluice_store::RunKind;

use super::{Outcome, link_run, model_version, open_store};
use crate::cli::{RedteamArgs, RedteamCommand};

pub async fn run(args: RedteamArgs, store_location: &str) -> anyhow::Result<Outcome> {
    session::check_outputs(&args.outputs)?;
    let config = Config::load(&args.config, &ProcessEnv)?;
    let clients = run::clients(&config).context("the target or the judge")?;
    let stored = if args.no_write {
        None
    } else {
        let store = open_store(store_location).await?;
        let version = model_version(Some(&store), args.model_version.as_deref()).await?;
        let stored = StoredRun::begin(&store, &config, &args.config).await?;
        link_run(
            Some(&store),
            version.as_ref(),
            RunKind::Redteam,
            stored.id().as_str(),
        )
        .await?;
        Some(stored)
    };
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ u64::from(std::process::id());
    let canary = sluice_safety::canary_token(seed);
    let planned = run::plan(&config).len();
    eprintln!(
        "red-teaming {} ({}) with {} probes, {planned} attempts",
        config.target.endpoint.model,
        config.target.endpoint.base_url,
        config.probes.len()
    );
    let mut done = 0;
    let attempts = run::run(&config, &clients, &canary, |_| {
        done += 1;
        if done % 50 == 0 {
            eprintln!("  {done}/{planned}");
        }
    })
    .await;
    let summary = report::summarise(&attempts, &config.gate);
    let run_id = stored.as_ref().map(|s| s.id().clone());
    if let Some(stored) = stored {
        stored.finish(&attempts, &summary).await?;
    }
    for output in &args.outputs {
        session::write_report(output, &attempts, &summary, &config, &args.config)?;
    }
    out!("{}", report::console(&summary));
    if let Some(id) = &run_id {
        outln!("recorded run {id}");
        super::stage_outputs(&[("run_id", id.to_string())]);
    }
    Ok(if summary.passed {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

/// The stored-run subcommands.
pub async fn stored(command: RedteamCommand, store_location: &str) -> anyhow::Result<Outcome> {
    let RedteamCommand::Diff(args) = command;
    let store = open_store(store_location).await?;
    let (base_run, base) = diff::stored_run(&store, &args.baseline).await?;
    let (candidate_run, candidate) = diff::stored_run(&store, &args.candidate).await?;
    let diff = diff::diff((&base_run, &base), (&candidate_run, &candidate));
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&diff)?);
    } else {
        outln!("{:<34} {:>10} {:>10}", "CATEGORY", "BASELINE", "CANDIDATE");
        let show = |rate: Option<f64>| {
            rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0))
        };
        for rates in &diff.categories {
            outln!(
                "{:<34} {:>10} {:>10}",
                rates.category,
                show(rates.baseline),
                show(rates.candidate)
            );
        }
        for change in &diff.changed_packs {
            outln!("pack changed:  {change} (its probes may differ between the runs)");
        }
        for flip in &diff.newly_successful {
            outln!("now fails:     {} ({})", flip.key, flip.category);
        }
        for flip in &diff.newly_resisted {
            outln!("now holds:     {} ({})", flip.key, flip.category);
        }
        outln!(
            "{} now fail, {} now hold, {} only in the baseline, {} only in the candidate",
            diff.newly_successful.len(),
            diff.newly_resisted.len(),
            diff.only_in_baseline,
            diff.only_in_candidate
        );
    }
    Ok(if diff.newly_successful.is_empty() {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}
