//! `sluice gateway`: an OpenAI-compatible proxy that splits each route's traffic between
//! versions (weighted, sticky by user, header overrides, feature-flag segments) and keeps live
//! per-version metrics for the rollout controller and for Prometheus.
//!
//! Every request reads the routing [`route::Snapshot`] once, from an atomically swapped
//! pointer: a weight change, an added version or a config reload affects only requests that
//! arrive after it, and a stream that started on a version finishes there. [`proxy`] passes
//! answers through as they arrive; [`metrics`] keeps windows and counters; [`admin`] is the
//! control API; [`GatewayHandle`] is the same control surface in-process.

#![deny(unsafe_code)]

pub mod admin;
mod api_error;
mod client;
pub mod config;
pub mod control;
mod guard;
mod log;
pub mod metrics;
pub mod otlp;
mod proxy;
pub mod route;
mod shadow;
pub mod similarity;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_config::ProcessEnv;
use sluice_core::EndpointSpec;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::proxy::Shared;
use crate::route::{Route, Snapshot, Version};

/// The in-process control surface: what the admin API does, for the rollout controller.
#[derive(Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
    config_path: Option<Arc<PathBuf>>,
    /// The routes as the config file last defined them (see [`GatewayHandle::reload`]).
    file: Arc<std::sync::Mutex<BTreeMap<String, sluice_config::Node>>>,
}

/// What a reload did, route by route.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Routes new in the file.
    pub added: Vec<String>,
    /// Routes whose definition changed: the file's now apply (weights included).
    pub changed: Vec<String>,
    /// Routes gone from the file.
    pub removed: Vec<String>,
    /// Routes the file did not change: their runtime state (weights, shadow, segments,
    /// instances set through the admin API or by a rollout) is kept.
    pub unchanged: Vec<String>,
    /// Routes the file changed or removed that a rollout steers: left as they are; the
    /// change applies at the first reload after the rollout has ended.
    pub held: Vec<HeldRoute>,
}

/// A route a reload left alone because a rollout steers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldRoute {
    /// The route.
    pub route: String,
    /// The rollout that steers it.
    pub rollout: String,
}

/// Why a change to a route was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    /// No route of that name.
    #[error("no route `{0}`")]
    NoRoute(String),
    /// The route has no version of that name.
    #[error("route `{route}` has no version `{version}`")]
    NoVersion {
        /// The route.
        route: String,
        /// The version asked for.
        version: String,
    },
    /// The route already has a version of that name.
    #[error("route `{route}` already has a version `{version}`")]
    DuplicateVersion {
        /// The route.
        route: String,
        /// The version.
        version: String,
    },
    /// Weights that cannot be applied.
    #[error(transparent)]
    Weights(#[from] route::WeightError),
    /// A shadow share outside 0–100.
    #[error("expected a percentage between 0 and 100, found {0}")]
    Percent(f64),
    /// Segments for another version than the call sets.
    #[error("a segment names version `{other}`; this call sets the segments of `{version}`")]
    SegmentVersion {
        /// The version the call sets.
        version: String,
        /// The version a segment names.
        other: String,
    },
    /// A segment or sticky key as sent that does not read (its field named).
    #[error("{0}")]
    Segments(String),
    /// No instances for a version.
    #[error("expected at least one URL")]
    NoUrls,
    /// An instance URL that is not http(s).
    #[error("expected http:// or https:// base URLs, found `{0}`")]
    BadUrl(String),
    /// A version that still gets traffic cannot be removed.
    #[error("version `{version}` still has weight {weight}; set it to 0 first")]
    StillWeighted {
        /// The version.
        version: String,
        /// Its weight.
        weight: f64,
    },
    /// The version is the route's shadow.
    #[error("version `{0}` is the route's shadow")]
    IsShadow(String),
    /// The version is the route's only one.
    #[error("`{0}` is the route's only version")]
    OnlyVersion(String),
}

fn no_version(route: &str, version: &str) -> ChangeError {
    ChangeError::NoVersion {
        route: route.to_owned(),
        version: version.to_owned(),
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway has no file to read again.
    #[error("this gateway was started without a config file")]
    NoFile,
    /// The file has errors (each located).
    #[error(transparent)]
    Config(#[from] sluice_config::Diagnostics),
}

impl GatewayHandle {
    /// The routing snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// The live metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Every version's figures over the last `span`, counting every answer sent before the
    /// call (outcomes still queued for the recorder are recorded first).
    pub async fn windows(&self, span: Duration, histogram: bool) -> metrics::Windows {
        self.shared.recorder.flush().await;
        self.shared.metrics.windows(span, histogram)
    }

    /// Replaces one route in a copy of the snapshot and swaps it in.
    fn update_route(
        &self,
        route: &str,
        change: impl Fn(&Route) -> Result<Route, ChangeError>,
    ) -> Result<(), ChangeError> {
        let mut result = Ok(());
        self.shared.snapshot.rcu(|current| {
            let mut next = (**current).clone();
            match next.routes.get(route) {
                Some(existing) => match change(existing) {
                    Ok(updated) => {
                        next.routes.insert(route.to_owned(), Arc::new(updated));
                        result = Ok(());
                    }
                    Err(e) => result = Err(e),
                },
                None => result = Err(ChangeError::NoRoute(route.to_owned())),
            }
            next
        });
        result
    }

    /// Sets a route's weights atomically (percent by version name; they must sum to 100).
    pub fn set_weights(
        &self,
        route: &str,
        weights: &BTreeMap<String, f64>,
    ) -> Result<(), ChangeError> {
        self.set_weights_as(route, weights, None)
    }

    /// Sets a route's weights for the rollout `owner` (when given), which then steers the
    /// route: reloads leave it alone until [`GatewayHandle::release`].
    pub fn set_weights_as(
        &self,
        route: &str,
        weights: &BTreeMap<String, f64>,
        owner: Option<&str>,
    ) -> Result<(), ChangeError> {
        self.update_route(route, |r| {
            let mut next = r.with_weights(weights)?;
            if let Some(owner) = owner {
                next.owner = Some(owner.to_owned());
            }
            Ok(next)
        })?;
        info!(route, ?weights, rollout = owner, "Weights set.");
        Ok(())
    }

    /// Ends the rollout `owner`'s hold on a route (nothing when another rollout holds it).
    pub fn release(&self, route: &str, owner: &str) -> Result<(), ChangeError> {
        self.update_route(route, |r| {
            let mut next = r.clone();
            if next.owner.as_deref() == Some(owner) {
                next.owner = None;
            }
            Ok(next)
        })?;
        info!(route, rollout = owner, "Route released.");
        Ok(())
    }

    /// Adds a version to a route with weight 0.
    pub fn add_version(&self, route: &str, version: Version) -> Result<(), ChangeError> {
        let name = version.name.clone();
        self.update_route(route, |r| {
            if r.index(&version.name).is_some() {
                return Err(ChangeError::DuplicateVersion {
                    route: route.to_owned(),
                    version: version.name.clone(),
                });
            }
            let mut next = r.clone();
            next.versions.push(version.clone());
            next.weights.push(0.0);
            Ok(next)
        })?;
        info!(route, version = name, "Version added.");
        Ok(())
    }

    /// Mirrors `percent` of a route's requests to `version` (0 stops mirroring).
    pub fn set_shadow(&self, route: &str, version: &str, percent: f64) -> Result<(), ChangeError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ChangeError::Percent(percent));
        }
        self.update_route(route, |r| {
            if r.index(version).is_none() {
                return Err(no_version(route, version));
            }
            let mut next = r.clone();
            next.shadow = (percent > 0.0).then(|| route::Shadow {
                version: version.to_owned(),
                percent,
                embedding_model: r.shadow.as_ref().and_then(|s| s.embedding_model.clone()),
            });
            Ok(next)
        })?;
        info!(route, version, percent, "Shadow set.");
        Ok(())
    }

    /// Replaces the feature-flag segments that send requests to `version` (others are kept),
    /// and sets the route's sticky key when one is given.
    pub fn set_segments(
        &self,
        route: &str,
        version: &str,
        segments: Vec<route::Segment>,
        sticky: Option<route::StickyKey>,
    ) -> Result<(), ChangeError> {
        if let Some(other) = segments.iter().find(|s| s.version() != version) {
            return Err(ChangeError::SegmentVersion {
                version: version.to_owned(),
                other: other.version().to_owned(),
            });
        }
        let count = segments.len();
        self.update_route(route, |r| {
            if r.index(version).is_none() {
                return Err(no_version(route, version));
            }
            let mut next = r.clone();
            next.segments.retain(|s| s.version() != version);
            next.segments.extend(segments.iter().cloned());
            if let Some(sticky) = &sticky {
                next.sticky = sticky.clone();
            }
            Ok(next)
        })?;
        info!(route, version, segments = count, "Segments set.");
        Ok(())
    }

    /// Replaces the instances (base URLs) behind a version; requests in flight finish where
    /// they are.
    pub fn set_upstreams(
        &self,
        route: &str,
        version: &str,
        urls: Vec<String>,
    ) -> Result<(), ChangeError> {
        if urls.is_empty() {
            return Err(ChangeError::NoUrls);
        }
        if let Some(bad) = urls
            .iter()
            .find(|u| EndpointSpec::check_base_url(u).is_err())
        {
            return Err(ChangeError::BadUrl(bad.clone()));
        }
        self.update_route(route, |r| {
            let index = r.index(version).ok_or_else(|| no_version(route, version))?;
            let mut next = r.clone();
            let v = &mut next.versions[index];
            v.upstreams = v.upstreams.replaced(urls.clone());
            Ok(next)
        })?;
        info!(route, version, instances = urls.len(), "Upstreams set.");
        Ok(())
    }

    /// Removes a version whose weight is 0.
    pub fn remove_version(&self, route: &str, name: &str) -> Result<(), ChangeError> {
        self.update_route(route, |r| {
            let index = r.index(name).ok_or_else(|| no_version(route, name))?;
            if r.weights[index] > 0.0 {
                return Err(ChangeError::StillWeighted {
                    version: name.to_owned(),
                    weight: r.weights[index],
                });
            }
            if r.shadow.as_ref().is_some_and(|s| s.version == name) {
                return Err(ChangeError::IsShadow(name.to_owned()));
            }
            if r.versions.len() == 1 {
                return Err(ChangeError::OnlyVersion(name.to_owned()));
            }
            let mut next = r.clone();
            next.versions.remove(index);
            next.weights.remove(index);
            next.segments.retain(|s| match s {
                route::Segment::Header { version, .. } | route::Segment::Users { version, .. } => {
                    version != name
                }
            });
            Ok(next)
        })?;
        info!(route, version = name, "Version removed.");
        Ok(())
    }

    /// Re-reads the config file and applies what changed in it, route by route (a diff, not
    /// a replacement): a route whose definition is as before keeps its runtime state, a
    /// changed or new one takes the file's, and a route a rollout steers is never changed (see
    /// [`ReloadReport`]). On an error nothing changes. Listener limits are not reloaded.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let Some(path) = &self.config_path else {
            return Err(ReloadError::NoFile);
        };
        let config = GatewayConfig::load(path, &ProcessEnv)?;
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = ReloadReport::default();
        let mut next_file = BTreeMap::new();
        self.shared.snapshot.rcu(|current| {
            report = ReloadReport::default();
            next_file = config.sources.clone();
            let mut next = (**current).clone();
            let names: std::collections::BTreeSet<&String> = current
                .routes
                .keys()
                .chain(config.snapshot.routes.keys())
                .collect();
            for name in names {
                let running = current.routes.get(name);
                let wanted = config.snapshot.routes.get(name);
                let same = match (file.get(name), config.sources.get(name)) {
                    (Some(old), Some(new)) => old.same_value(new),
                    _ => false,
                };
                match (running, wanted) {
                    (Some(route), _) if route.owner.is_some() && !same => {
                        report.held.push(HeldRoute {
                            route: name.clone(),
                            rollout: route.owner.clone().unwrap_or_default(),
                        });
                        // The file's change is still to come once the rollout has ended.
                        match file.get(name) {
                            Some(old) => next_file.insert(name.clone(), old.clone()),
                            None => next_file.remove(name),
                        };
                    }
                    (Some(_), Some(_)) if same => report.unchanged.push(name.clone()),
                    (Some(_), Some(route)) => {
                        next.routes.insert(name.clone(), Arc::clone(route));
                        report.changed.push(name.clone());
                    }
                    (None, Some(route)) => {
                        next.routes.insert(name.clone(), Arc::clone(route));
                        report.added.push(name.clone());
                    }
                    (Some(_), None) => {
                        next.routes.remove(name);
                        report.removed.push(name.clone());
                    }
                    (None, None) => {}
                }
            }
            next
        });
        *file = next_file;
        info!(path = %path.display(), ?report, "Config reloaded.");
        Ok(report)
    }

    /// Requests whose answers are not complete.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }
}

/// A running gateway.
pub struct GatewayServer {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    handle: GatewayHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    log_task: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
    otlp: Option<otlp::Stop>,
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The admin API would be reachable from other hosts without a token.
    #[error(
        "the admin API on {0} is not on loopback; set `admin.token_env` in the config so that it needs a token"
    )]
    OpenAdmin(SocketAddr),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl GatewayServer {
    /// Binds both listeners and starts serving.
    pub async fn start(
        config: GatewayConfig,
        config_path: Option<PathBuf>,
        store: Option<sluice_store::Store>,
        listen: SocketAddr,
        admin_listen: SocketAddr,
    ) -> Result<Self, StartError> {
        if config.admin_token.is_none() && !admin_listen.ip().is_loopback() {
            return Err(StartError::OpenAdmin(admin_listen));
        }
        let listener = bind(listen).await?;
        let admin_listener = bind(admin_listen).await?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: admin_listen,
                source,
            })?;
        let limits = config.limits.clone();
        let metrics = Arc::new(Metrics::default());
        let (log, log_task) = match &store {
            Some(store) => {
                let (log, stop, task) = log::RequestLog::start(store.clone(), Arc::clone(&metrics));
                (Some(log), Some((stop, task)))
            }
            None => (None, None),
        };
        let (shadow_queue, shadow_jobs) = tokio::sync::mpsc::channel(limits.shadow_queue.max(1));
        let (recorder, recorder_task) = proxy::Recorder::new();
        let mut shared = Shared::new(
            config.snapshot,
            limits.clone(),
            metrics,
            store,
            log,
            shadow_queue,
            recorder,
        );
        let otlp = config.otlp.map(|otlp| {
            info!(
                endpoint = otlp.endpoint,
                "Exporting a span per request over OTLP."
            );
            let (tracer, stop) = otlp::Tracer::start(otlp);
            shared.tracer = Some(tracer);
            stop
        });
        let shared = Arc::new(shared);
        let shadow_task = tokio::spawn(shadow::run(Arc::clone(&shared), shadow_jobs));
        let recorder_task = tokio::spawn(recorder_task);
        let handle = GatewayHandle {
            shared: Arc::clone(&shared),
            config_path: config_path.map(Arc::new),
            file: Arc::new(std::sync::Mutex::new(config.sources.clone())),
        };
        let (shutdown, receiver) = watch::channel(false);
        let public = {
            let shared = Arc::clone(&shared);
            sluice_http::serve(
                listener,
                limits.server.clone(),
                receiver.clone(),
                Arc::clone(&shared.connections),
                move |request, _peer| {
                    let shared = Arc::clone(&shared);
                    async move {
                        Ok::<_, std::convert::Infallible>(proxy::handle(shared, request).await)
                    }
                },
            )
        };
        let admin = {
            let handle = handle.clone();
            let token = config.admin_token.map(Arc::new);
            sluice_http::serve(
                admin_listener,
                limits.server,
                receiver,
                Arc::new(sluice_http::ConnectionStats::default()),
                move |request, _peer| {
                    let (handle, token) = (handle.clone(), token.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            admin::handle(handle, token, request).await,
                        )
                    }
                },
            )
        };
        info!(%addr, %admin_addr, "Gateway listening.");
        Ok(Self {
            addr,
            admin_addr,
            handle,
            shutdown,
            tasks: vec![tokio::spawn(public), tokio::spawn(admin)],
            background: vec![shadow_task, recorder_task],
            log_task,
            otlp,
        })
    }

    /// The public address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The control surface.
    pub fn handle(&self) -> GatewayHandle {
        self.handle.clone()
    }

    /// Stops accepting, lets requests in flight finish (streams included) up to the drain
    /// deadline, then closes what is left and says how many were cut.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let left = self.handle.in_flight();
        // Requests have drained: record what the recorder has queued, write what the request
        // log has queued, then stop it.
        self.handle.shared.recorder.flush().await;
        for task in self.background {
            task.abort();
        }
        if let Some(otlp) = self.otlp {
            otlp.stop().await;
        }
        if let Some((stop, task)) = self.log_task {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                warn!("The request log could not be written within 10 s of shutdown.");
            }
        }
        if left > 0 {
            warn!(
                in_flight = left,
                "Gateway stopped with requests still in flight."
            );
        } else {
            info!("Gateway drained.");
        }
    }
}
