//! Acting from the control plane (`POST`): a rollout's promote, pause, resume and abort go to
//! its controller through the store, as `sluice rollout promote` sends them. The API takes
//! `Authorization: Bearer TOKEN`; the dashboard takes a form from a logged-in session with its
//! CSRF token, and refuses a request another site sent (its `Origin` or `Sec-Fetch-Site`
//! says so). The login form itself refuses cross-site posts too. Without an admin token,
//! nothing can be changed.

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use sluice_core::RunKind;
use sluice_http::ResponseBody;
use sluice_rollout::event::Command;

use crate::admin::{Admin, COOKIE, SESSION_LIFETIME};
use crate::api::{Api, ApiError, error_body, json_response, page_response, segments};

/// What can be done to a running rollout, and (`undo`) to the last run of a finished one.
const VERBS: [&str; 6] = [
    "promote",
    "promote-full",
    "pause",
    "resume",
    "abort",
    "undo",
];

/// The largest form or request body taken.
const MAX_BODY: usize = 16 * 1024;
/// How long a body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

fn forbidden(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        kind: "forbidden",
        message: message.to_owned(),
    }
}

/// Whether another site sent this request: an `Origin` that is not this server's, or
/// `Sec-Fetch-Site: cross-site`.
fn cross_site(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    match (header("origin"), header("host")) {
        (None, _) => false,
        (Some(origin), Some(host)) => {
            origin != format!("http://{host}") && origin != format!("https://{host}")
        }
        (Some(_), None) => true,
    }
}

/// Where to go after logging in: a path on this server only.
fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn redirect(to: &str, cookie: Option<String>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

fn html_error(error: &ApiError) -> Response<ResponseBody> {
    page_response(
        error.status,
        "text/html; charset=utf-8",
        crate::html::error(error.status.as_u16(), &error.message),
        false,
    )
}

/// Whether `path` is one that takes `POST` (and only that).
pub(crate) fn action_path(path: &str) -> bool {
    let segments = segments(path);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["api", "v1", "rollouts", _, verb] | ["rollouts", _, verb] => VERBS.contains(verb),
        ["login"] | ["logout"] => true,
        _ => false,
    }
}

impl Api {
    /// Answers a `POST`.
    pub(crate) async fn post(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let path = request.uri().path().to_owned();
        let api = path.starts_with("/api/");
        let acts = action_path(&path);
        let unknown_action = {
            let segments = segments(&path);
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            matches!(
                segments.as_slice(),
                ["api", "v1", "rollouts", _, verb] | ["rollouts", _, verb] if *verb != "stream"
            )
        };
        if !acts && unknown_action {
            let error = ApiError::not_found(format!(
                "no such action at {path}: expected one of {}",
                VERBS.join(", ")
            ));
            return if api {
                json_response(error.status, &error_body(&error), false)
            } else {
                html_error(&error)
            };
        }
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !acts {
            let error = ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                kind: "method_not_allowed",
                message: format!("POST is not allowed on {path}"),
            };
            let mut response = if api {
                json_response(error.status, &error_body(&error), false)
            } else {
                html_error(&error)
            };
            response
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let unauthorized = || {
            let error = ApiError {
                status: StatusCode::UNAUTHORIZED,
                kind: "unauthorized",
                message: "expected `Authorization: Bearer` with the admin token".to_owned(),
            };
            let mut response = json_response(error.status, &error_body(&error), false);
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        };
        if api && authorization.is_none() {
            return unauthorized();
        }
        let Some(admin) = self.admin.clone() else {
            let error = forbidden(
                "actions are off: start `sluice serve` with --admin-token-env to allow them",
            );
            return if api {
                json_response(error.status, &error_body(&error), false)
            } else {
                html_error(&error)
            };
        };
        let (parts, body) = request.into_parts();
        let segments = segments(&path);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        if api {
            if !admin.bearer(authorization.as_deref()) {
                return unauthorized();
            }
            return match segments.as_slice() {
                ["api", "v1", "rollouts", id, verb] => match self.act(id, verb).await {
                    Ok(message) => json_response(
                        StatusCode::OK,
                        &json!({"sent": verb, "run": id, "message": message}),
                        false,
                    ),
                    Err(error) => json_response(error.status, &error_body(&error), false),
                },
                _ => {
                    let error = ApiError::not_found(format!("nothing to do at {path}"));
                    json_response(error.status, &error_body(&error), false)
                }
            };
        }
        if cross_site(&parts.headers) {
            return html_error(&forbidden("refused: the request came from another site"));
        }
        let form: Vec<(String, String)> =
            match sluice_http::read_body(body, MAX_BODY, BODY_TIMEOUT).await {
                Ok(bytes) => form_urlencoded::parse(&bytes).into_owned().collect(),
                Err(error) => return html_error(&ApiError::bad_request(error.to_string())),
            };
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let cookie = parts
            .headers
            .get(hyper::header::COOKIE)
            .and_then(|v| v.to_str().ok());
        if segments.as_slice() == ["login"] {
            return self.login(&admin, field("token"), field("next"));
        }
        // Everything else needs the session and its CSRF token.
        let session = admin.session(cookie);
        if session.is_none() || session.as_deref() != field("csrf") {
            return html_error(&forbidden(
                "refused: log in first (or the form was stale: reload the page)",
            ));
        }
        match segments.as_slice() {
            ["logout"] => {
                admin.close(cookie);
                redirect(
                    "/",
                    Some(format!(
                        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
                    )),
                )
            }
            ["rollouts", id, verb] => match self.act(id, verb).await {
                Ok(_) => redirect(&format!("/rollouts/{id}"), None),
                Err(error) => html_error(&error),
            },
            _ => html_error(&ApiError::not_found(format!("nothing to do at {path}"))),
        }
    }

    fn login(
        &self,
        admin: &Admin,
        token: Option<&str>,
        next: Option<&str>,
    ) -> Response<ResponseBody> {
        let next = local_path(next.unwrap_or("/"));
        if !token.is_some_and(|t| admin.accepts(t)) {
            return page_response(
                StatusCode::UNAUTHORIZED,
                "text/html; charset=utf-8",
                crate::html::login(next, Some("That is not the admin token.")),
                false,
            );
        }
        let Some((session, _)) = admin.open() else {
            return html_error(&ApiError::store("no secure random numbers for a session"));
        };
        redirect(
            next,
            Some(format!(
                "{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                SESSION_LIFETIME.as_secs()
            )),
        )
    }

    /// Sends all of a finished rollout's route back to its stable version (or what its
    /// promote alias pointed at before), as `sluice rollout undo` does: only its last run, with
    /// the gateway's admin token from this process's environment when its spec names one.
    async fn undo(&self, id: &str) -> Result<String, ApiError> {
        let conflict = |message: String| ApiError {
            status: StatusCode::CONFLICT,
            kind: "conflict",
            message,
        };
        let run = self.get_run(id).await?;
        if run.kind != RunKind::Rollout {
            return Err(ApiError::not_found(format!("no rollout run `{id}`")));
        }
        if run.status == sluice_store::RunStatus::Running {
            return Err(conflict(format!(
                "rollout run `{id}` is still running: abort rolls it back"
            )));
        }
        let latest = sluice_rollout::controller::latest(&self.store, &run.name)
            .await
            .map_err(ApiError::store)?;
        if latest.as_ref().is_some_and(|l| l.id != run.id) {
            return Err(conflict(format!(
                "run `{id}` is not the last run of rollout `{}`: only the last one is undone",
                run.name
            )));
        }
        let token = match sluice_rollout::controller::stored_spec(&self.store, &run.name).await {
            Ok((spec, _)) => spec.admin_token,
            Err(_) => None,
        };
        let version = sluice_rollout::undo::undo(
            &self.store,
            &run.name,
            None,
            token.as_ref().map(sluice_core::Secret::expose),
        )
        .await
        .map_err(|e| conflict(e.to_string()))?;
        Ok(format!("{} undone: route back on {version}", run.name))
    }

    /// Sends `verb` to the controller of rollout run `id`.
    async fn act(&self, id: &str, verb: &str) -> Result<String, ApiError> {
        if verb == "undo" {
            return self.undo(id).await;
        }
        let command = match verb {
            "promote" => Command::Promote { full: false },
            "promote-full" => Command::Promote { full: true },
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "abort" => Command::Abort {
                reason: Some("aborted from the control plane".to_owned()),
            },
            other => {
                return Err(ApiError::not_found(format!(
                    "unknown action `{other}`: expected promote, promote-full, pause, resume, abort or undo"
                )));
            }
        };
        let run = self.get_run(id).await?;
        if run.kind != RunKind::Rollout {
            return Err(ApiError::not_found(format!("no rollout run `{id}`")));
        }
        if run.status != sluice_store::RunStatus::Running {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                kind: "not_running",
                message: format!(
                    "rollout run `{id}` is {}: there is nothing to {verb}",
                    run.status.as_str()
                ),
            });
        }
        sluice_rollout::controller::command(&self.store, &run.name, command)
            .await
            .map_err(|e| ApiError {
                status: StatusCode::CONFLICT,
                kind: "not_running",
                message: e.to_string(),
            })?;
        Ok(format!("{verb} sent to {}", run.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_and_same_site_requests_pass() {
        assert_eq!(local_path("/rollouts/r-1"), "/rollouts/r-1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "\\\\evil",
            "/\\evil",
        ] {
            assert_eq!(local_path(bad), "/", "{bad}");
        }
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8090"));
        assert!(!cross_site(&headers));
        headers.insert("origin", HeaderValue::from_static("http://127.0.0.1:8090"));
        assert!(!cross_site(&headers));
        headers.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(cross_site(&headers));
        headers.remove("origin");
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&headers));
    }
}
