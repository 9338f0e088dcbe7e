//! The config API: each project's event log streaming configuration over HTTP.
//!
//! One axum [`Router`], built by [`app`], serves both the Lambda (through lambda_http behind
//! an API Gateway HTTP API) and the local runner. Endpoints, field names and error shapes
//! follow the management API of the product (see `openapi.json`); unlike the original, no
//! answer ever contains a secret. The same router serves the Stream Settings page
//! ([`page`]).

pub mod auth;
pub mod error;
pub mod json;
pub mod page;
mod routes;
pub mod settings;
pub mod streams;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use event_log_streaming::destination::LogLabels;
use event_log_streaming::destination::client::DestinationClient;
use event_log_streaming::store::{CredentialStore, StreamWrite};

use crate::auth::ManagementKeys;
use crate::error::ApiError;
use crate::streams::Streams;
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

impl AppState {
    /// The commands on streams, on this state's stores.
    pub fn commands(&self) -> Streams<'_> {
        Streams {
            streams: self.streams.as_ref(),
            credentials: self.credentials.as_ref(),
        }
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
        .merge(page::router())
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(axum::middleware::from_fn(page::security_headers))
        .layer(axum::middleware::from_fn(with_request_id))
        .with_state(state)
}

tokio::task_local! {
    /// The id of the request being served.
    static REQUEST_ID: String;
}

/// Gives each request one id, which its answer carries and its log lines carry (in a
/// `request` span), so that the id a customer reports finds the operator's log lines. The
/// error lines also name it as a field of their own: they must carry it even where RUST_LOG
/// turns info spans off.
async fn with_request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = new_request_id();
    let span = tracing::info_span!("request", request_id = %id);
    REQUEST_ID
        .scope(id, tracing::Instrument::instrument(next.run(request), span))
        .await
}

/// A body declared larger than the limit is refused before a byte of it is read: the client
/// must not be able to hold a connection open by announcing a body it never sends.
async fn refuse_declared_oversize(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > json::MAX_BODY_BYTES as u64) {
        return axum::response::IntoResponse::into_response(ApiError::PayloadTooLarge);
    }
    next.run(request).await
}

/// The id of the request being served, as the management API returns it; a fresh one outside
/// a request of [`app`].
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(String::clone)
        .unwrap_or_else(|_| new_request_id())
}

fn new_request_id() -> String {
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
