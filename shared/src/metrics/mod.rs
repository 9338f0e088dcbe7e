//! CloudWatch metrics through the embedded metric format (EMF): a JSON log line with an `_aws`
//! object becomes a metric without any API call (`_aws.Timestamp` in Unix milliseconds,
//! `_aws.CloudWatchMetrics[]` naming the namespace, the dimension sets and the metrics whose
//! values are members of the same line). Dimensions stay few, since each distinct metric name
//! and dimension set is billed as a custom metric: never a project id (that goes in the line
//! as a plain field). The metrics, the dimension scheme and their cost: `docs/metrics.md`.
//!
//! - [`batch`]: the lines of one invocation (records, pushes, delivery lag);
//! - [`lag`]: the delivery lag as a distribution CloudWatch takes percentiles of;
//! - [`stream_suspended`]: the line of one suspension.

pub mod batch;
pub mod lag;

use std::sync::{Arc, Mutex};

use serde_json::json;
use time::OffsetDateTime;

use crate::domain::{DestinationType, ProjectId};

pub use batch::{BatchMetrics, PushCounts};
pub use lag::LagHistogram;

pub const NAMESPACE: &str = "EventLogStreaming";
pub const STREAM_SUSPENDED: &str = "StreamSuspended";

/// Where metric lines go.
#[derive(Debug, Clone, Default)]
pub enum MetricsOut {
    /// Standard output, which Lambda sends to CloudWatch Logs.
    #[default]
    Stdout,
    /// Kept in memory, for a test to read back.
    Kept(Arc<Mutex<Vec<String>>>),
}

impl MetricsOut {
    pub fn kept() -> Self {
        Self::Kept(Arc::default())
    }

    pub fn emit(&self, line: &str) {
        match self {
            Self::Stdout => println!("{line}"),
            Self::Kept(lines) => lines.lock().unwrap().push(line.to_owned()),
        }
    }

    /// The lines kept so far; none for standard output.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Stdout => Vec::new(),
            Self::Kept(lines) => lines.lock().unwrap().clone(),
        }
    }
}

/// EMF's `Timestamp`: Unix milliseconds.
fn timestamp(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The line that counts one suspension (no dimension: operators alarm on the sum).
pub fn stream_suspended(
    at: OffsetDateTime,
    project: &ProjectId,
    destination: DestinationType,
) -> String {
    json!({
        "_aws": {
            "Timestamp": timestamp(at),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": STREAM_SUSPENDED, "Unit": "Count"}],
            }],
        },
        STREAM_SUSPENDED: 1,
        "project_id": project.as_str(),
        "destination_type": destination.as_str(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_suspension_is_one_count_without_dimensions() {
        let line = stream_suspended(
            datetime!(2026-11-24 10:00 UTC),
            &ProjectId::parse("p-1").unwrap(),
            DestinationType::Datadog,
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([[]]));
        assert_eq!(directive["Metrics"][0]["Name"], STREAM_SUSPENDED);
        assert_eq!(value[STREAM_SUSPENDED], 1);
        assert_eq!(value["_aws"]["Timestamp"], 1_795_514_400_000_i64);
        assert_eq!(value["project_id"], "p-1");
    }

    #[test]
    fn kept_lines_are_read_back_in_order() {
        let out = MetricsOut::kept();
        out.emit("a");
        out.clone().emit("b");
        assert_eq!(out.lines(), ["a", "b"]);
        assert!(MetricsOut::Stdout.lines().is_empty());
    }
}
