//! JSON webhooks, delivered the one way every part does it: a POST with a per-attempt timeout,
//! tried up to a number of times with a growing pause, a refusal or an unreachable receiver
//! reported (never raised: a notification that fails never undoes what it announces). Alias
//! moves are told to the registry's webhooks with it; rollouts send their alerts with it.

use std::time::Duration;

use serde_json::Value;
use tracing::warn;

/// Timeout of each attempt.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The client webhooks are sent with.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the webhook client: {e}"))
}

/// Posts `body` to `url`, up to `attempts` times (250 ms, then 500 ms, … between them);
/// `Err` says why the last attempt failed.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    attempts: u32,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match client.post(url).json(body).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = format!("{url}: answered {}", response.status()),
            Err(error) => last = format!("{url}: {error}"),
        }
        warn!(failure = %last, attempt, "A webhook was not delivered.");
        if attempt < attempts {
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        }
    }
    Err(last)
}
