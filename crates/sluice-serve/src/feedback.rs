//! The feedback loop: users' ratings of a version's answers (the gateway's `POST
//! /v1/feedback`, stored on `gateway:ROUTE`) read as a satisfaction rate (ratings 4–5, or a
//! `true` value) and a negative rate (ratings 1–2, or `false`) over a window; and the
//! retraining trigger, which fires when a version has enough ratings and is below its
//! satisfaction floor or above its negative ceiling — a webhook and/or a command, given the
//! evidence (window, counts, the worst rated requests with their comments redacted) — at most
//! once per cooldown. Each firing is stored (`retrain:ROUTE`) before anything is sent, so a
//! restarted server keeps the cooldown.
//!
//! `monitor.yaml` (its `alerts:` rules are [`crate::alerts`]'s):
//!
//! ```yaml
//! interval: 30s                # how often the rules are evaluated
//! feedback:
//!   - route: chat
//!     window: 1h               # the ratings considered
//!     min_samples: 100         # no verdict on fewer
//!     min_satisfaction: 0.7
//!     max_negative: 0.2
//!     cooldown: 6h             # between two firings for one version
//!     webhook: https://ci.example.com/hooks/retrain
//!     command: ./retrain.sh    # the evidence as JSON on its standard input
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_config::{Diagnostics, Document, FieldPath, ProcessEnv, parse_duration};
use sluice_store::{NewEvent, Store};
use tokio::sync::watch;

/// A rating at or above this (on 0–1) is satisfied; at or below [`NEGATIVE`], negative.
const SATISFIED: f64 = 0.75;
/// See [`SATISFIED`].
const NEGATIVE: f64 = 0.25;
/// The worst rated requests given as evidence.
const WORST: usize = 5;

/// The monitor's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// How often the rules are evaluated.
    pub interval: Duration,
    /// The feedback rules.
    pub feedback: Vec<FeedbackRule>,
    /// The alert rules ([`crate::alerts`]).
    pub alerts: Vec<crate::alerts::AlertRule>,
    /// The smoke tests ([`crate::smoke`]).
    pub smoke: Vec<crate::smoke::SmokeTest>,
}

/// One route's retraining trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRule {
    /// The gateway route.
    pub route: String,
    /// The ratings considered, back from now.
    pub window: Duration,
    /// Ratings needed for a verdict.
    pub min_samples: usize,
    /// The satisfaction floor.
    pub min_satisfaction: f64,
    /// The negative ceiling.
    pub max_negative: f64,
    /// Between two firings for one version.
    pub cooldown: Duration,
    /// Where the evidence is posted.
    pub webhook: Option<String>,
    /// What runs with the evidence on its standard input (`sh -c`).
    pub command: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    feedback: Vec<RawRule>,
    #[serde(default)]
    alerts: Vec<RawAlertRule>,
    #[serde(default)]
    smoke: Vec<RawSmoke>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmoke {
    name: String,
    command: String,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    alert_after: Option<u32>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    slack: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertRule {
    name: String,
    route: String,
    metric: String,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    min_samples: Option<usize>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    cooldown: Option<String>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    slack: Option<String>,
    #[serde(default)]
    pagerduty_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    route: String,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    min_samples: Option<usize>,
    #[serde(default)]
    min_satisfaction: Option<f64>,
    #[serde(default)]
    max_negative: Option<f64>,
    #[serde(default)]
    cooldown: Option<String>,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    command: Option<String>,
}

impl MonitorConfig {
    /// Reads and checks `path` (every problem at once, located).
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let document = Document::read(path, &ProcessEnv)?;
        let raw: RawConfig = document.deserialize()?;
        let mut errors = Vec::new();
        let mut duration = |at: FieldPath, text: Option<String>, default: Duration| match text {
            None => default,
            Some(text) => match parse_duration(&text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    errors.push(
                        document.error_at(&at, format!("`{text}`: expected a duration above zero")),
                    );
                    default
                }
                Err(e) => {
                    errors.push(document.error_at(&at, e.to_string()));
                    default
                }
            },
        };
        let interval = duration(
            FieldPath::root().key("interval"),
            raw.interval,
            Duration::from_secs(30),
        );
        let mut rules = Vec::new();
        for (i, mut rule) in raw.feedback.into_iter().enumerate() {
            let at = FieldPath::root().key("feedback").index(i);
            let window = duration(
                at.key("window"),
                rule.window.take(),
                Duration::from_secs(3600),
            );
            let cooldown = duration(
                at.key("cooldown"),
                rule.cooldown.take(),
                Duration::from_secs(6 * 3600),
            );
            rules.push((at, rule, window, cooldown));
        }
        let mut feedback = Vec::new();
        for (at, rule, window, cooldown) in rules {
            let share = |key: &str, value: Option<f64>, default: f64, errors: &mut Vec<_>| {
                let value = value.unwrap_or(default);
                if !(0.0..=1.0).contains(&value) {
                    errors.push(document.error_at(
                        &at.key(key),
                        format!("{value}: expected a share from 0 to 1"),
                    ));
                }
                value
            };
            let min_satisfaction =
                share("min_satisfaction", rule.min_satisfaction, 0.7, &mut errors);
            let max_negative = share("max_negative", rule.max_negative, 0.2, &mut errors);
            if rule.webhook.is_none() && rule.command.is_none() {
                errors.push(document.error_at(
                    &at,
                    "expected `webhook`, `command` or both: what the trigger fires",
                ));
            }
            if let Some(url) = &rule.webhook
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                errors.push(document.error_at(
                    &at.key("webhook"),
                    format!("`{url}`: expected an http:// or https:// URL"),
                ));
            }
            feedback.push(FeedbackRule {
                route: rule.route,
                window,
                min_samples: rule.min_samples.unwrap_or(100).max(1),
                min_satisfaction,
                max_negative,
                cooldown,
                webhook: rule.webhook,
                command: rule.command,
            });
        }
        let mut alerts = Vec::new();
        for (i, rule) in raw.alerts.into_iter().enumerate() {
            let at = FieldPath::root().key("alerts").index(i);
            let metric = crate::alerts::Metric::NAMES
                .iter()
                .find(|(n, _)| *n == rule.metric)
                .map(|(_, m)| *m);
            if metric.is_none() {
                let names: Vec<&str> = crate::alerts::Metric::NAMES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                errors.push(document.error_at(
                    &at.key("metric"),
                    format!(
                        "unknown metric `{}`: expected one of {}",
                        rule.metric,
                        names.join(", ")
                    ),
                ));
            }
            let severity = rule.severity.unwrap_or_else(|| "warning".to_owned());
            check_severity(&document, &at, &severity, &mut errors);
            let mut receivers = receivers(&document, &at, &rule.webhook, &rule.slack, &mut errors);
            if let Some(var) = &rule.pagerduty_key_env {
                match std::env::var(var) {
                    Ok(key) => receivers.push(sluice_rollout::spec::Alert::PagerDuty {
                        url: "https://events.pagerduty.com/v2/enqueue".to_owned(),
                        routing_key: sluice_core::Secret::new(key),
                    }),
                    Err(_) => errors.push(document.error_at(
                        &at.key("pagerduty_key_env"),
                        format!("environment variable `{var}` is not set"),
                    )),
                }
            }
            let window = match rule.window.as_deref().map(parse_duration) {
                None => Duration::from_secs(300),
                Some(Ok(d)) if !d.is_zero() => d,
                Some(_) => {
                    errors.push(
                        document.error_at(&at.key("window"), "expected a duration above zero"),
                    );
                    Duration::from_secs(300)
                }
            };
            let cooldown = match rule.cooldown.as_deref().map(parse_duration) {
                None => Duration::from_secs(900),
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    errors.push(document.error_at(&at.key("cooldown"), e.to_string()));
                    Duration::from_secs(900)
                }
            };
            let bound = match (rule.max, rule.min) {
                (Some(max), None) if max.is_finite() => Some(crate::alerts::Bound::Max(max)),
                (None, Some(min)) if min.is_finite() => Some(crate::alerts::Bound::Min(min)),
                _ => {
                    errors.push(document.error_at(
                        &at,
                        "expected one threshold: `max` (breached above it) or `min` (breached below it, e.g. for feedback_score)",
                    ));
                    None
                }
            };
            if let (Some(metric), Some(bound)) = (metric, bound) {
                alerts.push(crate::alerts::AlertRule {
                    name: rule.name,
                    route: rule.route,
                    metric,
                    bound,
                    window,
                    min_samples: rule.min_samples.unwrap_or(50).max(1),
                    severity,
                    cooldown,
                    receivers,
                });
            }
        }
        let mut smoke = Vec::new();
        for (i, test) in raw.smoke.into_iter().enumerate() {
            let at = FieldPath::root().key("smoke").index(i);
            let mut every_or = |key: &str, text: Option<&str>, default: Duration| match text
                .map(parse_duration)
            {
                None => default,
                Some(Ok(d)) if !d.is_zero() => d,
                Some(_) => {
                    errors.push(document.error_at(&at.key(key), "expected a duration above zero"));
                    default
                }
            };
            let every = every_or("every", test.every.as_deref(), Duration::from_secs(600));
            let timeout = every_or("timeout", test.timeout.as_deref(), Duration::from_secs(300));
            let severity = test.severity.unwrap_or_else(|| "critical".to_owned());
            check_severity(&document, &at, &severity, &mut errors);
            if test.command.trim().is_empty() {
                errors.push(document.error_at(&at.key("command"), "expected the command to run"));
            }
            let receivers = receivers(&document, &at, &test.webhook, &test.slack, &mut errors);
            smoke.push(crate::smoke::SmokeTest {
                name: test.name,
                command: test.command,
                every,
                timeout,
                alert_after: test.alert_after.unwrap_or(3).max(1),
                severity,
                receivers,
            });
        }
        if errors.is_empty() {
            Ok(MonitorConfig {
                interval,
                feedback,
                alerts,
                smoke,
            })
        } else {
            Err(document.diagnostics(errors))
        }
    }
}

/// The webhook and Slack receivers of an alert or smoke rule, each URL checked.
fn receivers(
    document: &Document,
    at: &FieldPath,
    webhook: &Option<String>,
    slack: &Option<String>,
    errors: &mut Vec<sluice_config::Diagnostic>,
) -> Vec<sluice_rollout::spec::Alert> {
    let mut receivers = Vec::new();
    for (key, url) in [("webhook", webhook), ("slack", slack)] {
        let Some(url) = url else { continue };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(document.error_at(
                &at.key(key),
                format!("`{url}`: expected an http:// or https:// URL"),
            ));
        }
        receivers.push(if key == "slack" {
            sluice_rollout::spec::Alert::Slack(url.clone())
        } else {
            sluice_rollout::spec::Alert::Webhook(url.clone())
        });
    }
    receivers
}

/// A rule's severity must be one of the three.
fn check_severity(
    document: &Document,
    at: &FieldPath,
    severity: &str,
    errors: &mut Vec<sluice_config::Diagnostic>,
) {
    if !["info", "warning", "critical"].contains(&severity) {
        errors.push(document.error_at(
            &at.key("severity"),
            format!("`{severity}`: expected info, warning or critical"),
        ));
    }
}

/// One version's ratings over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionFeedback {
    /// The version.
    pub version: String,
    /// Ratings with a score.
    pub samples: usize,
    /// Satisfied ratings.
    pub satisfied: usize,
    /// Negative ratings.
    pub negative: usize,
    /// `satisfied / samples`.
    pub satisfaction_rate: Option<f64>,
    /// `negative / samples`.
    pub negative_rate: Option<f64>,
    /// The worst rated requests: id, score, comment (redacted).
    pub worst: Vec<Value>,
}

/// Every version's ratings among `events` (`(at_ms, kind, payload)` of a route) from
/// `from_ms` on.
pub fn summarise<'a>(
    events: impl Iterator<Item = (i64, &'a str, &'a Value)>,
    from_ms: i64,
) -> Vec<VersionFeedback> {
    let mut by_version: BTreeMap<String, Vec<(f64, &Value)>> = BTreeMap::new();
    for (at_ms, kind, payload) in events {
        if kind != "feedback" || at_ms < from_ms {
            continue;
        }
        let (Some(version), Some(score)) = (payload["version"].as_str(), payload["score"].as_f64())
        else {
            continue;
        };
        by_version
            .entry(version.to_owned())
            .or_default()
            .push((score, payload));
    }
    by_version
        .into_iter()
        .map(|(version, mut ratings)| {
            let samples = ratings.len();
            let satisfied = ratings.iter().filter(|(s, _)| *s >= SATISFIED).count();
            let negative = ratings.iter().filter(|(s, _)| *s <= NEGATIVE).count();
            ratings.sort_by(|a, b| a.0.total_cmp(&b.0));
            let worst = ratings
                .iter()
                .take(WORST)
                .map(|(score, p)| {
                    json!({
                        "request_id": p["request_id"],
                        "score": score,
                        "comment": p["comment"].as_str().map(sluice_safety::record::text_for_log),
                    })
                })
                .collect();
            let rate = |n: usize| (samples > 0).then(|| n as f64 / samples as f64);
            VersionFeedback {
                version,
                samples,
                satisfied,
                negative,
                satisfaction_rate: rate(satisfied),
                negative_rate: rate(negative),
                worst,
            }
        })
        .collect()
}

/// Why `rule` fires for `version`, if it does.
pub fn breach(rule: &FeedbackRule, version: &VersionFeedback) -> Option<String> {
    if version.samples < rule.min_samples {
        return None;
    }
    let satisfaction = version.satisfaction_rate.unwrap_or(1.0);
    let negative = version.negative_rate.unwrap_or(0.0);
    if satisfaction < rule.min_satisfaction {
        Some(format!(
            "satisfaction {:.1} % is under {:.1} % over {} ratings",
            satisfaction * 100.0,
            rule.min_satisfaction * 100.0,
            version.samples
        ))
    } else if negative > rule.max_negative {
        Some(format!(
            "negative ratings {:.1} % are over {:.1} % over {} ratings",
            negative * 100.0,
            rule.max_negative * 100.0,
            version.samples
        ))
    } else {
        None
    }
}

/// Every event of `subject`, oldest first.
pub async fn all_events(
    store: &Store,
    subject: &str,
) -> Result<Vec<sluice_store::Event>, sluice_store::StoreError> {
    parsed(raw_events_after(store, subject, 0).await?)
}

/// The events of `subject` stored at or after `since_ms`, oldest first: found through the
/// store's time index, so a long log costs only its recent part.
pub async fn events_since(
    store: &Store,
    subject: &str,
    since_ms: i64,
) -> Result<Vec<sluice_store::Event>, sluice_store::StoreError> {
    parsed(raw_events_since(store, subject, since_ms).await?)
}

/// The events of one `kind` among [`events_since`]'s, the others left unread (a route's
/// log is mostly requests; its feedback is few).
pub async fn kind_since(
    store: &Store,
    subject: &str,
    since_ms: i64,
    kind: &str,
) -> Result<Vec<sluice_store::Event>, sluice_store::StoreError> {
    let mut raw = raw_events_since(store, subject, since_ms).await?;
    raw.retain(|e| e.kind == kind);
    parsed(raw)
}

/// [`events_since`] with the payloads left as stored, for readers that take a few fields
/// of many events.
pub async fn raw_events_since(
    store: &Store,
    subject: &str,
    since_ms: i64,
) -> Result<Vec<sluice_store::RawEvent>, sluice_store::StoreError> {
    let Some(first) = store.first_event_since(subject, since_ms).await? else {
        return Ok(Vec::new());
    };
    let mut events = raw_events_after(store, subject, first - 1).await?;
    // Sequence and time mostly agree; an event written with an earlier clock is left out.
    events.retain(|e| e.at_ms >= since_ms);
    Ok(events)
}

async fn raw_events_after(
    store: &Store,
    subject: &str,
    mut after: i64,
) -> Result<Vec<sluice_store::RawEvent>, sluice_store::StoreError> {
    const PAGE: u32 = 10_000;
    let mut events = Vec::new();
    loop {
        let page = store.events_raw(subject, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == PAGE as usize;
        events.extend(page);
        if !full {
            break;
        }
    }
    Ok(events)
}

fn parsed(
    raw: Vec<sluice_store::RawEvent>,
) -> Result<Vec<sluice_store::Event>, sluice_store::StoreError> {
    raw.into_iter().map(sluice_store::RawEvent::parse).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Evaluates every rule once: fires (and records) the triggers that are due.
pub async fn evaluate(
    store: &Store,
    config: &MonitorConfig,
) -> Result<Vec<Value>, sluice_store::StoreError> {
    let mut fired = Vec::new();
    for rule in &config.feedback {
        let now = now_ms();
        let window_ms = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
        let events = kind_since(
            store,
            &format!("gateway:{}", rule.route),
            now.saturating_sub(window_ms),
            "feedback",
        )
        .await?;
        let versions = summarise(
            events
                .iter()
                .map(|e| (e.at_ms, e.kind.as_str(), &e.payload)),
            now.saturating_sub(window_ms),
        );
        let subject = format!("retrain:{}", rule.route);
        let triggers = all_events(store, &subject).await?;
        for version in &versions {
            let Some(reason) = breach(rule, version) else {
                continue;
            };
            let cooldown_ms = i64::try_from(rule.cooldown.as_millis()).unwrap_or(i64::MAX);
            let recent = triggers.iter().any(|t| {
                t.payload["version"].as_str() == Some(version.version.as_str())
                    && now.saturating_sub(t.at_ms) < cooldown_ms
            });
            if recent {
                continue;
            }
            let evidence = json!({
                "kind": "retraining_trigger",
                "summary": format!("retrain {} on {}: {reason}", version.version, rule.route),
                "route": rule.route,
                "version": version.version,
                "reason": reason,
                "window": {"from_ms": now.saturating_sub(window_ms), "to_ms": now},
                "thresholds": {"min_samples": rule.min_samples, "min_satisfaction": rule.min_satisfaction, "max_negative": rule.max_negative},
                "feedback": version,
            });
            // Stored first: a restart keeps the cooldown even if the sends below fail.
            store
                .append_events(vec![NewEvent {
                    subject: subject.clone(),
                    kind: "triggered".into(),
                    payload: evidence.clone(),
                }])
                .await?;
            tracing::warn!(route = %rule.route, version = %version.version, %reason, "Retraining trigger fired.");
            if let Some(url) = &rule.webhook {
                // Delivered (and retried) in the background; the firing is already stored.
                drop(sluice_rollout::alert::send(
                    &[sluice_rollout::spec::Alert::Webhook(url.clone())],
                    evidence.clone(),
                ));
            }
            if let Some(command) = &rule.command {
                run_command(command, &evidence);
            }
            fired.push(evidence);
        }
    }
    Ok(fired)
}

/// Runs `command` with `evidence` on its standard input, in the background.
fn run_command(command: &str, evidence: &Value) {
    use tokio::io::AsyncWriteExt as _;
    let spawned = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(false)
        .spawn();
    match spawned {
        Ok(mut child) => {
            let input = serde_json::to_vec(evidence).unwrap_or_default();
            tokio::spawn(async move {
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(&input).await;
                }
                match child.wait().await {
                    Ok(status) if !status.success() => {
                        tracing::warn!(%status, "The retraining command failed.");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "The retraining command could not be waited for.")
                    }
                    Ok(_) => {}
                }
            });
        }
        Err(error) => tracing::warn!(%error, "The retraining command could not start."),
    }
}

/// Starts the monitor's tasks on the current runtime: the feedback and alert rules every
/// `interval`, each smoke test on its own clock, until `shutdown` turns true. What a gateway
/// or the control plane runs with `--monitor`.
pub fn start_monitor(store: &Store, config: MonitorConfig, shutdown: &watch::Receiver<bool>) {
    for test in &config.smoke {
        tokio::spawn(crate::smoke::run(
            store.clone(),
            test.clone(),
            shutdown.clone(),
        ));
    }
    tokio::spawn(run(store.clone(), config, shutdown.clone()));
}

/// Evaluates the rules every `interval` until `shutdown`.
pub async fn run(store: Store, config: MonitorConfig, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(error) = evaluate(&store, &config).await {
            tracing::warn!(%error, "The monitor could not read the store.");
        }
        if let Err(error) = crate::alerts::evaluate(&store, &config.alerts, now_ms()).await {
            tracing::warn!(%error, "The alert rules could not read the store.");
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> FeedbackRule {
        FeedbackRule {
            route: "chat".into(),
            window: Duration::from_secs(3600),
            min_samples: 100,
            min_satisfaction: 0.7,
            max_negative: 0.2,
            cooldown: Duration::from_secs(3600),
            webhook: Some("http://x".into()),
            command: None,
        }
    }

    #[test]
    fn ratings_become_rates_and_a_breach_needs_enough_of_them() {
        let mut events: Vec<(i64, String, Value)> = Vec::new();
        for i in 0..120 {
            events.push((i, "feedback".into(), json!({"version": "v2", "score": 0.0, "request_id": format!("r{i}"), "comment": "mail me at jane.doe@example.com"})));
        }
        for i in 0..80 {
            events.push((i, "feedback".into(), json!({"version": "v1", "score": 1.0})));
        }
        events.push((5, "request".into(), json!({"version": "v1"})));
        let versions = summarise(events.iter().map(|(a, k, p)| (*a, k.as_str(), p)), 0);
        let v2 = versions.iter().find(|v| v.version == "v2").unwrap();
        assert_eq!(
            (v2.samples, v2.negative, v2.satisfaction_rate),
            (120, 120, Some(0.0))
        );
        assert!(
            breach(&rule(), v2)
                .unwrap()
                .contains("satisfaction 0.0 % is under 70.0 %")
        );
        assert!(
            !v2.worst[0]["comment"]
                .as_str()
                .unwrap()
                .contains("jane.doe@example.com"),
            "{:?}",
            v2.worst
        );
        let v1 = versions.iter().find(|v| v.version == "v1").unwrap();
        assert_eq!(
            breach(&rule(), v1),
            None,
            "80 ratings are too few, and all good"
        );
        let later = summarise(events.iter().map(|(a, k, p)| (*a, k.as_str(), p)), 1000);
        assert!(later.is_empty());
    }

    #[test]
    fn a_bad_monitor_file_is_refused_with_every_problem_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.yaml");
        std::fs::write(
            &path,
            "interval: soon\nfeedback:\n  - {route: chat, min_satisfaction: 1.5}\nalerts:\n  - {name: e, route: chat, metric: eror_rate, max: 0.1, severity: loud, webhook: ftp://x}\nsmoke:\n  - {name: s, command: '', slack: nope}\n",
        )
        .unwrap();
        let error = MonitorConfig::load(&path).unwrap_err().to_string();
        for expected in [
            "monitor.yaml:1:11: interval:",
            "feedback[0].min_satisfaction: 1.5: expected a share from 0 to 1",
            "feedback[0]: expected `webhook`, `command` or both",
            "alerts[0].metric: unknown metric `eror_rate`",
            "alerts[0].severity: `loud`: expected info, warning or critical",
            "alerts[0].webhook: `ftp://x`: expected an http:// or https:// URL",
            "smoke[0].command: expected the command to run",
            "smoke[0].slack: `nope`",
        ] {
            assert!(error.contains(expected), "{expected}\nin\n{error}");
        }
    }
}
