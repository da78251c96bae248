//! `sluice bench`: load testing of OpenAI-compatible endpoints.
//!
//! [`schedule`] computes open-loop arrival instants; `run` dispatches them (or runs a closed
//! loop of workers) through `sluice-llm`'s client, which times every chunk on a monotonic
//! clock; [`metrics`] keeps one HdrHistogram per metric; [`threshold`] parses k6-style gates.
//! Metric names and formulas are vLLM's: TTFT to the first content chunk (role-only chunks
//! ignored), TPOT = (E2EL − TTFT)/(output tokens − 1), ITL per chunk gap, E2EL to the last
//! content chunk. Latencies are also measured from each request's *intended* send instant,
//! which is what a user of an overloaded system would see (no coordinated omission).

#![deny(unsafe_code)]

pub mod compare;
pub mod dataset;
pub mod metrics;
pub mod profile;
mod run;
pub mod schedule;
pub mod session;
pub mod sweep;
pub mod threshold;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sluice_core::EndpointSpec;
use sluice_llm::{Client, ClientConfig};

use crate::dataset::{BenchPrompt, Dataset};
use crate::metrics::Metric;
pub use crate::metrics::Stats;
use crate::schedule::Arrival;
use crate::threshold::Threshold;

/// Which endpoint is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Open loop at `rate` requests per second, optionally capped at `max_concurrency` in flight
    /// (requests over the cap wait in a client-side queue, which is measured).
    Rate {
        /// Requests per second.
        rate: f64,
        /// Gap distribution.
        arrival: Arrival,
        /// In-flight cap.
        max_concurrency: Option<usize>,
    },
    /// Closed loop: this many workers, each sending when its previous answer is complete.
    Concurrency(usize),
    /// Lock-step batches: `size` requests at once, the next batch when all are answered; the
    /// first `warmup` batches are not measured. The limit counts batches' requests.
    Batch {
        /// Requests per batch.
        size: usize,
        /// Unmeasured leading batches.
        warmup: usize,
    },
}

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// After this many measured requests.
    Requests(usize),
    /// After this long (after the warm-up).
    Duration(Duration),
}

/// SLOs a request must meet to count towards goodput, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Goodput {
    /// Time to first token.
    pub ttft: Option<f64>,
    /// Time per output token.
    pub tpot: Option<f64>,
    /// End-to-end latency.
    pub e2el: Option<f64>,
}

/// A goodput item that is not `KEY:MILLISECONDS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoodputError {
    /// No colon.
    #[error("goodput `{0}`: expected KEY:MILLISECONDS, e.g. ttft:200")]
    NoColon(String),
    /// Not a positive number.
    #[error("goodput `{0}`: expected a positive number of milliseconds")]
    NotPositive(String),
    /// A key other than ttft, tpot or e2el.
    #[error("goodput `{item}`: unknown SLO `{key}` (ttft, tpot or e2el)")]
    UnknownSlo {
        /// The item.
        item: String,
        /// Its key.
        key: String,
    },
}

impl Goodput {
    /// Parses vLLM's `ttft:200 tpot:50 e2el:5000` (milliseconds).
    pub fn parse(items: &[String]) -> Result<Self, GoodputError> {
        let mut goodput = Goodput::default();
        for item in items.iter().flat_map(|i| i.split_whitespace()) {
            let (key, value) = item
                .split_once(':')
                .ok_or_else(|| GoodputError::NoColon(item.to_owned()))?;
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| GoodputError::NotPositive(item.to_owned()))?;
            match key {
                "ttft" => goodput.ttft = Some(value),
                "tpot" => goodput.tpot = Some(value),
                "e2el" => goodput.e2el = Some(value),
                other => {
                    return Err(GoodputError::UnknownSlo {
                        item: item.to_owned(),
                        key: other.to_owned(),
                    });
                }
            }
        }
        Ok(goodput)
    }

    fn is_set(&self) -> bool {
        self.ttft.is_some() || self.tpot.is_some() || self.e2el.is_some()
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server (base URL such as `http://host:port/v1`), the model name sent, and the
    /// environment variable holding the key.
    pub target: EndpointSpec,
    /// Chat or completions.
    pub endpoint: Endpoint,
    /// What is sent.
    pub dataset: Dataset,
    /// Arrivals.
    pub load: Load,
    /// Stop condition.
    pub limit: Limit,
    /// Requests sent during this leading period are not measured.
    pub warmup: Duration,
    /// Prompt length in tokens (about one word per token).
    pub input_tokens: usize,
    /// `max_tokens` of each request.
    pub output_tokens: u64,
    /// Relative spread of input lengths, 0 to 1.
    pub range_ratio: f64,
    /// Stream responses (needed for TTFT, ITL and TPOT).
    pub stream: bool,
    /// Ask servers that support it to ignore end-of-sequence (vLLM's `ignore_eos`).
    pub ignore_eos: bool,
    /// SLOs for goodput.
    pub goodput: Goodput,
    /// Gates.
    pub thresholds: Vec<Threshold>,
    /// The schedule-lag p99 beyond which the run is invalid (the client could not keep up).
    pub max_lag: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Seed for the schedule and the prompts.
    pub seed: u64,
}

/// Every metric's samples.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    metrics: BTreeMap<&'static str, Metric>,
    completed: u64,
    failed: u64,
    good: u64,
    errors: BTreeMap<String, u64>,
    input_tokens: u64,
    output_tokens: u64,
    token_sources: BTreeMap<String, u64>,
    goodput: Goodput,
    /// `(usage completion tokens, answer text)` of the first answers whose count came from
    /// `usage`, checked against the tokenizer once the run is over.
    usage_samples: Vec<(u64, String)>,
}

/// How many answers the usage-versus-tokenizer check looks at.
const USAGE_SAMPLES: usize = 64;

impl Recorder {
    fn metric(&mut self, name: &'static str) -> &mut Metric {
        self.metrics.entry(name).or_default()
    }

    fn add(&mut self, outcome: &run::Outcome) {
        let lag = outcome.started.saturating_duration_since(outcome.intended);
        let queue = outcome.sent.saturating_duration_since(outcome.started);
        self.metric("schedule_lag").record(lag);
        self.metric("queue").record(queue);
        let generation = match &outcome.result {
            Ok(generation) => generation,
            Err(error) => {
                self.failed += 1;
                *self.errors.entry(error.class().to_owned()).or_default() += 1;
                return;
            }
        };
        let timing = &generation.timing;
        let Some(ttft) = timing.ttft else {
            self.failed += 1;
            *self.errors.entry("no_content".to_owned()).or_default() += 1;
            return;
        };
        self.completed += 1;
        let late = outcome.sent.saturating_duration_since(outcome.intended);
        let e2el = timing.last_token().unwrap_or(timing.e2e);
        self.metric("ttft").record(ttft);
        self.metric("e2el").record(e2el);
        self.metric("ttft_intended").record(late + ttft);
        self.metric("e2el_intended").record(late + e2el);
        for gap in &timing.chunk_gaps {
            self.metric("itl").record(*gap);
        }
        let (input, output) = match &generation.tokens {
            Some(tokens) => {
                *self
                    .token_sources
                    .entry(format!("{:?}", tokens.completion_source).to_lowercase())
                    .or_default() += 1;
                if tokens.completion_source == sluice_llm::TokenSource::Usage
                    && self.usage_samples.len() < USAGE_SAMPLES
                {
                    self.usage_samples
                        .push((tokens.completion, generation.text.clone()));
                }
                (tokens.prompt, tokens.completion)
            }
            None => (0, timing.content_chunks as u64),
        };
        // Per-token ITL: each chunk gap spread over the tokens the chunk carried, estimated
        // as the answer's tokens per content chunk (one for servers that stream token by token).
        if timing.content_chunks > 1 && output > 0 {
            let per_chunk = (output as f64 / timing.content_chunks as f64).max(1.0);
            let copies = per_chunk.round().max(1.0) as u64;
            for gap in &timing.chunk_gaps {
                self.metric("itl_token")
                    .record_n(gap.div_f64(per_chunk), copies);
            }
        }
        self.input_tokens += input;
        self.output_tokens += output;
        let tpot = (output > 1).then(|| (e2el.saturating_sub(ttft)) / (output as u32 - 1));
        if let Some(tpot) = tpot {
            self.metric("tpot").record(tpot);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let goodput = &self.goodput;
        let good = goodput.ttft.is_none_or(|slo| ms(ttft) <= slo)
            && goodput.tpot.is_none_or(|slo| tpot.map_or(0.0, ms) <= slo)
            && goodput.e2el.is_none_or(|slo| ms(e2el) <= slo);
        if good {
            self.good += 1;
        }
    }
}

/// Figures while a run is going, for a progress display.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Time since the load started.
    pub elapsed: Duration,
    /// Measured requests answered so far.
    pub completed: u64,
    /// Measured requests failed so far.
    pub failed: u64,
    /// Running TTFT median and p99, ms.
    pub ttft_ms: (f64, f64),
    /// Running E2EL median and p99, ms.
    pub e2el_ms: (f64, f64),
}

impl Recorder {
    /// The figures so far.
    fn live(&self, elapsed: Duration) -> Live {
        let pair = |name: &str| {
            self.metrics.get(name).map_or((0.0, 0.0), |m| {
                let s = m.stats();
                (s.median, s.percentile(99.0).unwrap_or(0.0))
            })
        };
        Live {
            elapsed,
            completed: self.completed,
            failed: self.failed,
            ttft_ms: pair("ttft"),
            e2el_ms: pair("e2el"),
        }
    }

    /// Compares `usage` token counts with the offline tokenizer on the sampled answers and
    /// says so when they disagree by more than half: a server whose `usage` is wrong makes
    /// every throughput figure wrong.
    fn usage_warning(&self, model: &str) -> Option<String> {
        let (mut usage, mut counted) = (0u64, 0u64);
        for (reported, text) in &self.usage_samples {
            let (tokens, _) = sluice_llm::tokens::count(model, text)?;
            usage += reported;
            counted += tokens;
        }
        if self.usage_samples.is_empty() || counted == 0 {
            return None;
        }
        let ratio = usage as f64 / counted as f64;
        (!(0.5..=1.5).contains(&ratio)).then(|| {
            format!(
                "the server's usage reports {usage} completion tokens for {} sampled answers where the offline tokenizer counts {counted} ({ratio:.2}×); throughput figures use the server's counts",
                self.usage_samples.len()
            )
        })
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// The configuration.
    pub config: BenchConfig,
    /// Measured duration (first measured send to last completion), seconds.
    pub duration_s: f64,
    /// What was recorded.
    pub recorder: Recorder,
    /// Set when the server's `usage` token counts disagree with the tokenizer.
    pub usage_warning: Option<String>,
}

/// Why a run's numbers are not a server result.
pub fn invalid_reason(result: &BenchResult) -> Option<String> {
    let lag = result.stats("schedule_lag").percentile(99.0)?;
    let bound = result.config.max_lag.as_secs_f64() * 1000.0;
    (lag > bound).then(|| {
        format!(
            "the client fell behind its schedule: schedule lag p99 {lag:.2} ms exceeds {bound} ms; the numbers describe the client, not the server (lower the rate or raise --max-lag)"
        )
    })
}

impl BenchResult {
    /// A metric's statistics (empty when nothing was recorded).
    pub fn stats(&self, metric: &str) -> Stats {
        self.recorder
            .metrics
            .get(metric)
            .map(Metric::stats)
            .unwrap_or_default()
    }

    /// A whole-run number by its threshold name.
    pub fn number(&self, name: &str) -> Option<f64> {
        let r = &self.recorder;
        let total = (r.completed + r.failed) as f64;
        let per_s = |n: f64| {
            if self.duration_s > 0.0 {
                n / self.duration_s
            } else {
                0.0
            }
        };
        Some(match name {
            "error_rate" => {
                if total == 0.0 {
                    0.0
                } else {
                    r.failed as f64 / total
                }
            }
            "errors" => r.failed as f64,
            "completed" => r.completed as f64,
            "goodput" => per_s(r.good as f64),
            "request_throughput" => per_s(r.completed as f64),
            "output_throughput" => per_s(r.output_tokens as f64),
            "total_token_throughput" => per_s((r.input_tokens + r.output_tokens) as f64),
            _ => return None,
        })
    }

    /// The value a threshold compares.
    pub fn value_for(&self, threshold: &Threshold) -> Option<f64> {
        let Some(aggregate) = &threshold.aggregate else {
            return self.number(&threshold.metric);
        };
        let stats = self.stats(&threshold.metric);
        if stats.count == 0 {
            return None;
        }
        match aggregate.as_str() {
            "mean" => Some(stats.mean),
            "median" => Some(stats.median),
            "std" => Some(stats.std),
            "min" => Some(stats.min),
            "max" => Some(stats.max),
            _ => stats.percentile(threshold.percentile()?),
        }
    }

    /// Each threshold with its measured value and verdict (no value fails).
    pub fn check(&self) -> Vec<(Threshold, Option<f64>, bool)> {
        self.config
            .thresholds
            .iter()
            .map(|t| {
                let value = self.value_for(t);
                (t.clone(), value, value.is_some_and(|v| t.holds(v)))
            })
            .collect()
    }

    /// The result as JSON: vLLM's field names (`p99_ttft_ms`, `output_throughput`, …) plus
    /// Sluice's (intended-time latencies, schedule lag, errors by class, histograms).
    pub fn json(&self) -> Value {
        let c = &self.config;
        let r = &self.recorder;
        let mut out = Map::new();
        let (rate, burstiness, max_concurrency) = match c.load {
            Load::Rate {
                rate,
                arrival,
                max_concurrency,
            } => (
                json!(rate),
                json!(match arrival {
                    Arrival::Constant => Value::Null,
                    Arrival::Poisson => json!(1.0),
                    Arrival::Gamma(b) => json!(b),
                }),
                json!(max_concurrency),
            ),
            Load::Concurrency(n) | Load::Batch { size: n, .. } => {
                (json!("inf"), Value::Null, json!(n))
            }
        };
        out.insert(
            "backend".into(),
            json!(match c.endpoint {
                Endpoint::Chat => "openai-chat",
                Endpoint::Completions => "openai",
            }),
        );
        out.insert("model_id".into(), json!(c.target.model));
        out.insert("base_url".into(), json!(c.target.base_url));
        out.insert("request_rate".into(), rate);
        out.insert("burstiness".into(), burstiness);
        out.insert("max_concurrency".into(), max_concurrency);
        out.insert("duration".into(), json!(self.duration_s));
        out.insert("completed".into(), json!(r.completed));
        out.insert("failed".into(), json!(r.failed));
        out.insert("total_input_tokens".into(), json!(r.input_tokens));
        out.insert("total_output_tokens".into(), json!(r.output_tokens));
        out.insert("cost_usd".into(), json!(self.cost_usd()));
        for name in [
            "request_throughput",
            "output_throughput",
            "total_token_throughput",
            "error_rate",
        ] {
            out.insert(name.into(), json!(self.number(name)));
        }
        out.insert(
            "request_goodput".into(),
            if r.goodput.is_set() {
                json!(self.number("goodput"))
            } else {
                Value::Null
            },
        );
        for (name, metric) in &r.metrics {
            let stats = metric.stats();
            out.insert(format!("mean_{name}_ms"), json!(stats.mean));
            out.insert(format!("median_{name}_ms"), json!(stats.median));
            out.insert(format!("std_{name}_ms"), json!(stats.std));
            for (p, value) in &stats.percentiles {
                out.insert(format!("p{p}_{name}_ms"), json!(value));
            }
        }
        out.insert("errors_by_class".into(), json!(r.errors));
        out.insert("output_token_sources".into(), json!(r.token_sources));
        out.insert("usage_warning".into(), json!(self.usage_warning));
        out.insert("invalid".into(), json!(invalid_reason(self)));
        out.insert(
            "thresholds".into(),
            Value::Array(
                self.check()
                    .into_iter()
                    .map(|(t, value, pass)| json!({"threshold": t.source, "value": value, "pass": pass}))
                    .collect(),
            ),
        );
        out.insert(
            "histograms".into(),
            Value::Object(
                r.metrics
                    .iter()
                    .map(|(name, m)| ((*name).to_owned(), json!(m.encode())))
                    .collect(),
            ),
        );
        Value::Object(out)
    }

    /// What the run's tokens cost at the model's list price, when the built-in price list
    /// knows the model (`None` otherwise: no price, not a cost of 0).
    pub fn cost_usd(&self) -> Option<f64> {
        sluice_llm::prices::builtin(&self.config.target.model)
            .map(|price| price.cost(self.recorder.input_tokens, self.recorder.output_tokens))
    }

    /// A console summary.
    pub fn console(&self) -> String {
        let r = &self.recorder;
        let mut out = format!(
            "bench {} ({:.1} s): {} completed, {} failed\n  request throughput {:.2} req/s, output {:.1} tok/s, total {:.1} tok/s",
            self.config.target.model,
            self.duration_s,
            r.completed,
            r.failed,
            self.number("request_throughput").unwrap_or(0.0),
            self.number("output_throughput").unwrap_or(0.0),
            self.number("total_token_throughput").unwrap_or(0.0),
        );
        if r.goodput.is_set() {
            out.push_str(&format!(
                ", goodput {:.2} req/s",
                self.number("goodput").unwrap_or(0.0)
            ));
        }
        if let Some(cost) = self.cost_usd() {
            out.push_str(&format!(", cost ${cost:.4} at list price"));
        }
        out.push_str(&format!(
            "\n  {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "metric (ms)", "mean", "p50", "p90", "p99", "p99.9", "max"
        ));
        for name in threshold::LATENCY_METRICS {
            let s = self.stats(name);
            if s.count == 0 {
                continue;
            }
            let p = |q: f64| s.percentile(q).unwrap_or(0.0);
            out.push_str(&format!(
                "  {name:<14} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                s.mean,
                s.median,
                p(90.0),
                p(99.0),
                p(99.9),
                s.max
            ));
        }
        if !r.errors.is_empty() {
            let errors: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            out.push_str(&format!("  errors: {}\n", errors.join(", ")));
        }
        for (t, value, pass) in self.check() {
            out.push_str(&format!(
                "  {} {} (measured {})\n",
                if pass { "✓" } else { "✗" },
                t.source,
                value.map_or_else(|| "nothing".to_owned(), |v| format!("{v:.3}"))
            ));
        }
        if let Some(warning) = &self.usage_warning {
            out.push_str(&format!("  warning: {warning}\n"));
        }
        if let Some(reason) = invalid_reason(self) {
            out.push_str(&format!("  INVALID: {reason}\n"));
        }
        out
    }

    /// The CSV columns [`BenchResult::csv_row`] fills.
    pub fn csv_header() -> String {
        let mut columns: Vec<String> = [
            "model",
            "load",
            "completed",
            "failed",
            "duration_s",
            "request_throughput",
            "output_throughput",
            "total_token_throughput",
            "request_goodput",
            "error_rate",
        ]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
        for name in threshold::LATENCY_METRICS {
            columns.push(format!("mean_{name}_ms"));
            for p in metrics::PERCENTILES {
                columns.push(format!("p{p}_{name}_ms"));
            }
        }
        columns.push("invalid".into());
        columns.join(",")
    }

    /// This run as one CSV row.
    pub fn csv_row(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let number = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
        let mut cells = vec![
            quote(&self.config.target.model),
            quote(&self.load_label()),
            self.recorder.completed.to_string(),
            self.recorder.failed.to_string(),
            format!("{:.3}", self.duration_s),
            number(self.number("request_throughput")),
            number(self.number("output_throughput")),
            number(self.number("total_token_throughput")),
            number(
                self.recorder
                    .goodput
                    .is_set()
                    .then(|| self.number("goodput"))
                    .flatten(),
            ),
            number(self.number("error_rate")),
        ];
        for name in threshold::LATENCY_METRICS {
            let stats = self.stats(name);
            let present = stats.count > 0;
            cells.push(number(present.then_some(stats.mean)));
            for p in metrics::PERCENTILES {
                cells.push(number(stats.percentile(*p)));
            }
        }
        cells.push(quote(&invalid_reason(self).unwrap_or_default()));
        cells.join(",")
    }

    /// The load in words: `rate 20/s poisson`, `concurrency 8`, `batch 4`.
    pub fn load_label(&self) -> String {
        match self.config.load {
            Load::Rate {
                rate,
                arrival,
                max_concurrency,
            } => {
                let arrival = match arrival {
                    Arrival::Constant => "constant".to_owned(),
                    Arrival::Poisson => "poisson".to_owned(),
                    Arrival::Gamma(b) => format!("gamma({b})"),
                };
                let cap =
                    max_concurrency.map_or_else(String::new, |c| format!(", max {c} in flight"));
                format!("rate {rate:.2}/s {arrival}{cap}")
            }
            Load::Concurrency(n) => format!("concurrency {n}"),
            Load::Batch { size, .. } => format!("batch {size}"),
        }
    }
}

/// Errors before the load starts.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The client could not be built (bad URL, missing key).
    #[error(transparent)]
    Client(#[from] sluice_llm::LlmError),
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// The dataset cannot be used.
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
}

/// Runs a benchmark.
pub async fn run(config: BenchConfig) -> Result<BenchResult, BenchError> {
    run_with(config, None).await
}

/// Runs a benchmark, publishing running figures on `live` as it goes.
pub async fn run_with(
    config: BenchConfig,
    live: Option<tokio::sync::watch::Sender<Live>>,
) -> Result<BenchResult, BenchError> {
    if let Load::Rate { rate, .. } = config.load
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(BenchError::Config(format!(
            "the rate must be a positive number of requests per second, found {rate}"
        )));
    }
    let client = Arc::new(client(&config)?);
    let prompts = Arc::new(match &config.dataset {
        Dataset::Random => random_prompts(&config, 256),
        Dataset::Prompts(prompts) => prompts.clone(),
    });
    prewarm(&config, &client, &prompts).await;
    let (mut recorder, duration) = run::run(&config, client, prompts, live).await;
    recorder.goodput = config.goodput.clone();
    let usage_warning = recorder.usage_warning(&config.target.model);
    Ok(BenchResult {
        duration_s: duration.as_secs_f64(),
        config,
        recorder,
        usage_warning,
    })
}

/// The HTTP client a run uses: no retries (a retried request would hide an error and distort
/// its latency) and the run's timeout.
fn client(config: &BenchConfig) -> Result<Client, BenchError> {
    let mut client_config = ClientConfig::for_endpoint(&config.target, |v| std::env::var(v).ok())?;
    client_config.retry.max_retries = 0;
    client_config.timeouts.total = config.timeout;
    Ok(Client::new(client_config)?)
}

/// The most connections opened ahead of a run.
const PREWARM_MAX: usize = 1024;

/// Opens about as many pooled connections as the run will keep busy, by sending that many
/// one-token requests at once before the clock starts: otherwise the first seconds of a run
/// measure TCP (and TLS) handshakes, and the schedule lags while they are made.
async fn prewarm(config: &BenchConfig, client: &Arc<Client>, prompts: &Arc<Vec<BenchPrompt>>) {
    let probe = BenchConfig {
        output_tokens: 1,
        ..config.clone()
    };
    let prompt = &prompts[0];
    let started = std::time::Instant::now();
    let _ = run::Request::new(&probe, prompt)
        .send(client, config.stream)
        .await;
    let latency = started.elapsed().as_secs_f64();
    let connections = match config.load {
        Load::Rate {
            rate,
            max_concurrency,
            ..
        } => {
            let expected = (rate * latency * 2.0).ceil() as usize + 1;
            max_concurrency.map_or(expected, |c| expected.min(c))
        }
        Load::Concurrency(n) | Load::Batch { size: n, .. } => n,
    }
    .min(PREWARM_MAX);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, request) = (Arc::clone(client), run::Request::new(&probe, prompt));
        let stream = config.stream;
        tasks.spawn(async move { request.send(&client, stream).await.is_ok() });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends one request the way the run will and checks that a well-formed answer comes back,
/// so that a wrong URL, a server that is down or one that does not speak the OpenAI API is
/// reported before any load is sent.
pub async fn preflight(config: &BenchConfig) -> Result<(), BenchError> {
    let client = client(config)?;
    let prompt = match &config.dataset {
        Dataset::Prompts(prompts) => prompts.first().cloned(),
        Dataset::Random => None,
    }
    .unwrap_or(BenchPrompt {
        text: "Say hello.".into(),
        output_tokens: None,
    });
    let probe = BenchConfig {
        output_tokens: config.output_tokens.min(8),
        ..config.clone()
    };
    let generation = run::Request::new(&probe, &prompt)
        .send(&client, config.stream)
        .await?;
    if generation.timing.ttft.is_none() {
        return Err(BenchError::Config(format!(
            "the server at {} answered without any content for model `{}`; TTFT cannot be measured",
            config.target.base_url, config.target.model
        )));
    }
    Ok(())
}

/// Prompts of about `input_tokens` words (± `range_ratio`), seeded; each starts with a
/// distinct number so no two share a cached prefix.
fn random_prompts(config: &BenchConfig, count: usize) -> Vec<BenchPrompt> {
    const WORDS: &[&str] = &[
        "time", "river", "stone", "light", "garden", "window", "paper", "music", "silver",
        "orange", "market", "winter", "signal", "forest", "engine", "harbor",
    ];
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let base = config.input_tokens.max(1) as f64;
    let (low, high) = (
        (base * (1.0 - config.range_ratio)).floor().max(1.0) as usize,
        (base * (1.0 + config.range_ratio)).ceil() as usize,
    );
    (0..count)
        .map(|i| {
            let len = rng.usize(low..=high.max(low));
            let mut prompt = format!("{i}");
            for _ in 1..len {
                prompt.push(' ');
                prompt.push_str(WORDS[rng.usize(..WORDS.len())]);
            }
            BenchPrompt {
                text: prompt,
                output_tokens: None,
            }
        })
        .collect()
}
