//! The gateway's typed control API: everything a rollout controller (or any other steering
//! part) may ask of a gateway, as one trait, [`GatewayControl`], with two implementations that
//! speak the same serde types: the in-process [`GatewayHandle`] and [`AdminClient`], the admin
//! API over HTTP. The admin API's handlers deserialize these very types, so a renamed field is
//! a compile error or a refused request, never a silently missing value.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_core::Secret;

use crate::metrics::Windows;
use crate::route::{Route, Segment, StickyKey};
use crate::{ChangeError, GatewayHandle};

/// Why a gateway did not do what it was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    /// It answered no: trying again changes nothing.
    #[error("the gateway refused: {0}")]
    Refused(String),
    /// It could not be reached.
    #[error("the gateway is unreachable: {0}")]
    Unreachable(String),
    /// It answered something this build does not read (another version's admin API).
    #[error("the gateway's answer is not what this build reads: {0}")]
    Incompatible(String),
}

/// A feature-flag segment as written in the config file (with its `version`) or sent to the
/// admin API (where the path names the version): `header` with `equals`, or `users`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRule {
    /// The header whose value selects the segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The value that header must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The user ids (`x-sluice-user` or the request's `user`) in the segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// The version the segment sends its requests to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl SegmentRule {
    /// Requests whose header `name` is `equals`.
    pub fn header(name: &str, equals: &str) -> Self {
        Self {
            header: Some(name.to_owned()),
            equals: Some(equals.to_owned()),
            ..Self::default()
        }
    }

    /// Requests from these users.
    pub fn users(users: impl IntoIterator<Item = String>) -> Self {
        Self {
            users: Some(users.into_iter().collect()),
            ..Self::default()
        }
    }

    /// The segment, sending its requests to `version`.
    pub fn segment(&self, version: &str) -> Result<Segment, &'static str> {
        match (&self.header, &self.equals, &self.users) {
            (Some(header), Some(value), None) => Ok(Segment::Header {
                name: header.to_ascii_lowercase(),
                value: value.clone(),
                version: version.to_owned(),
            }),
            (None, None, Some(users)) => Ok(Segment::Users {
                users: users.iter().cloned().collect(),
                version: version.to_owned(),
            }),
            _ => Err("expected either `header` with `equals`, or `users`"),
        }
    }

    fn of(segment: &Segment) -> Self {
        match segment {
            Segment::Header {
                name,
                value,
                version,
            } => Self {
                version: Some(version.clone()),
                ..Self::header(name, value)
            },
            Segment::Users { users, version } => Self {
                version: Some(version.clone()),
                ..Self::users(users.iter().cloned())
            },
        }
    }
}

/// `PUT /admin/routes/{route}/segments/{version}`: replaces the version's segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsChange {
    /// The version's segments.
    pub segments: Vec<SegmentRule>,
    /// The route's sticky key from now on (`user`, `header:NAME` or `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_key: Option<String>,
}

/// `PUT /admin/routes/{route}/shadow`, and a route's shadow as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowChange {
    /// The version that gets the copies.
    pub version: String,
    /// The share of requests copied, 0 to 100 (0 stops).
    pub percent: f64,
}

/// `PUT /admin/routes/{route}/versions/{name}/upstreams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamsChange {
    /// The version's instances (base URLs).
    pub urls: Vec<String>,
}

/// A version of a route, as `GET /admin/routes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    /// The version's name.
    pub name: String,
    /// Its first instance.
    pub url: Option<String>,
    /// All its instances.
    pub urls: Vec<String>,
    /// The model it asks for.
    pub model: String,
    /// Its weight, in percent.
    pub weight: f64,
}

/// A route, as `GET /admin/routes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteView {
    /// Versions in config order, with their weights.
    pub versions: Vec<VersionView>,
    /// The sticky key (`user`, `header:NAME`), none when requests are spread at random.
    pub sticky_key: Option<String>,
    /// The bucket hash's salt.
    pub salt: String,
    /// Whether `x-sluice-version` overrides are honoured.
    pub overrides: bool,
    /// The rollout that steers the route, when one does.
    pub owner: Option<String>,
    /// Shadow mirroring, when on.
    pub shadow: Option<ShadowChange>,
    /// Feature-flag segments, first match wins.
    pub segments: Vec<SegmentRule>,
}

impl RouteView {
    /// The view of a route.
    pub fn of(route: &Route) -> Self {
        Self {
            versions: route
                .versions
                .iter()
                .zip(&route.weights)
                .map(|(v, w)| VersionView {
                    name: v.name.clone(),
                    url: v.upstreams.all().first().cloned(),
                    urls: v.upstreams.all().to_vec(),
                    model: v.model.clone(),
                    weight: *w,
                })
                .collect(),
            sticky_key: match &route.sticky {
                StickyKey::None => None,
                StickyKey::User => Some("user".to_owned()),
                StickyKey::Header(h) => Some(format!("header:{h}")),
            },
            salt: route.salt.clone(),
            overrides: route.overrides,
            owner: route.owner.clone(),
            shadow: route.shadow.as_ref().map(|s| ShadowChange {
                version: s.version.clone(),
                percent: s.percent,
            }),
            segments: route.segments.iter().map(SegmentRule::of).collect(),
        }
    }

    /// The weights in force, by version.
    pub fn weights(&self) -> BTreeMap<String, f64> {
        self.versions
            .iter()
            .map(|v| (v.name.clone(), v.weight))
            .collect()
    }
}

/// `GET /admin/routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutesView {
    /// Every route by name.
    pub routes: BTreeMap<String, RouteView>,
}

/// `GET /admin/windows`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowsView {
    /// Every version's live windows.
    pub windows: Windows,
}

/// What may be asked of a gateway. Changes are atomic per call; a refusal names why.
#[async_trait]
pub trait GatewayControl: Send + Sync {
    /// Every route, with its versions, weights, owner, shadow and segments.
    async fn routes(&self) -> Result<RoutesView, ControlError>;

    /// Sets a route's weights (percent by version, summing to 100). With `owner`, that
    /// rollout steers the route from then on: reloads leave it alone until it is released.
    async fn set_weights(
        &self,
        route: &str,
        weights: &BTreeMap<String, f64>,
        owner: Option<&str>,
    ) -> Result<(), ControlError>;

    /// Ends the rollout `owner`'s hold on a route (its weights stay).
    async fn release(&self, route: &str, owner: &str) -> Result<(), ControlError>;

    /// Mirrors a share of a route's requests to a version (percent 0 stops).
    async fn set_shadow(&self, route: &str, shadow: &ShadowChange) -> Result<(), ControlError>;

    /// Replaces the segments that send requests to `version`, and sets the sticky key.
    async fn set_segments(
        &self,
        route: &str,
        version: &str,
        change: &SegmentsChange,
    ) -> Result<(), ControlError>;

    /// Points a version at these instances.
    async fn set_upstreams(
        &self,
        route: &str,
        version: &str,
        change: &UpstreamsChange,
    ) -> Result<(), ControlError>;

    /// Every version's live windows over the last `seconds` (with latency bins when
    /// `histogram` is set).
    async fn windows(&self, seconds: u64, histogram: bool) -> Result<Windows, ControlError>;

    /// A route's weights in force, by version.
    async fn weights(&self, route: &str) -> Result<BTreeMap<String, f64>, ControlError> {
        self.routes()
            .await?
            .routes
            .get(route)
            .map(RouteView::weights)
            .ok_or_else(|| ControlError::Refused(format!("the gateway has no route `{route}`")))
    }
}

#[async_trait]
impl GatewayControl for GatewayHandle {
    async fn routes(&self) -> Result<RoutesView, ControlError> {
        let snapshot = self.snapshot();
        Ok(RoutesView {
            routes: snapshot
                .routes
                .iter()
                .map(|(name, route)| (name.clone(), RouteView::of(route)))
                .collect(),
        })
    }

    async fn set_weights(
        &self,
        route: &str,
        weights: &BTreeMap<String, f64>,
        owner: Option<&str>,
    ) -> Result<(), ControlError> {
        self.set_weights_as(route, weights, owner).map_err(refused)
    }

    async fn release(&self, route: &str, owner: &str) -> Result<(), ControlError> {
        GatewayHandle::release(self, route, owner).map_err(refused)
    }

    async fn set_shadow(&self, route: &str, shadow: &ShadowChange) -> Result<(), ControlError> {
        GatewayHandle::set_shadow(self, route, &shadow.version, shadow.percent).map_err(refused)
    }

    async fn set_segments(
        &self,
        route: &str,
        version: &str,
        change: &SegmentsChange,
    ) -> Result<(), ControlError> {
        self.apply_segments(route, version, change).map_err(refused)
    }

    async fn set_upstreams(
        &self,
        route: &str,
        version: &str,
        change: &UpstreamsChange,
    ) -> Result<(), ControlError> {
        GatewayHandle::set_upstreams(self, route, version, change.urls.clone()).map_err(refused)
    }

    async fn windows(&self, seconds: u64, histogram: bool) -> Result<Windows, ControlError> {
        Ok(GatewayHandle::windows(self, Duration::from_secs(seconds), histogram).await)
    }
}

fn refused(error: ChangeError) -> ControlError {
    ControlError::Refused(error.to_string())
}

impl GatewayHandle {
    /// Replaces a version's segments and sets the sticky key, from the wire form: the admin
    /// API's `PUT …/segments/{version}` and [`GatewayControl::set_segments`] both land here.
    pub fn apply_segments(
        &self,
        route: &str,
        version: &str,
        change: &SegmentsChange,
    ) -> Result<(), ChangeError> {
        let sticky = change
            .sticky_key
            .as_deref()
            .map(StickyKey::parse)
            .transpose()
            .map_err(|e| ChangeError::Segments(format!("`sticky_key`: {e}")))?;
        let mut segments = Vec::new();
        for (i, rule) in change.segments.iter().enumerate() {
            if rule.version.as_deref().is_some_and(|v| v != version) {
                return Err(ChangeError::Segments(format!(
                    "`segments[{i}].version`: this call sets the segments of `{version}`"
                )));
            }
            segments.push(
                rule.segment(version).map_err(|message| {
                    ChangeError::Segments(format!("`segments[{i}]`: {message}"))
                })?,
            );
        }
        self.set_segments(route, version, segments, sticky)
    }
}

/// A gateway's admin API over HTTP, with a per-call timeout and the bearer token when the API
/// needs one.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("url", &self.url)
            .field("token", &self.token)
            .finish()
    }
}

impl AdminClient {
    /// The admin API at base URL `url` (e.g. `http://127.0.0.1:9091`); each call gives up
    /// after `timeout`.
    pub fn new(url: &str, token: Option<Secret>, timeout: Duration) -> Result<Self, ControlError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        rollout: Option<&str>,
    ) -> Result<reqwest::Response, ControlError> {
        let url = format!("{}{path}", self.url);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(rollout) = rollout {
            request = request.header("x-sluice-rollout", rollout);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                Err(ControlError::Refused(format!("{url} ({status}): {text}")))
            }
            Err(error) => Err(ControlError::Unreachable(format!("{url}: {error}"))),
        }
    }

    async fn put<T: Serialize + Sync>(&self, path: &str, body: &T) -> Result<(), ControlError> {
        self.call(reqwest::Method::PUT, path, json(body)?, None)
            .await
            .map(drop)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ControlError> {
        self.call(reqwest::Method::GET, path, None, None)
            .await?
            .json()
            .await
            .map_err(|e| ControlError::Incompatible(format!("{}{path}: {e}", self.url)))
    }
}

fn json<T: Serialize>(body: &T) -> Result<Option<Vec<u8>>, ControlError> {
    serde_json::to_vec(body)
        .map(Some)
        .map_err(|e| ControlError::Incompatible(e.to_string()))
}

#[async_trait]
impl GatewayControl for AdminClient {
    async fn routes(&self) -> Result<RoutesView, ControlError> {
        self.get("/admin/routes").await
    }

    async fn set_weights(
        &self,
        route: &str,
        weights: &BTreeMap<String, f64>,
        owner: Option<&str>,
    ) -> Result<(), ControlError> {
        let path = format!("/admin/routes/{route}/weights");
        self.call(reqwest::Method::PUT, &path, json(weights)?, owner)
            .await
            .map(drop)
    }

    async fn release(&self, route: &str, owner: &str) -> Result<(), ControlError> {
        let path = format!("/admin/routes/{route}/owner?rollout={owner}");
        self.call(reqwest::Method::DELETE, &path, None, None)
            .await
            .map(drop)
    }

    async fn set_shadow(&self, route: &str, shadow: &ShadowChange) -> Result<(), ControlError> {
        let path = format!("/admin/routes/{route}/shadow");
        self.put(&path, shadow).await
    }

    async fn set_segments(
        &self,
        route: &str,
        version: &str,
        change: &SegmentsChange,
    ) -> Result<(), ControlError> {
        let path = format!("/admin/routes/{route}/segments/{version}");
        self.put(&path, change).await
    }

    async fn set_upstreams(
        &self,
        route: &str,
        version: &str,
        change: &UpstreamsChange,
    ) -> Result<(), ControlError> {
        let path = format!("/admin/routes/{route}/versions/{version}/upstreams");
        self.put(&path, change).await
    }

    async fn windows(&self, seconds: u64, histogram: bool) -> Result<Windows, ControlError> {
        let path = format!(
            "/admin/windows?seconds={seconds}{}",
            if histogram { "&histogram=1" } else { "" }
        );
        Ok(self.get::<WindowsView>(&path).await?.windows)
    }
}
