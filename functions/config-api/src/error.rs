//! Every error of the API, mapped to a status code in one place.
//!
//! Bodies have the management API's shape: `{status_code, request_id, error_type,
//! error_message}`. Store failures are logged with their cause and answered with a generic
//! message: no store, SDK or parser detail reaches the client. An outage or throttling is a
//! 503 with `Retry-After` (sending again can help); a corrupt record is a 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use event_log_streaming::domain::ValidationError;
use event_log_streaming::store::{StoreError, error_chain};
use serde_json::json;

use crate::request_id;
use crate::streams::StreamError;

/// What a 503 asks a client to wait: long enough for the SDK's own retries to have given up
/// on a throttled table, short enough for a person at the page.
const RETRY_AFTER_SECONDS: u16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("missing or invalid management key")]
    Unauthorized,
    #[error("this management key may not manage this project")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than 64 KB")]
    PayloadTooLarge,
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// A store throttled or out of reach: the request was fine and may be sent again.
    #[error(
        "the configuration store cannot be reached right now; send the request again in a few seconds"
    )]
    Unavailable,
    /// The cause is logged where the error is made, never sent.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized_credentials"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::InvalidArgument(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists => Self::Conflict(
                "the project already has an event log streaming configuration; a project streams to one destination (delete it first)".into(),
            ),
            StoreError::NotFound => Self::NotFound("the project has no event log streaming configuration".into()),
            StoreError::Conflict => Self::Conflict(
                "the configuration changed between this request's read and its write (a concurrent update); read it again and retry".into(),
            ),
            StoreError::Unavailable { .. } => {
                tracing::error!(request_id = %request_id(), error = %error_chain(&err), "configuration store unavailable");
                Self::Unavailable
            }
            StoreError::Corrupt(_) => {
                tracing::error!(request_id = %request_id(), error = %error_chain(&err), "configuration store failed");
                Self::Internal
            }
        }
    }
}

impl From<StreamError> for ApiError {
    fn from(err: StreamError) -> Self {
        match err {
            StreamError::Invalid(err) => err.into(),
            StreamError::NoStream | StreamError::OtherType { .. } => {
                Self::NotFound(err.to_string())
            }
            StreamError::Store(err) => err.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_type) = self.status_and_type();
        let body = json!({
            "status_code": status.as_u16(),
            "request_id": request_id(),
            "error_type": error_type,
            "error_message": self.to_string(),
        });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="event-log-streaming""#),
                );
            }
            Self::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}
