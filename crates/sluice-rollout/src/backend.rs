//! Where the controller moves traffic and reads live windows: any [`GatewayControl`], which is
//! a gateway's admin API over HTTP ([`AdminClient`]) or, when the controller runs inside
//! `sluice gateway --rollout`, the gateway itself through its in-process handle (no network
//! between them). Both speak the same typed API, so the controller cannot tell them apart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_gateway::GatewayHandle;
use sluice_gateway::control::{
    AdminClient, GatewayControl, SegmentRule, SegmentsChange, ShadowChange, UpstreamsChange,
};
use sluice_gateway::metrics::Windows;

use crate::spec::FlagSegment;

/// Why the gateway did not take a change (the gateway's own control error).
pub use sluice_gateway::control::ControlError as BackendError;

/// Timeout of each admin API call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A gateway the controller steers.
#[derive(Clone)]
pub struct Backend(Arc<dyn GatewayControl>);

impl Backend {
    /// The admin API at `url`.
    pub fn admin(url: &str, token: Option<sluice_core::Secret>) -> Result<Self, BackendError> {
        Ok(Self(Arc::new(AdminClient::new(url, token, ADMIN_TIMEOUT)?)))
    }

    /// The gateway in this process.
    pub fn in_process(handle: GatewayHandle) -> Self {
        Self(Arc::new(handle))
    }

    /// Any other implementation of the control API.
    pub fn new(control: Arc<dyn GatewayControl>) -> Self {
        Self(control)
    }

    /// Sets a route's weights (percent by version) for the rollout named `rollout`, which
    /// then steers the route: the gateway's reloads leave it alone until it is released.
    pub async fn set_weights(
        &self,
        route: &str,
        weights: BTreeMap<String, f64>,
        rollout: &str,
    ) -> Result<(), BackendError> {
        self.0.set_weights(route, &weights, Some(rollout)).await
    }

    /// Ends the rollout's hold on the route (its weights stay).
    pub async fn release(&self, route: &str, rollout: &str) -> Result<(), BackendError> {
        self.0.release(route, rollout).await
    }

    /// The route's weights in force, by version.
    pub async fn weights(&self, route: &str) -> Result<BTreeMap<String, f64>, BackendError> {
        self.0.weights(route).await
    }

    /// Mirrors `percent` of a route's requests to `version` (0 stops).
    pub async fn set_shadow(
        &self,
        route: &str,
        version: &str,
        percent: u32,
    ) -> Result<(), BackendError> {
        let shadow = ShadowChange {
            version: version.to_owned(),
            percent: f64::from(percent),
        };
        self.0.set_shadow(route, &shadow).await
    }

    /// Replaces the feature-flag segments that send requests to `version`, and sets the
    /// route's sticky key.
    pub async fn set_segments(
        &self,
        route: &str,
        version: &str,
        segments: &[FlagSegment],
        sticky_key: &str,
    ) -> Result<(), BackendError> {
        let change = SegmentsChange {
            segments: segments
                .iter()
                .map(|s| match s {
                    FlagSegment::Header { name, equals } => SegmentRule::header(name, equals),
                    FlagSegment::Users(users) => SegmentRule::users(users.iter().cloned()),
                })
                .collect(),
            sticky_key: Some(sticky_key.to_owned()),
        };
        self.0.set_segments(route, version, &change).await
    }

    /// Points a version at these instances.
    pub async fn set_upstreams(
        &self,
        route: &str,
        version: &str,
        urls: Vec<String>,
    ) -> Result<(), BackendError> {
        self.0
            .set_upstreams(route, version, &UpstreamsChange { urls })
            .await
    }

    /// The live windows of every version over the last `seconds` (with latency bins when
    /// `histogram` is set).
    pub async fn windows(&self, seconds: u64, histogram: bool) -> Result<Windows, BackendError> {
        self.0.windows(seconds, histogram).await
    }
}
