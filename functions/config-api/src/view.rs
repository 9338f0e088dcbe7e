//! What the API shows of a configuration: everything but the secrets, of which only the
//! last four characters are returned (`api_key_last_four`, `password_last_four`).

use event_log_streaming::domain::{Destination, DestinationType, StreamingConfig, StreamingStatus};
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Serialize)]
pub struct ConfigView {
    destination_type: DestinationType,
    destination_config: DestinationView,
    streaming_status: StreamingStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    enabled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
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
}

#[derive(Serialize)]
struct LokiView {
    hostname: String,
    username: String,
    password_last_four: String,
}

impl From<&StreamingConfig> for ConfigView {
    fn from(config: &StreamingConfig) -> Self {
        let destination_config = match &config.destination {
            Destination::Datadog(d) => DestinationView {
                datadog: Some(DatadogView {
                    site: d.site.as_str(),
                    api_key_last_four: d.api_key.secret().last_four(),
                }),
                grafana_loki: None,
            },
            Destination::GrafanaLoki(l) => DestinationView {
                datadog: None,
                grafana_loki: Some(LokiView {
                    hostname: l.hostname.to_string(),
                    username: l.username.clone(),
                    password_last_four: l.password.last_four(),
                }),
            },
        };
        Self {
            destination_type: config.destination.destination_type(),
            destination_config,
            streaming_status: config.streaming_status,
            enabled_at: config.enabled_at,
            created_at: config.created_at,
            updated_at: config.updated_at,
        }
    }
}
