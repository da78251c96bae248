//! Local processes behind a version: start one from its shell command (in its own process
//! group, output to a log file, its id written to its pid file), wait until its health URL
//! answers, and stop it (the group gets SIGTERM, then SIGKILL after a grace period).
//!
//! Starting is idempotent: an instance whose health URL already answers is taken as running,
//! so a controller resumed after a crash does not start a second copy.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group, test_kill_process};
use tracing::{info, warn};

use crate::spec::Instance;

/// How long a stopped process has to exit before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// How often health and exit are polled.
const POLL: Duration = Duration::from_millis(100);

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// It is down and nothing says how to start it.
    #[error("{url} is down and has no `command` to start it")]
    NoCommand {
        /// The instance's base URL.
        url: String,
    },
    /// Its log file could not be made.
    #[error("cannot create the log file {}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its command could not be run.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The shell command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its pid file could not be written.
    #[error("cannot write the pid file {}", path.display())]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited before it was healthy.
    #[error("`{command}` exited ({status}) before {health_url} answered; its output is in {}", log.display())]
    Exited {
        /// The shell command.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The health URL it never answered.
        health_url: String,
        /// Its output.
        log: PathBuf,
    },
    /// It ran but was not healthy in time (it was stopped).
    #[error("{health_url} did not answer within {} s of starting `{command}`; its output is in {}", timeout.as_secs(), log.display())]
    Unhealthy {
        /// The shell command.
        command: String,
        /// The health URL.
        health_url: String,
        /// How long it had.
        timeout: Duration,
        /// Its output.
        log: PathBuf,
    },
}

/// A process this controller started.
#[derive(Debug)]
pub struct Started {
    /// Its process id (also its process group's).
    pub pid: u32,
    /// Where its output goes.
    pub log: PathBuf,
    /// The handle that reaps it.
    pub child: Option<tokio::process::Child>,
}

/// Whether the instance's health URL answers 2xx.
pub async fn healthy(client: &reqwest::Client, instance: &Instance) -> bool {
    client
        .get(&instance.health_url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Starts an instance unless it is already healthy; `Ok(None)` when it was. `label` names its
/// log file.
pub async fn start(
    client: &reqwest::Client,
    instance: &Instance,
    label: &str,
) -> Result<Option<Started>, StartError> {
    if healthy(client, instance).await {
        info!(url = instance.url, "The instance is already up.");
        return Ok(None);
    }
    let Some(command) = &instance.command else {
        return Err(StartError::NoCommand {
            url: instance.url.clone(),
        });
    };
    let log = std::env::temp_dir().join(format!("sluice-{label}.log"));
    let log_error = |source| StartError::Log {
        path: log.clone(),
        source,
    };
    let file = std::fs::File::create(&log).map_err(log_error)?;
    let err = file.try_clone().map_err(log_error)?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| StartError::Spawn {
            command: command.clone(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    if let Some(pid_file) = &instance.pid_file {
        std::fs::write(pid_file, format!("{pid}\n")).map_err(|source| StartError::PidFile {
            path: pid_file.clone(),
            source,
        })?;
    }
    info!(pid, command, log = %log.display(), "Instance started.");
    let deadline = Instant::now() + instance.start_timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StartError::Exited {
                command: command.clone(),
                status,
                health_url: instance.health_url.clone(),
                log,
            });
        }
        if healthy(client, instance).await {
            return Ok(Some(Started {
                pid,
                log,
                child: Some(child),
            }));
        }
        if Instant::now() > deadline {
            stop_group(pid, Some(&mut child)).await;
            return Err(StartError::Unhealthy {
                command: command.clone(),
                health_url: instance.health_url.clone(),
                timeout: instance.start_timeout,
                log,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The process id to stop an instance by: the one started here, else its pid file's.
pub fn pid_of(instance: &Instance, started_here: Option<u32>) -> Option<u32> {
    started_here.or_else(|| instance.pid_file.as_deref().and_then(read_pid))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Stops a process group: SIGTERM, then SIGKILL after the grace period.
pub async fn stop_group(pid: u32, mut child: Option<&mut tokio::process::Child>) {
    if pid == 0 {
        return;
    }
    signal(pid, Signal::TERM);
    let deadline = Instant::now() + GRACE;
    loop {
        let gone = match child.as_deref_mut() {
            Some(child) => child.try_wait().map(|s| s.is_some()).unwrap_or(true),
            None => !alive(pid),
        };
        if gone {
            info!(pid, "Instance stopped.");
            return;
        }
        if Instant::now() > deadline {
            warn!(pid, "The instance ignored SIGTERM; killing it.");
            signal(pid, Signal::KILL);
            if let Some(child) = child {
                let _ = child.wait().await;
            }
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends a signal to the process group `pid` leads, or to the process alone when it leads
/// none.
fn signal(pid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if kill_process_group(pid, signal).is_err() {
        let _ = kill_process(pid, signal);
    }
}

/// Whether process `pid` exists (a zombie counts until it is reaped).
fn alive(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|pid| test_kill_process(pid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(command: &str, health_url: &str, dir: &Path) -> Instance {
        Instance {
            url: "http://127.0.0.1:9/v1".into(),
            command: Some(command.into()),
            health_url: health_url.into(),
            pid_file: Some(dir.join("x.pid")),
            start_timeout: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn a_process_that_never_gets_healthy_is_stopped_and_reported() {
        let dir = std::env::temp_dir().join(format!("sluice-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let client = reqwest::Client::new();
        let i = instance("sleep 30", "http://127.0.0.1:9/health", &dir);
        let error = start(&client, &i, "never-healthy")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("did not answer within 0 s"), "{error}");
        let pid = read_pid(&dir.join("x.pid")).unwrap_or(0);
        assert!(pid > 0);
        assert!(!alive(pid), "the process group was stopped");

        let i = instance("echo broken >&2; exit 3", "http://127.0.0.1:9/health", &dir);
        let error = start(&client, &i, "exits")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("exited (exit status: 3)"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
