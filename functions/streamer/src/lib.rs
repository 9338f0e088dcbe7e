//! The SQS-triggered streamer Lambda: turns an SQS event into queue messages for the shared
//! delivery core and its answer into a partial batch response (`ReportBatchItemFailures`),
//! so only failed messages are redelivered.
//!
//! Two event sources invoke it: the event queue, which producers send to, and the retry queue,
//! which only the streamer may send to (its queue policy in `infra/template.yaml`). A
//! message's `eventSourceARN` says which: only a message from the retry queue
//! (`RETRY_QUEUE_ARN`) is believed to be a copy sent back ([`MessageSource`]).

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::SqsBatchResponse;
use event_log_streaming::Streamer;
use event_log_streaming::event::{MessageSource, QueueMessage, SqsAttributes};
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::time::Instant;

/// Time kept back from the invocation's deadline to report the batch response and flush logs.
pub const DEADLINE_SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// An SQS event as Lambda delivers it, reduced to what delivery reads; every other field is
/// skipped while parsing. `aws_lambda_events`' `SqsEvent` keeps each message's attributes
/// in owned maps: on a 6 MB batch of 5,000 messages that cost megabytes and a tenth of the
/// streamer's CPU (measured by `tests/benches/lambda.rs`).
#[derive(Debug, Deserialize)]
pub struct SqsBatch {
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    attributes: Option<SystemAttributes>,
    #[serde(default)]
    message_attributes: Option<RequeueAttributes>,
    /// The queue the message was read from.
    #[serde(default, rename = "eventSourceARN")]
    event_source_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SystemAttributes {
    #[serde(rename = "SentTimestamp")]
    sent_timestamp: Option<String>,
    #[serde(rename = "ApproximateReceiveCount")]
    receive_count: Option<String>,
}

/// The message attributes a copy sent back carries
/// ([`event_log_streaming::event::ATTEMPTS_ATTRIBUTE`] and
/// [`event_log_streaming::event::SENT_TIMESTAMP_ATTRIBUTE`]; a test checks the names).
#[derive(Debug, Default, Deserialize)]
struct RequeueAttributes {
    els_attempts: Option<StringAttribute>,
    els_sent_timestamp: Option<StringAttribute>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StringAttribute {
    string_value: Option<String>,
}

impl SqsRecord {
    /// The queue message, with the body moved rather than copied: a batch's bodies can add
    /// up to 6 MB. The attributes of a copy sent back are believed only when the message comes
    /// from `retry_queue_arn`.
    pub fn into_queue_message(
        self,
        retry_queue_arn: Option<&str>,
        received_at: OffsetDateTime,
    ) -> QueueMessage {
        let Self {
            message_id,
            body,
            attributes,
            message_attributes,
            event_source_arn,
        } = self;
        let attributes = attributes.unwrap_or_default();
        let requeued = message_attributes.unwrap_or_default();
        let source = match (retry_queue_arn, event_source_arn.as_deref()) {
            (Some(retry_queue), Some(source)) if source == retry_queue => MessageSource::RetryQueue,
            _ => MessageSource::Producers,
        };
        let attributes = SqsAttributes {
            source,
            sent_timestamp: attributes.sent_timestamp.as_deref(),
            receive_count: attributes.receive_count.as_deref(),
            attempts_before: string_value(&requeued.els_attempts),
            original_sent_timestamp: string_value(&requeued.els_sent_timestamp),
        };
        QueueMessage::from_sqs(
            message_id.unwrap_or_default(),
            body.unwrap_or_default(),
            attributes,
            received_at,
        )
    }
}

fn string_value(attribute: &Option<StringAttribute>) -> Option<&str> {
    attribute.as_ref()?.string_value.as_deref()
}

/// Handles one invocation; `retry_queue_arn` is `RETRY_QUEUE_ARN`, the only source whose
/// messages are believed to be copies sent back.
pub async fn handle(
    streamer: &Streamer,
    retry_queue_arn: Option<&str>,
    event: LambdaEvent<SqsBatch>,
) -> Result<SqsBatchResponse, Error> {
    let remaining = event
        .context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(DEADLINE_SAFETY_MARGIN);
    let deadline = Instant::now() + remaining;
    let received_at = OffsetDateTime::now_utc();
    let messages: Vec<QueueMessage> = event
        .payload
        .records
        .into_iter()
        .map(|m| m.into_queue_message(retry_queue_arn, received_at))
        .collect();
    let report = streamer.process_batch(&messages, deadline).await;
    let mut response = SqsBatchResponse::default();
    response.set_failures(report.failed_message_ids);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use event_log_streaming::event::{ATTEMPTS_ATTRIBUTE, SENT_TIMESTAMP_ATTRIBUTE};
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const EVENT_QUEUE: &str = "arn:aws:sqs:us-east-2:123456789012:els-events";
    const RETRY_QUEUE: &str = "arn:aws:sqs:us-east-2:123456789012:els-retries";
    const RECEIVED: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    /// A message as Lambda hands it over from `source`, every field present (from the SQS
    /// event's documented shape): sent at 1545082649183, received twice.
    fn record(source: &str, message_attributes: serde_json::Value) -> SqsRecord {
        serde_json::from_value(json!({
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": "{\"project_id\":\"p\"}",
            "attributes": {
                "ApproximateReceiveCount": "2",
                "SentTimestamp": "1545082649183",
                "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                "ApproximateFirstReceiveTimestamp": "1545082649185"
            },
            "messageAttributes": message_attributes,
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": source,
            "awsRegion": "us-east-2"
        }))
        .unwrap()
    }

    /// A copy's attributes, named by the constants: three attempts before, first sent at
    /// 1545000000000.
    fn copy_attributes() -> serde_json::Value {
        let attribute = |value: &str| json!({"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "Number"});
        json!({
            ATTEMPTS_ATTRIBUTE: attribute("3"),
            SENT_TIMESTAMP_ATTRIBUTE: attribute("1545000000000"),
        })
    }

    /// (attempt, sent_at in Unix ms)
    fn judged(message: &QueueMessage) -> (u32, i128) {
        (
            message.attempt,
            message.sent_at.unix_timestamp_nanos() / 1_000_000,
        )
    }

    #[test]
    fn a_first_delivery_is_read_from_the_system_attributes() {
        let message =
            record(EVENT_QUEUE, json!({})).into_queue_message(Some(RETRY_QUEUE), RECEIVED);
        assert_eq!(message.message_id, "059f36b4-87a3-44ab-83d2-661975830a7d");
        assert_eq!(message.body, "{\"project_id\":\"p\"}");
        assert_eq!(judged(&message), (2, 1_545_082_649_183));
    }

    #[test]
    fn a_copy_from_the_retry_queue_keeps_its_attempts_and_original_time() {
        let message =
            record(RETRY_QUEUE, copy_attributes()).into_queue_message(Some(RETRY_QUEUE), RECEIVED);
        assert_eq!(judged(&message), (5, 1_545_000_000_000));
    }

    #[test]
    fn the_attributes_of_a_copy_are_ignored_on_a_message_from_any_other_queue() {
        // A producer's forgery on the event queue: an earlier time (a backfill, or a skip) and
        // attempts it never had (an early dead-letter).
        let forged =
            record(EVENT_QUEUE, copy_attributes()).into_queue_message(Some(RETRY_QUEUE), RECEIVED);
        assert_eq!(judged(&forged), (2, 1_545_082_649_183));
        // Without RETRY_QUEUE_ARN no source is believed, not even one named like a retry queue.
        let unconfigured =
            record(RETRY_QUEUE, copy_attributes()).into_queue_message(None, RECEIVED);
        assert_eq!(judged(&unconfigured), (2, 1_545_082_649_183));
    }

    #[test]
    fn absent_or_null_fields_are_a_first_delivery_sent_when_received() {
        let batch: SqsBatch = serde_json::from_value(json!({"Records": [
            {"messageId": "m", "body": "x"},
            {"messageId": null, "body": null, "attributes": null, "messageAttributes": null,
             "eventSourceARN": null},
        ]}))
        .unwrap();
        let messages: Vec<QueueMessage> = batch
            .records
            .into_iter()
            .map(|r| r.into_queue_message(Some(RETRY_QUEUE), RECEIVED))
            .collect();
        assert_eq!(messages[0].body, "x");
        assert_eq!(messages[1].body, "");
        for message in messages {
            assert_eq!((message.attempt, message.sent_at), (1, RECEIVED));
        }
    }
}
