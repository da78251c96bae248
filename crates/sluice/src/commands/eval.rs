//! `sluice eval`: compile the suite, run it, store every row as it completes, report, gate.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use sluice_config::ProcessEnv;
use sluice_eval::RunOptions;
use sluice_eval::report::ReportFiles;
use sluice_eval::runner;
use sluice_eval::session::{
    self, Baseline, Finished, NoStore, Session, StoredRun, StoredStats, StoredSummary,
};
use sluice_store::{RunKind, Store};
use tracing::warn;

use super::{Outcome, link_run, model_version, open_store};
use crate::cli::{DiffArgs, EvalArgs, EvalCommand, RunsListArgs, ShowArgs};
use crate::progress::Progress;

pub async fn run(args: EvalArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let suite = Arc::new(sluice_eval::suite::load_with_grader(
        &args.config,
        &ProcessEnv,
        args.grader.as_deref(),
    )?);
    let gate = session::gate(args.pass_rate, args.max_errors, args.baseline.is_some())?;
    session::check_regression_settings(args.confidence, args.tolerance)?;
    let mut options = run_options(&args)?;
    if let Some(previous) = &args.filter_failing {
        let store = open_store(store_location).await?;
        let failing = session::failing_tests(&session::stored_run(&store, previous).await?.1);
        if failing.is_empty() {
            outln!("Nothing to run: every result of `{previous}` passed.");
            return Ok(Outcome::Ok);
        }
        options.only_tests = Some(failing);
    }
    // Report files are created (and their formats checked) before the run is recorded, so a
    // bad `-o` leaves nothing behind in the store.
    let outputs = if args.outputs.is_empty() {
        &suite.output_paths
    } else {
        &args.outputs
    };
    let mut files = ReportFiles::create(outputs)?;
    let baseline = baseline(args.baseline.as_deref(), &suite, store_location).await?;
    let plan = runner::plan_fingerprint(&suite, &options);
    let expected = runner::plan(&suite, &options).count();
    let session = Session {
        suite: Arc::clone(&suite),
        options,
        gate,
        baseline,
        confidence: args.confidence,
        tolerance: args.tolerance,
    };
    let mut progress = Progress::new(expected);
    let mut tick = |done, errors| progress.tick(done, errors);
    let finished = if args.no_write {
        session
            .run(
                "not-stored",
                Vec::new(),
                &mut NoStore,
                &mut files,
                &mut tick,
            )
            .await?
    } else {
        let store = open_store(store_location).await?;
        let version = model_version(Some(&store), args.model_version.as_deref()).await?;
        let mut stored =
            StoredRun::begin(&store, &suite, &args.config, &plan, args.resume.as_deref()).await?;
        link_run(Some(&store), version.as_ref(), RunKind::Eval, stored.id()).await?;
        let replay = stored.take_replay()?;
        let id = stored.id().to_owned();
        session
            .run(&id, replay, &mut stored, &mut files, &mut tick)
            .await?
    };
    progress.finish();
    render(&args, &finished, files)
}

/// The baseline to compare with: a report file when `name` is one, else a stored run.
async fn baseline(
    name: Option<&str>,
    suite: &sluice_eval::Suite,
    store_location: &str,
) -> anyhow::Result<Option<Baseline>> {
    Ok(match name {
        Some(name) if Path::new(name).is_file() => {
            Some(Baseline::from_file(Path::new(name), suite)?)
        }
        Some(name) => Some(Baseline::from_run(&open_store(store_location).await?, name).await?),
        None => None,
    })
}

/// How to run the suite, from the flags.
fn run_options(args: &EvalArgs) -> anyhow::Result<RunOptions> {
    let filter = args
        .filter_pattern
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --filter-pattern")?;
    Ok(RunOptions {
        max_concurrency: args.max_concurrency,
        repeat: args.repeat,
        filter,
        max_retries: args.max_retries,
        // A run compared with a baseline never reads the cache: on the same model and URL it
        // would replay the baseline's own answers and hide any change.
        cache: (!args.no_cache && args.baseline.is_none()).then(|| {
            let dir = args.cache_dir.clone().unwrap_or_else(|| {
                sluice_eval::cache::default_dir(|name| std::env::var(name).ok())
            });
            sluice_eval::cache::ResponseCache::new(dir, sluice_eval::cache::DEFAULT_TTL)
        }),
        ..RunOptions::default()
    })
}

/// The console report, the report files, GitHub's step summary and annotations, and the
/// outcome.
fn render(args: &EvalArgs, finished: &Finished, files: ReportFiles) -> anyhow::Result<Outcome> {
    let report = finished.report();
    out!("{}", report.console());
    if args.baseline.is_some() && !args.no_cache {
        eprintln!(
            "note: the response cache was not read: a run compared with a baseline sends every request"
        );
    } else if finished.cached > 0 {
        eprintln!(
            "note: {} answer(s) replayed from the response cache (--no-cache sends every request)",
            finished.cached
        );
    }
    files.finish(&report)?;
    let total = &finished.summary.total;
    let rows = total.passed + total.failed + total.errors;
    super::stage_outputs(&[
        ("run_id", finished.run_id.clone()),
        (
            "pass_rate",
            format!("{:.4}", total.passed as f64 / rows.max(1) as f64),
        ),
        ("passed", finished.passed.to_string()),
    ]);
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY")
        && !path.is_empty()
    {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(report.markdown().as_bytes()));
        if let Err(error) = written {
            warn!(%error, path, "Cannot write the GitHub step summary.");
        }
    }
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
        out!("{}", report.github_annotations());
    }
    Ok(if finished.passed {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

/// `sluice eval list|show|diff`: read stored runs.
pub async fn stored(command: EvalCommand, store_location: &str) -> anyhow::Result<Outcome> {
    let store = open_store(store_location).await?;
    match command {
        EvalCommand::List(args) => list(&store, args).await,
        EvalCommand::Show(args) => show(&store, args).await,
        EvalCommand::Diff(args) => diff(&store, args).await,
    }
}

/// Lists stored eval runs, newest first.
async fn list(store: &Store, args: RunsListArgs) -> anyhow::Result<Outcome> {
    let runs = store
        .list_runs(sluice_store::RunFilter {
            kind: Some(RunKind::Eval),
            status: None,
            limit: args.limit,
        })
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        outln!("No eval runs recorded yet.");
    } else {
        outln!(
            "{:<36} {:<8} {:>6} {:>6} {:>6}  NAME",
            "RUN",
            "STATUS",
            "PASS",
            "FAIL",
            "ERROR"
        );
        for run in runs {
            let stats = StoredSummary::of(&run).stats;
            let count = |field: fn(&StoredStats) -> u64| {
                stats
                    .as_ref()
                    .map_or("-".to_owned(), |s| field(s).to_string())
            };
            outln!(
                "{:<36} {:<8} {:>6} {:>6} {:>6}  {}",
                run.id,
                run.status.as_str(),
                count(|s| s.successes),
                count(|s| s.failures),
                count(|s| s.errors),
                run.name
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Shows a stored run and its results that did not pass.
async fn show(store: &Store, args: ShowArgs) -> anyhow::Result<Outcome> {
    let (run, records) = session::stored_run(store, &args.run).await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"run": run, "results": records}))?
        );
        return Ok(Outcome::Ok);
    }
    let summary = StoredSummary::of(&run);
    outln!("{}  {}  ({})", run.id, run.name, run.status.as_str());
    let stats = summary.stats.unwrap_or_default();
    outln!(
        "  {} passed, {} failed, {} errors of {} stored results",
        stats.successes,
        stats.failures,
        stats.errors,
        records.len()
    );
    for reason in summary.gate.map(|g| g.reasons).unwrap_or_default() {
        outln!("  gate: {reason}");
    }
    for record in records.iter().filter(|r| r.pass != Some(true)) {
        let (description, why) = match session::stored_row(record) {
            Some(row) => (row.description.clone(), row.why()),
            None => (String::new(), record.error.clone().unwrap_or_default()),
        };
        outln!("  [{}] {description}: {why}", record.key);
    }
    Ok(Outcome::Ok)
}

/// Compares two stored runs result by result, with the regression test.
async fn diff(store: &Store, args: DiffArgs) -> anyhow::Result<Outcome> {
    session::check_regression_settings(args.confidence, None)?;
    let (_, baseline) = session::stored_run(store, &args.baseline).await?;
    let (_, candidate) = session::stored_run(store, &args.candidate).await?;
    let comparison = sluice_eval::compare::compare(
        &sluice_eval::compare::keyed_from_records(&baseline),
        &sluice_eval::compare::keyed_from_records(&candidate),
        args.confidence,
        None,
    );
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        outln!(
            "{} -> {}: pass rate {:.1}% -> {:.1}% over {} paired results; {} regressed, {} fixed; one-sided p = {:.4}{}",
            args.baseline,
            args.candidate,
            comparison.baseline_rate * 100.0,
            comparison.candidate_rate * 100.0,
            comparison.paired,
            comparison.regressions.len(),
            comparison.fixes.len(),
            comparison.p_value,
            if comparison.significantly_worse {
                " (significantly worse)"
            } else {
                ""
            }
        );
        for flip in &comparison.regressions {
            outln!("  regressed  {}  {}", flip.key, flip.description);
        }
        for flip in &comparison.fixes {
            outln!("  fixed      {}  {}", flip.key, flip.description);
        }
        if comparison.only_baseline + comparison.only_candidate > 0 {
            outln!(
                "  not compared: {} only in the baseline, {} only in the candidate",
                comparison.only_baseline,
                comparison.only_candidate
            );
        }
    }
    Ok(Outcome::Ok)
}
