//! `sluice serve`: the control plane's API over the store, until Ctrl-C or SIGTERM (then
//! requests in flight finish).

use sluice_serve::{ServeServer, ServerLimits};

use super::{Outcome, open_store, shutdown_signal};
use crate::cli::ServeArgs;

pub async fn run(args: ServeArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let store = open_store(store_location).await?;
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "The control plane listens beyond this machine: every stored run is readable from there."
        );
    }
    let server = ServeServer::start(store, args.listen, ServerLimits::default()).await?;
    outln!(
        "sluice serve: the control plane's API on http://{}/api/v1/",
        server.local_addr()
    );
    shutdown_signal().await;
    server.shutdown().await;
    Ok(Outcome::Ok)
}
