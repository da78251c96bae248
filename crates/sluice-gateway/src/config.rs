//! The gateway's YAML config, checked as a whole and compiled into a routing [`Snapshot`].
//!
//! ```yaml
//! routes:
//!   chat:                                  # the model name clients send
//!     versions:
//!       - {name: stable, url: "http://127.0.0.1:9001/v1", model: stable}
//!       - {name: candidate, url: "http://127.0.0.1:9002/v1", model: candidate, api_key_env: CANDIDATE_KEY}
//!       # answers are counted as safety violations when they hold secrets or personal data
//!       # (both on by default) or a canary planted in the system prompt:
//!       # safety: {secrets: true, pii: false, canary: SLUICE-CANARY-5f1c…, action: redact}
//!       # action: log (count only, the default) | redact (replace each finding with its
//!       # label, streams too) | block (withhold the answer: finish_reason content_filter)
//!       # (`input: true`, the default, also counts prompt-injection attempts users send;
//!       # `block_input: true` refuses those requests with 400 content_filter; answers that
//!       # decline are counted as refusals, `refusals: false` turns that off)
//!       # several instances of one version, taken in turn:
//!       # - {name: pool, urls: ["http://127.0.0.1:9101/v1", "http://127.0.0.1:9102/v1"], model: m}
//!     split:
//!       weights: {stable: 90, candidate: 10}
//!       sticky_key: user                   # or "header:x-user-id"
//!       salt: chat-2026-11                 # default: the route name
//!       overrides: true                    # honour `x-sluice-version` (default false) from
//!       override_token_env: SLUICE_OVERRIDE_TOKEN  # requests whose `x-sluice-override-token`
//!                                          # is this token (default: the admin token)
//!       segments:
//!         - {header: x-beta, equals: "1", version: candidate}
//!         - {users: [alice, bob], version: candidate}
//!     shadow: {version: candidate, percent: 20}   # mirror 20 % of requests (default 100);
//!                                          # `embedding_model: M` adds an embedding cosine
//! limits:                               # what clients may send (defaults shown)
//!   max_body_bytes: 4194304
//!   header_read_timeout_ms: 10000          # headers must arrive within this
//!   body_read_timeout_ms: 30000            # the body must arrive within this (else 408)
//!   max_connections: 10000                 # or half the open-file limit; more get 503
//!   max_connections_per_ip: 100            # no cap unless set; more get 429
//! admin: {token_env: SLUICE_ADMIN_TOKEN}
//! drain_timeout_ms: 30000
//! shadow_queue: 1000                     # shadow copies waiting, at most; more are dropped
//! prices:                                # USD per million tokens, by upstream model: these
//!   llama-3-70b: {input: 0.59, output: 0.79}  # and the built-in list prices of OpenAI's
//!                                        # models give each request its cost (a version
//!                                        # may set its own `price: {input, output}`)
//! telemetry:                             # a span per request over OTLP (read at start)
//!   otlp:
//!     endpoint: http://127.0.0.1:4318      # the collector (gRPC: usually port 4317)
//!     protocol: http/protobuf              # or grpc
//!     headers: {x-api-key: "${OTLP_KEY}"}
//!     service_name: sluice-gateway
//!     timeout_ms: 10000
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_config::{Diagnostic, Diagnostics, Document, EnvSource, FieldPath};
use sluice_core::EndpointSpec;
use sluice_http::ServerLimits;

use crate::route::{Route, Snapshot, StickyKey, Timeouts, Upstreams, Version};

/// The config file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    routes: BTreeMap<String, RawRoute>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    drain_timeout_ms: Option<u64>,
    #[serde(default)]
    shadow_queue: Option<usize>,
    #[serde(default)]
    telemetry: Option<RawTelemetry>,
    #[serde(default)]
    prices: BTreeMap<String, sluice_llm::prices::Price>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    #[serde(default)]
    otlp: Option<RawOtlp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    versions: Vec<RawVersion>,
    #[serde(default)]
    split: Option<RawSplit>,
    #[serde(default)]
    shadow: Option<RawShadow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadow {
    version: String,
    #[serde(default)]
    percent: Option<f64>,
    #[serde(default)]
    embedding_model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    urls: Option<Vec<String>>,
    model: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default)]
    params: Option<Map<String, Value>>,
    #[serde(default)]
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    safety: Option<RawSafety>,
    #[serde(default)]
    price: Option<sluice_llm::prices::Price>,
}

/// `safety: {secrets: true, pii: true, canary: TOKEN, input: true, action: log, block_input:
/// false}`: what a version's answers are checked for (secrets and personal data by default),
/// what happens to an answer with a violation, and whether what users send is checked for
/// injection attempts (and refused).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    #[serde(default)]
    secrets: Option<bool>,
    #[serde(default)]
    pii: Option<bool>,
    #[serde(default)]
    canary: Option<String>,
    #[serde(default)]
    input: Option<bool>,
    #[serde(default)]
    action: Option<sluice_safety::scanner::Action>,
    #[serde(default)]
    block_input: Option<bool>,
    #[serde(default)]
    refusals: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect_ms: Option<u64>,
    ttft_ms: Option<u64>,
    total_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSplit {
    #[serde(default)]
    weights: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    sticky_key: Option<String>,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    overrides: Option<bool>,
    #[serde(default)]
    override_token_env: Option<String>,
    #[serde(default)]
    segments: Vec<crate::control::SegmentRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_env: Option<String>,
}

/// Server-wide settings (not hot-reloadable: they shape the listeners).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Timeouts, connection limits and the drain deadline of both listeners.
    pub server: ServerLimits,
    /// Shadow copies waiting to be sent, at most; more are dropped and counted.
    pub shadow_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            server: ServerLimits::default(),
            shadow_queue: 1000,
        }
    }
}

/// A checked config.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Routes and versions.
    pub snapshot: Snapshot,
    /// Listener limits.
    pub limits: Limits,
    /// The admin bearer token, read from the named environment variable.
    pub admin_token: Option<sluice_core::Secret>,
    /// Each route as written (after `${VAR}` interpolation): a reload changes only the routes
    /// whose definition differs from the last file's.
    pub sources: BTreeMap<String, sluice_config::Node>,
    /// Where spans are exported, if anywhere (read at start, not on reload).
    pub otlp: Option<crate::otlp::OtlpConfig>,
}

impl GatewayConfig {
    /// Reads and checks a config file, reporting every problem at once.
    pub fn load(path: &Path, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        let document = Document::read(path, env)?;
        Self::from_document(&document, env)
    }

    /// Checks a parsed document.
    pub fn from_document(document: &Document, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        let raw: RawConfig = document.deserialize()?;
        let mut errors = Vec::new();
        let mut routes = BTreeMap::new();
        let admin_token = match raw.admin.as_ref().and_then(|a| a.token_env.clone()) {
            Some(var) => match env.var(&var).filter(|v| !v.is_empty()) {
                Some(token) => Some(token.into()),
                None => {
                    errors.push(document.error_at(
                        &FieldPath::root().key("admin").key("token_env"),
                        format!("the environment variable `{var}` is not set"),
                    ));
                    None
                }
            },
            None => None,
        };
        if raw.routes.is_empty() {
            errors.push(document.error_at(
                &FieldPath::root().key("routes"),
                "expected at least one route",
            ));
        }
        for (model, price) in &raw.prices {
            if !price.is_valid() {
                errors.push(document.error_at(
                    &FieldPath::root().key("prices").key(model.clone()),
                    "expected prices in USD per million tokens, zero or more",
                ));
            }
        }
        for (name, raw_route) in raw.routes {
            let path = FieldPath::root().key("routes").key(name.clone());
            if let Some(route) = compile_route(
                document,
                env,
                &path,
                &name,
                raw_route,
                (admin_token.as_ref(), &raw.prices),
                &mut errors,
            ) {
                routes.insert(name, Arc::new(route));
            }
        }
        let limits_path = FieldPath::root().key("limits");
        let raw_limits = raw.limits.unwrap_or_default();
        let defaults = Limits::default();
        // A count that must be at least 1 when it is given.
        let mut positive = |value: Option<usize>, field: &str, message: &str| {
            if value == Some(0) {
                errors.push(document.error_at(&limits_path.key(field), message));
            }
            value
        };
        let max_body_bytes = positive(
            raw_limits.max_body_bytes,
            "max_body_bytes",
            "expected at least 1 byte",
        );
        let max_connections = positive(
            raw_limits.max_connections,
            "max_connections",
            "expected at least 1 connection",
        );
        let max_connections_per_ip = positive(
            raw_limits.max_connections_per_ip,
            "max_connections_per_ip",
            "expected at least 1 connection (leave it out for no cap)",
        );
        let limits = Limits {
            max_body_bytes: max_body_bytes.unwrap_or(defaults.max_body_bytes),
            server: ServerLimits {
                header_read_timeout: raw_limits
                    .header_read_timeout_ms
                    .map_or(defaults.server.header_read_timeout, Duration::from_millis),
                body_read_timeout: raw_limits
                    .body_read_timeout_ms
                    .map_or(defaults.server.body_read_timeout, Duration::from_millis),
                max_connections: max_connections.unwrap_or(defaults.server.max_connections),
                max_connections_per_ip,
                drain_timeout: raw
                    .drain_timeout_ms
                    .map_or(defaults.server.drain_timeout, Duration::from_millis),
            },
            shadow_queue: match raw.shadow_queue {
                Some(0) => {
                    errors.push(document.error_at(
                        &FieldPath::root().key("shadow_queue"),
                        "expected at least 1",
                    ));
                    0
                }
                Some(n) => n,
                None => defaults.shadow_queue,
            },
        };
        let otlp = raw
            .telemetry
            .and_then(|t| t.otlp)
            .and_then(|raw| compile_otlp(document, raw, &mut errors));
        if !errors.is_empty() {
            return Err(document.diagnostics(errors));
        }
        let sources = match document.root().get("routes").map(|r| &r.kind) {
            Some(sluice_config::NodeKind::Mapping(entries)) => entries
                .iter()
                .filter_map(|(key, value)| match &key.kind {
                    sluice_config::NodeKind::Scalar { value: name, .. } => {
                        Some((name.clone(), value.clone()))
                    }
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(Self {
            snapshot: Snapshot { routes },
            limits,
            admin_token,
            sources,
            otlp,
        })
    }
}

/// `telemetry.otlp`: the collector's URL, the protocol, headers and the export timeout.
fn compile_otlp(
    document: &Document,
    raw: RawOtlp,
    errors: &mut Vec<Diagnostic>,
) -> Option<crate::otlp::OtlpConfig> {
    use crate::otlp::{OtlpConfig, Protocol};
    let path = FieldPath::root().key("telemetry").key("otlp");
    let endpoint = raw.endpoint.trim().to_owned();
    let mut ok = true;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || endpoint.parse::<hyper::Uri>().is_err()
    {
        errors.push(document.error_at(
            &path.key("endpoint"),
            format!("`{endpoint}` is not an http:// or https:// URL of an OTLP collector"),
        ));
        ok = false;
    }
    let protocol = match raw.protocol.as_deref() {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            errors.push(document.error_at(
                &path.key("protocol"),
                format!(
                    "`{other}` is not an OTLP protocol Sluice sends: expected http/protobuf or grpc"
                ),
            ));
            ok = false;
            Protocol::HttpProtobuf
        }
    };
    for (name, value) in &raw.headers {
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || hyper::header::HeaderValue::from_str(value).is_err()
        {
            errors.push(document.error_at(
                &path.key("headers").key(name.clone()),
                "expected a valid HTTP header name and value",
            ));
            ok = false;
        }
    }
    if raw.timeout_ms == Some(0) {
        errors.push(document.error_at(&path.key("timeout_ms"), "expected at least 1 ms"));
        ok = false;
    }
    ok.then(|| OtlpConfig {
        endpoint,
        protocol,
        headers: raw.headers.into_iter().collect(),
        service_name: raw
            .service_name
            .unwrap_or_else(|| "sluice-gateway".to_owned()),
        timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(10_000)),
    })
}

fn compile_route(
    document: &Document,
    env: &dyn EnvSource,
    path: &FieldPath,
    name: &str,
    raw: RawRoute,
    (admin_token, prices): (
        Option<&sluice_core::Secret>,
        &BTreeMap<String, sluice_llm::prices::Price>,
    ),
    errors: &mut Vec<Diagnostic>,
) -> Option<Route> {
    let before = errors.len();
    let mut versions = Vec::with_capacity(raw.versions.len());
    let mut names = BTreeSet::new();
    if raw.versions.is_empty() {
        errors.push(document.error_at(&path.key("versions"), "expected at least one version"));
    }
    for (i, v) in raw.versions.into_iter().enumerate() {
        let vpath = path.key("versions").index(i);
        if !names.insert(v.name.clone()) {
            errors.push(document.error_at(
                &vpath.key("name"),
                format!("duplicate version name `{}`", v.name),
            ));
        }
        let (urls, upath) = match (v.url, v.urls) {
            (Some(url), None) => (vec![url], vpath.key("url")),
            (None, Some(urls)) if !urls.is_empty() => (urls, vpath.key("urls")),
            _ => {
                errors.push(document.error_at(
                    &vpath,
                    "expected `url` (one instance) or a non-empty `urls` list (instances taken in turn)",
                ));
                (Vec::new(), vpath.key("url"))
            }
        };
        for url in &urls {
            if let Err(e) = EndpointSpec::check_base_url(url) {
                errors.push(document.error_at(&upath, e.to_string()));
            }
        }
        let api_key = match &v.api_key_env {
            Some(var) => match env.var(var).filter(|k| !k.is_empty()) {
                Some(key) => Some(key.into()),
                None => {
                    errors.push(document.error_at(
                        &vpath.key("api_key_env"),
                        format!("the environment variable `{var}` is not set"),
                    ));
                    None
                }
            },
            None => None,
        };
        let raw_timeouts = v.timeouts.unwrap_or_default();
        let defaults = Timeouts::default();
        let safety = v.safety.unwrap_or_default();
        if v.price.is_some_and(|p| !p.is_valid()) {
            errors.push(document.error_at(
                &vpath.key("price"),
                "expected prices in USD per million tokens, zero or more",
            ));
        }
        let price = v.price.or_else(|| {
            sluice_llm::prices::find(prices.iter().map(|(m, p)| (m.as_str(), *p)), &v.model)
        });
        versions.push(Version {
            price,
            metrics: Default::default(),
            safety: Arc::new(sluice_safety::Scanner {
                secrets: safety.secrets.unwrap_or(true),
                pii: safety.pii.unwrap_or(true),
                canary: safety
                    .canary
                    .filter(|c| !c.is_empty())
                    .map(|c| sluice_safety::Canary::new(&c)),
                input: safety.input.unwrap_or(true) || safety.block_input == Some(true),
                action: safety.action.unwrap_or_default(),
                block_input: safety.block_input.unwrap_or(false),
                refusals: safety.refusals.unwrap_or(true),
            }),
            name: v.name,
            upstreams: Upstreams::new(urls),
            model: v.model,
            api_key,
            system_prompt: v.system_prompt,
            params: v.params.unwrap_or_default(),
            timeouts: Timeouts {
                connect: raw_timeouts
                    .connect_ms
                    .map_or(defaults.connect, Duration::from_millis),
                ttft: raw_timeouts
                    .ttft_ms
                    .map_or(defaults.ttft, Duration::from_millis),
                total: raw_timeouts
                    .total_ms
                    .map_or(defaults.total, Duration::from_millis),
            },
        });
    }
    let split = raw.split;
    let weights = match split.as_ref().and_then(|s| s.weights.clone()) {
        Some(weights) => {
            let wpath = path.key("split").key("weights");
            for (version, weight) in &weights {
                if !names.contains(version) {
                    errors.push(document.error_at(
                        &wpath.key(version.clone()),
                        format!(
                            "unknown version `{version}` (versions: {})",
                            names.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if !(weight.is_finite() && *weight >= 0.0) {
                    errors.push(document.error_at(
                        &wpath.key(version.clone()),
                        format!("expected a weight between 0 and 100, found {weight}"),
                    ));
                }
            }
            let sum: f64 = weights.values().sum();
            if (sum - 100.0).abs() > 1e-6 {
                errors.push(
                    document.error_at(&wpath, format!("weights must sum to 100, found {sum}")),
                );
            }
            weights
        }
        // Without weights everything goes to the first version.
        None => versions
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.clone(), if i == 0 { 100.0 } else { 0.0 }))
            .collect(),
    };
    let sticky = match split.as_ref().and_then(|s| s.sticky_key.as_deref()) {
        None => StickyKey::None,
        Some(text) => StickyKey::parse(text).unwrap_or_else(|e| {
            errors.push(document.error_at(&path.key("split").key("sticky_key"), e.to_string()));
            StickyKey::None
        }),
    };
    let mut segments = Vec::new();
    for (i, s) in split
        .as_ref()
        .map(|s| s.segments.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let spath = path.key("split").key("segments").index(i);
        let version = s.version.clone().unwrap_or_default();
        if !names.contains(&version) {
            errors.push(document.error_at(
                &spath.key("version"),
                if version.is_empty() {
                    "expected the `version` the segment's requests go to".to_owned()
                } else {
                    format!("unknown version `{version}`")
                },
            ));
        }
        match s.segment(&version) {
            Ok(segment) => segments.push(segment),
            Err(message) => errors.push(document.error_at(&spath, message)),
        }
    }
    let shadow = match raw.shadow {
        Some(shadow) => {
            let spath = path.key("shadow");
            if !names.contains(&shadow.version) {
                errors.push(document.error_at(
                    &spath.key("version"),
                    format!("unknown version `{}`", shadow.version),
                ));
            }
            let percent = shadow.percent.unwrap_or(100.0);
            if !(0.0..=100.0).contains(&percent) {
                errors.push(document.error_at(
                    &spath.key("percent"),
                    format!("expected a percentage between 0 and 100, found {percent}"),
                ));
            }
            Some(crate::route::Shadow {
                version: shadow.version,
                percent,
                embedding_model: shadow.embedding_model,
            })
        }
        None => None,
    };
    if errors.len() > before {
        return None;
    }
    let salt = split
        .as_ref()
        .and_then(|s| s.salt.clone())
        .unwrap_or_else(|| name.to_owned());
    let overrides = split.as_ref().and_then(|s| s.overrides).unwrap_or(false);
    let override_token = match split.as_ref().and_then(|s| s.override_token_env.as_ref()) {
        Some(var) => match env.var(var).filter(|v| !v.is_empty()) {
            Some(token) => Some(token.into()),
            None => {
                errors.push(document.error_at(
                    &path.key("split").key("override_token_env"),
                    format!("the environment variable `{var}` is not set"),
                ));
                return None;
            }
        },
        None => admin_token.cloned(),
    };
    if overrides && override_token.is_none() {
        errors.push(document.error_at(
            &path.key("split").key("overrides"),
            "`x-sluice-version` overrides need a credential: set `split.override_token_env` \
             (requests then send `x-sluice-override-token`) or `admin.token_env`",
        ));
        return None;
    }
    let mut route = Route::new(versions, &weights, sticky, salt, overrides, segments).ok()?;
    route.override_token = override_token.filter(|_| overrides).map(Arc::new);
    route.shadow = shadow;
    Some(route)
}

#[cfg(test)]
mod tests {
    use sluice_config::MapEnv;

    use super::*;

    fn compile(text: &str, env: &MapEnv) -> Result<GatewayConfig, Diagnostics> {
        let document = Document::parse("gateway.yaml", text, env)?;
        GatewayConfig::from_document(&document, env)
    }

    #[test]
    fn the_issue_example_compiles() {
        let env = MapEnv([("CANDIDATE_KEY".to_owned(), "sk-test".to_owned())].into());
        let config = compile(
            "routes:\n  chat:\n    versions:\n      - {name: stable, url: \"http://127.0.0.1:9001/v1\", model: stable}\n      - {name: candidate, url: \"http://127.0.0.1:9002/v1\", model: candidate, api_key_env: CANDIDATE_KEY}\n    split:\n      weights: {stable: 90, candidate: 10}\n      sticky_key: user\n",
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let route = &config.snapshot.routes["chat"];
        assert_eq!(
            route.versions[1].api_key.as_ref().map(|k| k.expose()),
            Some("sk-test")
        );
        assert!(
            !format!("{config:?}").contains("sk-test"),
            "Debug never shows a key"
        );
        assert_eq!(route.weight("candidate"), Some(10.0));
        assert_eq!(route.sticky, StickyKey::User);
    }

    #[test]
    fn every_problem_is_located() {
        let error = compile(
            "routes:\n  chat:\n    versions:\n      - {name: a, url: \"ftp://x\", model: a, api_key_env: NOPE}\n      - {name: a, url: \"http://x/v1\", model: b}\n    split:\n      weights: {a: 50, c: 40}\n      sticky_key: cookie\n",
            &MapEnv::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        for expected in [
            "gateway.yaml:4:24: routes.chat.versions[0].url: expected an http:// or https:// base URL",
            "routes.chat.versions[0].api_key_env: the environment variable `NOPE` is not set",
            "routes.chat.versions[1].name: duplicate version name `a`",
            "routes.chat.split.weights.c: unknown version `c` (versions: a)",
            "routes.chat.split.weights: weights must sum to 100, found 90",
            "routes.chat.split.sticky_key: expected `user` or `header:NAME`, found `cookie`",
        ] {
            assert!(
                error.contains(expected),
                "missing {expected:?} in:\n{error}"
            );
        }
    }
}
