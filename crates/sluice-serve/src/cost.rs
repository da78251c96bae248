//! What a route's traffic cost: per version over a window of the gateway's request log, the
//! requests, the priced ones (whose model has a price; the others have no cost, not a cost
//! of 0), their tokens, and their cost in USD in all, per request and per hour.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One version's cost over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VersionCost {
    /// The version.
    pub version: String,
    /// Requests in the window.
    pub requests: u64,
    /// Those with a cost.
    pub priced: u64,
    /// Prompt tokens of every request.
    pub prompt_tokens: u64,
    /// Completion tokens of every request.
    pub completion_tokens: u64,
    /// The priced requests' cost; `None` when none was priced.
    pub cost_usd: Option<f64>,
    /// The same per priced request.
    pub cost_per_request_usd: Option<f64>,
    /// The same per hour of the window.
    pub cost_per_hour_usd: Option<f64>,
}

/// The fields of a request-log entry that cost reads (the rest is skipped, no JSON tree).
#[derive(Deserialize)]
struct Logged<'a> {
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    cost_usd: Option<f64>,
}

/// The cost per version of the request-log entries (`(at_ms, kind, payload as JSON text)`)
/// at or after `from_ms`, over a window of `window_s` seconds.
pub fn summarise<'a>(
    events: impl Iterator<Item = (i64, &'a str, &'a str)>,
    from_ms: i64,
    window_s: u32,
) -> Vec<VersionCost> {
    let mut versions: BTreeMap<String, (VersionCost, f64)> = BTreeMap::new();
    for (at_ms, kind, payload) in events {
        if kind != "request" || at_ms < from_ms {
            continue;
        }
        let Ok(entry) = serde_json::from_str::<Logged<'_>>(payload) else {
            continue;
        };
        let Some(version) = entry.version else {
            continue;
        };
        let (summary, sum) = versions.entry(version.into_owned()).or_default();
        summary.requests += 1;
        summary.prompt_tokens += entry.prompt_tokens.unwrap_or(0);
        summary.completion_tokens += entry.completion_tokens.unwrap_or(0);
        if let Some(cost) = entry.cost_usd {
            summary.priced += 1;
            *sum += cost;
        }
    }
    versions
        .into_iter()
        .map(|(version, (mut entry, sum))| {
            entry.version = version;
            if entry.priced > 0 {
                entry.cost_usd = Some(sum);
                entry.cost_per_request_usd = Some(sum / entry.priced as f64);
                entry.cost_per_hour_usd = Some(sum * 3600.0 / f64::from(window_s.max(1)));
            }
            entry
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn priced_and_unpriced_requests_are_told_apart() {
        let log = [
            (
                10,
                "request",
                json!({"version": "a", "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.01}),
            ),
            (
                20,
                "request",
                json!({"version": "a", "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.03}),
            ),
            (
                30,
                "request",
                json!({"version": "b", "prompt_tokens": 7, "completion_tokens": 1, "cost_usd": null}),
            ),
            (40, "feedback", json!({"version": "a", "score": 1.0})),
            (5, "request", json!({"version": "a", "cost_usd": 9.0})),
        ];
        let texts: Vec<(i64, &str, String)> = log
            .iter()
            .map(|(at, k, p)| (*at, *k, p.to_string()))
            .collect();
        let summary = summarise(texts.iter().map(|(at, k, p)| (*at, *k, p.as_str())), 10, 60);
        assert_eq!(summary.len(), 2);
        let a = &summary[0];
        assert_eq!((a.requests, a.priced, a.prompt_tokens), (2, 2, 20));
        assert!((a.cost_usd.unwrap() - 0.04).abs() < 1e-12);
        assert!((a.cost_per_request_usd.unwrap() - 0.02).abs() < 1e-12);
        assert!((a.cost_per_hour_usd.unwrap() - 2.4).abs() < 1e-9);
        let b = &summary[1];
        assert_eq!((b.requests, b.priced, b.cost_usd), (1, 0, None));
    }
}
