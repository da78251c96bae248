//! Routing: the immutable [`Snapshot`] of routes that every request reads once, and the choice
//! of a version for one request — header override, then feature-flag segments, then the
//! weighted split, sticky when a key is configured and present.
//!
//! A sticky key maps to a bucket `u = SHA-256(salt ‖ key)[0..4] / 2³²` in [0, 1), and the
//! version is the one whose cumulative-weight interval holds `u` (versions in config order).
//! A user therefore stays on a version until a weight change moves that interval past its
//! bucket, and a new salt reshuffles everyone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Every route, by the model name clients send.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Routes by public model name.
    pub routes: BTreeMap<String, Arc<Route>>,
}

/// Per-version upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From sending the request to the response headers and, for a stream, its first chunk.
    pub ttft: Duration,
    /// The whole exchange, body included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            ttft: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// A version's upstream instances, taken round-robin. Clones share the turn counter, so a
/// snapshot rebuilt for another change keeps the rotation going.
#[derive(Debug, Clone)]
pub struct Upstreams {
    urls: Arc<[String]>,
    turn: Arc<AtomicUsize>,
}

impl Upstreams {
    /// Instances at these base URLs (trailing slashes dropped); at least one.
    pub fn new<I: IntoIterator<Item = String>>(urls: I) -> Self {
        Self {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            turn: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// One instance at this base URL.
    pub fn one(url: &str) -> Self {
        Self::new([url.to_owned()])
    }

    /// The next instance's base URL.
    pub fn next(&self) -> &str {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        &self.urls[turn % self.urls.len()]
    }

    /// Every instance's base URL.
    pub fn all(&self) -> &[String] {
        &self.urls
    }

    /// The same instances with a new list, keeping the turn counter.
    pub fn replaced(&self, urls: Vec<String>) -> Self {
        Self {
            turn: Arc::clone(&self.turn),
            ..Self::new(urls)
        }
    }
}

/// One upstream version of a route.
#[derive(Debug, Clone)]
pub struct Version {
    /// Its name (`stable`, `candidate`).
    pub name: String,
    /// The upstream instances' OpenAI base URLs, with `/v1`, no trailing slash; requests
    /// take them in turn.
    pub upstreams: Upstreams,
    /// The model name sent upstream.
    pub model: String,
    /// The upstream API key.
    pub api_key: Option<sluice_core::Secret>,
    /// A system message put first in chat requests.
    pub system_prompt: Option<String>,
    /// Default request parameters, applied where the client set none.
    pub params: Map<String, Value>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// What its answers are scanned for (counted as safety violations) and what is done with
    /// those that hold one.
    pub safety: std::sync::Arc<sluice_safety::Scanner>,
    /// Its metrics, found on its first request and kept with the routing snapshot.
    pub metrics: crate::metrics::MetricsHandle,
    /// What its tokens cost, when known (its own `price`, the config's `prices` or the
    /// built-in list for its model).
    pub price: Option<sluice_llm::prices::Price>,
}

/// Where a sticky key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// No stickiness: each request draws anew.
    None,
    /// The request body's `user` field.
    User,
    /// A request header (lower case).
    Header(String),
}

/// A sticky key that is neither `user` nor `header:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `user` or `header:NAME`, found `{0}`")]
pub struct BadStickyKey(pub String);

impl StickyKey {
    /// Reads `user` or `header:NAME`.
    pub fn parse(text: &str) -> Result<Self, BadStickyKey> {
        match text {
            "user" => Ok(StickyKey::User),
            _ => match text.strip_prefix("header:") {
                Some(header) if !header.is_empty() => {
                    Ok(StickyKey::Header(header.to_ascii_lowercase()))
                }
                _ => Err(BadStickyKey(text.to_owned())),
            },
        }
    }
}

/// A feature-flag segment: requests that match go to `version`.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// A header with an exact value.
    Header {
        /// Header name, lower case.
        name: String,
        /// The value to match.
        value: String,
        /// The version.
        version: String,
    },
    /// A set of `user` values.
    Users {
        /// The users.
        users: BTreeSet<String>,
        /// The version.
        version: String,
    },
}

impl Segment {
    /// The version the segment sends its requests to.
    pub fn version(&self) -> &str {
        match self {
            Segment::Header { version, .. } | Segment::Users { version, .. } => version,
        }
    }
}

/// A route: versions and how traffic is split between them.
#[derive(Debug, Clone)]
pub struct Route {
    /// Versions in config order.
    pub versions: Vec<Version>,
    /// Weight of each version, in percent, same order; they sum to 100.
    pub weights: Vec<f64>,
    /// The sticky key.
    pub sticky: StickyKey,
    /// Salt of the bucket hash.
    pub salt: String,
    /// Honour the `x-sluice-version` header (from requests that carry `override_token`).
    pub overrides: bool,
    /// The credential a request must carry in `x-sluice-override-token` for its
    /// `x-sluice-version` to count (none: overrides are off).
    pub override_token: Option<Arc<sluice_core::Secret>>,
    /// Feature-flag segments, first match wins.
    pub segments: Vec<Segment>,
    /// Mirroring of sampled requests to a shadow version.
    pub shadow: Option<Shadow>,
    /// The rollout steering this route, when one is (runtime state, never from the file): a
    /// reload leaves an owned route as it is.
    pub owner: Option<String>,
}

/// Shadow mirroring: a sampled copy of requests goes to `version`; its answer is compared with
/// the primary's and never returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// The shadow version's name.
    pub version: String,
    /// Share of requests mirrored, in percent.
    pub percent: f64,
    /// An embedding model served by the shadow version's upstream: when set, the two answers
    /// are also compared by the cosine of their embeddings.
    pub embedding_model: Option<String>,
}

/// Why weights cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    /// A name that is not a version.
    #[error("unknown version `{0}`")]
    UnknownVersion(String),
    /// Negative, not finite, or not summing to 100.
    #[error("weights must be between 0 and 100 and sum to 100, found a sum of {0}")]
    BadSum(f64),
}

/// How a version was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The `x-sluice-version` header.
    Override,
    /// A segment matched.
    Segment,
    /// The sticky key's bucket.
    Sticky,
    /// A random draw.
    Random,
}

impl Reason {
    /// The reason's name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Override => "override",
            Reason::Segment => "segment",
            Reason::Sticky => "sticky",
            Reason::Random => "random",
        }
    }
}

/// Looks up a request header by lower-case name.
pub type HeaderLookup<'a> = &'a (dyn Fn(&str) -> Option<&'a str> + Sync);

/// What routing needs to know about a request.
#[derive(Default, Clone, Copy)]
pub struct RequestKeys<'a> {
    /// The `x-sluice-version` header.
    pub override_version: Option<&'a str>,
    /// The body's `user` field.
    pub user: Option<&'a str>,
    /// Looks up a request header by lower-case name.
    pub header: Option<HeaderLookup<'a>>,
}

impl Route {
    /// Builds a route; `weights` are by version name, missing ones count as 0.
    pub fn new(
        versions: Vec<Version>,
        weights: &BTreeMap<String, f64>,
        sticky: StickyKey,
        salt: String,
        overrides: bool,
        segments: Vec<Segment>,
    ) -> Result<Self, WeightError> {
        let mut route = Route {
            weights: vec![0.0; versions.len()],
            versions,
            sticky,
            salt,
            overrides,
            override_token: None,
            segments,
            shadow: None,
            owner: None,
        };
        route.set_weights(weights)?;
        Ok(route)
    }

    /// A copy with new weights (by version name; missing ones become 0).
    pub fn with_weights(&self, weights: &BTreeMap<String, f64>) -> Result<Self, WeightError> {
        let mut route = self.clone();
        route.set_weights(weights)?;
        Ok(route)
    }

    fn set_weights(&mut self, weights: &BTreeMap<String, f64>) -> Result<(), WeightError> {
        for name in weights.keys() {
            if self.index(name).is_none() {
                return Err(WeightError::UnknownVersion(name.clone()));
            }
        }
        let values: Vec<f64> = self
            .versions
            .iter()
            .map(|v| weights.get(&v.name).copied().unwrap_or(0.0))
            .collect();
        let sum: f64 = values.iter().sum();
        if values.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || (sum - 100.0).abs() > 1e-6 {
            return Err(WeightError::BadSum(sum));
        }
        self.weights = values;
        Ok(())
    }

    /// A version's index by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.versions.iter().position(|v| v.name == name)
    }

    /// A version's weight by name.
    pub fn weight(&self, name: &str) -> Option<f64> {
        self.index(name).map(|i| self.weights[i])
    }

    /// The bucket of a sticky key, in [0, 1).
    pub fn bucket(&self, key: &str) -> f64 {
        let mut hasher = Sha256::new();
        hasher.update(self.salt.as_bytes());
        hasher.update(key.as_bytes());
        let digest = hasher.finalize();
        let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        f64::from(head) / 4_294_967_296.0
    }

    /// The version whose cumulative-weight interval holds `u` (in [0, 1)).
    fn by_bucket(&self, u: f64) -> usize {
        let target = u * 100.0;
        let mut cumulative = 0.0;
        let mut last_positive = 0;
        for (i, weight) in self.weights.iter().enumerate() {
            if *weight <= 0.0 {
                continue;
            }
            last_positive = i;
            cumulative += weight;
            if target < cumulative {
                return i;
            }
        }
        last_positive
    }

    /// Whether a request carrying `token` in `x-sluice-override-token` may choose its version
    /// with `x-sluice-version` (compared in constant time).
    pub fn override_allowed(&self, token: Option<&str>) -> bool {
        match (&self.override_token, token) {
            (Some(expected), Some(given)) if self.overrides => {
                crate::admin::token_matches(given, expected.expose())
            }
            _ => false,
        }
    }

    /// Chooses the version for one request; `random` is a uniform draw in [0, 1) used when
    /// nothing makes the choice sticky.
    pub fn pick(&self, keys: &RequestKeys<'_>, random: f64) -> (usize, Reason) {
        if self.overrides
            && let Some(i) = keys.override_version.and_then(|name| self.index(name))
        {
            return (i, Reason::Override);
        }
        for segment in &self.segments {
            let (matched, version) = match segment {
                Segment::Header {
                    name,
                    value,
                    version,
                } => (
                    keys.header
                        .and_then(|h| h(name))
                        .is_some_and(|v| v == value),
                    version,
                ),
                Segment::Users { users, version } => {
                    (keys.user.is_some_and(|u| users.contains(u)), version)
                }
            };
            if matched && let Some(i) = self.index(version) {
                return (i, Reason::Segment);
            }
        }
        let key = match &self.sticky {
            StickyKey::None => None,
            StickyKey::User => keys.user,
            StickyKey::Header(name) => keys.header.and_then(|h| h(name)),
        };
        match key {
            Some(key) => (self.by_bucket(self.bucket(key)), Reason::Sticky),
            None => (self.by_bucket(random), Reason::Random),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str) -> Version {
        Version {
            name: name.into(),
            upstreams: Upstreams::one("http://x/v1"),
            model: name.into(),
            api_key: None,
            system_prompt: None,
            params: Map::new(),
            timeouts: Timeouts::default(),
            safety: Default::default(),
            metrics: Default::default(),
            price: None,
        }
    }

    fn route(a: f64, b: f64) -> Route {
        Route::new(
            vec![version("stable"), version("candidate")],
            &BTreeMap::from([("stable".into(), a), ("candidate".into(), b)]),
            StickyKey::User,
            "chat".into(),
            true,
            vec![Segment::Header {
                name: "x-beta".into(),
                value: "1".into(),
                version: "candidate".into(),
            }],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_sticky_user_moves_only_when_its_bucket_is_crossed() {
        let before = route(90.0, 10.0);
        fn keys(user: &str) -> RequestKeys<'_> {
            RequestKeys {
                user: Some(user),
                ..RequestKeys::default()
            }
        }
        for i in 0..500 {
            let user = format!("user-{i}");
            let u = before.bucket(&user);
            let (was, _) = before.pick(&keys(&user), 0.0);
            assert_eq!(was, usize::from(u >= 0.9), "{user} {u}");
            let after = route(50.0, 50.0);
            let (now, reason) = after.pick(&keys(&user), 0.0);
            assert_eq!(reason, Reason::Sticky);
            // Stable's interval shrank from [0, 0.9) to [0, 0.5): only buckets in
            // [0.5, 0.9) move, and they move to the candidate.
            if (0.5..0.9).contains(&u) {
                assert_eq!((was, now), (0, 1));
            } else {
                assert_eq!(was, now);
            }
        }
    }

    #[test]
    fn overrides_and_segments_come_first() {
        let route = route(100.0, 0.0);
        let header = |name: &str| (name == "x-beta").then_some("1");
        let keys = RequestKeys {
            header: Some(&header),
            ..RequestKeys::default()
        };
        assert_eq!(route.pick(&keys, 0.1), (1, Reason::Segment));
        let keys = RequestKeys {
            override_version: Some("candidate"),
            ..RequestKeys::default()
        };
        assert_eq!(route.pick(&keys, 0.1), (1, Reason::Override));
        assert_eq!(
            route.pick(&RequestKeys::default(), 0.99),
            (0, Reason::Random)
        );
        assert!(
            route
                .with_weights(&BTreeMap::from([("x".into(), 100.0)]))
                .is_err()
        );
        assert!(
            route
                .with_weights(&BTreeMap::from([("stable".into(), 60.0)]))
                .is_err()
        );
    }
}
