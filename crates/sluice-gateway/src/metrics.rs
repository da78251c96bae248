//! Per-version live metrics: cumulative counters and fixed-bucket histograms for Prometheus,
//! and sliding windows (10-second buckets over the last five minutes, each with HdrHistograms)
//! that the rollout controller and the admin API read.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Width of one window bucket.
pub const BUCKET: Duration = Duration::from_secs(10);
/// Buckets kept: five minutes.
const BUCKETS: usize = 30;
/// Upper bounds of the Prometheus histograms, in seconds.
const PROMETHEUS_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A 2xx answer, completely delivered.
    Ok,
    /// The upstream answered 4xx because of the request itself (400, 404, 405, 413, 415,
    /// 422): the client's fault, counted apart and never against the version, so that nobody
    /// can roll a canary back by sending it malformed requests.
    ClientError,
    /// The upstream answered any other 4xx (401, 403, 429, …): it refused the version's own
    /// credentials or capacity, which is the version's fault.
    Rejected,
    /// The upstream answered 5xx, or broke its stream.
    ServerError,
    /// An upstream timeout (connect, first token or total).
    Timeout,
    /// The upstream could not be reached.
    UpstreamConnect,
    /// The client went away before the answer was complete.
    ClientClosed,
}

impl Class {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::ClientError => "4xx",
            Class::Rejected => "rejected",
            Class::ServerError => "5xx",
            Class::Timeout => "timeout",
            Class::UpstreamConnect => "upstream_connect",
            Class::ClientClosed => "client_closed",
        }
    }

    /// How an upstream's non-2xx status counts.
    pub fn of_status(status: u16) -> Self {
        match status {
            400 | 404 | 405 | 413 | 415 | 422 => Class::ClientError,
            400..=499 => Class::Rejected,
            _ => Class::ServerError,
        }
    }

    /// Counts against the version's error rate (a client leaving, or sending a request the
    /// upstream rejects as malformed, does not).
    pub fn is_error(self) -> bool {
        !matches!(self, Class::Ok | Class::ClientClosed | Class::ClientError)
    }
}

/// What one finished request contributes.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// How it ended.
    pub class: Class,
    /// From the request's arrival to its last byte.
    pub latency: Duration,
    /// To the first body chunk from upstream (streams), when there was one.
    pub ttft: Option<Duration>,
    /// Time spent in the gateway itself: latency minus the upstream exchange.
    pub overhead: Duration,
    /// Prompt tokens, from `usage`.
    pub prompt_tokens: u64,
    /// Completion tokens, from `usage`.
    pub completion_tokens: u64,
    /// What the request cost in USD, when the version's tokens have a price.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone)]
struct PromHistogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl PromHistogram {
    fn new() -> Self {
        Self {
            counts: vec![0; PROMETHEUS_BOUNDS.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = PROMETHEUS_BOUNDS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in PROMETHEUS_BOUNDS.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

fn window_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2)
        .unwrap_or_else(|e| unreachable!("constant histogram bounds are valid: {e}"))
}

#[derive(Debug)]
struct Bucket {
    index: u64,
    requests: u64,
    classes: BTreeMap<Class, u64>,
    latency: Histogram<u32>,
    ttft: Histogram<u32>,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Requests with a cost, and their total in USD.
    cost: Tally,
    feedback: Tally,
    shadow_f1: Tally,
    shadow_rouge: Tally,
    shadow_cosine: Tally,
    safety_violations: u64,
    injection_attempts: u64,
    refusals: u64,
}

/// A count and a sum, for means.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    count: u64,
    sum: f64,
}

impl Tally {
    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
    }

    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.sum += other.sum;
    }

    fn mean(self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

impl Bucket {
    fn new(index: u64) -> Self {
        Self {
            index,
            requests: 0,
            classes: BTreeMap::new(),
            latency: window_histogram(),
            ttft: window_histogram(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: Tally::default(),
            feedback: Tally::default(),
            shadow_f1: Tally::default(),
            shadow_rouge: Tally::default(),
            shadow_cosine: Tally::default(),
            safety_violations: 0,
            injection_attempts: 0,
            refusals: 0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    classes: BTreeMap<Class, u64>,
    latency: PromHistogram,
    ttft: PromHistogram,
    overhead: PromHistogram,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Requests with a cost, and their total in USD.
    cost: Tally,
    feedback: Tally,
    shadow_compared: u64,
    /// Answers that declined.
    refusals: u64,
    /// Safety violations by kind (`secret`, `pii`, `canary`).
    safety: BTreeMap<&'static str, u64>,
    /// Injection attempts by heuristic (`override`, `invisible`, …).
    injection: BTreeMap<&'static str, u64>,
    /// What the scanner did: answers `redacted` or `blocked`, requests `input_blocked`.
    actions: BTreeMap<&'static str, u64>,
    buckets: VecDeque<Bucket>,
}

impl Inner {
    /// The bucket for window index `index`, created (and old ones dropped) as time moves on.
    fn bucket(&mut self, index: u64) -> &mut Bucket {
        if self.buckets.back().is_none_or(|b| b.index != index) {
            self.buckets.push_back(Bucket::new(index));
            while self.buckets.len() > BUCKETS {
                self.buckets.pop_front();
            }
        }
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }
}

/// One version's metrics.
#[derive(Debug)]
pub struct VersionMetrics {
    inner: Mutex<Inner>,
    in_flight: AtomicI64,
    started: Instant,
}

/// Every version's window, by route then version: what `GET /admin/windows` answers under
/// `windows`, and what the in-process handle returns. One type on both sides, so a renamed
/// field is a compile error or a refused answer, never a silent "no data".
pub type Windows = BTreeMap<String, BTreeMap<String, WindowStats>>;

/// A window's figures, in milliseconds where they are times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// The window asked for, in seconds.
    pub window_s: f64,
    /// Requests finished in the window.
    pub requests: u64,
    /// Requests by how they ended.
    pub classes: BTreeMap<Class, u64>,
    /// Errors (every class but ok, client_closed and 4xx) over requests; 0 without requests.
    pub error_rate: f64,
    /// Requests the upstream rejected as malformed (class 4xx): counted apart from errors.
    pub client_errors: u64,
    /// Requests judged since the version's metrics began (not a window: a counter that only
    /// grows, for sequential tests; a client leaving or a malformed request is not judged).
    pub total_judged: u64,
    /// Errors among `total_judged`.
    pub total_errors: u64,
    /// Latency median.
    pub latency_p50_ms: Option<f64>,
    /// Latency p99.
    pub latency_p99_ms: Option<f64>,
    /// TTFT median.
    pub ttft_p50_ms: Option<f64>,
    /// TTFT p99.
    pub ttft_p99_ms: Option<f64>,
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// What the window's requests cost in USD; `None` when none had a price (the version's
    /// model is not in the price list).
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// The same, per hour at the window's pace.
    #[serde(default)]
    pub cost_per_hour_usd: Option<f64>,
    /// Requests in flight now.
    pub in_flight: i64,
    /// Feedback received for requests this version served.
    pub feedback_count: u64,
    /// Mean feedback score, scaled to 0–1 (ratings 1–5 map to 0–1).
    pub feedback_mean: Option<f64>,
    /// Shadow answers compared with the primary's.
    pub shadow_compared: u64,
    /// Mean token F1 of the shadow answers against the primary's.
    pub shadow_token_f1: Option<f64>,
    /// Mean ROUGE-L of the shadow answers against the primary's.
    pub shadow_rouge_l: Option<f64>,
    /// Mean embedding cosine of the shadow answers against the primary's.
    pub shadow_cosine: Option<f64>,
    /// Answers with at least one safety violation (secret, personal data, canary).
    pub safety_violations: u64,
    /// Safety violations over requests; 0 without requests.
    pub safety_violation_rate: f64,
    /// Requests in which a prompt-injection heuristic fired (what users try; not part of
    /// the safety-violation rate).
    pub injection_attempts: u64,
    /// Answers that declined the request (counted apart from violations: a version that starts
    /// refusing what it used to answer has regressed too).
    pub refusals: u64,
    /// Refusals over requests; 0 without requests.
    pub refusal_rate: f64,
    /// The latency distribution, as `[ms, count]` bins in rising order (on request only):
    /// what a rank test between two versions needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_histogram: Option<Vec<(f64, u64)>>,
}

impl VersionMetrics {
    fn new(started: Instant) -> Self {
        Self {
            inner: Mutex::new(Inner {
                classes: BTreeMap::new(),
                latency: PromHistogram::new(),
                ttft: PromHistogram::new(),
                overhead: PromHistogram::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
                cost: Tally::default(),
                feedback: Tally::default(),
                shadow_compared: 0,
                refusals: 0,
                safety: BTreeMap::new(),
                injection: BTreeMap::new(),
                actions: BTreeMap::new(),
                buckets: VecDeque::with_capacity(BUCKETS + 1),
            }),
            in_flight: AtomicI64::new(0),
            started,
        }
    }

    /// A request started.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request finished.
    pub fn record(&self, observation: &Observation) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let index = self.index();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.classes.entry(observation.class).or_default() += 1;
        inner.latency.observe(observation.latency);
        inner.overhead.observe(observation.overhead);
        if let Some(ttft) = observation.ttft {
            inner.ttft.observe(ttft);
        }
        inner.prompt_tokens += observation.prompt_tokens;
        inner.completion_tokens += observation.completion_tokens;
        if let Some(cost) = observation.cost_usd {
            inner.cost.add(cost);
        }
        let bucket = inner.bucket(index);
        if let Some(cost) = observation.cost_usd {
            bucket.cost.add(cost);
        }
        bucket.prompt_tokens += observation.prompt_tokens;
        bucket.requests += 1;
        *bucket.classes.entry(observation.class).or_default() += 1;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        bucket
            .latency
            .saturating_record(micros(observation.latency));
        if let Some(ttft) = observation.ttft {
            bucket.ttft.saturating_record(micros(ttft));
        }
        bucket.completion_tokens += observation.completion_tokens;
    }

    fn index(&self) -> u64 {
        self.started.elapsed().as_secs() / BUCKET.as_secs()
    }

    /// Feedback for a request this version served, as a score from 0 to 1.
    pub fn record_feedback(&self, score: f64) {
        let index = self.index();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.feedback.add(score);
        inner.bucket(index).feedback.add(score);
    }

    /// An answer of this version with these safety violations (kinds, each once).
    pub fn record_safety(&self, kinds: &[&'static str]) {
        if kinds.is_empty() {
            return;
        }
        let index = self.index();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for kind in kinds {
            *inner.safety.entry(kind).or_default() += 1;
        }
        inner.bucket(index).safety_violations += 1;
    }

    /// The scanner changed an answer (`redacted`), withheld one (`blocked`) or refused a
    /// request (`input_blocked`).
    pub fn record_action(&self, action: &'static str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.actions.entry(action).or_default() += 1;
    }

    /// An answer of this version that declined the request.
    pub fn record_refusal(&self) {
        let index = self.index();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.refusals += 1;
        inner.bucket(index).refusals += 1;
    }

    /// A request to this version on which these injection heuristics fired.
    pub fn record_injection(&self, flags: &[&'static str]) {
        if flags.is_empty() {
            return;
        }
        let index = self.index();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for flag in flags {
            *inner.injection.entry(flag).or_default() += 1;
        }
        inner.bucket(index).injection_attempts += 1;
    }

    /// A shadow answer of this version compared with the primary's.
    pub fn record_shadow(&self, similarity: &crate::similarity::Similarity) {
        let index = self.index();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.shadow_compared += 1;
        let bucket = inner.bucket(index);
        bucket.shadow_f1.add(similarity.token_f1);
        bucket.shadow_rouge.add(similarity.rouge_l);
        if let Some(cosine) = similarity.cosine {
            bucket.shadow_cosine.add(cosine);
        }
    }

    /// The figures of the last `span` (rounded up to whole 10-second buckets), with the
    /// latency bins when `histogram` is set.
    pub fn window(&self, span: Duration, histogram: bool) -> WindowStats {
        let now = self.started.elapsed().as_secs() / BUCKET.as_secs();
        let count = span.as_secs().div_ceil(BUCKET.as_secs()).max(1);
        let oldest = (now + 1).saturating_sub(count);
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats = WindowStats {
            window_s: span.as_secs_f64(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            ..WindowStats::default()
        };
        for (class, n) in &inner.classes {
            if !matches!(class, Class::ClientClosed | Class::ClientError) {
                stats.total_judged += n;
            }
            if class.is_error() {
                stats.total_errors += n;
            }
        }
        let mut latency = window_histogram();
        let mut ttft = window_histogram();
        let (mut feedback, mut f1, mut rouge, mut cosine) = (
            Tally::default(),
            Tally::default(),
            Tally::default(),
            Tally::default(),
        );
        let mut cost = Tally::default();
        for bucket in inner.buckets.iter().filter(|b| b.index >= oldest) {
            cost.merge(bucket.cost);
            stats.prompt_tokens += bucket.prompt_tokens;
            feedback.merge(bucket.feedback);
            f1.merge(bucket.shadow_f1);
            rouge.merge(bucket.shadow_rouge);
            cosine.merge(bucket.shadow_cosine);
            stats.requests += bucket.requests;
            for (class, n) in &bucket.classes {
                *stats.classes.entry(*class).or_default() += n;
            }
            let _ = latency.add(&bucket.latency);
            let _ = ttft.add(&bucket.ttft);
            stats.completion_tokens += bucket.completion_tokens;
            stats.safety_violations += bucket.safety_violations;
            stats.injection_attempts += bucket.injection_attempts;
            stats.refusals += bucket.refusals;
        }
        let errors: u64 = stats
            .classes
            .iter()
            .filter(|(c, _)| c.is_error())
            .map(|(_, n)| n)
            .sum();
        stats.client_errors = stats.classes.get(&Class::ClientError).copied().unwrap_or(0);
        if stats.requests > 0 {
            stats.error_rate = errors as f64 / stats.requests as f64;
            stats.safety_violation_rate = stats.safety_violations as f64 / stats.requests as f64;
            stats.refusal_rate = stats.refusals as f64 / stats.requests as f64;
        }
        let ms = |h: &Histogram<u32>, q: f64| {
            (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
        };
        stats.latency_p50_ms = ms(&latency, 0.5);
        stats.latency_p99_ms = ms(&latency, 0.99);
        if histogram {
            stats.latency_histogram = Some(
                latency
                    .iter_recorded()
                    .map(|v| {
                        (
                            v.value_iterated_to() as f64 / 1000.0,
                            u64::from(v.count_at_value()),
                        )
                    })
                    .collect(),
            );
        }
        stats.ttft_p50_ms = ms(&ttft, 0.5);
        stats.ttft_p99_ms = ms(&ttft, 0.99);
        if cost.count > 0 {
            stats.cost_usd = Some(cost.sum);
            // The pace of the window asked for (whole buckets are read, so a little more
            // than `span` may be in it: the hourly figure errs high, never low).
            stats.cost_per_hour_usd = Some(cost.sum * 3600.0 / span.as_secs_f64().max(1.0));
        }
        stats.feedback_count = feedback.count;
        stats.feedback_mean = feedback.mean();
        stats.shadow_compared = f1.count;
        stats.shadow_token_f1 = f1.mean();
        stats.shadow_rouge_l = rouge.mean();
        stats.shadow_cosine = cosine.mean();
        stats
    }
}

/// Every version's metrics, by route and version.
#[derive(Debug)]
pub struct Metrics {
    versions: RwLock<BTreeMap<(String, String), Arc<VersionMetrics>>>,
    started: Instant,
    /// Shadow copies dropped because their queue was full.
    pub shadow_dropped: AtomicU64,
    /// Request-log entries dropped because the writer's queue was full.
    pub log_dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            versions: RwLock::new(BTreeMap::new()),
            started: Instant::now(),
            shadow_dropped: AtomicU64::new(0),
            log_dropped: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// A version's metrics, created on first use (they outlive config reloads).
    pub fn version(&self, route: &str, version: &str) -> Arc<VersionMetrics> {
        let key = (route.to_owned(), version.to_owned());
        if let Some(found) = self
            .versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Arc::clone(found);
        }
        let mut versions = self.versions.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            versions
                .entry(key)
                .or_insert_with(|| Arc::new(VersionMetrics::new(self.started))),
        )
    }

    /// Every version's window, by route then version (with latency bins when `histogram`).
    pub fn windows(&self, span: Duration, histogram: bool) -> Windows {
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Windows = BTreeMap::new();
        for ((route, version), metrics) in versions.iter() {
            out.entry(route.clone())
                .or_default()
                .insert(version.clone(), metrics.window(span, histogram));
        }
        out
    }

    /// Everything in Prometheus's text format.
    pub fn prometheus(&self) -> String {
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let labels = |route: &str, version: &str| {
            format!(
                "route=\"{}\",version=\"{}\"",
                escape(route),
                escape(version)
            )
        };
        out.push_str("# HELP sluice_gateway_requests_total Requests finished, by how they ended.\n# TYPE sluice_gateway_requests_total counter\n");
        for ((route, version), m) in versions.iter() {
            let inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
            for (class, n) in &inner.classes {
                let _ = writeln!(
                    out,
                    "sluice_gateway_requests_total{{{},class=\"{}\"}} {n}",
                    labels(route, version),
                    class.as_str()
                );
            }
        }
        out.push_str("# HELP sluice_gateway_in_flight Requests in flight.\n# TYPE sluice_gateway_in_flight gauge\n");
        for ((route, version), m) in versions.iter() {
            let _ = writeln!(
                out,
                "sluice_gateway_in_flight{{{}}} {}",
                labels(route, version),
                m.in_flight.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP sluice_gateway_tokens_total Tokens from upstream usage.\n# TYPE sluice_gateway_tokens_total counter\n");
        for ((route, version), m) in versions.iter() {
            let inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
            for (kind, n) in [
                ("prompt", inner.prompt_tokens),
                ("completion", inner.completion_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "sluice_gateway_tokens_total{{{},kind=\"{kind}\"}} {n}",
                    labels(route, version)
                );
            }
        }
        out.push_str("# HELP sluice_gateway_cost_usd_total What requests cost in USD at the version's token prices (versions with a price only).\n# TYPE sluice_gateway_cost_usd_total counter\n");
        for ((route, version), m) in versions.iter() {
            let inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.cost.count > 0 {
                let _ = writeln!(
                    out,
                    "sluice_gateway_cost_usd_total{{{}}} {}",
                    labels(route, version),
                    inner.cost.sum
                );
            }
        }
        out.push_str("# HELP sluice_gateway_feedback_total Feedback received, by the version that served.\n# TYPE sluice_gateway_feedback_total counter\n");
        for ((route, version), m) in versions.iter() {
            let inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(
                out,
                "sluice_gateway_feedback_total{{{}}} {}",
                labels(route, version),
                inner.feedback.count
            );
        }
        type Count = fn(&Inner) -> u64;
        let counters: [(&str, &str, Count); 2] = [
            (
                "sluice_gateway_shadow_compared_total",
                "Shadow answers compared with the primary's.",
                |inner| inner.shadow_compared,
            ),
            (
                "sluice_gateway_refusals_total",
                "Answers that declined the request.",
                |inner| inner.refusals,
            ),
        ];
        for (name, help, count) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((route, version), m) in versions.iter() {
                let inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {}",
                    labels(route, version),
                    count(&inner)
                );
            }
        }
        type Counts = fn(&Inner) -> &BTreeMap<&'static str, u64>;
        let tallies: [(&str, &str, &str, Counts); 3] = [
            (
                "sluice_gateway_safety_violations_total",
                "Answers holding a secret, personal data or a planted canary, by kind.",
                "kind",
                |inner| &inner.safety,
            ),
            (
                "sluice_gateway_injection_attempts_total",
                "Requests on which a prompt-injection heuristic fired, by heuristic.",
                "kind",
                |inner| &inner.injection,
            ),
            (
                "sluice_gateway_safety_actions_total",
                "Answers redacted or blocked, and requests refused, by the safety scanner.",
                "action",
                |inner| &inner.actions,
            ),
        ];
        for (name, help, label, counts) in tallies {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((route, version), m) in versions.iter() {
                let inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
                for (kind, n) in counts(&inner) {
                    let _ = writeln!(
                        out,
                        "{name}{{{},{label}=\"{kind}\"}} {n}",
                        labels(route, version)
                    );
                }
            }
        }
        for (name, help, pick) in [
            (
                "sluice_gateway_request_duration_seconds",
                "From request arrival to its last byte.",
                0,
            ),
            (
                "sluice_gateway_ttft_seconds",
                "From request arrival to the first streamed chunk.",
                1,
            ),
            (
                "sluice_gateway_overhead_seconds",
                "Time spent in the gateway: request duration minus the upstream exchange.",
                2,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for ((route, version), m) in versions.iter() {
                let inner = m.inner.lock().unwrap_or_else(|p| p.into_inner());
                let histogram = match pick {
                    0 => &inner.latency,
                    1 => &inner.ttft,
                    _ => &inner.overhead,
                };
                histogram.write(&mut out, name, &labels(route, version));
            }
        }
        out.push_str("# HELP sluice_gateway_shadow_dropped_total Shadow copies dropped on a full queue.\n# TYPE sluice_gateway_shadow_dropped_total counter\n");
        let _ = writeln!(
            out,
            "sluice_gateway_shadow_dropped_total {}",
            self.shadow_dropped.load(Ordering::Relaxed)
        );
        out.push_str("# HELP sluice_gateway_log_dropped_total Request-log entries dropped on a full queue.\n# TYPE sluice_gateway_log_dropped_total counter\n");
        let _ = writeln!(
            out,
            "sluice_gateway_log_dropped_total {}",
            self.log_dropped.load(Ordering::Relaxed)
        );
        out
    }
}

/// A version's metrics, looked up once and then kept in the routing snapshot (clones share
/// it), so that serving a request takes no lock and allocates no key to find them.
#[derive(Clone, Default)]
pub struct MetricsHandle(Arc<OnceLock<Arc<VersionMetrics>>>);

impl MetricsHandle {
    /// The metrics of `version` on `route`, from `metrics` the first time.
    pub fn get(&self, metrics: &Metrics, route: &str, version: &str) -> Arc<VersionMetrics> {
        Arc::clone(self.0.get_or_init(|| metrics.version(route, version)))
    }
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "MetricsHandle(found)"
        } else {
            "MetricsHandle(not yet)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(class: Class, ms: u64) -> Observation {
        Observation {
            class,
            latency: Duration::from_millis(ms),
            ttft: Some(Duration::from_millis(ms / 2)),
            overhead: Duration::from_micros(50),
            prompt_tokens: 3,
            completion_tokens: 5,
            cost_usd: Some(0.5),
        }
    }

    #[test]
    fn windows_read_back_as_the_same_type_from_their_json() {
        let metrics = Metrics::default();
        let v = metrics.version("chat", "candidate");
        for (i, class) in [
            Class::Ok,
            Class::ClientError,
            Class::Rejected,
            Class::ServerError,
        ]
        .into_iter()
        .enumerate()
        {
            v.begin();
            v.record(&observation(class, 10 + i as u64));
        }
        for histogram in [false, true] {
            let windows = metrics.windows(Duration::from_secs(60), histogram);
            let json = serde_json::to_string(&serde_json::json!({ "windows": windows })).unwrap();
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            let read: Windows = serde_json::from_value(back["windows"].clone()).unwrap();
            assert_eq!(read, windows);
        }
        let w = &metrics.windows(Duration::from_secs(60), false)["chat"]["candidate"];
        assert_eq!(
            (w.requests, w.client_errors, w.total_judged, w.total_errors),
            (4, 1, 3, 2)
        );
    }

    #[test]
    fn windows_and_prometheus_agree() {
        let metrics = Metrics::default();
        let v = metrics.version("chat", "stable");
        for i in 0..100 {
            v.begin();
            let class = if i < 5 { Class::ServerError } else { Class::Ok };
            v.record(&observation(class, 10 + i));
        }
        let w = v.window(Duration::from_secs(60), true);
        let bins = w.latency_histogram.clone().unwrap_or_default();
        assert_eq!(bins.iter().map(|(_, n)| n).sum::<u64>(), w.requests);
        assert!(bins.windows(2).all(|b| b[0].0 < b[1].0), "{bins:?}");
        assert_eq!(w.requests, 100);
        assert!((w.error_rate - 0.05).abs() < 1e-9);
        assert!(
            w.latency_p99_ms.is_some_and(|p| (p - 108.0).abs() < 2.0),
            "{w:?}"
        );
        assert_eq!(w.in_flight, 0);
        let text = metrics.prometheus();
        assert!(
            text.contains(
                "sluice_gateway_requests_total{route=\"chat\",version=\"stable\",class=\"ok\"} 95"
            ),
            "{text}"
        );
        assert!(text.contains(
            "sluice_gateway_requests_total{route=\"chat\",version=\"stable\",class=\"5xx\"} 5"
        ));
        assert!(text.contains(
            "sluice_gateway_overhead_seconds_count{route=\"chat\",version=\"stable\"} 100"
        ));
        assert!(text.contains(
            "sluice_gateway_tokens_total{route=\"chat\",version=\"stable\",kind=\"completion\"} 500"
        ));
    }
}
