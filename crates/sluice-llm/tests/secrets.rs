//! An API key set in the environment never appears in any log line, even at `trace` level and
//! even when requests fail and are retried.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Canned, scripted};
use sluice_llm::types::ChatRequest;
use sluice_llm::{Client, ClientConfig, RetryPolicy};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_api_key_is_never_logged() {
    const KEY: &str = "sk-test-7c1d9e0b4a3f41d2a5b6";
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    // SAFETY-free: the variable is read through a closure, never via set_var in a threaded test.
    let lookup = |name: &str| (name == "SLUICE_TEST_KEY").then(|| KEY.to_owned());
    let ok = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
    let server = scripted(vec![
        Canned::json(500, "", r#"{"error":{"message":"boom"}}"#),
        Canned::json(401, "", r#"{"error":{"message":"bad key"}}"#),
        Canned::json(200, "", ok),
        Canned::sse("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"),
    ])
    .await;
    let config = ClientConfig {
        retry: RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        ..ClientConfig::new(&server.base_url)
    }
    .key_from_env("SLUICE_TEST_KEY", lookup)
    .unwrap();
    let client = Client::new(config).unwrap();
    let request = ChatRequest::user("m", "hello");
    let first = client.chat(&request).await.unwrap_err();
    let second = client.chat(&request).await.unwrap();
    let third = client.chat_stream(&request).await.unwrap_err();
    let errors = format!("{first} {first:?} {second:?} {third} {third:?} {client:?}");
    assert!(!errors.contains(KEY), "{errors}");

    // The key was sent: the server saw it.
    let requests = server.requests.lock().unwrap().join("\n");
    assert!(requests.contains(&format!("Bearer {KEY}")));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Sending request."),
        "trace logs were not captured:\n{logs}"
    );
    assert!(
        logs.lines().count() > 10,
        "too few log lines to prove anything:\n{logs}"
    );
    assert!(!logs.contains(KEY), "the key leaked into the logs:\n{logs}");
    assert!(
        !logs.contains("7c1d9e0b"),
        "part of the key leaked into the logs"
    );
}
