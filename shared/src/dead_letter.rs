//! The dead-letter queue for records that can never be delivered (malformed, no valid
//! `project_id`, too large, refused by the destination with a 400). Each is sent on its own,
//! with message attributes that say why, so an operator can inspect, fix and redrive it.
//! Records that fail for transient reasons come here only once out of attempts
//! (`retries_exhausted`, after `MAX_DELIVERY_ATTEMPTS`); until then they go back to the event
//! queue, or, without one, SQS redelivers their message and the queue's redrive policy moves
//! it here after `maxReceiveCount`.
//!
//! Like a record sent back, each copy carries its message's original send time
//! ([`SENT_TIMESTAMP_ATTRIBUTE`]) and the attempts made ([`ATTEMPTS_ATTRIBUTE`]), so that a
//! redrive keeps the no-backfill rule and the event time.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::send_message::SendMessageError;

use crate::event::{ATTEMPTS_ATTRIBUTE, QueueMessage, RejectedRecord, SENT_TIMESTAMP_ATTRIBUTE};
use crate::event_queue::message_attribute;

/// Message attributes of a dead letter: why it was set aside, and from what.
pub const REASON_ATTRIBUTE: &str = "rejection_reason";
pub const DETAIL_ATTRIBUTE: &str = "rejection_detail";
pub const SOURCE_MESSAGE_ID_ATTRIBUTE: &str = "source_message_id";
pub const PROJECT_ID_ATTRIBUTE: &str = "project_id";

/// SQS attribute values are limited in total size per message; a reason is a sentence.
const MAX_DETAIL_CHARS: usize = 500;

pub struct DeadLetterQueue {
    client: Client,
    queue_url: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot send to the dead-letter queue")]
pub struct DeadLetterError(#[source] SdkError<SendMessageError>);

impl DeadLetterQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Sends `record`, one of `source`'s records, on its own.
    pub async fn send(
        &self,
        record: &RejectedRecord,
        source: &QueueMessage,
    ) -> Result<(), DeadLetterError> {
        let attribute = |value: &str| message_attribute("String", value);
        let number = |value: String| message_attribute("Number", value);
        let sent_ms = source.sent_at.unix_timestamp_nanos() / 1_000_000;
        let detail: String = record.detail.chars().take(MAX_DETAIL_CHARS).collect();
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&record.body)
            .message_attributes(REASON_ATTRIBUTE, attribute(record.reason.as_str()))
            .message_attributes(DETAIL_ATTRIBUTE, attribute(&detail))
            .message_attributes(SOURCE_MESSAGE_ID_ATTRIBUTE, attribute(&source.message_id))
            .message_attributes(ATTEMPTS_ATTRIBUTE, number(source.attempt.to_string()))
            .message_attributes(SENT_TIMESTAMP_ATTRIBUTE, number(sent_ms.to_string()));
        if let Some(project) = &record.project_id {
            request = request.message_attributes(PROJECT_ID_ATTRIBUTE, attribute(project.as_str()));
        }
        request.send().await.map(|_| ()).map_err(DeadLetterError)
    }
}
