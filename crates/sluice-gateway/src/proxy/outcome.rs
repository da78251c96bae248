//! A request's outcome, recorded exactly once (when its answer ends, or when the client
//! leaves): its metrics at once, then the rest (the safety scan of what was sent, the request
//! log and any shadow comparison waiting for it) handed to the [`Recorder`].

use super::*;

/// Records a request's outcome once: when its answer ends, or when it is dropped unfinished
/// (the client left).
pub(crate) struct Finish {
    pub(super) metrics: Arc<VersionMetrics>,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) arrived: Instant,
    pub(super) upstream_started: Instant,
    pub(super) upstream_ended: Option<Instant>,
    pub(super) ttft: Option<Duration>,
    pub(super) class: Option<Class>,
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    /// The request log and what it records of this request.
    pub(super) log: Option<(RequestLog, Entry)>,
    /// Where a shadow comparison waits for this answer.
    pub(super) primary: Option<oneshot::Sender<Primary>>,
    /// What the answer is scanned for once it has been sent.
    pub(super) scanner: Option<Arc<sluice_safety::Scanner>>,
    /// The injection heuristics that fired on what the user sent.
    pub(super) input_flags: Vec<&'static str>,
    /// Where the rest of the outcome is recorded.
    pub(super) recorder: Arc<Recorder>,
    /// The serving version's name.
    pub(super) version: String,
    /// Whether the answer is a stream.
    pub(super) stream: bool,
    /// The answer's bytes (up to `capture_limit`), for the log and shadow comparisons.
    pub(super) capture: Vec<u8>,
    /// The answer's text, read as it passed (the safety scan reads it).
    pub(super) text: Option<String>,
    pub(super) capture_limit: usize,
    /// The request's span, when spans are exported.
    pub(super) trace: Option<Box<Trace>>,
    /// The model the answer named.
    pub(super) response_model: Option<String>,
    /// Why the answer's choices ended.
    pub(super) finish_reasons: Vec<String>,
    /// Whether the answer called a tool.
    pub(super) tool_calls: bool,
    /// What the version's tokens cost, when known.
    pub(super) price: Option<sluice_llm::prices::Price>,
}

/// What a request's span needs besides its outcome.
pub(super) struct Trace {
    pub(super) tracer: Arc<crate::otlp::Tracer>,
    pub(super) context: crate::otlp::SpanContext,
    pub(super) started: std::time::SystemTime,
    /// `chat`, `text_completion` or `embeddings`.
    pub(super) operation: &'static str,
    /// The model asked of the upstream.
    pub(super) request_model: String,
    pub(super) route: String,
    pub(super) request_id: String,
}

impl Trace {
    /// The request's span, in the GenAI conventions.
    fn span(&self, finish: &Finish, class: Class) -> crate::otlp::Span {
        use crate::otlp::Value;
        let mut attributes = vec![
            (
                "gen_ai.operation.name",
                Value::Str(self.operation.to_owned()),
            ),
            ("gen_ai.provider.name", Value::Str("openai".to_owned())),
            (
                "gen_ai.request.model",
                Value::Str(self.request_model.clone()),
            ),
            ("sluice.route", Value::Str(self.route.clone())),
            ("sluice.version", Value::Str(finish.version.clone())),
            ("sluice.request_id", Value::Str(self.request_id.clone())),
            ("sluice.outcome", Value::Str(class.as_str().to_owned())),
        ];
        if let Some(model) = &finish.response_model {
            attributes.push(("gen_ai.response.model", Value::Str(model.clone())));
        }
        if finish.prompt_tokens > 0 || finish.completion_tokens > 0 {
            let count = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
            attributes.push(("gen_ai.usage.input_tokens", count(finish.prompt_tokens)));
            attributes.push((
                "gen_ai.usage.output_tokens",
                count(finish.completion_tokens),
            ));
        }
        if !finish.finish_reasons.is_empty() {
            attributes.push((
                "gen_ai.response.finish_reasons",
                Value::StrList(finish.finish_reasons.clone()),
            ));
        }
        if let Some(ttft) = finish.ttft {
            attributes.push(("sluice.ttft_ms", Value::Double(ttft.as_secs_f64() * 1000.0)));
        }
        let failed = class != Class::Ok;
        if failed {
            attributes.push(("error.type", Value::Str(class.as_str().to_owned())));
        }
        let start = crate::otlp::unix_nanos(self.started);
        crate::otlp::Span {
            context: self.context,
            name: format!("{} {}", self.operation, self.request_model),
            start_unix_nanos: start,
            end_unix_nanos: start.saturating_add(
                u64::try_from(finish.arrived.elapsed().as_nanos()).unwrap_or(u64::MAX),
            ),
            attributes,
            error: failed.then(|| class.as_str().to_owned()),
        }
    }
}

/// What the request log keeps of a request besides its outcome.
pub(super) struct Entry {
    pub(super) request_id: String,
    pub(super) route: String,
    pub(super) version: String,
    pub(super) request: Bytes,
}

impl Finish {
    pub(super) fn keep(&mut self, bytes: &[u8]) {
        if self.capture.len() + bytes.len() <= self.capture_limit {
            self.capture.extend_from_slice(bytes);
        }
    }

    /// Records the request as failed with `error`'s class and answers with the error.
    pub(super) fn fail(mut self, error: ApiError) -> Response<GatewayBody> {
        self.end(error.class());
        error.into_response()
    }

    pub(super) fn end(&mut self, class: Class) {
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
        let cost_usd = self
            .price
            .map(|p| p.cost(self.prompt_tokens, self.completion_tokens));
        self.metrics.record(&Observation {
            class,
            latency,
            ttft: self.ttft,
            overhead: latency.saturating_sub(upstream),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_usd,
        });
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(trace) = self.trace.take() {
            trace.tracer.submit(trace.span(self, class));
        }
        let outcome = Outcome {
            metrics: Arc::clone(&self.metrics),
            class,
            latency,
            ttft: self.ttft,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_usd,
            finish_reason: self.finish_reasons.first().cloned(),
            tool_calls: self.tool_calls,
            stream: self.stream,
            version: std::mem::take(&mut self.version),
            capture: std::mem::take(&mut self.capture),
            text: self.text.take(),
            scanner: self.scanner.take(),
            input_flags: std::mem::take(&mut self.input_flags),
            primary: self.primary.take(),
            log: self.log.take(),
        };
        if outcome.pending() {
            self.recorder.submit(outcome);
        }
    }

    /// Adds streamed text for the safety scan (when there is one), up to the capture limit.
    pub(super) fn add_text(&mut self, text: &str) {
        if self.scanner.is_none() || text.is_empty() {
            return;
        }
        let kept = self.text.get_or_insert_with(String::new);
        if kept.len() + text.len() <= STREAM_CAPTURE_LIMIT {
            kept.push_str(text);
        }
    }

    pub(super) fn set_usage(&mut self, usage: sluice_llm::types::Usage) {
        self.prompt_tokens = usage.prompt_tokens;
        self.completion_tokens = usage.completion_tokens;
    }

    /// Keeps what the log and the span report of the answer: the model it names, why it
    /// ended and whether it called a tool.
    pub(super) fn note_answer(
        &mut self,
        model: Option<&str>,
        finish_reason: Option<&str>,
        tool_calls: bool,
    ) {
        self.tool_calls |= tool_calls;
        if let Some(model) = model
            && self.trace.is_some()
            && self.response_model.as_deref() != Some(model)
        {
            self.response_model = Some(model.to_owned());
        }
        if let Some(reason) = finish_reason
            && !self.finish_reasons.iter().any(|r| r == reason)
        {
            self.finish_reasons.push(reason.to_owned());
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.end(Class::ClientClosed);
    }
}
