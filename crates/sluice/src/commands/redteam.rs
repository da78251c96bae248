//! `sluice redteam`: probes sent, answers judged, the gate applied, reports written and the
//! run stored (every attempt a result, keyed by probe and strategy); `sluice redteam diff`
//! compares two stored runs.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use sluice_config::ProcessEnv;
use sluice_redteam::session::{self, StoredRun};
use sluice_redteam::{Config, report, run};
use sluice_store::{ResultRecord, RunId};

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
            "redteam",
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
        config.target.model,
        config.target.url,
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
    let load = |id: String| {
        let store = store.clone();
        async move {
            let run_id = RunId(id.clone());
            let run = store.get_run(&run_id).await?.with_context(|| {
                format!("no run `{id}` in the store; see `sluice store runs --kind redteam`")
            })?;
            if run.kind != "redteam" {
                anyhow::bail!("run `{id}` is a {} run, not a redteam run", run.kind);
            }
            let results = store.results(&run_id).await?;
            anyhow::Ok((run, results))
        }
    };
    let (base_run, base) = load(args.baseline.clone()).await?;
    let (candidate_run, candidate) = load(args.candidate.clone()).await?;
    let verdicts = |results: &[ResultRecord]| {
        results
            .iter()
            .map(|r| {
                (
                    r.key.clone(),
                    (
                        r.pass,
                        r.data["category"].as_str().unwrap_or("?").to_owned(),
                    ),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (before, after) = (verdicts(&base), verdicts(&candidate));
    let mut broken = Vec::new();
    let mut fixed = Vec::new();
    for (key, (pass, category)) in &after {
        match (before.get(key).map(|(p, _)| *p), pass) {
            (Some(Some(true)), Some(false)) => broken.push((key.clone(), category.clone())),
            (Some(Some(false)), Some(true)) => fixed.push((key.clone(), category.clone())),
            _ => {}
        }
    }
    let only_in = |a: &std::collections::BTreeMap<String, _>,
                   b: &std::collections::BTreeMap<String, _>| {
        a.keys().filter(|k| !b.contains_key(*k)).count()
    };
    let rates = |run: &sluice_store::Run| {
        run.summary["categories"]
            .as_array()
            .map(|categories| {
                categories
                    .iter()
                    .filter_map(|c| {
                        Some((
                            c["category"].as_str()?.to_owned(),
                            c["success"]["rate"].as_f64()?,
                        ))
                    })
                    .collect::<std::collections::BTreeMap<_, _>>()
            })
            .unwrap_or_default()
    };
    let (base_rates, candidate_rates) = (rates(&base_run), rates(&candidate_run));
    // Runs are comparable probe by probe only on the same pack versions.
    let packs = |run: &sluice_store::Run| run.summary["packs"].clone();
    let changed_packs: Vec<String> = match (
        packs(&base_run).as_object(),
        packs(&candidate_run).as_object(),
    ) {
        (Some(before), Some(after)) => after
            .iter()
            .filter_map(|(name, version)| {
                let old = before.get(name)?;
                (old != version).then(|| format!("{name} {old} → {version}"))
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut categories: Vec<&String> = base_rates.keys().chain(candidate_rates.keys()).collect();
    categories.sort();
    categories.dedup();
    if args.json {
        let body = json!({
            "baseline": args.baseline,
            "candidate": args.candidate,
            "newly_successful": broken.iter().map(|(k, c)| json!({"key": k, "category": c})).collect::<Vec<_>>(),
            "newly_resisted": fixed.iter().map(|(k, c)| json!({"key": k, "category": c})).collect::<Vec<_>>(),
            "only_in_baseline": only_in(&before, &after),
            "only_in_candidate": only_in(&after, &before),
            "changed_packs": changed_packs,
            "categories": categories.iter().map(|c| json!({
                "category": c,
                "baseline": base_rates.get(*c),
                "candidate": candidate_rates.get(*c),
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        outln!("{:<34} {:>10} {:>10}", "CATEGORY", "BASELINE", "CANDIDATE");
        let show = |rate: Option<&f64>| {
            rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0))
        };
        for category in &categories {
            outln!(
                "{category:<34} {:>10} {:>10}",
                show(base_rates.get(*category)),
                show(candidate_rates.get(*category))
            );
        }
        for change in &changed_packs {
            outln!("pack changed:  {change} (its probes may differ between the runs)");
        }
        for (key, category) in &broken {
            outln!("now fails:     {key} ({category})");
        }
        for (key, category) in &fixed {
            outln!("now holds:     {key} ({category})");
        }
        outln!(
            "{} now fail, {} now hold, {} only in the baseline, {} only in the candidate",
            broken.len(),
            fixed.len(),
            only_in(&before, &after),
            only_in(&after, &before)
        );
    }
    Ok(if broken.is_empty() {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}
