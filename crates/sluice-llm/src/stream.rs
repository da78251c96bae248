//! The result of one generation and the accumulator that builds it from stream chunks,
//! timing each chunk by when its bytes arrived.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::LlmError;
use crate::sse::SseEvent;
use crate::tokens::{self, TokenCounts, TokenSource};
use crate::types::{ErrorBody, StreamChunk, ToolCall, Usage};

/// When things happened during one request, measured on a monotonic clock from the moment the
/// final attempt was sent. Serialized with every duration in fractional milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timing {
    /// Time to the first chunk carrying content, reasoning or a tool call (not a role-only
    /// chunk). For a non-streaming request, the time to the complete body.
    pub ttft: Option<Duration>,
    /// Gap between each content chunk and the one before it (`ttft` + the sum of gaps is the
    /// time of the last content chunk).
    pub chunk_gaps: Vec<Duration>,
    /// Time to the end of the response (`[DONE]`, or the last body byte).
    pub e2e: Duration,
    /// Content-carrying chunks received (1 for a non-streaming body).
    pub content_chunks: usize,
    /// Time spent waiting between attempts before the final one.
    pub retry_wait: Duration,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Serialize for Timing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Timing", 6)?;
        out.serialize_field("ttft_ms", &self.ttft.map(ms))?;
        out.serialize_field("last_token_ms", &self.last_token().map(ms))?;
        out.serialize_field("e2e_ms", &ms(self.e2e))?;
        out.serialize_field(
            "chunk_gaps_ms",
            &self.chunk_gaps.iter().copied().map(ms).collect::<Vec<_>>(),
        )?;
        out.serialize_field("content_chunks", &self.content_chunks)?;
        out.serialize_field("retry_wait_ms", &ms(self.retry_wait))?;
        out.end()
    }
}

impl Timing {
    /// Time to the last content chunk (vLLM's end-to-end latency for a stream).
    pub fn last_token(&self) -> Option<Duration> {
        self.ttft
            .map(|ttft| ttft + self.chunk_gaps.iter().sum::<Duration>())
    }
}

/// One completed generation from either endpoint, streamed or not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Generation {
    /// The response id.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// The generated text (first choice).
    pub text: String,
    /// Reasoning text, when the server sends it.
    pub reasoning: String,
    /// Tool calls, merged from their streamed pieces.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// Usage as reported by the server.
    pub usage: Option<Usage>,
    /// Token counts with their source.
    pub tokens: Option<TokenCounts>,
    /// Timing of the final attempt.
    pub timing: Timing,
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
}

impl Generation {
    /// A generation from a non-streaming response, before its choice is read.
    pub(crate) fn from_response(
        id: String,
        model: String,
        usage: Option<Usage>,
        timing: Timing,
        attempts: u32,
    ) -> Self {
        Self {
            id,
            model,
            usage,
            timing,
            attempts,
            ..Self::default()
        }
    }

    /// Fills `tokens` from usage, else the tokenizer (when `use_tokenizer`), else chunk counts.
    pub(crate) fn count_tokens(&mut self, prompt_text: &str, use_tokenizer: bool) {
        let generated = || {
            let mut text = self.text.clone();
            text.push_str(&self.reasoning);
            for call in &self.tool_calls {
                text.push_str(&call.function.name);
                text.push_str(&call.function.arguments);
            }
            text
        };
        let tokenized = |text: &str| {
            if use_tokenizer {
                tokens::count(&self.model, text)
            } else {
                None
            }
        };
        let (prompt, prompt_source) = match self.usage {
            Some(usage) if usage.prompt_tokens > 0 || usage.completion_tokens > 0 => {
                (usage.prompt_tokens, TokenSource::Usage)
            }
            _ => tokenized(prompt_text).unwrap_or((0, TokenSource::ChunkCount)),
        };
        let (completion, completion_source) = match self.usage {
            Some(usage) if usage.prompt_tokens > 0 || usage.completion_tokens > 0 => {
                (usage.completion_tokens, TokenSource::Usage)
            }
            _ => tokenized(&generated())
                .unwrap_or((self.timing.content_chunks as u64, TokenSource::ChunkCount)),
        };
        self.tokens = Some(TokenCounts {
            prompt,
            prompt_source,
            completion,
            completion_source,
        });
    }
}

/// Builds a [`Generation`] from SSE events.
pub(crate) struct StreamAccumulator<'u> {
    url: &'u str,
    start: Instant,
    generation: Generation,
    last_content_at: Option<Instant>,
    chunks: usize,
    done: bool,
}

impl<'u> StreamAccumulator<'u> {
    pub(crate) fn new(url: &'u str, start: Instant) -> Self {
        Self {
            url,
            start,
            generation: Generation::default(),
            last_content_at: None,
            chunks: 0,
            done: false,
        }
    }

    /// Whether `[DONE]` arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether a content chunk arrived yet.
    pub(crate) fn has_content(&self) -> bool {
        self.last_content_at.is_some()
    }

    /// Applies one event whose bytes arrived at `at`.
    pub(crate) fn on_event(&mut self, event: &SseEvent, at: Instant) -> Result<(), LlmError> {
        if self.done {
            return Ok(());
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            self.generation.timing.e2e = at - self.start;
            return Ok(());
        }
        if event.event.as_deref() == Some("error") || data.starts_with("{\"error\"") {
            let message = serde_json::from_str::<ErrorBody>(data)
                .map(|body| body.error.message)
                .unwrap_or_else(|_| data.to_owned());
            return Err(LlmError::StreamError {
                url: self.url.to_owned(),
                message,
            });
        }
        let chunk: StreamChunk =
            serde_json::from_str(data).map_err(|error| LlmError::InvalidBody {
                url: self.url.to_owned(),
                expected: "stream chunk (JSON)",
                reason: error.to_string(),
                snippet: data.chars().take(120).collect(),
            })?;
        self.chunks += 1;
        self.apply(chunk, at);
        Ok(())
    }

    fn apply(&mut self, chunk: StreamChunk, at: Instant) {
        let generation = &mut self.generation;
        if generation.id.is_empty() {
            generation.id = chunk.id;
        }
        if generation.model.is_empty() {
            generation.model = chunk.model;
        }
        if chunk.usage.is_some() {
            generation.usage = chunk.usage;
        }
        let mut carried_content = false;
        for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
            if let Some(text) = choice.text.filter(|t| !t.is_empty()) {
                generation.text.push_str(&text);
                carried_content = true;
            }
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content.filter(|c| !c.is_empty()) {
                    generation.text.push_str(&content);
                    carried_content = true;
                }
                if let Some(reasoning) = delta.reasoning_content.filter(|r| !r.is_empty()) {
                    generation.reasoning.push_str(&reasoning);
                    carried_content = true;
                }
                for piece in delta.tool_calls.unwrap_or_default() {
                    carried_content = true;
                    if generation.tool_calls.len() <= piece.index {
                        generation
                            .tool_calls
                            .resize_with(piece.index + 1, ToolCall::default);
                    }
                    let call = &mut generation.tool_calls[piece.index];
                    if let Some(id) = piece.id {
                        call.id = id;
                    }
                    call.kind = "function".to_owned();
                    if let Some(function) = piece.function {
                        call.function
                            .name
                            .push_str(&function.name.unwrap_or_default());
                        call.function
                            .arguments
                            .push_str(&function.arguments.unwrap_or_default());
                    }
                }
            }
            if choice.finish_reason.is_some() {
                generation.finish_reason = choice.finish_reason;
            }
        }
        if carried_content {
            let timing = &mut generation.timing;
            match self.last_content_at {
                None => timing.ttft = Some(at - self.start),
                Some(previous) => timing.chunk_gaps.push(at - previous),
            }
            timing.content_chunks += 1;
            self.last_content_at = Some(at);
        }
    }

    /// Ends the stream; an end without `[DONE]` is a truncation.
    pub(crate) fn finish(self) -> Result<Generation, LlmError> {
        if !self.done {
            return Err(LlmError::Truncated {
                url: self.url.to_owned(),
                received_chunks: self.chunks,
            });
        }
        Ok(self.generation)
    }
}
