//! A test delivery at setup time: one synthetic event (`action: "EventLogStreamingTest"`)
//! sent now to a configured destination, through the same encoder, client and
//! classification as the streamer, answered in words a customer can act on.
//! One attempt and no retries: a person is waiting for the answer. It works whatever the
//! stream's status and changes neither the status nor the delivery health.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::destination::classify::{Classification, advice, classify, destination_name};
use crate::destination::client::{Connection, DestinationClient};
use crate::destination::{self, LogLabels, Payload};
use crate::domain::controls::Redactor;
use crate::domain::{Destination, ProjectId};
use crate::event::{QueueMessage, parse_message};
use crate::gzip::gzip;

pub const TEST_ACTION: &str = "EventLogStreamingTest";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDelivery {
    pub delivered: bool,
    /// The destination's HTTP status, when it answered.
    pub destination_status: Option<u16>,
    pub message: String,
}

/// Sends one synthetic event, dated `now`, to `destination`, through the stream's redaction
/// (so the customer sees what their records will look like); the stream's filter does not
/// apply to it.
pub async fn send_test_event(
    client: &DestinationClient,
    project: &ProjectId,
    destination: &Destination,
    redactor: Option<&Redactor>,
    labels: &LogLabels,
    now: OffsetDateTime,
) -> TestDelivery {
    let event_id = format!("test-{:032x}", fastrand::u128(..));
    let record = serde_json::json!({
        "event_id": event_id,
        "project_id": project.as_str(),
        "action": TEST_ACTION,
        "status": "success",
        "request_id": format!("request-{event_id}"),
        "timestamp": now.format(&Rfc3339).expect("now formats as RFC 3339"),
    });
    let message = QueueMessage::new(event_id, record.to_string(), now);
    let record = parse_message(&message)
        .pop()
        .and_then(Result::ok)
        .expect("the synthetic event is a valid record");
    let destination_type = destination.destination_type();
    // With the stream's own labels or tags, as its records will carry them.
    let mut payload = Payload::new(destination, labels, destination::limits(destination_type));
    match redactor {
        Some(redactor) => payload.add_line(&record, &redactor.apply(record.line())),
        None => payload.add(&record),
    }
    let body = payload.finish();

    let response = client
        .push(
            destination,
            gzip(&body).into(),
            TIMEOUT,
            Connection::Pooled,
            now,
        )
        .await;
    let destination_status = response.status();
    let delivered = matches!(classify(&response), Classification::Delivered { .. });
    let message = if delivered {
        format!(
            "{} accepted the test event (HTTP {})",
            destination_name(destination_type),
            destination_status.unwrap_or_default()
        )
    } else {
        advice(destination_type, &response)
    };
    TestDelivery {
        delivered,
        destination_status,
        message,
    }
}
