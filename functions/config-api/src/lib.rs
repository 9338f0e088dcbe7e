//! The config API: each project's event log streaming configuration over HTTP.
//!
//! One axum [`Router`], built by [`app`], serves both the Lambda (through lambda_http behind
//! an API Gateway HTTP API) and the local runner. Endpoints, field names and error shapes
//! follow the management API of the product (see `openapi.json`); unlike the original, no
//! answer ever contains a secret.

pub mod auth;
pub mod error;
pub mod json;
mod routes;
pub mod settings;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use event_log_streaming::destination::LogLabels;
use event_log_streaming::destination::client::DestinationClient;
use event_log_streaming::store::{CredentialStore, StreamWrite};

use crate::auth::ManagementKeys;
use crate::error::ApiError;
pub use routes::routes;

/// What the handlers share. Built once per container.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub streams: Arc<dyn StreamWrite>,
    pub credentials: Arc<dyn CredentialStore>,
    pub keys: ManagementKeys,
    pub client: DestinationClient,
    pub labels: LogLabels,
    /// How far ahead of the request an enable is dated: the streamer's cache TTL.
    pub streaming_start_delay: Duration,
}

impl AppState {
    pub fn new(
        streams: Arc<dyn StreamWrite>,
        credentials: Arc<dyn CredentialStore>,
        keys: ManagementKeys,
        client: DestinationClient,
        labels: LogLabels,
        streaming_start_delay: Duration,
    ) -> Self {
        Self(Arc::new(Inner {
            streams,
            credentials,
            keys,
            client,
            labels,
            streaming_start_delay,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub fn app(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .with_state(state)
}

/// A fresh id for one request and answer, as the management API returns.
pub fn request_id() -> String {
    let n = fastrand::u128(..);
    format!(
        "request-id-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (n >> 96) as u32,
        (n >> 80) as u16,
        (n >> 64) as u16,
        (n >> 48) as u16,
        n as u64 & 0xffff_ffff_ffff
    )
}
