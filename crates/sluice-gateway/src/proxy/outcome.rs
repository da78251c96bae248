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
        self.metrics.record(&Observation {
            class,
            latency,
            ttft: self.ttft,
            overhead: latency.saturating_sub(upstream),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
        });
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let outcome = Outcome {
            metrics: Arc::clone(&self.metrics),
            class,
            latency,
            ttft: self.ttft,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
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
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.end(Class::ClientClosed);
    }
}
