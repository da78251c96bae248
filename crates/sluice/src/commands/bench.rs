//! `sluice bench`: settings from flags over a YAML profile, a pre-flight request, the load (one
//! run, a sweep or a preset) with live figures on a terminal, reports, the store, and the exit
//! code: 0 thresholds hold, 99 one failed, 3 the client fell behind its schedule, 2 an error.
//! `compare` sets two results side by side.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use sluice_bench::profile::{
    self, ArrivalKind, DurationText, EndpointKind, GoodputSpec, Mode, Plan, Preset, Profile,
    ProfileFile, Verdict,
};
use sluice_bench::session::StoredBench;
use sluice_bench::sweep::Stages;
use sluice_bench::{BenchResult, Live};
use sluice_config::ProcessEnv;
use sluice_store::RunKind;
use tokio::sync::watch;

use super::{Outcome, link_run, model_version, open_store};
use crate::cli::{
    BenchArgs, BenchArrival, BenchCommand, BenchCompareArgs, BenchEndpoint, BenchPreset,
};

/// The flags as a profile (the file's keys are the flags' names).
fn flags(args: &BenchArgs) -> Profile {
    let text = |t: &Option<String>| t.clone().map(DurationText::Text);
    Profile {
        url: args.url.clone(),
        model: args.model.clone(),
        api_key_env: args.api_key_env.clone(),
        endpoint: args.endpoint.map(|e| match e {
            BenchEndpoint::Chat => EndpointKind::Chat,
            BenchEndpoint::Completions => EndpointKind::Completions,
        }),
        rate: args.rate,
        arrival: args.arrival.map(|a| match a {
            BenchArrival::Constant => ArrivalKind::Constant,
            BenchArrival::Poisson => ArrivalKind::Poisson,
            BenchArrival::Gamma => ArrivalKind::Gamma,
        }),
        burstiness: args.burstiness,
        concurrency: args.concurrency,
        max_concurrency: args.max_concurrency,
        sweep: args.sweep,
        duration: text(&args.duration),
        requests: args.requests,
        warmup: text(&args.warmup),
        dataset: args.dataset.clone(),
        input_tokens: args.input_tokens,
        output_tokens: args.output_tokens,
        range_ratio: args.range_ratio,
        stream: (args.stream || args.no_stream).then_some(!args.no_stream),
        ignore_eos: args.ignore_eos.then_some(true),
        goodput: (!args.goodput.is_empty()).then(|| GoodputSpec::List(args.goodput.clone())),
        thresholds: args.thresholds.clone(),
        max_lag: text(&args.max_lag),
        timeout: text(&args.timeout),
        seed: args.seed,
        preset: args
            .preset
            .map(|BenchPreset::BatchSizes| Preset::BatchSizes),
        output: args.output.clone(),
        csv: args.csv.clone(),
    }
}

pub async fn run(args: BenchArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let file = match &args.config {
        Some(path) => Some(ProfileFile::read(path, &ProcessEnv)?),
        None => None,
    };
    let plan = profile::compile(flags(&args), file)?;
    let config = &plan.config;
    let store = if args.no_write {
        None
    } else {
        Some(open_store(store_location).await?)
    };
    sluice_bench::preflight(config).await.with_context(|| {
        format!(
            "pre-flight request to {} (model `{}`) failed; nothing was measured",
            config.target.base_url, config.target.model
        )
    })?;
    let version = model_version(store.as_ref(), args.model_version.as_deref()).await?;
    let stored = match &store {
        Some(store) => {
            let stored = StoredBench::begin(store, &plan).await?;
            let id = stored.id().as_str();
            link_run(Some(store), version.as_ref(), RunKind::Bench, id).await?;
            Some(stored)
        }
        None => None,
    };
    let run_id = stored.as_ref().map(|s| s.id().clone());
    let stages = match execute(&plan, args.json).await {
        Ok(stages) => stages,
        Err(error) => {
            if let Some(stored) = stored {
                stored.errored(&error).await?;
            }
            return Err(error.into());
        }
    };
    let verdict = stages.verdict(plan.mode);
    write_files(&plan, &stages, &verdict)?;
    if let Some(stored) = stored {
        stored.finish(&verdict).await?;
    }
    render(&args, &plan, &stages, &verdict, run_id.as_ref())
}

/// The result files the plan asks for: JSON (`-o`) and CSV.
fn write_files(plan: &Plan, stages: &Stages, verdict: &Verdict) -> anyhow::Result<()> {
    if let Some(path) = &plan.output {
        std::fs::write(path, serde_json::to_string_pretty(&verdict.document)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &plan.csv {
        std::fs::write(path, stages.csv())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs the plan, showing live figures on a terminal and a line per finished stage unless the
/// report is JSON.
async fn execute(plan: &Plan, quiet: bool) -> Result<Stages, sluice_bench::BenchError> {
    let (live, display) = live_display(!quiet && std::io::stderr().is_terminal());
    let outcome = plan
        .execute(live, |result: &BenchResult| {
            if !quiet {
                eprintln!(
                    "  stage done: {} → {:.2} req/s",
                    result.load_label(),
                    result.number("request_throughput").unwrap_or(0.0)
                );
            }
        })
        .await;
    if let Some(display) = display {
        display.abort();
        eprint!("\r\x1b[2K");
    }
    outcome
}

/// The console (or JSON) report, and the outcome.
fn render(
    args: &BenchArgs,
    plan: &Plan,
    stages: &Stages,
    verdict: &Verdict,
    run_id: Option<&sluice_store::RunId>,
) -> anyhow::Result<Outcome> {
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&verdict.document)?);
    } else if plan.mode == Mode::Single {
        out!("{}", stages.stages[0].console());
    } else {
        let what = match plan.mode {
            Mode::BatchSizes => "preset batch-sizes",
            _ => "sweep",
        };
        outln!(
            "{what} {}: {} stages",
            plan.config.target.model,
            stages.stages.len()
        );
        out!("{}", sluice_bench::sweep::table(stages));
        for r in &stages.stages {
            if let Some(reason) = sluice_bench::invalid_reason(r) {
                outln!("  INVALID stage {}: {reason}", r.load_label());
            }
        }
    }
    if let Some(id) = run_id {
        super::stage_outputs(&[("run_id", id.to_string())]);
        if !args.json {
            outln!("  recorded run {id}");
        }
    }
    Ok(if verdict.invalid {
        Outcome::Invalid
    } else if verdict.failed {
        Outcome::ThresholdFailed
    } else {
        Outcome::Ok
    })
}

/// A live status line on a terminal: elapsed time, answers, errors, rate and running
/// percentiles, redrawn as the run's figures change.
fn live_display(
    enabled: bool,
) -> (
    Option<watch::Sender<Live>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    if !enabled {
        return (None, None);
    }
    let (sender, mut receiver) = watch::channel(Live::default());
    let task = tokio::spawn(async move {
        while receiver.changed().await.is_ok() {
            let live = receiver.borrow_and_update().clone();
            let seconds = live.elapsed.as_secs_f64();
            let rate = if seconds > 0.0 {
                live.completed as f64 / seconds
            } else {
                0.0
            };
            eprint!(
                "\r\x1b[2K  {seconds:6.1} s  {} ok  {} errors  {rate:8.1} req/s  ttft p50 {:.1} p99 {:.1} ms  e2el p50 {:.1} p99 {:.1} ms",
                live.completed,
                live.failed,
                live.ttft_ms.0,
                live.ttft_ms.1,
                live.e2el_ms.0,
                live.e2el_ms.1
            );
        }
    });
    (Some(sender), Some(task))
}

/// `sluice bench compare`.
pub async fn compare(args: BenchCompareArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let baseline = load_result(&args.baseline, store_location).await?;
    let candidate = load_result(&args.candidate, store_location).await?;
    let rows = sluice_bench::compare::compare(&baseline, &candidate)?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&sluice_bench::compare::json(&rows))?
        );
    } else {
        outln!("bench compare {} → {}", args.baseline, args.candidate);
        out!("{}", sluice_bench::compare::table(&rows));
    }
    Ok(Outcome::Ok)
}

/// A result from a JSON file, or else from a stored bench run with that id.
async fn load_result(name: &str, store_location: &str) -> anyhow::Result<Value> {
    let path = Path::new(name);
    if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{name}: not a JSON result file"));
    }
    let store = open_store(store_location).await?;
    let run = store
        .get_run(&sluice_store::RunId(name.to_owned()))
        .await?
        .with_context(|| format!("`{name}` is neither a file nor a stored run"))?;
    if run.kind != RunKind::Bench {
        bail!("run `{name}` is a {} run, not a bench run", run.kind);
    }
    Ok(run.summary)
}

/// Dispatches `sluice bench` and its subcommands.
pub async fn dispatch(
    command: Option<BenchCommand>,
    args: BenchArgs,
    store_location: &str,
) -> anyhow::Result<Outcome> {
    match command {
        None => run(args, store_location).await,
        Some(BenchCommand::Compare(args)) => compare(args, store_location).await,
    }
}
