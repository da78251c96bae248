//! `sluice pipeline run`: check `pipeline.yaml`, then run its stages with progress lines on
//! stderr and a summary (or the JSON report) on stdout; Ctrl-C or SIGTERM stops the running
//! stages as groups and still runs the `finally` stages.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use sluice_config::ProcessEnv;
use sluice_pipeline::{Event, Outcome as StageOutcome, Pipeline, Report, RunOptions, State};
use tokio::sync::watch;

use super::{Outcome, shutdown_signal};
use crate::cli::{PipelineCommand, PipelineRunArgs};

pub async fn run(command: PipelineCommand) -> anyhow::Result<Outcome> {
    let PipelineCommand::Run(args) = command;
    let pipeline = Pipeline::load(&args.file, &ProcessEnv)?;
    if args.dry_run {
        print_plan(&pipeline);
        return Ok(Outcome::Ok);
    }
    let log_dir = match &args.logs {
        Some(dir) => dir.clone(),
        None => default_log_dir(),
    };
    std::fs::create_dir_all(&log_dir).map_err(|e| {
        anyhow::anyhow!("cannot create the log directory {}: {e}", log_dir.display())
    })?;
    let options = RunOptions {
        max_parallel: usize::from(args.max_parallel),
        log_dir: log_dir.clone(),
        grace: Duration::from_secs(10),
    };
    let (stop, cancel) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("Stopping: the running stages are being stopped; finally stages still run.");
        let _ = stop.send(true);
        stop
    });
    let quiet = args.json;
    let report = sluice_pipeline::run(&pipeline, &options, cancel, |event| {
        if !quiet {
            progress(&event);
        }
    })
    .await;
    stopper.abort();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report_json(&report, &log_dir))?
        );
    } else {
        print_summary(&report, &args, &log_dir);
    }
    Ok(if report.passed {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

/// `sluice-pipeline-UNIXMS` under the system's temporary directory.
fn default_log_dir() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    std::env::temp_dir().join(format!("sluice-pipeline-{now}"))
}

/// The order stages would run in, with what each needs.
fn print_plan(pipeline: &Pipeline) {
    for name in pipeline.order() {
        let (stage, group) = match pipeline.stages.get(name) {
            Some(stage) => (stage, "stage"),
            None => (&pipeline.finally[name], "finally"),
        };
        let needs = if stage.needs.is_empty() {
            String::new()
        } else {
            format!(" (needs {})", stage.needs.join(", "))
        };
        outln!("{group:<8} {name}{needs}: {}", stage.run);
    }
}

/// One line on stderr per started attempt and per finished stage.
fn progress(event: &Event<'_>) {
    match event {
        Event::Started { name, attempt: 1 } => eprintln!("  start  {name}"),
        Event::Started { name, attempt } => eprintln!("  retry  {name} (attempt {attempt})"),
        Event::Finished(outcome) => {
            let label = match outcome.state {
                _ if outcome.ok() => "done",
                State::Skipped => "skip",
                State::Cancelled => "stop",
                _ => "FAIL",
            };
            eprintln!("  {label:<6} {} — {}", outcome.name, describe(outcome));
        }
    }
}

fn describe(outcome: &StageOutcome) -> String {
    format!("{}: {}", outcome.state.name(), outcome.reason)
}

/// The table of stages, where their logs are, and the verdict.
fn print_summary(report: &Report, args: &PipelineRunArgs, log_dir: &std::path::Path) {
    outln!(
        "{:<24} {:<10} {:>8} {:>9}  WHY",
        "STAGE",
        "STATE",
        "ATTEMPTS",
        "TIME"
    );
    for outcome in &report.outcomes {
        outln!(
            "{:<24} {:<10} {:>8} {:>8.1}s  {}",
            outcome.name,
            outcome.state.name(),
            outcome.attempts,
            outcome.duration.as_secs_f64(),
            outcome.reason
        );
    }
    outln!("logs in {}", log_dir.display());
    outln!(
        "{} {} in {:.1}s",
        args.file.display(),
        if report.passed { "passed" } else { "FAILED" },
        report.duration.as_secs_f64()
    );
}

fn report_json(report: &Report, log_dir: &std::path::Path) -> serde_json::Value {
    json!({
        "passed": report.passed,
        "duration_s": report.duration.as_secs_f64(),
        "logs": log_dir,
        "stages": report.outcomes.iter().map(|o| json!({
            "name": o.name,
            "finally": o.finally,
            "state": o.state.name(),
            "allowed": o.allowed,
            "exit_code": o.exit_code,
            "attempts": o.attempts,
            "started_s": o.started.map(|s| s.as_secs_f64()),
            "duration_s": o.duration.as_secs_f64(),
            "log": o.log,
            "reason": o.reason,
        })).collect::<Vec<_>>(),
    })
}
