//! Datadog logs intake v2: `POST https://http-intake.logs.{site}/api/v2/logs`, a JSON array of
//! logs, gzip, `DD-API-KEY`.
//!
//! Each log is `{ddsource, service, ddtags:"project_id:<id>[,<stream's tags>]",
//! message:<record JSON as a string>, timestamp:<unix ms>}`. `ddsource` and `service` are always
//! the product's; a stream's `tags` only add to `ddtags` (they cannot name `source`, `service`,
//! `host` or `project_id`). Datadog parses a message that is a JSON object into attributes, so
//! customers can facet on `action`, `status` and the rest of the record.
//! Limits per the intake's documentation: 1,000 logs and 5 MB uncompressed per request, 1 MB
//! per log (larger ones are truncated, yet still answered 202).

use super::{Limits, LogLabels, write_json};
use crate::domain::controls::DatadogTags;
use crate::event::EventRecord;

pub const LOGS_PATH: &str = "/api/v2/logs";

pub const LIMITS: Limits = Limits {
    max_record_bytes: 1_000_000,
    // Below the 5 MB limit with room for the envelope and escaping differences.
    max_request_bytes: 4_250_000,
    max_entries: 1000,
};

pub fn write_head(body: &mut Vec<u8>) {
    body.push(b'[');
}

/// `{"ddsource":…,"service":…,"ddtags":"project_id:<id>[,<tag>…]","message":"<record>","timestamp":<ms>}`
/// The record's entry, its message being `line` (the record's own, or a redacted copy).
pub fn write_entry(
    body: &mut Vec<u8>,
    record: &EventRecord,
    line: &str,
    labels: &LogLabels,
    tags: Option<&DatadogTags>,
) {
    let millis = record.event_time.unix_timestamp_nanos() / 1_000_000;
    body.extend_from_slice(b"{\"ddsource\":");
    write_json(body, &labels.source);
    body.extend_from_slice(b",\"service\":");
    write_json(body, &labels.service);
    // A project id is `[A-Za-z0-9._-]`: nothing in it to escape.
    body.extend_from_slice(b",\"ddtags\":\"project_id:");
    body.extend_from_slice(record.project_id.as_str().as_bytes());
    // A parsed tag is letters, digits and `_ - : . /`: nothing to escape either.
    for tag in tags.into_iter().flat_map(DatadogTags::iter) {
        body.push(b',');
        body.extend_from_slice(tag.as_str().as_bytes());
    }
    body.extend_from_slice(b"\",\"message\":");
    write_json(body, line);
    body.extend_from_slice(b",\"timestamp\":");
    write_json(body, &i64::try_from(millis).unwrap_or(i64::MAX));
    body.push(b'}');
}

pub fn write_tail(body: &mut Vec<u8>) {
    body.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Payload;
    use crate::destination::tests_support::{golden, records};
    use crate::domain::DestinationType;

    #[test]
    fn the_logs_body_matches_the_golden_file() {
        let labels = LogLabels {
            source: "stytch".into(),
            service: "stytch.auth".into(),
        };
        let records = records();
        let mut payload = Payload::new(DestinationType::Datadog, &labels, LIMITS);
        records.iter().for_each(|r| payload.add(r));
        let body = payload.finish();
        golden("datadog_logs.json", &body);

        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let first = &parsed[0];
        assert_eq!(first["ddsource"], "stytch");
        assert_eq!(first["service"], "stytch.auth");
        assert_eq!(first["ddtags"], "project_id:project-test-1");
        assert_eq!(first["message"].as_str().unwrap(), records[0].line());
        assert!(first["timestamp"].is_i64());
    }

    #[test]
    fn a_streams_tags_follow_the_project_id_and_leave_source_and_service_alone() {
        let labels = LogLabels {
            source: "stytch".into(),
            service: "stytch.auth".into(),
        };
        let tags = DatadogTags::parse(&["Team:Identity".into(), "env:prod".into()]).unwrap();
        let records = records();
        let envelope = crate::destination::Envelope::Datadog { tags: Some(&tags) };
        let mut payload = Payload::new(envelope, &labels, LIMITS);
        records.iter().for_each(|r| payload.add(r));
        let body = payload.finish();
        golden("datadog_logs_tags.json", &body);

        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for log in parsed.as_array().unwrap() {
            assert_eq!(
                log["ddtags"],
                "project_id:project-test-1,team:identity,env:prod"
            );
            assert_eq!(log["ddsource"], "stytch");
            assert_eq!(log["service"], "stytch.auth");
        }
    }
}
