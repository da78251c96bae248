//! Running a load: the open-loop dispatcher (absolute send instants from a precomputed
//! schedule, optionally capped by a concurrency limit) and the closed loop (a fixed number of
//! workers, each sending as soon as its last answer is in). Every request records when it was
//! meant to go, when its task started and when it was sent, so latencies can be told
//! from the intended instant (no coordinated omission) as well as from the actual one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_llm::types::{ChatMessage, ChatRequest, CompletionRequest};
use sluice_llm::{Client, Generation, LlmError};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::dataset::BenchPrompt;
use crate::schedule::{self, Arrival};
use crate::{BenchConfig, Endpoint, Limit, Live, Load, Recorder};

/// One request's outcome and instants.
pub(crate) struct Outcome {
    /// When the schedule meant it to go.
    pub intended: Instant,
    /// When its task first ran: the schedule lag is the time from `intended` to here, which
    /// covers both a late dispatcher and a runtime too busy to start the request.
    pub started: Instant,
    /// When it was handed to the HTTP client (after any concurrency wait).
    pub sent: Instant,
    /// Sent during the warm-up (not measured).
    pub warmup: bool,
    /// What came back.
    pub result: Result<Generation, LlmError>,
}

/// Runs the load and returns what was recorded, with the run's measured duration.
pub(crate) async fn run(
    config: &BenchConfig,
    client: Arc<Client>,
    prompts: Arc<Vec<BenchPrompt>>,
    live: Option<watch::Sender<Live>>,
) -> (Recorder, Duration) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Outcome>();
    let collector = tokio::spawn(async move {
        let mut recorder = Recorder::default();
        let mut first_measured: Option<Instant> = None;
        let mut last_done: Option<Instant> = None;
        let started = Instant::now();
        let mut last_report = started;
        while let Some(outcome) = receiver.recv().await {
            if let Some(live) = &live
                && last_report.elapsed() >= LIVE_EVERY
            {
                last_report = Instant::now();
                live.send_replace(recorder.live(started.elapsed()));
            }
            if outcome.warmup {
                continue;
            }
            first_measured = Some(first_measured.map_or(outcome.sent, |f| f.min(outcome.sent)));
            let done = outcome.sent
                + outcome
                    .result
                    .as_ref()
                    .map_or(Duration::ZERO, |g| g.timing.e2e);
            last_done = Some(last_done.map_or(done, |l| l.max(done)));
            recorder.add(&outcome);
        }
        let duration = match (first_measured, last_done) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        (recorder, duration)
    });
    let start = Instant::now();
    let warmup_end = start + config.warmup;
    match config.load {
        Load::Rate {
            rate,
            arrival,
            max_concurrency,
        } => {
            open_loop(
                config,
                &client,
                &prompts,
                start,
                warmup_end,
                (rate, arrival, max_concurrency),
                &sender,
            )
            .await
        }
        Load::Concurrency(workers) => {
            closed_loop(config, &client, &prompts, warmup_end, workers, &sender).await
        }
        Load::Batch { size, warmup } => {
            batches(config, &client, &prompts, (size, warmup), &sender).await
        }
    }
    drop(sender);
    collector
        .await
        .unwrap_or_else(|_| (Recorder::default(), Duration::ZERO))
}

/// The longest the dispatcher sleeps before checking whether the run was cancelled.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How often live figures are refreshed.
const LIVE_EVERY: Duration = Duration::from_millis(200);

/// Dispatches the schedule from a blocking-pool thread that sleeps to each absolute instant
/// with the OS's high-resolution timer (the async timer ticks in whole milliseconds), then
/// hands the request to the runtime. Requests run detached; each holds a sender, so the
/// collector ends when the last one is answered.
async fn open_loop(
    config: &BenchConfig,
    client: &Arc<Client>,
    prompts: &Arc<Vec<BenchPrompt>>,
    start: Instant,
    warmup_end: Instant,
    (rate, arrival, max_concurrency): (f64, Arrival, Option<usize>),
    sender: &mpsc::UnboundedSender<Outcome>,
) {
    let count = match config.limit {
        Limit::Requests(n) => n,
        Limit::Duration(d) => ((d + config.warmup).as_secs_f64() * rate).ceil() as usize,
    };
    let offsets = schedule::offsets(count, rate, arrival, config.seed);
    let slots = max_concurrency.map(|c| Arc::new(Semaphore::new(c.max(1))));
    let runtime = tokio::runtime::Handle::current();
    // The dispatcher thread stops when this future is dropped (a run that is cancelled).
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let (config, client, prompts, sender) = (
        config.clone(),
        Arc::clone(client),
        Arc::clone(prompts),
        sender.clone(),
    );
    let dispatcher = tokio::task::spawn_blocking(move || {
        for (i, offset) in offsets.into_iter().enumerate() {
            let intended = start + offset;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let now = Instant::now();
                if intended <= now {
                    break;
                }
                std::thread::sleep((intended - now).min(MAX_SLEEP));
            }
            let (client, slots, sender) = (Arc::clone(&client), slots.clone(), sender.clone());
            let request = Request::new(&config, &prompts[i % prompts.len()]);
            let stream = config.stream;
            runtime.spawn(async move {
                let started = Instant::now();
                let _permit = match &slots {
                    Some(slots) => Some(slots.acquire().await),
                    None => None,
                };
                let sent = Instant::now();
                let result = request.send(&client, stream).await;
                let _ = sender.send(Outcome {
                    intended,
                    started,
                    sent,
                    warmup: intended < warmup_end,
                    result,
                });
            });
        }
    });
    let _ = dispatcher.await;
}

async fn batches(
    config: &BenchConfig,
    client: &Arc<Client>,
    prompts: &Arc<Vec<BenchPrompt>>,
    (size, warmup): (usize, usize),
    sender: &mpsc::UnboundedSender<Outcome>,
) {
    let size = size.max(1);
    let measured = match config.limit {
        Limit::Requests(n) => Some(n.div_ceil(size)),
        Limit::Duration(_) => None,
    };
    let deadline = match config.limit {
        Limit::Duration(d) => Some(d),
        Limit::Requests(_) => None,
    };
    let mut next = 0usize;
    let mut measured_start: Option<Instant> = None;
    for iteration in 0.. {
        let is_warmup = iteration < warmup;
        if !is_warmup {
            let start = *measured_start.get_or_insert_with(Instant::now);
            if measured.is_some_and(|m| iteration - warmup >= m)
                || deadline.is_some_and(|d| start.elapsed() >= d)
            {
                break;
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..size {
            let request = Request::new(config, &prompts[next % prompts.len()]);
            next += 1;
            let (client, sender, stream) = (Arc::clone(client), sender.clone(), config.stream);
            tasks.spawn(async move {
                let _ = sender.send(request.send_now(&client, stream, is_warmup).await);
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn closed_loop(
    config: &BenchConfig,
    client: &Arc<Client>,
    prompts: &Arc<Vec<BenchPrompt>>,
    warmup_end: Instant,
    workers: usize,
    sender: &mpsc::UnboundedSender<Outcome>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let measured = Arc::new(AtomicUsize::new(0));
    let deadline = match config.limit {
        Limit::Duration(d) => Some(warmup_end + d),
        Limit::Requests(_) => None,
    };
    let budget = match config.limit {
        Limit::Requests(n) => Some(n),
        Limit::Duration(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (client, prompts, next, measured, sender) = (
            Arc::clone(client),
            Arc::clone(prompts),
            Arc::clone(&next),
            Arc::clone(&measured),
            sender.clone(),
        );
        let config = config.clone();
        tasks.spawn(async move {
            loop {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                let warmup = now < warmup_end;
                if let Some(budget) = budget
                    && !warmup
                    && measured.fetch_add(1, Ordering::Relaxed) >= budget
                {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let request = Request::new(&config, &prompts[i % prompts.len()]);
                let _ = sender.send(request.send_now(&client, config.stream, warmup).await);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One request, ready to send.
pub(crate) enum Request {
    Chat(ChatRequest),
    Completion(CompletionRequest),
}

impl Request {
    pub(crate) fn new(config: &BenchConfig, prompt: &BenchPrompt) -> Self {
        let max_tokens = Some(prompt.output_tokens.unwrap_or(config.output_tokens));
        let prompt = prompt.text.as_str();
        let mut extra = serde_json::Map::new();
        if config.ignore_eos {
            extra.insert("ignore_eos".into(), serde_json::Value::Bool(true));
        }
        match config.endpoint {
            Endpoint::Chat => Request::Chat(ChatRequest {
                model: config.target.model.clone(),
                messages: vec![ChatMessage::new("user", prompt)],
                max_tokens,
                temperature: Some(0.0),
                extra,
                ..ChatRequest::default()
            }),
            Endpoint::Completions => Request::Completion(CompletionRequest {
                max_tokens,
                temperature: Some(0.0),
                extra,
                ..CompletionRequest::new(config.target.model.clone(), prompt)
            }),
        }
    }

    /// Sends at once (closed loops and batches: the intended instant is the actual one).
    async fn send_now(&self, client: &Client, stream: bool, warmup: bool) -> Outcome {
        let sent = Instant::now();
        let result = self.send(client, stream).await;
        Outcome {
            intended: sent,
            started: sent,
            sent,
            warmup,
            result,
        }
    }

    pub(crate) async fn send(&self, client: &Client, stream: bool) -> Result<Generation, LlmError> {
        match (self, stream) {
            (Request::Chat(r), true) => client.chat_stream(r).await,
            (Request::Chat(r), false) => client.chat(r).await,
            (Request::Completion(r), true) => client.completion_stream(r).await,
            (Request::Completion(r), false) => client.completion(r).await,
        }
    }
}
