//! The item format of a stream: one item per project, every attribute named once in
//! [`attr`]. The item's attributes are owned by two writers that never touch each other's:
//! the configuration ([`config_attributes`]) and the health ([`health_attributes`]).
//! Times are RFC 3339 strings; the stream controls are maps and lists of strings, absent when
//! unused. No credential (nor redaction key) is ever in the item.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::controls::{
    DatadogTags, EventFilterBody, LokiLabels, LokiTenantId, RedactionBody,
};
use crate::domain::{
    CredentialRef, DatadogSite, DeliveryError, DeliveryHealth, DeliveryLag, DestinationType,
    Endpoint, LokiHostname, ProjectId, StreamConfig, StreamControls, StreamState, StreamingStatus,
    Suspension, legacy_stream_id,
};
use crate::store::{StoreError, StoreResult, StoredStream};

pub type Item = HashMap<String, AttributeValue>;

/// The attribute names, each defined once.
pub mod attr {
    pub const PROJECT_ID: &str = "project_id";
    pub const STREAM_ID: &str = "stream_id";
    pub const VERSION: &str = "version";
    pub const DESTINATION_TYPE: &str = "destination_type";
    pub const HOSTNAME: &str = "hostname";
    pub const USERNAME: &str = "username";
    pub const SITE: &str = "site";
    pub const STREAMING_STATUS: &str = "streaming_status";
    pub const ENABLED_AT: &str = "enabled_at";
    pub const SUSPENDED_AT: &str = "suspended_at";
    pub const SUSPENDED_REASON: &str = "suspended_reason";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const CREDENTIAL_SECRET_ID: &str = "credential_secret_id";
    pub const CREDENTIAL_VERSION_ID: &str = "credential_version_id";
    pub const CREDENTIAL_LAST_FOUR: &str = "credential_last_four";
    pub const TENANT_ID: &str = "tenant_id";
    pub const LABELS: &str = "labels";
    pub const TAGS: &str = "tags";
    pub const EVENT_FILTER: &str = "event_filter";
    pub const REDACTION: &str = "redaction";
    /// The fields of [`EVENT_FILTER`] and [`REDACTION`].
    pub const FILTER_ACTIONS: &str = "actions";
    pub const FILTER_STATUSES: &str = "statuses";
    pub const REDACTION_FIELDS: &str = "fields";
    pub const REDACTION_MODE: &str = "mode";

    pub const HEALTH_SEQ: &str = "health_seq";
    pub const LAST_SUCCESS_AT: &str = "last_success_at";
    pub const CONSECUTIVE_FAILURES: &str = "consecutive_failures";
    pub const CONSECUTIVE_AUTH_FAILURES: &str = "consecutive_auth_failures";
    pub const AUTH_FAILURES_SINCE: &str = "auth_failures_since";
    pub const AUTH_FAILURES_VERSION: &str = "auth_failures_version";
    pub const RECENT_ERRORS: &str = "recent_errors";
    pub const EVENTS_DELIVERED: &str = "events_delivered";
    pub const EVENTS_FAILED: &str = "events_failed";
    pub const EVENTS_FILTERED: &str = "events_filtered";
    /// The latest delivery lag: milliseconds, and when it was seen. Both or neither.
    pub const LAST_DELIVERY_LAG_MS: &str = "last_delivery_lag_ms";
    pub const LAST_DELIVERY_LAG_AT: &str = "last_delivery_lag_at";
    /// The fields of each entry of [`RECENT_ERRORS`].
    pub const ERROR_AT: &str = "at";
    pub const ERROR_DESTINATION_STATUS: &str = "destination_status";
    pub const ERROR_MESSAGE: &str = "message";

    /// What a health write reads: the health, and which stream at which version it is.
    pub const HEALTH_READ: [&str; 16] = [
        PROJECT_ID,
        STREAM_ID,
        CREATED_AT,
        VERSION,
        HEALTH_SEQ,
        LAST_SUCCESS_AT,
        CONSECUTIVE_FAILURES,
        CONSECUTIVE_AUTH_FAILURES,
        AUTH_FAILURES_SINCE,
        AUTH_FAILURES_VERSION,
        RECENT_ERRORS,
        EVENTS_DELIVERED,
        EVENTS_FAILED,
        EVENTS_FILTERED,
        LAST_DELIVERY_LAG_MS,
        LAST_DELIVERY_LAG_AT,
    ];
}

pub fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn time_value(at: OffsetDateTime) -> AttributeValue {
    AttributeValue::S(at.format(&Rfc3339).expect("a time formats as RFC 3339"))
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> AttributeValue {
    AttributeValue::L(values.into_iter().map(s).collect())
}

fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, AttributeValue)>) -> AttributeValue {
    AttributeValue::M(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The configuration's attributes; `None` for those to remove.
pub fn config_attributes(config: &StreamConfig) -> Vec<(&'static str, Option<AttributeValue>)> {
    let (mut hostname, mut username, mut site) = (None, None, None);
    let (mut tenant, mut labels, mut tags) = (None, None, None);
    match &config.endpoint {
        Endpoint::GrafanaLoki {
            hostname: host,
            username: user,
            tenant_id,
            labels: extra,
        } => {
            hostname = Some(s(&host.to_string()));
            username = Some(s(user));
            tenant = tenant_id.as_ref().map(|t| s(t.as_str()));
            labels = (!extra.is_empty()).then(|| map(extra.iter().map(|(k, v)| (k, s(v)))));
        }
        Endpoint::Datadog {
            site: at,
            tags: all,
        } => {
            site = Some(s(at.as_str()));
            tags = (!all.is_empty()).then(|| strings(all.iter().map(|t| t.as_str())));
        }
    }
    let controls = &config.controls;
    let event_filter = controls.event_filter.as_ref().map(|filter| {
        let body = filter.to_body();
        let lists = [
            (attr::FILTER_ACTIONS, body.actions),
            (attr::FILTER_STATUSES, body.statuses),
        ];
        map(lists
            .into_iter()
            .filter_map(|(name, list)| Some((name, strings(list?.iter().map(String::as_str))))))
    });
    let redaction = controls.redaction.as_ref().map(|redaction| {
        let body = redaction.to_body();
        map([
            (
                attr::REDACTION_FIELDS,
                strings(body.fields.iter().map(String::as_str)),
            ),
            (attr::REDACTION_MODE, s(&body.mode)),
        ])
    });
    let suspension = config.state.suspension.as_ref();
    vec![
        (
            attr::DESTINATION_TYPE,
            Some(s(config.destination_type().as_str())),
        ),
        (attr::HOSTNAME, hostname),
        (attr::USERNAME, username),
        (attr::SITE, site),
        (attr::TENANT_ID, tenant),
        (attr::LABELS, labels),
        (attr::TAGS, tags),
        (attr::EVENT_FILTER, event_filter),
        (attr::REDACTION, redaction),
        (
            attr::STREAMING_STATUS,
            Some(s(config.state.status.as_str())),
        ),
        (attr::ENABLED_AT, config.state.enabled_at.map(time_value)),
        (attr::SUSPENDED_AT, suspension.map(|s| time_value(s.at))),
        (attr::SUSPENDED_REASON, suspension.map(|x| s(&x.reason))),
        (attr::CREATED_AT, Some(time_value(config.created_at))),
        (attr::UPDATED_AT, Some(time_value(config.updated_at))),
        (attr::VERSION, Some(n(config.version))),
        (attr::STREAM_ID, Some(s(&config.stream_id))),
        (
            attr::CREDENTIAL_SECRET_ID,
            Some(s(&config.credential.secret_id)),
        ),
        (
            attr::CREDENTIAL_VERSION_ID,
            Some(s(&config.credential.version_id)),
        ),
        (
            attr::CREDENTIAL_LAST_FOUR,
            Some(s(&config.credential.last_four)),
        ),
    ]
}

pub fn health_attributes(health: &DeliveryHealth) -> Vec<(&'static str, Option<AttributeValue>)> {
    let errors = health
        .recent_errors
        .iter()
        .map(|e| {
            AttributeValue::M(HashMap::from([
                (attr::ERROR_AT.to_owned(), time_value(e.at)),
                (
                    attr::ERROR_DESTINATION_STATUS.to_owned(),
                    e.destination_status
                        .map_or(AttributeValue::Null(true), |status| n(status.into())),
                ),
                (attr::ERROR_MESSAGE.to_owned(), s(&e.message)),
            ]))
        })
        .collect();
    vec![
        (
            attr::LAST_SUCCESS_AT,
            health.last_success_at.map(time_value),
        ),
        (
            attr::CONSECUTIVE_FAILURES,
            Some(n(health.consecutive_failures)),
        ),
        (
            attr::CONSECUTIVE_AUTH_FAILURES,
            Some(n(health.consecutive_auth_failures)),
        ),
        (
            attr::AUTH_FAILURES_SINCE,
            health.auth_failures_since.map(time_value),
        ),
        (
            attr::AUTH_FAILURES_VERSION,
            health.auth_failures_version.map(n),
        ),
        (attr::RECENT_ERRORS, Some(AttributeValue::L(errors))),
        (attr::EVENTS_DELIVERED, Some(n(health.events_delivered))),
        (attr::EVENTS_FAILED, Some(n(health.events_failed))),
        (attr::EVENTS_FILTERED, Some(n(health.events_filtered))),
        (
            attr::LAST_DELIVERY_LAG_MS,
            health.last_delivery_lag.map(|lag| n(lag.millis)),
        ),
        (
            attr::LAST_DELIVERY_LAG_AT,
            health.last_delivery_lag.map(|lag| time_value(lag.at)),
        ),
    ]
}

fn corrupt(item: &Item, attribute: &str) -> StoreError {
    let project = item
        .get(attr::PROJECT_ID)
        .and_then(|v| v.as_s().ok())
        .map_or("?", String::as_str);
    StoreError::Corrupt(format!("attribute {attribute} of item {project}"))
}

pub fn string<'a>(item: &'a Item, name: &str) -> StoreResult<Option<&'a str>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(_) => Err(corrupt(item, name)),
    }
}

fn required<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    string(item, name)?.ok_or_else(|| corrupt(item, name))
}

pub fn number(item: &Item, name: &str) -> StoreResult<Option<u64>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(value)) => value.parse().map(Some).map_err(|_| corrupt(item, name)),
        Some(_) => Err(corrupt(item, name)),
    }
}

/// A list of strings; `None` when absent.
fn string_list(item: &Item, name: &str) -> StoreResult<Option<Vec<String>>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| v.as_s().cloned().map_err(|_| corrupt(item, name)))
            .collect::<StoreResult<_>>()
            .map(Some),
        Some(_) => Err(corrupt(item, name)),
    }
}

/// A map; `None` when absent.
fn nested<'a>(item: &'a Item, name: &str) -> StoreResult<Option<&'a Item>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::M(fields)) => Ok(Some(fields)),
        Some(_) => Err(corrupt(item, name)),
    }
}

pub fn time(item: &Item, name: &str) -> StoreResult<Option<OffsetDateTime>> {
    string(item, name)?
        .map(|value| OffsetDateTime::parse(value, &Rfc3339).map_err(|_| corrupt(item, name)))
        .transpose()
}

pub fn stream_from_item(item: &Item) -> StoreResult<StoredStream> {
    let bad = |name| corrupt(item, name);
    let project_id =
        ProjectId::parse(required(item, attr::PROJECT_ID)?).map_err(|_| bad(attr::PROJECT_ID))?;
    let destination_type = DestinationType::parse(required(item, attr::DESTINATION_TYPE)?)
        .map_err(|_| bad(attr::DESTINATION_TYPE))?;
    let endpoint = match destination_type {
        DestinationType::GrafanaLoki => Endpoint::GrafanaLoki {
            hostname: LokiHostname::parse(required(item, attr::HOSTNAME)?)
                .map_err(|_| bad(attr::HOSTNAME))?,
            username: required(item, attr::USERNAME)?.to_owned(),
            tenant_id: string(item, attr::TENANT_ID)?
                .map(LokiTenantId::parse)
                .transpose()
                .map_err(|_| bad(attr::TENANT_ID))?,
            labels: labels_from_item(item)?,
        },
        DestinationType::Datadog => Endpoint::Datadog {
            site: DatadogSite::parse(required(item, attr::SITE)?).map_err(|_| bad(attr::SITE))?,
            tags: DatadogTags::parse(&string_list(item, attr::TAGS)?.unwrap_or_default())
                .map_err(|_| bad(attr::TAGS))?,
        },
    };
    let status = StreamingStatus::parse(required(item, attr::STREAMING_STATUS)?)
        .ok_or_else(|| bad(attr::STREAMING_STATUS))?;
    let suspension = match (
        time(item, attr::SUSPENDED_AT)?,
        string(item, attr::SUSPENDED_REASON)?,
    ) {
        (Some(at), Some(reason)) => Some(Suspension {
            at,
            reason: reason.to_owned(),
        }),
        _ => None,
    };
    let created_at = time(item, attr::CREATED_AT)?.ok_or_else(|| bad(attr::CREATED_AT))?;
    let config = StreamConfig {
        project_id,
        stream_id: stream_id(item, created_at)?,
        endpoint,
        controls: controls_from_item(item)?,
        credential: CredentialRef {
            secret_id: required(item, attr::CREDENTIAL_SECRET_ID)?.to_owned(),
            version_id: required(item, attr::CREDENTIAL_VERSION_ID)?.to_owned(),
            last_four: string(item, attr::CREDENTIAL_LAST_FOUR)?
                .unwrap_or_default()
                .to_owned(),
        },
        state: StreamState {
            status,
            enabled_at: time(item, attr::ENABLED_AT)?,
            suspension,
        },
        created_at,
        updated_at: time(item, attr::UPDATED_AT)?.ok_or_else(|| bad(attr::UPDATED_AT))?,
        version: number(item, attr::VERSION)?.ok_or_else(|| bad(attr::VERSION))?,
    };
    Ok(StoredStream {
        config,
        health: health_from_item(item)?,
    })
}

fn labels_from_item(item: &Item) -> StoreResult<LokiLabels> {
    let Some(labels) = nested(item, attr::LABELS)? else {
        return Ok(LokiLabels::default());
    };
    let pairs = labels
        .keys()
        .map(|name| Ok((name.clone(), required(labels, name)?.to_owned())))
        .collect::<StoreResult<_>>()
        .map_err(|_| corrupt(item, attr::LABELS))?;
    LokiLabels::parse(&pairs).map_err(|_| corrupt(item, attr::LABELS))
}

fn controls_from_item(item: &Item) -> StoreResult<StreamControls> {
    let event_filter = nested(item, attr::EVENT_FILTER)?
        .map(|filter| {
            Ok(EventFilterBody {
                actions: string_list(filter, attr::FILTER_ACTIONS)?,
                statuses: string_list(filter, attr::FILTER_STATUSES)?,
            })
        })
        .transpose()
        .map_err(|_: StoreError| corrupt(item, attr::EVENT_FILTER))?;
    let redaction = nested(item, attr::REDACTION)?
        .map(|redaction| {
            Ok(RedactionBody {
                fields: string_list(redaction, attr::REDACTION_FIELDS)?.unwrap_or_default(),
                mode: required(redaction, attr::REDACTION_MODE)?.to_owned(),
            })
        })
        .transpose()
        .map_err(|_: StoreError| corrupt(item, attr::REDACTION))?;
    StreamControls::parse(event_filter.as_ref(), redaction.as_ref())
        .map_err(|e| StoreError::Corrupt(format!("{} of the item", e.field)))
}

/// The stream's identity; items written before streams had one are named by their creation.
pub fn stream_id(item: &Item, created_at: OffsetDateTime) -> StoreResult<String> {
    Ok(string(item, attr::STREAM_ID)?
        .map(str::to_owned)
        .unwrap_or_else(|| legacy_stream_id(created_at)))
}

pub fn health_from_item(item: &Item) -> StoreResult<DeliveryHealth> {
    let errors = match item.get(attr::RECENT_ERRORS) {
        None => Vec::new(),
        Some(AttributeValue::L(errors)) => errors
            .iter()
            .map(|error| {
                let error = error
                    .as_m()
                    .map_err(|_| corrupt(item, attr::RECENT_ERRORS))?;
                Ok(DeliveryError {
                    at: time(error, attr::ERROR_AT)?
                        .ok_or_else(|| corrupt(item, attr::RECENT_ERRORS))?,
                    destination_status: number(error, attr::ERROR_DESTINATION_STATUS)?
                        .and_then(|status| u16::try_from(status).ok()),
                    message: required(error, attr::ERROR_MESSAGE)?.to_owned(),
                })
            })
            .collect::<StoreResult<_>>()?,
        Some(_) => return Err(corrupt(item, attr::RECENT_ERRORS)),
    };
    Ok(DeliveryHealth {
        last_success_at: time(item, attr::LAST_SUCCESS_AT)?,
        consecutive_failures: number(item, attr::CONSECUTIVE_FAILURES)?.unwrap_or(0),
        consecutive_auth_failures: number(item, attr::CONSECUTIVE_AUTH_FAILURES)?.unwrap_or(0),
        auth_failures_since: time(item, attr::AUTH_FAILURES_SINCE)?,
        auth_failures_version: number(item, attr::AUTH_FAILURES_VERSION)?,
        recent_errors: errors,
        events_delivered: number(item, attr::EVENTS_DELIVERED)?.unwrap_or(0),
        events_failed: number(item, attr::EVENTS_FAILED)?.unwrap_or(0),
        events_filtered: number(item, attr::EVENTS_FILTERED)?.unwrap_or(0),
        last_delivery_lag: match (
            number(item, attr::LAST_DELIVERY_LAG_MS)?,
            time(item, attr::LAST_DELIVERY_LAG_AT)?,
        ) {
            (Some(millis), Some(at)) => Some(DeliveryLag { at, millis }),
            (None, None) => None,
            _ => return Err(corrupt(item, attr::LAST_DELIVERY_LAG_MS)),
        },
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn an_item_round_trips_and_holds_no_credential() {
        let config = StreamConfig {
            project_id: ProjectId::parse("p-1").unwrap(),
            stream_id: "0123456789abcdef0123456789abcdef".into(),
            endpoint: Endpoint::GrafanaLoki {
                hostname: LokiHostname::parse("logs.example.com:8443").unwrap(),
                username: "123".into(),
                tenant_id: Some(LokiTenantId::parse("team-a").unwrap()),
                labels: LokiLabels::parse(&[("env".into(), "prod".into())].into()).unwrap(),
            },
            controls: StreamControls::parse(
                Some(&EventFilterBody {
                    actions: Some(vec!["Passwords*".into(), "OAuthAuthenticate".into()]),
                    statuses: None,
                }),
                Some(&RedactionBody {
                    fields: vec!["email".into(), "telemetry.ip_address".into()],
                    mode: "HASH".into(),
                }),
            )
            .unwrap(),
            credential: CredentialRef {
                secret_id: "event-log-streaming/p-1".into(),
                version_id: "v-1".into(),
                last_four: "1a2b".into(),
            },
            state: StreamState {
                status: StreamingStatus::Suspended,
                enabled_at: Some(datetime!(2026-11-24 09:00 UTC)),
                suspension: Some(Suspension {
                    at: datetime!(2026-11-24 10:00 UTC),
                    reason: "refused".into(),
                }),
            },
            created_at: datetime!(2026-11-24 08:00 UTC),
            updated_at: datetime!(2026-11-24 10:00 UTC),
            version: 7,
        };
        let health = DeliveryHealth {
            last_success_at: Some(datetime!(2026-11-24 09:30 UTC)),
            consecutive_failures: 3,
            consecutive_auth_failures: 2,
            auth_failures_since: Some(datetime!(2026-11-24 09:40 UTC)),
            auth_failures_version: Some(7),
            recent_errors: vec![DeliveryError {
                at: datetime!(2026-11-24 09:50 UTC),
                destination_status: None,
                message: "could not connect".into(),
            }],
            events_delivered: 10,
            events_failed: 4,
            events_filtered: 6,
            last_delivery_lag: Some(DeliveryLag {
                at: datetime!(2026-11-24 09:30 UTC),
                millis: 2_400,
            }),
        };
        let mut item: Item = config_attributes(&config)
            .into_iter()
            .chain(health_attributes(&health))
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
        item.insert(attr::PROJECT_ID.into(), s("p-1"));
        let stream = stream_from_item(&item).unwrap();
        assert_eq!(stream.config, config);
        assert_eq!(stream.health, health);

        let mut datadog = config;
        datadog.endpoint = Endpoint::Datadog {
            site: DatadogSite::Eu,
            tags: DatadogTags::parse(&["team:identity".into()]).unwrap(),
        };
        datadog.controls = StreamControls::default();
        let mut item: Item = config_attributes(&datadog)
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
        item.insert(attr::PROJECT_ID.into(), s("p-1"));
        assert!(!item.contains_key(attr::EVENT_FILTER) && !item.contains_key(attr::LABELS));
        assert_eq!(stream_from_item(&item).unwrap().config, datadog);
    }

    #[test]
    fn an_item_written_before_stream_ids_is_named_by_its_creation() {
        let created_at = datetime!(2026-11-24 08:00 UTC);
        let item: Item = HashMap::from([(attr::CREATED_AT.to_owned(), time_value(created_at))]);
        assert_eq!(
            stream_id(&item, created_at).unwrap(),
            legacy_stream_id(created_at)
        );
    }
}
