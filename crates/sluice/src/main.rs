//! The `sluice` binary: parses the command line, sets up logging, runs one command, and maps
//! the outcome to the exit-code policy: 0 ok, 1 a gate failed, 2 a usage, config or runtime
//! error; `sluice bench` adds 99 for a failed threshold (k6's code) and 3 for a run whose
//! client fell behind its schedule.

#![deny(unsafe_code)]

#[macro_use]
mod output;

mod cli;
mod commands;
mod logging;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = logging::init(&cli.global) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    // The pipeline runner only waits on child processes and the store's blocking pool: one
    // thread schedules the next stage soonest (no hand-offs between worker threads).
    let mut builder = match &cli.command {
        cli::Command::Pipeline(cli::PipelineCommand::Run(_)) => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
