//! The rollout spec (YAML), checked as a whole.
//!
//! ```yaml
//! name: chat-candidate
//! gateway: {admin_url: "http://127.0.0.1:8081", token_env: SLUICE_ADMIN_TOKEN}
//! route: chat
//! stable: stable
//! candidate: candidate
//! strategy:                          # or blue_green: {pre_promotion: 30s, post_promotion: 60s,
//!                                    #   auto_promote: true}
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
//!     - metric: http_5xx_ratio       # from elsewhere: `source: {prometheus: {url, query}}` or
//!       max: 0.01                    #   `source: {web: {url, pointer: /data/value}}`
//!       source: {prometheus: {url: "http://127.0.0.1:9090", query: "sum(rate(x[1m]))"}}
//!   # preset: default                # the seed's rules instead
//! alerts:
//!   - {type: webhook, url: "http://127.0.0.1:9000/hook"}
//!   - {type: slack, url: "https://hooks.slack.com/services/…"}
//!   - {type: pagerduty, routing_key_env: PD_ROUTING_KEY}
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sluice_config::{Diagnostic, Diagnostics, Document, EnvSource, FieldPath, parse_duration};

/// A checked rollout spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The rollout's name.
    pub name: String,
    /// The gateway's admin base URL.
    pub admin_url: String,
    /// The admin token, if the gateway needs one.
    pub admin_token: Option<sluice_config::Secret>,
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
}

/// The metrics rules may name, with their window fields.
pub const METRICS: &[(&str, Metric, &str)] = &[
    ("error_rate", Metric::ErrorRate, "error_rate"),
    ("latency_p99_ms", Metric::LatencyP99, "latency_p99_ms"),
    ("ttft_p99_ms", Metric::TtftP99, "ttft_p99_ms"),
    ("feedback", Metric::Feedback, "feedback_mean"),
    (
        "shadow_similarity",
        Metric::ShadowSimilarity,
        "shadow_token_f1",
    ),
];

impl Metric {
    /// The rule name.
    pub fn name(self) -> &'static str {
        METRICS
            .iter()
            .find(|(_, m, _)| *m == self)
            .map_or("?", |(n, _, _)| n)
    }

    /// The field of the gateway's window holding it.
    pub fn field(self) -> &'static str {
        METRICS
            .iter()
            .find(|(_, m, _)| *m == self)
            .map_or("?", |(_, _, f)| f)
    }

    /// The window field counting its samples.
    pub fn samples_field(self) -> &'static str {
        match self {
            Metric::Feedback => "feedback_count",
            Metric::ShadowSimilarity => "shadow_compared",
            _ => "requests",
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
    /// The candidate's error rate against the stable version's over the same window: the
    /// value is the one-sided two-proportion z statistic, and the rule fails when it shows
    /// the candidate worse at the given confidence (in the manner of Kayenta's judge).
    JudgeErrorRate {
        /// Confidence of the test, e.g. 0.95.
        confidence: f64,
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
        routing_key: sluice_config::Secret,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    gateway: RawGateway,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    admin_url: String,
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

/// The standard normal quantile (the z with `P(Z ≤ z) = p`), by bisection on the CDF.
pub fn normal_quantile(p: f64) -> f64 {
    let (mut low, mut high) = (-10.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = (low + high) / 2.0;
        if normal_cdf(mid) < p {
            low = mid;
        } else {
            high = mid;
        }
    }
    (low + high) / 2.0
}

/// The standard normal CDF (Abramowitz and Stegun 7.1.26 for erf, error below 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The one-sided two-proportion z statistic for "a's rate is higher than b's" (0 when there
/// is no variance to test).
pub fn two_proportion_z(errors_a: f64, n_a: f64, errors_b: f64, n_b: f64) -> f64 {
    if n_a <= 0.0 || n_b <= 0.0 {
        return 0.0;
    }
    let pooled = (errors_a + errors_b) / (n_a + n_b);
    let variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b);
    if variance <= 0.0 {
        return 0.0;
    }
    (errors_a / n_a - errors_b / n_b) / variance.sqrt()
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

/// The seed's default rules, over the five minutes the gateway's windows keep.
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
        let mut errors: Vec<Diagnostic> = Vec::new();
        let root = FieldPath::root();
        let mut error =
            |path: FieldPath, message: String| errors.push(document.error_at(&path, message));
        if raw.name.trim().is_empty() {
            error(root.key("name"), "expected a non-empty name".into());
        }
        if raw.stable == raw.candidate {
            error(
                root.key("candidate"),
                format!(
                    "the candidate must differ from the stable version `{}`",
                    raw.stable
                ),
            );
        }
        if !(raw.gateway.admin_url.starts_with("http://")
            || raw.gateway.admin_url.starts_with("https://"))
        {
            error(
                root.key("gateway").key("admin_url"),
                format!(
                    "expected an http:// URL such as http://127.0.0.1:8081, found `{}`",
                    raw.gateway.admin_url
                ),
            );
        }
        let admin_token = match &raw.gateway.token_env {
            Some(var) => {
                let token = env
                    .var(var)
                    .filter(|t| !t.is_empty())
                    .map(sluice_config::Secret::from);
                if token.is_none() {
                    error(
                        root.key("gateway").key("token_env"),
                        format!("the environment variable `{var}` is not set"),
                    );
                }
                token
            }
            None => None,
        };
        let strategy_path = root.key("strategy");
        let (canary, blue_green, shadow) = match raw.strategy {
            Some(RawStrategy {
                canary,
                blue_green,
                shadow,
            }) if [canary.is_some(), blue_green.is_some(), shadow.is_some()]
                .iter()
                .filter(|set| **set)
                .count()
                > 1 =>
            {
                error(
                    strategy_path.clone(),
                    "expected one strategy: `canary`, `blue_green` or `shadow`".into(),
                );
                (None, None, None)
            }
            Some(RawStrategy {
                canary,
                blue_green,
                shadow,
            }) => (canary, blue_green, shadow),
            None => (None, None, None),
        };
        let mut shadow_rule = None;
        let shadow_steps = shadow.map(|sh| {
            let path = strategy_path.key("shadow");
            let percent = sh.percent.unwrap_or(100);
            if !(1..=100).contains(&percent) {
                error(
                    path.key("percent"),
                    format!("expected a percentage from 1 to 100, found {percent}"),
                );
            }
            let duration = match &sh.duration {
                None => Duration::from_secs(60),
                Some(t) => parse_duration(t).unwrap_or_else(|e| {
                    error(path.key("duration"), e);
                    Duration::from_secs(60)
                }),
            };
            let min_similarity = sh.min_similarity.unwrap_or(0.95);
            shadow_rule = Some(Rule {
                window: duration.max(Duration::from_secs(10)),
                min_samples: sh.min_samples.unwrap_or(20),
                interval: Duration::from_secs(1),
                ..Rule::gateway(Metric::ShadowSimilarity, None, Some(min_similarity))
            });
            shadow_strategy_steps(percent, duration)
        });
        let steps = match (canary.and_then(|c| c.steps), blue_green) {
            _ if shadow_steps.is_some() => shadow_steps.clone().unwrap_or_default(),
            (_, Some(bg)) => {
                let path = strategy_path.key("blue_green");
                let mut duration = |key: &str, text: &Option<String>, default: u64| match text {
                    None => Duration::from_secs(default),
                    Some(t) => parse_duration(t).unwrap_or_else(|e| {
                        error(path.key(key), e);
                        Duration::from_secs(default)
                    }),
                };
                let pre = duration("pre_promotion", &bg.pre_promotion, 30);
                let post = duration("post_promotion", &bg.post_promotion, 60);
                blue_green_steps(pre, post, bg.auto_promote.unwrap_or(true))
            }
            (None, None) => default_steps(),
            (Some(raw_steps), None) => {
                let mut steps = Vec::new();
                if raw_steps.is_empty() {
                    error(
                        root.key("strategy").key("canary").key("steps"),
                        "expected at least one step".into(),
                    );
                }
                for (i, step) in raw_steps.iter().enumerate() {
                    let path = root.key("strategy").key("canary").key("steps").index(i);
                    match (step.set_weight, &step.pause) {
                        (Some(w), None) if (0..=100).contains(&w) => {
                            steps.push(Step::SetWeight(w as u32))
                        }
                        (Some(w), None) => error(
                            path.key("set_weight"),
                            format!("expected a weight from 0 to 100, found {w}"),
                        ),
                        (None, Some(pause)) => match &pause.duration {
                            None => steps.push(Step::Pause(None)),
                            Some(text) => match parse_duration(text) {
                                Ok(d) => steps.push(Step::Pause(Some(d))),
                                Err(e) => error(path.key("pause").key("duration"), e),
                            },
                        },
                        _ => error(
                            path,
                            "expected exactly one of `set_weight` or `pause`".into(),
                        ),
                    }
                }
                steps
            }
        };
        let mut rules: Vec<Rule> = shadow_rule.into_iter().collect();
        if let Some(analysis) = raw.analysis {
            match analysis.preset.as_deref() {
                None => {}
                Some("default") => rules.extend(default_rules()),
                Some(other) => error(
                    root.key("analysis").key("preset"),
                    format!("unknown preset `{other}` (known: default)"),
                ),
            }
            for (i, r) in analysis.rules.iter().enumerate() {
                let path = root.key("analysis").key("rules").index(i);
                let judge = r.metric == "error_rate_vs_stable";
                let source = match &r.source {
                    None if judge => {
                        let confidence = r.confidence.unwrap_or(0.95);
                        if !(0.5..1.0).contains(&confidence) {
                            error(
                                path.key("confidence"),
                                format!(
                                    "expected a confidence between 0.5 and 1, found {confidence}"
                                ),
                            );
                        }
                        if r.max.is_some() || r.min.is_some() {
                            error(
                                path.clone(),
                                "`error_rate_vs_stable` takes a `confidence`, not `max` or `min`"
                                    .into(),
                            );
                        }
                        Source::JudgeErrorRate { confidence }
                    }
                    None => {
                        let Some((_, metric, _)) = METRICS.iter().find(|(n, _, _)| *n == r.metric)
                        else {
                            let known: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
                            error(
                                path.key("metric"),
                                format!(
                                    "unknown metric `{}` (known: {}; other metrics need a `source`)",
                                    r.metric,
                                    known.join(", ")
                                ),
                            );
                            continue;
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
                        continue;
                    }
                };
                if !judge && r.max.is_none() && r.min.is_none() {
                    error(path.clone(), "expected a bound: `max` or `min`".into());
                }
                let mut duration = |key: &str, text: &Option<String>, default: Duration| match text
                {
                    None => default,
                    Some(t) => parse_duration(t).unwrap_or_else(|e| {
                        error(path.key(key), e);
                        default
                    }),
                };
                let window = duration("window", &r.window, Duration::from_secs(60));
                let interval = duration("interval", &r.interval, Duration::from_secs(1));
                let max = match source {
                    Source::JudgeErrorRate { confidence } => Some(normal_quantile(confidence)),
                    _ => r.max,
                };
                rules.push(Rule {
                    name: r.metric.clone(),
                    source,
                    max,
                    min: r.min,
                    window,
                    min_samples: r.min_samples.unwrap_or(1),
                    interval: interval.max(Duration::from_millis(100)),
                    failure_limit: r.failure_limit.unwrap_or(0),
                    consecutive_error_limit: r.consecutive_error_limit.unwrap_or(4),
                });
            }
        }
        let mut alerts = Vec::new();
        for (i, a) in raw.alerts.iter().enumerate() {
            let path = root.key("alerts").index(i);
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
                    None => error(
                        path.key("routing_key_env"),
                        "expected the name of a set environment variable holding the routing key"
                            .into(),
                    ),
                },
                ("webhook" | "slack", None) => error(path.key("url"), "expected a `url`".into()),
                (other, _) => error(
                    path.key("type"),
                    format!("unknown alert type `{other}` (webhook, slack or pagerduty)"),
                ),
            }
        }
        let cooldown = match &raw.cooldown {
            None => Duration::ZERO,
            Some(text) => parse_duration(text).unwrap_or_else(|e| {
                errors.push(document.error_at(&root.key("cooldown"), e));
                Duration::ZERO
            }),
        };
        if !errors.is_empty() {
            return Err(document.diagnostics(errors));
        }
        Ok(Spec {
            cooldown,
            name: raw.name,
            admin_url: raw.gateway.admin_url.trim_end_matches('/').to_owned(),
            admin_token,
            route: raw.route,
            stable: raw.stable,
            candidate: raw.candidate,
            steps,
            rules,
            alerts,
        })
    }
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
    fn a_spec_with_defaults() {
        let spec = parse("name: r\ngateway: {admin_url: \"http://127.0.0.1:8081\"}\nroute: chat\nstable: a\ncandidate: b\nanalysis: {preset: default}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.steps, default_steps());
        assert_eq!(spec.rules.len(), 3);
    }

    #[test]
    fn the_judge_tests_proportions_at_its_confidence() {
        assert!((normal_quantile(0.95) - 1.6449).abs() < 1e-3);
        assert!((normal_quantile(0.99) - 2.3263).abs() < 1e-3);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        // 10 % against 1 % over 200 requests each: clearly worse.
        assert!(two_proportion_z(20.0, 200.0, 2.0, 200.0) > 3.5);
        // 2 % against 1.5 %: noise.
        assert!(two_proportion_z(4.0, 200.0, 3.0, 200.0) < 1.645);
        assert_eq!(two_proportion_z(0.0, 100.0, 0.0, 100.0), 0.0);
        let spec = parse("name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\ncooldown: 5m\nanalysis:\n  rules:\n    - {metric: error_rate_vs_stable, confidence: 0.99, min_samples: 50}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.cooldown, Duration::from_secs(300));
        assert!(matches!(
            spec.rules[0].source,
            Source::JudgeErrorRate { .. }
        ));
        assert!(spec.rules[0].max.is_some_and(|z| (z - 2.3263).abs() < 1e-3));
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
    fn every_problem_is_located() {
        let error = parse("name: r\ngateway: {admin_url: \"ftp://x\"}\nroute: chat\nstable: a\ncandidate: a\nstrategy:\n  canary:\n    steps:\n      - set_weight: 150\n      - pause: {duration: soon}\n      - {}\nanalysis:\n  rules:\n    - {metric: eror_rate, max: 0.1}\n    - {metric: error_rate}\nalerts:\n  - {type: sms, url: x}\n")
            .err()
            .unwrap_or_default();
        for expected in [
            "gateway.admin_url: expected an http:// URL",
            "candidate: the candidate must differ from the stable version `a`",
            "strategy.canary.steps[0].set_weight: expected a weight from 0 to 100, found 150",
            "strategy.canary.steps[1].pause.duration: `soon`: expected a duration",
            "strategy.canary.steps[2]: expected exactly one of `set_weight` or `pause`",
            "analysis.rules[0].metric: unknown metric `eror_rate`",
            "analysis.rules[1]: expected a bound: `max` or `min`",
            "alerts[0].type: unknown alert type `sms`",
        ] {
            assert!(error.contains(expected), "missing {expected:?} in\n{error}");
        }
    }
}
