//! The request log: finished requests go into a bounded queue (dropped and counted when it is
//! full, so a slow store never slows traffic) and a writer task stores them as `request`
//! events in batches, after extracting the answer text and redacting secrets and personal data.
//! The request path only copies bytes; parsing and redaction happen in the writer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_store::{NewEvent, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::metrics::{Class, Metrics};
use sluice_safety::record::{request_for_log, text_for_log};

/// Events written per transaction, at most.
const BATCH: usize = 512;
/// The longest a finished request waits before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Requests queued for the writer, at most.
const QUEUE: usize = 16_384;
/// Request and answer text kept per log entry, in bytes.
const TEXT_LIMIT: usize = 8 * 1024;

/// One finished request, as the request path hands it over.
#[derive(Debug)]
pub(crate) struct Record {
    pub request_id: String,
    pub route: String,
    pub version: String,
    pub class: Class,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What it cost in USD, when the version's tokens have a price.
    pub cost_usd: Option<f64>,
    /// Why the answer's first choice ended (`stop`, `length`…).
    pub finish_reason: Option<String>,
    /// Whether the answer called a tool.
    pub tool_calls: bool,
    /// The client's request body.
    pub request: Bytes,
    /// The answer's bytes as sent (possibly cut at the capture limit).
    pub response: Vec<u8>,
    /// Whether the answer was a stream of events.
    pub stream: bool,
    /// The safety violations found in the answer (`secret`, `pii`, `canary`).
    pub safety: Vec<&'static str>,
    /// The injection heuristics that fired on the request.
    pub input_flags: Vec<&'static str>,
}

/// The writer's queue.
#[derive(Debug, Clone)]
pub(crate) struct RequestLog {
    sender: mpsc::Sender<Record>,
    metrics: Arc<Metrics>,
}

impl RequestLog {
    /// Starts the writer. Sending on the returned `stop` makes it refuse new records, write
    /// what is queued and end.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
    ) -> (Self, oneshot::Sender<()>, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write(store, receiver, stopped));
        (Self { sender, metrics }, stop, task)
    }

    /// Queues a record, or drops and counts it when the queue is full.
    pub fn record(&self, record: Record) {
        if self.sender.try_send(record).is_err() {
            self.metrics.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write(
    store: Store,
    mut receiver: mpsc::Receiver<Record>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        let first = if stopping {
            receiver.recv().await
        } else {
            tokio::select! {
                record = receiver.recv() => record,
                _ = &mut stop => {
                    stopping = true;
                    receiver.close();
                    receiver.recv().await
                }
            }
        };
        let Some(first) = first else { break };
        batch.push(event(first));
        let deadline = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(deadline);
        while batch.len() < BATCH {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(record) => batch.push(event(record)),
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        let events = std::mem::take(&mut batch);
        let count = events.len();
        if let Err(error) = store.append_events(events).await {
            warn!(%error, count, "Cannot store request log entries; they are lost.");
        }
    }
}

fn truncate(text: &str) -> &str {
    if text.len() <= TEXT_LIMIT {
        return text;
    }
    let mut end = TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn event(record: Record) -> NewEvent {
    let request = String::from_utf8_lossy(&record.request);
    let answer = answer_text(&record.response, record.stream);
    NewEvent {
        subject: format!("gateway:{}", record.route),
        kind: "request".into(),
        payload: json!({
            "request_id": record.request_id,
            "route": record.route,
            "version": record.version,
            "class": record.class.as_str(),
            "latency_ms": record.latency.as_secs_f64() * 1000.0,
            "ttft_ms": record.ttft.map(|t| t.as_secs_f64() * 1000.0),
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "cost_usd": record.cost_usd,
            "finish_reason": record.finish_reason,
            "tool_calls": record.tool_calls,
            "request": truncate(&request_for_log(&request)),
            "answer": truncate(&text_for_log(&answer)),
            "safety": record.safety,
            "input_flags": record.input_flags,
        }),
    }
}

/// The answer's text: the first choice's message content (or completion text) of a JSON
/// answer, or the concatenated deltas of a stream.
pub(crate) fn answer_text(bytes: &[u8], stream: bool) -> String {
    let choice_text = |value: &Value, delta: bool| -> Option<String> {
        let choice = value.get("choices")?.get(0)?;
        let message = choice.get(if delta { "delta" } else { "message" });
        message
            .and_then(|m| m.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if !stream {
        return serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| choice_text(&v, false))
            .unwrap_or_default();
    }
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .filter_map(|v| choice_text(&v, true))
        .collect()
}

/// Which route and version served recent requests, for feedback: a bounded map that forgets
/// the oldest first.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    served: HashMap<String, (String, String)>,
    order: VecDeque<String>,
}

/// Requests remembered for feedback.
const RECENT: usize = 100_000;

impl Recent {
    pub fn insert(&mut self, request_id: String, route: String, version: String) {
        if self.served.len() >= RECENT
            && let Some(oldest) = self.order.pop_front()
        {
            self.served.remove(&oldest);
        }
        self.order.push_back(request_id.clone());
        self.served.insert(request_id, (route, version));
    }

    pub fn get(&self, request_id: &str) -> Option<&(String, String)> {
        self.served.get(request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_json_and_from_streams() {
        let json = br#"{"choices":[{"message":{"role":"assistant","content":"Paris."}}]}"#;
        assert_eq!(answer_text(json, false), "Paris.");
        let stream = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Pa\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"ris\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(answer_text(stream, true), "Paris");
        let completion = br#"{"choices":[{"text":" once upon"}]}"#;
        assert_eq!(answer_text(completion, false), " once upon");
    }

    #[test]
    fn recent_requests_forget_the_oldest() {
        let mut recent = Recent::default();
        for i in 0..RECENT + 1 {
            recent.insert(format!("r{i}"), "chat".into(), "stable".into());
        }
        assert!(recent.get("r0").is_none());
        assert!(recent.get(&format!("r{RECENT}")).is_some());
    }
}
