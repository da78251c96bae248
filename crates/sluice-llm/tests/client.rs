//! The client against the simulator and scripted servers, over loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use std::time::{Duration, Instant};

use common::{Canned, scripted, simulator};
use sluice_llm::types::{ChatRequest, CompletionRequest, EmbeddingRequest, OneOrMany};
use sluice_llm::{
    Client, ClientConfig, LlmError, RetryPolicy, TimeoutPhase, Timeouts, TokenSource,
};

const SIM: &str = r#"
models:
  stable:
    script:
      - {match: "capital of France", answer: "The capital of France is Paris."}
      - {regex: "(?i)weather", tool_call: {name: get_weather, arguments: {city: Paris}}}
    default: echo
  slow:
    ttft_ms: 50
    tokens_per_second: 200
  broken:
    faults: {truncate_rate: 1.0}
  garbled:
    faults: {malformed_rate: 1.0}
  failing:
    faults: {stream_error_rate: 1.0}
"#;

fn client(base_url: &str) -> Client {
    Client::new(ClientConfig::new(base_url)).unwrap()
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn chat_streaming_and_not_agree_and_report_usage() {
    let sim = simulator(SIM).await;
    let client = client(&sim.base_url());
    let request = ChatRequest::user("stable", "What is the capital of France?");
    let plain = client.chat(&request).await.unwrap();
    let streamed = client.chat_stream(&request).await.unwrap();
    for generation in [&plain, &streamed] {
        assert_eq!(generation.text, "The capital of France is Paris.");
        assert_eq!(generation.finish_reason.as_deref(), Some("stop"));
        let usage = generation.usage.expect("usage");
        assert_eq!(usage.completion_tokens, 7);
        assert_eq!(usage.total_tokens, usage.prompt_tokens + 7);
        let tokens = generation.tokens.unwrap();
        assert_eq!(
            (tokens.completion, tokens.completion_source),
            (7, TokenSource::Usage)
        );
        assert_eq!(generation.attempts, 1);
    }
    // Seven content chunks: the role-only chunk does not count.
    assert_eq!(streamed.timing.content_chunks, 7);
    assert_eq!(streamed.timing.chunk_gaps.len(), 6);
    sim.shutdown().await;
}

#[tokio::test]
async fn completions_streaming_and_not() {
    let sim = simulator(SIM).await;
    let client = client(&sim.base_url());
    let mut request = CompletionRequest::new("stable", "one two three four five");
    request.max_tokens = Some(3);
    let plain = client.completion(&request).await.unwrap();
    let streamed = client.completion_stream(&request).await.unwrap();
    for generation in [&plain, &streamed] {
        assert_eq!(generation.text, "one two three");
        assert_eq!(generation.finish_reason.as_deref(), Some("length"));
        assert_eq!(generation.usage.unwrap().completion_tokens, 3);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn tool_calls_are_merged_from_the_stream() {
    let sim = simulator(SIM).await;
    let client = client(&sim.base_url());
    let request = ChatRequest::user("stable", "What's the weather like?");
    for generation in [
        client.chat(&request).await.unwrap(),
        client.chat_stream(&request).await.unwrap(),
    ] {
        assert_eq!(generation.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(generation.tool_calls.len(), 1);
        assert_eq!(generation.tool_calls[0].function.name, "get_weather");
        assert_eq!(
            generation.tool_calls[0].function.arguments,
            r#"{"city":"Paris"}"#
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn embeddings_and_models() {
    let sim = simulator(SIM).await;
    let client = client(&sim.base_url());
    let request = EmbeddingRequest {
        model: "stable".into(),
        input: OneOrMany::Many(vec![
            "Paris is in France".into(),
            "France has Paris".into(),
            "lattice gauge theory".into(),
        ]),
        extra: serde_json::Map::from_iter([("dimensions".to_owned(), serde_json::json!(64))]),
    };
    let (response, _) = client.embeddings(&request).await.unwrap();
    assert_eq!(response.data.len(), 3);
    assert!(response.data.iter().all(|d| d.embedding.len() == 64));
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(
        cosine(&response.data[0].embedding, &response.data[1].embedding)
            > cosine(&response.data[0].embedding, &response.data[2].embedding)
    );
    assert_eq!(response.usage.unwrap().prompt_tokens, 10);
    let models = client.models().await.unwrap();
    let names: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        names,
        vec!["broken", "failing", "garbled", "slow", "stable"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_at_least_that_long() {
    let ok = r#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let server = scripted(vec![
        Canned::json(
            429,
            "retry-after: 1\r\n",
            r#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#,
        ),
        Canned::json(200, "", ok),
    ])
    .await;
    let client = Client::new(ClientConfig {
        retry: fast_retries(),
        ..ClientConfig::new(&server.base_url)
    })
    .unwrap();
    let generation = client.chat(&ChatRequest::user("m", "hello")).await.unwrap();
    assert_eq!(generation.text, "hi");
    assert_eq!(generation.attempts, 2);
    let arrivals = server.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2);
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_secs(1),
        "waited {:?}",
        arrivals[1] - arrivals[0]
    );
    assert!(generation.timing.retry_wait >= Duration::from_secs(1));
}

#[tokio::test]
async fn non_retryable_statuses_fail_at_once_with_the_server_message() {
    let server = scripted(vec![Canned::json(401, "", r#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#)]).await;
    let client = Client::new(ClientConfig {
        retry: fast_retries(),
        ..ClientConfig::new(&server.base_url)
    })
    .unwrap();
    let error = client
        .chat(&ChatRequest::user("m", "hello"))
        .await
        .unwrap_err();
    match &error {
        LlmError::Status {
            status,
            message,
            code,
            ..
        } => {
            assert_eq!(
                (*status, message.as_str(), code.as_deref()),
                (401, "bad key", Some("invalid_api_key"))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.arrivals.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn no_retry_once_a_stream_has_started() {
    let partial =
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
    let server = scripted(vec![Canned::sse(partial), Canned::sse("data: [DONE]\n\n")]).await;
    let client = Client::new(ClientConfig {
        retry: fast_retries(),
        ..ClientConfig::new(&server.base_url)
    })
    .unwrap();
    let error = client
        .chat_stream(&ChatRequest::user("m", "hello"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LlmError::Truncated {
                received_chunks: 1,
                ..
            }
        ),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.arrivals.lock().unwrap().len(),
        1,
        "the stream was retried"
    );
}

#[tokio::test]
async fn truncated_malformed_and_in_band_errors_are_errors() {
    let sim = simulator(SIM).await;
    let client = client(&sim.base_url());
    let long = "one two three four five six seven eight";
    let error = client
        .chat_stream(&ChatRequest::user("broken", long))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Truncated { .. }), "{error}");
    assert!(
        error.to_string().contains("without `data: [DONE]`"),
        "{error}"
    );
    let error = client
        .chat_stream(&ChatRequest::user("garbled", long))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::InvalidBody { .. }), "{error}");
    let error = client
        .chat(&ChatRequest::user("garbled", long))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LlmError::InvalidBody {
                expected: "chat completion",
                ..
            }
        ),
        "{error}"
    );
    let error = client
        .chat_stream(&ChatRequest::user("failing", long))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::StreamError { message, .. } if message == "Simulated mid-stream failure."),
        "{error}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unreachable_servers_and_non_json_bodies_name_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(ClientConfig {
        retry: RetryPolicy::none(),
        ..ClientConfig::new(format!("http://{address}/v1"))
    })
    .unwrap();
    let error = client.chat(&ChatRequest::user("m", "x")).await.unwrap_err();
    assert!(matches!(error, LlmError::Connect { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("{address}/v1/chat/completions")),
        "{error}"
    );

    let server = scripted(vec![Canned(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 15\r\n\r\n<html>hi</html>"
            .to_vec(),
    )])
    .await;
    let error = Client::new(ClientConfig::new(&server.base_url))
        .unwrap()
        .chat(&ChatRequest::user("m", "x"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not a valid chat completion"),
        "{error}"
    );
    assert!(error.to_string().contains("<html>hi</html>"), "{error}");
}

#[tokio::test]
async fn first_token_timeout_fires_on_a_slow_stream() {
    let sim = simulator("models:\n  glacial:\n    ttft_ms: 400\n").await;
    let client = Client::new(ClientConfig {
        timeouts: Timeouts {
            first_token: Some(Duration::from_millis(100)),
            ..Timeouts::default()
        },
        retry: RetryPolicy::none(),
        ..ClientConfig::new(sim.base_url())
    })
    .unwrap();
    let started = Instant::now();
    let error = client
        .chat_stream(&ChatRequest::user("glacial", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LlmError::Timeout {
                phase: TimeoutPhase::FirstToken,
                ..
            }
        ),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_millis(350));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_tokenizer_counts_when_the_server_sends_no_usage() {
    let body = r#"{"id":"x","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello world"},"finish_reason":"stop"}]}"#;
    let server = scripted(vec![Canned::json(200, "", body)]).await;
    let generation = client(&server.base_url)
        .chat(&ChatRequest::user("gpt-4o-mini", "hi there"))
        .await
        .unwrap();
    let tokens = generation.tokens.unwrap();
    assert_eq!(
        (tokens.completion, tokens.completion_source),
        (2, TokenSource::O200k)
    );
    assert_eq!(
        (tokens.prompt, tokens.prompt_source),
        (2, TokenSource::O200k)
    );
}

#[tokio::test]
async fn huge_and_binary_bodies_are_errors_not_allocations() {
    let size = sluice_llm::MAX_RESPONSE_BYTES + 1024;
    let mut huge = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    )
    .into_bytes();
    huge.resize(huge.len() + size, b' ');
    let mut binary =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 6\r\n\r\n".to_vec();
    binary.extend_from_slice(&[0xff, 0xfe, 0x00, 0x9f, 0x92, 0x96]);
    let server = scripted(vec![Canned(huge), Canned(binary)]).await;
    let client = Client::new(ClientConfig {
        retry: RetryPolicy::none(),
        ..ClientConfig::new(&server.base_url)
    })
    .unwrap();
    let error = client.chat(&ChatRequest::user("m", "x")).await.unwrap_err();
    assert!(matches!(error, LlmError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("larger than 64 MiB"), "{error}");
    let error = client.chat(&ChatRequest::user("m", "x")).await.unwrap_err();
    assert!(matches!(error, LlmError::InvalidBody { .. }), "{error}");
}
