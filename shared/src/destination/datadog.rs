//! Datadog logs intake v2: `POST https://http-intake.logs.{site}/api/v2/logs`, a JSON array of
//! logs, gzip, `DD-API-KEY`.
//!
//! Each log is `{ddsource, service, ddtags:"project_id:<id>", message:<record JSON as a
//! string>, timestamp:<unix ms>}`. Datadog parses a message that is a JSON object into
//! attributes, so customers can facet on `action`, `status` and the rest of the record.
//! Limits per the intake's documentation: 1,000 logs and 5 MB uncompressed per request, 1 MB
//! per log (larger ones are truncated, yet still answered 202).

use serde::Serialize;

use super::{Limits, LogLabels};
use crate::event::EventRecord;

pub const LOGS_PATH: &str = "/api/v2/logs";

pub const LIMITS: Limits = Limits {
    max_record_bytes: 1_000_000,
    // Below the 5 MB limit with room for the envelope and escaping differences.
    max_request_bytes: 4_250_000,
    max_entries: 1000,
};

#[derive(Serialize)]
struct DatadogLog<'a> {
    ddsource: &'a str,
    service: &'a str,
    ddtags: String,
    message: &'a str,
    timestamp: i64,
}

pub fn encode_entry(record: &EventRecord, labels: &LogLabels) -> String {
    let millis = record.event_time.unix_timestamp_nanos() / 1_000_000;
    let log = DatadogLog {
        ddsource: &labels.source,
        service: &labels.service,
        ddtags: format!("project_id:{}", record.project_id),
        message: record.line(),
        timestamp: i64::try_from(millis).unwrap_or(i64::MAX),
    };
    serde_json::to_string(&log).expect("a log always serializes")
}

pub fn encode_body<'a>(entries: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4096);
    body.push(b'[');
    for (i, entry) in entries.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(entry.as_bytes());
    }
    body.push(b']');
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::tests_support::{golden, records};

    #[test]
    fn the_logs_body_matches_the_golden_file() {
        let labels = LogLabels {
            source: "stytch".into(),
            service: "stytch.auth".into(),
        };
        let records = records();
        let entries: Vec<String> = records.iter().map(|r| encode_entry(r, &labels)).collect();
        let body = encode_body(entries.iter().map(String::as_str));
        golden("datadog_logs.json", &body);

        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let first = &parsed[0];
        assert_eq!(first["ddsource"], "stytch");
        assert_eq!(first["service"], "stytch.auth");
        assert_eq!(first["ddtags"], "project_id:project-test-1");
        assert_eq!(first["message"].as_str().unwrap(), records[0].line());
        assert!(first["timestamp"].is_i64());
    }
}
