//! `sluice serve`: the control plane over the store. [`api`] answers the JSON API under
//! `/api/v1/` — runs and their results, the test-by-test diff of two eval runs with its
//! significance verdict, rollouts and their events, pipeline runs and their stages, models,
//! versions with lineage, alias history — and [`openapi`] describes it. The server has every
//! Sluice server's defences (header and body timeouts, connection limits, a drain on
//! shutdown), answers only `GET` (and `HEAD`), and listens on loopback unless told otherwise.

#![deny(unsafe_code)]
// The OpenAPI document is one `json!` literal, deeper than the default limit allows.
#![recursion_limit = "256"]

mod actions;
pub mod admin;
pub mod alerts;
pub mod api;
pub mod cost;
pub mod drift;
pub mod embedding;
pub mod feedback;
pub mod html;
pub mod openapi;
pub mod smoke;
pub mod trends;

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_http::ConnectionStats;
pub use sluice_http::ServerLimits;
use sluice_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running control-plane server.
#[derive(Debug)]
pub struct ServeServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServeServer {
    /// Listens on `addr` and serves the API over `store`.
    pub async fn start(
        store: Store,
        addr: SocketAddr,
        limits: ServerLimits,
        admin_token: Option<&str>,
        monitor: Option<feedback::MonitorConfig>,
        embeddings: Option<embedding::EmbeddingSource>,
    ) -> Result<ServeServer, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let (shutdown, stop) = watch::channel(false);
        let admin = admin_token.map(|token| Arc::new(admin::Admin::new(token)));
        let mut watched: Vec<String> = monitor
            .iter()
            .flat_map(|m| m.alerts.iter().map(|rule| rule.route.clone()))
            .collect();
        if monitor.as_ref().is_some_and(|m| !m.smoke.is_empty()) {
            watched.push("smoke".to_owned());
        }
        watched.sort();
        watched.dedup();
        if let Some(monitor) = monitor {
            feedback::start_monitor(&store, monitor, &stop);
        }
        let mut api = api::Api::new(store, stop.clone(), admin, watched);
        api.embeddings = embeddings.map(Arc::new);
        let api = Arc::new(api);
        let task = tokio::spawn(async move {
            sluice_http::serve(
                listener,
                limits,
                stop,
                Arc::new(ConnectionStats::default()),
                move |request, _peer| {
                    let api = Arc::clone(&api);
                    async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
                },
            )
            .await;
        });
        tracing::info!(%local_addr, "Control plane listening.");
        Ok(ServeServer {
            local_addr,
            shutdown,
            task,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish (up to the drain deadline), and ends.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
