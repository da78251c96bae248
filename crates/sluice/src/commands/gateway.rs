//! `sluice gateway`: serve the traffic-splitting gateway until Ctrl-C or SIGTERM (which drain
//! it), re-reading the config file on SIGHUP, with its request log, feedback and shadow
//! comparisons in the store.

use std::io::Write;

use sluice_config::ProcessEnv;
use sluice_gateway::GatewayServer;
use sluice_gateway::config::GatewayConfig;
use tracing::{info, warn};

use super::{Outcome, open_store, shutdown_signal};
use crate::cli::GatewayArgs;

pub async fn run(args: GatewayArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let config = GatewayConfig::load(&args.config, &ProcessEnv)?;
    let routes: Vec<String> = config.snapshot.routes.keys().cloned().collect();
    let store = if args.no_store {
        None
    } else {
        Some(open_store(store_location).await?)
    };
    let server = GatewayServer::start(
        config,
        Some(args.config.clone()),
        store,
        args.listen,
        args.admin_listen,
    )
    .await?;
    // The banner is best-effort: a server keeps serving when nobody reads its stdout.
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "Sluice gateway listening on http://{}/v1 (admin http://{})",
        server.local_addr(),
        server.admin_addr()
    );
    let _ = writeln!(stdout, "Routes: {}", routes.join(", "));
    let _ = stdout.flush();
    let handle = server.handle();
    let reloads = tokio::spawn(reload_on_hangup(handle));
    shutdown_signal().await;
    info!("Draining the gateway.");
    reloads.abort();
    server.shutdown().await;
    Ok(Outcome::Ok)
}

#[cfg(unix)]
async fn reload_on_hangup(handle: sluice_gateway::GatewayHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("Cannot listen for SIGHUP; reload through the admin API instead.");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Err(error) = handle.reload() {
            warn!(%error, "Reload failed; the routes in force are kept.");
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_handle: sluice_gateway::GatewayHandle) {}
