//! `sluice pipeline run`: check `pipeline.yaml` (built-ins' options and GPU requests
//! included), then run its stages with progress lines on stderr and a summary (or the JSON
//! report) on stdout; the run and each stage's outcome go to the store, so `--resume` can
//! finish a run that was killed. Ctrl-C or SIGTERM stops the running stages as groups and still
//! runs the `finally` stages. `sluice pipeline export` writes the pipeline for another CI
//! system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use serde_json::json;
use sluice_core::report::{
    JUNIT_CLOSE, JUNIT_SUITE_CLOSE, JunitCounts, JunitVerdict, github_command, junit_case,
    junit_open, junit_suite_open,
};
use sluice_pipeline::export::{ExportOptions, export};
use sluice_pipeline::gpu::Pool;
use sluice_pipeline::{
    Action, Builtin, Builtins, Event, External, Outcome as StageOutcome, Pipeline, Report,
    RunOptions, State,
};
use sluice_store::{NewEvent, NewRun, RunFilter, RunKind, RunStatus, Store};
use tokio::sync::{mpsc, watch};

use self::progress::Progress;
use super::{Outcome, open_store, shutdown_signal};
use crate::cli::{Cli, PipelineCommand, PipelineExportArgs, PipelineRunArgs};

pub(crate) mod progress;

pub async fn run(command: PipelineCommand, store: &str) -> anyhow::Result<Outcome> {
    match command {
        PipelineCommand::Run(args) => run_pipeline(args, store).await,
        PipelineCommand::Export(args) => export_pipeline(&args),
    }
}

/// Reads the pipeline and checks each built-in's options as the command itself would.
pub(crate) fn load(file: &Path) -> anyhow::Result<Pipeline> {
    Ok(Pipeline::load_with(file, &|builtin, with| {
        let templated = with
            .iter()
            .any(|(_, v)| v.iter().any(|v| v.contains("${{")));
        builtin_argv(builtin, with, "sluice.db", !templated).map(|_| ())
    })?)
}

/// The `sluice` arguments that run `builtin` with `with`: each key names one of its options
/// (`_` or `-`), a list gives the option once per item, `true`/`false` turn a flag on or
/// off. With `parse`, the whole command line is also checked as the command itself would.
fn builtin_argv(
    builtin: Builtin,
    with: &[(String, Vec<String>)],
    store: &str,
    parse: bool,
) -> Result<Vec<String>, (Option<String>, String)> {
    let root = Cli::command();
    let mut command = &root;
    for word in builtin.command() {
        command = command
            .find_subcommand(word)
            .ok_or((None, format!("`sluice {word}` is not a command")))?;
    }
    let mut argv: Vec<String> = vec!["--store".into(), store.into()];
    argv.extend(builtin.command().iter().map(|w| (*w).to_owned()));
    let mut positional: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, values) in with {
        let long = key.replace('_', "-");
        let arg = command.get_arguments().find(|a| {
            a.get_long() == Some(long.as_str())
                || a.get_id().as_str() == key
                || a.get_all_aliases()
                    .is_some_and(|all| all.contains(&long.as_str()))
        });
        let Some(arg) = arg else {
            let names: Vec<String> = command
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .filter(|n| n != "help")
                .collect();
            let hint = sluice_config::did_you_mean(&long, names.iter().map(String::as_str))
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err((
                Some(key.clone()),
                format!(
                    "`{key}` is no option of `uses: {}` (expected one of {}){hint}",
                    builtin.name(),
                    names.join(", ")
                ),
            ));
        };
        if !arg.get_action().takes_values() {
            match values.as_slice() {
                [v] if v == "true" => argv.push(format!("--{long}")),
                [v] if v == "false" => {}
                _ => {
                    return Err((
                        Some(key.clone()),
                        format!("`{key}` is a flag: expected true or false"),
                    ));
                }
            }
        } else if arg.is_positional() {
            positional.insert(arg.get_id().as_str().to_owned(), values.clone());
        } else {
            for value in values {
                argv.push(format!("--{long}"));
                argv.push(value.clone());
            }
        }
    }
    // Positional arguments go in the command's order, whatever the order of `with`; after
    // `--` so that a value starting with `-` is not read as an option.
    let positionals: Vec<String> = command
        .get_positionals()
        .filter_map(|arg| positional.remove(arg.get_id().as_str()))
        .flatten()
        .collect();
    if !positionals.is_empty() {
        argv.push("--".to_owned());
        argv.extend(positionals);
    }
    if parse {
        let mut full = vec!["sluice".to_owned()];
        full.extend(argv.iter().cloned());
        if let Err(e) = Cli::try_parse_from(&full) {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            return Err((None, format!("`uses: {}`: {first}", builtin.name())));
        }
    }
    Ok(argv)
}

/// Built-ins run as `sluice …` child processes of this binary, on the same store.
struct CliBuiltins {
    exe: PathBuf,
    store: String,
}

/// The built-ins as this binary runs them, on the store at `store_location` (a SQLite file
/// named from where the runner runs, since the stages run in the pipeline's directory).
pub(crate) fn cli_builtins(store_location: &str) -> anyhow::Result<Arc<dyn Builtins>> {
    let store = match sluice_store::StoreLocation::parse(store_location)? {
        sluice_store::StoreLocation::Sqlite(path) => std::path::absolute(&path)
            .with_context(|| format!("cannot resolve the store's path {}", path.display()))?
            .display()
            .to_string(),
        sluice_store::StoreLocation::Postgres(_) => store_location.to_owned(),
    };
    Ok(Arc::new(CliBuiltins {
        exe: std::env::current_exe().context("cannot find the sluice executable")?,
        store,
    }))
}

impl Builtins for CliBuiltins {
    fn command(
        &self,
        builtin: Builtin,
        with: &[(String, Vec<String>)],
    ) -> Result<(PathBuf, Vec<String>), String> {
        builtin_argv(builtin, with, &self.store, true)
            .map(|argv| (self.exe.clone(), argv))
            .map_err(|(_, message)| message)
    }
}

async fn run_pipeline(args: PipelineRunArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let full = load(&args.file)?;
    let pipeline = full
        .select(&args.only, args.from.as_deref(), args.tier)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let workdir = match args.file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let gpus = match gpu_pool(&pipeline, args.inventory.as_deref()) {
        Ok(gpus) => gpus,
        Err(why) if args.dry_run => {
            eprintln!("GPU requests not checked: {why:#}");
            print_plan(&pipeline);
            return Ok(Outcome::Ok);
        }
        Err(why) => return Err(why),
    };
    let problems = pipeline.check_gpus(&gpus);
    if !problems.is_empty() {
        anyhow::bail!("{}: {}", args.file.display(), problems.join("; "));
    }
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
    let store = if args.no_store {
        None
    } else {
        Some(open_store(store_location).await?)
    };
    let run_name = std::fs::canonicalize(&args.file)
        .unwrap_or_else(|_| args.file.clone())
        .display()
        .to_string();
    let resumed = match (&store, args.resume) {
        (Some(store), true) => resumable(store, &run_name).await?,
        (None, true) => anyhow::bail!("--resume reads the store: drop --no-store"),
        _ => BTreeMap::new(),
    };
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| workdir.join(".sluice/cache"));
    let cache = sluice_pipeline::cache::CacheDir::new(cache_dir);
    let options = RunOptions {
        max_parallel: usize::from(args.max_parallel),
        echo: args.echo || !args.only.is_empty(),
        // Reading the repository's branch costs two `git` processes: only when asked for.
        ci: if pipeline.reads("github") {
            ci_context(&workdir)
        } else {
            BTreeMap::new()
        },
        cache: Some(if args.no_cache {
            cache.write_only()
        } else {
            cache
        }),
        gpus,
        builtins: Some(cli_builtins(store_location)?),
        resumed,
        external: external_needs(&full)?,
        prior_status: std::env::var("SLUICE_PIPELINE_STATUS")
            .ok()
            .filter(|_| pipeline.stages.is_empty())
            .map(|s| s == "success"),
        ..RunOptions::new(workdir, log_dir.clone())
    };
    let record = store.map(|store| {
        let config = json!({
            "file": args.file,
            "only": args.only,
            "from": args.from,
            "tier": args.tier.map(|t| t.name()),
            "resume": args.resume,
        });
        (store, run_name, config)
    });
    let mode = progress::Mode::choose(args.json, options.echo);
    let (report, run_id) = execute(&pipeline, &options, record, mode, |_| {}).await?;
    publish(&report, &args)?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report_json(&report, &log_dir, run_id.as_deref()))?
        );
    } else {
        print_summary(&report, &args, &log_dir, run_id.as_deref());
    }
    Ok(if report.passed {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

/// Runs a checked pipeline with `mode`'s progress on stderr; with `record` (the store, the
/// run's name and its config) the run and each stage's outcome are stored as they end.
/// Ctrl-C or SIGTERM stops the running stages; the `finally` stages still run. `hook` sees
/// every event after the progress display. Returns the report and the stored run's id.
pub(crate) async fn execute(
    pipeline: &Pipeline,
    options: &RunOptions,
    record: Option<(Store, String, serde_json::Value)>,
    mode: progress::Mode,
    mut hook: impl FnMut(&Event<'_>),
) -> anyhow::Result<(Report, Option<String>)> {
    let recorder = match record {
        Some((store, name, config)) => Some(Recorder::start(store, &name, config).await?),
        None => None,
    };
    let (stop, cancel) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("Stopping: the running stages are being stopped; finally stages still run.");
        let _ = stop.send(true);
        stop
    });
    let progress = Arc::new(Mutex::new(Progress::new(mode)));
    let ticker = progress.lock().is_ok_and(|p| p.live()).then(|| {
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if let Ok(mut progress) = progress.lock() {
                    progress.tick();
                }
            }
        })
    });
    let sink = recorder.as_ref().map(|r| r.sink.clone());
    let report = sluice_pipeline::run(pipeline, options, cancel, |event| {
        if let (Event::Finished(outcome), Some(sink)) = (&event, &sink) {
            let _ = sink.send((*outcome).clone());
        }
        if let Ok(mut progress) = progress.lock() {
            progress.event(&event);
        }
        hook(&event);
    })
    .await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    stopper.abort();
    drop(sink);
    let run_id = match recorder {
        Some(recorder) => Some(recorder.finish(&report).await?),
        None => None,
    };
    Ok((report, run_id))
}

/// The GPUs to schedule on: the inventory file, or `nvidia-smi` when a stage needs GPUs.
fn gpu_pool(pipeline: &Pipeline, inventory: Option<&Path>) -> anyhow::Result<Pool> {
    if let Some(path) = inventory {
        return Ok(Pool::from_groups(&sluice_readiness::read_inventory(path)?));
    }
    let wants = pipeline
        .stages
        .iter()
        .chain(&pipeline.finally)
        .find(|(_, s)| s.gpu.is_some());
    match wants {
        None => Ok(Pool::default()),
        Some((name, _)) => sluice_readiness::local_gpus()
            .map(|groups| Pool::from_groups(&groups))
            .map_err(|why| {
                anyhow::anyhow!("stage `{name}` needs GPUs and none can be listed: {why}")
            }),
    }
}

/// The CI context (`github.*`): GitHub Actions' own variables, else GitLab's, else the
/// repository's checked-out branch and commit.
fn ci_context(workdir: &Path) -> BTreeMap<String, String> {
    let mut context: BTreeMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix("GITHUB_")
                .map(|name| (name.to_lowercase(), v))
        })
        .collect();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if !context.contains_key("ref") {
        let gitlab = match (var("CI_COMMIT_TAG"), var("CI_COMMIT_BRANCH")) {
            (Some(tag), _) => Some((format!("refs/tags/{tag}"), tag)),
            (None, Some(branch)) => Some((format!("refs/heads/{branch}"), branch)),
            _ => None,
        };
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(workdir)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let found = gitlab.or_else(|| {
            git(&["symbolic-ref", "-q", "HEAD"]).map(|r| {
                let name = r.strip_prefix("refs/heads/").unwrap_or(&r).to_owned();
                (r, name)
            })
        });
        if let Some((full, name)) = found {
            context.insert("ref".into(), full);
            context.insert("ref_name".into(), name);
        }
        if let Some(sha) = var("CI_COMMIT_SHA").or_else(|| git(&["rev-parse", "HEAD"])) {
            context.insert("sha".into(), sha);
        }
    }
    context
}

/// `SLUICE_NEEDS`: how the needed stages that other CI jobs ran ended, as GitHub Actions'
/// `toJSON(needs)` writes it (`{"eval": {"result": "success", "outputs": {…}}}`).
fn external_needs(pipeline: &Pipeline) -> anyhow::Result<BTreeMap<String, External>> {
    let Ok(text) = std::env::var("SLUICE_NEEDS") else {
        return Ok(BTreeMap::new());
    };
    let mut needs: BTreeMap<String, External> = serde_json::from_str(&text)
        .context("SLUICE_NEEDS: expected {\"STAGE\": {\"result\": …, \"outputs\": {…}}}")?;
    // GitHub names each job by its id: map the ids back to the stages.
    for (stage, id) in sluice_pipeline::export::github_job_ids(pipeline) {
        if stage != id
            && let Some(need) = needs.remove(&id)
        {
            needs.insert(stage, need);
        }
    }
    Ok(needs)
}

/// The outcomes of the last run of this pipeline that did not pass and is not running.
async fn resumable(store: &Store, name: &str) -> anyhow::Result<BTreeMap<String, StageOutcome>> {
    let runs = store
        .list_runs(RunFilter {
            kind: Some(RunKind::Pipeline),
            status: None,
            limit: 100,
        })
        .await?;
    let Some(run) = runs.iter().find(|r| r.name == name) else {
        anyhow::bail!("--resume: no run of {name} is stored");
    };
    match run.status {
        RunStatus::Passed => {
            anyhow::bail!("--resume: no run of {name} to finish: the last one passed")
        }
        RunStatus::Running if !store.interrupted(run).await? => anyhow::bail!(
            "--resume: run {} of {name} is still running in another process",
            run.id.as_str()
        ),
        _ => {}
    }
    let events = store
        .events(&format!("pipeline:{}", run.id.as_str()), 0, u32::MAX)
        .await?;
    let outcomes = events
        .into_iter()
        .filter(|e| e.kind == "stage")
        .filter_map(|e| serde_json::from_value::<StageOutcome>(e.payload).ok())
        .map(|o| (o.name.clone(), o))
        .collect();
    if run.status == RunStatus::Running {
        // Its process is gone: it ends here, and the new run carries it on.
        store
            .finish_run(&run.id, RunStatus::Errored, json!({"interrupted": true}))
            .await?;
    }
    eprintln!("Resuming run {} of {name}.", run.id.as_str());
    Ok(outcomes)
}

/// How long a stage's outcome may wait to be written with the next ones (a runner killed in
/// that while runs that stage again on `--resume`).
const RECORD_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Writes the run and each stage's outcome to the store as the run goes.
struct Recorder {
    store: Store,
    id: sluice_store::RunId,
    sink: mpsc::UnboundedSender<StageOutcome>,
    writer: tokio::task::JoinHandle<()>,
    _hold: sluice_store::RunHold,
}

impl Recorder {
    async fn start(store: Store, name: &str, config: serde_json::Value) -> anyhow::Result<Self> {
        let (id, hold) = store
            .create_held_run(NewRun {
                kind: RunKind::Pipeline,
                name: name.to_owned(),
                config,
            })
            .await?;
        let (sink, mut outcomes) = mpsc::unbounded_channel::<StageOutcome>();
        let subject = format!("pipeline:{}", id.as_str());
        let writer_store = store.clone();
        let writer = tokio::spawn(async move {
            // Stages that end within a short while are written together: one transaction per
            // burst of short stages, not one per stage.
            while let Some(first) = outcomes.recv().await {
                let mut batch = vec![first];
                let until = tokio::time::Instant::now() + RECORD_EVERY;
                while batch.len() < 256 {
                    match tokio::time::timeout_at(until, outcomes.recv()).await {
                        Ok(Some(more)) => batch.push(more),
                        Ok(None) | Err(_) => break,
                    }
                }
                let events = batch
                    .iter()
                    .map(|outcome| NewEvent {
                        subject: subject.clone(),
                        kind: "stage".to_owned(),
                        payload: serde_json::to_value(outcome).unwrap_or_default(),
                    })
                    .collect();
                if let Err(error) = writer_store.append_events(events).await {
                    tracing::warn!(%error, "Cannot record the stages' outcomes.");
                }
            }
        });
        Ok(Recorder {
            store,
            id,
            sink,
            writer,
            _hold: hold,
        })
    }

    async fn finish(self, report: &Report) -> anyhow::Result<String> {
        drop(self.sink);
        let _ = self.writer.await;
        let count = |state: State| report.outcomes.iter().filter(|o| o.state == state).count();
        let summary = json!({
            "passed": report.passed,
            "duration_s": report.duration.as_secs_f64(),
            "stages": report.outcomes.len(),
            "succeeded": count(State::Succeeded),
            "cached": count(State::Cached),
            "failed": report.outcomes.iter().filter(|o| !o.ok() && !matches!(o.state, State::Skipped | State::Cancelled)).count(),
            "skipped": count(State::Skipped),
            "cancelled": count(State::Cancelled),
            "runs": report.outcomes.iter().filter_map(|o| o.outputs.get("run_id").map(|id| json!({"stage": o.name, "run_id": id}))).collect::<Vec<_>>(),
        });
        let status = if report.passed {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        self.store.finish_run(&self.id, status, summary).await?;
        Ok(self.id.as_str().to_owned())
    }
}

/// GitHub Actions: `::error` lines, the step summary, and the stage's outputs for the jobs
/// that need it; then the JUnit file when asked for.
fn publish(report: &Report, args: &PipelineRunArgs) -> anyhow::Result<()> {
    let on_github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    if on_github {
        for outcome in report.outcomes.iter().filter(|o| failed(o)) {
            outln!(
                "{}",
                github_command(
                    "error",
                    &[(
                        "title",
                        &format!("stage {} {}", outcome.name, outcome.state.name())
                    )],
                    &outcome.reason
                )
            );
        }
    }
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        let mut text = format!(
            "### {} {}\n\n| stage | state | attempts | time | why |\n|---|---|---|---|---|\n",
            args.file.display(),
            if report.passed { "passed" } else { "failed" }
        );
        for o in &report.outcomes {
            text.push_str(&format!(
                "| {} | {} | {} | {:.1}s | {} |\n",
                o.name,
                o.state.name(),
                o.attempts,
                o.duration.as_secs_f64(),
                o.reason.replace('|', "\\|")
            ));
        }
        let reports = report_lines(report);
        if !reports.is_empty() {
            text.push('\n');
            for line in reports {
                text.push_str(&format!("- {}\n", line.trim()));
            }
        }
        append(Path::new(&path), &text)?;
    }
    if let Ok(path) = std::env::var("GITHUB_OUTPUT") {
        let mut text = String::new();
        for o in &report.outcomes {
            for (key, value) in &o.outputs {
                text.push_str(&format!(
                    "{key}<<SLUICE_OUTPUT_END\n{value}\nSLUICE_OUTPUT_END\n"
                ));
            }
        }
        append(Path::new(&path), &text)?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// One line per report file a stage declared: `stage: junit path: 12 tests, …`.
fn report_lines(report: &Report) -> Vec<String> {
    report
        .outcomes
        .iter()
        .flat_map(|o| {
            o.reports.iter().map(move |r| {
                format!(
                    "report {}: {} {}: {}",
                    o.name,
                    r.kind,
                    r.path.display(),
                    r.summary
                )
            })
        })
        .collect()
}

fn failed(outcome: &StageOutcome) -> bool {
    !outcome.ok() && !matches!(outcome.state, State::Skipped | State::Cancelled)
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One JUnit test case per stage.
fn junit(report: &Report) -> String {
    let counts = JunitCounts {
        tests: report.outcomes.len() as u64,
        failures: report
            .outcomes
            .iter()
            .filter(|o| failed(o) && o.state != State::Errored)
            .count() as u64,
        errors: report
            .outcomes
            .iter()
            .filter(|o| o.state == State::Errored)
            .count() as u64,
    };
    let seconds = Some(report.duration.as_secs_f64());
    let mut out = junit_open("sluice pipeline", counts, seconds);
    out.push_str(&junit_suite_open("pipeline", counts, seconds));
    for o in &report.outcomes {
        let verdict = match o.state {
            State::Errored => JunitVerdict::Error {
                message: &o.reason,
                kind: o.state.name(),
            },
            State::Skipped | State::Cancelled => JunitVerdict::Skipped { message: &o.reason },
            _ if o.ok() => JunitVerdict::Passed,
            _ => JunitVerdict::Failure {
                message: &o.reason,
                kind: o.state.name(),
                text: None,
            },
        };
        let class = if o.finally { "finally" } else { "stages" };
        out.push_str(&junit_case(
            &o.name,
            class,
            Some(o.duration.as_secs_f64()),
            verdict,
        ));
    }
    out.push_str(JUNIT_SUITE_CLOSE);
    out.push_str(JUNIT_CLOSE);
    out
}

fn export_pipeline(args: &PipelineExportArgs) -> anyhow::Result<Outcome> {
    let pipeline = load(&args.file)?;
    let name = args
        .file
        .file_stem()
        .map_or("pipeline".to_owned(), |s| s.to_string_lossy().into_owned());
    let options = ExportOptions {
        file: args.file.display().to_string(),
        name,
        image: IMAGE.to_owned(),
    };
    let text = export(&pipeline, args.to, &options);
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => out!("{text}"),
    }
    Ok(Outcome::Ok)
}

/// The container image Argo and Kubeflow jobs run: `sluice` with the repository checked out.
pub const IMAGE: &str = "ghcr.io/sluice-dev/sluice:latest";

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
        let what = match &stage.action {
            Action::Run(run) => run.written(),
            Action::Uses { builtin, .. } => format!("uses {}", builtin.name()),
        };
        outln!("{group:<8} {name}{needs}: {what}");
    }
}

/// The table of stages, where their logs are, and the verdict.
fn print_summary(report: &Report, args: &PipelineRunArgs, log_dir: &Path, run_id: Option<&str>) {
    outln!(
        "{:<24} {:<10} {:>8} {:>9} {:>9}  WHY",
        "STAGE",
        "STATE",
        "ATTEMPTS",
        "TIME",
        "GPU WAIT"
    );
    for o in &report.outcomes {
        let wait = if o.gpus.is_some() {
            format!("{:.1}s", o.gpu_wait.as_secs_f64())
        } else {
            "-".to_owned()
        };
        let cost = o
            .cost
            .map(|c| format!(" (GPUs {}, ~${c:.4})", o.gpus.as_deref().unwrap_or("")));
        outln!(
            "{:<24} {:<10} {:>8} {:>8.1}s {:>9}  {}{}",
            o.name,
            o.state.name(),
            o.attempts,
            o.duration.as_secs_f64(),
            wait,
            o.reason,
            cost.unwrap_or_default()
        );
    }
    for line in report_lines(report) {
        outln!("{line}");
    }
    let total: f64 = report.outcomes.iter().filter_map(|o| o.cost).sum();
    if total > 0.0 {
        outln!("estimated GPU cost: ${total:.4}");
    }
    outln!("logs in {}", log_dir.display());
    if let Some(id) = run_id {
        outln!("run {id}");
    }
    outln!(
        "{} {} in {:.1}s",
        args.file.display(),
        if report.passed { "passed" } else { "FAILED" },
        report.duration.as_secs_f64()
    );
}

fn report_json(report: &Report, log_dir: &Path, run_id: Option<&str>) -> serde_json::Value {
    json!({
        "passed": report.passed,
        "run_id": run_id,
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
            "gpu_wait_s": o.gpu_wait.as_secs_f64(),
            "gpus": o.gpus,
            "cost": o.cost,
            "outputs": o.outputs,
            "reports": o.reports,
            "log": o.log,
            "reason": o.reason,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
            .collect()
    }

    #[test]
    fn built_ins_get_their_options_and_positionals_in_the_commands_order() {
        let argv = builtin_argv(
            Builtin::Alias,
            &with(&[
                ("version", "1.0.0"),
                ("alias", "production"),
                ("model", "chat"),
            ]),
            "s.db",
            true,
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "--store",
                "s.db",
                "registry",
                "alias",
                "set",
                "--",
                "chat",
                "production",
                "1.0.0"
            ]
        );
        let argv = builtin_argv(
            Builtin::Register,
            &with(&[
                ("model", "chat"),
                ("version", "2.0.0"),
                ("artifact", "s3://m"),
            ]),
            "s.db",
            true,
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "--store",
                "s.db",
                "registry",
                "register",
                "--version",
                "2.0.0",
                "--artifact",
                "s3://m",
                "--",
                "chat"
            ]
        );
        let argv = builtin_argv(
            Builtin::Eval,
            &with(&[("config", "e.yaml"), ("no_cache", "true"), ("repeat", "3")]),
            "s.db",
            true,
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "--store",
                "s.db",
                "eval",
                "--config",
                "e.yaml",
                "--no-cache",
                "--repeat",
                "3"
            ]
        );
        let (key, why) =
            builtin_argv(Builtin::Eval, &with(&[("no_cache", "maybe")]), "s.db", true).unwrap_err();
        assert_eq!(key.as_deref(), Some("no_cache"));
        assert!(why.contains("is a flag: expected true or false"), "{why}");
    }
}
