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
    let token = match &args.admin_token_env {
        None => None,
        Some(name) => match std::env::var(name) {
            Ok(token) if token.len() >= 16 => Some(token),
            Ok(_) => {
                anyhow::bail!("--admin-token-env {name}: the token must be at least 16 characters")
            }
            Err(_) => anyhow::bail!("--admin-token-env {name}: the variable is not set"),
        },
    };
    let monitor = args
        .monitor
        .as_deref()
        .map(sluice_serve::feedback::MonitorConfig::load)
        .transpose()?;
    let embeddings = match (&args.embeddings_url, &args.embeddings_model) {
        (Some(url), Some(model)) => {
            let api_key = match &args.embeddings_key_env {
                Some(var) => Some(sluice_core::Secret::new(std::env::var(var).map_err(
                    |_| anyhow::anyhow!("--embeddings-key-env {var}: the variable is not set"),
                )?)),
                None => None,
            };
            let client = sluice_llm::Client::new(sluice_llm::ClientConfig {
                api_key,
                ..sluice_llm::ClientConfig::new(url)
            })?;
            Some(sluice_serve::embedding::EmbeddingSource {
                client,
                model: model.clone(),
            })
        }
        _ => None,
    };
    let server = ServeServer::start(
        store,
        args.listen,
        ServerLimits::default(),
        token.as_deref(),
        monitor,
        embeddings,
    )
    .await?;
    outln!(
        "sluice serve: the control plane's API on http://{}/api/v1/",
        server.local_addr()
    );
    shutdown_signal().await;
    server.shutdown().await;
    Ok(Outcome::Ok)
}
