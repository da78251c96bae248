//! A rollout written as Argo Rollouts objects, for teams that already run Argo Rollouts: a
//! `Rollout` whose canary steps are the spec's (`setWeight`, `pause`, `analysis`), whose
//! traffic moves through the Gateway API plugin (`argoproj-labs/gatewayAPI`) on the route's
//! `HTTPRoute`, and whose pods come from the candidate's `Deployment` (`workloadRef`, not a
//! copy); and an `AnalysisTemplate` for the rules measured through the whole rollout plus one
//! per analysis step, whose metrics ask Prometheus (or a web endpoint) and hold the rules'
//! bounds and limits. Rules on the gateway's own window become PromQL over the metrics the
//! in-cluster gateway exports. What Argo Rollouts cannot say is refused by name, never
//! approximated: shadow, feature-flag and instance steps, the statistical judges, and the
//! metrics no Prometheus series carries.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_config::emit::{Yaml, map, s};

use crate::spec::{Metric, Rule, Source, Spec, Step};

/// The cluster's names the objects refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoOptions {
    /// The namespace of every object.
    pub namespace: String,
    /// The `Deployment` whose pod template the `Rollout` rolls out (the candidate's).
    pub workload: String,
    /// The `Service` in front of the stable pods.
    pub stable_service: String,
    /// The `Service` in front of the canary pods.
    pub canary_service: String,
    /// The `HTTPRoute` whose backend weights the plugin moves.
    pub http_route: String,
    /// The Prometheus that scrapes the in-cluster gateway, for rules on the gateway's window.
    pub prometheus: Option<String>,
}

impl ArgoOptions {
    /// Names derived from the spec: the workload is the candidate version, the services are
    /// `ROUTE-VERSION`, the `HTTPRoute` is the route, in namespace `default`.
    pub fn from_spec(spec: &Spec) -> Self {
        let name = |version: &str| kube_name(&format!("{}-{version}", spec.route));
        ArgoOptions {
            namespace: "default".to_owned(),
            workload: kube_name(&spec.candidate),
            stable_service: name(&spec.stable),
            canary_service: name(&spec.candidate),
            http_route: kube_name(&spec.route),
            prometheus: None,
        }
    }
}

/// A Kubernetes name (`[a-z0-9-]`, 63 at most, starting and ending alphanumeric).
fn kube_name(text: &str) -> String {
    let mut name: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(63);
    let trimmed = name.trim_matches('-');
    if trimmed.is_empty() {
        "x".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A duration as Argo Rollouts (Go) reads it: `90s`, `1500ms`.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The spec as a `Rollout` and its `AnalysisTemplate`s (one YAML stream), or every reason
/// it cannot be.
pub fn argo_rollouts(spec: &Spec, options: &ArgoOptions) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    let name = kube_name(&spec.name);
    let mut templates: Vec<(String, Vec<(usize, &Rule)>)> = Vec::new();
    let background: Vec<(usize, &Rule)> = spec
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.step_only)
        .collect();
    if !background.is_empty() {
        templates.push((format!("{name}-analysis"), background));
    }
    let mut steps = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        match step {
            Step::SetWeight(weight) => {
                steps.push(map(vec![("setWeight", Yaml::Int(i64::from(*weight)))]));
            }
            Step::Pause(Some(duration)) => steps.push(map(vec![(
                "pause",
                map(vec![("duration", s(go_duration(*duration)))]),
            )])),
            Step::Pause(None) => steps.push(map(vec![("pause", map(vec![]))])),
            Step::Analysis(indices) => {
                let template = format!("{name}-step-{}", i + 1);
                let rules = indices
                    .iter()
                    .filter_map(|&r| spec.rules.get(r).map(|rule| (r, rule)))
                    .collect();
                templates.push((template.clone(), rules));
                steps.push(map(vec![(
                    "analysis",
                    map(vec![(
                        "templates",
                        Yaml::Seq(vec![map(vec![("templateName", s(template))])]),
                    )]),
                )]));
            }
            other => problems.push(format!(
                "step {} ({}) has no Argo Rollouts canary step through the Gateway API plugin: only set_weight, pause and analysis steps are exported",
                i + 1,
                describe(other)
            )),
        }
    }
    let mut documents = Vec::new();
    let mut canary = vec![
        ("stableService", s(&options.stable_service)),
        ("canaryService", s(&options.canary_service)),
        (
            "trafficRouting",
            map(vec![(
                "plugins",
                map(vec![(
                    "argoproj-labs/gatewayAPI",
                    map(vec![
                        ("httpRoute", s(&options.http_route)),
                        ("namespace", s(&options.namespace)),
                    ]),
                )]),
            )]),
        ),
    ];
    if let Some((template, _)) = templates.first().filter(|(t, _)| t.ends_with("-analysis")) {
        canary.push((
            "analysis",
            map(vec![(
                "templates",
                Yaml::Seq(vec![map(vec![("templateName", s(template))])]),
            )]),
        ));
    }
    canary.push(("steps", Yaml::Seq(steps)));
    documents.push(map(vec![
        ("apiVersion", s("argoproj.io/v1alpha1")),
        ("kind", s("Rollout")),
        (
            "metadata",
            map(vec![
                ("name", s(&name)),
                ("namespace", s(&options.namespace)),
                (
                    "labels",
                    map(vec![("app.kubernetes.io/managed-by", s("sluice"))]),
                ),
            ]),
        ),
        (
            "spec",
            map(vec![
                (
                    "workloadRef",
                    map(vec![
                        ("apiVersion", s("apps/v1")),
                        ("kind", s("Deployment")),
                        ("name", s(&options.workload)),
                        ("scaleDown", s("progressively")),
                    ]),
                ),
                ("strategy", map(vec![("canary", map(canary))])),
            ]),
        ),
    ]));
    for (template, rules) in &templates {
        let step = !template.ends_with("-analysis");
        let mut metrics = Vec::new();
        let mut names = BTreeSet::new();
        for (index, rule) in rules {
            match metric(spec, rule, step, options) {
                Ok(mut entries) => {
                    let mut metric_name = kube_name(&rule.name);
                    if !names.insert(metric_name.clone()) {
                        metric_name = format!("{metric_name}-{}", index + 1);
                        names.insert(metric_name.clone());
                    }
                    entries.insert(0, ("name", s(metric_name)));
                    metrics.push(map(entries));
                }
                Err(why) => problems.push(format!("rule {} (`{}`): {why}", index + 1, rule.name)),
            }
        }
        documents.push(map(vec![
            ("apiVersion", s("argoproj.io/v1alpha1")),
            ("kind", s("AnalysisTemplate")),
            (
                "metadata",
                map(vec![
                    ("name", s(template)),
                    ("namespace", s(&options.namespace)),
                    (
                        "labels",
                        map(vec![("app.kubernetes.io/managed-by", s("sluice"))]),
                    ),
                ]),
            ),
            ("spec", map(vec![("metrics", Yaml::Seq(metrics))])),
        ]));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = format!(
        "# Written by `sluice rollout export --to argo-rollouts`: rollout {} of route {} ({} -> {}).\n",
        spec.name, spec.route, spec.stable, spec.candidate
    );
    for document in documents {
        out.push_str("---\n");
        out.push_str(&document.to_string());
    }
    Ok(out)
}

fn describe(step: &Step) -> String {
    match step {
        Step::SetWeight(w) => format!("set_weight: {w}"),
        Step::Pause(_) => "pause".to_owned(),
        Step::Shadow(p) => format!("shadow: {p}"),
        Step::Flag(on) => format!("flag: {on}"),
        Step::StartCandidate(_) => "start_candidate".to_owned(),
        Step::StopStable(_) => "stop_stable".to_owned(),
        Step::Analysis(_) => "analysis".to_owned(),
    }
}

/// A number as a condition reads it.
fn number(value: f64) -> String {
    let text = format!("{value}");
    if text.contains(['.', 'e', 'E']) || text.contains("inf") || text.contains("NaN") {
        text
    } else {
        format!("{text}.0")
    }
}

/// A metric's entries (without its name) for `rule`.
fn metric(
    spec: &Spec,
    rule: &Rule,
    step: bool,
    options: &ArgoOptions,
) -> Result<Vec<(&'static str, Yaml)>, String> {
    let provider = provider(spec, rule, options)?;
    let bound = |max: Option<f64>, min: Option<f64>| -> Vec<String> {
        max.map(|m| format!("result[0] <= {}", number(m)))
            .into_iter()
            .chain(min.map(|m| format!("result[0] >= {}", number(m))))
            .collect()
    };
    let mut entries = vec![("interval", s(go_duration(rule.interval)))];
    if step {
        entries.push(("count", Yaml::Int(i64::from(rule.count))));
    }
    let failed: Vec<String> = bound(rule.max, rule.min);
    if rule.pass_max.is_some() || rule.pass_min.is_some() {
        // Between the pass bound and the failure bound a measurement is inconclusive.
        let pass = bound(rule.pass_max, rule.pass_min).join(" && ");
        let fail: Vec<String> = rule
            .max
            .map(|m| format!("result[0] > {}", number(m)))
            .into_iter()
            .chain(rule.min.map(|m| format!("result[0] < {}", number(m))))
            .collect();
        entries.push(("successCondition", s(pass)));
        if !fail.is_empty() {
            entries.push(("failureCondition", s(fail.join(" || "))));
        }
        entries.push((
            "inconclusiveLimit",
            Yaml::Int(i64::from(rule.inconclusive_limit)),
        ));
    } else if !failed.is_empty() {
        entries.push(("successCondition", s(failed.join(" && "))));
    }
    entries.push(("failureLimit", Yaml::Int(i64::from(rule.failure_limit))));
    entries.push((
        "consecutiveErrorLimit",
        Yaml::Int(i64::from(rule.consecutive_error_limit)),
    ));
    entries.push(("provider", provider));
    Ok(entries)
}

fn provider(spec: &Spec, rule: &Rule, options: &ArgoOptions) -> Result<Yaml, String> {
    let prometheus = |address: &str, query: String| {
        map(vec![(
            "prometheus",
            map(vec![("address", s(address)), ("query", s(query))]),
        )])
    };
    match &rule.source {
        Source::Prometheus { url, query } => Ok(prometheus(url, query.clone())),
        Source::Web { url, pointer } => Ok(map(vec![(
            "web",
            map(vec![
                ("url", s(url)),
                ("jsonPath", s(json_path(pointer))),
            ]),
        )])),
        Source::Gateway(metric) => {
            let query = gateway_query(spec, *metric, rule.window)?;
            let Some(address) = &options.prometheus else {
                return Err("it reads the gateway's window: give `--prometheus URL`, the Prometheus that scrapes the in-cluster gateway".to_owned());
            };
            Ok(prometheus(address, query))
        }
        Source::JudgeErrorRate { .. } | Source::JudgeLatency { .. } => Err(
            "a statistical judge against stable has no Argo Rollouts provider: leave it out of the exported spec, or bound the candidate alone".to_owned(),
        ),
    }
}

/// A JSON pointer (`/data/score`) as the JSONPath Argo's web provider takes (`{$.data.score}`).
fn json_path(pointer: &str) -> String {
    let mut path = String::from("{$");
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token.chars().all(|c| c.is_ascii_digit()) && !token.is_empty() {
            path.push_str(&format!("[{token}]"));
        } else {
            path.push('.');
            path.push_str(&token);
        }
    }
    path.push('}');
    path
}

/// The PromQL for a gateway-window metric of the candidate, over the metrics the gateway
/// exports (`sluice_gateway_*`), on a window of `window`.
fn gateway_query(spec: &Spec, metric: Metric, window: Duration) -> Result<String, String> {
    let labels = format!(
        "route={},version={}",
        serde_json::Value::String(spec.route.clone()),
        serde_json::Value::String(spec.candidate.clone())
    );
    let range = format!("{}s", window.as_secs().max(1));
    let requests = format!("sum(rate(sluice_gateway_requests_total{{{labels}}}[{range}]))");
    let quantile = |histogram: &str| {
        format!(
            "1000 * histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket{{{labels}}}[{range}])))"
        )
    };
    match metric {
        // Errors as the gateway's window counts them: every class but ok, client_closed and
        // 4xx (a malformed request is the client's doing).
        Metric::ErrorRate => Ok(format!(
            "sum(rate(sluice_gateway_requests_total{{{labels},class!~\"ok|client_closed|4xx\"}}[{range}])) / {requests}"
        )),
        Metric::LatencyP99 => Ok(quantile("sluice_gateway_request_duration_seconds")),
        Metric::TtftP99 => Ok(quantile("sluice_gateway_ttft_seconds")),
        Metric::RefusalRate => Ok(format!(
            "sum(rate(sluice_gateway_refusals_total{{{labels}}}[{range}])) / {requests}"
        )),
        Metric::SafetyViolationRate => Err(
            "the gateway's safety counter counts kinds, not answers: give a `source: {prometheus: …}` rule of your own".to_owned(),
        ),
        Metric::Feedback | Metric::ShadowSimilarity => Err(format!(
            "no Prometheus series carries `{}`: give a `source: {{prometheus: …}}` or `web` rule instead",
            metric.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use sluice_config::{Document, MapEnv};

    use super::*;

    fn spec(text: &str) -> Spec {
        let document = Document::parse("rollout.yaml", text, &MapEnv::default())
            .unwrap_or_else(|e| panic!("{e}"));
        Spec::from_document(&document, &MapEnv::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    const CANARY: &str = "name: Chat Canary\ngateway: {admin_url: \"http://127.0.0.1:8081\"}\nroute: chat\nstable: stable\ncandidate: candidate\nstrategy:\n  canary:\n    steps:\n      - set_weight: 10\n      - pause: {duration: 90s}\n      - analysis:\n          count: 3\n          rules: [{metric: ttft_p99_ms, max: 2000, window: 30s}]\n      - set_weight: 50\n      - pause: {}\n      - set_weight: 100\nanalysis:\n  rules:\n    - {metric: error_rate, max: 0.05, window: 60s, interval: 1500ms, failure_limit: 1}\n    - {metric: http_5xx, max: 0.01, source: {prometheus: {url: \"http://prom:9090\", query: \"sum(rate(x[1m]))\"}}}\n    - {metric: score, min: 0.8, source: {web: {url: \"http://judge/score\", pointer: /data/items/0/score}}}\n";

    #[test]
    fn a_canary_becomes_a_rollout_and_its_analysis_templates() {
        let spec = spec(CANARY);
        let options = ArgoOptions {
            prometheus: Some("http://prometheus.monitoring:9090".into()),
            ..ArgoOptions::from_spec(&spec)
        };
        let text = argo_rollouts(&spec, &options).unwrap_or_else(|e| panic!("{e:?}"));
        for line in [
            "kind: Rollout",
            "  name: chat-canary",
            "    name: candidate",
            "      stableService: chat-stable",
            "      canaryService: chat-candidate",
            "          argoproj-labs/gatewayAPI:",
            "            httpRoute: chat",
            "        - setWeight: 10",
            "        - pause:\n            duration: \"90s\"",
            "        - pause: {}",
            "              - templateName: chat-canary-step-3",
            "          - templateName: chat-canary-analysis",
            "    - name: error-rate\n      interval: \"1500ms\"\n      successCondition: \"result[0] <= 0.05\"\n      failureLimit: 1",
            "sluice_gateway_requests_total{route=\\\"chat\\\",version=\\\"candidate\\\",class!~\\\"ok|client_closed|4xx\\\"}[60s]",
            "        web:\n          url: \"http://judge/score\"\n          jsonPath: \"{$.data.items[0].score}\"",
            "      successCondition: \"result[0] >= 0.8\"",
            "  name: chat-canary-step-3",
            "      count: 3",
            "histogram_quantile(0.99, sum by (le) (rate(sluice_gateway_ttft_seconds_bucket",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert_eq!(text.matches("---\n").count(), 3, "{text}");
    }

    #[test]
    fn what_argo_rollouts_cannot_say_is_refused_by_name() {
        let spec = spec(
            "name: r\ngateway: {admin_url: \"http://x\"}\nroute: chat\nstable: a\ncandidate: b\nstrategy:\n  shadow: {percent: 20, duration: 60s}\nanalysis:\n  rules:\n    - {metric: error_rate, max: 0.05}\n    - {metric: error_rate_vs_stable, confidence: 0.95}\n    - {metric: feedback, min: 0.5}\n",
        );
        let problems = argo_rollouts(&spec, &ArgoOptions::from_spec(&spec)).unwrap_err();
        let all = problems.join("\n");
        assert!(
            all.contains("(shadow: 20) has no Argo Rollouts canary step"),
            "{all}"
        );
        assert!(
            all.contains("(`error_rate`): it reads the gateway's window: give `--prometheus URL`"),
            "{all}"
        );
        assert!(all.contains("statistical judge"), "{all}");
        assert!(
            all.contains("no Prometheus series carries `feedback`"),
            "{all}"
        );
    }

    #[test]
    fn names_and_durations_are_what_kubernetes_and_go_read() {
        assert_eq!(kube_name("Chat_Canary v2!"), "chat-canary-v2");
        assert_eq!(kube_name("--"), "x");
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(json_path("/a~1b/0"), "{$.a/b[0]}");
        assert_eq!(number(5.0), "5.0");
        assert_eq!(number(0.05), "0.05");
    }
}
