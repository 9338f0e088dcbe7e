//! What the API shows of a stream: everything but the credential, of which only the last
//! four characters are returned (`api_key_last_four`, `password_last_four`), and the
//! stream's delivery health. Controls are shown when set, as they were given (the redaction
//! key never is).

use std::collections::BTreeMap;

use event_log_streaming::domain::controls::{EventFilterBody, RedactionBody};
use event_log_streaming::domain::{DeliveryError, DestinationType, Endpoint, StreamingStatus};
use event_log_streaming::store::StoredStream;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Serialize)]
pub struct ConfigView {
    destination_type: DestinationType,
    destination_config: DestinationView,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_filter: Option<EventFilterBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redaction: Option<RedactionBody>,
    streaming_status: StreamingStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    enabled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    suspended_at: Option<OffsetDateTime>,
    suspended_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    version: u64,
    delivery_health: HealthView,
}

#[derive(Serialize)]
struct DestinationView {
    #[serde(skip_serializing_if = "Option::is_none")]
    datadog: Option<DatadogView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grafana_loki: Option<LokiView>,
}

#[derive(Serialize)]
struct DatadogView {
    site: &'static str,
    api_key_last_four: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

#[derive(Serialize)]
struct LokiView {
    hostname: String,
    username: String,
    password_last_four: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct HealthView {
    #[serde(with = "time::serde::rfc3339::option")]
    last_success_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_failure_at: Option<OffsetDateTime>,
    consecutive_failures: u64,
    last_error: Option<ErrorView>,
    recent_errors: Vec<ErrorView>,
    events_delivered: u64,
    events_failed: u64,
    events_filtered: u64,
    /// The latest delivery's lag, and when it was seen; null before the first delivery.
    last_delivery_lag_ms: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_delivery_lag_at: Option<OffsetDateTime>,
}

#[derive(Serialize)]
struct ErrorView {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    destination_status: Option<u16>,
    message: String,
}

impl From<&DeliveryError> for ErrorView {
    fn from(error: &DeliveryError) -> Self {
        Self {
            at: error.at,
            destination_status: error.destination_status,
            message: error.message.clone(),
        }
    }
}

impl From<&StoredStream> for ConfigView {
    fn from(stream: &StoredStream) -> Self {
        let config = &stream.config;
        let last_four = config.credential.last_four.clone();
        let destination_config = match &config.endpoint {
            Endpoint::Datadog { site, tags } => DestinationView {
                datadog: Some(DatadogView {
                    site: site.as_str(),
                    api_key_last_four: last_four,
                    tags: tags.to_body(),
                }),
                grafana_loki: None,
            },
            Endpoint::GrafanaLoki {
                hostname,
                username,
                tenant_id,
                labels,
            } => DestinationView {
                datadog: None,
                grafana_loki: Some(LokiView {
                    hostname: hostname.to_string(),
                    username: username.clone(),
                    password_last_four: last_four,
                    tenant_id: tenant_id.as_ref().map(|t| t.as_str().to_owned()),
                    labels: labels.to_body(),
                }),
            },
        };
        let health = &stream.health;
        let suspension = config.state.suspension.as_ref();
        Self {
            destination_type: config.destination_type(),
            destination_config,
            event_filter: config.controls.event_filter.as_ref().map(|f| f.to_body()),
            redaction: config.controls.redaction.as_ref().map(|r| r.to_body()),
            streaming_status: config.state.status,
            enabled_at: config.state.enabled_at,
            suspended_at: suspension.map(|s| s.at),
            suspended_reason: suspension.map(|s| s.reason.clone()),
            created_at: config.created_at,
            updated_at: config.updated_at,
            version: config.version,
            delivery_health: HealthView {
                last_success_at: health.last_success_at,
                last_failure_at: health.last_failure_at(),
                consecutive_failures: health.consecutive_failures,
                last_error: health.last_error().map(ErrorView::from),
                recent_errors: health.recent_errors.iter().map(ErrorView::from).collect(),
                events_delivered: health.events_delivered,
                events_failed: health.events_failed,
                events_filtered: health.events_filtered,
                last_delivery_lag_ms: health.last_delivery_lag.map(|lag| lag.millis),
                last_delivery_lag_at: health.last_delivery_lag.map(|lag| lag.at),
            },
        }
    }
}
