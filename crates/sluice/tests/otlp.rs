//! The gateway's request spans over OTLP, received and decoded by the reference definitions
//! (`tests/python/otlp_receiver.py`: the `opentelemetry-proto` package's generated classes,
//! served over HTTP and over gRPC by `grpcio`). `SLUICE_OTLP_PYTHON` names a Python with both
//! packages; `.ci/run` installs them and sets `SLUICE_REQUIRE_OTLP`, so there a missing one
//! fails the tests, and elsewhere they say they were skipped.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::exchange;

/// The receiver's process, its ports and the spans it reports.
struct Receiver {
    child: Child,
    http: u16,
    grpc: u16,
    spans: mpsc::Receiver<serde_json::Value>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Starts it, when a Python with the packages is named.
    fn start() -> Option<Receiver> {
        let Some(python) = std::env::var_os("SLUICE_OTLP_PYTHON") else {
            assert!(
                std::env::var_os("SLUICE_REQUIRE_OTLP").is_none(),
                "SLUICE_OTLP_PYTHON is required here"
            );
            eprintln!(
                "skipped: set SLUICE_OTLP_PYTHON to a python with opentelemetry-proto and grpcio"
            );
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ports: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let (sender, spans) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if sender.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        Some(Receiver {
            child,
            http: u16::try_from(ports["http"].as_u64().unwrap()).unwrap(),
            grpc: u16::try_from(ports["grpc"].as_u64().unwrap()).unwrap(),
            spans,
        })
    }

    /// The next `n` spans (up to 15 s).
    fn take(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut spans = Vec::new();
        while spans.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.spans.recv_timeout(left) {
                Ok(span) => spans.push(span),
                Err(_) => panic!("{} of {n} spans arrived: {spans:#?}", spans.len()),
            }
        }
        spans
    }
}

/// An OpenAI-compatible upstream that answers every chat with the same completion and keeps
/// the `traceparent` each request carried.
fn upstream() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut traceparent) = (0usize, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("traceparent:") {
                    traceparent = Some(line["traceparent:".len()..].trim().to_owned());
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock().unwrap().push(traceparent);
            let answer = r#"{"id":"c-1","object":"chat.completion","model":"upstream-model-7","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (format!("http://{address}/v1"), seen)
}

/// A gateway with route `chat` on `upstream` (version `v1`, model `m-1`) and route `down` on
/// a port nothing listens on, exporting spans as `telemetry` says.
fn gateway(dir: &Path, upstream: &str, telemetry: &str) -> common::Gateway {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  chat:\n    versions: [{{name: v1, url: \"{upstream}\", model: m-1}}]\n  down:\n    versions: [{{name: v9, url: \"http://{closed}/v1\", model: m-9}}]\ntelemetry:\n  otlp: {telemetry}\n"
        ),
    )
    .unwrap();
    common::Gateway::start(&config, &dir.join("s.db"))
}

fn chat(gateway: &common::Gateway, route: &str, headers: &str) -> String {
    exchange(
        gateway
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/v1"),
        "POST /v1/chat/completions HTTP/1.1",
        &format!("content-type: application/json\r\n{headers}"),
        &format!(r#"{{"model":"{route}","messages":[{{"role":"user","content":"hello"}}]}}"#),
    )
}

/// Over HTTP/protobuf: a span per request in the GenAI conventions, a child of the client's
/// `traceparent`, whose own context went to the upstream; a failed request's span says so.
#[test]
fn spans_go_over_http_in_the_genai_conventions_and_the_trace_goes_upstream() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (upstream_url, seen) = upstream();
    let gateway = gateway(
        dir.path(),
        &upstream_url,
        &format!(
            "{{endpoint: \"http://127.0.0.1:{}\", service_name: edge-gw}}",
            receiver.http
        ),
    );
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let answer = chat(&gateway, "chat", &format!("traceparent: {parent}\r\n"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = chat(&gateway, "chat", "");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let failed = chat(&gateway, "down", "");
    assert!(!failed.starts_with("HTTP/1.1 200"), "{failed}");
    let mut spans = receiver.take(3);
    spans.sort_by_key(|s| s["start"].as_u64());
    let (child, root, down) = (&spans[0], &spans[1], &spans[2]);

    assert_eq!(child["protocol"], "http");
    assert_eq!(child["resource"]["service.name"], "edge-gw");
    assert_eq!(child["name"], "chat m-1");
    assert_eq!(child["kind"], 2, "a server span");
    assert_eq!(child["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(child["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(child["unknown_fields"], 0);
    let attributes = &child["attributes"];
    for (key, value) in [
        ("gen_ai.operation.name", serde_json::json!("chat")),
        ("gen_ai.provider.name", serde_json::json!("openai")),
        ("gen_ai.request.model", serde_json::json!("m-1")),
        (
            "gen_ai.response.model",
            serde_json::json!("upstream-model-7"),
        ),
        ("gen_ai.usage.input_tokens", serde_json::json!(11)),
        ("gen_ai.usage.output_tokens", serde_json::json!(3)),
        (
            "gen_ai.response.finish_reasons",
            serde_json::json!(["stop"]),
        ),
        ("sluice.route", serde_json::json!("chat")),
        ("sluice.version", serde_json::json!("v1")),
        ("sluice.outcome", serde_json::json!("ok")),
    ] {
        assert_eq!(attributes[key], value, "{key} in {child:#}");
    }
    assert!(child["end"].as_u64() >= child["start"].as_u64());
    assert_eq!(child["status"], serde_json::json!({}), "{child:#}");

    assert_eq!(root["parent_span_id"], "");
    assert_ne!(root["trace_id"], child["trace_id"]);
    // Each upstream request carried its span's context.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            Some(format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                child["span_id"].as_str().unwrap()
            )),
            Some(format!(
                "00-{}-{}-01",
                root["trace_id"].as_str().unwrap(),
                root["span_id"].as_str().unwrap()
            )),
        ]
    );

    assert_eq!(down["name"], "chat m-9");
    assert_eq!(down["attributes"]["error.type"], "upstream_connect");
    assert_eq!(down["status"]["code"], "STATUS_CODE_ERROR", "{down:#}");
}

/// Over gRPC: the same span, received by grpcio's server.
#[test]
fn spans_go_over_grpc() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (upstream_url, _) = upstream();
    let gateway = gateway(
        dir.path(),
        &upstream_url,
        &format!(
            "{{endpoint: \"http://127.0.0.1:{}\", protocol: grpc}}",
            receiver.grpc
        ),
    );
    let answer = chat(&gateway, "chat", "");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let spans = receiver.take(1);
    assert_eq!(spans[0]["protocol"], "grpc");
    assert_eq!(spans[0]["resource"]["service.name"], "sluice-gateway");
    assert_eq!(spans[0]["name"], "chat m-1");
    assert_eq!(spans[0]["attributes"]["gen_ai.usage.output_tokens"], 3);
}

/// A collector that is down costs requests nothing: every request is answered, and the spans
/// that could not be sent are counted as dropped in `/metrics`.
#[test]
fn spans_for_a_collector_that_is_down_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream_url, _) = upstream();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gateway = gateway(
        dir.path(),
        &upstream_url,
        &format!("{{endpoint: \"http://{closed}\", timeout_ms: 500}}"),
    );
    for _ in 0..40 {
        let answer = chat(&gateway, "chat", "");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let address = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = exchange(&address, "GET /metrics HTTP/1.1", "", "");
        if metrics.contains("sluice_gateway_otlp_spans_total{outcome=\"dropped\"} 40") {
            assert!(
                metrics.contains("sluice_gateway_otlp_spans_total{outcome=\"exported\"} 0"),
                "{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
