//! Alert rules on live traffic, in the documents' terms: a route's error rate, p99 latency,
//! p99 time to first token, refusal rate, cost per hour (against a budget) or mean feedback
//! score (a quality floor) over a window of the gateway's request log, per version, with a
//! minimum of samples, a severity and a cooldown. An alert opens when a rule
//! is breached (stored as `fired` on `alert:ROUTE`, then sent to its webhook, Slack or
//! PagerDuty receivers), is not sent again while it stays open, and closes (`resolved`, sent
//! too) when the rule holds again; a rule that reopens within its cooldown is recorded but not
//! sent again, so a flapping metric pages once.
//!
//! In `monitor.yaml`:
//!
//! ```yaml
//! alerts:
//!   - name: chat errors
//!     route: chat
//!     metric: error_rate        # error_rate | latency_p99_ms | ttft_p99_ms | refusal_rate |
//!     max: 0.01                 #   cost_per_hour_usd (the requests' `cost_usd`, priced by the
//!                               #   gateway) | feedback_score (mean 0–1, with `min:` instead)
//!     window: 5m
//!     min_samples: 50
//!     severity: critical        # info | warning | critical
//!     cooldown: 15m
//!     webhook: https://hooks.example.com/alerts   # and/or slack: URL, pagerduty_key_env: VAR
//! ```

use std::time::Duration;

use serde_json::{Value, json};
use sluice_rollout::spec::Alert;
use sluice_store::{Event, NewEvent, Store};

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests that did not end well, as a share.
    ErrorRate,
    /// The 99th percentile of latency, ms.
    LatencyP99,
    /// The 99th percentile of time to first token, ms.
    TtftP99,
    /// Answers that refuse, as a share.
    RefusalRate,
    /// What the window's priced requests cost, in USD per hour at the window's pace.
    CostPerHour,
    /// The mean feedback score (ratings 1–5 scaled to 0–1) of the window's feedback.
    FeedbackScore,
}

/// Which side of its threshold a rule keeps its metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Breached above this.
    Max(f64),
    /// Breached below this.
    Min(f64),
}

impl Bound {
    /// Whether `value` breaches it.
    pub fn breached(self, value: f64) -> bool {
        match self {
            Bound::Max(max) => value > max,
            Bound::Min(min) => value < min,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Max(max) => write!(f, "max {max}"),
            Bound::Min(min) => write!(f, "min {min}"),
        }
    }
}

impl Metric {
    /// Its name in `monitor.yaml`.
    pub const NAMES: [(&'static str, Metric); 6] = [
        ("error_rate", Metric::ErrorRate),
        ("latency_p99_ms", Metric::LatencyP99),
        ("ttft_p99_ms", Metric::TtftP99),
        ("refusal_rate", Metric::RefusalRate),
        ("cost_per_hour_usd", Metric::CostPerHour),
        ("feedback_score", Metric::FeedbackScore),
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("error_rate", |(n, _)| n)
    }

    /// The value over a window's request-log entries and feedback of one version, with how
    /// many samples it rests on (requests; priced requests for cost; ratings for feedback).
    pub fn measure(
        self,
        entries: &[&Value],
        feedback: &[&Value],
        window: Duration,
    ) -> (Option<f64>, usize) {
        let share = |f: &dyn Fn(&Value) -> bool| {
            let n = entries.len();
            (
                (n > 0).then(|| entries.iter().filter(|e| f(e)).count() as f64 / n as f64),
                n,
            )
        };
        let p99 = |key: &str| {
            let mut values: Vec<f64> = entries.iter().filter_map(|e| e[key].as_f64()).collect();
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let index = ((n as f64 * 0.99).ceil() as usize).clamp(1, n.max(1)) - 1;
            (values.get(index).copied(), n)
        };
        match self {
            Metric::ErrorRate => share(&|e| e["class"].as_str().is_some_and(|c| c != "ok")),
            Metric::RefusalRate => share(&|e| {
                e["answer"]
                    .as_str()
                    .is_some_and(|a| !a.is_empty() && sluice_safety::refusal::is_refusal(a))
            }),
            Metric::LatencyP99 => p99("latency_ms"),
            Metric::TtftP99 => p99("ttft_ms"),
            Metric::CostPerHour => {
                let costs: Vec<f64> = entries
                    .iter()
                    .filter_map(|e| e["cost_usd"].as_f64())
                    .collect();
                let hours = window.as_secs_f64() / 3600.0;
                (
                    (!costs.is_empty() && hours > 0.0).then(|| costs.iter().sum::<f64>() / hours),
                    costs.len(),
                )
            }
            Metric::FeedbackScore => {
                let scores: Vec<f64> = feedback
                    .iter()
                    .filter_map(|e| e["score"].as_f64())
                    .collect();
                let n = scores.len();
                ((n > 0).then(|| scores.iter().sum::<f64>() / n as f64), n)
            }
        }
    }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Its name (also what keeps one alert per rule and version).
    pub name: String,
    /// The gateway route.
    pub route: String,
    /// What it measures.
    pub metric: Metric,
    /// The side of its threshold the metric must stay on.
    pub bound: Bound,
    /// The requests considered, back from now.
    pub window: Duration,
    /// Requests needed for a verdict.
    pub min_samples: usize,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// A reopened alert within this of the last sent one is not sent again.
    pub cooldown: Duration,
    /// Where it is sent.
    pub receivers: Vec<Alert>,
}

/// Whether the last stored state of `rule` on `version` is open, and when it was last sent.
fn last_state(history: &[Event], rule: &str, version: &str) -> (bool, Option<i64>) {
    let mut open = false;
    let mut sent_at = None;
    for event in history
        .iter()
        .filter(|e| e.payload["rule"] == rule && e.payload["version"] == version)
    {
        match event.kind.as_str() {
            "fired" => {
                open = true;
                if event.payload["sent"] == true {
                    sent_at = Some(event.at_ms);
                }
            }
            "resolved" => open = false,
            _ => {}
        }
    }
    (open, sent_at)
}

/// Evaluates every rule once at `now_ms` over the request log: opens and closes alerts.
/// Returns the events stored.
pub async fn evaluate(
    store: &Store,
    rules: &[AlertRule],
    now_ms: i64,
) -> Result<Vec<Value>, sluice_store::StoreError> {
    let mut stored = Vec::new();
    for rule in rules {
        let window_ms = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
        let log = crate::feedback::events_since(
            store,
            &format!("gateway:{}", rule.route),
            now_ms.saturating_sub(window_ms),
        )
        .await?;
        // Per version: its requests and its feedback in the window.
        type Entries<'a> = (Vec<&'a Value>, Vec<&'a Value>);
        let mut versions: std::collections::BTreeMap<&str, Entries<'_>> = Default::default();
        for event in log
            .iter()
            .filter(|e| e.at_ms >= now_ms.saturating_sub(window_ms))
        {
            if let Some(version) = event.payload["version"].as_str() {
                let entries = versions.entry(version).or_default();
                match event.kind.as_str() {
                    "request" => entries.0.push(&event.payload),
                    "feedback" => entries.1.push(&event.payload),
                    _ => {}
                }
            }
        }
        let subject = format!("alert:{}", rule.route);
        let history = crate::feedback::all_events(store, &subject).await?;
        for (version, (entries, feedback)) in versions {
            let (value, samples) = rule.metric.measure(&entries, &feedback, rule.window);
            let Some(value) = value.filter(|_| samples >= rule.min_samples) else {
                continue;
            };
            let breached = rule.bound.breached(value);
            let (open, sent_at) = last_state(&history, &rule.name, version);
            let kind = match (breached, open) {
                (true, false) => "fired",
                (false, true) => "resolved",
                _ => continue,
            };
            let cooldown_ms = i64::try_from(rule.cooldown.as_millis()).unwrap_or(i64::MAX);
            let send = kind == "resolved"
                || sent_at.is_none_or(|at| now_ms.saturating_sub(at) >= cooldown_ms);
            let payload = json!({
                "kind": if kind == "fired" { "alert" } else { "alert_resolved" },
                "summary": format!(
                    "[{}] {} on {} {}: {} = {value:.4} ({}) over {samples} samples",
                    rule.severity, rule.name, rule.route, version,
                    rule.metric.name(), rule.bound
                ),
                "id": format!("{}:{}:{}", rule.route, rule.name, version),
                "rule": rule.name,
                "route": rule.route,
                "version": version,
                "metric": rule.metric.name(),
                "value": value,
                "max": match rule.bound { Bound::Max(max) => Some(max), Bound::Min(_) => None },
                "min": match rule.bound { Bound::Min(min) => Some(min), Bound::Max(_) => None },
                "samples": samples,
                "severity": rule.severity,
                "sent": send,
            });
            store
                .append_events(vec![NewEvent {
                    subject: subject.clone(),
                    kind: kind.into(),
                    payload: payload.clone(),
                }])
                .await?;
            if send && !rule.receivers.is_empty() {
                drop(sluice_rollout::alert::send(
                    &rule.receivers,
                    payload.clone(),
                ));
            }
            stored.push(payload);
        }
    }
    Ok(stored)
}

/// The alerts open now among a route's alert history: the last `fired` of each rule and
/// version with no `resolved` after it.
pub fn open(history: &[Event]) -> Vec<Value> {
    let mut last: std::collections::BTreeMap<(String, String), &Event> = Default::default();
    for event in history {
        let key = (
            event.payload["rule"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            event.payload["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        last.insert(key, event);
    }
    last.into_values()
        .filter(|e| e.kind == "fired")
        .map(|e| json!({"at_ms": e.at_ms, "alert": e.payload}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_read_the_request_log() {
        let entries: Vec<Value> = (0..100)
            .map(|i| {
                json!({
                    "class": if i < 3 { "upstream_error" } else { "ok" },
                    "latency_ms": f64::from(i),
                    "answer": if i % 10 == 0 { "I'm sorry, but I can't help with that." } else { "Paris." },
                })
            })
            .collect();
        let refs: Vec<&Value> = entries.iter().collect();
        let minute = Duration::from_secs(60);
        let measure = |metric: Metric| metric.measure(&refs, &[], minute);
        assert_eq!(measure(Metric::ErrorRate), (Some(0.03), 100));
        assert_eq!(measure(Metric::LatencyP99), (Some(98.0), 100));
        assert_eq!(measure(Metric::RefusalRate), (Some(0.1), 100));
        assert_eq!(measure(Metric::TtftP99), (None, 0));
        assert_eq!(measure(Metric::CostPerHour), (None, 0));
        assert_eq!(measure(Metric::FeedbackScore), (None, 0));
    }

    #[test]
    fn cost_per_hour_and_feedback_score() {
        let priced: Vec<Value> = (0..10)
            .map(|_| json!({"class": "ok", "cost_usd": 0.002}))
            .collect();
        let refs: Vec<&Value> = priced.iter().collect();
        let (cost, n) = Metric::CostPerHour.measure(&refs, &[], Duration::from_secs(60));
        assert_eq!(n, 10);
        // 0.02 USD in a minute is 1.20 USD an hour.
        assert!((cost.unwrap() - 1.2).abs() < 1e-9);
        let ratings = [
            json!({"score": 0.0}),
            json!({"score": 0.5}),
            json!({"score": 1.0}),
            json!({"comment": "no score"}),
        ];
        let refs: Vec<&Value> = ratings.iter().collect();
        assert_eq!(
            Metric::FeedbackScore.measure(&[], &refs, Duration::from_secs(60)),
            (Some(0.5), 3)
        );
        assert!(Bound::Min(0.7).breached(0.5));
        assert!(!Bound::Max(2.0).breached(1.2));
    }
}
