//! The retry queue, for sending records back: when some records of a message could not be
//! delivered now while the others were, only those are sent again, as a new message, and the
//! original is acknowledged. Redelivering the whole message would deliver the others twice
//! (Datadog keeps every copy) and, should they fail for good, dead-letter records that were
//! delivered.
//!
//! The copy carries the original `SentTimestamp` ([`SENT_TIMESTAMP_ATTRIBUTE`]), so the
//! no-backfill rule and the records' event time do not change, and the attempts made so far
//! ([`ATTEMPTS_ATTRIBUTE`]), because SQS counts the receives of each message apart. It is
//! delayed by the retry backoff (SQS `DelaySeconds`, at most 900). It goes to the retry queue,
//! not the event queue, because those attributes are believed only there
//! ([`crate::event::MessageSource`]): only the streamer may send to it.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::event::{ATTEMPTS_ATTRIBUTE, FailedRecord, QueueMessage, SENT_TIMESTAMP_ATTRIBUTE};

/// SQS's longest message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

pub struct EventQueue {
    client: Client,
    queue_url: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot send records back to the retry queue")]
pub struct RequeueError(#[source] SdkError<SendMessageError>);

impl EventQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Sends `records` of `original` back as one message, visible after `delay`.
    pub async fn send_back(
        &self,
        original: &QueueMessage,
        records: &[FailedRecord],
        delay: Duration,
    ) -> Result<(), RequeueError> {
        let bodies: Vec<&str> = records.iter().map(|r| r.body.as_str()).collect();
        self.send_copy(original, format!("[{}]", bodies.join(",")), delay)
            .await
    }

    /// Sends `body`, one record of `original` or its whole unreadable body, back on its own
    /// and exactly as it was: judged again, it meets the same fate (a record the dead-letter
    /// queue would not take comes back to be set aside then).
    pub async fn send_record_back(
        &self,
        original: &QueueMessage,
        body: &str,
        delay: Duration,
    ) -> Result<(), RequeueError> {
        self.send_copy(original, body.to_owned(), delay).await
    }

    async fn send_copy(
        &self,
        original: &QueueMessage,
        body: String,
        delay: Duration,
    ) -> Result<(), RequeueError> {
        let number = |value: String| message_attribute("Number", value);
        let sent_ms = original.sent_at.unix_timestamp_nanos() / 1_000_000;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .message_attributes(ATTEMPTS_ATTRIBUTE, number(original.attempt.to_string()))
            .message_attributes(SENT_TIMESTAMP_ATTRIBUTE, number(sent_ms.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(RequeueError)
    }
}

/// An SQS message attribute of `data_type` (`String` or `Number`).
pub(crate) fn message_attribute(
    data_type: &str,
    value: impl Into<String>,
) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("data type and value are set")
}
