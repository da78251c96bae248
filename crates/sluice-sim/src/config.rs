//! The simulator's YAML config, compiled into validated [`Profile`]s.
//!
//! ```yaml
//! models:
//!   stable:
//!     ttft_ms: 50                    # or {dist: lognormal, median: 50, p99: 200}
//!     tokens_per_second: 80
//!     jitter: 0.1                    # ±10 % on every inter-token delay
//!     script:
//!       - {match: "capital of France", answer: "Paris."}
//!       - {regex: "(?i)json", answer: '{"name": "Ada", "age": 36}'}
//!       - {match: "secret", min_turns: 3, answer: "Fine, here it is."}  # from the 3rd user turn
//!     default: echo                  # echo | echo_all | lorem | any fixed answer
//!     faults: {error_rate: 0.0, error_status: 500}
//!     # faults: {stall_every_ms: 2000, stall_ms: 300}  # a 300 ms pause every 2 s
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sluice_config::{Diagnostic, Diagnostics, Document, EnvSource, FieldPath};

/// The whole simulator config.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Profiles by model name.
    pub models: BTreeMap<String, Profile>,
    /// Answer model names that are not configured with the default profile.
    pub accept_any_model: bool,
    /// Embedding dimensions when the request names none.
    pub embedding_dimensions: usize,
}

impl SimConfig {
    /// The config used without a file: any model name, echo answers, no delays.
    pub fn echo() -> Self {
        Self {
            models: BTreeMap::new(),
            accept_any_model: true,
            embedding_dimensions: DEFAULT_EMBEDDING_DIMENSIONS,
        }
    }

    /// Loads and validates a config file, reporting every problem at once.
    pub fn load(path: &Path, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        let document = Document::read(path, env)?;
        Self::from_document(&document)
    }

    /// Validates an already parsed document.
    pub fn from_document(document: &Document) -> Result<Self, Diagnostics> {
        let raw: RawConfig = document.deserialize()?;
        let mut errors = Vec::new();
        let mut models = BTreeMap::new();
        for (name, raw_profile) in raw.models {
            let path = FieldPath::root().key("models").key(name.clone());
            match raw_profile.compile(document, &path) {
                Ok(profile) => {
                    models.insert(name, profile);
                }
                Err(mut profile_errors) => errors.append(&mut profile_errors),
            }
        }
        if raw.embedding_dimensions == Some(0) {
            errors.push(document.error_at(
                &FieldPath::root().key("embedding_dimensions"),
                "expected at least 1 dimension",
            ));
        }
        if !errors.is_empty() {
            return Err(document.diagnostics(errors));
        }
        Ok(Self {
            accept_any_model: raw.accept_any_model.unwrap_or(models.is_empty()),
            models,
            embedding_dimensions: raw
                .embedding_dimensions
                .unwrap_or(DEFAULT_EMBEDDING_DIMENSIONS),
        })
    }
}

const DEFAULT_EMBEDDING_DIMENSIONS: usize = 256;

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    models: BTreeMap<String, RawProfile>,
    accept_any_model: Option<bool>,
    embedding_dimensions: Option<usize>,
}

/// One model's profile as written in YAML (or JSON, for the admin endpoint).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawProfile {
    /// Time to first token.
    #[serde(default)]
    pub ttft_ms: Option<Latency>,
    /// Output rate; absent means all tokens at once.
    #[serde(default)]
    pub tokens_per_second: Option<f64>,
    /// Relative jitter on each inter-token delay, 0 to 1.
    #[serde(default)]
    pub jitter: Option<f64>,
    /// Scripted answers, first match wins.
    #[serde(default)]
    pub script: Vec<RawRule>,
    /// `echo`, `echo_all`, `lorem`, or a fixed answer.
    #[serde(default)]
    pub default: Option<String>,
    /// Tokens in a `lorem` answer.
    #[serde(default)]
    pub lorem_tokens: Option<usize>,
    /// Injected faults.
    #[serde(default)]
    pub faults: Option<RawFaults>,
}

/// A scripted answer rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawRule {
    /// Case-insensitive substring of the prompt.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The whole prompt, exactly (surrounding whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// A regular expression searched in the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The answer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Several answers drawn by weight on every request: sampling noise, for tests of
    /// non-deterministic models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<WeightedAnswer>>,
    /// A tool call to answer with instead of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<RawToolCall>,
    /// The rule applies only from this user turn on (1 is the first): a model that gives in
    /// as a conversation goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_turns: Option<usize>,
}

/// One of several possible answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct WeightedAnswer {
    /// The answer text.
    pub text: String,
    /// Relative weight (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// A scripted tool call.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawToolCall {
    /// Function name.
    pub name: String,
    /// Arguments object.
    #[serde(default)]
    pub arguments: serde_json::Value,
}

/// Injected faults; each rate is a probability per request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RawFaults {
    /// Answer with an error status.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// The status (or statuses, picked uniformly) for injected errors; default 500.
    #[serde(default)]
    pub error_status: Option<StatusList>,
    /// `retry-after` seconds sent with injected 429 and 503 answers; default 1.
    #[serde(default)]
    pub retry_after_s: Option<f64>,
    /// Accept the request and never answer (until `hang_ms`, then close).
    #[serde(default)]
    pub hang_rate: Option<f64>,
    /// How long a hang lasts; default one hour.
    #[serde(default)]
    pub hang_ms: Option<u64>,
    /// Cut the stream (or body) off half-way.
    #[serde(default)]
    pub truncate_rate: Option<f64>,
    /// Send a chunk (or body) that is not valid JSON.
    #[serde(default)]
    pub malformed_rate: Option<f64>,
    /// Send an in-band `{"error": …}` event half-way through a stream.
    #[serde(default)]
    pub stream_error_rate: Option<f64>,
    /// Stall the whole model periodically: the last `stall_ms` of every `stall_every_ms`
    /// (counted from the server's start) nothing is sent; what falls due then goes out when the
    /// stall ends, as after a long garbage-collection or scheduling pause.
    #[serde(default)]
    pub stall_every_ms: Option<u64>,
    /// How long each stall lasts.
    #[serde(default)]
    pub stall_ms: Option<u64>,
}

/// One status or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StatusList {
    /// One status.
    One(u16),
    /// Several, picked uniformly.
    Many(Vec<u16>),
}

/// A latency: fixed milliseconds, or a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "dist", rename_all = "snake_case")]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// Milliseconds.
        ms: f64,
    },
    /// Normal, truncated at zero.
    Normal {
        /// Mean in ms.
        mean: f64,
        /// Standard deviation in ms.
        stddev: f64,
    },
    /// Log-normal with the given median and 99th percentile.
    Lognormal {
        /// Median in ms.
        median: f64,
        /// 99th percentile in ms.
        p99: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound in ms.
        min: f64,
        /// Upper bound in ms.
        max: f64,
    },
}

const LATENCY_FIELDS: &[&str] = &[
    "dist", "ms", "mean", "stddev", "median", "p99", "min", "max",
];
const DISTRIBUTIONS: &[&str] = &["fixed", "normal", "lognormal", "uniform"];

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LatencyVisitor)
    }
}

struct LatencyVisitor;

impl<'de> Visitor<'de> for LatencyVisitor {
    type Value = Latency;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("milliseconds or {dist: fixed|normal|lognormal|uniform, …}")
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Latency, E> {
        Ok(Latency::Fixed { ms: ms as f64 })
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Latency, E> {
        self.visit_f64(ms as f64)
    }

    fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Latency, E> {
        if ms.is_finite() && ms >= 0.0 {
            Ok(Latency::Fixed { ms })
        } else {
            Err(E::custom(format!(
                "expected a non-negative number of milliseconds, found {ms}"
            )))
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Latency, A::Error> {
        let mut dist: Option<String> = None;
        let mut values: BTreeMap<&'static str, f64> = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            match LATENCY_FIELDS.iter().find(|field| **field == key) {
                Some(&"dist") => dist = Some(map.next_value()?),
                Some(field) => {
                    values.insert(field, map.next_value()?);
                }
                None => return Err(de::Error::unknown_field(&key, LATENCY_FIELDS)),
            }
        }
        let get = |name: &'static str| -> Result<f64, A::Error> {
            let value = values
                .get(name)
                .copied()
                .ok_or_else(|| de::Error::missing_field(name))?;
            if value.is_finite() && value >= 0.0 {
                Ok(value)
            } else {
                Err(de::Error::custom(format!(
                    "`{name}` must be a non-negative number of milliseconds"
                )))
            }
        };
        let dist = dist.unwrap_or_else(|| {
            if values.contains_key("ms") {
                "fixed".into()
            } else {
                String::new()
            }
        });
        let latency = match dist.as_str() {
            "fixed" => Latency::Fixed { ms: get("ms")? },
            "normal" => Latency::Normal {
                mean: get("mean")?,
                stddev: get("stddev")?,
            },
            "lognormal" => {
                let (median, p99) = (get("median")?, get("p99")?);
                if median <= 0.0 || p99 < median {
                    return Err(de::Error::custom("lognormal needs 0 < median <= p99"));
                }
                Latency::Lognormal { median, p99 }
            }
            "uniform" => {
                let (min, max) = (get("min")?, get("max")?);
                if max < min {
                    return Err(de::Error::custom("uniform needs min <= max"));
                }
                Latency::Uniform { min, max }
            }
            "" => return Err(de::Error::missing_field("dist")),
            other => return Err(de::Error::unknown_variant(other, DISTRIBUTIONS)),
        };
        Ok(latency)
    }
}

impl Latency {
    /// Draws one latency in milliseconds.
    pub fn sample_ms(&self, rng: &mut fastrand::Rng) -> f64 {
        match *self {
            Latency::Fixed { ms } => ms,
            Latency::Normal { mean, stddev } => (mean + stddev * standard_normal(rng)).max(0.0),
            Latency::Lognormal { median, p99 } => {
                // p99 of a log-normal is median · exp(2.3263 σ).
                let sigma = (p99 / median).ln() / 2.326_347_874;
                median * (sigma * standard_normal(rng)).exp()
            }
            Latency::Uniform { min, max } => min + (max - min) * rng.f64(),
        }
    }
}

/// Box–Muller.
fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A compiled, validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// TTFT distribution.
    pub ttft: Latency,
    /// Output rate, `None` for instant.
    pub tokens_per_second: Option<f64>,
    /// Relative jitter on inter-token delays.
    pub jitter: f64,
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// What to answer when no rule matches.
    pub default: DefaultAnswer,
    /// Faults.
    pub faults: Faults,
    /// The raw form, returned by the admin endpoint.
    pub raw: RawProfile,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// How the prompt is matched.
    pub matcher: Matcher,
    /// The fewest user turns the conversation must have.
    pub min_turns: usize,
    /// What is answered.
    pub answer: Answer,
}

/// How a rule matches the prompt.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Lower-cased substring.
    Contains(String),
    /// Whole prompt, trimmed.
    Exact(String),
    /// Regex search.
    Regex(Regex),
}

/// What a rule answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Text.
    Text(String),
    /// One of several texts, drawn by weight per request.
    Choice(Vec<(String, f64)>),
    /// A tool call.
    ToolCall {
        /// Function name.
        name: String,
        /// Arguments JSON text.
        arguments: String,
    },
}

/// The answer when no rule matches.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultAnswer {
    /// The last user message (or prompt).
    Echo,
    /// Every message, the system prompt included, one per line: a model that repeats all it
    /// was told (for leak tests).
    EchoAll,
    /// Deterministic filler text of this many tokens.
    Lorem(usize),
    /// A fixed text.
    Fixed(String),
}

/// Compiled fault rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Probability of an error status.
    pub error_rate: f64,
    /// Statuses to pick from.
    pub error_statuses: Vec<u16>,
    /// `retry-after` seconds on 429/503.
    pub retry_after_s: f64,
    /// Probability of a hang.
    pub hang_rate: f64,
    /// Hang length in ms.
    pub hang_ms: u64,
    /// Probability of a truncated response.
    pub truncate_rate: f64,
    /// Probability of malformed JSON.
    pub malformed_rate: f64,
    /// Probability of an in-band stream error.
    pub stream_error_rate: f64,
    /// Periodic stalls.
    pub stall: Option<Stall>,
}

/// A periodic stall: the last `length` of every `every`, counted from the server's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// The period.
    pub every: Duration,
    /// The stalled part of each period.
    pub length: Duration,
}

impl Stall {
    /// When something due at `due` actually goes out, for a server started at `epoch`.
    pub fn release(&self, epoch: Instant, due: Instant) -> Instant {
        let every = self.every.as_nanos().max(1);
        let phase = due.saturating_duration_since(epoch).as_nanos() % every;
        let healthy = every.saturating_sub(self.length.as_nanos());
        if phase >= healthy {
            due + Duration::from_nanos(u64::try_from(every - phase).unwrap_or(u64::MAX))
        } else {
            due
        }
    }
}

impl Profile {
    /// The profile used when nothing is configured: echo, no delay, no faults.
    pub fn echo() -> Self {
        Profile {
            ttft: Latency::Fixed { ms: 0.0 },
            tokens_per_second: None,
            jitter: 0.0,
            rules: Vec::new(),
            default: DefaultAnswer::Echo,
            faults: Faults {
                error_statuses: vec![500],
                retry_after_s: 1.0,
                hang_ms: 3_600_000,
                ..Faults::default()
            },
            raw: RawProfile::default(),
        }
    }

    /// Compiles a profile sent to the admin endpoint as JSON or YAML text.
    pub fn from_text(name: &str, text: &str) -> Result<Self, Diagnostics> {
        let document = Document::parse(name, text, &sluice_config::MapEnv::default())?;
        let raw: RawProfile = document.deserialize()?;
        raw.compile(&document, &FieldPath::root())
            .map_err(|errors| document.diagnostics(errors))
    }
}

impl RawProfile {
    /// Validates the profile; `path` locates it in `document` for error messages.
    pub fn compile(
        self,
        document: &Document,
        path: &FieldPath,
    ) -> Result<Profile, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let rate = |errors: &mut Vec<Diagnostic>, value: Option<f64>, field: &str| -> f64 {
            let value = value.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&value) {
                errors.push(document.error_at(
                    &path.key("faults").key(field),
                    format!("expected a probability between 0 and 1, found {value}"),
                ));
            }
            value.clamp(0.0, 1.0)
        };
        if let Some(tps) = self.tokens_per_second
            && !(tps.is_finite() && tps > 0.0)
        {
            errors.push(document.error_at(
                &path.key("tokens_per_second"),
                format!("expected a positive number, found {tps}"),
            ));
        }
        let jitter = self.jitter.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&jitter) {
            errors.push(document.error_at(
                &path.key("jitter"),
                format!("expected a fraction between 0 and 1, found {jitter}"),
            ));
        }
        let mut rules = Vec::new();
        for (index, rule) in self.script.iter().enumerate() {
            let rule_path = path.key("script").index(index);
            let matchers = [
                rule.contains.is_some(),
                rule.exact.is_some(),
                rule.regex.is_some(),
            ];
            let matcher = match (&rule.contains, &rule.exact, &rule.regex) {
                _ if matchers.iter().filter(|m| **m).count() != 1 => {
                    errors.push(document.error_at(
                        &rule_path,
                        "expected exactly one of `match`, `exact` or `regex`",
                    ));
                    continue;
                }
                (Some(text), _, _) => Matcher::Contains(text.to_lowercase()),
                (_, Some(text), _) => Matcher::Exact(text.trim().to_owned()),
                (_, _, Some(pattern)) => match Regex::new(pattern) {
                    Ok(regex) => Matcher::Regex(regex),
                    Err(error) => {
                        errors.push(document.error_at(
                            &rule_path.key("regex"),
                            format!("invalid regular expression: {error}"),
                        ));
                        continue;
                    }
                },
                _ => continue,
            };
            let answer = match (&rule.answer, &rule.answers, &rule.tool_call) {
                (Some(text), None, None) => Answer::Text(text.clone()),
                (None, Some(choices), None) => {
                    let weights: Vec<f64> =
                        choices.iter().map(|c| c.weight.unwrap_or(1.0)).collect();
                    if choices.is_empty()
                        || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
                        || weights.iter().sum::<f64>() <= 0.0
                    {
                        errors.push(document.error_at(&rule_path.key("answers"), "expected a non-empty list of {text, weight} with non-negative weights and a positive total"));
                        continue;
                    }
                    Answer::Choice(
                        choices
                            .iter()
                            .map(|c| c.text.clone())
                            .zip(weights)
                            .collect(),
                    )
                }
                (None, None, Some(call)) => Answer::ToolCall {
                    name: call.name.clone(),
                    arguments: if call.arguments.is_null() {
                        "{}".to_owned()
                    } else {
                        call.arguments.to_string()
                    },
                },
                _ => {
                    errors.push(document.error_at(
                        &rule_path,
                        "expected exactly one of `answer` or `tool_call`",
                    ));
                    continue;
                }
            };
            rules.push(Rule {
                matcher,
                answer,
                min_turns: rule.min_turns.unwrap_or(0),
            });
        }
        let default = match self.default.as_deref() {
            None | Some("echo") => DefaultAnswer::Echo,
            Some("echo_all") => DefaultAnswer::EchoAll,
            Some("lorem") => DefaultAnswer::Lorem(self.lorem_tokens.unwrap_or(64)),
            Some(text) => DefaultAnswer::Fixed(text.to_owned()),
        };
        let raw_faults = self.faults.clone().unwrap_or_default();
        let error_statuses = match &raw_faults.error_status {
            None => vec![500],
            Some(StatusList::One(status)) => vec![*status],
            Some(StatusList::Many(statuses)) => statuses.clone(),
        };
        if error_statuses.is_empty() || error_statuses.iter().any(|s| !(400..=599).contains(s)) {
            errors.push(document.error_at(
                &path.key("faults").key("error_status"),
                "expected HTTP error statuses between 400 and 599",
            ));
        }
        let faults = Faults {
            error_rate: rate(&mut errors, raw_faults.error_rate, "error_rate"),
            error_statuses,
            retry_after_s: raw_faults.retry_after_s.unwrap_or(1.0).max(0.0),
            hang_rate: rate(&mut errors, raw_faults.hang_rate, "hang_rate"),
            hang_ms: raw_faults.hang_ms.unwrap_or(3_600_000),
            truncate_rate: rate(&mut errors, raw_faults.truncate_rate, "truncate_rate"),
            malformed_rate: rate(&mut errors, raw_faults.malformed_rate, "malformed_rate"),
            stream_error_rate: rate(
                &mut errors,
                raw_faults.stream_error_rate,
                "stream_error_rate",
            ),
            stall: match (raw_faults.stall_every_ms, raw_faults.stall_ms) {
                (None, None) | (Some(_), Some(0)) => None,
                (Some(every), Some(length)) if length < every => Some(Stall {
                    every: Duration::from_millis(every),
                    length: Duration::from_millis(length),
                }),
                (Some(_), Some(_)) => {
                    errors.push(document.error_at(
                        &path.key("faults").key("stall_ms"),
                        "expected `stall_ms` shorter than `stall_every_ms`",
                    ));
                    None
                }
                (every, _) => {
                    let missing = if every.is_some() {
                        "stall_ms"
                    } else {
                        "stall_every_ms"
                    };
                    errors.push(document.error_at(
                        &path.key("faults"),
                        format!(
                            "expected both `stall_every_ms` and `stall_ms`; `{missing}` is missing"
                        ),
                    ));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Profile {
            ttft: self.ttft_ms.unwrap_or(Latency::Fixed { ms: 0.0 }),
            tokens_per_second: self.tokens_per_second,
            jitter,
            rules,
            default,
            faults,
            raw: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use sluice_config::MapEnv;

    use super::*;

    fn compile(text: &str) -> Result<SimConfig, Diagnostics> {
        SimConfig::from_document(&Document::parse("sim.yaml", text, &MapEnv::default()).unwrap())
    }

    #[test]
    fn the_documented_shape_compiles() {
        let config = compile(
            "models:\n  stable:\n    ttft_ms: 50\n    tokens_per_second: 80\n    script:\n      - {match: \"capital of France\", answer: \"Paris.\"}\n      - {regex: \"(?i)json\", answer: '{\"name\": \"Ada\", \"age\": 36}'}\n    default: echo\n    faults: {error_rate: 0.0, error_status: 500}\n  candidate:\n    ttft_ms: {dist: lognormal, median: 50, p99: 200}\n",
        )
        .unwrap();
        let stable = &config.models["stable"];
        assert_eq!(stable.ttft, Latency::Fixed { ms: 50.0 });
        assert_eq!(stable.rules.len(), 2);
        assert_eq!(
            config.models["candidate"].ttft,
            Latency::Lognormal {
                median: 50.0,
                p99: 200.0
            }
        );
        assert!(!config.accept_any_model);
    }

    #[test]
    fn every_problem_is_reported_with_its_location() {
        let error = compile(
            "models:\n  stable:\n    ttft_ms: {dist: lognormal, median: 50}\n    tokens_per_secnd: 80\n    script:\n      - {answer: x}\n      - {regex: '(', answer: x}\n    faults: {error_rate: 2}\n",
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("sim.yaml:3:14: models.stable.ttft_ms.p99: missing required field `p99`"),
            "{text}"
        );
        assert!(text.contains("sim.yaml:4:5: models.stable.tokens_per_secnd: unknown field `tokens_per_secnd`, did you mean `tokens_per_second`?"), "{text}");
        assert_eq!(error.errors.len(), 2, "{text}");
        let error = compile("models:\n  s:\n    script:\n      - {answer: x}\n      - {regex: '(', answer: x}\n    faults: {error_rate: 2}\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("sim.yaml:4:9: models.s.script[0]: expected exactly one of `match`, `exact` or `regex`"), "{text}");
        assert!(
            text.contains("models.s.script[1].regex: invalid regular expression"),
            "{text}"
        );
        assert!(
            text.contains(
                "models.s.faults.error_rate: expected a probability between 0 and 1, found 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn latency_distributions_sample_plausibly() {
        let mut rng = fastrand::Rng::with_seed(7);
        let lognormal = Latency::Lognormal {
            median: 50.0,
            p99: 200.0,
        };
        let mut samples: Vec<f64> = (0..20_000).map(|_| lognormal.sample_ms(&mut rng)).collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[10_000];
        let p99 = samples[19_800];
        assert!((45.0..55.0).contains(&median), "{median}");
        assert!((170.0..235.0).contains(&p99), "{p99}");
        assert_eq!(Latency::Fixed { ms: 5.0 }.sample_ms(&mut rng), 5.0);
    }

    #[test]
    fn stalls_hold_what_falls_due_until_they_end() {
        let stall = Stall {
            every: Duration::from_millis(1000),
            length: Duration::from_millis(300),
        };
        let epoch = Instant::now();
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        assert_eq!(stall.release(epoch, at(100)), at(100));
        assert_eq!(stall.release(epoch, at(699)), at(699));
        assert_eq!(stall.release(epoch, at(700)), at(1000));
        assert_eq!(stall.release(epoch, at(950)), at(1000));
        assert_eq!(stall.release(epoch, at(1200)), at(1200));
        assert_eq!(stall.release(epoch, at(1800)), at(2000));
        let config =
            compile("models:\n  s:\n    faults: {stall_every_ms: 1000, stall_ms: 300}\n").unwrap();
        assert_eq!(config.models["s"].faults.stall, Some(stall));
        let error = compile("models:\n  s:\n    faults: {stall_every_ms: 100, stall_ms: 300}\n")
            .unwrap_err();
        assert!(
            error.to_string().contains(
                "models.s.faults.stall_ms: expected `stall_ms` shorter than `stall_every_ms`"
            ),
            "{error}"
        );
        let error = compile("models:\n  s:\n    faults: {stall_ms: 300}\n").unwrap_err();
        assert!(
            error.to_string().contains("`stall_every_ms` is missing"),
            "{error}"
        );
    }
}
