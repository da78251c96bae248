//! Drift of a route's traffic: one version's requests in a current window against a reference
//! window, descriptor by descriptor, from the gateway's request log. Numbers (prompt and answer
//! length in tokens, latency, time to first token) are compared with the population stability
//! index on ten reference-quantile bins (warn at 0.1, alert at 0.2); shares (refusals, answers
//! that are JSON, errors, safety hits, flagged inputs, answers cut at the length limit, tool
//! calls) with the Jensen-Shannon divergence
//! (alert at 0.1). A descriptor is judged only with at least `min_samples` requests in each
//! window.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sluice_core::stats::{JS_ALERT, PSI_ALERT, PSI_WARN, jensen_shannon, psi_bins};

/// Requests needed in each window before a descriptor is judged.
pub const MIN_SAMPLES: usize = 500;

/// A time window, Unix ms, `from` included, `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Start.
    pub from_ms: i64,
    /// End.
    pub to_ms: i64,
}

impl Window {
    fn holds(&self, at_ms: i64) -> bool {
        self.from_ms <= at_ms && at_ms < self.to_ms
    }
}

/// One descriptor's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Descriptor {
    /// Its name (`completion_tokens`, `refusal`…).
    pub name: &'static str,
    /// `psi` (numbers) or `jensen_shannon` (shares).
    pub measure: &'static str,
    /// The measure's value, when both windows had enough requests.
    pub value: Option<f64>,
    /// `ok`, `warn`, `alert`, or `insufficient` (too few requests).
    pub verdict: &'static str,
    /// The reference window's mean (numbers) or share (shares).
    pub reference: Option<f64>,
    /// The current window's.
    pub current: Option<f64>,
    /// For a number judged: the bins on the reference's quantiles and each window's share
    /// of them (what the PSI was computed on, what the page draws).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
}

/// A number's two windows binned on the reference's quantiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    /// The cuts between bins.
    pub edges: Vec<f64>,
    /// Each bin's share of the reference window.
    pub reference: Vec<f64>,
    /// Each bin's share of the current window.
    pub current: Vec<f64>,
}

/// The drift report of one version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The route.
    pub route: String,
    /// The version.
    pub version: String,
    /// The reference window.
    pub reference: Window,
    /// The current window.
    pub current: Window,
    /// Requests in each.
    pub samples: (usize, usize),
    /// The descriptors that drifted (`warn` or `alert`), by name.
    pub drifted: Vec<&'static str>,
    /// Every descriptor.
    pub descriptors: Vec<Descriptor>,
    /// The prompts' embedding drift, when it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<crate::embedding::EmbeddingDrift>,
}

/// The version's prompts in each window (the user's text of each logged request), at most
/// `n` of each, evenly spread: what embedding drift embeds.
pub fn prompts(
    version: &str,
    reference: Window,
    current: Window,
    events: &[(i64, &str)],
    n: usize,
) -> (Vec<String>, Vec<String>) {
    #[derive(Deserialize)]
    struct Logged<'a> {
        #[serde(borrow, default)]
        version: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        request: Option<Cow<'a, str>>,
    }
    let (before, now) = split(events, reference, current, |payload| {
        serde_json::from_str::<Logged<'_>>(payload)
            .ok()
            .filter(|entry| entry.version.as_deref() == Some(version))
            .and_then(|entry| entry.request)
    });
    let pick = |texts: Vec<Cow<'_, str>>| -> Vec<String> {
        crate::embedding::spread(&texts, n)
            .into_iter()
            .map(|t| crate::embedding::prompt_text(&t))
            .collect()
    };
    (pick(before), pick(now))
}

/// What one logged request says about the traffic.
#[derive(Debug, Clone, Default)]
struct Sample {
    numbers: [Option<f64>; 4],
    flags: [bool; 7],
}

const NUMBERS: [&str; 4] = [
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "ttft_ms",
];
const FLAGS: [&str; 7] = [
    "refusal",
    "json_answer",
    "error",
    "safety_hit",
    "input_flagged",
    "finish_length",
    "tool_call",
];

/// The fields of a request-log entry that drift reads: parsed without building a JSON tree,
/// the rest skipped.
#[derive(Deserialize)]
struct Logged<'a> {
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    class: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    answer: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_tokens: Option<f64>,
    #[serde(default)]
    completion_tokens: Option<f64>,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    ttft_ms: Option<f64>,
    #[serde(default)]
    safety: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    input_flags: Option<Vec<IgnoredAny>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<bool>,
}

fn sample(entry: &Logged<'_>) -> Sample {
    let answer = entry.answer.as_deref().unwrap_or_default();
    let trimmed = answer.trim();
    let non_empty = |list: &Option<Vec<IgnoredAny>>| list.as_ref().is_some_and(|l| !l.is_empty());
    Sample {
        numbers: [
            entry.prompt_tokens,
            entry.completion_tokens,
            entry.latency_ms,
            entry.ttft_ms,
        ],
        flags: [
            !answer.is_empty() && sluice_safety::refusal::is_refusal(answer),
            (trimmed.starts_with('{') || trimmed.starts_with('['))
                && serde_json::from_str::<IgnoredAny>(trimmed).is_ok(),
            entry.class.as_deref().is_some_and(|c| c != "ok"),
            non_empty(&entry.safety),
            non_empty(&entry.input_flags),
            entry.finish_reason.as_deref() == Some("length"),
            entry.tool_calls == Some(true),
        ],
    }
}

/// The samples of `version` in each window among `events`.
fn samples(
    version: &str,
    reference: Window,
    current: Window,
    events: &[(i64, &str)],
) -> (Vec<Sample>, Vec<Sample>) {
    split(events, reference, current, |payload| {
        serde_json::from_str::<Logged<'_>>(payload)
            .ok()
            .filter(|entry| entry.version.as_deref() == Some(version))
            .map(|entry| sample(&entry))
    })
}

/// What `read` makes of each event of the reference window, then of the current one (events
/// in neither, or that `read` makes nothing of, are left out).
fn split<'a, T>(
    events: &[(i64, &'a str)],
    reference: Window,
    current: Window,
    mut read: impl FnMut(&'a str) -> Option<T>,
) -> (Vec<T>, Vec<T>) {
    let (mut before, mut now) = (Vec::new(), Vec::new());
    for &(at_ms, payload) in events {
        let window = if reference.holds(at_ms) {
            &mut before
        } else if current.holds(at_ms) {
            &mut now
        } else {
            continue;
        };
        if let Some(item) = read(payload) {
            window.push(item);
        }
    }
    (before, now)
}

/// Compares `version`'s requests of the two windows. `events` are the route's request log
/// entries as `(at_ms, payload as JSON text)`; an entry that is not a JSON object is skipped.
/// A long log is read on every core.
pub fn report(
    route: &str,
    version: &str,
    reference: Window,
    current: Window,
    events: &[(i64, &str)],
    min_samples: usize,
) -> Report {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let chunk = events.len().div_ceil(threads).max(50_000);
    let (mut before, mut now) = (Vec::new(), Vec::new());
    std::thread::scope(|scope| {
        let parts: Vec<_> = events
            .chunks(chunk)
            .map(|part| scope.spawn(move || samples(version, reference, current, part)))
            .collect();
        // In order, so that the samples keep the log's order.
        for part in parts {
            if let Ok((b, n)) = part.join() {
                before.extend(b);
                now.extend(n);
            }
        }
    });
    let enough = before.len() >= min_samples && now.len() >= min_samples;
    let mean = |values: &[f64]| {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let mut descriptors = Vec::new();
    for (i, name) in NUMBERS.iter().enumerate() {
        let values = |samples: &[Sample]| -> Vec<f64> {
            samples.iter().filter_map(|s| s.numbers[i]).collect()
        };
        let (r, c) = (values(&before), values(&now));
        let binned = (r.len() >= min_samples && c.len() >= min_samples)
            .then(|| psi_bins(&r, &c, 10))
            .flatten();
        let value = binned.as_ref().map(sluice_core::stats::Binned::psi);
        descriptors.push(Descriptor {
            distribution: binned.map(|b| Distribution {
                edges: b.edges,
                reference: b.reference,
                current: b.current,
            }),
            name,
            measure: "psi",
            value,
            verdict: match value {
                None => "insufficient",
                Some(v) if v >= PSI_ALERT => "alert",
                Some(v) if v >= PSI_WARN => "warn",
                Some(_) => "ok",
            },
            reference: mean(&r),
            current: mean(&c),
        });
    }
    for (i, name) in FLAGS.iter().enumerate() {
        let counts = |samples: &[Sample]| -> [u64; 2] {
            let yes = samples.iter().filter(|s| s.flags[i]).count() as u64;
            [yes, samples.len() as u64 - yes]
        };
        let (r, c) = (counts(&before), counts(&now));
        let share = |c: [u64; 2]| (c[0] + c[1] > 0).then(|| c[0] as f64 / (c[0] + c[1]) as f64);
        let value = enough.then(|| jensen_shannon(&r, &c)).flatten();
        descriptors.push(Descriptor {
            name,
            measure: "jensen_shannon",
            value,
            verdict: match value {
                None => "insufficient",
                Some(v) if v >= JS_ALERT => "alert",
                Some(_) => "ok",
            },
            reference: share(r),
            current: share(c),
            distribution: None,
        });
    }
    Report {
        route: route.to_owned(),
        version: version.to_owned(),
        reference,
        current,
        samples: (before.len(), now.len()),
        drifted: descriptors
            .iter()
            .filter(|d| matches!(d.verdict, "warn" | "alert"))
            .map(|d| d.name)
            .collect(),
        descriptors,
        embedding: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn longer_answers_and_refusals_drift_and_nothing_else_does() {
        let mut events = Vec::new();
        for i in 0..1200i64 {
            let later = i >= 600;
            let answer = if later && i % 2 == 0 {
                "I'm sorry, but I can't help with that.".to_owned()
            } else {
                "word ".repeat(if later { 40 } else { 20 } + (i % 7) as usize)
            };
            events.push((
                i,
                json!({
                    "version": "candidate",
                    "class": "ok",
                    "prompt_tokens": 30 + (i % 11),
                    "completion_tokens": if later { 40 + (i % 7) } else { 20 + (i % 7) },
                    "latency_ms": 50.0 + (i % 13) as f64,
                    "answer": answer,
                    "safety": [],
                    "input_flags": [],
                })
                .to_string(),
            ));
            // Another version's traffic is not counted.
            events.push((
                i,
                json!({"version": "stable", "class": "error"}).to_string(),
            ));
        }
        let report = report(
            "chat",
            "candidate",
            Window {
                from_ms: 0,
                to_ms: 600,
            },
            Window {
                from_ms: 600,
                to_ms: 1200,
            },
            &events
                .iter()
                .map(|(at, p)| (*at, p.as_str()))
                .collect::<Vec<_>>(),
            500,
        );
        assert_eq!(report.samples, (600, 600));
        assert_eq!(
            report.drifted,
            ["completion_tokens", "refusal"],
            "{report:#?}"
        );
        let ttft = report
            .descriptors
            .iter()
            .find(|d| d.name == "ttft_ms")
            .unwrap();
        assert_eq!(ttft.verdict, "insufficient");
        assert!(ttft.distribution.is_none());
        // A judged number carries the bins its PSI was computed on, each window's shares
        // summing to one; the answers' length moved up, out of the reference's bins.
        let tokens = report
            .descriptors
            .iter()
            .find(|d| d.name == "completion_tokens")
            .unwrap();
        let bins = tokens.distribution.as_ref().unwrap();
        for shares in [&bins.reference, &bins.current] {
            assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{bins:?}");
        }
        assert!(bins.current.last().copied().unwrap() > 0.9, "{bins:?}");
        let refusal = report
            .descriptors
            .iter()
            .find(|d| d.name == "refusal")
            .unwrap();
        assert!(refusal.distribution.is_none());

        let few = super::report(
            "chat",
            "candidate",
            Window {
                from_ms: 0,
                to_ms: 100,
            },
            Window {
                from_ms: 600,
                to_ms: 700,
            },
            &events
                .iter()
                .map(|(at, p)| (*at, p.as_str()))
                .collect::<Vec<_>>(),
            500,
        );
        assert!(few.drifted.is_empty());
        assert!(few.descriptors.iter().all(|d| d.verdict == "insufficient"));
    }

    #[test]
    fn answers_cut_at_the_length_limit_and_tool_calls_are_shares_that_drift() {
        let events: Vec<(i64, String)> = (0..1200i64)
            .map(|i| {
                let later = i >= 600;
                let finish = if later && i % 3 == 0 { "length" } else { "stop" };
                let tools = !later && i % 4 == 0;
                (
                    i,
                    json!({"version": "v", "class": "ok", "answer": "fine", "finish_reason": finish, "tool_calls": tools})
                        .to_string(),
                )
            })
            .collect();
        let entries: Vec<(i64, &str)> = events.iter().map(|(at, p)| (*at, p.as_str())).collect();
        let report = report(
            "chat",
            "v",
            Window {
                from_ms: 0,
                to_ms: 600,
            },
            Window {
                from_ms: 600,
                to_ms: 1200,
            },
            &entries,
            500,
        );
        assert_eq!(
            report.drifted,
            ["finish_length", "tool_call"],
            "{report:#?}"
        );
    }
}
