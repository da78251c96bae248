//! Alerts: a rollout event sent to generic JSON webhooks, Slack-compatible incoming webhooks
//! and PagerDuty Events v2, each retried a few times in the background so that a slow or
//! failing receiver never holds up a rollback.

use serde_json::{Value, json};
use tracing::warn;

use sluice_registry::webhook;

use crate::spec::Alert;

/// Attempts per receiver.
const ATTEMPTS: u32 = 3;

/// The body each kind of receiver gets for `event` (a JSON object with `summary`).
pub fn body(alert: &Alert, event: &Value) -> Value {
    let summary = event
        .get("summary")
        .and_then(Value::as_str)
        .unwrap_or("rollout event")
        .to_owned();
    match alert {
        Alert::Webhook(_) => event.clone(),
        Alert::Slack(_) => json!({"text": summary}),
        Alert::PagerDuty { routing_key, .. } => json!({
            "routing_key": routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": event.get("id"),
            "payload": {
                "summary": summary,
                "source": "sluice",
                "severity": if event.get("kind").and_then(Value::as_str) == Some("rollback") { "error" } else { "info" },
                "custom_details": event,
            },
        }),
    }
}

fn url(alert: &Alert) -> &str {
    match alert {
        Alert::Webhook(url) | Alert::Slack(url) => url,
        Alert::PagerDuty { url, .. } => url,
    }
}

/// Sends `event` to every receiver in the background; the returned task ends when all have
/// been delivered or have used up their attempts.
pub fn send(alerts: &[Alert], event: Value) -> tokio::task::JoinHandle<()> {
    let alerts = alerts.to_vec();
    tokio::spawn(async move {
        let client = match webhook::client() {
            Ok(client) => client,
            Err(error) => {
                warn!(%error, "Cannot build the alert client.");
                return;
            }
        };
        let sends = alerts.iter().map(|alert| {
            let (client, body) = (client.clone(), body(alert, &event));
            async move {
                // Failures are logged by the sender; an alert never holds up a rollback.
                let _ = webhook::deliver(&client, url(alert), &body, ATTEMPTS).await;
            }
        });
        futures_util::future::join_all(sends).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_receiver_gets_its_own_shape() {
        let event = json!({"id": "r-1-rollback", "kind": "rollback", "summary": "rolled back"});
        assert_eq!(body(&Alert::Webhook("u".into()), &event), event);
        assert_eq!(
            body(&Alert::Slack("u".into()), &event),
            json!({"text": "rolled back"})
        );
        let pd = body(
            &Alert::PagerDuty {
                url: "u".into(),
                routing_key: "k".into(),
            },
            &event,
        );
        assert_eq!(pd["routing_key"], "k");
        assert_eq!(pd["payload"]["severity"], "error");
        assert_eq!(pd["dedup_key"], "r-1-rollback");
    }
}
