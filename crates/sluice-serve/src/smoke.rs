//! Smoke tests in production: a command (typically `sluice eval -c smoke.yaml` against the
//! production endpoint — its exit code is its verdict) run every `every`; each run is stored
//! (`smoke:NAME`), and after `alert_after` failures in a row an alert opens (`alert:smoke`,
//! sent to the rule's receivers), to resolve at the next pass.
//!
//! In `monitor.yaml`:
//!
//! ```yaml
//! smoke:
//!   - name: production
//!     command: sluice eval -c evals/smoke.yaml --no-write
//!     every: 10m
//!     timeout: 5m
//!     alert_after: 3
//!     severity: critical
//!     webhook: https://hooks.example.com/alerts
//! ```

use std::time::Duration;

use serde_json::json;
use sluice_rollout::spec::Alert;
use sluice_store::{NewEvent, Store};
use tokio::sync::watch;

/// One smoke test.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeTest {
    /// Its name.
    pub name: String,
    /// What runs (`sh -c`); exit 0 passes.
    pub command: String,
    /// How often.
    pub every: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Failures in a row before the alert opens.
    pub alert_after: u32,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Where the alert goes.
    pub receivers: Vec<Alert>,
}

/// Runs the command once: whether it passed, and a line about it.
async fn run_once(test: &SmokeTest) -> (bool, String) {
    let child = tokio::process::Command::new("sh")
        .args(["-c", &test.command])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return (false, format!("could not start: {error}")),
    };
    match tokio::time::timeout(test.timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => (true, "passed".to_owned()),
        Ok(Ok(status)) => (false, format!("failed ({status})")),
        Ok(Err(error)) => (false, format!("could not be waited for: {error}")),
        Err(_) => (false, format!("ran past its timeout of {:?}", test.timeout)),
    }
}

/// Runs `test`, stores the run, and opens or resolves its alert.
pub async fn check(store: &Store, test: &SmokeTest) -> Result<(), sluice_store::StoreError> {
    let (passed, detail) = run_once(test).await;
    let subject = format!("smoke:{}", test.name);
    store
        .append_events(vec![NewEvent {
            subject: subject.clone(),
            kind: "run".into(),
            payload: json!({"name": test.name, "passed": passed, "detail": detail}),
        }])
        .await?;
    let runs = crate::feedback::all_events(store, &subject).await?;
    let failing = runs
        .iter()
        .rev()
        .take_while(|e| e.payload["passed"] == false)
        .count();
    let alerts = crate::feedback::all_events(store, "alert:smoke").await?;
    let open = alerts
        .iter()
        .rev()
        .find(|e| e.payload["rule"] == test.name.as_str())
        .is_some_and(|e| e.kind == "fired");
    let kind = match (passed, open) {
        (false, false) if failing >= test.alert_after as usize => "fired",
        (true, true) => "resolved",
        _ => return Ok(()),
    };
    let payload = json!({
        "kind": if kind == "fired" { "alert" } else { "alert_resolved" },
        "summary": if kind == "fired" {
            format!("[{}] smoke test {} failed {failing} times in a row: {detail}", test.severity, test.name)
        } else {
            format!("smoke test {} passes again", test.name)
        },
        "id": format!("smoke:{}", test.name),
        "rule": test.name,
        "route": "smoke",
        "version": test.name,
        "severity": test.severity,
        "failures_in_a_row": failing,
        "sent": true,
    });
    store
        .append_events(vec![NewEvent {
            subject: "alert:smoke".into(),
            kind: kind.into(),
            payload: payload.clone(),
        }])
        .await?;
    if !test.receivers.is_empty() {
        drop(sluice_rollout::alert::send(&test.receivers, payload));
    }
    Ok(())
}

/// Runs `test` every `every` until `shutdown`.
pub async fn run(store: Store, test: SmokeTest, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(error) = check(&store, &test).await {
            tracing::warn!(%error, smoke = %test.name, "The smoke test's result could not be stored.");
        }
        tokio::select! {
            () = tokio::time::sleep(test.every) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}
