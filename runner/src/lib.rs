//! The local runner: the config API and the streamer in one process, on a local file store,
//! with events coming from an HTTP endpoint or from a real SQS queue (AWS or moto).

pub mod ingest;
pub mod keys;
pub mod sqs;

use std::sync::Arc;

use axum::Router;
use config_api::AppState;
use event_log_streaming::Streamer;

/// The state file in the data directory: streams, their health and credentials.
pub const STATE_FILE_NAME: &str = "state.json";

/// The config API's routes plus `POST /v1/events`.
pub fn local_app(api: AppState, streamer: Arc<Streamer>) -> Router {
    config_api::app(api).merge(ingest::router(streamer))
}
