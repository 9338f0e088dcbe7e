//! The delivery lag of an invocation's records as one EMF value CloudWatch takes percentiles
//! of: `{"Values": [...], "Counts": [...]}`, each value seen `Counts[i]` times. EMF takes at
//! most 100 values per metric per line, so lags are bucketed:
//! - below 10 ms, exactly (0–9 ms: 10 values);
//! - from 10 ms, 10 log-spaced buckets per decade, each reported as its geometric middle to
//!   three significant digits, so a reported lag is within 12.5 % of the true one
//!   (10^0.05 − 1 = 12.2 %, plus the rounding).
//!
//! 10 exact values and 90 buckets (10 ms to 10^10 ms, 115 days) make exactly 100: whatever the
//! lags, a line never carries more. A longer lag (none: the queues keep a message 14 days at
//! most) counts in the last bucket. CloudWatch's p50, p99 and maximum are those of the
//! reported values, so they carry the same error.

use std::time::Duration;

use serde_json::{Value, json};

/// EMF's limit of values per metric in one line.
pub const MAX_VALUES: usize = 100;
/// Lags below this many milliseconds are reported exactly.
const EXACT_BELOW_MS: u64 = 10;
const BUCKETS_PER_DECADE: f64 = 10.0;

/// How many records were delivered with each (bucketed) lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagHistogram {
    counts: [u64; MAX_VALUES],
}

impl Default for LagHistogram {
    fn default() -> Self {
        Self {
            counts: [0; MAX_VALUES],
        }
    }
}

impl LagHistogram {
    pub fn record(&mut self, lag: Duration) {
        let millis = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.counts[bucket(millis)] += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&count| count == 0)
    }

    /// The EMF value: every bucket holding a lag, as milliseconds, with its count.
    pub fn emf_value(&self) -> Value {
        let (values, counts): (Vec<f64>, Vec<u64>) = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(bucket, count)| (reported_millis(bucket), *count))
            .unzip();
        json!({"Values": values, "Counts": counts})
    }
}

fn bucket(millis: u64) -> usize {
    if millis < EXACT_BELOW_MS {
        return millis as usize;
    }
    // 10 ms is bucket 10, 100 ms bucket 20, and so on.
    let bucket = (BUCKETS_PER_DECADE * (millis as f64).log10()).floor() as usize;
    bucket.min(MAX_VALUES - 1)
}

/// The lag a bucket is reported as.
fn reported_millis(bucket: usize) -> f64 {
    if (bucket as u64) < EXACT_BELOW_MS {
        return bucket as f64;
    }
    let middle = 10f64.powf((bucket as f64 + 0.5) / BUCKETS_PER_DECADE);
    three_significant_digits(middle)
}

fn three_significant_digits(value: f64) -> f64 {
    let exponent = value.log10().floor() as i32 - 2;
    // Dividing by a power of ten that is exact, rather than multiplying by 0.1, keeps the
    // printed value short (11.2, not 11.200000000000001).
    if exponent >= 0 {
        let scale = 10f64.powi(exponent);
        (value / scale).round() * scale
    } else {
        let scale = 10f64.powi(-exponent);
        (value * scale).round() / scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn lags_below_10_ms_are_exact_and_others_fall_in_log_buckets() {
        let table = [
            (0, 0.0),
            (9, 9.0),
            (10, 11.2),
            (12, 11.2),
            (13, 14.1),
            (250, 224.0),
            (1_300, 1_410.0),
            (60_000, 56_200.0),
            (64_000, 70_800.0),
            (14 * 24 * 3_600_000, 1_120_000_000.0),
        ];
        for (lag, reported) in table {
            let mut histogram = LagHistogram::default();
            histogram.record(ms(lag));
            assert_eq!(
                histogram.emf_value(),
                json!({"Values": [reported], "Counts": [1]}),
                "{lag} ms"
            );
        }
    }

    #[test]
    fn every_reported_lag_is_within_12_5_percent_of_the_true_one() {
        for millis in (10..100_000).chain((100_000..10_000_000_000).step_by(9_999_991)) {
            let reported = reported_millis(bucket(millis));
            let error = (reported - millis as f64).abs() / millis as f64;
            assert!(error <= 0.125, "{millis} ms is reported as {reported}");
        }
    }

    #[test]
    fn a_line_never_carries_more_than_100_values() {
        let mut histogram = LagHistogram::default();
        for millis in (0..100_000).chain([u64::MAX / 2, u64::MAX]) {
            histogram.record(ms(millis));
        }
        histogram.record(Duration::MAX);
        let value = histogram.emf_value();
        let values = value["Values"].as_array().unwrap();
        assert!(values.len() <= MAX_VALUES, "{}", values.len());
        let counts: u64 = value["Counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(counts, 100_003);
    }

    #[test]
    fn an_empty_histogram_has_no_values() {
        let histogram = LagHistogram::default();
        assert!(histogram.is_empty());
        assert_eq!(histogram.emf_value(), json!({"Values": [], "Counts": []}));
    }
}
