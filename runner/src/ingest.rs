//! `POST /v1/events`: events straight into the delivery code, as if they had come from the
//! queue. The body is one JSON record, a JSON array of records (one queue message each), or
//! NDJSON (one message per line), at most [`MAX_BODY_BYTES`]. Messages are processed in
//! SQS-sized batches and the answer counts what became of them:
//! - 200 when every message is done (delivered, skipped or dead-lettered);
//! - 400 when some messages hold records that can never be delivered (malformed, no valid
//!   `project_id`, too large, refused by the destination) and no dead-letter queue took them:
//!   `rejected` lists each one's index, reason and detail (the reasons the dead-letter queue
//!   uses); sending them again cannot help;
//! - 503 when some messages may be delivered later (`failed` lists their indexes): send
//!   those again.
//!
//! Local use only: this endpoint has no authentication.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
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
/// The most one request may carry: one Lambda invocation's payload.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

pub fn router(streamer: Arc<Streamer>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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

/// The config API's error shape, `request_id` included.
fn error(status: StatusCode, error_type: &str, message: &str) -> (StatusCode, Json<Value>) {
    let body = json!({
        "status_code": status.as_u16(),
        "request_id": config_api::request_id(),
        "error_type": error_type,
        "error_message": message,
    });
    (status, Json(body))
}

async fn ingest(
    State(streamer): State<Arc<Streamer>>,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, Json<Value>) {
    let Ok(body) = body else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than 6 MiB, the most one streamer invocation takes: send it in parts",
        );
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "the body is not UTF-8",
        );
    };
    let now = OffsetDateTime::now_utc();
    let messages: Vec<QueueMessage> = message_bodies(text)
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            QueueMessage::new(
                format!("local-{}-{i}", now.unix_timestamp_nanos()),
                body,
                now,
            )
        })
        .collect();
    if messages.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "the body holds no event",
        );
    }
    let mut totals = json!({
        "messages": 0, "records": 0, "delivered": 0, "skipped_not_configured": 0,
        "skipped_disabled": 0, "skipped_suspended": 0, "skipped_before_enabled": 0,
        "skipped_filtered": 0, "dead_lettered": 0, "failed_messages": 0,
    });
    let mut rejected = Vec::new();
    let mut failed = Vec::new();
    for (batch_number, batch) in messages.chunks(BATCH_SIZE).enumerate() {
        let first = batch_number * BATCH_SIZE;
        let report = streamer
            .process_batch(batch, Instant::now() + BATCH_TIME_BUDGET)
            .await;
        failed.extend(report.retryable_messages.iter().map(|i| first + i));
        rejected.extend(report.kept_rejections.iter().map(|(i, record)| {
            json!({
                "index": first + i,
                "reason": record.reason.as_str(),
                "detail": record.detail,
            })
        }));
        let s = report.summary;
        for (name, value) in [
            ("messages", s.messages),
            ("records", s.records),
            ("delivered", s.delivered),
            ("skipped_not_configured", s.skipped_not_configured),
            ("skipped_disabled", s.skipped_disabled),
            ("skipped_suspended", s.skipped_suspended),
            ("skipped_before_enabled", s.skipped_before_enabled),
            ("skipped_filtered", s.skipped_filtered),
            ("dead_lettered", s.dead_lettered),
            ("failed_messages", s.failed_messages),
        ] {
            totals[name] = json!(totals[name].as_u64().unwrap_or(0) + value as u64);
        }
    }
    // Only what may pass later is worth sending again.
    let status = if !failed.is_empty() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if !rejected.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    totals["failed"] = json!(failed);
    totals["rejected"] = json!(rejected);
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
