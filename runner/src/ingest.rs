//! `POST /v1/events`: events straight into the delivery code, as if they had come from the
//! queue. The body is one JSON record, a JSON array of records (one queue message each), or
//! NDJSON (one message per line). Messages are processed in SQS-sized batches and the answer
//! counts what became of them: 200 when every message is done (delivered, skipped or
//! dead-lettered), 503 when some failed and should be sent again. Local use only: this
//! endpoint has no authentication.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use event_log_streaming::Streamer;
use event_log_streaming::event::QueueMessage;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Messages per batch, as an SQS event source would hand them to the Lambda.
pub const BATCH_SIZE: usize = 10;
/// Time a batch may take, like the streamer Lambda's timeout.
pub const BATCH_TIME_BUDGET: Duration = Duration::from_secs(30);

pub fn router(streamer: Arc<Streamer>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest))
        .with_state(streamer)
}

/// Splits a body into queue message bodies.
pub fn message_bodies(text: &str) -> Vec<String> {
    if serde_json::from_str::<&RawValue>(text).is_ok() {
        return vec![text.trim().to_owned()];
    }
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn ingest(State(streamer): State<Arc<Streamer>>, body: Bytes) -> (StatusCode, Json<Value>) {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"status_code": 400, "error_type": "invalid_argument", "error_message": "the body is not UTF-8"}),
            ),
        );
    };
    let now = OffsetDateTime::now_utc();
    let messages: Vec<QueueMessage> = message_bodies(text)
        .into_iter()
        .enumerate()
        .map(|(i, body)| QueueMessage {
            message_id: format!("local-{}-{i}", now.unix_timestamp_nanos()),
            body,
            sent_at: now,
        })
        .collect();
    let mut totals = json!({
        "messages": 0, "records": 0, "delivered": 0, "skipped_not_configured": 0,
        "skipped_disabled": 0, "skipped_suspended": 0, "skipped_before_enabled": 0, "dead_lettered": 0, "failed_messages": 0,
    });
    for batch in messages.chunks(BATCH_SIZE) {
        let report = streamer
            .process_batch(batch, Instant::now() + BATCH_TIME_BUDGET)
            .await;
        let s = report.summary;
        for (name, value) in [
            ("messages", s.messages),
            ("records", s.records),
            ("delivered", s.delivered),
            ("skipped_not_configured", s.skipped_not_configured),
            ("skipped_disabled", s.skipped_disabled),
            ("skipped_suspended", s.skipped_suspended),
            ("skipped_before_enabled", s.skipped_before_enabled),
            ("dead_lettered", s.dead_lettered),
            ("failed_messages", s.failed_messages),
        ] {
            totals[name] = json!(totals[name].as_u64().unwrap_or(0) + value as u64);
        }
    }
    // A producer must learn that it has to send the failed messages again.
    let status = if totals["failed_messages"].as_u64() == Some(0) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_document_is_one_message_and_ndjson_one_per_line() {
        assert_eq!(
            message_bodies(r#" {"project_id":"p"} "#),
            [r#"{"project_id":"p"}"#]
        );
        assert_eq!(
            message_bodies(r#"[{"project_id":"p"},{"project_id":"q"}]"#).len(),
            1
        );
        assert_eq!(
            message_bodies("{\"project_id\":\"p\"}\n\n{\"project_id\":\"q\"}\nnot json\n"),
            [r#"{"project_id":"p"}"#, r#"{"project_id":"q"}"#, "not json"]
        );
    }
}
