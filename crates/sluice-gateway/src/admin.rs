//! The admin API, on its own listener (loopback by default), behind a bearer token when one is
//! configured: read routes and windows, set a route's weights atomically, add and remove
//! versions, read a key's bucket, reload the config file.
//!
//! A listener off loopback needs a token (the gateway refuses to start otherwise). Requests a
//! browser could send on another site's behalf are refused before anything else: a foreign
//! `Origin`, a non-loopback `Host` when no token is set (DNS rebinding), and `POST`/`PUT`
//! bodies not declared `application/json`.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/admin/routes` | every route with its versions and weights |
//! | PUT | `/admin/routes/{route}/weights` | `{"stable": 50, "candidate": 50}`; with `x-sluice-rollout: NAME`, rollout NAME steers the route from then on |
//! | POST | `/admin/routes/{route}/versions` | `{"name", "url", "model", "api_key_env"?}`, weight 0 |
//! | DELETE | `/admin/routes/{route}/versions/{name}` | only a version with weight 0 |
//! | PUT | `/admin/routes/{route}/shadow` | `{"version", "percent"}`; percent 0 stops mirroring |
//! | PUT | `/admin/routes/{route}/segments/{version}` | `{"segments": [{"header", "equals"} or {"users": […]}], "sticky_key"?}`: replaces the version's feature-flag segments |
//! | PUT | `/admin/routes/{route}/versions/{name}/upstreams` | `{"urls": […]}`: the version's instances |
//! | GET | `/admin/routes/{route}/bucket?key=K` | the sticky bucket of `K` and its version |
//! | GET | `/admin/windows?seconds=60` | per-version live windows (`&histogram=1`: with latency bins) |
//! | DELETE | `/admin/routes/{route}/owner?rollout=NAME` | end rollout NAME's hold on the route |
//! | POST | `/admin/reload` | re-read the config file and apply what changed, route by route (routes a rollout steers are held) |
//! | GET | `/metrics` | Prometheus text |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_config::ProcessEnv;
use sluice_core::EndpointSpec;

use crate::GatewayHandle;
use crate::api_error::ApiError;
use crate::control::{
    RouteView, RoutesView, SegmentsChange, ShadowChange, UpstreamsChange, WindowsView,
};
use crate::proxy::{GatewayBody, full, json_response, read_body};
use crate::route::{Timeouts, Upstreams, Version};

/// Compares two secrets in constant time over their SHA-256 digests (so neither the content
/// nor the length leaks through timing).
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    name: String,
    url: String,
    model: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    system_prompt: Option<String>,
}

fn query(request: &Request<Incoming>, key: &str) -> Option<String> {
    request.uri().query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.replace("%20", " ").replace('+', " "))
        })
    })
}

fn bad(message: impl ToString) -> Response<GatewayBody> {
    ApiError::InvalidRequest(message.to_string()).into_response()
}

/// Whether `host` (a `Host` header or an origin's host, with or without a port) names this
/// machine's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses what a web page on another site could make a browser send here (see the README's
/// "Admin API" rules): a request with a foreign `Origin`; without a token, a request whose
/// `Host` is not a loopback name (DNS rebinding); and a `POST`/`PUT` whose body is not declared
/// `application/json` (a form or `text/plain` needs no CORS preflight, JSON does).
fn cross_site(request: &Request<Incoming>, token_set: bool) -> Option<Response<GatewayBody>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
    };
    let host = header("host").unwrap_or("");
    if let Some(origin) = header("origin") {
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Some(
                ApiError::Forbidden(format!(
                    "cross-site requests are refused (origin `{origin}`, host `{host}`)"
                ))
                .into_response(),
            );
        }
    }
    if !token_set && !is_loopback_host(host) {
        return Some(ApiError::Forbidden(format!(
                "without an admin token the admin API answers only loopback host names, not `{host}`"
            )).into_response());
    }
    if matches!(*request.method(), Method::POST | Method::PUT) {
        let json = header("content-type").is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Some(
                ApiError::UnsupportedMediaType(
                    "the admin API takes `content-type: application/json` on POST and PUT".into(),
                )
                .into_response(),
            );
        }
    }
    None
}

/// Dispatches one admin request.
pub(crate) async fn handle(
    handle: GatewayHandle,
    token: Option<Arc<sluice_core::Secret>>,
    request: Request<Incoming>,
) -> Response<GatewayBody> {
    if let Some(refusal) = cross_site(&request, token.is_some()) {
        return refusal;
    }
    if let Some(token) = &token {
        let given = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token_matches(given, token.expose()) {
            return ApiError::Unauthenticated(
                "the admin API needs `authorization: Bearer <token>`".into(),
            )
            .into_response();
        }
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let shared = &handle.shared;
    match (&method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(shared.prometheus().await),
        ),
        (&Method::GET, ["admin", "routes"]) => {
            let snapshot = shared.snapshot.load();
            let view = RoutesView {
                routes: snapshot
                    .routes
                    .iter()
                    .map(|(name, route)| (name.clone(), RouteView::of(route)))
                    .collect(),
            };
            json_response(StatusCode::OK, &view)
        }
        (&Method::GET, ["admin", "windows"]) => {
            let seconds = query(&request, "seconds")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(60);
            let histogram = query(&request, "histogram").is_some_and(|v| v == "1" || v == "true");
            let view = WindowsView {
                windows: handle
                    .windows(Duration::from_secs(seconds), histogram)
                    .await,
            };
            json_response(StatusCode::OK, &view)
        }
        (&Method::POST, ["admin", "reload"]) => match handle.reload() {
            Ok(report) => {
                json_response(StatusCode::OK, &json!({"reloaded": true, "routes": report}))
            }
            Err(message) => bad(message),
        },
        (&Method::GET, ["admin", "routes", route, "bucket"]) => {
            let Some(key) = query(&request, "key") else {
                return bad("`key` is required: /admin/routes/ROUTE/bucket?key=K");
            };
            let snapshot = shared.snapshot.load();
            match snapshot.routes.get(*route) {
                Some(r) => {
                    let keys = crate::route::RequestKeys {
                        user: Some(&key),
                        ..Default::default()
                    };
                    let bucket = r.bucket(&key);
                    let sticky = crate::route::Route {
                        sticky: crate::route::StickyKey::User,
                        segments: Vec::new(),
                        ..(**r).clone()
                    };
                    let (index, _) = sticky.pick(&keys, 0.0);
                    json_response(
                        StatusCode::OK,
                        &json!({"key": key, "bucket": bucket, "version": r.versions[index].name}),
                    )
                }
                None => unknown_route(route),
            }
        }
        (&Method::DELETE, ["admin", "routes", route, "owner"]) => {
            let Some(rollout) = query(&request, "rollout") else {
                return bad("`rollout` is required: /admin/routes/ROUTE/owner?rollout=NAME");
            };
            match handle.release(route, &rollout) {
                Ok(()) => json_response(
                    StatusCode::OK,
                    &json!({"route": route, "released": rollout}),
                ),
                Err(message) => bad(message),
            }
        }
        (&Method::PUT, ["admin", "routes", route, "weights"]) => {
            // A rollout names itself: it then steers the route, and reloads leave it alone.
            let owner = request
                .headers()
                .get("x-sluice-rollout")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = match read_body(
                request,
                64 * 1024,
                handle.shared.limits.server.body_read_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(response) => return *response,
            };
            let weights: BTreeMap<String, f64> = match serde_json::from_slice(&body) {
                Ok(weights) => weights,
                Err(e) => {
                    return bad(format!(
                        "expected weights as {{\"version\": percent, …}}: {e}"
                    ));
                }
            };
            match handle.set_weights_as(route, &weights, owner.as_deref()) {
                Ok(()) => {
                    json_response(StatusCode::OK, &json!({"route": route, "weights": weights}))
                }
                Err(message) => bad(message),
            }
        }
        (&Method::POST, ["admin", "routes", route, "versions"]) => {
            let body = match read_body(
                request,
                64 * 1024,
                handle.shared.limits.server.body_read_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(response) => return *response,
            };
            let new: NewVersion = match serde_json::from_slice(&body) {
                Ok(new) => new,
                Err(e) => {
                    return bad(format!(
                        "expected {{\"name\", \"url\", \"model\", \"api_key_env\"?}}: {e}"
                    ));
                }
            };
            let api_key = match &new.api_key_env {
                Some(var) => match sluice_config::EnvSource::var(&ProcessEnv, var) {
                    Some(key) => Some(key.into()),
                    None => return bad(format!("the environment variable `{var}` is not set")),
                },
                None => None,
            };
            if let Err(e) = EndpointSpec::check_base_url(&new.url) {
                return bad(format!("`url`: {e}"));
            }
            let version = Version {
                price: sluice_llm::prices::builtin(&new.model),
                name: new.name,
                upstreams: Upstreams::one(&new.url),
                model: new.model,
                api_key,
                system_prompt: new.system_prompt,
                params: serde_json::Map::new(),
                timeouts: Timeouts::default(),
                safety: std::sync::Arc::new(sluice_safety::Scanner::all()),
                metrics: Default::default(),
            };
            match handle.add_version(route, version) {
                Ok(()) => json_response(StatusCode::CREATED, &json!({"added": true})),
                Err(message) => bad(message),
            }
        }
        (&Method::PUT, ["admin", "routes", route, "shadow"]) => {
            let body = match read_body(
                request,
                64 * 1024,
                handle.shared.limits.server.body_read_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(response) => return *response,
            };
            let shadow: ShadowChange = match serde_json::from_slice(&body) {
                Ok(shadow) => shadow,
                Err(e) => return bad(format!("expected {{\"version\", \"percent\"}}: {e}")),
            };
            match handle.set_shadow(route, &shadow.version, shadow.percent) {
                Ok(()) => json_response(
                    StatusCode::OK,
                    &json!({"route": route, "shadow": {"version": shadow.version, "percent": shadow.percent}}),
                ),
                Err(message) => bad(message),
            }
        }
        (&Method::PUT, ["admin", "routes", route, "segments", version]) => {
            let body = match read_body(
                request,
                1024 * 1024,
                handle.shared.limits.server.body_read_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(response) => return *response,
            };
            let change: SegmentsChange = match serde_json::from_slice(&body) {
                Ok(new) => new,
                Err(e) => {
                    return bad(format!(
                        "expected {{\"segments\": [{{\"header\", \"equals\"}} or {{\"users\": […]}}], \"sticky_key\"?}}: {e}"
                    ));
                }
            };
            match handle.apply_segments(route, version, &change) {
                Ok(()) => {
                    json_response(StatusCode::OK, &json!({"route": route, "version": version}))
                }
                Err(message) => bad(message),
            }
        }
        (&Method::PUT, ["admin", "routes", route, "versions", name, "upstreams"]) => {
            let body = match read_body(
                request,
                1024 * 1024,
                handle.shared.limits.server.body_read_timeout,
            )
            .await
            {
                Ok(body) => body,
                Err(response) => return *response,
            };
            let new: UpstreamsChange = match serde_json::from_slice(&body) {
                Ok(new) => new,
                Err(e) => return bad(format!("expected {{\"urls\": [\"http://…/v1\", …]}}: {e}")),
            };
            match handle.set_upstreams(route, name, new.urls.clone()) {
                Ok(()) => json_response(
                    StatusCode::OK,
                    &json!({"route": route, "version": name, "urls": new.urls}),
                ),
                Err(message) => bad(message),
            }
        }
        (&Method::DELETE, ["admin", "routes", route, "versions", name]) => {
            match handle.remove_version(route, name) {
                Ok(()) => json_response(StatusCode::OK, &json!({"removed": name})),
                Err(message) => bad(message),
            }
        }
        _ => ApiError::NotFound(format!("no such admin endpoint: {method} {path}")).into_response(),
    }
}

fn unknown_route(route: &str) -> Response<GatewayBody> {
    ApiError::NotFound(format!("no route `{route}`")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_digest() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret ", "s3cret"));
        assert!(!token_matches("", "s3cret"));
    }
}
