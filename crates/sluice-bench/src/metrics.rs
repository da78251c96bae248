//! Latency metrics: one HdrHistogram per metric, in microseconds with 3 significant digits, and
//! the summary statistics reports use (mean, std, min, max and percentiles).

use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// The percentiles every metric reports.
pub const PERCENTILES: &[f64] = &[50.0, 90.0, 95.0, 99.0, 99.9];

/// One metric's samples.
#[derive(Debug, Clone)]
pub struct Metric {
    histogram: Histogram<u64>,
}

impl Default for Metric {
    fn default() -> Self {
        Self {
            // Up to an hour; longer values are clamped to it.
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|e| unreachable!("constant histogram bounds are valid: {e}")),
        }
    }
}

/// An embedded histogram that [`Metric::decode`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not base64.
    #[error("the histogram is not base64")]
    NotBase64,
    /// Not a serialised histogram.
    #[error("the histogram cannot be read: {0}")]
    Unreadable(String),
    /// Values beyond this build's histogram range.
    #[error("the histogram does not fit: {0}")]
    DoesNotFit(String),
}

impl Metric {
    /// Records one duration.
    pub fn record(&mut self, value: Duration) {
        let micros = u64::try_from(value.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, self.histogram.high());
        self.histogram.saturating_record(micros);
    }

    /// Records one duration `count` times.
    pub fn record_n(&mut self, value: Duration, count: u64) {
        let micros = u64::try_from(value.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, self.histogram.high());
        let _ = self.histogram.record_n(micros, count);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Adds another metric's samples.
    pub fn merge(&mut self, other: &Metric) {
        // Both share bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// The summary, in milliseconds.
    pub fn stats(&self) -> Stats {
        let h = &self.histogram;
        let ms = |micros: f64| micros / 1000.0;
        if h.is_empty() {
            return Stats::default();
        }
        Stats {
            count: h.len(),
            mean: ms(h.mean()),
            std: ms(h.stdev()),
            min: ms(h.min() as f64),
            max: ms(h.max() as f64),
            median: ms(h.value_at_quantile(0.5) as f64),
            percentiles: PERCENTILES
                .iter()
                .map(|p| (*p, ms(h.value_at_percentile(*p) as f64)))
                .collect(),
        }
    }

    /// The histogram in HdrHistogram's compressed V2 format, base64: what result files embed
    /// so that runs can be compared or merged without their raw samples.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        match V2DeflateSerializer::new().serialize(&self.histogram, &mut bytes) {
            Ok(_) => base64(&bytes),
            Err(_) => String::new(),
        }
    }

    /// Reads [`Metric::encode`]'s output.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let bytes = unbase64(text).ok_or(DecodeError::NotBase64)?;
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| DecodeError::Unreadable(format!("{e:?}")))?;
        let mut metric = Metric::default();
        metric
            .histogram
            .add(&histogram)
            .map_err(|e| DecodeError::DoesNotFit(format!("{e:?}")))?;
        Ok(metric)
    }
}

/// Summary statistics of one metric, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub std: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Median.
    pub median: f64,
    /// `(percentile, value)` for each of [`PERCENTILES`].
    pub percentiles: Vec<(f64, f64)>,
}

impl Stats {
    /// The value at percentile `p` (one of [`PERCENTILES`]).
    pub fn percentile(&self, p: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(q, _)| (q - p).abs() < 1e-9)
            .map(|(_, v)| *v)
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut n, mut bits) = (0u32, 0);
    for c in text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let value = ALPHABET.iter().position(|a| *a == c)? as u32;
        n = n << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_come_from_the_histogram_in_milliseconds() {
        let mut metric = Metric::default();
        for ms in 1..=100u64 {
            metric.record(Duration::from_millis(ms));
        }
        let stats = metric.stats();
        assert_eq!(stats.count, 100);
        assert!((stats.mean - 50.5).abs() < 0.1, "{stats:?}");
        assert!((stats.median - 50.0).abs() < 0.1, "{stats:?}");
        assert!((stats.percentile(99.0).unwrap() - 99.0).abs() < 0.1);
        assert!((stats.max - 100.0).abs() < 0.1);
        assert_eq!(Metric::default().stats().count, 0);
    }

    #[test]
    fn histograms_survive_encoding_and_merge() {
        let mut a = Metric::default();
        a.record(Duration::from_micros(1500));
        a.record(Duration::from_millis(40));
        let decoded = Metric::decode(&a.encode()).unwrap();
        assert_eq!(decoded.stats(), a.stats());
        let mut merged = decoded.clone();
        merged.merge(&a);
        assert_eq!(merged.count(), 4);
        assert!(Metric::decode("not base64 !").is_err());
        assert_eq!(unbase64(&base64(b"sluice")).unwrap(), b"sluice");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
