//! CloudWatch metrics through the embedded metric format: a JSON log line with an `_aws`
//! object becomes a metric without any API call. Dimensions stay few, since each distinct set
//! is billed as a custom metric: never a project id (that goes in the line as a plain field).

use serde_json::json;
use time::OffsetDateTime;

use crate::domain::{DestinationType, ProjectId};

pub const NAMESPACE: &str = "EventLogStreaming";
pub const STREAM_SUSPENDED: &str = "StreamSuspended";

/// The line that counts one suspension (no dimension: operators alarm on the sum).
pub fn stream_suspended(
    at: OffsetDateTime,
    project: &ProjectId,
    destination: DestinationType,
) -> String {
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    json!({
        "_aws": {
            "Timestamp": millis as i64,
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

/// Writes a metric line to standard output, which Lambda sends to CloudWatch Logs.
pub fn emit(line: &str) {
    println!("{line}");
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
}
