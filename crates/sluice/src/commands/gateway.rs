//! `sluice gateway`: serve the traffic-splitting gateway until Ctrl-C or SIGTERM (which drain
//! it), re-reading the config file on SIGHUP, with its request log, feedback and shadow
//! comparisons in the store.

use std::io::Write;

use sluice_config::ProcessEnv;
use sluice_gateway::GatewayServer;
use sluice_gateway::config::GatewayConfig;
use sluice_rollout::backend::Backend;
use sluice_rollout::controller::Controller;
use sluice_rollout::restore::restore_routes;
use sluice_rollout::spec::Spec;
use tracing::{info, warn};

use super::{Outcome, open_store, shutdown_signal};
use crate::cli::GatewayArgs;

pub async fn run(args: GatewayArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let config = GatewayConfig::load(&args.config, &ProcessEnv)?;
    let routes: Vec<String> = config.snapshot.routes.keys().cloned().collect();
    // Rollout specs are checked before anything listens.
    let mut specs = Vec::new();
    for path in &args.rollouts {
        let spec = Spec::load(path, &ProcessEnv)?;
        let source = std::fs::read_to_string(path).ok();
        specs.push((spec, source));
    }
    if args.no_store && !specs.is_empty() {
        anyhow::bail!("`--rollout` keeps its state in the store; drop `--no-store`");
    }
    let monitor = args
        .monitor
        .as_deref()
        .map(sluice_serve::feedback::MonitorConfig::load)
        .transpose()?;
    if args.no_store && monitor.is_some() {
        anyhow::bail!("`--monitor` reads the request log in the store; drop `--no-store`");
    }
    if args.no_store && args.replica {
        anyhow::bail!("`--replica` follows the rollouts in the store; drop `--no-store`");
    }
    let store = if args.no_store {
        None
    } else {
        Some(open_store(store_location).await?)
    };
    let mut config = config;
    if let Some(store) = &store {
        restore_rollouts(&mut config.snapshot, store, &args.config).await;
    }
    let server = GatewayServer::start(
        config,
        Some(args.config.clone()),
        store.clone(),
        args.listen,
        args.admin_listen,
    )
    .await?;
    // The banner is best-effort: a server keeps serving when nobody reads its stdout.
    let mut stdout = crate::output::stdout();
    let _ = writeln!(
        stdout,
        "Sluice gateway listening on http://{}/v1 (admin http://{})",
        server.local_addr(),
        server.admin_addr()
    );
    let _ = writeln!(stdout, "Routes: {}", routes.join(", "));
    let _ = stdout.flush();
    let handle = server.handle();
    let admin_url = format!("http://{}", server.admin_addr());
    let controllers = start_rollouts(specs, store.clone(), &handle, &admin_url).await?;
    let reloads = tokio::spawn(reload_on_hangup(handle.clone()));
    let (stop_monitor, monitor_stop) = tokio::sync::watch::channel(false);
    if let (Some(monitor), Some(store)) = (monitor, &store) {
        sluice_serve::feedback::start_monitor(store, monitor, &monitor_stop);
    }
    if let (true, Some(store)) = (args.replica, &store) {
        tokio::spawn(sluice_rollout::restore::follow(
            handle.clone(),
            store.clone(),
            std::time::Duration::from_secs(1),
            monitor_stop.clone(),
        ));
    }
    shutdown_signal().await;
    let _ = stop_monitor.send(true);
    // A rollout still running is left in the store, where the next start resumes it.
    for controller in controllers {
        controller.abort();
    }
    info!("Draining the gateway.");
    reloads.abort();
    server.shutdown().await;
    Ok(Outcome::Ok)
}

/// Starts (or resumes) each `--rollout` spec's controller in process, steering this gateway
/// through its handle; each prints its states and how it ended.
async fn start_rollouts(
    specs: Vec<(Spec, Option<String>)>,
    store: Option<sluice_store::Store>,
    handle: &sluice_gateway::GatewayHandle,
    admin_url: &str,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut controllers = Vec::new();
    for (mut spec, source) in specs {
        if spec
            .admin_url
            .as_deref()
            .is_some_and(|url| url != admin_url)
        {
            warn!(
                rollout = spec.name,
                "The spec's gateway.admin_url is ignored: the rollout steers this gateway in process."
            );
        }
        spec.admin_url = Some(admin_url.to_owned());
        let store = store
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a rollout needs the store"))?;
        let backend = Backend::in_process(handle.clone());
        let (controller, resumed) =
            Controller::start_with(spec.clone(), store, source.as_deref(), backend).await?;
        let _ = writeln!(
            crate::output::stdout(),
            "rollout {}: {} run {} in process",
            spec.name,
            if resumed { "resuming" } else { "started" },
            controller.run_id()
        );
        controllers.push(tokio::spawn(async move {
            let name = spec.name.clone();
            let result = controller
                .run(|state| {
                    let _ = writeln!(
                        crate::output::stdout(),
                        "  {name}: {}",
                        super::rollout::describe(state)
                    );
                })
                .await;
            let line = match result {
                Ok(state) if state.aborted => {
                    format!("rollout {name}: rolled back ({})", state.message)
                }
                Ok(_) => format!("rollout {name}: promoted"),
                Err(error) => format!("rollout {name}: the controller stopped: {error}"),
            };
            let _ = writeln!(crate::output::stdout(), "{line}");
        }));
    }
    Ok(controllers)
}

/// Gives each route the weights the store's newest rollout on it left (see
/// `sluice_rollout::restore`); a store that cannot be read leaves the file's weights.
async fn restore_rollouts(
    snapshot: &mut sluice_gateway::route::Snapshot,
    store: &sluice_store::Store,
    config: &std::path::Path,
) {
    let edited_ms = std::fs::metadata(config)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(i64::MAX, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        });
    if let Err(error) = restore_routes(snapshot, store, edited_ms).await {
        warn!(
            error = sluice_core::error_chain(&error),
            "Cannot read rollouts from the store; the file's weights apply."
        );
    }
}

#[cfg(unix)]
async fn reload_on_hangup(handle: sluice_gateway::GatewayHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("Cannot listen for SIGHUP; reload through the admin API instead.");
        return;
    };
    while hangups.recv().await.is_some() {
        match handle.reload() {
            Ok(report) => {
                for held in &report.held {
                    warn!(
                        route = held.route,
                        rollout = held.rollout,
                        "The route's changes in the file wait: a rollout steers it."
                    );
                }
            }
            Err(error) => warn!(%error, "Reload failed; the routes in force are kept."),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_handle: sluice_gateway::GatewayHandle) {}
