//! `sluice simulate`: serve the model-server simulator until Ctrl-C or SIGTERM.

use std::io::Write;

use anyhow::Context;
use sluice_config::ProcessEnv;
use sluice_sim::{SimConfig, Simulator};
use tracing::info;

use super::{Outcome, shutdown_signal};
use crate::cli::SimulateArgs;

pub async fn run(args: SimulateArgs) -> anyhow::Result<Outcome> {
    let config = match &args.config {
        Some(path) => SimConfig::load(path, &ProcessEnv)?,
        None => SimConfig::echo(),
    };
    let models: Vec<String> = config.models.keys().cloned().collect();
    let server = Simulator::start(config, args.seed, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The banner is best-effort: a server keeps serving when nobody reads its stdout.
    let mut stdout = crate::output::stdout();
    let _ = writeln!(
        stdout,
        "Sluice simulator (a test and demo tool, not a model) listening on {}",
        server.base_url()
    );
    let _ = if models.is_empty() {
        writeln!(
            stdout,
            "Any model name is accepted; answers echo the last user message."
        )
    } else {
        writeln!(stdout, "Models: {}", models.join(", "))
    };
    let _ = stdout.flush();
    shutdown_signal().await;
    info!("Shutting down the simulator.");
    server.shutdown().await;
    Ok(Outcome::Ok)
}
