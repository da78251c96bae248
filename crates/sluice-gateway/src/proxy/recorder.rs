//! The recorder: what follows a request once its outcome is known and its answer has gone —
//! the safety scan of what was sent, the shadow comparison waiting for the answer, the request
//! log — done by one task apart from the request path. When its queue is full (the recorder is
//! behind), the request's own task does the work instead, so the queue's memory is bounded and
//! nothing is dropped. Readers of the windows wait for what is queued ([`Recorder::flush`]),
//! so no count lags behind an answer already sent.

use super::*;

/// Hands outcomes to the recorder task.
pub(crate) struct Recorder {
    queue: mpsc::Sender<Message>,
}

enum Message {
    Outcome(Box<Outcome>),
    Flush(oneshot::Sender<()>),
}

/// What is left to do for one request once its metrics are recorded.
pub(crate) struct Outcome {
    pub(super) metrics: Arc<VersionMetrics>,
    pub(super) class: Class,
    pub(super) latency: Duration,
    pub(super) ttft: Option<Duration>,
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) cost_usd: Option<f64>,
    /// Why the answer's first choice ended.
    pub(super) finish_reason: Option<String>,
    /// Whether the answer called a tool.
    pub(super) tool_calls: bool,
    pub(super) stream: bool,
    pub(super) version: String,
    /// The answer's bytes as captured, for the log and the shadow comparison.
    pub(super) capture: Vec<u8>,
    /// The answer's text, when it was read as it passed.
    pub(super) text: Option<String>,
    pub(super) scanner: Option<Arc<sluice_safety::Scanner>>,
    pub(super) input_flags: Vec<&'static str>,
    pub(super) primary: Option<oneshot::Sender<Primary>>,
    pub(super) log: Option<(RequestLog, Entry)>,
}

/// Outcomes queued before the request path does its own.
const QUEUE: usize = 4096;

impl Recorder {
    /// A recorder and the task that works through its queue.
    pub(crate) fn new() -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (queue, mut receiver) = mpsc::channel(QUEUE);
        let task = async move {
            while let Some(message) = receiver.recv().await {
                match message {
                    Message::Outcome(outcome) => outcome.record(),
                    Message::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        };
        (Self { queue }, task)
    }

    /// Records `outcome` on the recorder task, or here when its queue is full or closed.
    pub(crate) fn submit(&self, outcome: Outcome) {
        match self.queue.try_send(Message::Outcome(Box::new(outcome))) {
            Ok(()) => {}
            Err(
                mpsc::error::TrySendError::Full(Message::Outcome(outcome))
                | mpsc::error::TrySendError::Closed(Message::Outcome(outcome)),
            ) => outcome.record(),
            Err(_) => {}
        }
    }

    /// Returns once every outcome submitted before the call is recorded.
    pub(crate) async fn flush(&self) {
        let (done, recorded) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = recorded.await;
        }
    }
}

impl Outcome {
    /// Whether anything is left to do beyond the metrics already recorded.
    pub(super) fn pending(&self) -> bool {
        self.scanner.is_some()
            || !self.input_flags.is_empty()
            || self.primary.is_some()
            || self.log.is_some()
    }

    /// Scans the answer, counts what the scan and the input heuristics found, hands the answer
    /// to a waiting shadow comparison and writes the request log's record.
    pub(crate) fn record(mut self) {
        self.metrics.record_injection(&self.input_flags);
        let mut response = std::mem::take(&mut self.capture);
        let safety = match &self.scanner {
            Some(scanner) if self.class == Class::Ok => {
                let answer = match self.text.take() {
                    Some(text) => text,
                    None => crate::log::answer_text(&response, self.stream),
                };
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
                latency: self.latency,
                class: self.class,
                version: self.version.clone(),
            });
        }
        if let Some((log, entry)) = self.log.take() {
            log.record(Record {
                request_id: entry.request_id,
                route: entry.route,
                version: entry.version,
                class: self.class,
                latency: self.latency,
                ttft: self.ttft,
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                cost_usd: self.cost_usd,
                finish_reason: self.finish_reason.take(),
                tool_calls: self.tool_calls,
                request: entry.request,
                response,
                stream: self.stream,
                safety,
                input_flags: std::mem::take(&mut self.input_flags),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(metrics: &Arc<VersionMetrics>) -> Outcome {
        Outcome {
            metrics: Arc::clone(metrics),
            class: Class::Ok,
            latency: Duration::from_millis(1),
            ttft: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_usd: None,
            finish_reason: None,
            tool_calls: false,
            stream: false,
            version: "v".into(),
            capture: Vec::new(),
            text: None,
            scanner: None,
            input_flags: vec!["ignore_previous"],
            primary: None,
            log: None,
        }
    }

    fn attempts(metrics: &Metrics) -> u64 {
        metrics.windows(Duration::from_secs(60), false)["chat"]["v"].injection_attempts
    }

    #[tokio::test]
    async fn a_full_queue_records_on_the_request_path_and_a_flush_waits_for_the_rest() {
        let metrics = Metrics::default();
        let version = metrics.version("chat", "v");
        let (recorder, task) = Recorder::new();
        // The recorder task is not running yet: the queue fills, then requests record their own.
        for _ in 0..QUEUE + 3 {
            recorder.submit(outcome(&version));
        }
        assert_eq!(attempts(&metrics), 3);
        let task = tokio::spawn(task);
        recorder.flush().await;
        assert_eq!(attempts(&metrics), QUEUE as u64 + 3);
        task.abort();
    }
}
