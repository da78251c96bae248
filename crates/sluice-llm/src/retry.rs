//! When and how long to wait before retrying a request.
//!
//! Retries happen on connect errors and on 408, 409, 429 and 5xx responses, never once a stream
//! has delivered its first byte. The wait is the server's `retry-after-ms` or `retry-after`
//! (seconds or an HTTP date) when given, else exponential backoff with jitter; both are capped.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// How many times to retry and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry.
    pub initial_backoff: Duration,
    /// Cap on computed backoff.
    pub max_backoff: Duration,
    /// Cap on a server-requested wait; a longer request is clamped to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Exponential backoff for retry number `retry` (0-based), with up to 25 % jitter taken off.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(16)));
        let capped = exponential.min(self.max_backoff);
        capped.mul_f64(1.0 - 0.25 * fastrand::f64())
    }

    /// The wait before the next attempt after a retryable response.
    pub fn delay_after(&self, headers: &HeaderMap, retry: u32, now: SystemTime) -> Duration {
        match retry_after(headers, now) {
            Some(wait) => wait.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// Whether a status may succeed when retried.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The server's explicit `x-should-retry` verdict, when present.
pub fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The wait a server asked for: `retry-after-ms`, else `retry-after` as seconds or HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok())
        && let Ok(ms) = ms.trim().parse::<f64>()
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        // retry-after-ms wins over retry-after.
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "10"), ("retry-after", "5")]),
                now
            ),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn server_waits_are_capped_and_backoff_grows_with_jitter() {
        let policy = RetryPolicy::default();
        let wait = policy.delay_after(&headers(&[("retry-after", "100000")]), 0, SystemTime::now());
        assert_eq!(wait, policy.max_retry_after);
        for retry in 0..6 {
            let backoff = policy.backoff(retry);
            let full = policy
                .initial_backoff
                .saturating_mul(1 << retry)
                .min(policy.max_backoff);
            assert!(
                backoff <= full && backoff >= full.mul_f64(0.75),
                "{retry}: {backoff:?}"
            );
        }
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 409, 429, 500, 502, 503] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
