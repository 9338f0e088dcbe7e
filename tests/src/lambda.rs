//! Lambda events as the runtime would hand them to the streamer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use streamer::SqsBatch;

/// A message as SQS delivers it to Lambda.
pub struct SqsRecord {
    pub message_id: String,
    pub body: String,
    pub sent_timestamp_ms: u128,
    pub receive_count: u32,
    /// Message attributes (string values).
    pub attributes: Vec<(String, String)>,
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
        }
    }

    /// A message as SQS hands over a copy another streamer sent: its attributes, receives.
    pub fn with_attributes(
        mut self,
        attributes: impl IntoIterator<Item = (String, String)>,
        receive_count: u32,
    ) -> Self {
        self.attributes.extend(attributes);
        self.receive_count = receive_count;
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
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events",
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
