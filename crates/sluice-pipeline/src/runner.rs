//! Runs a checked pipeline on this machine: independent stages in parallel from a ready queue
//! (at most `max_parallel` at once), each `run` command with `sh -c` in its own process group
//! with its output in a log file per stage. A stage runs once every stage it needs has
//! succeeded (or failed in a way it allows); a stage whose need did not is skipped. After a
//! failure that is not allowed no new stage starts (the others are cancelled) while running
//! ones finish; then the `finally` stages run, whatever happened, with the pipeline's status in
//! `SLUICE_PIPELINE_STATUS`. A timed-out or cancelled stage's whole process group is stopped:
//! SIGTERM, then SIGKILL after a grace period, so no grandchild outlives it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::spec::{Pipeline, Stage};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stages running at once, at most (at least 1).
    pub max_parallel: usize,
    /// Where each stage's output goes (`NAME.log`).
    pub log_dir: PathBuf,
    /// How long a stopped stage has between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its command exited 0.
    Succeeded,
    /// Its command exited otherwise, or was killed by a signal.
    Failed,
    /// It ran past its timeout and was stopped.
    TimedOut,
    /// Its command could not be started.
    Errored,
    /// A stage it needs did not succeed.
    Skipped,
    /// It did not start (or was stopped) because the pipeline stopped.
    Cancelled,
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
        }
    }
}

/// One stage's outcome.
#[derive(Debug, Clone, PartialEq)]
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
    /// Its output, when it ran.
    pub log: Option<PathBuf>,
    /// Why it ended so, for people.
    pub reason: String,
}

impl Outcome {
    /// Whether the stages that need it may run: it succeeded, or failed as it allows.
    pub fn ok(&self) -> bool {
        self.state == State::Succeeded || self.allowed
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
        clock,
        cancel,
    };
    let passed = run_group(
        &pipeline.stages,
        false,
        &[],
        &context,
        &mut outcomes,
        &mut on_event,
    )
    .await;
    let status = if passed { "succeeded" } else { "failed" };
    let env = [("SLUICE_PIPELINE_STATUS".to_owned(), status.to_owned())];
    // `finally` stages run even after a cancellation: they see a fresh signal.
    let (_keep, calm) = watch::channel(false);
    let finally_context = Context {
        cancel: calm,
        ..context
    };
    let finally_passed = run_group(
        &pipeline.finally,
        true,
        &env,
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
    clock: Instant,
    cancel: watch::Receiver<bool>,
}

/// Runs one group of stages to the end; whether all ended ok (skipped stages aside: the
/// failure that caused them is counted).
async fn run_group(
    group: &BTreeMap<String, Stage>,
    finally: bool,
    env: &[(String, String)],
    context: &Context<'_>,
    outcomes: &mut Vec<Outcome>,
    on_event: &mut impl FnMut(Event<'_>),
) -> bool {
    let mut done: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut ended: Vec<String> = Vec::new();
    let mut pending: Vec<&String> = group.keys().collect();
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let (tell, mut told) = mpsc::unbounded_channel::<(String, u32)>();
    let mut cancel = context.cancel.clone();
    let mut stopped = *cancel.borrow();
    let mut cancel_open = true;
    let mut all_ok = !stopped;
    loop {
        let mut index = 0;
        while index < pending.len() {
            let name = pending[index];
            let stage = &group[name];
            let failed_need = stage
                .needs
                .iter()
                .find(|n| done.get(*n).is_some_and(|o| !o.ok()));
            let decided = match failed_need {
                Some(need) => Some((State::Skipped, format!("`{need}` did not succeed"))),
                None if stopped => Some((State::Cancelled, "the pipeline stopped".to_owned())),
                None => None,
            };
            if let Some((state, reason)) = decided {
                let outcome = never_ran(name, finally, state, reason);
                on_event(Event::Finished(&outcome));
                ended.push(name.clone());
                done.insert(name.clone(), outcome);
                pending.remove(index);
                continue;
            }
            let ready = stage.needs.iter().all(|n| done.contains_key(n));
            if ready && running.len() < context.options.max_parallel.max(1) {
                let job = Job {
                    name: name.clone(),
                    stage: stage.clone(),
                    finally,
                    env: env.to_vec(),
                    log: context.options.log_dir.join(format!("{name}.log")),
                    grace: context.options.grace,
                    clock: context.clock,
                    cancel: context.cancel.clone(),
                    started: tell.clone(),
                };
                running.spawn(job.run());
                pending.remove(index);
                continue;
            }
            index += 1;
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some((name, attempt)) = told.recv() => {
                on_event(Event::Started { name: &name, attempt });
            }
            finished = running.join_next() => {
                let Some(Ok(outcome)) = finished else { continue };
                while let Ok((name, attempt)) = told.try_recv() {
                    on_event(Event::Started { name: &name, attempt });
                }
                on_event(Event::Finished(&outcome));
                if !outcome.ok() {
                    all_ok = false;
                    stopped = true;
                }
                ended.push(outcome.name.clone());
                done.insert(outcome.name.clone(), outcome);
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
        log: None,
        reason,
    }
}

/// One stage to run, with what it needs from the run.
struct Job {
    name: String,
    stage: Stage,
    finally: bool,
    env: Vec<(String, String)>,
    log: PathBuf,
    grace: Duration,
    clock: Instant,
    cancel: watch::Receiver<bool>,
    started: mpsc::UnboundedSender<(String, u32)>,
}

/// How one attempt ended.
enum Attempt {
    Exited(Option<i32>),
    TimedOut,
    Cancelled,
    NotStarted(String),
}

impl Job {
    async fn run(mut self) -> Outcome {
        let started = self.clock.elapsed();
        let began = Instant::now();
        let mut attempts = 0;
        let mut backoff = self.stage.retry.backoff;
        let (state, exit_code, reason) = loop {
            attempts += 1;
            let _ = self.started.send((self.name.clone(), attempts));
            let (state, exit_code, reason) = match self.attempt(attempts).await {
                Attempt::Exited(Some(0)) => {
                    break (State::Succeeded, Some(0), "exited 0".to_owned());
                }
                Attempt::Exited(Some(code)) => {
                    (State::Failed, Some(code), format!("exited {code}"))
                }
                Attempt::Exited(None) => (State::Failed, None, "killed by a signal".to_owned()),
                Attempt::TimedOut => (
                    State::TimedOut,
                    None,
                    format!(
                        "ran past its timeout of {:?} and was stopped",
                        self.stage.timeout.unwrap_or_default()
                    ),
                ),
                Attempt::Cancelled => {
                    break (
                        State::Cancelled,
                        None,
                        "stopped with the pipeline".to_owned(),
                    );
                }
                Attempt::NotStarted(why) => break (State::Errored, None, why),
            };
            if attempts > self.stage.retry.limit {
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
        let reason = match (attempts, allowed) {
            (1, false) => reason,
            (1, true) => format!("{reason} (allowed)"),
            (n, false) => format!("{reason} after {n} attempts"),
            (n, true) => format!("{reason} after {n} attempts (allowed)"),
        };
        Outcome {
            name: self.name,
            finally: self.finally,
            state,
            allowed,
            exit_code,
            attempts,
            started: Some(started),
            duration: began.elapsed(),
            log: Some(self.log),
            reason,
        }
    }

    async fn attempt(&mut self, number: u32) -> Attempt {
        let file = match open_log(&self.log, number) {
            Ok(file) => file,
            Err(e) => {
                return Attempt::NotStarted(format!("cannot write {}: {e}", self.log.display()));
            }
        };
        let spawn = |program: &str, args: &[&str]| -> std::io::Result<tokio::process::Child> {
            tokio::process::Command::new(program)
                .args(args)
                .envs(self.stage.env.iter())
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("SLUICE_PIPELINE_STAGE", &self.name)
                .env("SLUICE_PIPELINE_ATTEMPT", number.to_string())
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file.try_clone()?)
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
        };
        // A plain command runs without a shell, as make runs it; one the system does not
        // have (a shell builtin such as `exit 3` or `cd`) goes to `sh -c` after all.
        let direct = plain_words(&self.stage.run).map(|words| spawn(words[0], &words[1..]));
        let spawned = match direct {
            Some(Ok(child)) => Ok(child),
            Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => spawn("sh", &["-c", &self.stage.run]),
        };
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return Attempt::NotStarted(format!("cannot run `{}`: {e}", self.stage.run)),
        };
        let pid = child.id();
        let limit = self.stage.timeout.unwrap_or(Duration::MAX);
        let deadline = tokio::time::Instant::now()
            .checked_add(limit)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::select! {
            status = child.wait() => {
                // Whatever the command left behind in its group goes with it.
                if let Some(pid) = pid {
                    signal_group(pid, Signal::KILL);
                }
                Attempt::Exited(status.ok().and_then(|s| s.code()))
            }
            () = tokio::time::sleep_until(deadline) => {
                stop(&mut child, pid, self.grace).await;
                Attempt::TimedOut
            }
            true = stop_asked(&mut self.cancel) => {
                stop(&mut child, pid, self.grace).await;
                Attempt::Cancelled
            }
        }
    }
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
