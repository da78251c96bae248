//! `sluice eval`: compile the suite, run it, store every row as it completes, report, gate.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use sluice_config::ProcessEnv;
use sluice_eval::compare::Regression;
use sluice_eval::report::{FAILING_SAMPLE, Report, ReportFiles};
use sluice_eval::runner::{self, to_record};
use sluice_eval::{EvalRow, Gate, RunOptions, Summary};
use sluice_store::{NewRun, ResultRecord, RunStatus, Store};
use tokio::sync::mpsc;
use tracing::warn;

use super::{Outcome, link_run, model_version, open_store};
use crate::cli::{EvalArgs, EvalCommand};
use crate::progress::Progress;

/// Rows written to the store per transaction, at most.
const STORE_BATCH: usize = 256;
/// The longest a completed row waits before it is stored (what a crash can lose).
const STORE_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub async fn run(args: EvalArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let suite = std::sync::Arc::new(sluice_eval::suite::load_with_grader(
        &args.config,
        &ProcessEnv,
        args.grader.as_deref(),
    )?);
    // With a baseline the gate is the comparison alone, unless a pass rate is asked for.
    let asked = args
        .pass_rate
        .unwrap_or(if args.baseline.is_some() { 0.0 } else { 1.0 });
    let pass_rate = if asked > 1.0 { asked / 100.0 } else { asked };
    if !(0.0..=1.0).contains(&pass_rate) {
        anyhow::bail!(
            "--pass-rate must be a fraction between 0 and 1 or a percentage between 0 and 100, found {asked}"
        );
    }
    let gate = Gate {
        min_pass_rate: pass_rate,
        max_errors: args.max_errors,
    };
    let filter = args
        .filter_pattern
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --filter-pattern")?;
    let mut options = RunOptions {
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
    };
    if let Some(previous) = &args.filter_failing {
        let store = open_store(store_location).await?;
        let (_, records) = stored_eval_run(&store, previous).await?;
        let failing: std::collections::HashSet<String> = records
            .iter()
            .filter(|r| r.pass != Some(true))
            .filter_map(|r| r.key.split(':').next().map(str::to_owned))
            .collect();
        if failing.is_empty() {
            outln!("Nothing to run: every result of `{previous}` passed.");
            return Ok(Outcome::Ok);
        }
        options.only_tests = Some(failing);
    }
    let plan = runner::plan_fingerprint(&suite, &options);
    let outputs = if args.outputs.is_empty() {
        suite.output_paths.clone()
    } else {
        args.outputs.clone()
    };
    // Report files are created (and their formats checked) before the run is recorded, so a
    // bad `-o` leaves nothing behind in the store.
    let mut files = ReportFiles::create(&outputs)?;

    if !(0.5..1.0).contains(&args.confidence) {
        anyhow::bail!(
            "--confidence must be at least 0.5 and below 1, found {}",
            args.confidence
        );
    }
    if let Some(tolerance) = args.tolerance
        && !(0.0..=1.0).contains(&tolerance)
    {
        anyhow::bail!("--tolerance must be a fraction between 0 and 1, found {tolerance}");
    }
    let baseline = match &args.baseline {
        Some(baseline) => Some(load_baseline(baseline, store_location, &suite).await?),
        None => None,
    };
    let store = if args.no_write {
        None
    } else {
        Some(open_store(store_location).await?)
    };
    let version = model_version(store.as_ref(), args.model_version.as_deref()).await?;
    let (run_id, replay) = match (&store, &args.resume) {
        (Some(store), Some(resume)) => {
            let (run, records) = stored_eval_run(store, resume).await?;
            if run.status != RunStatus::Running {
                anyhow::bail!(
                    "run `{resume}` is already {}; only an interrupted (running) run can be resumed",
                    run.status.as_str()
                );
            }
            if run.config["plan"].as_str() != Some(plan.as_str()) {
                anyhow::bail!(
                    "the suite or its options changed since run `{resume}` started; resume it with the same suite, --repeat and --filter-pattern, or start a new run"
                );
            }
            (resume.clone(), records)
        }
        (Some(store), None) => {
            let config = json!({
                "suite": args.config.display().to_string(),
                "providers": suite.providers.iter().map(|p| &p.id).collect::<Vec<_>>(),
                "prompts": suite.prompts.iter().map(|p| &p.label).collect::<Vec<_>>(),
                "tests": suite.tests.len(),
                "tags": suite.tags,
                "plan": plan,
            });
            let name = if suite.description.is_empty() {
                args.config.display().to_string()
            } else {
                suite.description.clone()
            };
            let id = store
                .create_run(NewRun {
                    kind: "eval".into(),
                    name,
                    config,
                })
                .await?;
            (id.0, Vec::new())
        }
        (None, _) => ("not-stored".to_owned(), Vec::new()),
    };
    link_run(store.as_ref(), version.as_ref(), "eval", &run_id).await?;
    let _heartbeat = match &store {
        Some(store) => Some(super::Heartbeat::start(store, &run_id).await?),
        None => None,
    };
    options.skip = replay.iter().map(|record| record.seq as u64).collect();

    let started = Instant::now();
    let expected = runner::plan(&suite, &options).count();
    let (sender, mut receiver) = mpsc::channel::<EvalRow>(1024);
    let runner = {
        let suite = std::sync::Arc::clone(&suite);
        let options = options.clone();
        tokio::spawn(async move { runner::run(&suite, &options, sender).await })
    };
    // Rows are stored and written to the report files as they arrive; only aggregates, a
    // sample of failures and (with a baseline) per-key verdicts stay in memory.
    let mut summary = Summary::default();
    let mut failing: Vec<EvalRow> = Vec::new();
    let mut keyed = std::collections::BTreeMap::new();
    let mut pending: Vec<ResultRecord> = Vec::new();
    let mut progress = Progress::new(expected);
    let mut last_flush = Instant::now();
    let mut done = 0;
    let mut cached = 0usize;
    // A resumed run's stored rows count, and are reported, as if just run.
    for record in replay {
        let row: EvalRow = serde_json::from_value(record.data).with_context(|| {
            format!(
                "stored result #{} of `{run_id}` is not an eval row",
                record.seq
            )
        })?;
        summary.add(&row);
        files.row(&row)?;
        sluice_eval::compare::add_row(&mut keyed, &row);
        if !row.pass && failing.len() < FAILING_SAMPLE {
            failing.push(row);
        }
        done += 1;
    }
    while let Some(row) = receiver.recv().await {
        summary.add(&row);
        cached += usize::from(row.cached);
        if store.is_some() {
            pending.push(to_record(&row));
        }
        if pending.len() >= STORE_BATCH || last_flush.elapsed() >= STORE_FLUSH_EVERY {
            flush(store.as_ref(), &run_id, &mut pending).await?;
            last_flush = Instant::now();
        }
        files.row(&row)?;
        sluice_eval::compare::add_row(&mut keyed, &row);
        if !row.pass && failing.len() < FAILING_SAMPLE {
            failing.push(row);
        }
        done += 1;
        progress.tick(done, summary.total.errors);
    }
    progress.finish();
    flush(store.as_ref(), &run_id, &mut pending).await?;
    let setup = runner
        .await
        .context("the eval runner stopped unexpectedly")?;
    if let Err(error) = setup {
        if let Some(store) = &store {
            store
                .finish_run(
                    &sluice_store::RunId(run_id.clone()),
                    RunStatus::Errored,
                    json!({"error": error.to_string()}),
                )
                .await?;
        }
        return Err(error.into());
    }
    failing.sort_by_key(|row| row.seq);

    let comparison =
        match baseline {
            Some(Baseline::Keyed(baseline)) => Some(Regression::Paired(
                sluice_eval::compare::compare(&baseline, &keyed, args.confidence, args.tolerance),
            )),
            Some(Baseline::LmEval(tasks)) => Some(Regression::Aggregate(
                sluice_eval::lm_eval::compare(&tasks, &summary, args.confidence, args.tolerance)
                    .map_err(|reason| anyhow::anyhow!("baseline: {reason}"))?,
            )),
            None => None,
        };
    let flaky_in_history = match &store {
        Some(store) => flaky_in_history(store, &run_id, &keyed).await?,
        None => Vec::new(),
    };
    let report = Report {
        flaky_in_history: &flaky_in_history,
        run_id: &run_id,
        description: &suite.description,
        failing: &failing,
        summary: &summary,
        gate: &gate,
        duration_s: started.elapsed().as_secs_f64(),
        comparison: comparison.as_ref(),
    };
    let (passed, _) = report.verdict();
    if let Some(store) = &store {
        let stats = report.summary_json();
        let status = if passed {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        let stored = json!({"stats": stats["stats"], "gate": stats["gate"], "pairs": stats["pairs"], "flaky": stats["flaky"],
                            "named_scores": stats["named_scores"], "comparison": stats["comparison"]});
        store
            .finish_run(&sluice_store::RunId(run_id.clone()), status, stored)
            .await?;
    }
    out!("{}", report.console());
    if args.baseline.is_some() && !args.no_cache {
        eprintln!(
            "note: the response cache was not read: a run compared with a baseline sends every request"
        );
    } else if cached > 0 {
        eprintln!(
            "note: {cached} answer(s) replayed from the response cache (--no-cache sends every request)"
        );
    }
    files.finish(&report)?;
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
    Ok(if passed {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

/// `sluice eval list|show|diff`: read stored runs.
pub async fn stored(command: EvalCommand, store_location: &str) -> anyhow::Result<Outcome> {
    let store = open_store(store_location).await?;
    match command {
        EvalCommand::List(args) => {
            let runs = store
                .list_runs(sluice_store::RunFilter {
                    kind: Some("eval".into()),
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
                    let stats = &run.summary["stats"];
                    let count = |field: &str| {
                        stats[field]
                            .as_u64()
                            .map_or("-".to_owned(), |n| n.to_string())
                    };
                    outln!(
                        "{:<36} {:<8} {:>6} {:>6} {:>6}  {}",
                        run.id,
                        run.status.as_str(),
                        count("successes"),
                        count("failures"),
                        count("errors"),
                        run.name
                    );
                }
            }
            Ok(Outcome::Ok)
        }
        EvalCommand::Show(args) => {
            let (run, records) = stored_eval_run(&store, &args.run).await?;
            if args.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"run": run, "results": records}))?
                );
                return Ok(Outcome::Ok);
            }
            let stats = &run.summary["stats"];
            outln!("{}  {}  ({})", run.id, run.name, run.status.as_str());
            outln!(
                "  {} passed, {} failed, {} errors of {} stored results",
                stats["successes"],
                stats["failures"],
                stats["errors"],
                records.len()
            );
            for reason in run.summary["gate"]["reasons"]
                .as_array()
                .into_iter()
                .flatten()
            {
                outln!("  gate: {}", reason.as_str().unwrap_or_default());
            }
            for record in records.iter().filter(|r| r.pass != Some(true)) {
                let description = record.data["description"].as_str().unwrap_or_default();
                let why = match &record.error {
                    Some(error) => format!("error: {error}"),
                    None => record.data["grades"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|g| g["pass"] == false)
                        .map(|g| {
                            format!(
                                "{}: {}",
                                g["assertion"].as_str().unwrap_or_default(),
                                g["reason"].as_str().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                outln!("  [{}] {description}: {why}", record.key);
            }
            Ok(Outcome::Ok)
        }
        EvalCommand::Diff(args) => {
            if !(0.5..1.0).contains(&args.confidence) {
                anyhow::bail!(
                    "--confidence must be at least 0.5 and below 1, found {}",
                    args.confidence
                );
            }
            let (_, baseline) = stored_eval_run(&store, &args.baseline).await?;
            let (_, candidate) = stored_eval_run(&store, &args.candidate).await?;
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
    }
}

async fn stored_eval_run(
    store: &Store,
    id: &str,
) -> anyhow::Result<(sluice_store::Run, Vec<ResultRecord>)> {
    let run_id = sluice_store::RunId(id.to_owned());
    let run = store
        .get_run(&run_id)
        .await?
        .with_context(|| format!("no run `{id}` in the store; see `sluice eval list`"))?;
    if run.kind != "eval" {
        anyhow::bail!("run `{id}` is a {} run, not an eval run", run.kind);
    }
    let records = store.results(&run_id).await?;
    Ok((run, records))
}

/// How many earlier runs of the same suite are read for flakiness across history.
const HISTORY_RUNS: usize = 10;

/// Keys of this run whose verdicts differ across it and the last finished runs of the same
/// suite (by name): flaky even when each single run looks stable.
async fn flaky_in_history(
    store: &Store,
    run_id: &str,
    current: &std::collections::BTreeMap<String, sluice_eval::compare::KeyResult>,
) -> anyhow::Result<Vec<String>> {
    let Some(this) = store
        .get_run(&sluice_store::RunId(run_id.to_owned()))
        .await?
    else {
        return Ok(Vec::new());
    };
    let earlier = store
        .list_runs(sluice_store::RunFilter {
            kind: Some("eval".into()),
            status: None,
            limit: 200,
        })
        .await?;
    let mut seen: std::collections::BTreeMap<&str, (bool, bool)> = current
        .iter()
        .map(|(key, r)| (key.as_str(), (r.passed > 0, r.passed < r.graded)))
        .collect();
    for run in earlier
        .iter()
        .filter(|r| r.id != this.id && r.name == this.name && r.status != RunStatus::Running)
        .take(HISTORY_RUNS)
    {
        for (key, pass) in store.verdicts(&run.id).await? {
            if let (Some(pass), Some(entry)) = (pass, seen.get_mut(key.as_str())) {
                entry.0 |= pass;
                entry.1 |= !pass;
            }
        }
    }
    Ok(seen
        .into_iter()
        .filter(|(_, (passed, failed))| *passed && *failed)
        .map(|(key, _)| key.to_owned())
        .collect())
}

/// What a run is compared with.
enum Baseline {
    /// Per-key results of a stored run or a JSON report.
    Keyed(std::collections::BTreeMap<String, sluice_eval::compare::KeyResult>),
    /// Task aggregates of an lm-evaluation-harness results file.
    LmEval(Vec<sluice_eval::lm_eval::TaskMetric>),
}

/// The baseline: a report or lm-eval results file if `baseline` names one, else a stored run.
async fn load_baseline(
    baseline: &str,
    store_location: &str,
    suite: &sluice_eval::Suite,
) -> anyhow::Result<Baseline> {
    let path = std::path::Path::new(baseline);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read baseline {baseline}"))?;
        let report: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("baseline {baseline} is not JSON"))?;
        if sluice_eval::lm_eval::is_results_file(&report) {
            let tasks = sluice_eval::lm_eval::read(&report)
                .and_then(|tasks| {
                    sluice_eval::lm_eval::check_matches(&tasks, &suite.metric_names())?;
                    Ok(tasks)
                })
                .map_err(|reason| anyhow::anyhow!("baseline {baseline}: {reason}"))?;
            return Ok(Baseline::LmEval(tasks));
        }
        return sluice_eval::compare::keyed_from_report(&report)
            .map(Baseline::Keyed)
            .map_err(|reason| anyhow::anyhow!("baseline {baseline}: {reason}"));
    }
    let store = open_store(store_location).await?;
    let id = sluice_store::RunId(baseline.to_owned());
    let run = store
        .get_run(&id)
        .await?
        .with_context(|| format!("baseline `{baseline}` is neither a file nor a run in the store ({store_location}); see `sluice store runs --kind eval`"))?;
    if run.kind != "eval" {
        anyhow::bail!(
            "baseline `{baseline}` is a {} run, not an eval run",
            run.kind
        );
    }
    Ok(Baseline::Keyed(sluice_eval::compare::keyed_from_records(
        &store.results(&id).await?,
    )))
}

async fn flush(
    store: Option<&Store>,
    run_id: &str,
    pending: &mut Vec<ResultRecord>,
) -> anyhow::Result<()> {
    if let Some(store) = store
        && !pending.is_empty()
    {
        let batch = std::mem::take(pending);
        store
            .append_results(&sluice_store::RunId(run_id.to_owned()), batch)
            .await
            .context("cannot store eval results")?;
    }
    Ok(())
}
