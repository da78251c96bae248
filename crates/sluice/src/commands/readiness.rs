//! `sluice readiness`: the production-readiness gate for a registered version, as a table or
//! JSON; the exit code is the gate.

use sluice_readiness::{
    CapacitySource, MetricsSource, PrometheusQueries, Readiness, ReadinessRequest, Slo, Verdict,
};
use sluice_registry::ModelRef;
use sluice_store::ModelVersion;

use super::{Outcome, open_store};
use crate::cli::ReadinessArgs;

pub async fn run(args: ReadinessArgs, location: &str) -> anyhow::Result<Outcome> {
    for (flag, value) in [
        ("--min-availability", args.min_availability),
        ("--max-error-rate", args.max_error_rate),
    ] {
        if !(0.0..=100.0).contains(&value) {
            anyhow::bail!("{flag} {value}: expected a percentage from 0 to 100");
        }
    }
    let store = open_store(location).await?;
    let version = ModelRef::parse(&args.reference)?.resolve(&store).await?;
    let json = args.json;
    let report = sluice_readiness::assess(&store, &version, &request(args, &version)).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(if report.ready {
        Outcome::Ok
    } else {
        Outcome::GateFailed
    })
}

/// The gate's request from the flags: where the service levels come from (the store's
/// request log, or Prometheus with the default queries for the route and version unless
/// given), where capacity comes from, and the SLO.
fn request(args: ReadinessArgs, version: &ModelVersion) -> ReadinessRequest {
    let route = args.route.unwrap_or_else(|| version.model.clone());
    let gateway_version = args
        .gateway_version
        .unwrap_or_else(|| version.version.clone());
    let metrics = match args.prometheus {
        None => MetricsSource::Store {
            route,
            version: gateway_version,
        },
        Some(url) => {
            let defaults = PrometheusQueries::for_gateway(
                &route,
                &gateway_version,
                &format!("{}s", args.window.as_secs().max(1)),
            );
            MetricsSource::Prometheus {
                url,
                queries: PrometheusQueries {
                    availability: args.query_availability.unwrap_or(defaults.availability),
                    p95_seconds: args.query_p95.unwrap_or(defaults.p95_seconds),
                    error_rate: args.query_error_rate.unwrap_or(defaults.error_rate),
                    requests: args.query_requests.unwrap_or(defaults.requests),
                },
            }
        }
    };
    let capacity = match (args.inventory, args.no_capacity) {
        (_, true) => CapacitySource::Skip,
        (Some(path), false) => CapacitySource::Inventory(path),
        (None, false) => CapacitySource::LocalGpus,
    };
    ReadinessRequest {
        window: args.window,
        slo: Slo {
            min_availability: args.min_availability / 100.0,
            max_p95: args.max_p95,
            max_error_rate: args.max_error_rate / 100.0,
            min_requests: args.min_requests,
        },
        metrics,
        capacity,
        replicas: args.replicas,
    }
}

/// The report as a table.
fn print(report: &Readiness) {
    outln!("{} — service levels from {}", report.version, report.source);
    outln!("{:<14} {:<16} {:<44} RESULT", "CHECK", "TARGET", "OBSERVED");
    for check in &report.checks {
        let verdict = match check.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "UNKNOWN",
            Verdict::Skipped => "skipped",
        };
        outln!(
            "{:<14} {:<16} {:<44} {verdict}",
            check.name,
            check.target,
            check.observed
        );
    }
    outln!("{}", if report.ready { "READY" } else { "NOT READY" });
}
