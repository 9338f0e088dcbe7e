//! Grafana Loki push API: `POST https://{hostname}/loki/api/v1/push`, JSON body, gzip.
//!
//! Body: `{"streams":[{"stream":{labels},"values":[["<unix ns as a string>","<line>"], …]}]}`.
//! Gzipped JSON is accepted from Loki 2.2. The timestamp must be a JSON string (a number is a
//! 400). No third element (structured metadata): Loki 2.8 and installations without the
//! feature answer 400. Values are sent sorted by time, and the line is the record's exact bytes
//! (or its redacted copy, the same bytes on every attempt) with the event's own timestamp, so a
//! resent entry is a duplicate that Loki drops.
//!
//! Labels: the product's `source` and `service_name`, then the stream's own (`labels`, in name
//! order; names are `[a-zA-Z_][a-zA-Z0-9_]*`, at most 10, so 12 in all against Loki 3's default
//! of 15). A stream with a `tenant_id` is pushed with `X-Scope-OrgID` ([`super::client`]).

use super::{Limits, LogLabels, write_json};
use crate::domain::controls::LokiLabels;
use crate::event::EventRecord;

pub const PUSH_PATH: &str = "/loki/api/v1/push";

pub const LIMITS: Limits = Limits {
    // Loki 3.x's default `max_line_size`; longer lines are dropped with a 400.
    max_record_bytes: 256 * 1024,
    // Pushes well under the default 6 MB ingestion burst and the 4 MB body cap common on
    // gateways in front of Loki, so one push can always pass.
    max_request_bytes: 1024 * 1024,
    // Loki has no entry count limit; the byte limit binds first.
    max_entries: usize::MAX,
};

/// `{"streams":[{"stream":{"source":…,"service_name":…[,<stream's labels>]},"values":[`
pub fn write_head(body: &mut Vec<u8>, labels: &LogLabels, extra: Option<&LokiLabels>) {
    body.extend_from_slice(b"{\"streams\":[{\"stream\":{\"source\":");
    write_json(body, &labels.source);
    body.extend_from_slice(b",\"service_name\":");
    write_json(body, &labels.service);
    for (name, value) in extra.into_iter().flat_map(LokiLabels::iter) {
        body.push(b',');
        write_json(body, name);
        body.push(b':');
        write_json(body, value);
    }
    body.extend_from_slice(b"},\"values\":[");
}

/// `["<unix ns>","<line>"]`
/// The record's entry, its line being `line` (the record's own, or a redacted copy).
pub fn write_entry(body: &mut Vec<u8>, record: &EventRecord, line: &str) {
    body.extend_from_slice(b"[\"");
    write_json(body, &record.event_time.unix_timestamp_nanos());
    body.extend_from_slice(b"\",");
    write_json(body, line);
    body.push(b']');
}

pub fn write_tail(body: &mut Vec<u8>) {
    body.extend_from_slice(b"]}]}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Payload;
    use crate::destination::tests_support::{golden, records};
    use crate::domain::DestinationType;

    #[test]
    fn the_push_body_matches_the_golden_file() {
        let labels = LogLabels {
            source: "stytch".into(),
            service: "stytch.auth".into(),
        };
        let records = records();
        let mut payload = Payload::new(DestinationType::GrafanaLoki, &labels, LIMITS);
        records.iter().for_each(|r| payload.add(r));
        let body = payload.finish();
        golden("loki_push.json", &body);

        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let values = parsed["streams"][0]["values"].as_array().unwrap();
        assert!(
            values
                .iter()
                .all(|v| v[0].is_string() && v.as_array().unwrap().len() == 2)
        );
        assert_eq!(values[0][1].as_str().unwrap(), records[0].line());
    }

    #[test]
    fn a_streams_labels_follow_the_products_in_every_push() {
        let labels = LogLabels {
            source: "stytch".into(),
            service: "stytch.auth".into(),
        };
        let own = LokiLabels::parse(
            &[("team", "identity"), ("env", "prod \"eu\"")]
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .into(),
        )
        .unwrap();
        let records = records();
        let envelope = crate::destination::Envelope::GrafanaLoki { labels: Some(&own) };
        let mut payload = Payload::new(envelope, &labels, LIMITS);
        records.iter().for_each(|r| payload.add(r));
        let body = payload.finish();
        golden("loki_push_labels.json", &body);

        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(
            r#"{"streams":[{"stream":{"source":"stytch","service_name":"stytch.auth","env":"prod \"eu\"","team":"identity"},"values":["#
        ));
    }
}
