//! The production-readiness gate: is a registered version fit to carry production traffic?
//!
//! - **Service levels** over a window: availability (requests that did not fail on the
//!   server's side: 5xx, timeouts, unreachable upstreams), p95 latency and error rate (every
//!   request that did not end `ok`, client errors included, as the gateway counts them). Read
//!   from the gateway's request log in the store, or from a Prometheus-compatible HTTP API
//!   with configurable queries.
//! - **Capacity**: the GPUs and memory its `model.yaml` asks for, times the replicas, against
//!   what is there: the local GPUs (`nvidia-smi`) or a declared inventory file.
//!
//! Each check passes, fails, or cannot be measured (which fails the gate: readiness is shown,
//! not assumed).

#![deny(unsafe_code)]

pub mod prometheus;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_store::{ModelVersion, Store};

/// The seed's service levels.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Minimum availability, as a fraction (0.999).
    pub min_availability: f64,
    /// Maximum p95 latency.
    pub max_p95: Duration,
    /// Maximum error rate, as a fraction (0.01).
    pub max_error_rate: f64,
    /// Fewer requests than this in the window and the service levels are not measured.
    pub min_requests: u64,
}

impl Default for Slo {
    fn default() -> Self {
        Self {
            min_availability: 0.999,
            max_p95: Duration::from_secs(2),
            max_error_rate: 0.01,
            min_requests: 100,
        }
    }
}

/// Where the service levels come from.
#[derive(Debug, Clone)]
pub enum MetricsSource {
    /// The gateway's request log in the store: route and the gateway's version name.
    Store {
        /// Route (the model name clients send).
        route: String,
        /// The version's name in the gateway config.
        version: String,
    },
    /// A Prometheus-compatible HTTP API, with one query per figure.
    Prometheus {
        /// Base URL (`/api/v1/query` is appended).
        url: String,
        /// Queries.
        queries: PrometheusQueries,
    },
}

/// The queries for each figure; each must give one number.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusQueries {
    /// Availability, as a fraction.
    pub availability: String,
    /// p95 latency, in seconds.
    pub p95_seconds: String,
    /// Error rate, as a fraction.
    pub error_rate: String,
    /// Requests in the window.
    pub requests: String,
}

impl PrometheusQueries {
    /// Queries over the gateway's own metrics for one route, version and window (`5m`, `1h`).
    pub fn for_gateway(route: &str, version: &str, window: &str) -> Self {
        let selector = format!("route=\"{route}\",version=\"{version}\"");
        let total = format!("sum(rate(sluice_gateway_requests_total{{{selector}}}[{window}]))");
        Self {
            // A healthy version has no series of failures at all: `or vector(0)` counts that
            // as zero instead of leaving the whole query without a value.
            availability: format!(
                "1 - (sum(rate(sluice_gateway_requests_total{{{selector},class=~\"5xx|timeout|upstream_connect\"}}[{window}])) or vector(0)) / {total}"
            ),
            p95_seconds: format!(
                "histogram_quantile(0.95, sum by (le) (rate(sluice_gateway_request_duration_seconds_bucket{{{selector}}}[{window}])))"
            ),
            error_rate: format!(
                "(sum(rate(sluice_gateway_requests_total{{{selector},class!~\"ok|client_closed|4xx\"}}[{window}])) or vector(0)) / {total}"
            ),
            requests: format!(
                "sum(increase(sluice_gateway_requests_total{{{selector}}}[{window}]))"
            ),
        }
    }
}

/// Where the available GPUs are read from.
#[derive(Debug, Clone, PartialEq)]
pub enum CapacitySource {
    /// `nvidia-smi` on this machine.
    LocalGpus,
    /// A YAML inventory: `gpus: [{type: L4, memory_gb: 24, count: 4}]`.
    Inventory(PathBuf),
    /// Not checked (said so in the report).
    Skip,
}

/// What the gate is asked.
#[derive(Debug, Clone)]
pub struct ReadinessRequest {
    /// The window the service levels cover.
    pub window: Duration,
    /// The service levels.
    pub slo: Slo,
    /// Where they are read.
    pub metrics: MetricsSource,
    /// Where capacity is read.
    pub capacity: CapacitySource,
    /// Replicas to plan for.
    pub replicas: u32,
}

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within its target.
    Pass,
    /// Outside its target.
    Fail,
    /// Could not be measured: fails the gate.
    Unknown,
    /// Not asked for.
    Skipped,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `availability`, `p95_latency`, `error_rate`, `requests`, `gpus`, `gpu_memory`.
    pub name: String,
    /// The target, in words.
    pub target: String,
    /// What was observed, in words.
    pub observed: String,
    /// The observed number, when there is one.
    pub value: Option<f64>,
    /// Verdict.
    pub verdict: Verdict,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    /// `model/version`.
    pub version: String,
    /// Where the service levels came from.
    pub source: String,
    /// The checks.
    pub checks: Vec<Check>,
    /// Every check passed (or was skipped).
    pub ready: bool,
}

fn check(
    name: &str,
    target: String,
    observed: String,
    value: Option<f64>,
    verdict: Verdict,
) -> Check {
    Check {
        name: name.to_owned(),
        target,
        observed,
        value,
        verdict,
    }
}

/// The service-level figures, however they were measured.
#[derive(Debug, Clone, Default, PartialEq)]
struct Figures {
    requests: Option<f64>,
    availability: Option<f64>,
    p95_seconds: Option<f64>,
    error_rate: Option<f64>,
}

/// Why the gate could not be run (as opposed to a version that is not ready).
#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    /// The gateway's request log could not be read from the store.
    #[error("cannot read the gateway's request log")]
    Store(#[from] sluice_store::StoreError),
    /// The HTTP client for Prometheus could not be made.
    #[error("cannot make an HTTP client")]
    Client(#[source] reqwest::Error),
    /// A Prometheus query failed.
    #[error("the {query} query")]
    Prometheus {
        /// Which figure it measures.
        query: &'static str,
        /// Why.
        #[source]
        source: prometheus::PrometheusError,
    },
    /// The GPU inventory file could not be read.
    #[error("cannot read the GPU inventory")]
    Inventory(#[source] sluice_config::Diagnostics),
}

/// Runs the gate for a registered version.
pub async fn assess(
    store: &Store,
    version: &ModelVersion,
    request: &ReadinessRequest,
) -> Result<Readiness, ReadinessError> {
    let (figures, source) = match &request.metrics {
        MetricsSource::Store { route, version } => (
            from_store(store, route, version, request.window).await?,
            format!("gateway request log in the store (route {route}, version {version})"),
        ),
        MetricsSource::Prometheus { url, queries } => (
            from_prometheus(url, queries).await?,
            format!("Prometheus at {url}"),
        ),
    };
    let mut checks = service_checks(&figures, &request.slo);
    checks.extend(capacity_checks(version, request)?);
    let ready = checks
        .iter()
        .all(|c| matches!(c.verdict, Verdict::Pass | Verdict::Skipped));
    Ok(Readiness {
        version: format!("{}/{}", version.model, version.version),
        source,
        checks,
        ready,
    })
}

async fn from_store(
    store: &Store,
    route: &str,
    version: &str,
    window: Duration,
) -> Result<Figures, ReadinessError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let since = now - window.as_millis() as i64;
    let subject = format!("gateway:{route}");
    let Some(first) = store.first_event_since(&subject, since).await? else {
        return Ok(Figures::default());
    };
    let (mut after, mut latencies, mut server_failures, mut errors, mut counted) =
        (first - 1, Vec::new(), 0u64, 0u64, 0u64);
    loop {
        let page = store.events(&subject, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in page
            .iter()
            .filter(|e| e.kind == "request" && e.at_ms >= since)
        {
            let payload = &event.payload;
            if payload.get("version").and_then(Value::as_str) != Some(version) {
                continue;
            }
            let class = payload.get("class").and_then(Value::as_str).unwrap_or("ok");
            if class == "client_closed" {
                continue;
            }
            // Malformed requests are the client's doing: counted, but not as the version's errors.
            counted += 1;
            if !matches!(class, "ok" | "4xx") {
                errors += 1;
            }
            if matches!(class, "5xx" | "timeout" | "upstream_connect") {
                server_failures += 1;
            }
            if let Some(latency) = payload.get("latency_ms").and_then(Value::as_f64) {
                latencies.push(latency / 1000.0);
            }
        }
    }
    if counted == 0 {
        return Ok(Figures {
            requests: Some(0.0),
            ..Figures::default()
        });
    }
    latencies.sort_by(f64::total_cmp);
    let p95 = latencies
        .get(((latencies.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
        .copied();
    Ok(Figures {
        requests: Some(counted as f64),
        availability: Some(1.0 - server_failures as f64 / counted as f64),
        p95_seconds: p95,
        error_rate: Some(errors as f64 / counted as f64),
    })
}

async fn from_prometheus(
    url: &str,
    queries: &PrometheusQueries,
) -> Result<Figures, ReadinessError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(ReadinessError::Client)?;
    let mut values = Vec::with_capacity(4);
    for (name, query) in [
        ("requests", &queries.requests),
        ("availability", &queries.availability),
        ("p95", &queries.p95_seconds),
        ("error rate", &queries.error_rate),
    ] {
        values.push(
            prometheus::query(&client, url, query)
                .await
                .map_err(|source| ReadinessError::Prometheus {
                    query: name,
                    source,
                })?,
        );
    }
    Ok(Figures {
        requests: values[0],
        availability: values[1],
        p95_seconds: values[2],
        error_rate: values[3],
    })
}

fn service_checks(figures: &Figures, slo: &Slo) -> Vec<Check> {
    let requests = figures.requests.unwrap_or(0.0);
    let enough = requests >= slo.min_requests as f64;
    let mut checks = vec![check(
        "requests",
        format!("≥ {}", slo.min_requests),
        format!("{requests:.0}"),
        figures.requests,
        if enough { Verdict::Pass } else { Verdict::Fail },
    )];
    let figure = |name: &str,
                  target: String,
                  value: Option<f64>,
                  show: &dyn Fn(f64) -> String,
                  ok: &dyn Fn(f64) -> bool| {
        match value {
            Some(v) if enough => check(
                name,
                target,
                show(v),
                Some(v),
                if ok(v) { Verdict::Pass } else { Verdict::Fail },
            ),
            Some(v) => check(
                name,
                target,
                format!("{} (too few requests to judge)", show(v)),
                Some(v),
                Verdict::Unknown,
            ),
            None => check(name, target, "no data".to_owned(), None, Verdict::Unknown),
        }
    };
    let percent = |v: f64| format!("{:.3} %", v * 100.0);
    checks.push(figure(
        "availability",
        format!("≥ {}", percent(slo.min_availability)),
        figures.availability,
        &percent,
        &|v| v >= slo.min_availability,
    ));
    checks.push(figure(
        "p95_latency",
        format!("≤ {:.0} ms", slo.max_p95.as_secs_f64() * 1000.0),
        figures.p95_seconds,
        &|v| format!("{:.0} ms", v * 1000.0),
        &|v| v <= slo.max_p95.as_secs_f64(),
    ));
    checks.push(figure(
        "error_rate",
        format!("≤ {}", percent(slo.max_error_rate)),
        figures.error_rate,
        &percent,
        &|v| v <= slo.max_error_rate,
    ));
    checks
}

/// One kind of GPU that is available.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuGroup {
    /// Type, e.g. `L4`, `H100`, or the name `nvidia-smi` reports.
    #[serde(rename = "type")]
    pub gpu_type: String,
    /// Memory of each, in GB.
    pub memory_gb: f64,
    /// How many.
    pub count: u32,
    /// The node they are on (`local` when not given).
    #[serde(default)]
    pub node: Option<String>,
    /// Whether they are spot (preemptible) capacity.
    #[serde(default)]
    pub spot: bool,
    /// The price of one, per hour, for cost estimates.
    #[serde(default)]
    pub hourly_price: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inventory {
    gpus: Vec<GpuGroup>,
}

impl GpuGroup {
    /// An empty group on this machine, on demand, without a price: the base for
    /// `GpuGroup { gpu_type, memory_gb, count, ..GpuGroup::local() }`.
    pub fn local() -> Self {
        GpuGroup {
            gpu_type: String::new(),
            memory_gb: 0.0,
            count: 0,
            node: None,
            spot: false,
            hourly_price: None,
        }
    }
}

/// Reads an inventory file.
pub fn read_inventory(path: &std::path::Path) -> Result<Vec<GpuGroup>, sluice_config::Diagnostics> {
    let document = sluice_config::Document::read(path, &sluice_config::ProcessEnv)?;
    let inventory: Inventory = document.deserialize()?;
    Ok(inventory.gpus)
}

/// Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (MiB).
pub fn parse_nvidia_smi(output: &str) -> Vec<GpuGroup> {
    let mut groups: Vec<GpuGroup> = Vec::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.rsplitn(2, ',');
        let (Some(memory), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(mib) = memory.trim().parse::<f64>() else {
            continue;
        };
        let memory_gb = (mib * 1024.0 * 1024.0 / 1e9 * 10.0).round() / 10.0;
        let name = name.trim().to_owned();
        match groups
            .iter_mut()
            .find(|g| g.gpu_type == name && g.memory_gb == memory_gb)
        {
            Some(group) => group.count += 1,
            None => groups.push(GpuGroup {
                gpu_type: name,
                memory_gb,
                count: 1,
                ..GpuGroup::local()
            }),
        }
    }
    groups
}

/// The GPUs of this machine, as `nvidia-smi` lists them (why not, when it cannot).
pub fn local_gpus() -> Result<Vec<GpuGroup>, String> {
    let output = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .map_err(|e| format!("nvidia-smi cannot be run ({e}); give an --inventory file"))?;
    if !output.status.success() {
        return Err(format!(
            "nvidia-smi failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(parse_nvidia_smi(&String::from_utf8_lossy(&output.stdout)))
}

fn capacity_checks(
    version: &ModelVersion,
    request: &ReadinessRequest,
) -> Result<Vec<Check>, ReadinessError> {
    let resources = version.config.get("resources");
    let number = |key: &str| resources.and_then(|r| r.get(key)).and_then(Value::as_f64);
    let (gpu_count, memory_gb) = (number("gpu_count"), number("memory_gb"));
    let gpu_type = resources
        .and_then(|r| r.get("gpu_type"))
        .and_then(Value::as_str);
    let (source, available) = match &request.capacity {
        CapacitySource::Skip => {
            return Ok(vec![check(
                "capacity",
                "not checked".to_owned(),
                "skipped (--no-capacity)".to_owned(),
                None,
                Verdict::Skipped,
            )]);
        }
        CapacitySource::Inventory(path) => (
            format!("inventory {}", path.display()),
            read_inventory(path).map_err(ReadinessError::Inventory)?,
        ),
        CapacitySource::LocalGpus => match local_gpus() {
            Ok(gpus) => ("nvidia-smi".to_owned(), gpus),
            Err(reason) => {
                return Ok(vec![check(
                    "gpus",
                    "from model.yaml".to_owned(),
                    reason,
                    None,
                    Verdict::Unknown,
                )]);
            }
        },
    };
    let (Some(gpu_count), Some(memory_gb)) = (gpu_count, memory_gb) else {
        return Ok(vec![check(
            "gpus",
            "resources.gpu_count and memory_gb from model.yaml".to_owned(),
            format!(
                "{}/{} has no model.yaml resources (register it with --config)",
                version.model, version.version
            ),
            None,
            Verdict::Unknown,
        )]);
    };
    let replicas = f64::from(request.replicas.max(1));
    let matching: Vec<&GpuGroup> = available
        .iter()
        .filter(|g| gpu_type.is_none_or(|t| g.gpu_type.to_lowercase().contains(&t.to_lowercase())))
        .collect();
    let count: f64 = matching.iter().map(|g| f64::from(g.count)).sum();
    let memory: f64 = matching
        .iter()
        .map(|g| f64::from(g.count) * g.memory_gb)
        .sum();
    let kind = gpu_type.unwrap_or("any");
    let needed_gpus = gpu_count * replicas;
    let needed_memory = memory_gb * replicas;
    Ok(vec![
        check(
            "gpus",
            format!("≥ {needed_gpus:.0} × {kind}"),
            format!("{count:.0} × {kind} ({source})"),
            Some(count),
            if count >= needed_gpus {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
        ),
        check(
            "gpu_memory",
            format!("≥ {needed_memory:.0} GB"),
            format!("{memory:.0} GB"),
            Some(memory),
            if memory >= needed_memory {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_output_groups_gpus_by_name_and_memory() {
        let groups = parse_nvidia_smi(
            "NVIDIA H200, 143771\nNVIDIA H200, 143771\nNVIDIA L4, 23034\n\nbroken line\n",
        );
        assert_eq!(
            groups,
            [
                GpuGroup {
                    gpu_type: "NVIDIA H200".into(),
                    memory_gb: 150.8,
                    count: 2,
                    ..GpuGroup::local()
                },
                GpuGroup {
                    gpu_type: "NVIDIA L4".into(),
                    memory_gb: 24.2,
                    count: 1,
                    ..GpuGroup::local()
                },
            ]
        );
    }

    #[test]
    fn service_levels_pass_fail_or_are_unknown_with_too_few_requests() {
        let slo = Slo::default();
        let good = Figures {
            requests: Some(500.0),
            availability: Some(0.9995),
            p95_seconds: Some(0.4),
            error_rate: Some(0.004),
        };
        assert!(
            service_checks(&good, &slo)
                .iter()
                .all(|c| c.verdict == Verdict::Pass)
        );
        let bad = Figures {
            availability: Some(0.99),
            p95_seconds: Some(2.5),
            ..good.clone()
        };
        let verdicts: Vec<_> = service_checks(&bad, &slo)
            .iter()
            .map(|c| (c.name.clone(), c.verdict))
            .collect();
        assert_eq!(verdicts[1], ("availability".into(), Verdict::Fail));
        assert_eq!(verdicts[2], ("p95_latency".into(), Verdict::Fail));
        assert_eq!(verdicts[3], ("error_rate".into(), Verdict::Pass));
        let few = Figures {
            requests: Some(10.0),
            ..good
        };
        let checks = service_checks(&few, &slo);
        assert_eq!(checks[0].verdict, Verdict::Fail);
        assert!(checks[1..].iter().all(|c| c.verdict == Verdict::Unknown));
    }

    #[test]
    fn default_queries_select_the_route_and_version() {
        let queries = PrometheusQueries::for_gateway("chat", "1.2.0", "1h");
        assert!(queries.p95_seconds.contains(
            "sluice_gateway_request_duration_seconds_bucket{route=\"chat\",version=\"1.2.0\"}[1h]"
        ));
        assert!(
            queries
                .error_rate
                .contains("class!~\"ok|client_closed|4xx\"")
        );
    }
}
