//! Where the controller moves traffic and reads live windows: a gateway's admin API over HTTP,
//! or, when the controller runs inside `sluice gateway --rollout`, the gateway itself through
//! its in-process handle (no network between them).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_gateway::GatewayHandle;
use sluice_gateway::metrics::Windows;
use sluice_gateway::route::{Segment, StickyKey};

use crate::spec::FlagSegment;

/// Timeout of each admin API call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the gateway did not take a change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// It answered no: trying again changes nothing.
    #[error("the gateway refused: {0}")]
    Refused(String),
    /// It could not be reached.
    #[error("the gateway is unreachable: {0}")]
    Unreachable(String),
}

/// A gateway the controller steers.
#[derive(Clone)]
pub enum Backend {
    /// The admin API at this base URL.
    Admin {
        /// The HTTP client (with the admin timeout).
        client: reqwest::Client,
        /// The admin base URL.
        url: String,
        /// The bearer token, when the admin API needs one.
        token: Option<sluice_config::Secret>,
    },
    /// The gateway in this process.
    InProcess(GatewayHandle),
}

impl Backend {
    /// The admin API at `url`.
    pub fn admin(url: &str, token: Option<sluice_config::Secret>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(ADMIN_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Backend::Admin {
            client,
            url: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn put(&self, path: &str, body: Value) -> Result<(), BackendError> {
        self.send(reqwest::Method::PUT, path, Some(body), None)
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        rollout: Option<&str>,
    ) -> Result<(), BackendError> {
        let Backend::Admin { client, url, token } = self else {
            return Err(BackendError::Refused("not an HTTP backend".into()));
        };
        let url = format!("{url}{path}");
        let mut request = client.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(rollout) = rollout {
            request = request.header("x-sluice-rollout", rollout);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                Err(BackendError::Refused(format!("{url} ({status}): {text}")))
            }
            Err(error) => Err(BackendError::Unreachable(format!("{url}: {error}"))),
        }
    }

    /// Sets a route's weights (percent by version) for the rollout named `rollout`, which
    /// then steers the route: the gateway's reloads leave it alone until it is released.
    pub async fn set_weights(
        &self,
        route: &str,
        weights: BTreeMap<String, f64>,
        rollout: &str,
    ) -> Result<(), BackendError> {
        match self {
            Backend::InProcess(handle) => handle
                .set_weights_as(route, &weights, Some(rollout))
                .map_err(BackendError::Refused),
            Backend::Admin { .. } => {
                self.send(
                    reqwest::Method::PUT,
                    &format!("/admin/routes/{route}/weights"),
                    Some(json!(weights)),
                    Some(rollout),
                )
                .await
            }
        }
    }

    /// Ends the rollout's hold on the route (its weights stay).
    pub async fn release(&self, route: &str, rollout: &str) -> Result<(), BackendError> {
        match self {
            Backend::InProcess(handle) => handle
                .release(route, rollout)
                .map_err(BackendError::Refused),
            Backend::Admin { .. } => {
                self.send(
                    reqwest::Method::DELETE,
                    &format!("/admin/routes/{route}/owner?rollout={rollout}"),
                    None,
                    None,
                )
                .await
            }
        }
    }

    /// The route's weights in force, by version.
    pub async fn weights(&self, route: &str) -> Result<BTreeMap<String, f64>, String> {
        let routes = match self {
            Backend::InProcess(handle) => {
                let snapshot = handle.snapshot();
                let route = snapshot
                    .routes
                    .get(route)
                    .ok_or_else(|| format!("the gateway has no route `{route}`"))?;
                return Ok(route
                    .versions
                    .iter()
                    .zip(&route.weights)
                    .map(|(v, w)| (v.name.clone(), *w))
                    .collect());
            }
            Backend::Admin { client, url, token } => {
                let mut request = client.get(format!("{url}/admin/routes"));
                if let Some(token) = token {
                    request = request.bearer_auth(token.expose());
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("the gateway answered {}", response.status()));
                }
                response.json::<Value>().await.map_err(|e| e.to_string())?
            }
        };
        let versions = routes["routes"][route]["versions"]
            .as_array()
            .ok_or_else(|| format!("the gateway has no route `{route}`"))?;
        Ok(versions
            .iter()
            .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v["weight"].as_f64()?)))
            .collect())
    }

    /// Mirrors `percent` of a route's requests to `version` (0 stops).
    pub async fn set_shadow(
        &self,
        route: &str,
        version: &str,
        percent: u32,
    ) -> Result<(), BackendError> {
        match self {
            Backend::InProcess(handle) => handle
                .set_shadow(route, version, f64::from(percent))
                .map_err(BackendError::Refused),
            Backend::Admin { .. } => {
                self.put(
                    &format!("/admin/routes/{route}/shadow"),
                    json!({"version": version, "percent": percent}),
                )
                .await
            }
        }
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
        match self {
            Backend::InProcess(handle) => {
                let sticky = StickyKey::parse(sticky_key).map_err(BackendError::Refused)?;
                let segments = segments
                    .iter()
                    .map(|s| match s {
                        FlagSegment::Header { name, equals } => Segment::Header {
                            name: name.to_ascii_lowercase(),
                            value: equals.clone(),
                            version: version.to_owned(),
                        },
                        FlagSegment::Users(users) => Segment::Users {
                            users: users.iter().cloned().collect(),
                            version: version.to_owned(),
                        },
                    })
                    .collect();
                handle
                    .set_segments(route, version, segments, Some(sticky))
                    .map_err(BackendError::Refused)
            }
            Backend::Admin { .. } => {
                let segments: Vec<Value> = segments
                    .iter()
                    .map(|s| match s {
                        FlagSegment::Header { name, equals } => {
                            json!({"header": name, "equals": equals})
                        }
                        FlagSegment::Users(users) => json!({"users": users}),
                    })
                    .collect();
                self.put(
                    &format!("/admin/routes/{route}/segments/{version}"),
                    json!({"segments": segments, "sticky_key": sticky_key}),
                )
                .await
            }
        }
    }

    /// Points a version at these instances.
    pub async fn set_upstreams(
        &self,
        route: &str,
        version: &str,
        urls: Vec<String>,
    ) -> Result<(), BackendError> {
        match self {
            Backend::InProcess(handle) => handle
                .set_upstreams(route, version, urls)
                .map_err(BackendError::Refused),
            Backend::Admin { .. } => {
                self.put(
                    &format!("/admin/routes/{route}/versions/{version}/upstreams"),
                    json!({ "urls": urls }),
                )
                .await
            }
        }
    }

    /// The live windows of every version over the last `seconds` (with latency bins when
    /// `histogram` is set): the same typed windows in process and over the admin API.
    pub async fn windows(&self, seconds: u64, histogram: bool) -> Result<Windows, String> {
        match self {
            Backend::InProcess(handle) => {
                Ok(handle.windows(Duration::from_secs(seconds), histogram))
            }
            Backend::Admin { client, url, token } => {
                let url = format!(
                    "{url}/admin/windows?seconds={seconds}{}",
                    if histogram { "&histogram=1" } else { "" }
                );
                let mut request = client.get(&url);
                if let Some(token) = token {
                    request = request.bearer_auth(token.expose());
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("the gateway answered {}", response.status()));
                }
                /// `GET /admin/windows`'s answer.
                #[derive(serde::Deserialize)]
                struct Answer {
                    windows: Windows,
                }
                let answer: Answer = response.json().await.map_err(|e| {
                    format!("the gateway's windows are not what this build reads: {e}")
                })?;
                Ok(answer.windows)
            }
        }
    }
}
