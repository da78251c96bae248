//! The rollout spec (YAML), checked as a whole.
//!
//! ```yaml
//! name: chat-candidate
//! gateway: {admin_url: "http://127.0.0.1:8081", token_env: SLUICE_ADMIN_TOKEN}
//!                                    # (left out under `sluice gateway --rollout`)
//! route: chat
//! stable: stable                   # gateway version names, or registry references:
//! candidate: candidate               #   `chat@production`, `chat/2.0.0` (the gateway's
//!                                    #   versions are then named by version)
//! # promote_alias: production        # with references: moved to the candidate on promotion
//! strategy:                          # or blue_green: {pre_promotion: 30s, post_promotion: 60s,
//!                                    #   auto_promote: true, scale_down_delay: 30s}
//!                                    # or shadow: {percent: 20, duration: 60s, min_similarity: 0.95}
//!                                    # or feature_flag: {sticky_key: user, percentages: [5, 25, 100],
//!                                    #   pause: 30s, segments: [{header: x-beta, equals: "1"},
//!                                    #   {users: [alice]}]}
//!                                    # or rolling: {batch: 1, pause: 30s}   (needs `instances`)
//!   canary:
//!     steps:                         # default: set_weight 10, 25, 50, 100 with 30 s pauses
//!       - set_weight: 10
//!       - pause: {duration: 30s}
//!       - set_weight: 50
//!       - pause: {}                  # until `sluice rollout promote`
//!       - set_weight: 100
//! analysis:
//!   rules:                           # evaluated on the candidate's live gateway window
//!     - {metric: error_rate, max: 0.05, window: 60s, min_samples: 20}
//!     - {metric: latency_p99_ms, max: 5000, window: 60s, min_samples: 20}
//!     - {metric: safety_violation_rate, max: 0.001, window: 300s, min_samples: 1000}
//!     - metric: http_5xx_ratio       # from elsewhere: `source: {prometheus: {url, query}}` or
//!       max: 0.01                    #   `source: {web: {url, pointer: /data/value}}`
//!       source: {prometheus: {url: "http://127.0.0.1:9090", query: "sum(rate(x[1m]))"}}
//!   # preset: default                # the seed's rules instead
//! alerts:
//!   - {type: webhook, url: "http://127.0.0.1:9000/hook"}
//!   - {type: slack, url: "https://hooks.slack.com/services/…"}
//!   - {type: pagerduty, routing_key_env: PD_ROUTING_KEY}
//! instances:                         # optional local processes per version: the controller
//!   candidate:                       #   starts the candidate's, waits until healthy, and stops
//!     - url: "http://127.0.0.1:9201/v1"  # the stable ones after promotion
//!       command: "sluice simulate -c sim.yaml --port 9201"
//!       health_url: "http://127.0.0.1:9201/v1/models"   # default: URL + /models
//!       pid_file: /tmp/candidate-0.pid                   # written on start, read on stop
//!   stable:
//!     - {url: "http://127.0.0.1:9101/v1", pid_file: /tmp/stable-0.pid}
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sluice_config::{Diagnostics, Document, EnvSource, FieldPath, parse_duration};
use sluice_core::EndpointSpec;
use sluice_core::stats::normal_quantile;
use sluice_gateway::metrics::WindowStats;

/// A checked rollout spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The rollout's name.
    pub name: String,
    /// The gateway's admin base URL; `None` when the spec runs inside `sluice gateway
    /// --rollout`, which fills it in.
    pub admin_url: Option<String>,
    /// The admin token, if the gateway needs one.
    pub admin_token: Option<sluice_core::Secret>,
    /// The route whose traffic moves.
    pub route: String,
    /// The version serving now.
    pub stable: String,
    /// The version being rolled out.
    pub candidate: String,
    /// Canary steps.
    pub steps: Vec<Step>,
    /// Rules watched for the whole rollout.
    pub rules: Vec<Rule>,
    /// Where alerts go.
    pub alerts: Vec<Alert>,
    /// After a rollback, how long before a rollout of the same name may start again.
    pub cooldown: Duration,
    /// The feature flag, for that strategy.
    pub flag: Option<Flag>,
    /// Local processes behind each version (empty when the versions run elsewhere).
    pub instances: Instances,
    /// When `stable` and `candidate` are registry references (`MODEL@ALIAS`,
    /// `MODEL/VERSION`): the alias moved to the candidate on promotion (default `production`).
    pub promote_alias: Option<String>,
}

/// A feature flag: its segments get the candidate from the first step; everyone else by
/// sticky percentage.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    /// `user` or `header:NAME`: what keeps a user on one side.
    pub sticky_key: String,
    /// Requests that always get the candidate while the flag is on.
    pub segments: Vec<FlagSegment>,
}

/// One feature-flag segment.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagSegment {
    /// Requests carrying this header with this exact value.
    Header {
        /// The header's name.
        name: String,
        /// Its value.
        equals: String,
    },
    /// Requests whose `user` is one of these.
    Users(Vec<String>),
}

/// Local processes behind the versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instances {
    /// The stable version's.
    pub stable: Vec<Instance>,
    /// The candidate's.
    pub candidate: Vec<Instance>,
}

/// One local process serving a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Its OpenAI base URL, as the gateway should call it.
    pub url: String,
    /// The shell command that starts it, if the controller may start it.
    pub command: Option<String>,
    /// Answers 2xx once it is ready.
    pub health_url: String,
    /// Where its process id is written when started here, and read to stop it.
    pub pid_file: Option<std::path::PathBuf>,
    /// How long it may take to become healthy.
    pub start_timeout: Duration,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this percent of the route's traffic to the candidate.
    SetWeight(u32),
    /// Wait this long, or (`None`) until promoted.
    Pause(Option<Duration>),
    /// Mirror this percent of the route's requests to the candidate (0 stops).
    Shadow(u32),
    /// Turn the feature flag's segments on or off.
    Flag(bool),
    /// Start these candidate instances (by index), wait until they are healthy, and add them
    /// to the candidate's upstreams.
    StartCandidate(Vec<usize>),
    /// Take these stable instances out of the stable version's upstreams and stop them.
    StopStable(Vec<usize>),
    /// Wait until each of these rules (by index in [`Spec::rules`], measured only during
    /// this step) has passed its `count` of measurements; a failure aborts as usual.
    Analysis(Vec<usize>),
}

/// A metric a rule watches, read from the candidate's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Errors over requests.
    ErrorRate,
    /// Latency p99, ms.
    LatencyP99,
    /// Time to first token p99, ms.
    TtftP99,
    /// Mean feedback score, 0–1.
    Feedback,
    /// Mean shadow token F1 against the primary, 0–1.
    ShadowSimilarity,
    /// Answers with a safety violation (secret, personal data, canary) over requests.
    SafetyViolationRate,
    /// Answers that declined the request over requests.
    RefusalRate,
}

/// The metrics rules may name.
pub const METRICS: &[(&str, Metric)] = &[
    ("error_rate", Metric::ErrorRate),
    ("latency_p99_ms", Metric::LatencyP99),
    ("ttft_p99_ms", Metric::TtftP99),
    ("feedback", Metric::Feedback),
    ("shadow_similarity", Metric::ShadowSimilarity),
    ("safety_violation_rate", Metric::SafetyViolationRate),
    ("refusal_rate", Metric::RefusalRate),
];

impl Metric {
    /// The rule name.
    pub fn name(self) -> &'static str {
        METRICS
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }

    /// Its value in a gateway window, when the window has one.
    pub fn read(self, window: &WindowStats) -> Option<f64> {
        match self {
            Metric::ErrorRate => Some(window.error_rate),
            Metric::LatencyP99 => window.latency_p99_ms,
            Metric::TtftP99 => window.ttft_p99_ms,
            Metric::Feedback => window.feedback_mean,
            Metric::ShadowSimilarity => window.shadow_token_f1,
            Metric::SafetyViolationRate => Some(window.safety_violation_rate),
            Metric::RefusalRate => Some(window.refusal_rate),
        }
    }

    /// How many samples the window's value rests on.
    pub fn samples(self, window: &WindowStats) -> u64 {
        match self {
            Metric::Feedback => window.feedback_count,
            Metric::ShadowSimilarity => window.shadow_compared,
            _ => window.requests,
        }
    }
}

/// An analysis rule: the metric must stay within its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The metric's name, as written.
    pub name: String,
    /// Where the value comes from.
    pub source: Source,
    /// Fails above this.
    pub max: Option<f64>,
    /// Fails below this.
    pub min: Option<f64>,
    /// The window measured.
    pub window: Duration,
    /// Fewer samples in the window is no data, neither pass nor fail.
    pub min_samples: u64,
    /// How often it is measured.
    pub interval: Duration,
    /// Failed measurements tolerated; one more aborts the rollout.
    pub failure_limit: u32,
    /// Measurement errors in a row tolerated; one more aborts the rollout.
    pub consecutive_error_limit: u32,
    /// Passes only at or below this; between it and `max` a measurement is inconclusive.
    pub pass_max: Option<f64>,
    /// Passes only at or above this; between `min` and it a measurement is inconclusive.
    pub pass_min: Option<f64>,
    /// Inconclusive measurements tolerated; one more pauses the rollout for a person to
    /// promote or abort.
    pub inconclusive_limit: u32,
    /// Measured only while its analysis step runs (not for the whole rollout).
    pub step_only: bool,
    /// Passing measurements its analysis step needs.
    pub count: u32,
}

/// Where a rule's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The candidate's live window on the gateway.
    Gateway(Metric),
    /// A Prometheus HTTP API instant query (`/api/v1/query`) whose result is one number.
    Prometheus {
        /// The server's base URL.
        url: String,
        /// The PromQL query.
        query: String,
    },
    /// The candidate's error rate against the stable version's, as an always-valid sequential
    /// test over every request judged since the rule first looked (see [`crate::sequential`]):
    /// the value is the evidence that the candidate fails more often (a log likelihood
    /// ratio), and the rule fails once it passes `ln(1/α)`, so that the chance of rolling a
    /// healthy canary back stays at `1 − confidence` however often it is checked. The rule's
    /// `window` does not apply.
    JudgeErrorRate {
        /// Confidence of the test, e.g. 0.95.
        confidence: f64,
    },
    /// The candidate's latency against the stable version's over the same window: the
    /// one-sided Mann-Whitney U test on the two latency distributions, as a z statistic; it
    /// counts only when the candidate's median is also more than `tolerance` slower (a
    /// significant but immaterial difference is a pass, in the manner of Kayenta).
    JudgeLatency {
        /// Confidence of the test, e.g. 0.95.
        confidence: f64,
        /// The median slowdown tolerated, as a fraction (0.1: 10 %).
        tolerance: f64,
    },
    /// A URL answering JSON; the number at a JSON pointer (`/data/error_rate`).
    Web {
        /// The URL.
        url: String,
        /// The JSON pointer.
        pointer: String,
    },
}

impl Rule {
    /// A rule on the gateway's window, with default limits.
    pub fn gateway(metric: Metric, max: Option<f64>, min: Option<f64>) -> Self {
        Rule {
            name: metric.name().to_owned(),
            source: Source::Gateway(metric),
            max,
            min,
            window: Duration::from_secs(60),
            min_samples: 1,
            interval: Duration::from_secs(1),
            failure_limit: 0,
            consecutive_error_limit: 4,
            pass_max: None,
            pass_min: None,
            inconclusive_limit: 0,
            step_only: false,
            count: 1,
        }
    }

    /// Judges a measured value: fail outside `max`/`min`, inconclusive outside
    /// `pass_max`/`pass_min`, pass otherwise.
    pub fn judge(&self, value: f64) -> crate::machine::Outcome {
        use crate::machine::Outcome;
        if value.is_nan()
            || self.max.is_some_and(|max| value > max)
            || self.min.is_some_and(|min| value < min)
        {
            Outcome::Fail
        } else if self.pass_max.is_some_and(|pass| value > pass)
            || self.pass_min.is_some_and(|pass| value < pass)
        {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        }
    }

    /// `error_rate <= 0.05`-style text for messages.
    pub fn describe(&self) -> String {
        match (self.max, self.min) {
            (Some(max), _) => format!("{} <= {max}", self.name),
            (None, Some(min)) => format!("{} >= {min}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// Where alerts go.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    /// Any URL, the rollout event as JSON.
    Webhook(String),
    /// A Slack-compatible incoming webhook (`{"text": …}`).
    Slack(String),
    /// PagerDuty Events v2.
    PagerDuty {
        /// The events URL.
        url: String,
        /// The integration's routing key.
        routing_key: sluice_core::Secret,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    gateway: Option<RawGateway>,
    route: String,
    stable: String,
    candidate: String,
    #[serde(default)]
    strategy: Option<RawStrategy>,
    #[serde(default)]
    analysis: Option<RawAnalysis>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
    #[serde(default)]
    cooldown: Option<String>,
    #[serde(default)]
    instances: Option<RawInstances>,
    #[serde(default)]
    promote_alias: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstances {
    #[serde(default)]
    stable: Vec<RawInstance>,
    #[serde(default)]
    candidate: Vec<RawInstance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    url: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    health_url: Option<String>,
    #[serde(default)]
    pid_file: Option<std::path::PathBuf>,
    #[serde(default)]
    start_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeatureFlag {
    #[serde(default)]
    sticky_key: Option<String>,
    #[serde(default)]
    segments: Vec<RawFlagSegment>,
    #[serde(default)]
    percentages: Option<Vec<u32>>,
    #[serde(default)]
    pause: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlagSegment {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    equals: Option<String>,
    #[serde(default)]
    users: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRolling {
    #[serde(default)]
    batch: Option<usize>,
    #[serde(default)]
    pause: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    #[serde(default)]
    admin_url: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    #[serde(default)]
    canary: Option<RawCanary>,
    #[serde(default)]
    blue_green: Option<RawBlueGreen>,
    #[serde(default)]
    shadow: Option<RawShadowStrategy>,
    #[serde(default)]
    feature_flag: Option<RawFeatureFlag>,
    #[serde(default)]
    rolling: Option<RawRolling>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadowStrategy {
    #[serde(default)]
    percent: Option<u32>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    min_similarity: Option<f64>,
    #[serde(default)]
    min_samples: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlueGreen {
    #[serde(default)]
    pre_promotion: Option<String>,
    #[serde(default)]
    post_promotion: Option<String>,
    #[serde(default)]
    auto_promote: Option<bool>,
    #[serde(default)]
    scale_down_delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    #[serde(default)]
    steps: Option<Vec<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    set_weight: Option<i64>,
    #[serde(default)]
    pause: Option<RawPause>,
    #[serde(default)]
    analysis: Option<RawStepAnalysis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepAnalysis {
    rules: Vec<RawRule>,
    #[serde(default)]
    count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPause {
    #[serde(default)]
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    metric: String,
    #[serde(default)]
    source: Option<RawSource>,
    #[serde(default)]
    confidence: Option<f64>,
    #[serde(default)]
    tolerance: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    min_samples: Option<u64>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    failure_limit: Option<u32>,
    #[serde(default)]
    consecutive_error_limit: Option<u32>,
    #[serde(default)]
    pass_max: Option<f64>,
    #[serde(default)]
    pass_min: Option<f64>,
    #[serde(default)]
    inconclusive_limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default)]
    prometheus: Option<RawPrometheus>,
    #[serde(default)]
    web: Option<RawWeb>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrometheus {
    url: String,
    query: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    url: String,
    pointer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    routing_key_env: Option<String>,
}

/// The default canary steps (the seed's 10, 25, 50, 100 with 30-second pauses between).
pub fn default_steps() -> Vec<Step> {
    let pause = Step::Pause(Some(Duration::from_secs(30)));
    vec![
        Step::SetWeight(10),
        pause.clone(),
        Step::SetWeight(25),
        pause.clone(),
        Step::SetWeight(50),
        pause,
        Step::SetWeight(100),
    ]
}

/// Blue-green as steps: the candidate gets no user traffic (only requests that ask for it
/// with `x-sluice-version`) while the rules watch it for `pre`; then (after a manual promote
/// unless `auto_promote`) all traffic switches at once, and the rules keep watching for
/// `post`; a failure at any point switches everything back to stable.
pub fn blue_green_steps(pre: Duration, post: Duration, auto_promote: bool) -> Vec<Step> {
    let mut steps = vec![Step::SetWeight(0), Step::Pause(Some(pre))];
    if !auto_promote {
        steps.push(Step::Pause(None));
    }
    steps.push(Step::SetWeight(100));
    steps.push(Step::Pause(Some(post)));
    steps
}

/// The shadow strategy as steps: mirror `percent` of the route to the candidate for
/// `duration` (the shadow-similarity rule watches it), stop mirroring, then give the candidate
/// all traffic.
pub fn shadow_strategy_steps(percent: u32, duration: Duration) -> Vec<Step> {
    vec![
        Step::Shadow(percent),
        Step::Pause(Some(duration)),
        Step::Shadow(0),
        Step::SetWeight(100),
    ]
}

/// The feature-flag strategy as steps: the segments first, then each sticky percentage with
/// a pause between, and the segments off again once everyone has the candidate.
pub fn feature_flag_steps(percentages: &[u32], pause: Duration) -> Vec<Step> {
    let mut steps = vec![Step::Flag(true)];
    for (i, percent) in percentages.iter().enumerate() {
        if i > 0 {
            steps.push(Step::Pause(Some(pause)));
        }
        steps.push(Step::SetWeight(*percent));
    }
    steps.push(Step::Flag(false));
    steps
}

/// The rolling strategy as steps: candidate instances start `batch` at a time; after each
/// batch the candidate's weight follows its share of the instances and as many stable
/// instances stop, so the stable version keeps its share of the capacity.
pub fn rolling_steps(stable: usize, candidate: usize, batch: usize, pause: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut stopped = 0;
    let mut started = 0;
    while started < candidate {
        let end = (started + batch).min(candidate);
        if started > 0 {
            steps.push(Step::Pause(Some(pause)));
        }
        steps.push(Step::StartCandidate((started..end).collect()));
        steps.push(Step::SetWeight(
            ((100 * end) as f64 / candidate as f64).round() as u32,
        ));
        let stop_to = ((stable * end) as f64 / candidate as f64).round() as usize;
        if stop_to > stopped {
            steps.push(Step::StopStable((stopped..stop_to).collect()));
            stopped = stop_to;
        }
        started = end;
    }
    steps
}

/// Adds the local processes to a strategy's steps: the candidate's instances start before
/// anything else, and once it has all traffic (and after `scale_down_delay`) the stable
/// instances stop. A rolling rollout already has them.
pub fn with_instances(
    steps: Vec<Step>,
    instances: &Instances,
    scale_down_delay: Duration,
) -> Vec<Step> {
    let rolling = steps.iter().any(|s| matches!(s, Step::StartCandidate(_)));
    if rolling || instances.candidate.is_empty() && instances.stable.is_empty() {
        return steps;
    }
    let mut all = Vec::new();
    if !instances.candidate.is_empty() {
        all.push(Step::StartCandidate(
            (0..instances.candidate.len()).collect(),
        ));
    }
    all.extend(steps);
    if !instances.stable.is_empty() {
        all.push(Step::SetWeight(100));
        if !scale_down_delay.is_zero() {
            all.push(Step::Pause(Some(scale_down_delay)));
        }
        all.push(Step::StopStable((0..instances.stable.len()).collect()));
    }
    all
}

/// The seed's default rules, over the five minutes the gateway's windows keep (the seed's
/// safety and quality rules ask for an hour; their sample minimums are kept).
pub fn default_rules() -> Vec<Rule> {
    let rule = |metric, max, min, min_samples| Rule {
        window: Duration::from_secs(300),
        min_samples,
        interval: Duration::from_secs(5),
        ..Rule::gateway(metric, max, min)
    };
    vec![
        rule(Metric::ErrorRate, Some(0.05), None, 100),
        rule(Metric::LatencyP99, Some(5000.0), None, 100),
        rule(Metric::SafetyViolationRate, Some(0.001), None, 1000),
        rule(Metric::Feedback, None, Some(0.8), 500),
    ]
}

impl Spec {
    /// Reads and checks a spec file.
    pub fn load(path: &Path, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        let document = Document::read(path, env)?;
        Self::from_document(&document, env)
    }

    /// Checks a parsed spec, reporting every problem at once.
    pub fn from_document(document: &Document, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        let raw: RawSpec = document.deserialize()?;
        let mut check = Checker::default();
        let root = FieldPath::root();
        if raw.name.trim().is_empty() {
            check.error(root.key("name"), "expected a non-empty name");
        }
        if raw.stable == raw.candidate {
            check.error(
                root.key("candidate"),
                format!(
                    "the candidate must differ from the stable version `{}`",
                    raw.stable
                ),
            );
        }
        let (admin_url, admin_token) = check.gateway(raw.gateway, env);
        let instances = check.instances(raw.instances);
        let strategy = check.strategy(raw.strategy, &instances);
        let steps = with_instances(strategy.steps, &instances, strategy.scale_down_delay);
        let mut rules: Vec<Rule> = strategy.shadow_rule.into_iter().collect();
        rules.extend(check.analysis(raw.analysis));
        // The analysis steps' rules go after the rollout's own; their indices move with them.
        let offset = rules.len();
        rules.extend(strategy.step_rules);
        let steps: Vec<Step> = steps
            .into_iter()
            .map(|step| match step {
                Step::Analysis(indices) => {
                    Step::Analysis(indices.into_iter().map(|i| i + offset).collect())
                }
                other => other,
            })
            .collect();
        let alerts = check.alerts(&raw.alerts, env);
        let cooldown = check.duration(root.key("cooldown"), &raw.cooldown, Duration::ZERO);
        if !check.problems.is_empty() {
            let errors = check
                .problems
                .into_iter()
                .map(|(path, message)| document.error_at(&path, message))
                .collect();
            return Err(document.diagnostics(errors));
        }
        Ok(Spec {
            cooldown,
            name: raw.name,
            admin_url,
            admin_token,
            route: raw.route,
            stable: raw.stable,
            candidate: raw.candidate,
            steps,
            rules,
            alerts,
            flag: strategy.flag,
            instances,
            promote_alias: raw.promote_alias,
        })
    }
}

/// What a strategy compiles to.
#[derive(Default)]
struct StrategyPlan {
    steps: Vec<Step>,
    /// Rules of analysis steps, indexed from 0 here.
    step_rules: Vec<Rule>,
    shadow_rule: Option<Rule>,
    flag: Option<Flag>,
    scale_down_delay: Duration,
}

/// The problems found while checking a spec, each at its field.
#[derive(Default)]
struct Checker {
    problems: Vec<(FieldPath, String)>,
}

impl Checker {
    fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.problems.push((path, message.into()));
    }

    /// A duration as written, or `default` (an unreadable one is a problem).
    fn duration(&mut self, path: FieldPath, text: &Option<String>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => parse_duration(t).unwrap_or_else(|e| {
                self.error(path, e.to_string());
                default
            }),
        }
    }

    fn gateway(
        &mut self,
        raw: Option<RawGateway>,
        env: &dyn EnvSource,
    ) -> (Option<String>, Option<sluice_core::Secret>) {
        let gateway = raw.unwrap_or(RawGateway {
            admin_url: None,
            token_env: None,
        });
        let path = FieldPath::root().key("gateway");
        if let Some(url) = &gateway.admin_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            self.error(
                path.key("admin_url"),
                format!("expected an http:// URL such as http://127.0.0.1:8081, found `{url}`"),
            );
        }
        let admin_token = gateway.token_env.as_ref().and_then(|var| {
            let token = env
                .var(var)
                .filter(|t| !t.is_empty())
                .map(sluice_core::Secret::from);
            if token.is_none() {
                self.error(
                    path.key("token_env"),
                    format!("the environment variable `{var}` is not set"),
                );
            }
            token
        });
        let admin_url = gateway
            .admin_url
            .map(|u| u.trim_end_matches('/').to_owned());
        (admin_url, admin_token)
    }

    fn instances(&mut self, raw: Option<RawInstances>) -> Instances {
        let Some(raw) = raw else {
            return Instances::default();
        };
        let path = FieldPath::root().key("instances");
        let stable = self.instance_list(&path.key("stable"), raw.stable);
        let candidate = self.instance_list(&path.key("candidate"), raw.candidate);
        for (i, instance) in candidate.iter().enumerate() {
            if instance.command.is_none() {
                self.error(
                    path.key("candidate").index(i).key("command"),
                    "expected the `command` that starts the candidate's instance",
                );
            }
        }
        Instances { stable, candidate }
    }

    fn instance_list(&mut self, path: &FieldPath, list: Vec<RawInstance>) -> Vec<Instance> {
        let mut out = Vec::new();
        for (i, r) in list.into_iter().enumerate() {
            let ipath = path.index(i);
            let url = r.url.trim_end_matches('/').to_owned();
            if let Err(e) = EndpointSpec::check_base_url(&url) {
                self.error(ipath.key("url"), e.to_string());
            }
            if r.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
                self.error(ipath.key("command"), "expected a shell command");
            }
            let start_timeout = self.duration(
                ipath.key("start_timeout"),
                &r.start_timeout,
                Duration::from_secs(60),
            );
            out.push(Instance {
                health_url: r.health_url.unwrap_or_else(|| format!("{url}/models")),
                url,
                command: r.command,
                pid_file: r.pid_file,
                start_timeout,
            });
        }
        out
    }

    fn strategy(&mut self, raw: Option<RawStrategy>, instances: &Instances) -> StrategyPlan {
        let path = FieldPath::root().key("strategy");
        let raw = raw.unwrap_or(RawStrategy {
            canary: None,
            blue_green: None,
            shadow: None,
            feature_flag: None,
            rolling: None,
        });
        let chosen = [
            raw.canary.is_some(),
            raw.blue_green.is_some(),
            raw.shadow.is_some(),
            raw.feature_flag.is_some(),
            raw.rolling.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if chosen > 1 {
            self.error(
                path.clone(),
                "expected one strategy: `canary`, `blue_green`, `shadow`, `feature_flag` or `rolling`",
            );
        }
        if let Some(shadow) = raw.shadow {
            self.shadow(&path.key("shadow"), shadow)
        } else if let Some(bg) = raw.blue_green {
            self.blue_green(&path.key("blue_green"), bg)
        } else if let Some(ff) = raw.feature_flag {
            self.feature_flag(&path.key("feature_flag"), ff)
        } else if let Some(rolling) = raw.rolling {
            self.rolling(&path.key("rolling"), rolling, instances)
        } else {
            match raw.canary.and_then(|c| c.steps) {
                None => StrategyPlan {
                    steps: default_steps(),
                    ..StrategyPlan::default()
                },
                Some(steps) => self.canary(&path.key("canary").key("steps"), &steps),
            }
        }
    }

    fn shadow(&mut self, path: &FieldPath, sh: RawShadowStrategy) -> StrategyPlan {
        let percent = sh.percent.unwrap_or(100);
        if !(1..=100).contains(&percent) {
            self.error(
                path.key("percent"),
                format!("expected a percentage from 1 to 100, found {percent}"),
            );
        }
        let duration = self.duration(path.key("duration"), &sh.duration, Duration::from_secs(60));
        StrategyPlan {
            steps: shadow_strategy_steps(percent, duration),
            shadow_rule: Some(Rule {
                window: duration.max(Duration::from_secs(10)),
                min_samples: sh.min_samples.unwrap_or(20),
                interval: Duration::from_secs(1),
                ..Rule::gateway(
                    Metric::ShadowSimilarity,
                    None,
                    Some(sh.min_similarity.unwrap_or(0.95)),
                )
            }),
            ..StrategyPlan::default()
        }
    }

    fn blue_green(&mut self, path: &FieldPath, bg: RawBlueGreen) -> StrategyPlan {
        let pre = self.duration(
            path.key("pre_promotion"),
            &bg.pre_promotion,
            Duration::from_secs(30),
        );
        let post = self.duration(
            path.key("post_promotion"),
            &bg.post_promotion,
            Duration::from_secs(60),
        );
        let scale_down_delay = self.duration(
            path.key("scale_down_delay"),
            &bg.scale_down_delay,
            Duration::from_secs(30),
        );
        StrategyPlan {
            steps: blue_green_steps(pre, post, bg.auto_promote.unwrap_or(true)),
            scale_down_delay,
            ..StrategyPlan::default()
        }
    }

    fn feature_flag(&mut self, path: &FieldPath, ff: RawFeatureFlag) -> StrategyPlan {
        let sticky_key = ff.sticky_key.unwrap_or_else(|| "user".into());
        if sticky_key != "user" && sticky_key.strip_prefix("header:").is_none_or(str::is_empty) {
            self.error(
                path.key("sticky_key"),
                format!("expected `user` or `header:NAME`, found `{sticky_key}`"),
            );
        }
        let mut segments = Vec::new();
        for (i, seg) in ff.segments.into_iter().enumerate() {
            match (seg.header, seg.equals, seg.users) {
                (Some(name), Some(equals), None) => {
                    segments.push(FlagSegment::Header { name, equals })
                }
                (None, None, Some(users)) if !users.is_empty() => {
                    segments.push(FlagSegment::Users(users))
                }
                _ => self.error(
                    path.key("segments").index(i),
                    "expected either `header` with `equals`, or a non-empty `users` list",
                ),
            }
        }
        let percentages = ff.percentages.unwrap_or_else(|| vec![5, 25, 50, 100]);
        if percentages.last() != Some(&100)
            || percentages.windows(2).any(|w| w[0] >= w[1])
            || percentages.first().is_some_and(|p| *p == 0)
        {
            self.error(
                path.key("percentages"),
                format!(
                    "expected rising percentages from 1 that end at 100, found {percentages:?}"
                ),
            );
        }
        let pause = self.duration(path.key("pause"), &ff.pause, Duration::from_secs(30));
        StrategyPlan {
            steps: feature_flag_steps(&percentages, pause),
            flag: Some(Flag {
                sticky_key,
                segments,
            }),
            ..StrategyPlan::default()
        }
    }

    fn rolling(
        &mut self,
        path: &FieldPath,
        rolling: RawRolling,
        instances: &Instances,
    ) -> StrategyPlan {
        let batch = rolling.batch.unwrap_or(1);
        if batch == 0 {
            self.error(path.key("batch"), "expected a batch of at least 1");
        }
        if instances.stable.is_empty() || instances.candidate.is_empty() {
            self.error(
                path.clone(),
                "a rolling rollout replaces instances: list them under `instances.stable` and `instances.candidate`",
            );
        }
        for (i, instance) in instances.stable.iter().enumerate() {
            if instance.command.is_none() {
                self.error(
                    FieldPath::root().key("instances").key("stable").index(i).key("command"),
                    "a rolling rollout needs each stable instance's `command`, to bring it back on rollback",
                );
            }
        }
        let pause = self.duration(path.key("pause"), &rolling.pause, Duration::from_secs(30));
        StrategyPlan {
            steps: rolling_steps(
                instances.stable.len(),
                instances.candidate.len(),
                batch.max(1),
                pause,
            ),
            ..StrategyPlan::default()
        }
    }

    fn canary(&mut self, path: &FieldPath, raw_steps: &[RawStep]) -> StrategyPlan {
        let mut plan = StrategyPlan::default();
        if raw_steps.is_empty() {
            self.error(path.clone(), "expected at least one step");
        }
        for (i, step) in raw_steps.iter().enumerate() {
            let path = path.index(i);
            match (step.set_weight, &step.pause, &step.analysis) {
                (Some(w), None, None) if (0..=100).contains(&w) => {
                    plan.steps.push(Step::SetWeight(w as u32))
                }
                (Some(w), None, None) => self.error(
                    path.key("set_weight"),
                    format!("expected a weight from 0 to 100, found {w}"),
                ),
                (None, None, Some(analysis)) => {
                    let count = analysis.count.unwrap_or(3).max(1);
                    let rules_path = path.key("analysis").key("rules");
                    if analysis.rules.is_empty() {
                        self.error(rules_path.clone(), "expected at least one rule");
                    }
                    let mut indices = Vec::new();
                    for (j, r) in analysis.rules.iter().enumerate() {
                        let checked =
                            check_rule(r, rules_path.index(j), &mut |p, m| self.error(p, m));
                        if let Some(rule) = checked {
                            indices.push(plan.step_rules.len());
                            plan.step_rules.push(Rule {
                                step_only: true,
                                count,
                                ..rule
                            });
                        }
                    }
                    plan.steps.push(Step::Analysis(indices));
                }
                (None, Some(pause), None) => match &pause.duration {
                    None => plan.steps.push(Step::Pause(None)),
                    Some(text) => match parse_duration(text) {
                        Ok(d) => plan.steps.push(Step::Pause(Some(d))),
                        Err(e) => self.error(path.key("pause").key("duration"), e.to_string()),
                    },
                },
                _ => self.error(
                    path,
                    "expected exactly one of `set_weight`, `pause` or `analysis`",
                ),
            }
        }
        plan
    }

    fn analysis(&mut self, raw: Option<RawAnalysis>) -> Vec<Rule> {
        let mut rules = Vec::new();
        let Some(analysis) = raw else {
            return rules;
        };
        let path = FieldPath::root().key("analysis");
        match analysis.preset.as_deref() {
            None => {}
            Some("default") => rules.extend(default_rules()),
            Some(other) => self.error(
                path.key("preset"),
                format!("unknown preset `{other}` (known: default)"),
            ),
        }
        for (i, r) in analysis.rules.iter().enumerate() {
            rules.extend(check_rule(r, path.key("rules").index(i), &mut |p, m| {
                self.error(p, m)
            }));
        }
        rules
    }

    fn alerts(&mut self, raw: &[RawAlert], env: &dyn EnvSource) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let path = FieldPath::root().key("alerts").index(i);
            match (a.kind.as_str(), &a.url) {
                ("webhook", Some(url)) => alerts.push(Alert::Webhook(url.clone())),
                ("slack", Some(url)) => alerts.push(Alert::Slack(url.clone())),
                ("pagerduty", url) => match a.routing_key_env.as_ref().and_then(|v| env.var(v)) {
                    Some(routing_key) => alerts.push(Alert::PagerDuty {
                        routing_key: routing_key.into(),
                        url: url
                            .clone()
                            .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into()),
                    }),
                    None => self.error(
                        path.key("routing_key_env"),
                        "expected the name of a set environment variable holding the routing key",
                    ),
                },
                ("webhook" | "slack", None) => self.error(path.key("url"), "expected a `url`"),
                (other, _) => self.error(
                    path.key("type"),
                    format!("unknown alert type `{other}` (webhook, slack or pagerduty)"),
                ),
            }
        }
        alerts
    }
}

/// Checks one rule as written, reporting problems through `error`.
fn check_rule(
    r: &RawRule,
    path: FieldPath,
    error: &mut dyn FnMut(FieldPath, String),
) -> Option<Rule> {
    let judge = matches!(
        r.metric.as_str(),
        "error_rate_vs_stable" | "latency_vs_stable"
    );
    if !judge && (r.confidence.is_some() || r.tolerance.is_some()) {
        error(
            path.clone(),
            "`confidence` and `tolerance` belong to the judges `error_rate_vs_stable` and `latency_vs_stable`".into(),
        );
    }
    let source = match &r.source {
        None if judge => {
            let confidence = r.confidence.unwrap_or(0.95);
            if !(0.5..1.0).contains(&confidence) {
                error(
                    path.key("confidence"),
                    format!("expected a confidence between 0.5 and 1, found {confidence}"),
                );
            }
            if r.max.is_some() || r.min.is_some() {
                error(
                    path.clone(),
                    format!("`{}` takes a `confidence`, not `max` or `min`", r.metric),
                );
            }
            if r.metric == "latency_vs_stable" {
                let tolerance = r.tolerance.unwrap_or(0.1);
                if !(0.0..10.0).contains(&tolerance) {
                    error(
                        path.key("tolerance"),
                        format!(
                            "expected a tolerated slowdown such as 0.1 (10 %), found {tolerance}"
                        ),
                    );
                }
                Source::JudgeLatency {
                    confidence,
                    tolerance,
                }
            } else {
                if r.tolerance.is_some() {
                    error(
                        path.key("tolerance"),
                        "`tolerance` belongs to `latency_vs_stable`".into(),
                    );
                }
                Source::JudgeErrorRate { confidence }
            }
        }
        None => {
            let Some((_, metric)) = METRICS.iter().find(|(n, _)| *n == r.metric) else {
                let known: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
                error(
                    path.key("metric"),
                    format!(
                        "unknown metric `{}` (known: {}; other metrics need a `source`)",
                        r.metric,
                        known.join(", ")
                    ),
                );
                return None;
            };
            Source::Gateway(*metric)
        }
        Some(RawSource {
            prometheus: Some(p),
            web: None,
        }) => Source::Prometheus {
            url: p.url.trim_end_matches('/').to_owned(),
            query: p.query.clone(),
        },
        Some(RawSource {
            prometheus: None,
            web: Some(w),
        }) => {
            if !w.pointer.starts_with('/') {
                error(
                    path.key("source").key("web").key("pointer"),
                    format!(
                        "expected a JSON pointer such as /data/value, found `{}`",
                        w.pointer
                    ),
                );
            }
            Source::Web {
                url: w.url.clone(),
                pointer: w.pointer.clone(),
            }
        }
        Some(_) => {
            error(
                path.key("source"),
                "expected exactly one of `prometheus` or `web`".into(),
            );
            return None;
        }
    };
    if !judge && r.max.is_none() && r.min.is_none() {
        error(path.clone(), "expected a bound: `max` or `min`".into());
    }
    if let (Some(pass), Some(max)) = (r.pass_max, r.max)
        && pass > max
    {
        error(
            path.key("pass_max"),
            format!("expected `pass_max` at or below `max` ({max}), found {pass}"),
        );
    }
    if let (Some(pass), Some(min)) = (r.pass_min, r.min)
        && pass < min
    {
        error(
            path.key("pass_min"),
            format!("expected `pass_min` at or above `min` ({min}), found {pass}"),
        );
    }
    let mut duration = |key: &str, text: &Option<String>, default: Duration| match text {
        None => default,
        Some(t) => parse_duration(t).unwrap_or_else(|e| {
            error(path.key(key), e.to_string());
            default
        }),
    };
    let window = duration("window", &r.window, Duration::from_secs(60));
    let interval = duration("interval", &r.interval, Duration::from_secs(1));
    let max = match source {
        Source::JudgeErrorRate { confidence } => Some(crate::sequential::threshold(confidence)),
        Source::JudgeLatency { confidence, .. } => Some(normal_quantile(confidence)),
        _ => r.max,
    };
    Some(Rule {
        name: r.metric.clone(),
        source,
        max,
        min: r.min,
        window,
        min_samples: r.min_samples.unwrap_or(1),
        interval: interval.max(Duration::from_millis(100)),
        failure_limit: r.failure_limit.unwrap_or(0),
        consecutive_error_limit: r.consecutive_error_limit.unwrap_or(4),
        pass_max: r.pass_max,
        pass_min: r.pass_min,
        inconclusive_limit: r.inconclusive_limit.unwrap_or(0),
        step_only: false,
        count: 1,
    })
}

#[cfg(test)]
mod tests {
    use sluice_config::MapEnv;

    use super::*;

    fn parse(text: &str) -> Result<Spec, String> {
        let env = MapEnv::default();
        let document = Document::parse("rollout.yaml", text, &env).map_err(|e| e.to_string())?;
        Spec::from_document(&document, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_spec_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rollout.yaml");
        let spec = Spec::load(&path, &MapEnv::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.steps.iter().any(|s| matches!(s, Step::Analysis(_))));
        assert!(
            spec.rules
                .iter()
                .any(|r| matches!(r.source, Source::JudgeLatency { .. }))
        );
    }

    #[test]
    fn a_spec_with_defaults() {
        let spec = parse("name: r\ngateway: {admin_url: \"http://127.0.0.1:8081\"}\nroute: chat\nstable: a\ncandidate: b\nanalysis: {preset: default}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.steps, default_steps());
        let described: Vec<String> = spec.rules.iter().map(Rule::describe).collect();
        assert_eq!(spec.rules.len(), 4, "{described:?}");
        assert!(
            described
                .iter()
                .any(|d| d.starts_with("safety_violation_rate <= 0.001")),
            "{described:?}"
        );
    }

    #[test]
    fn the_error_rate_judge_reads_its_confidence() {
        let spec = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\ncooldown: 5m\nanalysis:\n  rules:\n    - {metric: error_rate_vs_stable, confidence: 0.99, min_samples: 50}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.cooldown, Duration::from_secs(300));
        assert!(matches!(
            spec.rules[0].source,
            Source::JudgeErrorRate { .. }
        ));
        assert!(
            spec.rules[0]
                .max
                .is_some_and(|l| (l - 100f64.ln()).abs() < 1e-9)
        );
    }

    #[test]
    fn blue_green_becomes_steps() {
        let spec = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  blue_green: {pre_promotion: 2s, post_promotion: 5s, auto_promote: false}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec.steps,
            vec![
                Step::SetWeight(0),
                Step::Pause(Some(Duration::from_secs(2))),
                Step::Pause(None),
                Step::SetWeight(100),
                Step::Pause(Some(Duration::from_secs(5))),
            ]
        );
        let error = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  blue_green: {}\n  canary: {}\n").err().unwrap_or_default();
        assert!(error.contains("strategy: expected one strategy"), "{error}");
    }

    #[test]
    fn analysis_steps_carry_their_own_rules() {
        let spec = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  canary:\n    steps:\n      - set_weight: 20\n      - analysis: {count: 4, rules: [{metric: ttft_p99_ms, max: 900}]}\n      - set_weight: 100\nanalysis:\n  rules: [{metric: error_rate, max: 0.1}]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.steps[1], Step::Analysis(vec![1]));
        assert_eq!(spec.rules.len(), 2);
        assert!(!spec.rules[0].step_only);
        assert!(spec.rules[1].step_only && spec.rules[1].count == 4);
        let error = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  canary:\n    steps:\n      - analysis: {rules: [{metric: nope, max: 1}]}\n      - {set_weight: 5, analysis: {rules: []}}\n")
            .err()
            .unwrap_or_default();
        for expected in [
            "strategy.canary.steps[0].analysis.rules[0].metric: unknown metric `nope`",
            "strategy.canary.steps[1]: expected exactly one of `set_weight`, `pause` or `analysis`",
        ] {
            assert!(error.contains(expected), "missing {expected:?} in\n{error}");
        }
    }

    #[test]
    fn feature_flags_and_rolling_become_steps() {
        let spec = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  feature_flag:\n    percentages: [10, 100]\n    pause: 2s\n    segments: [{header: X-Beta, equals: \"1\"}, {users: [alice]}]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec.steps,
            vec![
                Step::Flag(true),
                Step::SetWeight(10),
                Step::Pause(Some(Duration::from_secs(2))),
                Step::SetWeight(100),
                Step::Flag(false),
            ]
        );
        let flag = spec.flag.unwrap_or_else(|| panic!("a flag"));
        assert_eq!(flag.sticky_key, "user");
        assert_eq!(flag.segments.len(), 2);

        let instances = "instances:\n  stable:\n    - {url: \"http://127.0.0.1:1/v1\", command: \"s0\"}\n    - {url: \"http://127.0.0.1:2/v1\", command: \"s1\"}\n  candidate:\n    - {url: \"http://127.0.0.1:3/v1\", command: \"c0\"}\n    - {url: \"http://127.0.0.1:4/v1/\", command: \"c1\", health_url: \"http://127.0.0.1:4/health\"}\n";
        let spec = parse(&format!("name: r\ngateway: {{admin_url: \"http://x\"}}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  rolling: {{batch: 1, pause: 1s}}\n{instances}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let pause = Step::Pause(Some(Duration::from_secs(1)));
        assert_eq!(
            spec.steps,
            vec![
                Step::StartCandidate(vec![0]),
                Step::SetWeight(50),
                Step::StopStable(vec![0]),
                pause,
                Step::StartCandidate(vec![1]),
                Step::SetWeight(100),
                Step::StopStable(vec![1]),
            ]
        );
        assert_eq!(
            spec.instances.candidate[0].health_url,
            "http://127.0.0.1:3/v1/models"
        );
        assert_eq!(spec.instances.candidate[1].url, "http://127.0.0.1:4/v1");

        // A canary with instances starts the candidate first and stops stable last.
        let spec = parse(&format!("name: r\ngateway: {{admin_url: \"http://x\"}}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  blue_green: {{pre_promotion: 1s, post_promotion: 1s, scale_down_delay: 5s}}\n{instances}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.steps[0], Step::StartCandidate(vec![0, 1]));
        assert_eq!(
            &spec.steps[spec.steps.len() - 2..],
            &[
                Step::Pause(Some(Duration::from_secs(5))),
                Step::StopStable(vec![0, 1])
            ]
        );

        let error = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  feature_flag: {percentages: [50, 20], sticky_key: cookie, segments: [{header: x}]}\n")
            .err()
            .unwrap_or_default();
        for expected in [
            "strategy.feature_flag.percentages: expected rising percentages from 1 that end at 100, found [50, 20]",
            "strategy.feature_flag.sticky_key: expected `user` or `header:NAME`, found `cookie`",
            "strategy.feature_flag.segments[0]: expected either `header` with `equals`",
        ] {
            assert!(error.contains(expected), "missing {expected:?} in\n{error}");
        }
        let error = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  rolling: {batch: 0}\ninstances:\n  stable: [{url: \"http://127.0.0.1:1/v1\"}]\n  candidate: [{url: \"http://127.0.0.1:3/v1\"}]\n")
            .err()
            .unwrap_or_default();
        for expected in [
            "strategy.rolling.batch: expected a batch of at least 1",
            "instances.stable[0].command: a rolling rollout needs each stable instance's `command`",
            "instances.candidate[0].command: expected the `command` that starts the candidate's instance",
        ] {
            assert!(error.contains(expected), "missing {expected:?} in\n{error}");
        }
    }

    #[test]
    fn every_problem_is_located() {
        let error = parse("name: r\ngateway: {admin_url: \"ftp://x\"}\nroute: chat\nstable: a\ncandidate: a\nstrategy:\n  canary:\n    steps:\n      - set_weight: 150\n      - pause: {duration: soon}\n      - {}\nanalysis:\n  rules:\n    - {metric: eror_rate, max: 0.1}\n    - {metric: error_rate}\nalerts:\n  - {type: sms, url: x}\n")
            .err()
            .unwrap_or_default();
        for expected in [
            "gateway.admin_url: expected an http:// URL",
            "candidate: the candidate must differ from the stable version `a`",
            "strategy.canary.steps[0].set_weight: expected a weight from 0 to 100, found 150",
            "strategy.canary.steps[1].pause.duration: `soon`: expected a duration",
            "strategy.canary.steps[2]: expected exactly one of `set_weight`, `pause` or `analysis`",
            "analysis.rules[0].metric: unknown metric `eror_rate`",
            "analysis.rules[1]: expected a bound: `max` or `min`",
            "alerts[0].type: unknown alert type `sms`",
        ] {
            assert!(error.contains(expected), "missing {expected:?} in\n{error}");
        }
    }
}
