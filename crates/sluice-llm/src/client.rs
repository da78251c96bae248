//! The HTTP client: requests, retries, timeouts, streaming and timing.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::{EndpointSpec, Secret};
use tokio::time::{Instant as TokioInstant, timeout_at};
use tracing::{debug, warn};

use crate::error::{LlmError, TimeoutPhase};
use crate::retry::{self, RetryPolicy};
use crate::sse::SseParser;
use crate::stream::{Generation, StreamAccumulator, Timing};
use crate::types::{
    ChatCompletion, ChatRequest, CompletionRequest, EmbeddingRequest, EmbeddingResponse, ErrorBody,
    ModelList, StreamOptions, TextCompletion,
};

/// The `Authorization: Bearer` header for a key, marked sensitive so that no HTTP-level
/// debug output shows it.
fn bearer(key: &Secret) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Timeouts applied to every request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// Establishing a TCP (and TLS) connection.
    pub connect: Duration,
    /// From sending to the response headers and, for streams, to the first content chunk.
    pub first_token: Option<Duration>,
    /// From sending to the end of the response, per attempt.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_token: None,
            total: Duration::from_secs(600),
        }
    }
}

/// The largest response body read (64 MiB); a larger one is an error, not an allocation.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Everything needed to build a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL including the API prefix, e.g. `http://127.0.0.1:8000/v1`. A URL with no path
    /// gets `/v1` appended.
    pub base_url: String,
    /// The key, already read from its environment variable (see [`ClientConfig::key_from_env`]).
    pub api_key: Option<Secret>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retries.
    pub retry: RetryPolicy,
    /// Count tokens with the offline tokenizer when the server sends no usage.
    pub tokenizer: bool,
}

impl ClientConfig {
    /// A config with defaults for `base_url` and no key.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            tokenizer: true,
        }
    }

    /// A config with defaults for an endpoint, its key read with `lookup` (the process
    /// environment in production) when the endpoint names a variable; an unset or empty
    /// variable is an error.
    pub fn for_endpoint(
        endpoint: &EndpointSpec,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LlmError> {
        let config = Self::new(&endpoint.base_url);
        match &endpoint.api_key_env {
            Some(var) => config.key_from_env(var, lookup),
            None => Ok(config),
        }
    }

    /// Reads the API key from the environment variable `var`; an unset variable is an error.
    pub fn key_from_env(
        mut self,
        var: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LlmError> {
        let key = lookup(var)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| LlmError::MissingApiKey {
                var: var.to_owned(),
            })?;
        self.api_key = Some(Secret::new(key));
        Ok(self)
    }
}

/// An OpenAI-compatible client. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    tokenizer: bool,
}

/// The successful HTTP response of the final attempt.
struct Sent {
    response: reqwest::Response,
    start: Instant,
    deadline: TokioInstant,
    attempts: u32,
    retry_wait: Duration,
}

impl Client {
    /// Builds a client; fails on a base URL that is not absolute http(s).
    pub fn new(config: ClientConfig) -> Result<Self, LlmError> {
        let base_url = normalize_base_url(&config.base_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| LlmError::Connect {
                url: base_url.clone(),
                reason: error.to_string(),
            })?;
        Ok(Self {
            http,
            base_url,
            api_key: config.api_key,
            timeouts: config.timeouts,
            retry: config.retry,
            tokenizer: config.tokenizer,
        })
    }

    /// The normalized base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A non-streaming chat completion.
    pub async fn chat(&self, request: &ChatRequest) -> Result<Generation, LlmError> {
        let mut request = request.clone();
        request.stream = None;
        request.stream_options = None;
        let url = self.url("chat/completions");
        let sent = self.send(&url, &request).await?;
        let (completion, timing, attempts): (ChatCompletion, _, _) =
            self.read_json(&url, sent, "chat completion").await?;
        let mut generation = Generation::from_response(
            completion.id,
            completion.model,
            completion.usage,
            timing,
            attempts,
        );
        if let Some(choice) = completion.choices.into_iter().next() {
            generation.text = choice.message.content.unwrap_or_default();
            generation.reasoning = choice.message.reasoning_content.unwrap_or_default();
            generation.tool_calls = choice.message.tool_calls.unwrap_or_default();
            generation.finish_reason = choice.finish_reason;
        }
        Ok(self.finish(generation, &request.model, &chat_prompt_text(&request)))
    }

    /// A streaming chat completion, asking for a usage chunk unless the request says otherwise.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<Generation, LlmError> {
        let mut request = request.clone();
        request.stream = Some(true);
        let options = request
            .stream_options
            .get_or_insert_with(StreamOptions::default);
        options.include_usage.get_or_insert(true);
        let url = self.url("chat/completions");
        let generation = self.stream(&url, &request).await?;
        Ok(self.finish(generation, &request.model, &chat_prompt_text(&request)))
    }

    /// A non-streaming text completion.
    pub async fn completion(&self, request: &CompletionRequest) -> Result<Generation, LlmError> {
        let mut request = request.clone();
        request.stream = None;
        request.stream_options = None;
        let url = self.url("completions");
        let sent = self.send(&url, &request).await?;
        let (completion, timing, attempts): (TextCompletion, _, _) =
            self.read_json(&url, sent, "text completion").await?;
        let mut generation = Generation::from_response(
            completion.id,
            completion.model,
            completion.usage,
            timing,
            attempts,
        );
        if let Some(choice) = completion.choices.into_iter().next() {
            generation.text = choice.text;
            generation.finish_reason = choice.finish_reason;
        }
        Ok(self.finish(
            generation,
            &request.model,
            &request.prompt.as_slice().join("\n"),
        ))
    }

    /// A streaming text completion.
    pub async fn completion_stream(
        &self,
        request: &CompletionRequest,
    ) -> Result<Generation, LlmError> {
        let mut request = request.clone();
        request.stream = Some(true);
        let options = request
            .stream_options
            .get_or_insert_with(StreamOptions::default);
        options.include_usage.get_or_insert(true);
        let url = self.url("completions");
        let generation = self.stream(&url, &request).await?;
        Ok(self.finish(
            generation,
            &request.model,
            &request.prompt.as_slice().join("\n"),
        ))
    }

    /// Embeddings, with the request's timing.
    pub async fn embeddings(
        &self,
        request: &EmbeddingRequest,
    ) -> Result<(EmbeddingResponse, Timing), LlmError> {
        let url = self.url("embeddings");
        let sent = self.send(&url, request).await?;
        let (response, timing, _) = self.read_json(&url, sent, "embeddings response").await?;
        Ok((response, timing))
    }

    /// The server's model list.
    pub async fn models(&self) -> Result<ModelList, LlmError> {
        let url = self.url("models");
        let sent = self.attempt_loop(&url, None).await?;
        let (models, _, _) = self.read_json(&url, sent, "model list").await?;
        Ok(models)
    }

    /// Fills what the response may have left out (the model name) and the token counts.
    fn finish(
        &self,
        mut generation: Generation,
        requested_model: &str,
        prompt_text: &str,
    ) -> Generation {
        if generation.model.is_empty() {
            generation.model = requested_model.to_owned();
        }
        generation.count_tokens(prompt_text, self.tokenizer);
        generation
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.base_url)
    }

    async fn send<T: Serialize>(&self, url: &str, body: &T) -> Result<Sent, LlmError> {
        let body = serde_json::to_vec(body).map_err(|error| LlmError::InvalidBody {
            url: url.to_owned(),
            expected: "request",
            reason: error.to_string(),
            snippet: String::new(),
        })?;
        self.attempt_loop(url, Some(Bytes::from(body))).await
    }

    /// Sends until a success status, a non-retryable failure, or retries run out.
    async fn attempt_loop(&self, url: &str, body: Option<Bytes>) -> Result<Sent, LlmError> {
        let mut retry_wait = Duration::ZERO;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let start = Instant::now();
            let deadline = TokioInstant::now() + self.timeouts.total;
            let header_deadline = match self.timeouts.first_token {
                Some(first_token) => deadline.min(TokioInstant::now() + first_token),
                None => deadline,
            };
            let mut builder = match &body {
                Some(body) => self
                    .http
                    .post(url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone()),
                None => self.http.get(url),
            };
            if let Some(header) = self.api_key.as_ref().and_then(bearer) {
                builder = builder.header(AUTHORIZATION, header);
            }
            debug!(url, attempt, "Sending request.");
            let retries_left = attempt <= self.retry.max_retries;
            let outcome = match timeout_at(header_deadline, builder.send()).await {
                Err(_) => {
                    let (phase, after) = match self.timeouts.first_token {
                        Some(first_token) if header_deadline < deadline => {
                            (TimeoutPhase::FirstToken, first_token)
                        }
                        _ => (TimeoutPhase::Total, self.timeouts.total),
                    };
                    Err(LlmError::Timeout {
                        url: url.to_owned(),
                        phase,
                        after,
                    })
                }
                Ok(Err(error)) => Err(self.transport_error(url, &error)),
                Ok(Ok(response)) => Ok(response),
            };
            let response = match outcome {
                Ok(response) => response,
                Err(error)
                    if retries_left
                        && matches!(error, LlmError::Connect { .. } | LlmError::Timeout { .. }) =>
                {
                    let wait = self.retry.backoff(attempt - 1);
                    warn!(
                        url,
                        attempt,
                        error_class = error.class(),
                        wait_ms = wait.as_millis() as u64,
                        "Retrying after a transport failure."
                    );
                    tokio::time::sleep(wait).await;
                    retry_wait += wait;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let status = response.status();
            if status.is_success() {
                return Ok(Sent {
                    response,
                    start,
                    deadline,
                    attempts: attempt,
                    retry_wait,
                });
            }
            let headers = response.headers().clone();
            let allowed = retry::should_retry_header(&headers)
                .unwrap_or_else(|| retry::is_retryable_status(status));
            let error = status_error(url, status.as_u16(), response).await;
            if retries_left && allowed {
                let wait = self
                    .retry
                    .delay_after(&headers, attempt - 1, SystemTime::now());
                warn!(
                    url,
                    attempt,
                    status = status.as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    "Retrying after an error status."
                );
                tokio::time::sleep(wait).await;
                retry_wait += wait;
                continue;
            }
            return Err(error);
        }
    }

    fn transport_error(&self, url: &str, error: &reqwest::Error) -> LlmError {
        if error.is_connect() && error.is_timeout() {
            LlmError::Timeout {
                url: url.to_owned(),
                phase: TimeoutPhase::Connect,
                after: self.timeouts.connect,
            }
        } else {
            LlmError::Connect {
                url: url.to_owned(),
                reason: sluice_core::error_chain(error),
            }
        }
    }

    async fn read_json<T: DeserializeOwned>(
        &self,
        url: &str,
        sent: Sent,
        expected: &'static str,
    ) -> Result<(T, Timing, u32), LlmError> {
        let mut chunks = sent.response.bytes_stream();
        let mut body = Vec::new();
        loop {
            match timeout_at(sent.deadline, chunks.next()).await {
                Err(_) => {
                    return Err(LlmError::Timeout {
                        url: url.to_owned(),
                        phase: TimeoutPhase::Total,
                        after: self.timeouts.total,
                    });
                }
                Ok(Some(Err(error))) => {
                    return Err(LlmError::Body {
                        url: url.to_owned(),
                        reason: sluice_core::error_chain(&error),
                    });
                }
                Ok(Some(Ok(bytes))) => {
                    if body.len() + bytes.len() > MAX_RESPONSE_BYTES {
                        return Err(LlmError::TooLarge {
                            url: url.to_owned(),
                            limit: MAX_RESPONSE_BYTES,
                        });
                    }
                    body.extend_from_slice(&bytes);
                }
                Ok(None) => break,
            }
        }
        let elapsed = sent.start.elapsed();
        let value = serde_json::from_slice(&body).map_err(|error| LlmError::InvalidBody {
            url: url.to_owned(),
            expected,
            reason: error.to_string(),
            snippet: String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned(),
        })?;
        let timing = Timing {
            ttft: Some(elapsed),
            chunk_gaps: Vec::new(),
            e2e: elapsed,
            content_chunks: 1,
            retry_wait: sent.retry_wait,
        };
        Ok((value, timing, sent.attempts))
    }

    /// Sends a streaming request and reads it to `[DONE]`. Nothing is retried once the response
    /// has started: a partial generation may already have been billed and seen.
    async fn stream<T: Serialize>(&self, url: &str, request: &T) -> Result<Generation, LlmError> {
        let sent = self.send(url, request).await?;
        let first_token_deadline = self
            .timeouts
            .first_token
            .map(|limit| TokioInstant::from_std(sent.start + limit));
        let mut accumulator = StreamAccumulator::new(url, sent.start);
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut body = sent.response.bytes_stream();
        let mut body_ended;
        let mut received = 0usize;
        loop {
            let (deadline, phase, after) = match first_token_deadline {
                Some(first) if !accumulator.has_content() && first < sent.deadline => (
                    first,
                    TimeoutPhase::FirstToken,
                    self.timeouts.first_token.unwrap_or_default(),
                ),
                _ => (sent.deadline, TimeoutPhase::Total, self.timeouts.total),
            };
            let next = match timeout_at(deadline, body.next()).await {
                Err(_) => {
                    return Err(LlmError::Timeout {
                        url: url.to_owned(),
                        phase,
                        after,
                    });
                }
                Ok(next) => next,
            };
            let at = Instant::now();
            body_ended = next.is_none();
            match next {
                Some(Ok(bytes)) => {
                    received += bytes.len();
                    if received > MAX_RESPONSE_BYTES {
                        return Err(LlmError::TooLarge {
                            url: url.to_owned(),
                            limit: MAX_RESPONSE_BYTES,
                        });
                    }
                    parser.feed(&bytes, &mut events);
                }
                Some(Err(error)) => {
                    return Err(LlmError::Body {
                        url: url.to_owned(),
                        reason: sluice_core::error_chain(&error),
                    });
                }
                None => parser.finish(&mut events),
            }
            for event in events.drain(..) {
                accumulator.on_event(&event, at)?;
            }
            if accumulator.is_done() || body_ended {
                break;
            }
        }
        if !body_ended {
            // Read the chunked terminator that follows `[DONE]` so the connection returns to
            // the pool; a server that keeps the body open is not waited for.
            let drain = async { while let Some(Ok(_)) = body.next().await {} };
            let _ = tokio::time::timeout(Duration::from_millis(20), drain).await;
        }
        let mut generation = accumulator.finish()?;
        generation.attempts = sent.attempts;
        generation.timing.retry_wait = sent.retry_wait;
        Ok(generation)
    }
}

fn chat_prompt_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .map(|message| message.text())
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalize_base_url(raw: &str) -> Result<String, LlmError> {
    let invalid = || LlmError::InvalidUrl {
        url: raw.to_owned(),
    };
    let url = reqwest::Url::parse(raw.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    let mut text = url.as_str().trim_end_matches('/').to_owned();
    if url.path() == "/" || url.path().is_empty() {
        text.push_str("/v1");
    }
    Ok(text)
}

async fn status_error(url: &str, status: u16, response: reqwest::Response) -> LlmError {
    let body = response.bytes().await.unwrap_or_default();
    let (message, code) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(parsed) if !parsed.error.message.is_empty() => {
            let code = parsed
                .error
                .code
                .map(|code| {
                    code.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| code.to_string())
                })
                .or(parsed.error.kind);
            (parsed.error.message, code)
        }
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned();
            (
                if text.is_empty() {
                    "(empty body)".to_owned()
                } else {
                    text
                },
                None,
            )
        }
    };
    LlmError::Status {
        url: url.to_owned(),
        status,
        message,
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_s_key_is_read_from_its_variable() {
        let endpoint = EndpointSpec::new("http://h:1/v1", "m");
        let lookup = |name: &str| (name == "KEY").then(|| "sk-1".to_owned());
        let plain = ClientConfig::for_endpoint(&endpoint, lookup).unwrap();
        assert_eq!(plain.base_url, "http://h:1/v1");
        assert!(plain.api_key.is_none());
        let keyed = endpoint.clone().with_api_key_env(Some("KEY".into()));
        let config = ClientConfig::for_endpoint(&keyed, lookup).unwrap();
        assert_eq!(
            config.api_key.map(|k| k.expose().to_owned()).as_deref(),
            Some("sk-1")
        );
        let unset = endpoint.with_api_key_env(Some("NOPE".into()));
        assert!(matches!(
            ClientConfig::for_endpoint(&unset, lookup),
            Err(LlmError::MissingApiKey { var }) if var == "NOPE"
        ));
    }

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8000").unwrap(),
            "http://127.0.0.1:8000/v1"
        );
        assert_eq!(
            normalize_base_url("http://h:1/v1/").unwrap(),
            "http://h:1/v1"
        );
        assert_eq!(
            normalize_base_url("https://h/openai/v1").unwrap(),
            "https://h/openai/v1"
        );
        assert!(matches!(
            normalize_base_url("localhost:8000"),
            Err(LlmError::InvalidUrl { .. })
        ));
        assert!(matches!(
            normalize_base_url("ftp://h"),
            Err(LlmError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn api_keys_do_not_debug_print() {
        let key = Secret::new("sk-secret");
        assert!(!format!("{key:?}").contains("secret"));
        assert!(bearer(&key).is_some_and(|h| h.is_sensitive()));
        let config = ClientConfig::new("http://h")
            .key_from_env("K", |_| Some("sk-secret".into()))
            .unwrap();
        assert!(!format!("{config:?}").contains("secret"));
        assert!(matches!(
            ClientConfig::new("http://h").key_from_env("K", |_| None),
            Err(LlmError::MissingApiKey { .. })
        ));
    }
}
