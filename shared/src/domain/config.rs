//! A project's event log streaming configuration.
//!
//! A [`Destination`] is what the management API accepts (`destination_type` and
//! `destination_config`, secrets included). It is kept in two halves: the [`Endpoint`] in the
//! state table with the rest of the [`StreamConfig`], and the credential in a secret of its
//! own, referred to by version ([`CredentialRef`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::controls::{
    DatadogTags, EventFilter, EventFilterBody, KeyGenerationError, LokiLabels, LokiTenantId,
    Redaction, RedactionBody, RedactionKey, RedactionMode,
};
use super::{
    DatadogApiKey, DatadogDestination, DatadogSite, LokiDestination, LokiHostname, ProjectId,
    StreamState, ValidationError,
};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

    /// Parses `destination_config`, which must hold exactly the key of `destination_type`,
    /// credential included.
    pub fn parse(
        destination_type: DestinationType,
        body: &DestinationConfigBody,
    ) -> Result<Self, ValidationError> {
        let endpoint = Endpoint::parse(destination_type, body)?;
        let credential = body.credential().ok_or_else(|| {
            let field = match destination_type {
                DestinationType::Datadog => "destination_config.datadog.api_key",
                DestinationType::GrafanaLoki => "destination_config.grafana_loki.password",
            };
            ValidationError::new(field, "must not be empty")
        })?;
        Self::assemble(&endpoint, Secret::new(credential))
    }

    pub fn endpoint(&self) -> Endpoint {
        match self {
            Self::Datadog(d) => Endpoint::Datadog {
                site: d.site,
                tags: d.tags.clone(),
            },
            Self::GrafanaLoki(l) => Endpoint::GrafanaLoki {
                hostname: l.hostname.clone(),
                username: l.username.clone(),
                tenant_id: l.tenant_id.clone(),
                labels: l.labels.clone(),
            },
        }
    }

    /// The secret half: the Datadog API key or the Loki password (token).
    pub fn credential(&self) -> &Secret {
        match self {
            Self::Datadog(d) => d.api_key.secret(),
            Self::GrafanaLoki(l) => &l.password,
        }
    }

    /// Joins the two halves again, checking the credential as the API did when it was saved.
    pub fn assemble(endpoint: &Endpoint, credential: Secret) -> Result<Self, ValidationError> {
        match endpoint {
            Endpoint::Datadog { site, tags } => Ok(Self::Datadog(DatadogDestination {
                site: *site,
                api_key: DatadogApiKey::parse(credential.expose())?,
                tags: tags.clone(),
            })),
            Endpoint::GrafanaLoki {
                hostname,
                username,
                tenant_id,
                labels,
            } => Ok(Self::GrafanaLoki(LokiDestination {
                hostname: hostname.clone(),
                username: username.clone(),
                password: credential,
                tenant_id: tenant_id.clone(),
                labels: labels.clone(),
            })),
        }
    }
}

/// The non-secret half of a destination: what the state table holds. Besides where to push,
/// it says how logs land there: a Loki tenant and extra labels, Datadog tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Datadog {
        site: DatadogSite,
        /// Sent as `ddtags` on every log, after the product's `project_id` tag.
        tags: DatadogTags,
    },
    GrafanaLoki {
        hostname: LokiHostname,
        username: String,
        /// Sent as `X-Scope-OrgID`, for a multi-tenant Loki.
        tenant_id: Option<LokiTenantId>,
        /// Added to the product's `source` and `service_name`.
        labels: LokiLabels,
    },
}

impl Endpoint {
    /// The non-secret half of `destination_config`, which must hold exactly the key of
    /// `destination_type`; the credential is not looked at.
    pub fn parse(
        destination_type: DestinationType,
        body: &DestinationConfigBody,
    ) -> Result<Self, ValidationError> {
        match (destination_type, &body.datadog, &body.grafana_loki) {
            (DestinationType::Datadog, Some(datadog), None) => Ok(Self::Datadog {
                site: DatadogSite::parse(&datadog.site)?,
                tags: DatadogTags::parse(datadog.tags.as_deref().unwrap_or_default())
                    .map_err(|e| e.under("destination_config.datadog"))?,
            }),
            (DestinationType::GrafanaLoki, None, Some(loki)) => {
                let username = "destination_config.grafana_loki.username";
                if loki.username.trim().is_empty() {
                    return Err(ValidationError::new(username, "must not be empty"));
                }
                // RFC 7617: the password starts after the first colon.
                if loki.username.contains(':') {
                    return Err(ValidationError::new(
                        username,
                        "must not contain ':' (HTTP Basic authentication cannot carry it)",
                    ));
                }
                let under = |e: ValidationError| e.under("destination_config.grafana_loki");
                Ok(Self::GrafanaLoki {
                    hostname: LokiHostname::parse(&loki.hostname)?,
                    username: loki.username.clone(),
                    tenant_id: loki
                        .tenant_id
                        .as_deref()
                        .map(LokiTenantId::parse)
                        .transpose()
                        .map_err(under)?,
                    labels: loki
                        .labels
                        .as_ref()
                        .map(LokiLabels::parse)
                        .transpose()
                        .map_err(under)?
                        .unwrap_or_default(),
                })
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

    pub fn destination_type(&self) -> DestinationType {
        match self {
            Self::Datadog { .. } => DestinationType::Datadog,
            Self::GrafanaLoki { .. } => DestinationType::GrafanaLoki,
        }
    }

    /// Whether the credential stored for `self` may go on to `next` without being given
    /// again. Not to another Loki host: whoever holds a management key could otherwise point
    /// the stream at a host of their own and receive the stored token with the next push or
    /// test. Every Datadog site is Datadog's own, so a new site keeps the key.
    pub fn keeps_credential_for(&self, next: &Endpoint) -> bool {
        match (self, next) {
            (Self::Datadog { .. }, Self::Datadog { .. }) => true,
            (
                Self::GrafanaLoki { hostname, .. },
                Self::GrafanaLoki {
                    hostname: next_hostname,
                    ..
                },
            ) => hostname == next_hostname,
            _ => false,
        }
    }
}

impl DestinationConfigBody {
    /// The credential given (Datadog API key or Loki password), if it is not empty.
    pub fn credential(&self) -> Option<&str> {
        let given = match (&self.datadog, &self.grafana_loki) {
            (Some(datadog), None) => &datadog.api_key,
            (None, Some(loki)) => &loki.password,
            _ => return None,
        };
        (!given.is_empty()).then_some(given.as_str())
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

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogBody {
    pub site: String,
    /// Required on create; on update, absent or empty keeps the stored key.
    #[serde(default)]
    pub api_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiBody {
    pub hostname: String,
    pub username: String,
    /// Required on create; on update, absent or empty keeps the stored token, unless the
    /// hostname changes (see [`Endpoint::keeps_credential_for`]).
    #[serde(default)]
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// What a customer chose about which of the project's records leave the platform, and what of
/// them: applied by the streamer before a record is written into a push. The default (neither)
/// is today's path, on which records are not read beyond what delivery needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamControls {
    /// Never one that passes every record: that is no filter.
    pub event_filter: Option<EventFilter>,
    pub redaction: Option<Redaction>,
}

impl StreamControls {
    /// The controls of a request body; an `event_filter` without either list is no filter.
    pub fn parse(
        event_filter: Option<&EventFilterBody>,
        redaction: Option<&RedactionBody>,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            event_filter: event_filter
                .map(EventFilter::parse)
                .transpose()?
                .filter(|filter| !filter.passes_all()),
            redaction: redaction.map(Redaction::parse).transpose()?,
        })
    }

    /// Whether the redaction hashes values, and so needs the project's redaction key.
    pub fn hashes(&self) -> bool {
        self.redaction
            .as_ref()
            .is_some_and(|r| r.mode() == RedactionMode::Hash)
    }
}

/// What a stream's secret holds: the destination's credential, and the project's redaction
/// key (generated with the stream; secrets saved before keys existed have none until the
/// config API next saves one). Neither is ever in the table; `Debug` prints neither.
#[derive(Debug, Clone)]
pub struct StreamSecret {
    pub credential: Secret,
    pub redaction_key: Option<RedactionKey>,
}

/// A secret without a redaction key, as saved before keys existed.
impl From<Secret> for StreamSecret {
    fn from(credential: Secret) -> Self {
        Self {
            credential,
            redaction_key: None,
        }
    }
}

impl StreamSecret {
    /// A new stream's secret: `credential` and a new redaction key.
    pub fn with_new_key(credential: Secret) -> Result<Self, KeyGenerationError> {
        Ok(Self {
            credential,
            redaction_key: Some(RedactionKey::generate()?),
        })
    }

    /// `self` with `credential` in place of its own, the redaction key kept.
    pub fn with_credential(&self, credential: Secret) -> Self {
        Self {
            credential,
            redaction_key: self.redaction_key.clone(),
        }
    }
}

/// Where a stream's credential is: one secret per project, read by version so that a
/// container can cache it for its whole life and still see every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    pub secret_id: String,
    pub version_id: String,
    /// What the API shows of the credential (see [`Secret::last_four`]), kept here so that
    /// reading a configuration never reads the secret.
    pub last_four: String,
}

/// A project's stream configuration, without its credential: what the state table holds
/// besides delivery health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub project_id: ProjectId,
    /// This stream's own identity: a stream deleted and created again is another stream, and
    /// a container still holding the old one can neither write its health nor suspend it.
    pub stream_id: String,
    pub endpoint: Endpoint,
    pub controls: StreamControls,
    pub credential: CredentialRef,
    pub state: StreamState,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Grows with every change; every write is conditional on the version it read.
    pub version: u64,
}

impl StreamConfig {
    /// A new configuration: a new stream identity, version 1, disabled until enabled.
    pub fn new(
        project_id: ProjectId,
        endpoint: Endpoint,
        credential: CredentialRef,
        now: OffsetDateTime,
    ) -> Self {
        Self::with_id(new_stream_id(), project_id, endpoint, credential, now)
    }

    /// A new configuration of the stream `stream_id` (from [`new_stream_id`]), whose
    /// credential was saved under that identity first.
    pub fn with_id(
        stream_id: String,
        project_id: ProjectId,
        endpoint: Endpoint,
        credential: CredentialRef,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            project_id,
            stream_id,
            endpoint,
            controls: StreamControls::default(),
            credential,
            state: StreamState::created(),
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    pub fn destination_type(&self) -> DestinationType {
        self.endpoint.destination_type()
    }

    /// The next version of this configuration, changed at `now`.
    pub fn next_version(&self, now: OffsetDateTime) -> Self {
        Self {
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }
}

/// A new stream's identity: 128 random bits, never the same for two streams of a project.
pub fn new_stream_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The identity of a stream stored before streams had one: the instant it was created.
pub fn legacy_stream_id(created_at: OffsetDateTime) -> String {
    format!("created-{}", created_at.unix_timestamp_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_config_must_hold_exactly_the_matching_key() {
        let loki = LokiBody {
            hostname: "h.example.com".into(),
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        let datadog = DatadogBody {
            site: "US".into(),
            api_key: "0123456789abcdef0123456789abcdef".into(),
            ..Default::default()
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
    fn a_destination_splits_into_endpoint_and_credential_and_joins_again() {
        let body = DestinationConfigBody {
            datadog: Some(DatadogBody {
                site: "EU".into(),
                api_key: "0123456789abcdef0123456789abcdef".into(),
                tags: Some(vec!["team:identity".into()]),
            }),
            grafana_loki: None,
        };
        let destination = Destination::parse(DestinationType::Datadog, &body).unwrap();
        let again =
            Destination::assemble(&destination.endpoint(), destination.credential().clone());
        assert_eq!(again.unwrap(), destination);
        let wrong = Destination::assemble(&destination.endpoint(), Secret::new("not-a-key"));
        assert!(!wrong.unwrap_err().to_string().contains("not-a-key"));
    }
}
