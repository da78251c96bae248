//! One module per command; [`run`] dispatches and returns the outcome that becomes the exit
//! code.

mod bench;
mod chat;
mod eval;
mod gateway;
mod init;
mod pipeline;
mod quickstart;
mod readiness;
mod redteam;
mod registry;
mod rollout;
mod serve;
mod simulate;
mod store;
mod validate;

use std::process::ExitCode;

use anyhow::Context;
use sluice_store::{Store, StoreLocation};

use crate::cli::{Cli, Command};

/// How a command ended, when it ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; any gate passed.
    Ok,
    /// A gate failed.
    GateFailed,
    /// A bench threshold failed (k6's exit code, 99).
    ThresholdFailed,
    /// A load test's client fell behind its schedule: its figures are not a server result.
    Invalid,
}

impl Outcome {
    /// The process exit code: 0 ok, 1 gate failed, 99 bench threshold failed, 3 invalid
    /// bench run (errors exit with 2, see `main`).
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::GateFailed => ExitCode::from(1),
            Outcome::ThresholdFailed => ExitCode::from(99),
            Outcome::Invalid => ExitCode::from(3),
        }
    }
}

/// Runs the command.
pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Quickstart(args) => quickstart::run(args, &cli.global.store).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Chat(args) => chat::run(args).await,
        Command::Validate(args) => validate::run(args),
        Command::Gateway(args) => gateway::run(args, &cli.global.store).await,
        Command::Rollout(command) => rollout::run(command, &cli.global.store).await,
        Command::Bench(args) => bench::dispatch(args.command, args.run, &cli.global.store).await,
        Command::Eval(args) => match args.command {
            None => eval::run(args.run, &cli.global.store).await,
            Some(command) => eval::stored(command, &cli.global.store).await,
        },
        Command::Redteam(args) => match args.command {
            None => redteam::run(args.run, &cli.global.store).await,
            Some(command) => redteam::stored(command, &cli.global.store).await,
        },
        Command::Readiness(args) => readiness::run(args, &cli.global.store).await,
        Command::Registry(command) => registry::run(command, &cli.global.store).await,
        Command::Store(command) => store::run(command, &cli.global.store).await,
        Command::Pipeline(command) => pipeline::run(command, &cli.global.store).await,
        Command::Init(args) => init::run(args),
        Command::Serve(args) => serve::run(args, &cli.global.store).await,
    }
}

/// Opens the store named by `--store` / `SLUICE_STORE`.
async fn open_store(location: &str) -> anyhow::Result<Store> {
    let location = StoreLocation::parse(location)?;
    Store::open(&location)
        .await
        .context("cannot open the store (set --store or SLUICE_STORE)")
}

/// Resolves a registered version named by `--model-version` before a run starts, so that a bad
/// reference stops it early.
async fn model_version(
    store: Option<&Store>,
    reference: Option<&str>,
) -> anyhow::Result<Option<sluice_store::ModelVersion>> {
    match (store, reference) {
        (Some(store), Some(reference)) => Ok(Some(
            sluice_registry::ModelRef::parse(reference)?
                .resolve(store)
                .await
                .context("--model-version")?,
        )),
        _ => Ok(None),
    }
}

/// Adds a run to a version's lineage.
async fn link_run(
    store: Option<&Store>,
    version: Option<&sluice_store::ModelVersion>,
    kind: sluice_store::RunKind,
    run_id: &str,
) -> anyhow::Result<()> {
    if let (Some(store), Some(version)) = (store, version) {
        store
            .link_run(&version.model, &version.version, kind, run_id)
            .await?;
    }
    Ok(())
}

/// Hands a pipeline stage its outputs when this command runs as one (`uses:` in
/// `pipeline.yaml`): `NAME=value` lines appended to the file `$SLUICE_OUTPUT` names.
fn stage_outputs(outputs: &[(&str, String)]) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("SLUICE_OUTPUT") else {
        return;
    };
    let text: String = outputs
        .iter()
        .map(|(key, value)| format!("{key}={}\n", value.replace('\n', " ")))
        .collect();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(error) = written {
        tracing::warn!(%error, "Cannot write the stage's outputs to $SLUICE_OUTPUT.");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
