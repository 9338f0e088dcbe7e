//! The SQS-triggered streamer Lambda: turns an `SqsEvent` into queue messages for the shared
//! delivery core and its answer into a partial batch response (`ReportBatchItemFailures`),
//! so only failed messages are redelivered.

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use event_log_streaming::Streamer;
use event_log_streaming::event::{
    ATTEMPTS_ATTRIBUTE, QueueMessage, SENT_TIMESTAMP_ATTRIBUTE, SqsAttributes,
};
use lambda_runtime::{Error, LambdaEvent};
use time::OffsetDateTime;

/// Time kept back from the invocation's deadline to report the batch response and flush logs.
pub const DEADLINE_SAFETY_MARGIN: Duration = Duration::from_secs(3);

pub async fn handle(
    streamer: &Streamer,
    event: LambdaEvent<SqsEvent>,
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
        .map(|m| queue_message(m, received_at))
        .collect();
    let report = streamer.process_batch(&messages, deadline).await;
    let mut response = SqsBatchResponse::default();
    response.set_failures(report.failed_message_ids);
    Ok(response)
}

fn queue_message(mut message: SqsMessage, received_at: OffsetDateTime) -> QueueMessage {
    // Moved, not copied: a batch's bodies can add up to 6 MB.
    let body = message.body.take().unwrap_or_default();
    let message_id = message.message_id.take().unwrap_or_default();
    let attribute = |name: &str| message.attributes.get(name).map(String::as_str);
    let message_attribute = |name: &str| {
        message
            .message_attributes
            .get(name)
            .and_then(|a| a.string_value.as_deref())
    };
    let attributes = SqsAttributes {
        sent_timestamp: attribute("SentTimestamp"),
        receive_count: attribute("ApproximateReceiveCount"),
        attempts_before: message_attribute(ATTEMPTS_ATTRIBUTE),
        original_sent_timestamp: message_attribute(SENT_TIMESTAMP_ATTRIBUTE),
    };
    QueueMessage::from_sqs(message_id, body, attributes, received_at)
}
