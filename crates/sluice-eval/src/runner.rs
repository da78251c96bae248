//! Runs a suite: every test × prompt × provider × repeat, with bounded concurrency, each row
//! handed to the caller as soon as it is graded (the caller stores it before reporting it).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use sluice_llm::types::{ChatMessage, ChatRequest, CompletionRequest, OneOrMany};
use sluice_llm::{Client, ClientConfig, Generation, LlmError, RetryPolicy, Timeouts, TokenCounts};
use tokio::sync::{Semaphore, mpsc};

use std::time::{SystemTime, UNIX_EPOCH};

use crate::assertion::{Grade, Output, weighted_score};
use crate::cache::{CachedResponse, ResponseCache};
use crate::graded::Judge;
use crate::suite::{Endpoint, Prompt, Provider, Suite, TestCase};
use crate::template::{self, Vars};

/// Command-line overrides and gate settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides `evaluateOptions.maxConcurrency`.
    pub max_concurrency: Option<usize>,
    /// Overrides `evaluateOptions.repeat`.
    pub repeat: Option<usize>,
    /// Only tests whose description matches.
    pub filter: Option<Regex>,
    /// Retries per request.
    pub max_retries: u32,
    /// Work items (by `seq`) already done, when resuming a run.
    pub skip: HashSet<u64>,
    /// Only tests with these fingerprints (`--filter-failing`).
    pub only_tests: Option<HashSet<String>>,
    /// The response cache; `None` (or `evaluateOptions.cache: false`) sends every request.
    pub cache: Option<ResponseCache>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_concurrency: None,
            repeat: None,
            filter: None,
            max_retries: 2,
            skip: HashSet::new(),
            only_tests: None,
            cache: None,
        }
    }
}

/// The gate: what a run must achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// Minimum fraction of graded rows that pass (1.0 = every one).
    pub min_pass_rate: f64,
    /// Provider errors tolerated before the gate fails.
    pub max_errors: u64,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            min_pass_rate: 1.0,
            max_errors: 0,
        }
    }
}

/// One graded (or errored) test × prompt × provider × repeat.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvalRow {
    /// Position in the run.
    pub seq: u64,
    /// Stable identity for pairing with other runs: test, prompt and provider.
    pub key: String,
    /// Test index.
    pub test_index: usize,
    /// Test description.
    pub description: String,
    /// Prompt label.
    pub prompt: String,
    /// Prompt position in the suite.
    pub prompt_index: usize,
    /// Provider label.
    pub provider: String,
    /// Provider position in the suite.
    pub provider_index: usize,
    /// Repeat index, from 0.
    pub repeat: usize,
    /// Variables.
    pub vars: Vars,
    /// The output graded, when one was produced.
    pub output: Option<String>,
    /// The error that kept a verdict from being reached.
    pub error: Option<String>,
    /// Passed (false when errored).
    pub pass: bool,
    /// Weighted score, 0 to 1.
    pub score: f64,
    /// Each assertion's verdict.
    pub grades: Vec<Grade>,
    /// Named metric scores (mean of the assertions tagged with each).
    pub named_scores: BTreeMap<String, f64>,
    /// End-to-end latency in ms.
    pub latency_ms: f64,
    /// Token counts with their source.
    pub tokens: Option<TokenCounts>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// Answered from the response cache (its latency is the original request's).
    #[serde(default)]
    pub cached: bool,
    /// Cost in USD of the request, when the provider's prices are configured (a cached
    /// answer costs nothing).
    #[serde(default)]
    pub cost: Option<f64>,
}

impl EvalRow {
    /// Why the row did not pass: its error, else each failed assertion and its reason,
    /// joined by `; ` (empty for a row that passed).
    pub fn why(&self) -> String {
        match &self.error {
            Some(error) => format!("error: {error}"),
            None => self.failed_assertions(),
        }
    }

    /// The failed assertions and why, joined by `; `.
    pub fn failed_assertions(&self) -> String {
        self.grades
            .iter()
            .filter(|g| !g.pass)
            .map(|g| format!("{}: {}", g.assertion, g.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Counts for one prompt × provider pair, or for the whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Rows that passed.
    pub passed: u64,
    /// Rows that failed their assertions.
    pub failed: u64,
    /// Rows that errored.
    pub errors: u64,
    /// Sum of latencies, ms.
    pub latency_ms: f64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in USD of the rows whose cost is known.
    pub cost: f64,
}

impl Tally {
    fn add(&mut self, row: &EvalRow) {
        match (&row.error, row.pass) {
            (Some(_), _) => self.errors += 1,
            (None, true) => self.passed += 1,
            (None, false) => self.failed += 1,
        }
        self.latency_ms += row.latency_ms;
        if let Some(tokens) = row.tokens {
            self.prompt_tokens += tokens.prompt;
            self.completion_tokens += tokens.completion;
        }
        self.cost += row.cost.unwrap_or(0.0);
    }

    /// All rows.
    pub fn total(&self) -> u64 {
        self.passed + self.failed + self.errors
    }

    /// Passed over all rows (errors count against it); 1 with no rows.
    pub fn pass_rate(&self) -> f64 {
        if self.total() == 0 {
            1.0
        } else {
            self.passed as f64 / self.total() as f64
        }
    }
}

/// Per-test outcome across repeats (and prompts × providers).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TestTally {
    /// Description.
    pub description: String,
    /// Passing rows.
    pub passed: u64,
    /// Graded rows (errors excluded).
    pub graded: u64,
}

impl TestTally {
    /// Both passed and failed across its rows.
    pub fn is_flaky(&self) -> bool {
        self.passed > 0 && self.passed < self.graded
    }

    /// pass@k: the chance that at least one of `k` samples drawn from its `graded` results
    /// passes (the unbiased estimator `1 − C(n−c, k) / C(n, k)`).
    pub fn pass_at(&self, k: u64) -> f64 {
        let (n, c) = (self.graded, self.passed);
        if k == 0 || k > n {
            return f64::NAN;
        }
        1.0 - ratio_of_choose(n - c, n, k)
    }

    /// pass^k: the chance that all of `k` samples pass (`C(c, k) / C(n, k)`).
    pub fn pass_all(&self, k: u64) -> f64 {
        let (n, c) = (self.graded, self.passed);
        if k == 0 || k > n {
            return f64::NAN;
        }
        ratio_of_choose(c, n, k)
    }
}

/// `C(a, k) / C(n, k)` for `a ≤ n`, as a product that stays finite.
fn ratio_of_choose(a: u64, n: u64, k: u64) -> f64 {
    if a < k {
        return 0.0;
    }
    (0..k).map(|i| (a - i) as f64 / (n - i) as f64).product()
}

/// What a run came to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Whole run.
    pub total: Tally,
    /// By `prompt → provider` (reports write it as a list).
    #[serde(skip)]
    pub by_pair: BTreeMap<(String, String), Tally>,
    /// By test index.
    pub by_test: BTreeMap<usize, TestTally>,
    /// Mean of each named metric over rows that reported it.
    pub named_scores: BTreeMap<String, f64>,
    #[serde(skip)]
    named_counts: BTreeMap<String, u64>,
    #[serde(skip)]
    named_squares: BTreeMap<String, f64>,
}

impl Summary {
    /// Adds a row.
    pub fn add(&mut self, row: &EvalRow) {
        self.total.add(row);
        self.by_pair
            .entry((row.prompt.clone(), row.provider.clone()))
            .or_default()
            .add(row);
        let test = self
            .by_test
            .entry(row.test_index)
            .or_insert_with(|| TestTally {
                description: row.description.clone(),
                ..TestTally::default()
            });
        if row.error.is_none() {
            test.graded += 1;
            test.passed += u64::from(row.pass);
        }
        for (metric, score) in &row.named_scores {
            let count = self.named_counts.entry(metric.clone()).or_default();
            let mean = self.named_scores.entry(metric.clone()).or_default();
            *mean = (*mean * *count as f64 + score) / (*count + 1) as f64;
            *count += 1;
            *self.named_squares.entry(metric.clone()).or_default() += score * score;
        }
    }

    /// A named metric's mean, number of scores and standard error of the mean.
    pub fn named_metric(&self, name: &str) -> Option<(f64, u64, f64)> {
        let mean = *self.named_scores.get(name)?;
        let count = self.named_counts.get(name).copied().unwrap_or(0);
        let squares = self.named_squares.get(name).copied().unwrap_or(0.0);
        Some((mean, count, standard_error(mean, squares, count)))
    }

    /// The pass rate of graded rows, their number and its standard error.
    pub fn pass_rate_stats(&self) -> (f64, u64, f64) {
        let graded = self.total.passed + self.total.failed;
        let rate = if graded == 0 {
            0.0
        } else {
            self.total.passed as f64 / graded as f64
        };
        (
            rate,
            graded,
            standard_error(rate, self.total.passed as f64, graded),
        )
    }

    /// Whether the gate passes, with the reasons it does not.
    pub fn verdict(&self, gate: &Gate) -> (bool, Vec<String>) {
        let mut reasons = Vec::new();
        let graded = Tally {
            errors: 0,
            ..self.total.clone()
        };
        if graded.pass_rate() < gate.min_pass_rate {
            reasons.push(format!(
                "pass rate {:.1}% ({} of {}) is below the required {:.1}%",
                graded.pass_rate() * 100.0,
                graded.passed,
                graded.total(),
                gate.min_pass_rate * 100.0
            ));
        }
        if self.total.errors > gate.max_errors {
            reasons.push(format!(
                "{} provider errors (at most {} allowed)",
                self.total.errors, gate.max_errors
            ));
        }
        (reasons.is_empty(), reasons)
    }
}

/// The standard error of a mean from the sum of squares of `count` values (sample variance).
fn standard_error(mean: f64, squares: f64, count: u64) -> f64 {
    if count < 2 {
        return 0.0;
    }
    let n = count as f64;
    let variance = ((squares - n * mean * mean) / (n - 1.0)).max(0.0);
    (variance / n).sqrt()
}

/// A configuration problem found before any request is sent.
#[derive(Debug, thiserror::Error)]
#[error("provider `{provider}`: {source}")]
pub struct ProviderSetupError {
    provider: String,
    #[source]
    source: LlmError,
}

struct Work {
    seq: u64,
    test: Arc<TestCase>,
    prompt_index: usize,
    provider_index: usize,
    repeat: usize,
}

/// Runs `suite`, sending every row to `rows` as it completes. Returns when all are sent.
pub async fn run(
    suite: &Suite,
    options: &RunOptions,
    rows: mpsc::Sender<EvalRow>,
) -> Result<(), ProviderSetupError> {
    let timeouts = Timeouts {
        total: if suite.options.timeout_ms > 0 {
            Duration::from_millis(suite.options.timeout_ms)
        } else {
            Timeouts::default().total
        },
        ..Timeouts::default()
    };
    let build = |provider: &Provider| -> Result<Client, ProviderSetupError> {
        let mut config =
            ClientConfig::for_endpoint(&provider.target, |name| std::env::var(name).ok()).map_err(
                |source| ProviderSetupError {
                    provider: provider.label.clone(),
                    source,
                },
            )?;
        config.timeouts = timeouts;
        config.retry = RetryPolicy {
            max_retries: options.max_retries,
            ..RetryPolicy::default()
        };
        Client::new(config).map_err(|source| ProviderSetupError {
            provider: provider.label.clone(),
            source,
        })
    };
    let clients = suite
        .providers
        .iter()
        .map(build)
        .collect::<Result<Vec<_>, _>>()?;
    let grader_clients = suite
        .graders
        .iter()
        .map(build)
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(Shared {
        prompts: suite.prompts.clone(),
        providers: suite.providers.clone(),
        clients,
        graders: suite.graders.clone(),
        grader_clients,
        cache: options.cache.clone().filter(|_| suite.options.cache),
        http: reqwest::Client::builder()
            .timeout(timeouts.total)
            .build()
            .map_err(|error| ProviderSetupError {
                provider: "http".to_owned(),
                source: LlmError::Connect {
                    url: String::new(),
                    reason: error.to_string(),
                },
            })?,
    });
    let concurrency = options
        .max_concurrency
        .unwrap_or(suite.options.max_concurrency)
        .max(1);
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let mut handles = Vec::new();
    let mut current: Option<(usize, Arc<TestCase>)> = None;
    for planned in plan(suite, options) {
        if options.skip.contains(&planned.seq) {
            continue;
        }
        let test = match &current {
            Some((index, test)) if *index == planned.test_index => test.clone(),
            _ => {
                let test = Arc::new(suite.tests[planned.test_index].clone());
                current = Some((planned.test_index, test.clone()));
                test
            }
        };
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            return Ok(());
        };
        let work = Work {
            seq: planned.seq,
            test,
            prompt_index: planned.prompt_index,
            provider_index: planned.provider_index,
            repeat: planned.repeat,
        };
        let (shared, rows) = (shared.clone(), rows.clone());
        handles.push(tokio::spawn(async move {
            let row = evaluate(&work, &shared).await;
            drop(permit);
            let _ = rows.send(row).await;
        }));
        if handles.len() >= concurrency * 4 {
            handles.retain(|h| !h.is_finished());
        }
    }
    for handle in handles {
        let _ = handle.await;
    }
    Ok(())
}

/// One planned work item: which test, repeat, prompt and provider get which `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Position in the run.
    pub seq: u64,
    /// Index into `Suite::tests`.
    pub test_index: usize,
    /// Repeat index.
    pub repeat: usize,
    /// Index into `Suite::prompts`.
    pub prompt_index: usize,
    /// Index into `Suite::providers`.
    pub provider_index: usize,
}

/// The run's work items in order. The same suite and options always give the same plan, which
/// is what makes a run resumable.
pub fn plan<'a>(suite: &'a Suite, options: &'a RunOptions) -> impl Iterator<Item = Planned> + 'a {
    let repeat = options.repeat.unwrap_or(suite.options.repeat).max(1);
    let (prompts, providers) = (suite.prompts.len(), suite.providers.len());
    suite
        .tests
        .iter()
        .filter(move |test| {
            options
                .filter
                .as_ref()
                .is_none_or(|f| f.is_match(&test.description))
        })
        .filter(move |test| {
            options
                .only_tests
                .as_ref()
                .is_none_or(|only| only.contains(&test_fingerprint(test)))
        })
        .flat_map(move |test| {
            (0..repeat).flat_map(move |repeat| {
                (0..prompts).flat_map(move |prompt_index| {
                    (0..providers).map(move |provider_index| {
                        (test.index, repeat, prompt_index, provider_index)
                    })
                })
            })
        })
        .enumerate()
        .map(
            |(seq, (test_index, repeat, prompt_index, provider_index))| Planned {
                seq: seq as u64,
                test_index,
                repeat,
                prompt_index,
                provider_index,
            },
        )
}

/// A fingerprint of the plan: the keys and repeats of every work item in order. A run resumes
/// only under the same fingerprint.
pub fn plan_fingerprint(suite: &Suite, options: &RunOptions) -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut mix = |text: &str| {
        for byte in text.bytes().chain(std::iter::once(0)) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for planned in plan(suite, options) {
        let test = &suite.tests[planned.test_index];
        mix(&test_fingerprint(test));
        mix(&suite.prompts[planned.prompt_index].template);
        mix(&suite.providers[planned.provider_index].id);
        mix(&planned.repeat.to_string());
    }
    format!("{hash:016x}")
}

/// Runs `suite` and collects every row (in `seq` order) and the summary; for callers that
/// do not store rows as they arrive.
pub async fn collect(
    suite: &Suite,
    options: &RunOptions,
) -> Result<(Vec<EvalRow>, Summary), ProviderSetupError> {
    let (sender, mut receiver) = mpsc::channel(256);
    let collector = async {
        let mut rows = Vec::new();
        let mut summary = Summary::default();
        while let Some(row) = receiver.recv().await {
            summary.add(&row);
            rows.push(row);
        }
        rows.sort_by_key(|row: &EvalRow| row.seq);
        (rows, summary)
    };
    let (result, collected) = tokio::join!(run(suite, options, sender), collector);
    result.map(|()| collected)
}

/// Prompt text that is a JSON list of `{role, content}` messages is sent as that chat.
fn messages(rendered: &str) -> Vec<ChatMessage> {
    let trimmed = rendered.trim_start();
    if trimmed.starts_with('[')
        && let Ok(messages) = serde_json::from_str::<Vec<ChatMessage>>(trimmed)
        && !messages.is_empty()
    {
        return messages;
    }
    vec![ChatMessage::new("user", rendered)]
}

/// One provider request, as sent (and as keyed in the cache).
enum Request {
    Chat(ChatRequest),
    Completion(CompletionRequest),
}

fn request(provider: &Provider, rendered: &str) -> Request {
    let stop = (!provider.stop.is_empty()).then(|| OneOrMany::Many(provider.stop.clone()));
    match provider.endpoint {
        Endpoint::Completion => {
            let mut request = CompletionRequest::new(provider.target.model.clone(), rendered);
            request.max_tokens = provider.max_tokens;
            request.temperature = provider.temperature;
            request.seed = provider.seed;
            request.stop = stop;
            Request::Completion(request)
        }
        // Embedding providers only grade (the suite compiler keeps them out of `providers`) and
        // `http` providers are called by `http_provider::call`; neither reaches here.
        Endpoint::Chat | Endpoint::Embedding | Endpoint::Http => Request::Chat(ChatRequest {
            model: provider.target.model.clone(),
            messages: messages(rendered),
            max_tokens: provider.max_tokens,
            temperature: provider.temperature,
            top_p: provider.top_p,
            seed: provider.seed,
            stop,
            ..ChatRequest::default()
        }),
    }
}

/// Sends the request, or answers it from the cache; returns whether it was cached.
async fn call(
    provider: &Provider,
    client: &Client,
    rendered: &str,
    cache: Option<&ResponseCache>,
    repeat: usize,
) -> Result<(Generation, bool), LlmError> {
    let request = request(provider, rendered);
    let key = cache.map(|_| {
        let (endpoint, body) = match &request {
            Request::Chat(r) => ("chat", serde_json::to_string(r).unwrap_or_default()),
            Request::Completion(r) => ("completion", serde_json::to_string(r).unwrap_or_default()),
        };
        ResponseCache::key(endpoint, &provider.target.base_url, &body, repeat)
    });
    if let (Some(cache), Some(key)) = (cache, &key)
        && let Some(hit) = cache.get(key)
    {
        let generation = Generation {
            text: hit.text,
            finish_reason: hit.finish_reason,
            tool_calls: hit.tool_calls,
            tokens: hit.tokens,
            timing: sluice_llm::Timing {
                e2e: Duration::from_secs_f64(hit.latency_ms / 1000.0),
                ..sluice_llm::Timing::default()
            },
            ..Generation::default()
        };
        return Ok((generation, true));
    }
    let generation = match &request {
        Request::Chat(r) => client.chat(r).await?,
        Request::Completion(r) => client.completion(r).await?,
    };
    if let (Some(cache), Some(key)) = (cache, &key) {
        let entry = CachedResponse {
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            text: generation.text.clone(),
            finish_reason: generation.finish_reason.clone(),
            tool_calls: generation.tool_calls.clone(),
            tokens: generation.tokens,
            latency_ms: generation.timing.e2e.as_secs_f64() * 1000.0,
        };
        if let Err(error) = cache.put(key, &entry) {
            tracing::warn!(%error, dir = %cache.dir().display(), "Cannot write to the response cache.");
        }
    }
    Ok((generation, false))
}

/// What every task of a run reads.
struct Shared {
    prompts: Vec<Prompt>,
    providers: Vec<Provider>,
    clients: Vec<Client>,
    graders: Vec<Provider>,
    grader_clients: Vec<Client>,
    cache: Option<ResponseCache>,
    http: reqwest::Client,
}

async fn evaluate(work: &Work, shared: &Shared) -> EvalRow {
    let (prompt, provider, client) = (
        &shared.prompts[work.prompt_index],
        &shared.providers[work.provider_index],
        &shared.clients[work.provider_index],
    );
    let judges: Vec<Judge<'_>> = shared
        .graders
        .iter()
        .zip(&shared.grader_clients)
        .map(|(provider, client)| Judge { provider, client })
        .collect();
    let test = &work.test;
    let mut row = EvalRow {
        seq: work.seq,
        key: format!(
            "{}:{}:{}",
            test_fingerprint(test),
            prompt.label,
            provider.label
        ),
        test_index: test.index,
        description: test.description.clone(),
        prompt: prompt.label.clone(),
        prompt_index: work.prompt_index,
        provider: provider.label.clone(),
        provider_index: work.provider_index,
        repeat: work.repeat,
        vars: test.vars.clone(),
        output: None,
        error: None,
        pass: false,
        score: 0.0,
        grades: Vec::new(),
        named_scores: BTreeMap::new(),
        latency_ms: 0.0,
        tokens: None,
        finish_reason: None,
        cached: false,
        cost: None,
    };
    let rendered = match template::render(&prompt.template, &test.vars) {
        Ok(rendered) => rendered,
        Err(error) if test.provider_output.is_none() => {
            row.error = Some(format!("prompt `{}`: {error}", prompt.label));
            return row;
        }
        Err(_) => String::new(),
    };
    let generation = match &test.provider_output {
        Some(output) => Generation {
            text: output.clone(),
            finish_reason: Some("stop".to_owned()),
            ..Generation::default()
        },
        None if provider.endpoint == Endpoint::Http => {
            let outcome = match provider.http.as_ref() {
                Some(config) => {
                    crate::http_provider::call(config, &shared.http, &rendered, &test.vars)
                        .await
                        .map_err(|e| sluice_core::error_chain(&e))
                }
                None => Err(format!(
                    "provider `{}` has no http settings",
                    provider.label
                )),
            };
            match outcome {
                Ok((text, latency_ms)) => Generation {
                    text,
                    finish_reason: Some("stop".to_owned()),
                    timing: sluice_llm::Timing {
                        e2e: Duration::from_secs_f64(latency_ms / 1000.0),
                        ..sluice_llm::Timing::default()
                    },
                    ..Generation::default()
                },
                Err(error) => {
                    row.error = Some(error);
                    return row;
                }
            }
        }
        None => match call(
            provider,
            client,
            &rendered,
            shared.cache.as_ref(),
            work.repeat,
        )
        .await
        {
            Ok((generation, cached)) => {
                row.cached = cached;
                generation
            }
            Err(error) => {
                row.error = Some(error.to_string());
                return row;
            }
        },
    };
    row.latency_ms = generation.timing.e2e.as_secs_f64() * 1000.0;
    row.tokens = generation.tokens;
    row.finish_reason = generation.finish_reason.clone();
    row.cost = match (provider.prices, row.tokens) {
        (Some((input, output)), Some(tokens)) if test.provider_output.is_none() && !row.cached => {
            Some(tokens.prompt as f64 * input + tokens.completion as f64 * output)
        }
        _ => None,
    };
    let output = Output {
        cost: row.cost,
        input: &rendered,
        text: &generation.text,
        finish_reason: generation.finish_reason.as_deref(),
        latency_ms: row.latency_ms,
        tool_calls: &generation.tool_calls,
    };
    let mut grades = Vec::new();
    for assertion in test.all_assertions() {
        match assertion.grade(&output, &test.vars, &judges).await {
            Ok(grade) => grades.push(grade),
            Err(error) => {
                row.error = Some(format!(
                    "assertion `{}`: {}",
                    assertion_name(assertion),
                    sluice_core::error_chain(&error)
                ));
                row.output = Some(generation.text.clone());
                return row;
            }
        }
    }
    row.score = weighted_score(grades.iter().map(|g| (g.weight, g.score)));
    row.pass = match test.threshold {
        Some(threshold) => row.score >= threshold,
        None => grades.iter().all(|g| g.pass),
    };
    let mut metric_sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for grade in &grades {
        if let Some(metric) = &grade.metric {
            let entry = metric_sums.entry(metric.clone()).or_default();
            entry.0 += grade.score;
            entry.1 += 1.0;
        }
    }
    row.named_scores = metric_sums
        .into_iter()
        .map(|(k, (sum, n))| (k, sum / n))
        .collect();
    row.grades = grades;
    row.output = Some(generation.text);
    row
}

/// A test's identity across runs: a hash of its description and vars, so that results pair
/// up even when tests are added, removed or reordered.
pub fn test_fingerprint(test: &TestCase) -> String {
    let identity = serde_json::to_string(&(&test.description, &test.vars)).unwrap_or_default();
    let hash = identity
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}")
}

fn assertion_name(assertion: &crate::assertion::Assertion) -> String {
    match assertion {
        crate::assertion::Assertion::Check(check) => check.name.clone(),
        crate::assertion::Assertion::Set(_) => "assert-set".to_owned(),
    }
}

/// The row as stored: key, verdict and the rest as JSON.
pub fn to_record(row: &EvalRow) -> sluice_store::ResultRecord {
    sluice_store::ResultRecord {
        seq: row.seq as i64,
        key: row.key.clone(),
        pass: if row.error.is_some() {
            None
        } else {
            Some(row.pass)
        },
        score: if row.error.is_some() {
            None
        } else {
            Some(row.score)
        },
        error: row.error.clone(),
        data: serde_json::to_value(row).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_and_pass_hat_k_follow_their_estimators() {
        let tally = TestTally {
            description: String::new(),
            passed: 3,
            graded: 5,
        };
        // pass@1 = c/n; pass@5 = 1 (some sample passes); pass^5 = 0; pass^2 = C(3,2)/C(5,2).
        assert!((tally.pass_at(1) - 0.6).abs() < 1e-12);
        assert!((tally.pass_at(5) - 1.0).abs() < 1e-12);
        assert_eq!(tally.pass_all(5), 0.0);
        assert!((tally.pass_all(2) - 0.3).abs() < 1e-12);
        // pass@2 = 1 − C(2,2)/C(5,2) = 0.9.
        assert!((tally.pass_at(2) - 0.9).abs() < 1e-12);
        assert!(tally.pass_at(6).is_nan());
        assert!(tally.is_flaky());
    }
}
