//! Lambda events as the runtime would hand them to the streamer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use streamer::SqsBatch;

/// The event queue's ARN in the events [`sqs_event`] makes: the source of a message producers
/// sent.
pub const EVENT_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:events";
/// The retry queue's ARN in the events [`sqs_event`] makes: the source of a copy the streamer
/// sent back. A streamer that is to believe such copies is given it as `RETRY_QUEUE_ARN`.
pub const RETRY_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:retries";

/// A message as SQS delivers it to Lambda.
pub struct SqsRecord {
    pub message_id: String,
    pub body: String,
    pub sent_timestamp_ms: u128,
    pub receive_count: u32,
    /// Message attributes (string values).
    pub attributes: Vec<(String, String)>,
    /// The queue it was read from (`eventSourceARN`).
    pub event_source_arn: String,
}

impl SqsRecord {
    /// A message sent now.
    pub fn new(message_id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            message_id: message_id.into(),
            body: body.into(),
            sent_timestamp_ms: now_ms(),
            receive_count: 1,
            attributes: Vec::new(),
            event_source_arn: EVENT_QUEUE_ARN.to_owned(),
        }
    }

    /// A message as SQS hands over a copy another streamer sent back: read from the retry
    /// queue, with its attributes and receives.
    pub fn with_attributes(
        mut self,
        attributes: impl IntoIterator<Item = (String, String)>,
        receive_count: u32,
    ) -> Self {
        self.attributes.extend(attributes);
        self.receive_count = receive_count;
        self.event_source_arn = RETRY_QUEUE_ARN.to_owned();
        self
    }

    /// The same message read from another queue (a producer's forgery: [`EVENT_QUEUE_ARN`]).
    pub fn from_queue(mut self, arn: &str) -> Self {
        self.event_source_arn = arn.to_owned();
        self
    }

    pub fn sent_at_ms(mut self, ms: u128) -> Self {
        self.sent_timestamp_ms = ms;
        self
    }
}

pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The event of an invocation that has `time_left` before its deadline.
pub fn sqs_event(records: Vec<SqsRecord>, time_left: Duration) -> LambdaEvent<SqsBatch> {
    let records: Vec<_> = records
        .into_iter()
        .map(|r| {
            let attributes: serde_json::Map<String, serde_json::Value> = r
                .attributes
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        json!({"stringValue": value, "dataType": "Number"}),
                    )
                })
                .collect();
            json!({
                "messageId": r.message_id,
                "receiptHandle": format!("handle-{}", r.message_id),
                "body": r.body,
                "attributes": {
                    "ApproximateReceiveCount": r.receive_count.to_string(),
                    "SentTimestamp": r.sent_timestamp_ms.to_string(),
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": now_ms().to_string()
                },
                "messageAttributes": attributes,
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": r.event_source_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    let event: SqsBatch = serde_json::from_value(json!({ "Records": records })).unwrap();
    let mut context = Context::default();
    context.request_id = "test-invocation".into();
    context.deadline = (now_ms() + time_left.as_millis()) as u64;
    LambdaEvent::new(event, context)
}
