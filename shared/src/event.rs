//! The queue's message contract.
//!
//! An SQS message body is one event log record (a JSON object), a JSON array of records, or
//! newline-delimited records (NDJSON: one JSON object per line). A record must carry
//! `project_id`; everything else is opaque and forwarded byte-for-byte,
//! which is what makes a Loki resend an exact duplicate that Loki drops. The event time is
//! the record's `timestamp` (RFC 3339 string or Unix milliseconds) when it is present and
//! valid, otherwise the message's `SentTimestamp`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::ProjectId;

/// One queue message, free of Lambda types so the same code runs in the local runner.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub message_id: String,
    pub body: String,
    /// When the producer sent the message (SQS `SentTimestamp`; for a copy read from the retry
    /// queue, the original's, carried in [`SENT_TIMESTAMP_ATTRIBUTE`]).
    pub sent_at: OffsetDateTime,
    /// Which delivery attempt this is for its records, from 1: the message's receives
    /// (`ApproximateReceiveCount`), plus, for a copy read from the retry queue, the attempts
    /// made before it was sent back ([`ATTEMPTS_ATTRIBUTE`]).
    pub attempt: u32,
}

/// Message attribute of a copy sent back: the attempts its records had before it.
pub const ATTEMPTS_ATTRIBUTE: &str = "els_attempts";
/// Message attribute of a copy sent back: the original message's `SentTimestamp` (Unix ms),
/// so that the no-backfill rule and the records' fallback event time do not change.
pub const SENT_TIMESTAMP_ATTRIBUTE: &str = "els_sent_timestamp";

/// Where a message was read from, which decides whether the attributes of a copy sent back
/// are believed. Anyone who may send to the event queue can set them too, and with them
/// stream an event sent before an enable (a backfill) or shorten or lengthen its retries; only
/// the streamer may send to the retry queue (its queue policy), so only there are they the
/// streamer's own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum MessageSource {
    /// The event queue, or any queue but the retry queue: a message is judged as first sent,
    /// by its own `SentTimestamp` and `ApproximateReceiveCount`, whatever attributes it carries.
    #[default]
    Producers,
    /// The retry queue: the message is a copy the streamer sent back, so its
    /// [`SENT_TIMESTAMP_ATTRIBUTE`] and [`ATTEMPTS_ATTRIBUTE`] are believed.
    RetryQueue,
}

impl QueueMessage {
    /// A message as first sent: attempt 1.
    pub fn new(
        message_id: impl Into<String>,
        body: impl Into<String>,
        sent_at: OffsetDateTime,
    ) -> Self {
        Self {
            message_id: message_id.into(),
            body: body.into(),
            sent_at,
            attempt: 1,
        }
    }

    /// A message as SQS delivers it, from its attributes (absent ones are taken as a first
    /// delivery sent at `received_at`). The attributes of a copy sent back count only when the
    /// message was read from the retry queue.
    pub fn from_sqs(
        message_id: impl Into<String>,
        body: impl Into<String>,
        attributes: SqsAttributes<'_>,
        received_at: OffsetDateTime,
    ) -> Self {
        let number = |value: Option<&str>| value.and_then(|v| v.trim().parse::<u32>().ok());
        let (original_sent_timestamp, attempts_before) = match attributes.source {
            MessageSource::RetryQueue => (
                attributes.original_sent_timestamp,
                attributes.attempts_before,
            ),
            MessageSource::Producers => (None, None),
        };
        let sent_at = original_sent_timestamp
            .or(attributes.sent_timestamp)
            .and_then(parse_sent_timestamp)
            .unwrap_or(received_at);
        let before = number(attempts_before).unwrap_or(0);
        let receives = number(attributes.receive_count).unwrap_or(1).max(1);
        Self {
            message_id: message_id.into(),
            body: body.into(),
            sent_at,
            attempt: before.saturating_add(receives),
        }
    }
}

/// The attributes of an SQS message that delivery needs, as read, and where it was read from.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqsAttributes<'a> {
    /// Whether [`Self::attempts_before`] and [`Self::original_sent_timestamp`] are believed.
    pub source: MessageSource,
    /// System attribute `SentTimestamp`.
    pub sent_timestamp: Option<&'a str>,
    /// System attribute `ApproximateReceiveCount`.
    pub receive_count: Option<&'a str>,
    /// Message attribute [`ATTEMPTS_ATTRIBUTE`].
    pub attempts_before: Option<&'a str>,
    /// Message attribute [`SENT_TIMESTAMP_ATTRIBUTE`].
    pub original_sent_timestamp: Option<&'a str>,
}

/// SQS's `SentTimestamp` attribute (Unix milliseconds as a decimal string).
fn parse_sent_timestamp(millis: &str) -> Option<OffsetDateTime> {
    let millis = millis.trim().parse::<i64>().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// A valid record, ready for a destination, borrowed from its message: a batch's records are
/// not copied.
#[derive(Debug, Clone)]
pub struct EventRecord<'a> {
    pub project_id: ProjectId,
    /// The record exactly as the producer wrote it.
    pub raw: &'a RawValue,
    pub event_time: OffsetDateTime,
    /// When the message carrying it was produced; decides the no-backfill rule.
    pub sent_at: OffsetDateTime,
}

impl<'a> EventRecord<'a> {
    pub fn line(&self) -> &'a str {
        self.raw.get()
    }
}

/// Why a record can never be delivered. Rejected records go to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectReason {
    MalformedJson,
    NotAnObject,
    EmptyBatch,
    InvalidProjectId,
    RecordTooLarge,
    DestinationRejected,
    /// Not delivered after the most attempts a message gets (`MAX_DELIVERY_ATTEMPTS`).
    RetriesExhausted,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::NotAnObject => "not_an_object",
            Self::EmptyBatch => "empty_batch",
            Self::InvalidProjectId => "invalid_project_id",
            Self::RecordTooLarge => "record_too_large",
            Self::DestinationRejected => "destination_rejected",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record (or a whole unreadable body) that is set aside, with why.
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    pub body: String,
    pub project_id: Option<ProjectId>,
    pub reason: RejectReason,
    pub detail: String,
}

/// A record that could not be delivered now but may be later.
#[derive(Debug, Clone)]
pub struct FailedRecord {
    /// The record exactly as the producer wrote it.
    pub body: String,
    pub project_id: ProjectId,
    /// Why, for operators (the last error).
    pub detail: std::sync::Arc<str>,
}

impl FailedRecord {
    pub fn new(record: &EventRecord<'_>, detail: &std::sync::Arc<str>) -> Self {
        Self {
            body: record.line().to_owned(),
            project_id: record.project_id.clone(),
            detail: detail.clone(),
        }
    }

    /// Set aside for good, after `attempts` attempts.
    pub fn exhausted(self, attempts: u32) -> RejectedRecord {
        RejectedRecord {
            body: self.body,
            project_id: Some(self.project_id),
            reason: RejectReason::RetriesExhausted,
            detail: format!(
                "not delivered after {attempts} attempts; last error: {}",
                self.detail
            ),
        }
    }
}

/// A JSON string's value, borrowed when it has no escapes (valid project ids never do).
fn json_str(value: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<&str>(value.get())
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_str::<String>(value.get()).map(Cow::Owned))
        .ok()
}

/// Splits a message into its records, each valid or rejected on its own.
pub fn parse_message(message: &QueueMessage) -> Vec<Result<EventRecord<'_>, RejectedRecord>> {
    let reject_whole = |reason, detail: String| {
        vec![Err(RejectedRecord {
            body: message.body.clone(),
            project_id: None,
            reason,
            detail,
        })]
    };
    let trimmed = message.body.trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(&message.body) {
            Ok(records) if records.is_empty() => reject_whole(
                RejectReason::EmptyBatch,
                "the array holds no records".into(),
            ),
            Ok(records) => records
                .into_iter()
                .map(|raw| parse_record(raw, message.sent_at))
                .collect(),
            Err(e) => reject_whole(RejectReason::MalformedJson, json_error(&e)),
        }
    } else if trimmed.starts_with('{') {
        match serde_json::from_str::<&RawValue>(&message.body) {
            Ok(raw) => vec![parse_record(raw, message.sent_at)],
            Err(_) if is_ndjson(&message.body) => message
                .body
                .lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(number, line)| parse_line(number + 1, line, message.sent_at))
                .collect(),
            Err(e) => reject_whole(RejectReason::MalformedJson, json_error(&e)),
        }
    } else {
        reject_whole(
            RejectReason::MalformedJson,
            "the body is neither a JSON object nor a JSON array".into(),
        )
    }
}

/// Several lines, the first of which is a JSON value on its own: NDJSON, as opposed to one
/// object spread over lines (which parses whole) or one broken object (whose first line is not
/// a value on its own, so it is rejected whole rather than line by line).
fn is_ndjson(body: &str) -> bool {
    let mut lines = body.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next();
    lines.next().is_some()
        && first.is_some_and(|line| serde_json::from_str::<&RawValue>(line).is_ok())
}

/// One NDJSON line: a record, or a rejection naming the line.
fn parse_line(
    number: usize,
    line: &str,
    sent_at: OffsetDateTime,
) -> Result<EventRecord<'_>, RejectedRecord> {
    match serde_json::from_str::<&RawValue>(line) {
        Ok(raw) => parse_record(raw, sent_at),
        Err(e) => Err(RejectedRecord {
            body: line.to_owned(),
            project_id: None,
            reason: RejectReason::MalformedJson,
            detail: format!("line {number}: invalid JSON at column {}", e.column()),
        }),
    }
}

/// Position only: serde_json's message could quote the producer's data.
fn json_error(e: &serde_json::Error) -> String {
    format!("invalid JSON at line {}, column {}", e.line(), e.column())
}

#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(borrow, default)]
    project_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
}

fn parse_record(
    raw: &RawValue,
    sent_at: OffsetDateTime,
) -> Result<EventRecord<'_>, RejectedRecord> {
    let reject = |reason, project_id, detail: &str| RejectedRecord {
        body: raw.get().to_owned(),
        project_id,
        reason,
        detail: detail.to_owned(),
    };
    if !raw.get().starts_with('{') {
        return Err(reject(
            RejectReason::NotAnObject,
            None,
            "a record must be a JSON object",
        ));
    }
    let head: RecordHead = serde_json::from_str(raw.get())
        .map_err(|e| reject(RejectReason::MalformedJson, None, &json_error(&e)))?;
    let project_id = head.project_id.and_then(json_str).ok_or_else(|| {
        reject(
            RejectReason::InvalidProjectId,
            None,
            "the record has no project_id string",
        )
    })?;
    let project_id = ProjectId::parse(&project_id)
        .map_err(|e| reject(RejectReason::InvalidProjectId, None, &e.to_string()))?;
    let event_time = head.timestamp.and_then(parse_timestamp).unwrap_or(sent_at);
    Ok(EventRecord {
        project_id,
        raw,
        event_time,
        sent_at,
    })
}

/// `timestamp` as an RFC 3339 string or whole Unix milliseconds; anything else is ignored.
fn parse_timestamp(value: &RawValue) -> Option<OffsetDateTime> {
    if let Ok(text) = serde_json::from_str::<&str>(value.get()) {
        return OffsetDateTime::parse(text, &Rfc3339).ok();
    }
    let millis = serde_json::from_str::<u64>(value.get()).ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const SENT: OffsetDateTime = datetime!(2026-11-24 10:00:00 UTC);

    fn message(body: &str) -> QueueMessage {
        QueueMessage::new("m-1", body, SENT)
    }

    #[test]
    fn a_copy_from_the_retry_queue_keeps_its_original_time_and_counts_its_attempts() {
        let fresh = QueueMessage::from_sqs(
            "m",
            "{}",
            SqsAttributes {
                sent_timestamp: Some("1795514400000"),
                receive_count: Some("2"),
                ..Default::default()
            },
            SENT,
        );
        assert_eq!(fresh.attempt, 2);
        assert_eq!(fresh.sent_at.unix_timestamp(), 1_795_514_400);
        let copy = QueueMessage::from_sqs(
            "m",
            "{}",
            SqsAttributes {
                source: MessageSource::RetryQueue,
                sent_timestamp: Some("1795514499000"),
                receive_count: Some("1"),
                attempts_before: Some("3"),
                original_sent_timestamp: Some("1795514400000"),
            },
            SENT,
        );
        assert_eq!(copy.attempt, 4);
        assert_eq!(copy.sent_at.unix_timestamp(), 1_795_514_400);
        let bare = QueueMessage::from_sqs("m", "{}", SqsAttributes::default(), SENT);
        assert_eq!((bare.attempt, bare.sent_at), (1, SENT));
    }

    #[test]
    fn a_message_from_producers_is_judged_as_first_sent_whatever_it_carries() {
        let forged = QueueMessage::from_sqs(
            "m",
            "{}",
            SqsAttributes {
                source: MessageSource::Producers,
                sent_timestamp: Some("1795514499000"),
                receive_count: Some("2"),
                attempts_before: Some("4"),
                original_sent_timestamp: Some("1700000000000"),
            },
            SENT,
        );
        assert_eq!(forged.attempt, 2);
        assert_eq!(forged.sent_at.unix_timestamp(), 1_795_514_499);
    }

    #[test]
    fn a_single_record_keeps_its_exact_bytes() {
        let body = r#"{"project_id":"p-1",  "action":"X", "n": 1.50, "nested":{"a":[1, 2]}}"#;
        let message = message(body);
        let records = parse_message(&message);
        let record = records[0].as_ref().unwrap();
        assert_eq!(record.line(), body);
        assert_eq!(record.project_id.as_str(), "p-1");
        assert_eq!(record.event_time, SENT);
    }

    #[test]
    fn an_array_yields_each_record_with_its_exact_bytes() {
        let body = r#"[ {"project_id":"a", "x": 1e3} ,{"project_id":"b"}]"#;
        let message = message(body);
        let records = parse_message(&message);
        let lines: Vec<&str> = records.iter().map(|r| r.as_ref().unwrap().line()).collect();
        assert_eq!(
            lines,
            [r#"{"project_id":"a", "x": 1e3}"#, r#"{"project_id":"b"}"#]
        );
    }

    #[test]
    fn the_record_timestamp_wins_when_valid() {
        let rfc = r#"{"project_id":"p","timestamp":"2026-11-24T09:59:58.123456789Z"}"#;
        let millis = r#"{"project_id":"p","timestamp":1795514398123}"#;
        let bogus = r#"{"project_id":"p","timestamp":"yesterday"}"#;
        let fractional = r#"{"project_id":"p","timestamp":1.5}"#;
        let time = |body| {
            parse_message(&message(body))[0]
                .as_ref()
                .unwrap()
                .event_time
        };
        assert_eq!(time(rfc), datetime!(2026-11-24 09:59:58.123456789 UTC));
        assert_eq!(
            time(millis).unix_timestamp_nanos(),
            1_795_514_398_123_000_000
        );
        assert_eq!(time(bogus), SENT);
        assert_eq!(time(fractional), SENT);
    }

    #[test]
    fn bad_records_are_rejected_one_by_one() {
        let body = r#"[{"project_id":"ok"}, 42, {"project_id":"bad id"}, {"action":"x"}, {"project_id":7}]"#;
        let reasons: Vec<Option<RejectReason>> = parse_message(&message(body))
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                None,
                Some(RejectReason::NotAnObject),
                Some(RejectReason::InvalidProjectId),
                Some(RejectReason::InvalidProjectId),
                Some(RejectReason::InvalidProjectId),
            ]
        );
    }

    #[test]
    fn ndjson_bodies_yield_one_record_per_line_and_bad_lines_alone() {
        let body =
            "{\"project_id\":\"a\", \"n\": 1}\n\n{\"project_id\":\"b\"}\nnot json\r\n{\"x\":1}\n";
        let ndjson = message(body);
        let records = parse_message(&ndjson);
        let outcome: Vec<Result<&str, (RejectReason, &str)>> = records
            .iter()
            .map(|r| match r {
                Ok(record) => Ok(record.line()),
                Err(rejected) => Err((rejected.reason, rejected.detail.as_str())),
            })
            .collect();
        assert_eq!(
            outcome,
            [
                Ok(r#"{"project_id":"a", "n": 1}"#),
                Ok(r#"{"project_id":"b"}"#),
                Err((
                    RejectReason::MalformedJson,
                    "line 4: invalid JSON at column 2"
                )),
                Err((
                    RejectReason::InvalidProjectId,
                    "the record has no project_id string"
                )),
            ]
        );
        // One object over several lines is one record; a broken one is rejected whole.
        let pretty = "{\n  \"project_id\": \"p\"\n}\n";
        assert_eq!(parse_message(&message(pretty)).len(), 1);
        assert!(parse_message(&message(pretty)).remove(0).is_ok());
        let broken = "{\n  \"project_id\": \"p\",\n";
        let message = message(broken);
        let rejected = parse_message(&message);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].as_ref().unwrap_err().body, broken);
    }

    #[test]
    fn an_unreadable_body_is_rejected_whole_without_quoting_it() {
        for (body, reason) in [
            ("not json", RejectReason::MalformedJson),
            (
                r#"{"project_id":"p", secret-stuff"#,
                RejectReason::MalformedJson,
            ),
            ("[]", RejectReason::EmptyBatch),
            ("", RejectReason::MalformedJson),
        ] {
            let message = message(body);
            let records = parse_message(&message);
            let rejected = records[0].as_ref().unwrap_err();
            assert_eq!(rejected.reason, reason, "{body}");
            assert_eq!(rejected.body, body);
            assert!(!rejected.detail.contains("secret-stuff"));
        }
    }
}
