//! The JSON API under `/api/v1/` and the dashboard's pages: every API answer is JSON (errors
//! too: `{"error": {"type", "message"}}` with 400, 401, 403, 404, 405, 409 or 500), lists are
//! newest first and bounded (`limit`, at most 1,000; results of one run are paged with
//! `offset`). Reading needs nothing; acting (`POST`, [`crate::actions`]) needs the admin token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use sluice_core::RunKind;
use sluice_http::ResponseBody;
use sluice_store::{RunFilter, RunId, RunStatus, Store};
use tokio::sync::watch;

/// The most items one list answer holds.
pub const MAX_LIMIT: u32 = 1_000;
/// Items in a list answer unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;

/// An answer that is not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The kind of error (`not_found`, `bad_request`, `method_not_allowed`, `store`,
    /// `internal`).
    pub kind: &'static str,
    /// What happened, for people.
    pub message: String,
}

impl ApiError {
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found",
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_request",
            message: message.into(),
        }
    }

    pub(crate) fn store(error: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "store",
            message: format!("the store could not answer: {error}"),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: message.into(),
        }
    }
}

/// How often a live stream looks for new events.
const STREAM_POLL: Duration = Duration::from_millis(250);
/// How often a live stream with nothing new sends a comment, so proxies keep it open.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);

/// The API over one store.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) store: Store,
    shutdown: watch::Receiver<bool>,
    /// Who may act; `None`: nobody.
    pub(crate) admin: Option<Arc<crate::admin::Admin>>,
    /// The routes the monitor's alert rules watch (their open alerts are on the overview).
    watched: Vec<String>,
    /// Where prompts are embedded for embedding drift, when the server was given one.
    pub(crate) embeddings: Option<Arc<crate::embedding::EmbeddingSource>>,
}

/// A request's query parameters.
struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| ApiError::bad_request(format!("`{key}`: `{text}` is not a number"))),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(text) => Err(ApiError::bad_request(format!(
                "`{key}`: expected true or false, not `{text}`"
            ))),
        }
    }

    fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.number("limit", DEFAULT_LIMIT)?;
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "`limit`: expected 1 to {MAX_LIMIT}"
            )));
        }
        Ok(limit)
    }
}

impl Api {
    /// The API over `store`; live streams end when `shutdown` turns true; actions need
    /// `admin`'s token (none without it).
    pub fn new(
        store: Store,
        shutdown: watch::Receiver<bool>,
        admin: Option<Arc<crate::admin::Admin>>,
        watched: Vec<String>,
    ) -> Self {
        Api {
            store,
            shutdown,
            admin,
            watched,
            embeddings: None,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        if request.method() == Method::POST {
            return self.post(request).await;
        }
        // An action's path takes POST only (the login form is also shown by GET).
        let path = request.uri().path();
        if crate::actions::action_path(path) && path != "/login" {
            let error = ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                kind: "method_not_allowed",
                message: format!(
                    "{} is not allowed on {path}: it takes POST",
                    request.method()
                ),
            };
            let mut response = json_response(error.status, &error_body(&error), false);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = Query::parse(request.uri().query());
        let head = method == Method::HEAD;
        let last_seen = request
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        if method == Method::GET
            && let Some((kind, id)) = stream_path(&path)
        {
            // `after` in the query does what `Last-Event-ID` does, for a page's first connect.
            let after = match (last_seen, query.number::<i64>("after", 0)) {
                (Some(seen), _) => seen,
                (None, Ok(after)) => after,
                (None, Err(error)) => {
                    return json_response(error.status, &error_body(&error), false);
                }
            };
            match self.stream(kind, id, after).await {
                Ok(response) => return response,
                Err(error) => return json_response(error.status, &error_body(&error), false),
            }
        }
        if (method == Method::GET || head) && !path.starts_with("/api/") && path != "/health" {
            let csrf = self.admin.as_ref().and_then(|admin| {
                admin.session(
                    request
                        .headers()
                        .get(hyper::header::COOKIE)
                        .and_then(|v| v.to_str().ok()),
                )
            });
            return self.page(&path, &query, head, csrf).await;
        }
        let answer = if method == Method::GET || head {
            self.route(&path, &query).await
        } else {
            Err(ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                kind: "method_not_allowed",
                message: format!("{method} is not allowed here: the API is read-only (GET)"),
            })
        };
        match answer {
            Ok(body) => json_response(StatusCode::OK, &body, head),
            Err(error) => json_response(error.status, &error_body(&error), head),
        }
    }

    /// A run's events as Server-Sent Events (`id:` its sequence number, `event:` its kind,
    /// `data:` its JSON), from after `last_seen` (a reconnecting client's `Last-Event-ID`),
    /// then each new one as it is stored; an `end` event once the run finished and every event
    /// was sent.
    async fn stream(
        &self,
        kind: RunKind,
        id: &str,
        last_seen: i64,
    ) -> Result<Response<ResponseBody>, ApiError> {
        let run = self.get_run(id).await?;
        if run.kind != kind {
            return Err(ApiError::not_found(format!("no {kind} run `{id}`")));
        }
        let (sender, body) = ResponseBody::channel(16);
        let store = self.store.clone();
        let mut shutdown = self.shutdown.clone();
        let subject = format!("{}:{id}", kind.as_str());
        let run_id = run.id.clone();
        tokio::spawn(async move {
            let mut after = last_seen;
            let mut quiet = Duration::ZERO;
            loop {
                let Ok(events) = store.events(&subject, after, 500).await else {
                    break;
                };
                // Read before the events are sent: a run that had finished by now has no
                // event after the ones just read.
                let finished = match store.get_run(&run_id).await {
                    Ok(Some(run)) => run.status != RunStatus::Running,
                    _ => true,
                };
                let mut chunk = String::new();
                for event in &events {
                    after = event.seq;
                    chunk.push_str(&format!(
                        "id: {}\nevent: {}\ndata: {}\n\n",
                        event.seq,
                        event.kind.replace(['\n', '\r'], " "),
                        serde_json::to_string(event).unwrap_or_default()
                    ));
                }
                if events.len() < 500 && finished {
                    chunk.push_str("event: end\ndata: {}\n\n");
                }
                if chunk.is_empty() && quiet >= STREAM_KEEPALIVE {
                    chunk.push_str(": keep-alive\n\n");
                    quiet = Duration::ZERO;
                }
                if !chunk.is_empty() {
                    quiet = Duration::ZERO;
                    if sender.send(Bytes::from(chunk)).await.is_err() {
                        break;
                    }
                }
                if events.len() < 500 && finished {
                    break;
                }
                if events.len() < 500 {
                    tokio::select! {
                        () = tokio::time::sleep(STREAM_POLL) => quiet += STREAM_POLL,
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            }
        });
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(response)
    }

    async fn route(&self, path: &str, query: &Query) -> Result<Value, ApiError> {
        let segments = segments(path);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["health"] => Ok(json!({"status": "ok"})),
            ["api", "v1", "openapi.json"] => Ok(crate::openapi::document()),
            ["api", "v1", "runs"] => self.runs(query, None).await,
            ["api", "v1", "runs", id] => self.run(id, query).await,
            ["api", "v1", "runs", a, "diff", b] => self.diff(a, b, query).await,
            ["api", "v1", "rollouts"] => self.runs(query, Some(RunKind::Rollout)).await,
            ["api", "v1", "rollouts", id] => {
                self.with_events(id, RunKind::Rollout, "rollout").await
            }
            ["api", "v1", "pipelines"] => self.runs(query, Some(RunKind::Pipeline)).await,
            ["api", "v1", "pipelines", id] => {
                self.with_events(id, RunKind::Pipeline, "pipeline").await
            }
            ["api", "v1", "models"] => self.models().await,
            ["api", "v1", "models", name, "versions"] => self.versions(name).await,
            ["api", "v1", "aliases", name, "history"] => self.alias_history(name).await,
            ["api", "v1", "feedback"] => self.feedback(query).await,
            ["api", "v1", "cost"] => self.cost(query).await,
            ["api", "v1", "trends"] => self.trends(query).await,
            ["api", "v1", "alerts"] => self.alerts(query).await,
            ["api", "v1", "drift"] => {
                Ok(serde_json::to_value(self.drift(query).await?).unwrap_or_default())
            }
            _ => Err(ApiError::not_found(format!("no such resource: {path}"))),
        }
    }

    /// `runs` (or the runs of one kind): `kind`, `status` and `limit` filter them.
    async fn runs(&self, query: &Query, kind: Option<RunKind>) -> Result<Value, ApiError> {
        let kind = match (kind, query.get("kind")) {
            (Some(kind), _) => Some(kind),
            (None, None) => None,
            (None, Some(text)) => Some(
                text.parse::<RunKind>()
                    .map_err(|e| ApiError::bad_request(format!("`kind`: {e}")))?,
            ),
        };
        let status = match query.get("status") {
            None => None,
            Some(text) => Some(parse_status(text)?),
        };
        let runs = self
            .store
            .list_runs(RunFilter {
                kind,
                status,
                limit: query.limit()?,
            })
            .await
            .map_err(ApiError::store)?;
        Ok(json!({ "runs": runs }))
    }

    pub(crate) async fn get_run(&self, id: &str) -> Result<sluice_store::Run, ApiError> {
        self.store
            .get_run(&RunId(id.to_owned()))
            .await
            .map_err(ApiError::store)?
            .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))
    }

    /// One run with a page of its results (`offset`, `limit`), failures first when asked
    /// (`failures_first=true`).
    async fn run(&self, id: &str, query: &Query) -> Result<Value, ApiError> {
        let run = self.get_run(id).await?;
        let offset: u32 = query.number("offset", 0)?;
        let limit = query.limit()?;
        // Failed, then errored, then the rest, each in run order; only the page is read whole.
        let (total, page) = self
            .store
            .results_page(&run.id, offset, limit, query.flag("failures_first")?)
            .await
            .map_err(ApiError::store)?;
        Ok(json!({ "run": run, "total_results": total, "offset": offset, "results": page }))
    }

    /// Two eval runs compared test by test, with the paired significance test.
    async fn diff(&self, a: &str, b: &str, query: &Query) -> Result<Value, ApiError> {
        let confidence: f64 = query.number("confidence", 0.95)?;
        if !(0.5..1.0).contains(&confidence) {
            return Err(ApiError::bad_request(
                "`confidence`: expected at least 0.5 and under 1",
            ));
        }
        // Compared on the verdicts alone; only the flipped tests' rows are read for their
        // descriptions.
        let (baseline, candidate) = (self.eval_verdicts(a).await?, self.eval_verdicts(b).await?);
        let mut comparison = sluice_eval::compare::compare(
            &sluice_eval::compare::keyed_from_verdicts(&baseline.1),
            &sluice_eval::compare::keyed_from_verdicts(&candidate.1),
            confidence,
            None,
        );
        let flipped: Vec<String> = comparison
            .regressions
            .iter()
            .chain(&comparison.fixes)
            .map(|f| f.key.clone())
            .collect();
        let rows = self
            .store
            .results_for_keys(&candidate.0, &flipped)
            .await
            .map_err(ApiError::store)?;
        let descriptions = sluice_eval::compare::keyed_from_records(&rows);
        for flip in comparison
            .regressions
            .iter_mut()
            .chain(comparison.fixes.iter_mut())
        {
            if let Some(found) = descriptions.get(&flip.key) {
                flip.description.clone_from(&found.description);
            }
        }
        Ok(json!({ "baseline": a, "candidate": b, "comparison": comparison }))
    }

    async fn eval_verdicts(
        &self,
        id: &str,
    ) -> Result<(RunId, Vec<(String, Option<bool>)>), ApiError> {
        let run = self.get_run(id).await?;
        if run.kind != RunKind::Eval {
            return Err(ApiError::bad_request(format!(
                "run `{id}` is a {} run: only eval runs are compared",
                run.kind
            )));
        }
        let verdicts = self
            .store
            .verdicts(&run.id)
            .await
            .map_err(ApiError::store)?;
        Ok((run.id, verdicts))
    }

    /// A rollout or pipeline run with every event it recorded, oldest first.
    async fn with_events(&self, id: &str, kind: RunKind, prefix: &str) -> Result<Value, ApiError> {
        let run = self.get_run(id).await?;
        if run.kind != kind {
            return Err(ApiError::not_found(format!("no {kind} run `{id}`")));
        }
        let events = self
            .store
            .events(&format!("{prefix}:{id}"), 0, 10_000)
            .await
            .map_err(ApiError::store)?;
        Ok(json!({ "run": run, "events": events }))
    }

    /// Every model with its number of versions and its latest.
    async fn models(&self) -> Result<Value, ApiError> {
        let versions = self
            .store
            .model_versions(None)
            .await
            .map_err(ApiError::store)?;
        let mut models: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for version in &versions {
            let entry = models.entry(&version.model).or_insert((0, ""));
            entry.0 += 1;
            entry.1 = &version.version;
        }
        let models: Vec<Value> = models
            .into_iter()
            .map(|(name, (count, latest))| json!({"name": name, "versions": count, "latest": latest}))
            .collect();
        Ok(json!({ "models": models }))
    }

    /// One model's versions, each with its lineage (the runs that are its evidence).
    async fn versions(&self, model: &str) -> Result<Value, ApiError> {
        let versions = self
            .store
            .model_versions(Some(model))
            .await
            .map_err(ApiError::store)?;
        if versions.is_empty() {
            return Err(ApiError::not_found(format!("no model `{model}`")));
        }
        let mut out = Vec::with_capacity(versions.len());
        for version in versions {
            let lineage = self
                .store
                .lineage(&version.model, &version.version)
                .await
                .map_err(ApiError::store)?;
            out.push(json!({ "version": version, "lineage": lineage }));
        }
        Ok(json!({ "model": model, "versions": out }))
    }

    /// One version's drift: its requests in the current window against the reference window
    /// (by default the last hour against the hour before), from the route's request log.
    async fn drift(&self, query: &Query) -> Result<crate::drift::Report, ApiError> {
        let required = |key: &str| {
            query
                .get(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::bad_request(format!("`{key}` is required")))
        };
        let (route, version) = (required("route")?, required("version")?);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        const HOUR: i64 = 3_600_000;
        let current = crate::drift::Window {
            from_ms: query.number("current_from", now.saturating_sub(HOUR))?,
            to_ms: query.number("current_to", now.saturating_add(1))?,
        };
        let reference = crate::drift::Window {
            from_ms: query.number("reference_from", current.from_ms.saturating_sub(HOUR))?,
            to_ms: query.number("reference_to", current.from_ms)?,
        };
        let min_samples: usize = query.number("min_samples", crate::drift::MIN_SAMPLES)?;
        // A window that ends before it starts holds no request: its descriptors are
        // `insufficient`, not an error.
        if min_samples == 0 {
            return Err(ApiError::bad_request("`min_samples`: expected at least 1"));
        }
        let events = crate::feedback::raw_events_since(
            &self.store,
            &format!("gateway:{route}"),
            reference.from_ms.min(current.from_ms),
        )
        .await
        .map_err(ApiError::store)?;
        let embeddings = if query.flag("embeddings")? {
            // A well-formed request this server cannot answer as it was started: 409.
            Some(self.embeddings.clone().ok_or_else(|| ApiError {
                status: StatusCode::CONFLICT,
                kind: "unavailable",
                message: "`embeddings`: this server has no embeddings endpoint (start it with --embeddings-url)".to_owned(),
            })?)
        } else {
            None
        };
        let (route, version) = (route.to_owned(), version.to_owned());
        let want_prompts = embeddings.is_some();
        // Seconds of work on a long log: off the runtime's threads.
        let (mut report, prompts) = tokio::task::spawn_blocking(move || {
            let entries: Vec<(i64, &str)> = events
                .iter()
                .filter(|e| e.kind == "request")
                .map(|e| (e.at_ms, e.payload.as_str()))
                .collect();
            let report =
                crate::drift::report(&route, &version, reference, current, &entries, min_samples);
            let prompts = want_prompts.then(|| {
                crate::drift::prompts(
                    &version,
                    reference,
                    current,
                    &entries,
                    crate::embedding::SAMPLES,
                )
            });
            (report, prompts)
        })
        .await
        .map_err(|e| ApiError::internal(format!("the drift report failed: {e}")))?;
        if let (Some(source), Some((before, now))) = (embeddings, prompts) {
            let embed = |texts: Vec<String>| {
                let source = Arc::clone(&source);
                async move { crate::embedding::embed(&source, &texts).await }
            };
            let (before, now) = (embed(before).await, embed(now).await);
            let (before, now) = before
                .and_then(|b| now.map(|n| (b, n)))
                .map_err(ApiError::internal)?;
            let seed = u64::try_from(reference.from_ms).unwrap_or_default();
            let drift =
                tokio::task::spawn_blocking(move || crate::embedding::compare(&before, &now, seed))
                    .await
                    .map_err(|e| ApiError::internal(format!("the embedding drift failed: {e}")))?;
            if drift.verdict == "alert" {
                report.drifted.push("prompt_embedding");
            }
            report.embedding = Some(drift);
        }
        Ok(report)
    }

    /// A route's ratings per version over a window (`window_s`, an hour by default) and the
    /// retraining triggers that fired for it.
    async fn feedback(&self, query: &Query) -> Result<Value, ApiError> {
        let route = query
            .get("route")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::bad_request("`route` is required"))?;
        let window_s: u32 = query.number("window_s", 3600)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let since = now.saturating_sub(i64::from(window_s) * 1000);
        let events = crate::feedback::kind_since(
            &self.store,
            &format!("gateway:{route}"),
            since,
            "feedback",
        )
        .await
        .map_err(ApiError::store)?;
        let versions = crate::feedback::summarise(
            events
                .iter()
                .map(|e| (e.at_ms, e.kind.as_str(), &e.payload)),
            now.saturating_sub(i64::from(window_s) * 1000),
        );
        let triggers = crate::feedback::all_events(&self.store, &format!("retrain:{route}"))
            .await
            .map_err(ApiError::store)?;
        Ok(
            json!({"route": route, "window_s": window_s, "versions": versions, "triggers": triggers}),
        )
    }

    /// How each eval suite and benchmarked model moved over its last runs (`limit` runs of
    /// each kind, newest, 200 by default).
    async fn trends(&self, query: &Query) -> Result<Value, ApiError> {
        let limit: u32 = query.number("limit", 200)?;
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "`limit`: expected 1 to {MAX_LIMIT}"
            )));
        }
        let mut runs = Vec::new();
        for kind in [RunKind::Eval, RunKind::Bench] {
            runs.extend(
                self.store
                    .list_runs(RunFilter {
                        kind: Some(kind),
                        status: None,
                        limit,
                    })
                    .await
                    .map_err(ApiError::store)?,
            );
        }
        Ok(json!({ "series": crate::trends::series(&runs) }))
    }

    /// What a route's traffic cost per version over a window (`window_s`, an hour by default).
    async fn cost(&self, query: &Query) -> Result<Value, ApiError> {
        let route = query
            .get("route")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::bad_request("`route` is required"))?;
        let window_s: u32 = query.number("window_s", 3600)?;
        if window_s == 0 {
            return Err(ApiError::bad_request("`window_s`: expected at least 1"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let since = now.saturating_sub(i64::from(window_s) * 1000);
        let events =
            crate::feedback::raw_events_since(&self.store, &format!("gateway:{route}"), since)
                .await
                .map_err(ApiError::store)?;
        // A long window of a busy route is millions of entries: off the async threads.
        let versions = tokio::task::spawn_blocking(move || {
            crate::cost::summarise(
                events
                    .iter()
                    .map(|e| (e.at_ms, e.kind.as_str(), e.payload.as_str())),
                since,
                window_s,
            )
        })
        .await
        .map_err(|e| ApiError::internal(format!("the cost summary failed: {e}")))?;
        Ok(json!({"route": route, "window_s": window_s, "versions": versions}))
    }

    /// A route's open alerts and its alert history (newest last).
    async fn alerts(&self, query: &Query) -> Result<Value, ApiError> {
        let route = query
            .get("route")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::bad_request("`route` is required"))?;
        let history = crate::feedback::all_events(&self.store, &format!("alert:{route}"))
            .await
            .map_err(ApiError::store)?;
        Ok(json!({"route": route, "open": crate::alerts::open(&history), "history": history}))
    }

    /// The history of a model's aliases (`chat`), or of one alias (`chat@production`).
    async fn alias_history(&self, name: &str) -> Result<Value, ApiError> {
        let (model, alias) = match name.split_once('@') {
            Some((model, alias)) => (model, Some(alias)),
            None => (name, None),
        };
        let moves = self
            .store
            .alias_history(model, alias)
            .await
            .map_err(ApiError::store)?;
        if moves.is_empty() {
            return Err(ApiError::not_found(format!(
                "no alias history for `{name}`"
            )));
        }
        Ok(json!({ "name": name, "history": moves }))
    }
}

impl Api {
    /// A dashboard page (or one of its assets).
    async fn page(
        &self,
        path: &str,
        query: &Query,
        head: bool,
        csrf: Option<String>,
    ) -> Response<ResponseBody> {
        let (status, content_type, body) = match path {
            "/assets/app.css" => (
                StatusCode::OK,
                "text/css; charset=utf-8",
                crate::html::CSS.to_owned(),
            ),
            "/assets/app.js" => (
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                crate::html::JS.to_owned(),
            ),
            "/assets/icon.svg" | "/favicon.ico" => (
                StatusCode::OK,
                "image/svg+xml",
                crate::html::ICON.to_owned(),
            ),
            _ => match self.render(path, query, csrf.as_deref()).await {
                Ok(html) => (StatusCode::OK, "text/html; charset=utf-8", html),
                Err(error) => (
                    error.status,
                    "text/html; charset=utf-8",
                    crate::html::error(error.status.as_u16(), &error.message),
                ),
            },
        };
        page_response(status, content_type, body, head)
    }

    async fn render(
        &self,
        path: &str,
        query: &Query,
        csrf: Option<&str>,
    ) -> Result<String, ApiError> {
        let segments = segments(path);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let list = |value: Value, key: &str| -> Vec<Value> {
            value[key].as_array().cloned().unwrap_or_default()
        };
        match segments.as_slice() {
            [""] => {
                let rollouts = self
                    .runs(&Query::parse(None), Some(RunKind::Rollout))
                    .await?;
                let runs = self.runs(&Query::parse(Some("limit=20")), None).await?;
                let mut alerts = Vec::new();
                for route in &self.watched {
                    let history =
                        crate::feedback::all_events(&self.store, &format!("alert:{route}"))
                            .await
                            .map_err(ApiError::store)?;
                    alerts.extend(crate::alerts::open(&history));
                }
                let alerts = (!self.watched.is_empty()).then_some(alerts);
                Ok(crate::html::overview(
                    &list(rollouts, "runs"),
                    &list(runs, "runs"),
                    alerts.as_deref(),
                ))
            }
            ["runs"] => {
                // An empty choice in the filter form means any.
                let kind = query.get("kind").filter(|k| !k.is_empty());
                let status = query.get("status").filter(|s| !s.is_empty());
                let mut pairs = BTreeMap::from([(
                    "limit".to_owned(),
                    query.get("limit").unwrap_or("200").to_owned(),
                )]);
                pairs.extend(kind.map(|k| ("kind".to_owned(), k.to_owned())));
                pairs.extend(status.map(|s| ("status".to_owned(), s.to_owned())));
                let runs = self.runs(&Query(pairs), None).await?;
                Ok(crate::html::runs(&list(runs, "runs"), kind, status))
            }
            ["runs", id] => {
                let mut pairs = query.0.clone();
                pairs.insert("failures_first".into(), "true".into());
                pairs.entry("limit".into()).or_insert_with(|| "500".into());
                Ok(crate::html::run(&self.run(id, &Query(pairs)).await?))
            }
            ["runs", a, "diff", b] => Ok(crate::html::diff(&self.diff(a, b, query).await?)),
            ["rollouts"] => {
                let rollouts = self.runs(query, Some(RunKind::Rollout)).await?;
                Ok(crate::html::rollouts(&list(rollouts, "runs")))
            }
            ["rollouts", id] => Ok(crate::html::rollout(
                &self.with_events(id, RunKind::Rollout, "rollout").await?,
                self.admin.is_some(),
                csrf,
            )),
            ["login"] => Ok(crate::html::login(query.get("next").unwrap_or("/"), None)),
            ["models"] => Ok(crate::html::models(&self.models().await?)),
            ["alerts"] => match query.get("route").filter(|r| !r.is_empty()) {
                None => Ok(crate::html::alerts(None, &Value::Null)),
                Some(route) => Ok(crate::html::alerts(Some(route), &self.alerts(query).await?)),
            },
            ["trends"] => Ok(crate::html::trends(&self.trends(query).await?)),
            ["cost"] => match query.get("route").filter(|r| !r.is_empty()) {
                None => Ok(crate::html::cost(None, &Value::Null)),
                Some(route) => Ok(crate::html::cost(Some(route), &self.cost(query).await?)),
            },
            ["feedback"] => match query.get("route").filter(|r| !r.is_empty()) {
                None => Ok(crate::html::feedback(None, &Value::Null)),
                Some(route) => Ok(crate::html::feedback(
                    Some(route),
                    &self.feedback(query).await?,
                )),
            },
            ["drift"] => {
                let report = match (query.get("route"), query.get("version")) {
                    (Some(r), Some(v)) if !r.is_empty() && !v.is_empty() => {
                        Some(self.drift(query).await?)
                    }
                    _ => None,
                };
                Ok(crate::html::drift(
                    query.get("route"),
                    query.get("version"),
                    report.as_ref(),
                ))
            }
            ["models", name] => {
                let versions = self.versions(name).await?;
                let history = self.alias_history(name).await.ok();
                Ok(crate::html::model(name, &versions, history.as_ref()))
            }
            _ => Err(ApiError::not_found(format!("no such page: {path}"))),
        }
    }
}

/// A dashboard answer: HTML (or an asset) with the headers every page has.
pub(crate) fn page_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    head: bool,
) -> Response<ResponseBody> {
    let bytes = if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(ResponseBody::full(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    // Nothing from another origin, no inline script or style; forms post only here.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    response
}

/// A path's segments, percent-decoded.
pub(crate) fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// `/api/v1/rollouts/ID/stream` or `/api/v1/pipelines/ID/stream`.
fn stream_path(path: &str) -> Option<(RunKind, &str)> {
    let rest = path.strip_prefix("/api/v1/")?.strip_suffix("/stream")?;
    let (collection, id) = rest.split_once('/')?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    match collection {
        "rollouts" => Some((RunKind::Rollout, id)),
        "pipelines" => Some((RunKind::Pipeline, id)),
        _ => None,
    }
}

pub(crate) fn error_body(error: &ApiError) -> Value {
    json!({"error": {"type": error.kind, "message": error.message}})
}

/// A JSON answer (without its body for `HEAD`).
pub(crate) fn json_response(
    status: StatusCode,
    body: &Value,
    head: bool,
) -> Response<ResponseBody> {
    let bytes = if head {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec_pretty(body).unwrap_or_default())
    };
    let mut response = Response::new(ResponseBody::full(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

fn parse_status(text: &str) -> Result<RunStatus, ApiError> {
    [
        RunStatus::Running,
        RunStatus::Passed,
        RunStatus::Failed,
        RunStatus::Errored,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "`status`: unknown status `{text}`: expected running, passed, failed or errored"
        ))
    })
}
