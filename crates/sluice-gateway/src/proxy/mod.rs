//! The OpenAI-compatible front: reads and checks a request, routes it once from the current
//! snapshot, rewrites it for the chosen version (upstream model name, system prompt, default
//! parameters, `include_usage` forced on streams), and passes the answer back as it arrives —
//! event by event for streams, with the usage chunk the client did not ask for removed —
//! recording the outcome in the version's metrics when the last byte has gone.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Sleep;
use tracing::{debug, warn};

use sluice_store::{NewEvent, Store};
use tokio::sync::{mpsc, oneshot};

use crate::api_error::ApiError;
use crate::client::{Post, ReadError, UpstreamClient};
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
    pub(super) clients: ArcSwap<HashMap<u64, UpstreamClient>>,
    pub(super) next_id: AtomicU64,
    pub(super) id_prefix: String,
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
    /// Where outcomes are recorded off the request path.
    pub recorder: Arc<Recorder>,
    /// The public listener's connections.
    pub connections: Arc<sluice_http::ConnectionStats>,
    /// Where request spans go, when they are exported.
    pub tracer: Option<Arc<crate::otlp::Tracer>>,
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        limits: Limits,
        metrics: Arc<Metrics>,
        store: Option<Store>,
        log: Option<RequestLog>,
        shadow: mpsc::Sender<Job>,
        recorder: Recorder,
    ) -> Self {
        Self {
            recorder: Arc::new(recorder),
            store,
            log,
            recent: Mutex::new(Recent::default()),
            shadow,
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            limits,
            clients: ArcSwap::from_pointee(HashMap::new()),
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:08x}", fastrand::u32(..)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            connections: Arc::default(),
            tracer: None,
        }
    }

    /// The upstream client for this connect timeout: one per timeout, each with its own
    /// connection pool, read without a lock (a new timeout is added copy-on-write).
    pub(crate) fn client(&self, connect: Duration) -> UpstreamClient {
        let key = u64::try_from(connect.as_millis()).unwrap_or(u64::MAX);
        if let Some(client) = self.clients.load().get(&key) {
            return client.clone();
        }
        let client = UpstreamClient::new(connect);
        self.clients.rcu(|clients| {
            let mut next = HashMap::clone(clients);
            next.entry(key).or_insert_with(|| client.clone());
            next
        });
        // Another request may have added one first: the map's is the one every request shares.
        self.clients.load().get(&key).cloned().unwrap_or(client)
    }

    /// Prometheus text: the metrics (queued outcomes recorded first), then the public
    /// listener's connections.
    pub(crate) async fn prometheus(&self) -> String {
        self.recorder.flush().await;
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
        if let Some(tracer) = &self.tracer {
            let counts = tracer.counts();
            text.push_str(&format!(
                "# HELP sluice_gateway_otlp_spans_total Request spans exported over OTLP, or dropped (queue full, collector down).
                 # TYPE sluice_gateway_otlp_spans_total counter
                 sluice_gateway_otlp_spans_total{{outcome=\"exported\"}} {}
                 sluice_gateway_otlp_spans_total{{outcome=\"dropped\"}} {}
",
                counts.exported(),
                counts.dropped()
            ));
        }
        text
    }

    pub(super) fn request_id(&self) -> String {
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

    /// The GenAI conventions' `gen_ai.operation.name`.
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "text_completion",
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

/// Largest non-streamed answer kept for the request log, and read when it must be guarded.
pub(super) const COLLECT_LIMIT: usize = 1 << 20;
/// Largest non-streamed answer passed on (as large as the client reads: embeddings of big
/// batches are tens of MiB).
pub(super) const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Most of a stream copied for the request log and shadow comparisons.
pub(super) const STREAM_CAPTURE_LIMIT: usize = 256 * 1024;

mod admission;
mod outcome;
mod recorder;
mod relay;
mod request;
mod upstream;

pub(crate) use admission::forward;
use outcome::*;
pub(crate) use recorder::Recorder;
use recorder::*;
use relay::*;
use request::ClientBody;
use upstream::*;

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
            Bytes::from(shared.prometheus().await),
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
    fn event_data_joins_data_lines_and_skips_comments() {
        assert_eq!(
            event_data(b"data: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(
            event_data(b"data:[DONE]\r\n\r\n").as_deref(),
            Some("[DONE]")
        );
        assert_eq!(
            event_data(b"event: x\ndata: {\"a\":\ndata: 1}\n\n").as_deref(),
            Some("{\"a\":\n1}")
        );
        assert_eq!(event_data(b": keep-alive\n\n"), None);
    }

    #[test]
    fn events_end_at_blank_lines_of_either_kind() {
        assert_eq!(event_end(b"data: x\n\ndata: y"), Some(9));
        assert_eq!(event_end(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(event_end(b"data: x\n"), None);
    }
}
