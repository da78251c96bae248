//! Runs a checked pipeline on this machine: independent stages in parallel from a ready queue
//! (at most `max_parallel` at once), each command in its own process group with its output in
//! a log file per stage. A stage is decided once every stage it needs has ended: it runs when
//! its `if` holds (by default: every need succeeded or failed as it allows), and is skipped
//! otherwise. After a failure that is not allowed no new stage starts (the others are
//! cancelled, but for those whose `if` asks for `always()`, `failure()` or `cancelled()`)
//! while running ones finish; then the `finally` stages run, whatever happened, with the
//! pipeline's status in `SLUICE_PIPELINE_STATUS` and `pipeline.status`.
//!
//! A stage that needs GPUs waits in the GPU queue (higher `priority` first, then the one
//! ready longest) until one node has enough idle ones that fit; it gets them in
//! `CUDA_VISIBLE_DEVICES`. A cached stage whose key has an entry is restored instead of run.
//! A timed-out or cancelled stage's whole process group is stopped: SIGTERM, then SIGKILL after
//! a grace period, so no grandchild outlives it.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::cache::{self, CacheDir};
use crate::expr::{Expr, Scope, Value, shell_word};
use crate::gpu::{Allocation, Pool};
use crate::spec::{Action, Builtin, Pipeline, RetryOn, Stage};

/// The most read from one output file or `$SLUICE_OUTPUT`.
const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// How a built-in's options become a command line: the binary knows its own options.
pub trait Builtins: Send + Sync {
    /// The program and arguments that run `builtin` with these options (values already
    /// substituted), or why the options are wrong.
    fn command(
        &self,
        builtin: Builtin,
        with: &[(String, Vec<String>)],
    ) -> Result<(PathBuf, Vec<String>), String>;
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Stages running at once, at most (at least 1).
    pub max_parallel: usize,
    /// Where each stage's output goes (`NAME.log`).
    pub log_dir: PathBuf,
    /// How long a stopped stage has between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Where commands run and where cache inputs, outputs and reports are read.
    pub workdir: PathBuf,
    /// The CI context (`github.NAME`), by name.
    pub ci: BTreeMap<String, String>,
    /// The stage cache; `None` runs every stage.
    pub cache: Option<CacheDir>,
    /// The GPUs stages may be given.
    pub gpus: Pool,
    /// How built-ins run; `None`: a stage that `uses` one errors.
    pub builtins: Option<Arc<dyn Builtins>>,
    /// Outcomes of an earlier run of this pipeline being resumed: a stage that ended ok
    /// there is taken as it is.
    pub resumed: BTreeMap<String, Outcome>,
    /// How the needed stages that are not part of this run ended (another CI job ran
    /// them): their result (`success`, `failure`…) and outputs. A need that is neither in
    /// the run nor here counts as succeeded without outputs.
    pub external: BTreeMap<String, External>,
    /// For a run of `finally` stages alone: whether the stages before them passed (another
    /// job ran them).
    pub prior_status: Option<bool>,
    /// Whether each stage's output also goes to stderr, line by line after its name (its log
    /// file still gets it all).
    pub echo: bool,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("max_parallel", &self.max_parallel)
            .field("log_dir", &self.log_dir)
            .field("workdir", &self.workdir)
            .field("cache", &self.cache)
            .field("gpus", &self.gpus.gpus().len())
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Options for a run in `workdir` with logs in `log_dir`: 4 at once, a 10 s grace, no
    /// cache, no GPUs, no built-ins.
    pub fn new(workdir: PathBuf, log_dir: PathBuf) -> Self {
        RunOptions {
            max_parallel: 4,
            log_dir,
            grace: Duration::from_secs(10),
            workdir,
            ci: BTreeMap::new(),
            cache: None,
            gpus: Pool::default(),
            builtins: None,
            resumed: BTreeMap::new(),
            external: BTreeMap::new(),
            prior_status: None,
            echo: false,
        }
    }
}

/// How a needed stage that another CI job ran ended, as GitHub Actions' `toJSON(needs)`
/// writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct External {
    /// `success`, `failure`, `skipped` or `cancelled`.
    pub result: String,
    /// Its outputs.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its command exited 0.
    Succeeded,
    /// Its command exited otherwise, or was killed by a signal.
    Failed,
    /// It ran past its timeout and was stopped.
    TimedOut,
    /// Its command could not be started.
    Errored,
    /// A stage it needs did not succeed, or its `if` did not hold.
    Skipped,
    /// It did not start (or was stopped) because the pipeline stopped.
    Cancelled,
    /// Its files and outputs were restored from the cache.
    Cached,
}

impl State {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::TimedOut => "timed_out",
            State::Errored => "errored",
            State::Skipped => "skipped",
            State::Cancelled => "cancelled",
            State::Cached => "cached",
        }
    }
}

/// One stage's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The stage.
    pub name: String,
    /// Whether it is a `finally` stage.
    pub finally: bool,
    /// How it ended.
    pub state: State,
    /// Whether its failure is one it allows (then it counts as done for what needs it).
    pub allowed: bool,
    /// The last attempt's exit code.
    pub exit_code: Option<i32>,
    /// Attempts made (0 when it never started).
    pub attempts: u32,
    /// When it started, from the start of the run.
    pub started: Option<Duration>,
    /// How long it took, every attempt and wait included.
    pub duration: Duration,
    /// How long it waited for GPUs.
    pub gpu_wait: Duration,
    /// The GPUs it had (`node:0,1`).
    pub gpus: Option<String>,
    /// The estimated cost of its GPUs (hourly price × time), when prices are known.
    pub cost: Option<f64>,
    /// Its outputs.
    pub outputs: BTreeMap<String, String>,
    /// The report files it declares, read once it ended.
    #[serde(default)]
    pub reports: Vec<crate::reports::ReportFile>,
    /// Its output, when it ran.
    pub log: Option<PathBuf>,
    /// Why it ended so, for people.
    pub reason: String,
}

impl Outcome {
    /// Whether the stages that need it may run: it succeeded (or was restored from the
    /// cache), or failed as it allows.
    pub fn ok(&self) -> bool {
        matches!(self.state, State::Succeeded | State::Cached) || self.allowed
    }

    /// Its result in expressions (`needs.S.result`), as GitHub Actions names them.
    pub fn result(&self) -> &'static str {
        match self.state {
            _ if self.ok() => "success",
            State::Skipped => "skipped",
            State::Cancelled => "cancelled",
            _ => "failure",
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Every stage's outcome, in the order they ended (`finally` stages last).
    pub outcomes: Vec<Outcome>,
    /// Whether every stage (and every `finally` stage) succeeded or failed as allowed.
    pub passed: bool,
    /// The whole run.
    pub duration: Duration,
}

/// What the runner reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage's attempt started.
    Started {
        /// The stage.
        name: &'a str,
        /// Its attempt, from 1.
        attempt: u32,
    },
    /// A stage ended.
    Finished(&'a Outcome),
}

/// Runs `pipeline`; `cancel` turning true stops the run (running stages are stopped, the
/// `finally` stages still run). Progress goes to `on_event`.
pub async fn run(
    pipeline: &Pipeline,
    options: &RunOptions,
    cancel: watch::Receiver<bool>,
    mut on_event: impl FnMut(Event<'_>),
) -> Report {
    let clock = Instant::now();
    let mut outcomes = Vec::new();
    let context = Context {
        options,
        shared: Arc::new(options.clone()),
        clock,
        cancel,
        finally: None,
    };
    let mut passed = run_group(&pipeline.stages, &context, &mut outcomes, &mut on_event).await;
    let before = match options.prior_status {
        Some(prior) if pipeline.stages.is_empty() => prior,
        _ => passed,
    };
    if pipeline.stages.is_empty() {
        // Another job ran the stages and reported on them.
        passed = true;
    }
    let status = if before { "success" } else { "failure" };
    // `finally` stages run even after a cancellation: they see a fresh signal.
    let (_keep, calm) = watch::channel(false);
    let finally_context = Context {
        cancel: calm,
        finally: Some(status),
        ..context
    };
    let finally_passed = run_group(
        &pipeline.finally,
        &finally_context,
        &mut outcomes,
        &mut on_event,
    )
    .await;
    Report {
        outcomes,
        passed: passed && finally_passed,
        duration: clock.elapsed(),
    }
}

struct Context<'a> {
    options: &'a RunOptions,
    /// The same options, for the stage jobs.
    shared: Arc<RunOptions>,
    clock: Instant,
    cancel: watch::Receiver<bool>,
    /// For the `finally` group: the status of the stages before it.
    finally: Option<&'static str>,
}

/// What a stage's expressions read.
struct StageScope<'a> {
    stage: &'a Stage,
    done: &'a BTreeMap<String, Outcome>,
    ci: &'a BTreeMap<String, String>,
    stopped: bool,
    status: &'a str,
    /// In `finally`: whether the stages before it passed.
    before_ok: bool,
}

impl Scope for StageScope<'_> {
    fn lookup(&self, path: &[String]) -> Value {
        let text = |v: Option<&String>| v.map_or(Value::Null, |v| Value::String(v.clone()));
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["needs", stage, "result"] => match self.done.get(*stage) {
                Some(outcome) => Value::String(outcome.result().to_owned()),
                // A matrix stage's result is its combinations': success when all succeeded.
                None => {
                    let prefix = format!("{stage} (");
                    let mut results = self
                        .done
                        .values()
                        .filter(|o| o.name.starts_with(&prefix))
                        .map(Outcome::result)
                        .peekable();
                    match results.peek() {
                        None => Value::Null,
                        Some(_) => {
                            let all: Vec<&str> = results.collect();
                            let result = ["failure", "cancelled", "skipped"]
                                .into_iter()
                                .find(|r| all.contains(r))
                                .unwrap_or("success");
                            Value::String(result.to_owned())
                        }
                    }
                }
            },
            ["needs", stage, "outputs", key] => {
                text(self.done.get(*stage).and_then(|o| o.outputs.get(*key)))
            }
            ["env", name] => match self.stage.env.get(*name) {
                Some(value) => Value::String(value.clone()),
                None => std::env::var(name).map_or(Value::Null, Value::String),
            },
            ["github", name] => text(self.ci.get(*name)),
            ["matrix", name] => text(self.stage.matrix.as_ref().and_then(|(_, v)| v.get(*name))),
            ["pipeline", "status"] => Value::String(self.status.to_owned()),
            _ => Value::Null,
        }
    }

    fn needs_ok(&self) -> bool {
        self.before_ok
            && self
                .stage
                .needs
                .iter()
                .all(|n| self.done.get(n).is_some_and(Outcome::ok))
    }

    fn cancelled(&self) -> bool {
        self.stopped
    }
}

/// A stage that may start, waiting for a free slot (and GPUs, when it needs them).
struct Ready<'g> {
    name: &'g String,
    stage: &'g Stage,
    since: Instant,
    order: usize,
}

/// Runs one group of stages to the end; whether all ended ok (skipped stages aside: the
/// failure that caused them is counted).
async fn run_group(
    group: &BTreeMap<String, Stage>,
    context: &Context<'_>,
    outcomes: &mut Vec<Outcome>,
    on_event: &mut impl FnMut(Event<'_>),
) -> bool {
    let options = context.options;
    let finally = context.finally.is_some();
    let mut done: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut ended: Vec<String> = Vec::new();
    let mut pending: std::collections::BTreeSet<&String> = group.keys().collect();
    // Who needs whom: a stage is looked at again only when one of its needs ends.
    let mut dependents: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for (name, stage) in group {
        for need in &stage.needs {
            dependents.entry(need.as_str()).or_default().push(name);
        }
    }
    let mut ready: Vec<Ready<'_>> = Vec::new();
    let mut readied = 0;
    let mut running: JoinSet<(Outcome, Option<Allocation>)> = JoinSet::new();
    let mut pool = options.gpus.clone();
    let (tell, mut told) = mpsc::unbounded_channel::<(String, u32)>();
    let mut cancel = context.cancel.clone();
    let mut stopped = *cancel.borrow();
    let mut cancel_open = true;
    let mut all_ok = !stopped;
    // Needs outside this run (another job ran them) are taken as that job ended.
    for stage in group.values() {
        for need in stage.needs.iter().filter(|n| !group.contains_key(*n)) {
            let External { result, outputs } =
                options
                    .external
                    .get(need)
                    .cloned()
                    .unwrap_or_else(|| External {
                        result: "success".to_owned(),
                        outputs: BTreeMap::new(),
                    });
            let state = match result.as_str() {
                "success" => State::Succeeded,
                "skipped" => State::Skipped,
                "cancelled" => State::Cancelled,
                _ => State::Failed,
            };
            let mut outcome = never_ran(need, finally, state, format!("{result} in another job"));
            outcome.outputs = outputs;
            done.insert(need.clone(), outcome);
        }
    }
    // What a resumed run already did well is taken as it is.
    for name in group.keys() {
        if let Some(earlier) = options.resumed.get(name).filter(|o| o.ok()) {
            let mut outcome = earlier.clone();
            outcome.reason = format!("{} (in the run resumed)", earlier.reason);
            pending.remove(name);
            finish(outcome, &mut done, &mut ended, on_event);
        }
    }
    // The stages to look at (a stack: popped in name order at first), and how many ended
    // stages have had their dependents put on it.
    let mut check: Vec<&String> = pending.iter().rev().copied().collect();
    let mut woken = 0;
    let mut was_stopped = stopped;
    loop {
        let status = match context.finally {
            Some(status) => status,
            None if all_ok => "success",
            None => "failure",
        };
        if stopped && !was_stopped {
            was_stopped = true;
            check.extend(pending.iter().rev().copied());
        }
        loop {
            for name in &ended[woken..] {
                if let Some(names) = dependents.get(name.as_str()) {
                    check.extend(names.iter().rev().copied());
                }
            }
            woken = ended.len();
            let Some(name) = check.pop() else { break };
            if !pending.contains(name) {
                continue;
            }
            let stage = &group[name];
            let by_status = stage
                .condition
                .as_ref()
                .is_some_and(Expr::has_status_function);
            let failed_need = stage
                .needs
                .iter()
                .find(|n| done.get(*n).is_some_and(|o| !o.ok()));
            let all_done = stage.needs.iter().all(|n| done.contains_key(n));
            let decided = match failed_need {
                Some(need) if !by_status && !finally => {
                    Some((State::Skipped, format!("`{need}` did not succeed")))
                }
                _ if stopped && !by_status => {
                    Some((State::Cancelled, "the pipeline stopped".to_owned()))
                }
                _ if !all_done => None,
                _ => {
                    let scope = StageScope {
                        stage,
                        done: &done,
                        ci: &options.ci,
                        stopped,
                        status,
                        before_ok: context.finally.is_none_or(|s| s == "success"),
                    };
                    let runs = match (&stage.condition, finally) {
                        (None, true) => true,
                        (Some(c), true) if !c.has_status_function() => c.eval(&scope).truthy(),
                        (condition, _) => Expr::decides(condition.as_ref(), &scope),
                    };
                    if runs {
                        ready.push(Ready {
                            name,
                            stage,
                            since: Instant::now(),
                            order: readied,
                        });
                        readied += 1;
                        pending.remove(name);
                        continue;
                    }
                    Some((State::Skipped, "its `if` is false".to_owned()))
                }
            };
            if let Some((state, reason)) = decided {
                pending.remove(name);
                finish(
                    never_ran(name, finally, state, reason),
                    &mut done,
                    &mut ended,
                    on_event,
                );
            }
        }
        if stopped {
            let (go, halt): (Vec<_>, Vec<_>) = ready.drain(..).partition(|r| {
                r.stage
                    .condition
                    .as_ref()
                    .is_some_and(Expr::has_status_function)
            });
            ready = go;
            for r in halt {
                let outcome = never_ran(
                    r.name,
                    finally,
                    State::Cancelled,
                    "the pipeline stopped".to_owned(),
                );
                finish(outcome, &mut done, &mut ended, on_event);
            }
        }
        // The queue: GPU stages by priority, then age; others as they became ready.
        ready.sort_by_key(|r| (-r.stage.priority, r.order));
        let mut index = 0;
        while index < ready.len() && running.len() < options.max_parallel.max(1) {
            let allocation = match &ready[index].stage.gpu {
                None => None,
                Some(request) => match pool.take(request) {
                    Some(allocation) => Some(allocation),
                    None => {
                        index += 1;
                        continue;
                    }
                },
            };
            let r = ready.remove(index);
            let upstream = r
                .stage
                .needs
                .iter()
                .filter_map(|n| done.get(n).map(|o| (n.clone(), o.outputs.clone())))
                .collect();
            let scope = StageScope {
                stage: r.stage,
                done: &done,
                ci: &options.ci,
                stopped,
                status,
                before_ok: true,
            };
            let command = render(r.stage, &scope);
            let job = Job {
                name: r.name.clone(),
                stage: r.stage.clone(),
                command,
                finally,
                env: context
                    .finally
                    .map(|s| vec![("SLUICE_PIPELINE_STATUS".to_owned(), s.to_owned())])
                    .unwrap_or_default(),
                log: options.log_dir.join(format!("{}.log", r.name)),
                grace: options.grace,
                clock: context.clock,
                cancel: context.cancel.clone(),
                started: tell.clone(),
                gpu_wait: r.since.elapsed(),
                allocation,
                upstream,
                options: Arc::clone(&context.shared),
            };
            running.spawn(job.run());
        }
        if running.is_empty() {
            if ready.is_empty() {
                break;
            }
            // Only stages waiting for GPUs are left and every GPU is idle: checked before the
            // run, so this is a request the pool cannot meet after all.
            for r in std::mem::take(&mut ready) {
                let why = r
                    .stage
                    .gpu
                    .as_ref()
                    .and_then(|g| pool.check(g).err())
                    .unwrap_or_else(|| "no GPUs fit".to_owned());
                all_ok = false;
                let outcome = never_ran(r.name, finally, State::Errored, why);
                finish(outcome, &mut done, &mut ended, on_event);
            }
            continue;
        }
        tokio::select! {
            Some((name, attempt)) = told.recv() => {
                on_event(Event::Started { name: &name, attempt });
            }
            finished = running.join_next() => {
                let Some(Ok((outcome, allocation))) = finished else { continue };
                if let Some(allocation) = &allocation {
                    pool.give_back(allocation);
                }
                while let Ok((name, attempt)) = told.try_recv() {
                    on_event(Event::Started { name: &name, attempt });
                }
                if !outcome.ok() {
                    all_ok = false;
                    stopped = true;
                }
                finish(outcome, &mut done, &mut ended, on_event);
            }
            changed = cancel.changed(), if !stopped && cancel_open => {
                match changed {
                    Err(_) => cancel_open = false,
                    Ok(()) if *cancel.borrow() => {
                        stopped = true;
                        all_ok = false;
                    }
                    Ok(()) => {}
                }
            }
        }
    }
    outcomes.extend(ended.iter().filter_map(|name| done.remove(name)));
    all_ok
}

/// Records a stage's end.
fn finish(
    outcome: Outcome,
    done: &mut BTreeMap<String, Outcome>,
    ended: &mut Vec<String>,
    on_event: &mut impl FnMut(Event<'_>),
) {
    on_event(Event::Finished(&outcome));
    ended.push(outcome.name.clone());
    done.insert(outcome.name.clone(), outcome);
}

/// What a stage runs, with its substitutions made.
#[derive(Debug, Clone)]
enum Command {
    /// A shell command line.
    Shell(String),
    /// A built-in with its options' values.
    Builtin(Builtin, Vec<(String, Vec<String>)>),
}

fn render(stage: &Stage, scope: &dyn Scope) -> Command {
    match &stage.action {
        Action::Run(template) => Command::Shell(template.render(scope, shell_word)),
        Action::Uses { builtin, with } => Command::Builtin(
            *builtin,
            with.iter()
                .map(|(key, values)| {
                    let values = values
                        .iter()
                        .map(|v| v.render(scope, str::to_owned))
                        .collect();
                    (key.clone(), values)
                })
                .collect(),
        ),
    }
}

fn never_ran(name: &str, finally: bool, state: State, reason: String) -> Outcome {
    Outcome {
        name: name.to_owned(),
        finally,
        state,
        allowed: false,
        exit_code: None,
        attempts: 0,
        started: None,
        duration: Duration::ZERO,
        gpu_wait: Duration::ZERO,
        gpus: None,
        cost: None,
        outputs: BTreeMap::new(),
        reports: Vec::new(),
        log: None,
        reason,
    }
}

/// One stage to run, with what it needs from the run.
struct Job {
    name: String,
    stage: Stage,
    command: Command,
    finally: bool,
    env: Vec<(String, String)>,
    log: PathBuf,
    grace: Duration,
    clock: Instant,
    cancel: watch::Receiver<bool>,
    started: mpsc::UnboundedSender<(String, u32)>,
    gpu_wait: Duration,
    allocation: Option<Allocation>,
    upstream: BTreeMap<String, BTreeMap<String, String>>,
    options: Arc<RunOptions>,
}

/// How one attempt ended.
enum Attempt {
    Exited(Option<i32>),
    /// Killed by this signal.
    Signalled(i32),
    TimedOut,
    Cancelled,
    NotStarted(String),
}

/// Preemptions of a spot stage retried besides its own retries.
const MAX_PREEMPTIONS: u32 = 3;

impl Job {
    async fn run(mut self) -> (Outcome, Option<Allocation>) {
        let started = self.clock.elapsed();
        let began = Instant::now();
        let cache_key = self.cache_key();
        if let Some(outcome) = self.restore(cache_key.as_deref(), started, began) {
            return (outcome, self.allocation);
        }
        let mut attempts = 0;
        let mut preemptions = 0;
        let mut backoff = self.stage.retry.backoff;
        let (state, exit_code, reason) = loop {
            attempts += 1;
            let _ = self.started.send((self.name.clone(), attempts));
            let (state, exit_code, reason, retry) = match self.attempt(attempts).await {
                Attempt::Exited(Some(0)) => {
                    break (State::Succeeded, Some(0), "exited 0".to_owned());
                }
                Attempt::Exited(Some(code)) => {
                    let preempted = self
                        .stage
                        .gpu
                        .as_ref()
                        .is_some_and(|g| g.preempted_exit_codes.contains(&code));
                    if preempted && preemptions < MAX_PREEMPTIONS {
                        preemptions += 1;
                        continue;
                    }
                    let retry = match &self.stage.retry.on {
                        RetryOn::Kinds { failure, .. } => *failure,
                        RetryOn::ExitCodes(codes) => codes.contains(&code),
                    };
                    (State::Failed, Some(code), format!("exited {code}"), retry)
                }
                Attempt::Signalled(signal) => {
                    let preempted = self
                        .stage
                        .gpu
                        .as_ref()
                        .is_some_and(|g| g.preempted_signals.contains(&signal));
                    if preempted && preemptions < MAX_PREEMPTIONS {
                        preemptions += 1;
                        continue;
                    }
                    (
                        State::Failed,
                        None,
                        format!("killed by signal {signal}"),
                        matches!(self.stage.retry.on, RetryOn::Kinds { failure: true, .. }),
                    )
                }
                Attempt::Exited(None) => (
                    State::Failed,
                    None,
                    "ended without an exit code".to_owned(),
                    matches!(self.stage.retry.on, RetryOn::Kinds { failure: true, .. }),
                ),
                Attempt::TimedOut => (
                    State::TimedOut,
                    None,
                    format!(
                        "ran past its timeout of {:?} and was stopped",
                        self.stage.timeout.unwrap_or_default()
                    ),
                    matches!(self.stage.retry.on, RetryOn::Kinds { timeout: true, .. }),
                ),
                Attempt::Cancelled => {
                    break (
                        State::Cancelled,
                        None,
                        "stopped with the pipeline".to_owned(),
                    );
                }
                Attempt::NotStarted(why) => (
                    State::Errored,
                    None,
                    why,
                    matches!(self.stage.retry.on, RetryOn::Kinds { error: true, .. }),
                ),
            };
            if !retry || attempts > self.stage.retry.limit + preemptions {
                break (state, exit_code, reason);
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                true = stop_asked(&mut self.cancel) => {
                    break (State::Cancelled, exit_code, "stopped with the pipeline".to_owned());
                }
            }
            backoff = backoff.saturating_mul(2);
        };
        let allowed = matches!(state, State::Failed | State::TimedOut)
            && self.stage.allow_failure.allows(exit_code);
        let mut reason = match (attempts, allowed) {
            (1, false) => reason,
            (1, true) => format!("{reason} (allowed)"),
            (n, false) => format!("{reason} after {n} attempts"),
            (n, true) => format!("{reason} after {n} attempts (allowed)"),
        };
        if preemptions > 0 {
            reason.push_str(&format!(
                "; preempted {preemptions} time(s) and resumed from its checkpoint directory"
            ));
        }
        let mut outputs = BTreeMap::new();
        let mut state = state;
        match state {
            State::Succeeded => match self.read_outputs(true) {
                Ok(read) => outputs = read,
                Err(why) => {
                    state = State::Errored;
                    reason = why;
                }
            },
            // What a failed command handed back still counts (its run id, its pass rate),
            // as a failed GitHub Actions job keeps the outputs it set.
            State::Failed | State::TimedOut => {
                outputs = self.read_outputs(false).unwrap_or_default();
            }
            _ => {}
        }
        if let (State::Succeeded, Some(key), Some(cache), Some(dir)) =
            (state, &cache_key, &self.stage.cache, &self.options.cache)
            && let Err(e) = dir.save(key, cache, &self.options.workdir, &outputs)
        {
            reason.push_str(&format!(" (not cached: {e})"));
        }
        let duration = began.elapsed();
        let cost = self
            .allocation
            .as_ref()
            .filter(|a| a.hourly_price > 0.0)
            .map(|a| a.hourly_price * duration.as_secs_f64() / 3600.0);
        let outcome = Outcome {
            name: self.name.clone(),
            finally: self.finally,
            state,
            allowed,
            exit_code,
            attempts,
            started: Some(started),
            duration,
            gpu_wait: self.gpu_wait,
            gpus: self
                .allocation
                .as_ref()
                .map(|a| format!("{}:{}", a.node, a.visible_devices)),
            cost,
            outputs,
            reports: crate::reports::read(&self.stage.reports, &self.options.workdir),
            log: Some(self.log.clone()),
            reason,
        };
        (outcome, self.allocation)
    }

    /// The stage's cache key, when it is cached and the cache is on (a key that cannot be
    /// made, e.g. an unreadable input, means it runs).
    fn cache_key(&self) -> Option<String> {
        let (cache, _) = (self.stage.cache.as_ref()?, self.options.cache.as_ref()?);
        cache::key(
            &self.name,
            &self.stage,
            cache,
            &self.options.workdir,
            &self.upstream,
        )
        .ok()
    }

    fn restore(&self, key: Option<&str>, started: Duration, began: Instant) -> Option<Outcome> {
        let entry = self
            .options
            .cache
            .as_ref()?
            .restore(key?, &self.options.workdir)
            .ok()??;
        Some(Outcome {
            name: self.name.clone(),
            finally: self.finally,
            state: State::Cached,
            allowed: false,
            exit_code: None,
            attempts: 0,
            started: Some(started),
            duration: began.elapsed(),
            gpu_wait: self.gpu_wait,
            gpus: None,
            cost: None,
            outputs: entry.outputs,
            reports: Vec::new(),
            log: None,
            reason: format!("restored from the cache (key {})", &entry.key[..12]),
        })
    }

    /// Where the stage writes its outputs; absolute, since the stage runs in the workdir.
    fn output_file(&self) -> PathBuf {
        absolute(&self.log.with_extension("outputs"))
    }

    /// `NAME=value` lines of `$SLUICE_OUTPUT`, then the declared output files; with
    /// `strict`, a declared file that cannot be read is an error, else it is left out.
    fn read_outputs(&self, strict: bool) -> Result<BTreeMap<String, String>, String> {
        let mut outputs = BTreeMap::new();
        if let Ok(text) = read_capped(&self.output_file()) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Some((key, value)) = line.split_once('=') {
                    outputs.insert(key.trim().to_owned(), value.to_owned());
                }
            }
        }
        for (key, file) in &self.stage.outputs {
            let path = self.options.workdir.join(file);
            match read_capped(&path) {
                Ok(text) => {
                    outputs.insert(key.clone(), text.trim().to_owned());
                }
                Err(e) if strict => {
                    return Err(format!(
                        "output `{key}`: cannot read {}: {e}",
                        path.display()
                    ));
                }
                Err(_) => {}
            }
        }
        Ok(outputs)
    }

    async fn attempt(&mut self, number: u32) -> Attempt {
        let file = match open_log(&self.log, number) {
            Ok(file) => file,
            Err(e) => {
                return Attempt::NotStarted(format!("cannot write {}: {e}", self.log.display()));
            }
        };
        // `$SLUICE_OUTPUT` starts empty each attempt (a command appends to it, creating it).
        let _ = std::fs::remove_file(self.output_file());
        let mut env: Vec<(String, String)> = self.env.clone();
        env.push(("SLUICE_PIPELINE_STAGE".into(), self.name.clone()));
        env.push(("SLUICE_PIPELINE_ATTEMPT".into(), number.to_string()));
        env.push((
            "SLUICE_OUTPUT".into(),
            self.output_file().to_string_lossy().into_owned(),
        ));
        if let Some(allocation) = &self.allocation {
            env.push((
                "CUDA_VISIBLE_DEVICES".into(),
                allocation.visible_devices.clone(),
            ));
            env.push(("SLUICE_GPU_NODE".into(), allocation.node.clone()));
            let checkpoints = absolute(&self.log.with_extension("checkpoint"));
            let _ = std::fs::create_dir_all(&checkpoints);
            env.push((
                "SLUICE_CHECKPOINT_DIR".into(),
                checkpoints.to_string_lossy().into_owned(),
            ));
        }
        let workdir = self.options.workdir.clone();
        let own_path = self.stage.env.contains_key("PATH");
        let echo = self.options.echo;
        let spawn = |program: &Path, args: &[&str]| -> std::io::Result<tokio::process::Child> {
            let program = if own_path {
                program.to_owned()
            } else {
                resolve(program)
            };
            let mut command = tokio::process::Command::new(program);
            if workdir != Path::new(".") {
                command.current_dir(&workdir);
            }
            command
                .args(args)
                .envs(self.stage.env.iter())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(if echo {
                    Stdio::piped()
                } else {
                    file.try_clone()?.into()
                })
                .stderr(if echo {
                    Stdio::piped()
                } else {
                    file.try_clone()?.into()
                })
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
        };
        let spawned = match &self.command {
            Command::Shell(run) => {
                // A plain command runs without a shell, as make runs it; one the system does
                // not have (a shell builtin such as `exit 3` or `cd`) goes to `sh -c` after all.
                let direct = plain_words(run).map(|words| spawn(Path::new(words[0]), &words[1..]));
                match direct {
                    Some(Ok(child)) => Ok(child),
                    Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => spawn(Path::new("sh"), &["-c", run]),
                }
                .map_err(|e| format!("cannot run `{run}`: {e}"))
            }
            Command::Builtin(builtin, with) => match &self.options.builtins {
                None => Err(format!(
                    "the built-in `{}` can only run from the sluice command",
                    builtin.name()
                )),
                Some(builtins) => builtins
                    .command(*builtin, with)
                    .and_then(|(program, args)| {
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        spawn(&program, &args)
                            .map_err(|e| format!("cannot run {}: {e}", program.display()))
                    }),
            },
        };
        let mut child = match spawned {
            Ok(child) => child,
            Err(why) => return Attempt::NotStarted(why),
        };
        let pid = child.id();
        let copiers: Vec<tokio::task::JoinHandle<()>> = [
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        .filter_map(|reader| {
            let log = file.try_clone().ok()?;
            Some(tokio::spawn(echo_lines(
                reader,
                log,
                format!("{} | ", self.name),
            )))
        })
        .collect();
        let limit = self.stage.timeout.unwrap_or(Duration::MAX);
        let deadline = tokio::time::Instant::now()
            .checked_add(limit)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
        let ended = tokio::select! {
            status = child.wait() => {
                // Whatever the command left behind in its group goes with it.
                if let Some(pid) = pid {
                    signal_group(pid, Signal::KILL);
                }
                match status {
                    Ok(status) => match (status.code(), status.signal()) {
                        (None, Some(signal)) => Attempt::Signalled(signal),
                        (code, _) => Attempt::Exited(code),
                    },
                    Err(_) => Attempt::Exited(None),
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                stop(&mut child, pid, self.grace).await;
                Attempt::TimedOut
            }
            true = stop_asked(&mut self.cancel) => {
                stop(&mut child, pid, self.grace).await;
                Attempt::Cancelled
            }
        };
        // The group is gone, so its pipes close: let the last lines through.
        for copier in copiers {
            let _ = tokio::time::timeout(Duration::from_secs(2), copier).await;
        }
        ended
    }
}

/// Copies a stage's output line by line into its log and onto stderr, each line after
/// `prefix` (the stage's name), for runs whose output people read as it comes (a CI job).
async fn echo_lines(
    reader: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    mut log: std::fs::File,
    prefix: String,
) {
    use std::io::Write as _;
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(reader).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let _ = log.write_all(&line).and_then(|()| log.write_all(b"\n"));
        let mut err = std::io::stderr().lock();
        let _ = err
            .write_all(prefix.as_bytes())
            .and_then(|()| err.write_all(&line))
            .and_then(|()| err.write_all(b"\n"));
    }
}

/// `program` found on `PATH` once, then remembered: looking it up again for every stage costs
/// a failed `execve` per directory before the one that has it. A name with a `/`, or one not
/// found, is left as it is (the spawn then says why).
fn resolve(program: &Path) -> PathBuf {
    use std::sync::{Mutex, OnceLock};
    static FOUND: OnceLock<Mutex<BTreeMap<PathBuf, PathBuf>>> = OnceLock::new();
    if program.components().count() != 1 {
        return program.to_owned();
    }
    let found = FOUND.get_or_init(|| Mutex::new(BTreeMap::new()));
    if let Some(path) = found.lock().ok().and_then(|f| f.get(program).cloned()) {
        return path;
    }
    let hit = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    });
    match hit {
        Some(path) => {
            if let Ok(mut f) = found.lock() {
                f.insert(program.to_owned(), path.clone());
            }
            path
        }
        None => program.to_owned(),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A file of at most [`MAX_OUTPUT_BYTES`].
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_OUTPUT_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The words of a command that needs no shell (no quoting, expansion, redirection, globbing,
/// assignment or control operator); `None` when it needs `sh -c`.
fn plain_words(run: &str) -> Option<Vec<&str>> {
    const SPECIAL: &[char] = &[
        '"', '\'', '\\', '$', '`', '&', '|', ';', '<', '>', '(', ')', '{', '}', '*', '?', '[', ']',
        '~', '#', '!', '=', '%', '\n',
    ];
    if run.contains(SPECIAL) {
        return None;
    }
    let words: Vec<&str> = run.split_whitespace().collect();
    (!words.is_empty()).then_some(words)
}

/// Resolves to true once the pipeline is asked to stop (false if it no longer can be).
async fn stop_asked(cancel: &mut watch::Receiver<bool>) -> bool {
    cancel.wait_for(|stop| *stop).await.is_ok()
}

/// The stage's log, created for its first attempt and appended to after.
fn open_log(path: &Path, attempt: u32) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(attempt > 1)
        .truncate(attempt == 1)
        .open(path)?;
    if attempt > 1 {
        writeln!(file, "--- attempt {attempt} ---")?;
    }
    Ok(file)
}

/// Stops a stage's process group: SIGTERM, then SIGKILL once `grace` has passed (or at once
/// when the shell has exited, for what it left behind).
async fn stop(child: &mut tokio::process::Child, pid: Option<u32>, grace: Duration) {
    let Some(pid) = pid else {
        let _ = child.kill().await;
        return;
    };
    signal_group(pid, Signal::TERM);
    let _ = tokio::time::timeout(grace, child.wait()).await;
    signal_group(pid, Signal::KILL);
    let _ = child.wait().await;
    // A process the shell was forking as the signal went out may join the group a moment
    // later (seen on a loaded machine): sweep the group once more.
    tokio::time::sleep(Duration::from_millis(50)).await;
    signal_group(pid, Signal::KILL);
}

/// Sends a signal to every process of group `pgid` (a group already gone is no error).
fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, signal);
    }
}

/// `path` from the filesystem's root: a stage runs in the workdir, not where the runner does.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn only_commands_without_shell_syntax_run_directly() {
        assert_eq!(
            plain_words("pytest -q tests/unit"),
            Some(vec!["pytest", "-q", "tests/unit"])
        );
        assert_eq!(plain_words("exit 3"), Some(vec!["exit", "3"]));
        for shell in [
            "echo $HOME",
            "a && b",
            "a; b",
            "ruff check . > out.sarif",
            "echo 'x y'",
            "ls *.py",
            "A=1 make",
            "sleep 1 &",
            "cd ~",
            "  ",
        ] {
            assert_eq!(plain_words(shell), None, "{shell}");
        }
    }
}
