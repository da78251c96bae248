//! Durations as people write them in configs and flags: `60s`, `500ms`, `250us`, `2m`, `1h`,
//! or a bare number of seconds.

use std::time::Duration;

/// A text that is not a duration; it says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number where one was expected.
    #[error("`{0}`: expected a duration such as 60s, 500ms or 2m")]
    NotANumber(String),
    /// A unit other than us, ms, s, m or h.
    #[error("`{text}`: unknown unit `{unit}` (us, ms, s, m or h)")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit written.
        unit: String,
    },
    /// Negative or too large.
    #[error("`{0}`: out of range")]
    OutOfRange(String),
}

/// Parses a duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_owned()))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(DurationError::UnknownUnit {
                text: text.to_owned(),
                unit: other.to_owned(),
            });
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| DurationError::OutOfRange(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(
            parse_duration("5 parsecs").unwrap_err().to_string(),
            "`5 parsecs`: unknown unit `parsecs` (us, ms, s, m or h)"
        );
        assert_eq!(
            parse_duration("fast").unwrap_err().to_string(),
            "`fast`: expected a duration such as 60s, 500ms or 2m"
        );
    }
}
