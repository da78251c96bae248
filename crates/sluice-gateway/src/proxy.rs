//! The OpenAI-compatible front: reads and checks a request, routes it once from the current
//! snapshot, rewrites it for the chosen version (upstream model name, system prompt, default
//! parameters, `include_usage` forced on streams), and passes the answer back as it arrives —
//! event by event for streams, with the usage chunk the client did not ask for removed —
//! recording the outcome in the version's metrics when the last byte has gone.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::time::Sleep;
use tracing::{debug, warn};

use sluice_store::{NewEvent, Store};
use tokio::sync::{mpsc, oneshot};

use crate::api_error::ApiError;
use crate::config::Limits;
use crate::guard::EventGuard;
use crate::log::{Recent, Record, RequestLog};
use crate::metrics::{Class, Metrics, Observation, VersionMetrics};
use crate::route::{RequestKeys, Snapshot, Version};
use crate::shadow::{Job, Primary};

/// State shared by every request.
pub(crate) struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Upstream clients by connect timeout (ms); each keeps its own connection pool.
    clients: Mutex<HashMap<u64, reqwest::Client>>,
    next_id: AtomicU64,
    id_prefix: String,
    /// Requests whose answer is not complete yet.
    pub in_flight: Arc<AtomicUsize>,
    /// Where feedback and shadow comparisons are stored.
    pub store: Option<Store>,
    /// The request log's queue.
    pub log: Option<RequestLog>,
    /// Which version served recent requests (for feedback).
    pub recent: Mutex<Recent>,
    /// The shadow queue.
    pub shadow: mpsc::Sender<Job>,
    /// The public listener's connections.
    pub connections: Arc<sluice_http::ConnectionStats>,
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        limits: Limits,
        metrics: Arc<Metrics>,
        store: Option<Store>,
        log: Option<RequestLog>,
        shadow: mpsc::Sender<Job>,
    ) -> Self {
        Self {
            store,
            log,
            recent: Mutex::new(Recent::default()),
            shadow,
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            limits,
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:08x}", fastrand::u32(..)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            connections: Arc::default(),
        }
    }

    pub(crate) fn client(&self, connect: Duration) -> Result<reqwest::Client, reqwest::Error> {
        let key = u64::try_from(connect.as_millis()).unwrap_or(u64::MAX);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Prometheus text: the metrics, then the public listener's connections.
    pub(crate) fn prometheus(&self) -> String {
        let mut text = self.metrics.prometheus();
        let stats = &self.connections;
        text.push_str(&format!(
            "# HELP sluice_gateway_connections_open Client connections open on the public listener.\n\
             # TYPE sluice_gateway_connections_open gauge\n\
             sluice_gateway_connections_open {}\n\
             # HELP sluice_gateway_connections_refused_total Connections refused at a limit.\n\
             # TYPE sluice_gateway_connections_refused_total counter\n\
             sluice_gateway_connections_refused_total{{limit=\"max_connections\"}} {}\n\
             sluice_gateway_connections_refused_total{{limit=\"max_connections_per_ip\"}} {}\n",
            stats.open(),
            stats.refused_at_limit(),
            stats.refused_per_ip()
        ));
        text
    }

    fn request_id(&self) -> String {
        format!(
            "req-{}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// A response body: complete bytes, or an upstream answer passed through.
pub(crate) enum GatewayBody {
    Full(Option<Bytes>),
    Proxy(Box<ProxyBody>),
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            GatewayBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Proxy(body) => body.poll_next(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, GatewayBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Proxy(_) => SizeHint::default(),
        }
    }
}

pub(crate) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<GatewayBody> {
    let mut response = Response::new(GatewayBody::Full(Some(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json_response(
    status: StatusCode,
    value: &impl serde::Serialize,
) -> Response<GatewayBody> {
    full(
        status,
        "application/json",
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
}

/// Reads a request body up to the configured limit.
pub(crate) async fn read_body(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Box<Response<GatewayBody>>> {
    use sluice_http::BodyError;
    sluice_http::read_body(request.into_body(), limit, timeout)
        .await
        .map_err(|e| {
            let error = match &e {
                BodyError::TooLarge(_) => ApiError::TooLarge(format!(
                    "the request body is larger than the gateway's limit of {limit} bytes"
                )),
                BodyError::Timeout(_) => ApiError::BodyTimeout(e.to_string()),
                BodyError::Read(_) => ApiError::InvalidRequest(e.to_string()),
            };
            let mut response = error.into_response();
            // The rest of the body is not read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            Box::new(response)
        })
}

/// The endpoints that are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// `GET /v1/models`: the routes, as models.
pub(crate) fn models(shared: &Shared) -> Response<GatewayBody> {
    let snapshot = shared.snapshot.load();
    let data: Vec<Value> = snapshot
        .routes
        .keys()
        .map(|name| json!({"id": name, "object": "model", "created": 0, "owned_by": "sluice-gateway"}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

/// Proxies one routed request.
pub(crate) async fn forward(
    shared: &Shared,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Response<GatewayBody> {
    let arrived = Instant::now();
    let headers = request.headers().clone();
    let raw = match read_body(
        request,
        shared.limits.max_body_bytes,
        shared.limits.server.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let mut body: Map<String, Value> = match serde_json::from_slice(&raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return ApiError::InvalidRequest("the request body must be a JSON object".into())
                .into_response();
        }
        Err(e) => {
            return ApiError::InvalidRequest(format!("the request body is not valid JSON: {e}"))
                .into_response();
        }
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return ApiError::InvalidRequest("`model` is required".into()).into_response();
    };
    let snapshot = shared.snapshot.load_full();
    let Some(route) = snapshot.routes.get(&model).cloned() else {
        let known: Vec<&str> = snapshot.routes.keys().map(String::as_str).collect();
        let mut response = ApiError::NotFound(format!(
            "The model `{model}` does not exist on this gateway (routes: {}).",
            known.join(", ")
        ))
        .into_response();
        set_header(response.headers_mut(), "x-sluice-route", "none");
        return response;
    };
    let (index, request_id) = {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let user = body.get("user").and_then(Value::as_str);
        let keys = RequestKeys {
            override_version: header("x-sluice-version")
                .filter(|_| route.override_allowed(header("x-sluice-override-token"))),
            user,
            header: Some(&header),
        };
        let (index, reason) = route.pick(&keys, fastrand::f64());
        let request_id = header("x-request-id")
            .filter(|id| id.len() <= 128)
            .map_or_else(|| shared.request_id(), str::to_owned);
        debug!(
            route = model,
            version = route.versions[index].name,
            reason = reason.as_str(),
            request_id,
            "Routed."
        );
        (index, request_id)
    };
    let version = &route.versions[index];
    let input_flags = if version.safety.input {
        version.safety.input_flags(&user_text(&body))
    } else {
        Vec::new()
    };
    if version.safety.block_input && !input_flags.is_empty() {
        let metrics = shared.metrics.version(&model, &version.name);
        metrics.record_injection(&input_flags);
        metrics.record_action("input_blocked");
        let mut response = json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
                "message": format!(
                    "The request was refused: it looks like a prompt-injection attempt ({}).",
                    input_flags.join(", ")
                ),
                "type": "invalid_request_error",
                "param": "messages",
                "code": "content_filter",
            }}),
        );
        let headers = response.headers_mut();
        set_header(headers, "x-sluice-version", &version.name);
        set_header(headers, "x-sluice-route", &model);
        set_header(headers, "x-request-id", &request_id);
        return response;
    }
    if shared.log.is_some() {
        shared
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.clone(), model.clone(), version.name.clone());
    }
    let primary = shadow_copy(
        shared,
        &route,
        version,
        endpoint,
        &body,
        &model,
        &request_id,
    );
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true)
        && endpoint != Endpoint::Embeddings;
    let strip_usage = stream && !client_wants_usage(&body);
    rewrite(&mut body, version, endpoint, stream);
    let metrics = shared.metrics.version(&model, &version.name);
    metrics.begin();
    let scanner = version
        .safety
        .is_active()
        .then(|| Arc::clone(&version.safety));
    let capture_limit = if !stream {
        COLLECT_LIMIT
    } else if shared.log.is_some() || primary.is_some() || scanner.is_some() {
        STREAM_CAPTURE_LIMIT
    } else {
        0
    };
    let finish = Finish {
        metrics,
        in_flight: Arc::clone(&shared.in_flight),
        log: shared.log.clone().map(|log| {
            (
                log,
                Entry {
                    request_id: request_id.clone(),
                    route: model.clone(),
                    version: version.name.clone(),
                    request: raw,
                },
            )
        }),
        primary,
        scanner,
        input_flags,
        version: version.name.clone(),
        stream,
        capture: Vec::new(),
        capture_limit,
        arrived,
        upstream_started: Instant::now(),
        upstream_ended: None,
        ttft: None,
        class: None,
        prompt_tokens: 0,
        completion_tokens: 0,
    };
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut response = send(
        shared,
        version,
        endpoint,
        &body,
        &request_id,
        stream,
        strip_usage,
        finish,
    )
    .await;
    let headers = response.headers_mut();
    set_header(headers, "x-sluice-version", &version.name);
    set_header(headers, "x-sluice-route", &model);
    set_header(headers, "x-request-id", &request_id);
    response
}

/// Queues a shadow copy of a sampled request and returns where its primary answer goes.
fn shadow_copy(
    shared: &Shared,
    route: &crate::route::Route,
    serving: &Version,
    endpoint: Endpoint,
    body: &Map<String, Value>,
    route_name: &str,
    request_id: &str,
) -> Option<oneshot::Sender<Primary>> {
    let shadow = route.shadow.as_ref()?;
    if shadow.version == serving.name || fastrand::f64() * 100.0 >= shadow.percent {
        return None;
    }
    let version = route.versions.get(route.index(&shadow.version)?)?;
    let mut copy = body.clone();
    copy.remove("stream");
    copy.remove("stream_options");
    rewrite(&mut copy, version, endpoint, false);
    let (sender, receiver) = oneshot::channel();
    let job = Job {
        route: route_name.to_owned(),
        version: version.clone(),
        endpoint,
        body: copy,
        request_id: request_id.to_owned(),
        primary: receiver,
        embedding_model: shadow.embedding_model.clone(),
    };
    match shared.shadow.try_send(job) {
        Ok(()) => Some(sender),
        Err(_) => {
            shared
                .metrics
                .shadow_dropped
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// What the user wrote: the text of `user` and `tool` messages (chat) or the prompt
/// (completions), one part per line.
fn user_text(body: &Map<String, Value>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    fn texts<'a>(content: &'a Value, parts: &mut Vec<&'a str>) {
        match content {
            Value::String(text) => parts.push(text),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(text) => parts.push(text),
                        Value::Object(part) => {
                            if let Some(text) = part.get("text").and_then(Value::as_str) {
                                parts.push(text);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for message in messages {
            let role = message.get("role").and_then(Value::as_str);
            if matches!(role, Some("user" | "tool"))
                && let Some(content) = message.get("content")
            {
                texts(content, &mut parts);
            }
        }
    }
    if let Some(prompt) = body.get("prompt") {
        texts(prompt, &mut parts);
    }
    parts.join("\n")
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn client_wants_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Rewrites the client's request for `version`.
fn rewrite(body: &mut Map<String, Value>, version: &Version, endpoint: Endpoint, stream: bool) {
    body.insert("model".into(), Value::String(version.model.clone()));
    if endpoint == Endpoint::Chat
        && let Some(system) = &version.system_prompt
        && let Some(Value::Array(messages)) = body.get_mut("messages")
    {
        messages.insert(0, json!({"role": "system", "content": system}));
    }
    for (key, value) in &version.params {
        body.entry(key.clone()).or_insert_with(|| value.clone());
    }
    if stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(options) = options {
            options.insert("include_usage".into(), Value::Bool(true));
        }
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site, every argument distinct"
)]
async fn send(
    shared: &Shared,
    version: &Version,
    endpoint: Endpoint,
    body: &Map<String, Value>,
    request_id: &str,
    stream: bool,
    strip_usage: bool,
    mut finish: Finish,
) -> Response<GatewayBody> {
    let client = match shared.client(version.timeouts.connect) {
        Ok(client) => client,
        Err(e) => {
            return finish.fail(ApiError::Unreachable(format!(
                "cannot build the upstream client: {e}"
            )));
        }
    };
    let url = format!("{}/{}", version.upstreams.next(), endpoint.path());
    let mut upstream = client
        .post(&url)
        .header(CONTENT_TYPE, "application/json")
        .header("x-request-id", request_id)
        .body(serde_json::to_vec(body).unwrap_or_default());
    if let Some(key) = &version.api_key {
        upstream = upstream.bearer_auth(key.expose());
    }
    finish.upstream_started = Instant::now();
    let deadline = finish.upstream_started + version.timeouts.total;
    let first = version.timeouts.ttft.min(version.timeouts.total);
    let answer = match tokio::time::timeout(first, upstream.send()).await {
        Err(_) => {
            return finish.fail(ApiError::Timeout(format!(
                "version `{}` did not answer within {} ms",
                version.name,
                first.as_millis()
            )));
        }
        Ok(Err(e)) => {
            warn!(version = version.name, error = %e, "Upstream request failed.");
            let message = format!("version `{}` could not be reached: {e}", version.name);
            return finish.fail(if e.is_timeout() {
                ApiError::Timeout(message)
            } else {
                ApiError::Unreachable(message)
            });
        }
        Ok(Ok(answer)) => answer,
    };
    let status = answer.status();
    let content_type = answer.headers().get(CONTENT_TYPE).cloned();
    let retry_after = answer.headers().get(RETRY_AFTER).cloned();
    if !status.is_success() {
        let class = Class::of_status(status.as_u16());
        let text = match tokio::time::timeout_at(deadline.into(), answer.bytes()).await {
            Ok(Ok(bytes)) => bytes,
            _ => Bytes::new(),
        };
        finish.capture = text.to_vec();
        finish.end(class);
        let openai_shaped = serde_json::from_slice::<Value>(&text)
            .ok()
            .is_some_and(|v| v.get("error").is_some());
        let mut response = if openai_shaped {
            full(status, "application/json", text)
        } else {
            let snippet: String = String::from_utf8_lossy(&text).chars().take(200).collect();
            ApiError::Upstream {
                status,
                message: format!("version `{}` answered {status}: {snippet}", version.name),
            }
            .into_response()
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }
    if !stream {
        let scanner = version.safety.guards().then_some(&*version.safety);
        return whole(scanner, answer, deadline, status, content_type, finish).await;
    }
    let guard = (stream && version.safety.guards()).then(|| {
        Box::new(EventGuard::new(
            Arc::clone(&version.safety),
            Arc::clone(&finish.metrics),
            endpoint == Endpoint::Chat,
        ))
    });
    let first_chunk_deadline = finish.upstream_started + first;
    let body = ProxyBody {
        guard,
        ready: VecDeque::new(),
        upstream: Box::pin(answer.bytes_stream()),
        buffer: BytesMut::new(),
        strip_usage,
        saw_done: false,
        deadline: Box::pin(tokio::time::sleep_until(
            first_chunk_deadline.min(deadline).into(),
        )),
        total_deadline: deadline,
        waiting_first: true,
        finish: Some(finish),
        ended: false,
    };
    let mut response = Response::new(GatewayBody::Proxy(Box::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// Reads a whole non-streamed answer before any of it is sent, so that an answer the upstream
/// cuts short, stalls past the total timeout, or that is not JSON reaches the client as 502 or
/// 504 (never as a 200 with a broken body), and so that the version's safety action can
/// redact or withhold it (a guarded answer is read up to [`COLLECT_LIMIT`], any other up to
/// [`MAX_ANSWER_BYTES`]).
async fn whole(
    scanner: Option<&sluice_safety::Scanner>,
    answer: reqwest::Response,
    deadline: Instant,
    status: StatusCode,
    content_type: Option<HeaderValue>,
    mut finish: Finish,
) -> Response<GatewayBody> {
    let limit = if scanner.is_some() {
        COLLECT_LIMIT
    } else {
        MAX_ANSWER_BYTES
    };
    let mut chunks = answer.bytes_stream();
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline.into(), chunks.next()).await {
            Err(_) => {
                finish.capture = body;
                return finish.fail(ApiError::Timeout(
                    "the upstream timed out before the end of the answer".into(),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                warn!(error = %e, "Upstream body failed.");
                finish.capture = body;
                let message = format!("the upstream answer broke off: {e}");
                return finish.fail(if e.is_timeout() {
                    ApiError::Timeout(message)
                } else {
                    ApiError::Broken(message)
                });
            }
            Ok(Some(Ok(bytes))) => {
                if body.len() + bytes.len() > limit {
                    let why = if scanner.is_some() {
                        "the most the safety scanner reads; it was withheld"
                    } else {
                        "the most the gateway passes on"
                    };
                    return finish.fail(ApiError::Broken(format!(
                        "the answer is larger than {} KiB, {why}",
                        limit / 1024
                    )));
                }
                body.extend_from_slice(&bytes);
            }
        }
    }
    finish.upstream_ended = Some(Instant::now());
    let mut value = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => value,
        Err(e) => {
            warn!("The upstream answered {status} with a body that is not JSON.");
            finish.capture = body;
            return finish.fail(ApiError::Broken(format!(
                "the upstream answered {status} with a body that is not JSON: {e}"
            )));
        }
    };
    if let Some(usage) = value.get("usage") {
        finish.usage(usage);
    }
    let response = match scanner {
        Some(scanner) => {
            if let Some(action) = crate::guard::whole(scanner, &mut value) {
                finish.metrics.record_action(action);
            }
            json_response(status, &value)
        }
        None => {
            let bytes = Bytes::from(std::mem::take(&mut body));
            body = bytes[..bytes.len().min(COLLECT_LIMIT)].to_vec();
            let mut response = Response::new(GatewayBody::Full(Some(bytes)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                CONTENT_TYPE,
                content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
            );
            response
        }
    };
    body.truncate(COLLECT_LIMIT);
    finish.capture = body;
    finish.end(Class::Ok);
    response
}

/// Records a request's outcome once: when its answer ends, or when it is dropped unfinished
/// (the client left).
pub(crate) struct Finish {
    metrics: Arc<VersionMetrics>,
    in_flight: Arc<AtomicUsize>,
    arrived: Instant,
    upstream_started: Instant,
    upstream_ended: Option<Instant>,
    ttft: Option<Duration>,
    class: Option<Class>,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// The request log and what it records of this request.
    log: Option<(RequestLog, Entry)>,
    /// Where a shadow comparison waits for this answer.
    primary: Option<oneshot::Sender<Primary>>,
    /// What the answer is scanned for once it has been sent.
    scanner: Option<Arc<sluice_safety::Scanner>>,
    /// The injection heuristics that fired on what the user sent.
    input_flags: Vec<&'static str>,
    /// The serving version's name.
    version: String,
    /// Whether the answer is a stream.
    stream: bool,
    /// The answer's bytes (up to `capture_limit`), for `usage`, the log and shadow comparisons.
    capture: Vec<u8>,
    capture_limit: usize,
}

/// What the request log keeps of a request besides its outcome.
struct Entry {
    request_id: String,
    route: String,
    version: String,
    request: Bytes,
}

impl Finish {
    fn keep(&mut self, bytes: &[u8]) {
        if self.capture.len() + bytes.len() <= self.capture_limit {
            self.capture.extend_from_slice(bytes);
        }
    }

    /// Records the request as failed with `error`'s class and answers with the error.
    fn fail(mut self, error: ApiError) -> Response<GatewayBody> {
        self.end(error.class());
        error.into_response()
    }

    fn end(&mut self, class: Class) {
        if self.class.is_some() {
            return;
        }
        self.class = Some(class);
        let now = Instant::now();
        let upstream = self
            .upstream_ended
            .unwrap_or(now)
            .saturating_duration_since(self.upstream_started);
        let latency = now.saturating_duration_since(self.arrived);
        self.metrics.record(&Observation {
            class,
            latency,
            ttft: self.ttft,
            overhead: latency.saturating_sub(upstream),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
        });
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut response = std::mem::take(&mut self.capture);
        self.metrics.record_injection(&self.input_flags);
        let safety = match &self.scanner {
            Some(scanner) if class == Class::Ok => {
                let answer = crate::log::answer_text(&response, self.stream);
                if scanner.refused(&answer) {
                    self.metrics.record_refusal();
                }
                let kinds = scanner.violations(&answer);
                self.metrics.record_safety(&kinds);
                kinds
            }
            _ => Vec::new(),
        };
        if let Some(sender) = self.primary.take() {
            let _ = sender.send(Primary {
                response: if self.log.is_some() {
                    response.clone()
                } else {
                    std::mem::take(&mut response)
                },
                stream: self.stream,
                latency,
                class,
                version: self.version.clone(),
            });
        }
        if let Some((log, entry)) = self.log.take() {
            log.record(Record {
                request_id: entry.request_id,
                route: entry.route,
                version: entry.version,
                class,
                latency,
                ttft: self.ttft,
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                request: entry.request,
                response,
                stream: self.stream,
                safety,
                input_flags: std::mem::take(&mut self.input_flags),
            });
        }
    }

    fn usage(&mut self, usage: &Value) {
        let count = |key| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
        self.prompt_tokens = count("prompt_tokens");
        self.completion_tokens = count("completion_tokens");
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.end(Class::ClientClosed);
    }
}

/// Largest non-streamed answer kept for the request log, and read when it must be guarded.
const COLLECT_LIMIT: usize = 1 << 20;
/// Largest non-streamed answer passed on (as large as the client reads: embeddings of big
/// batches are tens of MiB).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Most of a stream copied for the request log and shadow comparisons.
const STREAM_CAPTURE_LIMIT: usize = 256 * 1024;

type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// A streamed upstream answer on its way to the client, one whole server-sent event at a time.
pub(crate) struct ProxyBody {
    upstream: Upstream,
    /// Guards a stream's text when the version redacts or blocks.
    guard: Option<Box<EventGuard>>,
    /// Events ready to go out before anything else is read.
    ready: VecDeque<Bytes>,
    /// Bytes read that do not make a whole event yet.
    buffer: BytesMut,
    /// Drop usage-only chunks (the client did not ask for them).
    strip_usage: bool,
    /// Whether `[DONE]` has been seen: a stream that ends without it was cut off.
    saw_done: bool,
    /// The next deadline: the first chunk's (streams), then the total.
    deadline: Pin<Box<Sleep>>,
    total_deadline: Instant,
    waiting_first: bool,
    finish: Option<Finish>,
    ended: bool,
}

/// Where the first complete event in `buffer` ends (after its blank line).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether an event carries a generated token: non-empty `content`, `text` or
/// `reasoning_content`, or a tool call. Role-only chunks do not, so TTFT is not set by them.
fn carries_token(event: &[u8]) -> bool {
    for key in [
        &b"\"content\":\""[..],
        b"\"content\": \"",
        b"\"text\":\"",
        b"\"text\": \"",
        b"\"reasoning_content\":\"",
    ] {
        let mut rest = event;
        while let Some(at) = rest.windows(key.len()).position(|w| w == key) {
            let after = &rest[at + key.len()..];
            if after.first().is_some_and(|b| *b != b'"') {
                return true;
            }
            rest = after;
        }
    }
    contains(event, b"\"tool_calls\":[{") || contains(event, b"\"tool_calls\": [{")
}

impl ProxyBody {
    fn finish(&mut self, class: Class) {
        if let Some(finish) = &mut self.finish {
            finish.upstream_ended.get_or_insert_with(Instant::now);
            finish.end(class);
        }
        self.ended = true;
    }

    /// Ends a stream that failed after its headers were sent: the outcome is recorded, and
    /// the client gets the error as an in-band event (never `[DONE]`).
    fn fail(&mut self, error: ApiError) -> Bytes {
        self.finish(error.class());
        error.event()
    }

    /// Takes the next complete event off the buffer; `None` when there is none yet. Usage-only
    /// chunks are read for their token counts and, when the client did not ask for them,
    /// dropped.
    fn next_event(&mut self) -> Option<Bytes> {
        if let Some(event) = self.ready.pop_front() {
            return Some(event);
        }
        loop {
            let end = event_end(&self.buffer)?;
            let event = self.buffer.split_to(end).freeze();
            if let Some(finish) = &mut self.finish
                && finish.ttft.is_none()
                && carries_token(&event)
            {
                finish.ttft = Some(finish.arrived.elapsed());
            }
            if contains(&event, b"[DONE]") {
                self.saw_done = true;
                if let Some(guard) = &mut self.guard {
                    guard.flush(&mut self.ready);
                    self.ready.push_back(event);
                    return self.ready.pop_front();
                }
                return Some(event);
            }
            if contains(&event, b"\"usage\":{") || contains(&event, b"\"usage\": {") {
                let data = String::from_utf8_lossy(&event);
                let json = data
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .collect::<String>();
                if let Ok(value) = serde_json::from_str::<Value>(json.trim()) {
                    let usage_only = value
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty);
                    if let (Some(finish), Some(usage)) = (&mut self.finish, value.get("usage")) {
                        finish.usage(usage);
                    }
                    if usage_only && self.strip_usage {
                        continue;
                    }
                }
            }
            if let Some(guard) = &mut self.guard {
                match guard.event(event) {
                    Some(event) => return Some(event),
                    None => continue,
                }
            }
            return Some(event);
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(event) = self.ready.pop_front() {
            return Poll::Ready(Some(event));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            if let Some(event) = self.next_event() {
                return Poll::Ready(Some(event));
            }
            match self.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    if self.waiting_first {
                        self.waiting_first = false;
                        let total = self.total_deadline;
                        self.deadline.as_mut().reset(total.into());
                    }
                    if let Some(finish) = &mut self.finish {
                        finish.keep(&bytes);
                    }
                    self.buffer.extend_from_slice(&bytes);
                }
                Poll::Ready(Some(Err(e))) => {
                    warn!(error = %e, "Upstream body failed.");
                    let message = format!("the upstream stream failed: {e}");
                    return Poll::Ready(Some(self.fail(if e.is_timeout() {
                        ApiError::Timeout(message)
                    } else {
                        ApiError::Broken(message)
                    })));
                }
                Poll::Ready(None) => {
                    let rest = (!self.buffer.is_empty()).then(|| self.buffer.split().freeze());
                    // What a guard still holds goes out (guarded) before the rest.
                    if let Some(guard) = &mut self.guard {
                        guard.flush(&mut self.ready);
                    }
                    self.ready.extend(rest);
                    // A stream that ends without `[DONE]` was cut off: the client is told so
                    // in band, and gets no `[DONE]`.
                    if self.saw_done {
                        self.finish(Class::Ok);
                    } else {
                        warn!("The upstream stream ended without [DONE].");
                        let event = self.fail(ApiError::Broken(
                            "the upstream stream ended early, without its final event".into(),
                        ));
                        self.ready.push_back(event);
                    }
                    return Poll::Ready(self.ready.pop_front());
                }
                Poll::Pending => {
                    if self.deadline.as_mut().poll(cx).is_ready() {
                        let what = if self.waiting_first {
                            "the first chunk"
                        } else {
                            "the end of the answer"
                        };
                        return Poll::Ready(Some(self.fail(ApiError::Timeout(format!(
                            "the upstream timed out waiting for {what}"
                        )))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// `POST /v1/feedback {request_id, rating 1–5 | value, metric?, comment?}`: stored with the
/// route and version that served the request, and counted in that version's window.
async fn feedback(shared: &Shared, request: Request<Incoming>) -> Response<GatewayBody> {
    let Some(store) = &shared.store else {
        return ApiError::Unavailable(
            "feedback needs the store; this gateway runs without one".into(),
        )
        .into_response();
    };
    let body = match read_body(request, 64 * 1024, shared.limits.server.body_read_timeout).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let bad = |message: &str| ApiError::InvalidRequest(message.to_owned()).into_response();
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return bad(
            "expected a JSON object: {\"request_id\", \"rating\" (1–5) or \"value\", \"metric\"?, \"comment\"?}",
        );
    };
    let Some(request_id) = body.get("request_id").and_then(Value::as_str) else {
        return bad("`request_id` is required: the `x-request-id` header of the answer");
    };
    let rating = body.get("rating");
    let value = body.get("value");
    let comment = body.get("comment").and_then(Value::as_str);
    let score = match (rating, value) {
        (Some(r), None) => match r.as_u64().filter(|r| (1..=5).contains(r)) {
            Some(r) => Some((r - 1) as f64 / 4.0),
            None => return bad("`rating` must be a whole number from 1 to 5"),
        },
        (None, Some(Value::Bool(b))) => Some(if *b { 1.0 } else { 0.0 }),
        (None, Some(Value::Number(n))) => n.as_f64().filter(|v| (0.0..=1.0).contains(v)),
        (None, Some(_)) => return bad("`value` must be a number or a boolean"),
        (Some(_), Some(_)) => return bad("give either `rating` or `value`, not both"),
        (None, None) if comment.is_some() => None,
        (None, None) => return bad("give a `rating` (1–5), a `value` or a `comment`"),
    };
    let served = shared
        .recent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(request_id)
        .cloned();
    let Some((route, version)) = served else {
        return ApiError::NotFound(
            format!(
                "unknown request id `{request_id}` (feedback is taken for the last 100,000 requests this gateway served)"
            ),
        )
        .into_response();
    };
    if let Some(score) = score {
        shared
            .metrics
            .version(&route, &version)
            .record_feedback(score);
    }
    let event = NewEvent {
        subject: format!("gateway:{route}"),
        kind: "feedback".into(),
        payload: json!({
            "request_id": request_id,
            "route": route,
            "version": version,
            "rating": rating,
            "value": value,
            "score": score,
            "metric": body.get("metric").and_then(Value::as_str),
            "comment": comment.map(sluice_safety::record::text_for_log),
        }),
    };
    match store.append_events(vec![event]).await {
        Ok(ids) => json_response(
            StatusCode::OK,
            &json!({"feedback_id": ids.first(), "route": route, "version": version}),
        ),
        Err(e) => {
            ApiError::Unavailable(format!("the feedback could not be stored: {e}")).into_response()
        }
    }
}

/// Dispatches a request on the public listener.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Response<GatewayBody> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (&method, path.as_str()) {
        (&Method::POST, "/v1/chat/completions") => forward(&shared, Endpoint::Chat, request).await,
        (&Method::POST, "/v1/completions") => {
            forward(&shared, Endpoint::Completions, request).await
        }
        (&Method::POST, "/v1/embeddings") => forward(&shared, Endpoint::Embeddings, request).await,
        (&Method::GET, "/v1/models") => models(&shared),
        (&Method::POST, "/v1/feedback") => feedback(&shared, request).await,
        (&Method::GET, "/metrics") => full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(shared.prometheus()),
        ),
        (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (_, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings") => {
            ApiError::MethodNotAllowed(format!("{method} is not allowed on {path}; use POST"))
                .into_response()
        }
        _ => ApiError::NotFound(format!("no such endpoint: {method} {path}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_chunks_carry_no_token() {
        assert!(!carries_token(
            br#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(carries_token(
            br#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#
        ));
        assert!(carries_token(
            br#"data: {"choices":[{"text":" once","index":0}]}"#
        ));
        assert!(carries_token(
            br#"data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#
        ));
    }

    #[test]
    fn events_end_at_blank_lines_of_either_kind() {
        assert_eq!(event_end(b"data: x\n\ndata: y"), Some(9));
        assert_eq!(event_end(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(event_end(b"data: x\n"), None);
    }

    #[test]
    fn rewriting_sets_the_upstream_model_and_forces_usage() {
        let version = Version {
            name: "candidate".into(),
            upstreams: crate::route::Upstreams::one("http://x/v1"),
            model: "upstream-model".into(),
            api_key: None,
            system_prompt: Some("Be brief.".into()),
            params: Map::from_iter([
                ("temperature".to_owned(), json!(0.2)),
                ("top_p".to_owned(), json!(0.9)),
            ]),
            timeouts: crate::route::Timeouts::default(),
            safety: Default::default(),
        };
        let mut body: Map<String, Value> = serde_json::from_value(json!({
            "model": "chat", "stream": true, "top_p": 0.5,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap_or_default();
        assert!(!client_wants_usage(&body));
        rewrite(&mut body, &version, Endpoint::Chat, true);
        assert_eq!(body["model"], "upstream-model");
        assert_eq!(body["messages"][0]["content"], "Be brief.");
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["top_p"], 0.5);
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
