//! Domain types. Each is parsed once at the edge (SQS body, store record, API body) and is
//! valid from then on, so the delivery code never re-checks a project id or a hostname.

mod config;
pub mod controls;
mod datadog;
mod health;
mod loki;
mod project_id;
mod status;

pub use config::{
    CredentialRef, DatadogBody, Destination, DestinationConfigBody, DestinationType, Endpoint,
    LokiBody, StreamConfig, StreamControls, StreamSecret, legacy_stream_id, new_stream_id,
};
pub use datadog::{DatadogApiKey, DatadogDestination, DatadogSite};
pub use health::{DeliveryError, DeliveryHealth, DeliveryLag, MAX_RECENT_ERRORS, SuspendPolicy};
pub use loki::{LokiDestination, LokiHostname, parse_port};
pub use project_id::ProjectId;
pub use status::{Eligibility, StreamState, StreamingStatus, Suspension};

/// Why a value from outside was refused, worded for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with its field placed under `parent`: a control's `labels.team` becomes
    /// `destination_config.grafana_loki.labels.team` where the API nests it.
    pub fn under(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            message: self.message,
        }
    }
}
