//! The bench profile compiler: every setting of a load test, from the command line's flags
//! over a YAML profile (whose keys are the flags' names in snake case), checked and resolved
//! into a [`Plan`] — one run, a sweep or a preset — with errors that name the flag or the
//! profile's `file:line:col`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_config::{Diagnostics, Document, EnvSource, FieldPath, parse_duration};
use sluice_core::EndpointSpec;
use tokio::sync::watch;

use crate::schedule::Arrival;
use crate::sweep::Stages;
use crate::threshold::Threshold;
use crate::{BenchConfig, BenchError, BenchResult, Endpoint, Goodput, Limit, Live, Load};

/// Which endpoint a profile names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

/// Open-loop gap distributions, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalKind {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps.
    Poisson,
    /// Gamma gaps with `burstiness` as the shape.
    Gamma,
}

/// Presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Latency and tokens/s at batch sizes 1, 4, 8 and 16.
    BatchSizes,
}

/// A duration in a profile: `60s`, `500ms`, or a number of seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    /// A number of seconds.
    Seconds(f64),
    /// `60s`, `500ms`, `2m`.
    Text(String),
}

impl DurationText {
    fn text(&self) -> String {
        match self {
            DurationText::Seconds(s) => format!("{s}s"),
            DurationText::Text(t) => t.clone(),
        }
    }
}

/// Goodput SLOs in a profile: `{ttft: 200, tpot: 50}` or `["ttft:200", …]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum GoodputSpec {
    /// Metric → milliseconds.
    Map(BTreeMap<String, f64>),
    /// `metric:milliseconds` items.
    List(Vec<String>),
}

impl GoodputSpec {
    fn items(&self) -> Vec<String> {
        match self {
            GoodputSpec::Map(map) => map.iter().map(|(k, v)| format!("{k}:{v}")).collect(),
            GoodputSpec::List(list) => list.clone(),
        }
    }
}

/// Every setting of a load test, each optional: the flags are one profile, a YAML file
/// another.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "each field is the flag of the same name")]
pub struct Profile {
    pub url: Option<String>,
    pub model: Option<String>,
    pub api_key_env: Option<String>,
    pub endpoint: Option<EndpointKind>,
    pub rate: Option<f64>,
    pub arrival: Option<ArrivalKind>,
    pub burstiness: Option<f64>,
    pub concurrency: Option<usize>,
    pub max_concurrency: Option<usize>,
    pub sweep: Option<usize>,
    pub duration: Option<DurationText>,
    pub requests: Option<usize>,
    pub warmup: Option<DurationText>,
    pub dataset: Option<String>,
    pub input_tokens: Option<usize>,
    pub output_tokens: Option<u64>,
    pub range_ratio: Option<f64>,
    pub stream: Option<bool>,
    pub ignore_eos: Option<bool>,
    pub goodput: Option<GoodputSpec>,
    #[serde(default)]
    pub thresholds: Vec<String>,
    pub max_lag: Option<DurationText>,
    pub timeout: Option<DurationText>,
    pub seed: Option<u64>,
    pub preset: Option<Preset>,
    pub output: Option<PathBuf>,
    pub csv: Option<PathBuf>,
}

/// A profile file, read and kept with its document (for located errors).
#[derive(Debug)]
pub struct ProfileFile {
    path: PathBuf,
    profile: Profile,
    document: Document,
}

impl ProfileFile {
    /// Reads a YAML profile; every problem is reported with its location.
    pub fn read(path: &Path, env: &dyn EnvSource) -> Result<Self, ProfileError> {
        let document = Document::read(path, env)?;
        let profile = document.deserialize()?;
        Ok(Self {
            path: path.to_owned(),
            profile,
            document,
        })
    }
}

/// A profile that does not make a load test.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file does not parse, or a value in it is wrong (located).
    #[error(transparent)]
    Config(#[from] Diagnostics),
    /// A setting is missing, out of range or in conflict with another.
    #[error("{0}")]
    Invalid(String),
    /// The dataset cannot be read.
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
}

fn invalid(message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid(message.into())
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One run at the configured load.
    Single,
    /// A sweep: synchronous, throughput, then rates between.
    Sweep {
        /// Stages in all.
        stages: usize,
        /// The throughput stage's concurrency.
        max_concurrency: usize,
    },
    /// The batch-sizes preset.
    BatchSizes,
}

/// A load test ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The run's settings (a sweep's or preset's base).
    pub config: BenchConfig,
    /// One run, a sweep or a preset.
    pub mode: Mode,
    /// Where to write the JSON result.
    pub output: Option<PathBuf>,
    /// Where to write the CSV result.
    pub csv: Option<PathBuf>,
}

/// Adds `/v1` to a base URL that names only a host.
pub fn normalize_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{trimmed}/v1"),
        _ => trimmed.to_owned(),
    }
}

/// Resolves the flags over the file (a flag wins; goodput items and thresholds from both
/// count) into a plan.
pub fn compile(flags: Profile, file: Option<ProfileFile>) -> Result<Plan, ProfileError> {
    let (profile, document, path) = match file {
        Some(file) => (file.profile, Some(file.document), Some(file.path)),
        None => (Profile::default(), None, None),
    };
    let origin = |flag: &str| match &path {
        Some(path) => format!(
            "--{flag} (or `{}:` in {})",
            flag.replace('-', "_"),
            path.display()
        ),
        None => format!("--{flag}"),
    };
    let duration = |flag: &str, cli: &Option<DurationText>, file: &Option<DurationText>| {
        cli.as_ref()
            .or(file.as_ref())
            .map(|text| {
                parse_duration(&text.text()).map_err(|e| invalid(format!("{}: {e}", origin(flag))))
            })
            .transpose()
    };
    let url = flags
        .url
        .clone()
        .or(profile.url.clone())
        .ok_or_else(|| invalid(format!("missing {}: the server's base URL", origin("url"))))?;
    let model = flags
        .model
        .clone()
        .or(profile.model.clone())
        .ok_or_else(|| {
            invalid(format!(
                "missing {}: the model name to send",
                origin("model")
            ))
        })?;
    let (load, mode) = load(&flags, &profile)?;
    let limit = match (
        duration("duration", &flags.duration, &profile.duration)?,
        flags.requests.or(profile.requests),
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "set either a duration or a number of requests, not both",
            ));
        }
        (Some(d), None) if d.is_zero() => {
            return Err(invalid("--duration must be longer than zero"));
        }
        (Some(d), None) => Limit::Duration(d),
        (None, Some(0)) => return Err(invalid("--requests must be at least 1")),
        (None, Some(n)) => Limit::Requests(n),
        (None, None) => Limit::Requests(200),
    };
    let dataset = crate::dataset::load(
        flags
            .dataset
            .as_deref()
            .or(profile.dataset.as_deref())
            .unwrap_or("random"),
    )?;
    let range_ratio = flags.range_ratio.or(profile.range_ratio).unwrap_or(0.0);
    if !(0.0..=1.0).contains(&range_ratio) {
        return Err(invalid(format!(
            "--range-ratio must be between 0 and 1, found {range_ratio}"
        )));
    }
    let input_tokens = flags.input_tokens.or(profile.input_tokens).unwrap_or(512);
    let output_tokens = flags.output_tokens.or(profile.output_tokens).unwrap_or(128);
    if input_tokens == 0 || output_tokens == 0 {
        return Err(invalid(
            "--input-tokens and --output-tokens must be at least 1",
        ));
    }
    let goodput_items: Vec<String> = [&flags.goodput, &profile.goodput]
        .into_iter()
        .flatten()
        .flat_map(GoodputSpec::items)
        .collect();
    let goodput = Goodput::parse(&goodput_items).map_err(|e| invalid(e.to_string()))?;
    let thresholds = thresholds(&flags, &profile, document.as_ref())?;
    if !thresholds.is_empty() && mode != Mode::Single {
        return Err(invalid(
            "thresholds gate a single run; a sweep or preset has several stages (run the stage you want to gate with --rate or --concurrency)",
        ));
    }
    let config = BenchConfig {
        target: EndpointSpec::new(normalize_url(&url), model)
            .with_api_key_env(flags.api_key_env.clone().or(profile.api_key_env.clone())),
        endpoint: match flags.endpoint.or(profile.endpoint) {
            Some(EndpointKind::Completions) => Endpoint::Completions,
            Some(EndpointKind::Chat) | None => Endpoint::Chat,
        },
        dataset,
        load,
        limit,
        warmup: duration("warmup", &flags.warmup, &profile.warmup)?.unwrap_or_default(),
        input_tokens,
        output_tokens,
        range_ratio,
        stream: flags.stream.or(profile.stream).unwrap_or(true),
        ignore_eos: flags.ignore_eos.or(profile.ignore_eos).unwrap_or(false),
        goodput,
        thresholds,
        max_lag: duration("max-lag", &flags.max_lag, &profile.max_lag)?
            .unwrap_or(Duration::from_millis(10)),
        timeout: duration("timeout", &flags.timeout, &profile.timeout)?
            .unwrap_or(Duration::from_secs(600)),
        seed: flags.seed.or(profile.seed).unwrap_or(0),
    };
    Ok(Plan {
        config,
        mode,
        output: flags.output.or(profile.output),
        csv: flags.csv.or(profile.csv),
    })
}

/// The load and the mode: exactly one of rate, concurrency, sweep and preset.
fn load(flags: &Profile, profile: &Profile) -> Result<(Load, Mode), ProfileError> {
    let rate = flags.rate.or(profile.rate);
    let concurrency = flags.concurrency.or(profile.concurrency);
    let sweep = flags.sweep.or(profile.sweep);
    let preset = flags.preset.or(profile.preset);
    let chosen: Vec<String> = [
        ("rate", rate.is_some()),
        ("concurrency", concurrency.is_some()),
        ("sweep", sweep.is_some()),
        ("preset", preset.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| format!("`{name}`"))
    .collect();
    if chosen.len() > 1 {
        return Err(invalid(format!(
            "choose one load: {} are all set (flags and profile together)",
            chosen.join(", ")
        )));
    }
    let burstiness = flags.burstiness.or(profile.burstiness);
    if let Some(b) = burstiness
        && !(b.is_finite() && b > 0.0)
    {
        return Err(invalid(format!(
            "--burstiness must be a positive number, found {b}"
        )));
    }
    let arrival = match (flags.arrival.or(profile.arrival), burstiness) {
        (None | Some(ArrivalKind::Gamma), Some(b)) => Some(Arrival::Gamma(b)),
        (Some(ArrivalKind::Gamma), None) => {
            return Err(invalid(
                "--arrival gamma needs --burstiness (the gamma shape; 1 is Poisson)",
            ));
        }
        (Some(other), Some(_)) => {
            return Err(invalid(format!(
                "--burstiness applies to --arrival gamma, not {}",
                format!("{other:?}").to_lowercase()
            )));
        }
        (Some(ArrivalKind::Constant), None) => Some(Arrival::Constant),
        (Some(ArrivalKind::Poisson), None) => Some(Arrival::Poisson),
        (None, None) => None,
    };
    let max_concurrency = flags.max_concurrency.or(profile.max_concurrency);
    if max_concurrency == Some(0) || concurrency == Some(0) {
        return Err(invalid("concurrency must be at least 1"));
    }
    if let Some(rate) = rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid(format!(
                "--rate must be a positive number of requests per second, found {rate}"
            )));
        }
        let arrival = arrival.unwrap_or(Arrival::Poisson);
        return Ok((
            Load::Rate {
                rate,
                arrival,
                max_concurrency,
            },
            Mode::Single,
        ));
    }
    if let Some(n) = concurrency {
        return Ok((Load::Concurrency(n), Mode::Single));
    }
    if let Some(stages) = sweep {
        if stages < 3 {
            return Err(invalid(format!(
                "--sweep needs at least 3 stages (synchronous, throughput and one rate), found {stages}"
            )));
        }
        let load = match arrival {
            Some(arrival) => Load::Rate {
                rate: 1.0,
                arrival,
                max_concurrency: None,
            },
            None => Load::Concurrency(1),
        };
        let max_concurrency = max_concurrency.unwrap_or(256);
        return Ok((
            load,
            Mode::Sweep {
                stages,
                max_concurrency,
            },
        ));
    }
    if preset.is_some() {
        return Ok((Load::Concurrency(1), Mode::BatchSizes));
    }
    Err(invalid(
        "choose a load: --rate R (open loop), --concurrency C (closed loop), --sweep or --preset batch-sizes",
    ))
}

/// The file's thresholds (each located in it) and then the flags'.
fn thresholds(
    flags: &Profile,
    profile: &Profile,
    document: Option<&Document>,
) -> Result<Vec<Threshold>, ProfileError> {
    let mut thresholds = Vec::new();
    for (i, text) in profile.thresholds.iter().enumerate() {
        match (Threshold::parse(text), document) {
            (Ok(t), _) => thresholds.push(t),
            (Err(error), Some(document)) => {
                let path = FieldPath::root().key("thresholds").index(i);
                return Err(document
                    .diagnostics(vec![document.error_at(&path, error.to_string())])
                    .into());
            }
            (Err(error), None) => return Err(invalid(error.to_string())),
        }
    }
    for text in &flags.thresholds {
        thresholds.push(Threshold::parse(text).map_err(|e| invalid(format!("--threshold: {e}")))?);
    }
    Ok(thresholds)
}

impl Plan {
    /// The settings recorded with a stored run.
    pub fn describe(&self) -> Value {
        let c = &self.config;
        json!({
            "base_url": c.target.base_url,
            "model": c.target.model,
            "endpoint": format!("{:?}", c.endpoint).to_lowercase(),
            "load": format!("{:?}", c.load),
            "limit": format!("{:?}", c.limit),
            "mode": match self.mode {
                Mode::Single => "single".to_owned(),
                Mode::Sweep { stages, .. } => format!("sweep {stages}"),
                Mode::BatchSizes => "preset batch-sizes".to_owned(),
            },
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "stream": c.stream,
            "thresholds": c.thresholds.iter().map(|t| t.source.clone()).collect::<Vec<_>>(),
            "seed": c.seed,
        })
    }

    /// Runs the plan: one run, each stage of a sweep, or the preset's batch sizes.
    /// `on_stage` hears each finished stage of a sweep or preset.
    pub async fn execute(
        &self,
        live: Option<watch::Sender<Live>>,
        on_stage: impl FnMut(&BenchResult),
    ) -> Result<Stages, BenchError> {
        match self.mode {
            Mode::Single => crate::run_with(self.config.clone(), live)
                .await
                .map(|r| Stages {
                    stages: vec![r],
                    knee: None,
                }),
            Mode::Sweep {
                stages,
                max_concurrency,
            } => crate::sweep::sweep(&self.config, stages, max_concurrency, live, on_stage).await,
            Mode::BatchSizes => crate::sweep::batch_sizes(&self.config, live, on_stage).await,
        }
    }
}

/// What a finished plan's stages came to.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The JSON result: one run's, or every stage's with the knee.
    pub document: Value,
    /// A stage's client fell behind its schedule: its figures are not a server result.
    pub invalid: bool,
    /// A threshold failed.
    pub failed: bool,
}

impl Stages {
    /// The result document and whether it is valid and within its thresholds.
    pub fn verdict(&self, mode: Mode) -> Verdict {
        let document = if mode == Mode::Single {
            self.stages[0].json()
        } else {
            json!({
                "stages": self.stages.iter().map(BenchResult::json).collect::<Vec<_>>(),
                "knee": self.knee.map(|i| i + 1),
            })
        };
        Verdict {
            document,
            invalid: self
                .stages
                .iter()
                .any(|r| crate::invalid_reason(r).is_some()),
            failed: self
                .stages
                .iter()
                .any(|r| r.check().iter().any(|(_, _, pass)| !pass)),
        }
    }

    /// The stages as CSV, one row each under the header.
    pub fn csv(&self) -> String {
        let mut text = BenchResult::csv_header();
        for r in &self.stages {
            text.push('\n');
            text.push_str(&r.csv_row());
        }
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use sluice_config::MapEnv;

    use super::*;

    fn flags() -> Profile {
        Profile {
            url: Some("http://h:8000".into()),
            model: Some("m".into()),
            ..Profile::default()
        }
    }

    fn file(text: &str) -> ProfileFile {
        let document = Document::parse("bench.yaml", text, &MapEnv::default())
            .unwrap_or_else(|e| panic!("{e}"));
        ProfileFile {
            path: "bench.yaml".into(),
            profile: document.deserialize().unwrap_or_else(|e| panic!("{e}")),
            document,
        }
    }

    fn error(flags: Profile, file: Option<ProfileFile>) -> String {
        compile(flags, file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn bare_hosts_get_v1() {
        assert_eq!(normalize_url("http://h:8000"), "http://h:8000/v1");
        assert_eq!(normalize_url("http://h:8000/"), "http://h:8000/v1");
        assert_eq!(normalize_url("http://h:8000/v1/"), "http://h:8000/v1");
        assert_eq!(normalize_url("http://h/api/v2"), "http://h/api/v2");
    }

    #[test]
    fn flags_win_over_the_file_and_lists_from_both_count() {
        let plan = compile(
            Profile {
                rate: Some(5.0),
                goodput: Some(GoodputSpec::List(vec!["ttft:100".into()])),
                thresholds: vec!["ttft.p99 < 500ms".into()],
                ..flags()
            },
            Some(file(
                "rate: 50\nrequests: 30\nstream: false\ngoodput: {tpot: 20}\nthresholds: ['error_rate < 0.01']\nseed: 9\n",
            )),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(plan.config.load, Load::Rate { rate, .. } if rate == 5.0));
        assert_eq!(plan.config.limit, Limit::Requests(30));
        assert!(!plan.config.stream);
        assert_eq!(plan.config.seed, 9);
        assert_eq!(plan.config.thresholds.len(), 2);
        assert_eq!(plan.config.target.base_url, "http://h:8000/v1");
        assert_eq!(plan.mode, Mode::Single);
    }

    #[test]
    fn every_conflict_and_range_is_named() {
        let cases: [(Profile, &str); 7] = [
            (
                Profile {
                    rate: Some(1.0),
                    concurrency: Some(2),
                    ..flags()
                },
                "choose one load: `rate`, `concurrency`",
            ),
            (flags(), "choose a load"),
            (
                Profile {
                    rate: Some(-1.0),
                    ..flags()
                },
                "--rate must be a positive number",
            ),
            (
                Profile {
                    sweep: Some(2),
                    ..flags()
                },
                "--sweep needs at least 3 stages",
            ),
            (
                Profile {
                    concurrency: Some(1),
                    arrival: Some(ArrivalKind::Gamma),
                    ..flags()
                },
                "--arrival gamma needs --burstiness",
            ),
            (
                Profile {
                    concurrency: Some(1),
                    requests: Some(0),
                    ..flags()
                },
                "--requests must be at least 1",
            ),
            (
                Profile {
                    sweep: Some(4),
                    thresholds: vec!["ttft.p99 < 1ms".into()],
                    ..flags()
                },
                "thresholds gate a single run",
            ),
        ];
        for (profile, expected) in cases {
            let message = error(profile, None);
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
        assert!(
            error(Profile::default(), Some(file("rate: 1\n")))
                .contains("missing --url (or `url:` in bench.yaml)")
        );
    }

    #[test]
    fn a_bad_threshold_in_the_file_is_located() {
        let message = error(
            Profile {
                concurrency: Some(1),
                ..flags()
            },
            Some(file("thresholds:\n  - 'ttft_p99 <'\n")),
        );
        assert!(message.contains("bench.yaml:2:"), "{message}");
    }
}
