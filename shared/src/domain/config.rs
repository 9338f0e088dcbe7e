//! A project's event log streaming configuration, and its JSON shape.
//!
//! The JSON shape is the management API's (`destination_type`, `destination_config`,
//! `streaming_status`) plus the timestamps the streamer needs; it is both the body the config
//! API accepts and the record the store keeps, one Secrets Manager secret per project.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    DatadogApiKey, DatadogDestination, DatadogSite, LokiDestination, LokiHostname, ValidationError,
};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DestinationType {
    Datadog,
    GrafanaLoki,
}

impl DestinationType {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        match value {
            "DATADOG" => Ok(Self::Datadog),
            "GRAFANA_LOKI" => Ok(Self::GrafanaLoki),
            _ => Err(ValidationError::new(
                "destination_type",
                "must be DATADOG or GRAFANA_LOKI",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Datadog => "DATADOG",
            Self::GrafanaLoki => "GRAFANA_LOKI",
        }
    }
}

impl fmt::Display for DestinationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamingStatus {
    Active,
    Disabled,
}

/// Where a project's events go; exactly one destination per project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Datadog(DatadogDestination),
    GrafanaLoki(LokiDestination),
}

impl Destination {
    pub fn destination_type(&self) -> DestinationType {
        match self {
            Self::Datadog(_) => DestinationType::Datadog,
            Self::GrafanaLoki(_) => DestinationType::GrafanaLoki,
        }
    }

    /// Parses `destination_config`, which must hold exactly the key of `destination_type`.
    pub fn parse(
        destination_type: DestinationType,
        body: &DestinationConfigBody,
    ) -> Result<Self, ValidationError> {
        match (destination_type, &body.datadog, &body.grafana_loki) {
            (DestinationType::Datadog, Some(datadog), None) => {
                Ok(Self::Datadog(DatadogDestination {
                    site: DatadogSite::parse(&datadog.site)?,
                    api_key: DatadogApiKey::parse(&datadog.api_key)?,
                }))
            }
            (DestinationType::GrafanaLoki, None, Some(loki)) => {
                if loki.username.trim().is_empty() {
                    return Err(ValidationError::new(
                        "destination_config.grafana_loki.username",
                        "must not be empty",
                    ));
                }
                if loki.password.is_empty() {
                    return Err(ValidationError::new(
                        "destination_config.grafana_loki.password",
                        "must not be empty",
                    ));
                }
                Ok(Self::GrafanaLoki(LokiDestination {
                    hostname: LokiHostname::parse(&loki.hostname)?,
                    username: loki.username.clone(),
                    password: Secret::new(loki.password.clone()),
                }))
            }
            (destination_type, _, _) => Err(ValidationError::new(
                "destination_config",
                format!(
                    "must hold exactly the key {}",
                    match destination_type {
                        DestinationType::Datadog => "datadog",
                        DestinationType::GrafanaLoki => "grafana_loki",
                    }
                ),
            )),
        }
    }

    /// The JSON shape with the secrets in clear: only for the store.
    pub fn to_body(&self) -> DestinationConfigBody {
        match self {
            Self::Datadog(d) => DestinationConfigBody {
                datadog: Some(DatadogBody {
                    site: d.site.as_str().to_owned(),
                    api_key: d.api_key.secret().expose().to_owned(),
                }),
                grafana_loki: None,
            },
            Self::GrafanaLoki(l) => DestinationConfigBody {
                datadog: None,
                grafana_loki: Some(LokiBody {
                    hostname: l.hostname.to_string(),
                    username: l.username.clone(),
                    password: l.password.expose().to_owned(),
                }),
            },
        }
    }
}

/// `destination_config` as it travels in JSON. Holds secrets in clear, so it never derives
/// `Debug` and is never logged.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfigBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<DatadogBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_loki: Option<LokiBody>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogBody {
    pub site: String,
    pub api_key: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiBody {
    pub hostname: String,
    pub username: String,
    pub password: String,
}

/// A project's configuration as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingConfig {
    pub destination: Destination,
    pub streaming_status: StreamingStatus,
    /// When streaming was last turned on; events produced before it are not streamed.
    pub enabled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    destination_type: DestinationType,
    destination_config: DestinationConfigBody,
    streaming_status: StreamingStatus,
    #[serde(default, with = "time::serde::rfc3339::option")]
    enabled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

/// A stored record that does not parse. The message names the field, never a value, since
/// the record holds the customer's credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoredConfigError {
    #[error(
        "stored configuration is not valid JSON of the expected shape (line {line}, column {column})"
    )]
    Shape { line: usize, column: usize },
    #[error("stored configuration is invalid: {0}")]
    Invalid(#[from] ValidationError),
}

impl StreamingConfig {
    pub fn is_active(&self) -> bool {
        self.streaming_status == StreamingStatus::Active
    }

    pub fn to_stored_json(&self) -> String {
        let record = StoredRecord {
            destination_type: self.destination.destination_type(),
            destination_config: self.destination.to_body(),
            streaming_status: self.streaming_status,
            enabled_at: self.enabled_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        serde_json::to_string(&record).expect("a stored record always serializes")
    }

    pub fn from_stored_json(json: &str) -> Result<Self, StoredConfigError> {
        // serde_json's messages can quote the offending value, which may be a secret: keep
        // only the position.
        let record: StoredRecord =
            serde_json::from_str(json).map_err(|e| StoredConfigError::Shape {
                line: e.line(),
                column: e.column(),
            })?;
        Ok(Self {
            destination: Destination::parse(record.destination_type, &record.destination_config)?,
            streaming_status: record.streaming_status,
            enabled_at: record.enabled_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOKI: &str = r#"{"destination_type":"GRAFANA_LOKI",
        "destination_config":{"grafana_loki":{"hostname":"logs-prod-021.grafana.net","username":"123","password":"glc_secret_token"}},
        "streaming_status":"ACTIVE","enabled_at":"2026-11-24T10:00:00Z",
        "created_at":"2026-11-24T09:00:00Z","updated_at":"2026-11-24T10:00:00Z"}"#;

    #[test]
    fn a_stored_loki_record_round_trips() {
        let config = StreamingConfig::from_stored_json(LOKI).unwrap();
        assert!(config.is_active());
        let Destination::GrafanaLoki(loki) = &config.destination else {
            panic!("expected Loki")
        };
        assert_eq!(loki.username, "123");
        assert_eq!(loki.password.expose(), "glc_secret_token");
        let again = StreamingConfig::from_stored_json(&config.to_stored_json()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn a_stored_datadog_record_without_enabled_at_parses() {
        let json = r#"{"destination_type":"DATADOG",
            "destination_config":{"datadog":{"site":"EU","api_key":"0123456789abcdef0123456789abcdef"}},
            "streaming_status":"DISABLED","created_at":"2026-11-24T09:00:00Z","updated_at":"2026-11-24T09:00:00Z"}"#;
        let config = StreamingConfig::from_stored_json(json).unwrap();
        assert!(!config.is_active());
        assert_eq!(config.enabled_at, None);
        assert_eq!(
            config.destination.destination_type(),
            DestinationType::Datadog
        );
    }

    #[test]
    fn destination_config_must_hold_exactly_the_matching_key() {
        let loki = LokiBody {
            hostname: "h.example.com".into(),
            username: "u".into(),
            password: "p".into(),
        };
        let datadog = DatadogBody {
            site: "US".into(),
            api_key: "0123456789abcdef0123456789abcdef".into(),
        };
        let both = DestinationConfigBody {
            datadog: Some(datadog.clone()),
            grafana_loki: Some(loki.clone()),
        };
        let only_loki = DestinationConfigBody {
            datadog: None,
            grafana_loki: Some(loki),
        };
        assert!(Destination::parse(DestinationType::Datadog, &both).is_err());
        assert!(Destination::parse(DestinationType::Datadog, &only_loki).is_err());
        assert!(Destination::parse(DestinationType::GrafanaLoki, &Default::default()).is_err());
        assert!(Destination::parse(DestinationType::GrafanaLoki, &only_loki).is_ok());
    }

    #[test]
    fn a_broken_record_error_never_quotes_its_content() {
        let json = LOKI.replace("\"ACTIVE\"", "\"glc_secret_token\"");
        let err = StreamingConfig::from_stored_json(&json).unwrap_err();
        assert!(!err.to_string().contains("glc_secret_token"), "{err}");
        let json = LOKI.replace("logs-prod-021.grafana.net", "glc_secret_token/x");
        let err = StreamingConfig::from_stored_json(&json).unwrap_err();
        assert!(!err.to_string().contains("glc_secret_token"), "{err}");
    }
}
