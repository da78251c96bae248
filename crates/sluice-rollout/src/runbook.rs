//! The runbook generated for every rollout: the manual rollback procedure, filled in with this
//! rollout's route, versions, gateway and receivers, for whoever is on call when the automation
//! is not enough (the controller is down, the gateway refuses weights).

use crate::spec::{Alert, Spec, Step};

/// The runbook, in Markdown.
pub fn runbook(spec: &Spec, run: &str) -> String {
    // The admin API takes JSON only (a cross-site form cannot reach it), and a token when set.
    let auth = if spec.admin_token.is_some() {
        " -H 'content-type: application/json' -H \"authorization: Bearer $SLUICE_ADMIN_TOKEN\""
    } else {
        " -H 'content-type: application/json'"
    };
    let admin = spec.admin_url.as_deref().unwrap_or("http://GATEWAY-ADMIN");
    let steps: Vec<String> = spec
        .steps
        .iter()
        .map(|s| match s {
            Step::SetWeight(w) => format!("set weight {w} %"),
            Step::Pause(Some(d)) => format!("pause {} s", d.as_secs_f64()),
            Step::Pause(None) => "pause until promoted".to_owned(),
            Step::Shadow(0) => "stop mirroring".to_owned(),
            Step::Shadow(p) => format!("mirror {p} % to the candidate"),
            Step::Flag(true) => "feature-flag segments on".to_owned(),
            Step::Flag(false) => "feature-flag segments off".to_owned(),
            Step::StartCandidate(i) => format!("start candidate instance(s) {i:?}"),
            Step::StopStable(i) => format!("stop stable instance(s) {i:?}"),
            Step::Analysis(rules) => {
                let names: Vec<String> = rules
                    .iter()
                    .filter_map(|i| spec.rules.get(*i))
                    .map(|r| format!("`{}` ×{}", r.describe(), r.count))
                    .collect();
                format!("analysis until {} pass", names.join(", "))
            }
        })
        .collect();
    let mut also = String::new();
    if spec.flag.is_some() {
        also.push_str(&format!(
            "   The feature flag's segments also send requests to the candidate; turn them off:

   ```sh
   curl -X PUT{auth} {admin}/admin/routes/{route}/segments/{candidate} -d '{{\"segments\": []}}'
   ```

",
            route = spec.route,
            candidate = spec.candidate,
        ));
    }
    let restart: Vec<String> = spec
        .instances
        .stable
        .iter()
        .filter_map(|i| i.command.as_ref().map(|c| format!("   {c}")))
        .collect();
    if !restart.is_empty() {
        let urls: Vec<String> = spec
            .instances
            .stable
            .iter()
            .map(|i| format!("\"{}\"", i.url))
            .collect();
        also.push_str(&format!(
            "   Stable instances the rollout stopped must come back: start any that is down and give
   the stable version all of them:

   ```sh
{restart}
   curl -X PUT{auth} {admin}/admin/routes/{route}/versions/{stable}/upstreams -d '{{\"urls\": [{urls}]}}'
   ```

",
            restart = restart.join("\n"),
            urls = urls.join(", "),
            route = spec.route,
            stable = spec.stable,
        ));
    }
    let rules: Vec<String> = spec
        .rules
        .iter()
        .map(|r| {
            format!(
                "- `{}` over {} s, at least {} samples, every {} ms (failures allowed: {}, errors in a row: {})",
                r.describe(),
                r.window.as_secs(),
                r.min_samples,
                r.interval.as_millis(),
                r.failure_limit,
                r.consecutive_error_limit
            )
        })
        .collect();
    let receivers: Vec<String> = spec
        .alerts
        .iter()
        .map(|a| match a {
            Alert::Webhook(url) => format!("- webhook {url}"),
            Alert::Slack(url) => format!("- Slack {url}"),
            Alert::PagerDuty { url, .. } => format!("- PagerDuty {url}"),
        })
        .collect();
    let (name, route, stable, candidate) = (&spec.name, &spec.route, &spec.stable, &spec.candidate);
    format!(
        "# Runbook: rollout `{name}` (run {run})

Route `{route}` on the gateway at {admin}: stable `{stable}`, candidate `{candidate}`.
Steps: {steps}.

Automatic rollback triggers when a rule fails:
{rules}

Alerts go to:
{receivers}

## Roll back by hand

1. **Take all traffic off the candidate** (this is what the controller does first):

   ```sh
   curl -X PUT{auth} {admin}/admin/routes/{route}/weights -d '{{\"{stable}\": 100, \"{candidate}\": 0}}'
   ```

{also}2. **Stop the rollout** so that the controller does not move traffic again:

   ```sh
   sluice rollout abort {name} --reason \"manual rollback\"
   ```

   If no controller is running, the rollout stays `running` in the store until
   `sluice rollout start <spec>` resumes it; `abort` first, then start it once to close it.

3. **Check** that the candidate gets nothing and the stable version is healthy:

   ```sh
   curl{auth} '{admin}/admin/windows?seconds=60'
   sluice rollout status {name}
   ```

   The candidate's `in_flight` must fall to 0; the stable version's `error_rate` and
   `latency_p99_ms` must be back to normal.

4. **Record** what happened: `sluice rollout history {name}` lists every transition,
   measurement and the rollback event with its metrics snapshot.
",
        steps = steps.join(" → "),
        rules = if rules.is_empty() {
            "- (no rules: nothing rolls back automatically)".to_owned()
        } else {
            rules.join("\n")
        },
        receivers = if receivers.is_empty() {
            "- (no receivers configured)".to_owned()
        } else {
            receivers.join("\n")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{blue_green_steps, default_rules};
    use std::time::Duration;

    #[test]
    fn the_runbook_names_this_rollout() {
        let spec = Spec {
            name: "chat-v2".into(),
            admin_url: Some("http://127.0.0.1:8081".into()),
            admin_token: Some("secret".into()),
            route: "chat".into(),
            stable: "v1".into(),
            candidate: "v2".into(),
            steps: blue_green_steps(Duration::from_secs(30), Duration::from_secs(60), true),
            rules: default_rules(),
            cooldown: Duration::ZERO,
            alerts: vec![Alert::Webhook("http://hooks/x".into())],
            flag: None,
            instances: Default::default(),
            promote_alias: None,
        };
        let text = runbook(&spec, "rollout-1");
        assert!(text.contains("curl -X PUT -H 'content-type: application/json' -H \"authorization: Bearer $SLUICE_ADMIN_TOKEN\" http://127.0.0.1:8081/admin/routes/chat/weights -d '{\"v1\": 100, \"v2\": 0}'"), "{text}");
        assert!(text.contains("sluice rollout abort chat-v2"), "{text}");
        assert!(text.contains("`error_rate <= 0.05` over 300 s"), "{text}");
        assert!(text.contains("- webhook http://hooks/x"), "{text}");
        assert!(
            !text.contains("secret"),
            "the token itself is never written"
        );
        assert!(
            !format!("{spec:?}").contains("\"secret\""),
            "Debug never shows the token"
        );
    }
}
