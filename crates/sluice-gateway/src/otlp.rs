//! Traces over OTLP: one span per proxied request, named and described in the OpenTelemetry
//! GenAI conventions (`chat {model}`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`…,
//! plus `sluice.route` and `sluice.version`), a child of the client's `traceparent` when it
//! sent one, whose context is passed on to the upstream. Spans go to a bounded queue that a
//! background task sends in batches, as protobuf over HTTP (`/v1/traces`) or gRPC
//! (`TraceService/Export`); when the queue is full or the collector does not take a batch,
//! the spans are dropped and counted — a request never waits for its trace.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// How spans are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST {endpoint}/v1/traces`, `application/x-protobuf`.
    HttpProtobuf,
    /// `opentelemetry.proto.collector.trace.v1.TraceService/Export` over HTTP/2.
    Grpc,
}

/// Where and how spans are exported (`telemetry.otlp` in the gateway's config).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector: `http://host:4318` for HTTP (`/v1/traces` is added unless the URL has
    /// a path), `http://host:4317` for gRPC.
    pub endpoint: String,
    /// HTTP/protobuf or gRPC.
    pub protocol: Protocol,
    /// Extra headers on every export (an API key, say).
    pub headers: Vec<(String, String)>,
    /// The resource's `service.name`.
    pub service_name: String,
    /// How long one export may take.
    pub timeout: Duration,
}

impl OtlpConfig {
    /// The URL a batch is posted to.
    fn url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        match self.protocol {
            Protocol::Grpc => {
                format!("{base}/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            }
            Protocol::HttpProtobuf => {
                let has_path = base
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.contains('/'));
                if has_path {
                    base.to_owned()
                } else {
                    format!("{base}/v1/traces")
                }
            }
        }
    }
}

/// A span's place in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace, shared with the client's and the upstream's spans.
    pub trace_id: [u8; 16],
    /// This span.
    pub span_id: [u8; 8],
    /// The client's span, when it sent a `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// The trace flags (`01`: sampled).
    pub flags: u8,
}

impl SpanContext {
    /// A new span: a child of the W3C `traceparent` header when it is valid, else the root
    /// of a new, sampled trace.
    pub fn child_of(traceparent: Option<&str>) -> Self {
        let span_id = random_id::<8>();
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => SpanContext {
                trace_id,
                span_id,
                parent: Some(parent),
                flags,
            },
            None => SpanContext {
                trace_id: random_id::<16>(),
                span_id,
                parent: None,
                flags: 1,
            },
        }
    }

    /// The `traceparent` that makes the upstream's span a child of this one.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }
}

/// `00-<32 hex trace>-<16 hex span>-<2 hex flags>`; all-zero ids and version `ff` are invalid.
fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = header.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || unhex::<1>(version).is_none() {
        return None;
    }
    // Version 00 has exactly four fields; later versions may add more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = unhex::<16>(trace)?;
    let span_id = unhex::<8>(span)?;
    let [flags] = unhex::<1>(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags))
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_id<const N: usize>() -> [u8; N] {
    loop {
        let mut id = [0; N];
        id.iter_mut().for_each(|b| *b = fastrand::u8(..));
        if id != [0; N] {
            return id;
        }
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A whole number.
    Int(i64),
    /// A number.
    Double(f64),
    /// A list of strings.
    StrList(Vec<String>),
}

/// A finished span, waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Its place in the trace.
    pub context: SpanContext,
    /// `chat gpt-4o-mini`.
    pub name: String,
    /// Start and end, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// See `start_unix_nanos`.
    pub end_unix_nanos: u64,
    /// Its attributes.
    pub attributes: Vec<(&'static str, Value)>,
    /// Why the request failed, when it did (the span's status is then an error).
    pub error: Option<String>,
}

/// Nanoseconds since the Unix epoch at `time`.
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Spans waiting to be sent, at most.
const QUEUE: usize = 4096;
/// Spans in one export, at most.
const MAX_BATCH: usize = 512;
/// How long a span waits for others to fill its batch.
const BATCH_DELAY: Duration = Duration::from_secs(1);

/// Where finished spans go.
#[derive(Debug)]
pub struct Tracer {
    queue: mpsc::Sender<Span>,
    counts: Arc<Counts>,
}

/// How many spans were sent and dropped.
#[derive(Debug, Default)]
pub struct Counts {
    exported: AtomicU64,
    dropped: AtomicU64,
}

impl Counts {
    /// Spans the collector took.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped: the queue was full or the collector did not take their batch.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Ends the exporter: what is queued is sent (within the export timeout), then it stops.
pub struct Stop {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Stop {
    /// Sends what is queued and waits for the exporter to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(self.timeout + Duration::from_secs(1), self.task)
            .await
            .is_err()
        {
            warn!("The last spans could not be exported before shutdown.");
        }
    }
}

impl Tracer {
    /// A tracer and its exporter task (spawned on the current runtime).
    pub fn start(config: OtlpConfig) -> (Arc<Tracer>, Stop) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = oneshot::channel();
        let timeout = config.timeout;
        let task = tokio::spawn(export_loop(
            Exporter::new(config),
            receiver,
            stopped,
            Arc::clone(&counts),
        ));
        (
            Arc::new(Tracer { queue, counts }),
            Stop {
                stop,
                task,
                timeout,
            },
        )
    }

    /// Queues a finished span; when the queue is full it is dropped and counted.
    pub fn submit(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many spans were sent and dropped.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

async fn export_loop(
    exporter: Exporter,
    mut spans: mpsc::Receiver<Span>,
    mut stopped: oneshot::Receiver<()>,
    counts: Arc<Counts>,
) {
    let mut last_warning: Option<std::time::Instant> = None;
    let mut stopping = false;
    loop {
        let first = tokio::select! {
            span = spans.recv() => span,
            _ = &mut stopped, if !stopping => {
                stopping = true;
                spans.close();
                continue;
            }
        };
        let Some(first) = first else {
            return;
        };
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < MAX_BATCH {
            let next = tokio::select! {
                span = spans.recv() => span,
                () = tokio::time::sleep_until(until) => None,
                _ = &mut stopped, if !stopping => {
                    stopping = true;
                    spans.close();
                    continue;
                }
            };
            match next {
                Some(span) => batch.push(span),
                None => break,
            }
        }
        let n = batch.len() as u64;
        match exporter.export(&batch).await {
            Ok(()) => {
                counts.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(why) => {
                counts.dropped.fetch_add(n, Ordering::Relaxed);
                if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    last_warning = Some(std::time::Instant::now());
                    warn!(spans = n, error = %why, "Cannot export spans; they are dropped (warned once a minute).");
                }
            }
        }
    }
}

/// Sends batches to the collector.
struct Exporter {
    config: OtlpConfig,
    url: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    resource: Vec<u8>,
}

impl Exporter {
    fn new(config: OtlpConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let mut builder = Client::builder(TokioExecutor::new());
        if config.protocol == Protocol::Grpc {
            builder.http2_only(true);
        }
        let client = builder.build(https);
        let resource = encode_resource(&config.service_name);
        Exporter {
            url: config.url(),
            config,
            client,
            resource,
        }
    }

    async fn export(&self, spans: &[Span]) -> Result<(), String> {
        let message = encode_request(&self.resource, spans);
        let (content_type, body) = match self.config.protocol {
            Protocol::HttpProtobuf => ("application/x-protobuf", message),
            Protocol::Grpc => {
                // Not compressed, then the message's length, big-endian.
                let mut framed = Vec::with_capacity(message.len() + 5);
                framed.push(0);
                framed.extend_from_slice(
                    &u32::try_from(message.len())
                        .unwrap_or(u32::MAX)
                        .to_be_bytes(),
                );
                framed.extend_from_slice(&message);
                ("application/grpc", framed)
            }
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(CONTENT_TYPE, content_type);
        if self.config.protocol == Protocol::Grpc {
            request = request.header("te", "trailers");
        }
        for (name, value) in &self.config.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad export request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{}: {e}", self.url))?;
            let status = response.status();
            let grpc_in_headers = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let collected = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{}: reading the answer: {e}", self.url))?;
            if !status.is_success() {
                return Err(format!("{} answered {status}", self.url));
            }
            if self.config.protocol == Protocol::Grpc {
                let grpc_status = collected
                    .trailers()
                    .and_then(|t| t.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .or(grpc_in_headers);
                match grpc_status.as_deref() {
                    Some("0") => {}
                    Some(code) => return Err(format!("{} answered grpc-status {code}", self.url)),
                    None => return Err(format!("{} answered without a grpc-status", self.url)),
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| {
                format!(
                    "{} did not answer within {} ms",
                    self.url,
                    self.config.timeout.as_millis()
                )
            })?
    }
}

/// Protobuf's wire format, as much of it as OTLP's trace messages need.
mod wire {
    /// Wire types.
    const VARINT: u8 = 0;
    const FIXED64: u8 = 1;
    const LEN: u8 = 2;
    const FIXED32: u8 = 5;

    pub fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire_type));
    }

    pub fn uint(out: &mut Vec<u8>, field: u32, value: u64) {
        key(out, field, VARINT);
        varint(out, value);
    }

    pub fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
        key(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
        key(out, field, FIXED32);
        out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
        key(out, field, LEN);
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    /// A nested message, written by `write`.
    pub fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = Vec::new();
        write(&mut inner);
        bytes(out, field, &inner);
    }
}

// Field numbers from opentelemetry-proto (`common/v1/common.proto`, `resource/v1/resource.proto`,
// `trace/v1/trace.proto`, `collector/trace/v1/trace_service.proto`).

/// `KeyValue { key = 1; AnyValue value = 2 }`; `AnyValue { string_value = 1; int_value = 3;
/// double_value = 4; ArrayValue array_value = 5 }`; `ArrayValue { repeated AnyValue values = 1 }`.
fn encode_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    wire::message(out, field, |kv| {
        wire::bytes(kv, 1, key.as_bytes());
        wire::message(kv, 2, |any| match value {
            Value::Str(s) => wire::bytes(any, 1, s.as_bytes()),
            Value::Int(i) => wire::uint(any, 3, *i as u64),
            Value::Double(d) => wire::fixed64(any, 4, d.to_bits()),
            Value::StrList(items) => wire::message(any, 5, |array| {
                for item in items {
                    wire::message(array, 1, |any| wire::bytes(any, 1, item.as_bytes()));
                }
            }),
        });
    });
}

/// `Resource { repeated KeyValue attributes = 1 }`: the service's name and the SDK's.
fn encode_resource(service_name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in [
        ("service.name", service_name),
        ("telemetry.sdk.name", "sluice"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ] {
        encode_attribute(&mut out, 1, key, &Value::Str(value.to_owned()));
    }
    out
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`;
/// `ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2 }`;
/// `ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }`;
/// `InstrumentationScope { name = 1; version = 2 }`.
pub fn encode_request(resource: &[u8], spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::message(&mut out, 1, |resource_spans| {
        wire::bytes(resource_spans, 1, resource);
        wire::message(resource_spans, 2, |scope_spans| {
            wire::message(scope_spans, 1, |scope| {
                wire::bytes(scope, 1, b"sluice-gateway");
                wire::bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for span in spans {
                wire::message(scope_spans, 2, |out| encode_span(out, span));
            }
        });
    });
    out
}

/// `Span { trace_id = 1; span_id = 2; parent_span_id = 4; name = 5; SpanKind kind = 6;
/// fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8; repeated KeyValue
/// attributes = 9; Status status = 15; fixed32 flags = 16 }`; `Status { message = 2;
/// StatusCode code = 3 }` (2: error); kind 2: server.
fn encode_span(out: &mut Vec<u8>, span: &Span) {
    const SPAN_KIND_SERVER: u64 = 2;
    const STATUS_ERROR: u64 = 2;
    wire::bytes(out, 1, &span.context.trace_id);
    wire::bytes(out, 2, &span.context.span_id);
    if let Some(parent) = &span.context.parent {
        wire::bytes(out, 4, parent);
    }
    wire::bytes(out, 5, span.name.as_bytes());
    wire::uint(out, 6, SPAN_KIND_SERVER);
    wire::fixed64(out, 7, span.start_unix_nanos);
    wire::fixed64(out, 8, span.end_unix_nanos);
    for (key, value) in &span.attributes {
        encode_attribute(out, 9, key, value);
    }
    if let Some(error) = &span.error {
        wire::message(out, 15, |status| {
            wire::bytes(status, 2, error.as_bytes());
            wire::uint(status, 3, STATUS_ERROR);
        });
    }
    // The W3C trace flags, with bit 8 saying whether the parent is remote.
    let remote = if span.context.parent.is_some() {
        0x300
    } else {
        0x100
    };
    wire::fixed32(out, 16, u32::from(span.context.flags) | remote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_the_w3c_recommendation_says() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = SpanContext::child_of(Some(good));
        assert_eq!(hex(&child.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            child.parent.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(child.span_id, [0; 8]);
        assert_eq!(
            child.traceparent(),
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                hex(&child.span_id)
            )
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let fresh = SpanContext::child_of(Some(bad));
            assert_eq!(fresh.parent, None, "{bad}");
            assert_eq!(fresh.flags, 1);
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(SpanContext::child_of(Some(later)).parent.is_some());
    }

    #[test]
    fn export_urls_follow_the_otlp_exporter_rules() {
        let config = |endpoint: &str, protocol| OtlpConfig {
            endpoint: endpoint.to_owned(),
            protocol,
            headers: Vec::new(),
            service_name: "s".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            config("http://c:4318", Protocol::HttpProtobuf).url(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            config("http://c:4318/custom/traces", Protocol::HttpProtobuf).url(),
            "http://c:4318/custom/traces"
        );
        assert_eq!(
            config("http://c:4317/", Protocol::Grpc).url(),
            "http://c:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
    }

    /// The bytes the reference implementation (the `opentelemetry-proto` package's generated
    /// classes) writes for this span, field by field in the same order.
    #[test]
    fn a_span_is_encoded_as_the_reference_encodes_it() {
        let span = Span {
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                parent: Some([3; 8]),
                flags: 1,
            },
            name: "chat m".into(),
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_000,
            attributes: vec![
                ("gen_ai.usage.input_tokens", Value::Int(12)),
                ("r", Value::StrList(vec!["stop".into()])),
            ],
            error: Some("boom".into()),
        };
        let mut out = Vec::new();
        encode_span(&mut out, &span);
        let expected = "0a100101010101010101010101010101010112080202020202020202220803030303030303032a0663686174206d300239e80300000000000041d0070000000000004a1f0a1967656e5f61692e75736167652e696e7075745f746f6b656e731202180c4a0f0a0172120a2a080a060a0473746f707a081204626f6f6d1802850101030000";
        assert_eq!(hex(&out), expected);
    }
}
