//! JSON webhooks, delivered the one way every part does it: a POST with a per-attempt timeout,
//! tried up to a number of times with a growing pause, a refusal or an unreachable receiver
//! reported (never raised: a notification that fails never undoes what it announces). Alias
//! moves are told to the registry's webhooks with it; rollouts send their alerts with it.

use std::time::Duration;

use serde_json::Value;
use tracing::warn;

/// Timeout of each attempt.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a webhook was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client could not be built.
    #[error("cannot build the webhook client")]
    Client(#[source] reqwest::Error),
    /// The receiver answered with an error status.
    #[error("{url}: answered {status}")]
    Refused {
        /// The receiver.
        url: String,
        /// Its answer.
        status: reqwest::StatusCode,
    },
    /// The receiver could not be reached (or did not answer in time).
    #[error("{url}: unreachable")]
    Unreachable {
        /// The receiver.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
}

/// The client webhooks are sent with.
pub fn client() -> Result<reqwest::Client, WebhookError> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(WebhookError::Client)
}

/// Posts `body` to `url`, up to `attempts` times (250 ms, then 500 ms, … between them);
/// `Err` says why the last attempt failed.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    attempts: u32,
) -> Result<(), WebhookError> {
    let attempts = attempts.max(1);
    let mut attempt = 1;
    loop {
        let failure = match client.post(url).json(body).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => WebhookError::Refused {
                url: url.to_owned(),
                status: response.status(),
            },
            Err(source) => WebhookError::Unreachable {
                url: url.to_owned(),
                source,
            },
        };
        warn!(error = %failure, attempt, "A webhook was not delivered.");
        if attempt == attempts {
            return Err(failure);
        }
        tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        attempt += 1;
    }
}
