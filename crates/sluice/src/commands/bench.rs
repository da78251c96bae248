//! `sluice bench`: settings from flags over a YAML profile, a pre-flight request, the load (one
//! run, a sweep or a preset) with live figures on a terminal, reports, the store, and the exit
//! code: 0 thresholds hold, 99 one failed, 3 the client fell behind its schedule, 2 an error.
//! `compare` sets two results side by side.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_bench::schedule::Arrival;
use sluice_bench::sweep::Stages;
use sluice_bench::threshold::Threshold;
use sluice_bench::{BenchConfig, BenchResult, Endpoint, Goodput, Limit, Live, Load};
use sluice_config::{Document, FieldPath, ProcessEnv, parse_duration};
use sluice_store::{NewRun, RunStatus};
use tokio::sync::watch;

use super::{Outcome, link_run, model_version, open_store};
use crate::cli::{
    BenchArgs, BenchArrival, BenchCommand, BenchCompareArgs, BenchEndpoint, BenchPreset,
};

/// The profile file: the flags' settings in snake case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    endpoint: Option<BenchEndpoint>,
    rate: Option<f64>,
    arrival: Option<BenchArrival>,
    burstiness: Option<f64>,
    concurrency: Option<usize>,
    max_concurrency: Option<usize>,
    sweep: Option<usize>,
    duration: Option<DurationText>,
    requests: Option<usize>,
    warmup: Option<DurationText>,
    dataset: Option<String>,
    input_tokens: Option<usize>,
    output_tokens: Option<u64>,
    range_ratio: Option<f64>,
    stream: Option<bool>,
    ignore_eos: Option<bool>,
    goodput: Option<GoodputSpec>,
    #[serde(default)]
    thresholds: Vec<String>,
    max_lag: Option<DurationText>,
    timeout: Option<DurationText>,
    seed: Option<u64>,
    preset: Option<BenchPreset>,
    output: Option<PathBuf>,
    csv: Option<PathBuf>,
}

/// A duration in a profile: `60s`, `500ms`, or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(f64),
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
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum GoodputSpec {
    Map(BTreeMap<String, f64>),
    List(Vec<String>),
}

/// What to run.
enum Mode {
    Single,
    Sweep {
        stages: usize,
        max_concurrency: usize,
    },
    BatchSizes,
}

/// Everything resolved from flags and profile.
struct Settings {
    config: BenchConfig,
    mode: Mode,
    output: Option<PathBuf>,
    csv: Option<PathBuf>,
}

/// Adds `/v1` to a base URL that names only a host.
fn normalize_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{trimmed}/v1"),
        _ => trimmed.to_owned(),
    }
}

fn read_profile(path: &Path) -> anyhow::Result<(Profile, Option<Document>)> {
    let document = Document::read(path, &ProcessEnv)?;
    let profile: Profile = document.deserialize()?;
    Ok((profile, Some(document)))
}

fn settings(args: &BenchArgs) -> anyhow::Result<Settings> {
    let (profile, document) = match &args.config {
        Some(path) => read_profile(path)?,
        None => (Profile::default(), None),
    };
    let origin = |flag: &str, key: &str| match &args.config {
        Some(path) => format!("--{flag} (or `{key}:` in {})", path.display()),
        None => format!("--{flag}"),
    };
    let duration = |flag: &str, cli: &Option<String>, file: &Option<DurationText>| {
        cli.clone()
            .or_else(|| file.as_ref().map(DurationText::text))
            .map(|text| {
                parse_duration(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", origin(flag, &flag.replace('-', "_"))))
            })
            .transpose()
    };
    let url = args
        .url
        .clone()
        .or(profile.url.clone())
        .with_context(|| format!("missing {}: the server's base URL", origin("url", "url")))?;
    let model = args
        .model
        .clone()
        .or(profile.model.clone())
        .with_context(|| {
            format!(
                "missing {}: the model name to send",
                origin("model", "model")
            )
        })?;

    let rate = args.rate.or(profile.rate);
    let concurrency = args.concurrency.or(profile.concurrency);
    let sweep = args.sweep.or(profile.sweep);
    let preset = args.preset.or(profile.preset);
    let chosen: Vec<&str> = [
        ("rate", rate.is_some()),
        ("concurrency", concurrency.is_some()),
        ("sweep", sweep.is_some()),
        ("preset", preset.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| *name)
    .collect();
    if chosen.len() > 1 {
        bail!(
            "choose one load: {} are all set (flags and profile together)",
            chosen
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let burstiness = args.burstiness.or(profile.burstiness);
    if let Some(b) = burstiness
        && !(b.is_finite() && b > 0.0)
    {
        bail!("--burstiness must be a positive number, found {b}");
    }
    let arrival = match (args.arrival.or(profile.arrival), burstiness) {
        (None | Some(BenchArrival::Gamma), Some(b)) => Some(Arrival::Gamma(b)),
        (Some(BenchArrival::Gamma), None) => {
            bail!("--arrival gamma needs --burstiness (the gamma shape; 1 is Poisson)")
        }
        (Some(other), Some(_)) => bail!(
            "--burstiness applies to --arrival gamma, not {}",
            format!("{other:?}").to_lowercase()
        ),
        (Some(BenchArrival::Constant), None) => Some(Arrival::Constant),
        (Some(BenchArrival::Poisson), None) => Some(Arrival::Poisson),
        (None, None) => None,
    };
    let max_concurrency = args.max_concurrency.or(profile.max_concurrency);
    if max_concurrency == Some(0) || concurrency == Some(0) {
        bail!("concurrency must be at least 1");
    }
    let (load, mode) = if let Some(rate) = rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second, found {rate}");
        }
        (
            Load::Rate {
                rate,
                arrival: arrival.unwrap_or(Arrival::Poisson),
                max_concurrency,
            },
            Mode::Single,
        )
    } else if let Some(n) = concurrency {
        (Load::Concurrency(n), Mode::Single)
    } else if let Some(stages) = sweep {
        if stages < 3 {
            bail!(
                "--sweep needs at least 3 stages (synchronous, throughput and one rate), found {stages}"
            );
        }
        let load = match arrival {
            Some(arrival) => Load::Rate {
                rate: 1.0,
                arrival,
                max_concurrency: None,
            },
            None => Load::Concurrency(1),
        };
        (
            load,
            Mode::Sweep {
                stages,
                max_concurrency: max_concurrency.unwrap_or(256),
            },
        )
    } else if preset.is_some() {
        (Load::Concurrency(1), Mode::BatchSizes)
    } else {
        bail!(
            "choose a load: --rate R (open loop), --concurrency C (closed loop), --sweep or --preset batch-sizes"
        );
    };

    let limit = match (
        duration("duration", &args.duration, &profile.duration)?,
        args.requests.or(profile.requests),
    ) {
        (Some(_), Some(_)) => bail!("set either a duration or a number of requests, not both"),
        (Some(d), None) if d.is_zero() => bail!("--duration must be longer than zero"),
        (Some(d), None) => Limit::Duration(d),
        (None, Some(0)) => bail!("--requests must be at least 1"),
        (None, Some(n)) => Limit::Requests(n),
        (None, None) => Limit::Requests(200),
    };
    let dataset_name = args
        .dataset
        .clone()
        .or(profile.dataset.clone())
        .unwrap_or_else(|| "random".into());
    let dataset = sluice_bench::dataset::load(&dataset_name)?;
    let range_ratio = args.range_ratio.or(profile.range_ratio).unwrap_or(0.0);
    if !(0.0..=1.0).contains(&range_ratio) {
        bail!("--range-ratio must be between 0 and 1, found {range_ratio}");
    }
    let input_tokens = args.input_tokens.or(profile.input_tokens).unwrap_or(512);
    let output_tokens = args.output_tokens.or(profile.output_tokens).unwrap_or(128);
    if input_tokens == 0 || output_tokens == 0 {
        bail!("--input-tokens and --output-tokens must be at least 1");
    }
    let mut goodput_items = args.goodput.clone();
    match &profile.goodput {
        Some(GoodputSpec::Map(map)) => {
            goodput_items.extend(map.iter().map(|(k, v)| format!("{k}:{v}")))
        }
        Some(GoodputSpec::List(list)) => goodput_items.extend(list.iter().cloned()),
        None => {}
    }
    let goodput = Goodput::parse(&goodput_items).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut thresholds = Vec::new();
    for (i, text) in profile.thresholds.iter().enumerate() {
        match Threshold::parse(text) {
            Ok(t) => thresholds.push(t),
            Err(error) => match &document {
                Some(document) => {
                    let path = FieldPath::root().key("thresholds").index(i);
                    return Err(document
                        .diagnostics(vec![document.error_at(&path, error.to_string())])
                        .into());
                }
                None => return Err(error.into()),
            },
        }
    }
    for text in &args.thresholds {
        thresholds.push(Threshold::parse(text).context("--threshold")?);
    }
    if !thresholds.is_empty() && !matches!(mode, Mode::Single) {
        bail!(
            "thresholds gate a single run; a sweep or preset has several stages (run the stage you want to gate with --rate or --concurrency)"
        );
    }
    let stream = if args.no_stream {
        false
    } else if args.stream {
        true
    } else {
        profile.stream.unwrap_or(true)
    };
    let config = BenchConfig {
        base_url: normalize_url(&url),
        model,
        api_key_env: args.api_key_env.clone().or(profile.api_key_env.clone()),
        endpoint: match args.endpoint.or(profile.endpoint) {
            Some(BenchEndpoint::Completions) => Endpoint::Completions,
            Some(BenchEndpoint::Chat) | None => Endpoint::Chat,
        },
        dataset,
        load,
        limit,
        warmup: duration("warmup", &args.warmup, &profile.warmup)?.unwrap_or_default(),
        input_tokens,
        output_tokens,
        range_ratio,
        stream,
        ignore_eos: args.ignore_eos || profile.ignore_eos.unwrap_or(false),
        goodput,
        thresholds,
        max_lag: duration("max-lag", &args.max_lag, &profile.max_lag)?
            .unwrap_or(Duration::from_millis(10)),
        timeout: duration("timeout", &args.timeout, &profile.timeout)?
            .unwrap_or(Duration::from_secs(600)),
        seed: args.seed.or(profile.seed).unwrap_or(0),
    };
    Ok(Settings {
        config,
        mode,
        output: args.output.clone().or(profile.output),
        csv: args.csv.clone().or(profile.csv),
    })
}

/// The settings recorded with a stored run.
fn settings_json(settings: &Settings) -> Value {
    let c = &settings.config;
    json!({
        "base_url": c.base_url,
        "model": c.model,
        "endpoint": format!("{:?}", c.endpoint).to_lowercase(),
        "load": format!("{:?}", c.load),
        "limit": format!("{:?}", c.limit),
        "mode": match settings.mode {
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

pub async fn run(args: BenchArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let settings = settings(&args)?;
    let config = &settings.config;
    let store = if args.no_write {
        None
    } else {
        Some(open_store(store_location).await?)
    };
    sluice_bench::preflight(config).await.with_context(|| {
        format!(
            "pre-flight request to {} (model `{}`) failed; nothing was measured",
            config.base_url, config.model
        )
    })?;
    let version = model_version(store.as_ref(), args.model_version.as_deref()).await?;
    let run_id = match &store {
        Some(store) => Some(
            store
                .create_run(NewRun {
                    kind: "bench".into(),
                    name: config.model.clone(),
                    config: settings_json(&settings),
                })
                .await?,
        ),
        None => None,
    };
    if let Some(id) = &run_id {
        link_run(store.as_ref(), version.as_ref(), "bench", id.as_str()).await?;
    }
    let _heartbeat = match (&store, &run_id) {
        (Some(store), Some(id)) => Some(store.hold_run(id.as_str()).await?),
        _ => None,
    };
    let quiet = args.json;
    let (live, display) = live_display(!quiet && std::io::stderr().is_terminal());
    let say_stage = |result: &BenchResult| {
        if !quiet {
            eprintln!(
                "  stage done: {} → {:.2} req/s",
                result.load_label(),
                result.number("request_throughput").unwrap_or(0.0)
            );
        }
    };
    let outcome = match settings.mode {
        Mode::Single => sluice_bench::run_with(config.clone(), live)
            .await
            .map(|r| Stages {
                stages: vec![r],
                knee: None,
            }),
        Mode::Sweep {
            stages,
            max_concurrency,
        } => sluice_bench::sweep::sweep(config, stages, max_concurrency, live, say_stage).await,
        Mode::BatchSizes => sluice_bench::sweep::batch_sizes(config, live, say_stage).await,
    };
    if let Some(display) = display {
        display.abort();
        eprint!("\r\x1b[2K");
    }
    let stages = match outcome {
        Ok(stages) => stages,
        Err(error) => {
            if let (Some(store), Some(id)) = (&store, &run_id) {
                store
                    .finish_run(id, RunStatus::Errored, json!({"error": error.to_string()}))
                    .await?;
            }
            return Err(error.into());
        }
    };
    let single = matches!(settings.mode, Mode::Single);
    let document = if single {
        stages.stages[0].json()
    } else {
        json!({
            "stages": stages.stages.iter().map(BenchResult::json).collect::<Vec<_>>(),
            "knee": stages.knee.map(|i| i + 1),
        })
    };
    let invalid = stages
        .stages
        .iter()
        .any(|r| sluice_bench::invalid_reason(r).is_some());
    let failed = stages
        .stages
        .iter()
        .any(|r| r.check().iter().any(|(_, _, pass)| !pass));
    if let Some(path) = &settings.output {
        std::fs::write(path, serde_json::to_string_pretty(&document)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &settings.csv {
        let mut text = BenchResult::csv_header();
        for r in &stages.stages {
            text.push('\n');
            text.push_str(&r.csv_row());
        }
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let (Some(store), Some(id)) = (&store, &run_id) {
        let status = if invalid {
            RunStatus::Errored
        } else if failed {
            RunStatus::Failed
        } else {
            RunStatus::Passed
        };
        store.finish_run(id, status, document.clone()).await?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&document)?);
    } else if single {
        out!("{}", stages.stages[0].console());
    } else {
        outln!(
            "{} {}: {} stages",
            match settings.mode {
                Mode::BatchSizes => "preset batch-sizes",
                _ => "sweep",
            },
            config.model,
            stages.stages.len()
        );
        out!("{}", sluice_bench::sweep::table(&stages));
        for r in &stages.stages {
            if let Some(reason) = sluice_bench::invalid_reason(r) {
                outln!("  INVALID stage {}: {reason}", r.load_label());
            }
        }
    }
    if !args.json
        && let Some(id) = &run_id
    {
        outln!("  recorded run {id}");
    }
    Ok(if invalid {
        Outcome::Invalid
    } else if failed {
        Outcome::ThresholdFailed
    } else {
        Outcome::Ok
    })
}

/// A live status line on a terminal: elapsed time, answers, errors, rate and running
/// percentiles, redrawn as the run's figures change.
fn live_display(
    enabled: bool,
) -> (
    Option<watch::Sender<Live>>,
    Option<tokio::task::JoinHandle<()>>,
) {
    if !enabled {
        return (None, None);
    }
    let (sender, mut receiver) = watch::channel(Live::default());
    let task = tokio::spawn(async move {
        while receiver.changed().await.is_ok() {
            let live = receiver.borrow_and_update().clone();
            let seconds = live.elapsed.as_secs_f64();
            let rate = if seconds > 0.0 {
                live.completed as f64 / seconds
            } else {
                0.0
            };
            eprint!(
                "\r\x1b[2K  {seconds:6.1} s  {} ok  {} errors  {rate:8.1} req/s  ttft p50 {:.1} p99 {:.1} ms  e2el p50 {:.1} p99 {:.1} ms",
                live.completed,
                live.failed,
                live.ttft_ms.0,
                live.ttft_ms.1,
                live.e2el_ms.0,
                live.e2el_ms.1
            );
        }
    });
    (Some(sender), Some(task))
}

/// `sluice bench compare`.
pub async fn compare(args: BenchCompareArgs, store_location: &str) -> anyhow::Result<Outcome> {
    let baseline = load_result(&args.baseline, store_location).await?;
    let candidate = load_result(&args.candidate, store_location).await?;
    let rows =
        sluice_bench::compare::compare(&baseline, &candidate).map_err(|e| anyhow::anyhow!(e))?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&sluice_bench::compare::json(&rows))?
        );
    } else {
        outln!("bench compare {} → {}", args.baseline, args.candidate);
        out!("{}", sluice_bench::compare::table(&rows));
    }
    Ok(Outcome::Ok)
}

/// A result from a JSON file, or else from a stored bench run with that id.
async fn load_result(name: &str, store_location: &str) -> anyhow::Result<Value> {
    let path = Path::new(name);
    if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{name}: not a JSON result file"));
    }
    let store = open_store(store_location).await?;
    let run = store
        .get_run(&sluice_store::RunId(name.to_owned()))
        .await?
        .with_context(|| format!("`{name}` is neither a file nor a stored run"))?;
    if run.kind != "bench" {
        bail!("run `{name}` is a {} run, not a bench run", run.kind);
    }
    Ok(run.summary)
}

/// Dispatches `sluice bench` and its subcommands.
pub async fn dispatch(
    command: Option<BenchCommand>,
    args: BenchArgs,
    store_location: &str,
) -> anyhow::Result<Outcome> {
    match command {
        None => run(args, store_location).await,
        Some(BenchCommand::Compare(args)) => compare(args, store_location).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_hosts_get_v1() {
        assert_eq!(normalize_url("http://h:8000"), "http://h:8000/v1");
        assert_eq!(normalize_url("http://h:8000/"), "http://h:8000/v1");
        assert_eq!(normalize_url("http://h:8000/v1/"), "http://h:8000/v1");
        assert_eq!(normalize_url("http://h/api/v2"), "http://h/api/v2");
    }
}
