//! The SQS-triggered streamer Lambda: turns an `SqsEvent` into queue messages for the shared
//! delivery core and its answer into a partial batch response (`ReportBatchItemFailures`),
//! so only failed messages are redelivered.

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use event_log_streaming::Streamer;
use event_log_streaming::event::{QueueMessage, parse_sent_timestamp};
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

fn queue_message(message: SqsMessage, received_at: OffsetDateTime) -> QueueMessage {
    let sent_at = message
        .attributes
        .get("SentTimestamp")
        .and_then(|ms| parse_sent_timestamp(ms))
        .unwrap_or(received_at);
    QueueMessage {
        message_id: message.message_id.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
        sent_at,
    }
}
