//! Streams in a DynamoDB table (`STREAM_TABLE_NAME`), one item per project, partition key
//! `project_id`. The item's attributes are owned by two writers that never touch each
//! other's:
//! - configuration, written by the config API (and the streamer's suspension), each write
//!   conditional on `version`: `destination_type`, `hostname`/`username` or `site`,
//!   `streaming_status`, `enabled_at`, `suspended_at`, `suspended_reason`, `created_at`,
//!   `updated_at`, `version`, `credential_secret_id`, `credential_version_id`,
//!   `credential_last_four`;
//! - health, written by the streamer, each write conditional on `health_seq`:
//!   `last_success_at`, `consecutive_failures`, `consecutive_auth_failures`,
//!   `auth_failures_since`, `recent_errors`, `events_delivered`, `events_failed`.
//!
//! Times are RFC 3339 strings. No credential is ever in the table.
//!
//! Limits: BatchGetItem takes at most 100 keys per call and may leave some unserved under
//! load (`UnprocessedKeys`), which are asked for again with backoff. The streamer reads
//! eventually consistently (half the price; a change reaches it within its cache TTL
//! anyway); the config API reads consistently before a conditional write.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use futures::future::try_join_all;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{HealthWrite, StoreError, StoreResult, StoredStream, StreamLookup, StreamWrite};
use crate::domain::{
    CredentialRef, DatadogSite, DeliveryError, DeliveryHealth, DestinationType, Endpoint,
    LokiHostname, ProjectId, StreamConfig, StreamState, StreamingStatus, Suspension,
};

/// BatchGetItem's limit.
const MAX_KEYS_PER_BATCH_GET: usize = 100;
/// Rounds of asking again for unprocessed keys (backoff 50 ms doubling: 3.15 s in all).
const UNPROCESSED_KEY_ROUNDS: u32 = 7;
const UNPROCESSED_KEY_BACKOFF: Duration = Duration::from_millis(50);
/// Health writes that lose the race with another container's read again and retry. On a
/// state change every container of the function (the template's `MaximumConcurrency`, 10)
/// may write the same stream at once, and each round only one of them wins; a write that
/// runs out of tries is kept and added to the container's next one.
const HEALTH_WRITE_TRIES: u32 = 8;

const KEY: &str = "project_id";
const VERSION: &str = "version";
const HEALTH_SEQ: &str = "health_seq";
const HEALTH_ATTRIBUTES: [&str; 8] = [
    HEALTH_SEQ,
    "last_success_at",
    "consecutive_failures",
    "consecutive_auth_failures",
    "auth_failures_since",
    "recent_errors",
    "events_delivered",
    "events_failed",
];

type Item = HashMap<String, AttributeValue>;

pub struct DynamoDbStreams {
    client: Client,
    table: String,
}

impl DynamoDbStreams {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(project: &ProjectId) -> Item {
        HashMap::from([(KEY.to_owned(), s(project.as_str()))])
    }

    async fn get_item(
        &self,
        project: &ProjectId,
        projection: Option<String>,
    ) -> StoreResult<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(project)))
            .consistent_read(true)
            .set_projection_expression(projection)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("DynamoDB GetItem", e))?;
        Ok(output.item)
    }

    /// One BatchGetItem of at most [`MAX_KEYS_PER_BATCH_GET`] keys, asking again for the
    /// unprocessed ones.
    async fn batch_get(&self, projects: &[ProjectId]) -> StoreResult<Vec<Item>> {
        let mut found = Vec::with_capacity(projects.len());
        let mut keys: Vec<Item> = projects.iter().map(Self::key).collect();
        for round in 0..UNPROCESSED_KEY_ROUNDS {
            if round > 0 {
                tokio::time::sleep(UNPROCESSED_KEY_BACKOFF * 2u32.pow(round - 1)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .build()
                .expect("keys are set");
            let mut output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| StoreError::unavailable("DynamoDB BatchGetItem", e))?;
            found.extend(
                output
                    .responses
                    .as_mut()
                    .and_then(|r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            keys = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if keys.is_empty() {
                return Ok(found);
            }
        }
        Err(StoreError::unavailable(
            "DynamoDB BatchGetItem",
            format!(
                "{} keys still unprocessed after {UNPROCESSED_KEY_ROUNDS} rounds",
                keys.len()
            ),
        ))
    }

    /// Applies `update` if `condition` holds; `Ok(false)` if it does not.
    async fn update_if(
        &self,
        project: &ProjectId,
        update: Update,
        condition: String,
    ) -> StoreResult<bool> {
        let result = update
            .apply(self.client.update_item().table_name(&self.table))
            .set_key(Some(Self::key(project)))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(StoreError::unavailable("DynamoDB UpdateItem", err)),
        }
    }

    /// After a failed condition on `version`: was the item gone, or changed?
    async fn conflict_or_missing(&self, project: &ProjectId) -> StoreError {
        match self.get_item(project, Some(KEY.to_owned())).await {
            Ok(Some(_)) => StoreError::Conflict,
            Ok(None) => StoreError::NotFound,
            Err(err) => err,
        }
    }
}

fn condition_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

#[async_trait]
impl StreamLookup for DynamoDbStreams {
    async fn get_many(&self, projects: &[ProjectId]) -> StoreResult<Vec<StoredStream>> {
        let calls = projects
            .chunks(MAX_KEYS_PER_BATCH_GET)
            .map(|chunk| self.batch_get(chunk));
        let mut streams = Vec::new();
        for item in try_join_all(calls).await?.into_iter().flatten() {
            streams.push(stream_from_item(&item)?);
        }
        Ok(streams)
    }
}

#[async_trait]
impl StreamWrite for DynamoDbStreams {
    async fn get(&self, project: &ProjectId) -> StoreResult<Option<StoredStream>> {
        self.get_item(project, None)
            .await?
            .map(|item| stream_from_item(&item))
            .transpose()
    }

    async fn create(&self, config: &StreamConfig) -> StoreResult<()> {
        let mut item: Item = config_attributes(config)
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?)))
            .collect();
        item.insert(KEY.to_owned(), s(config.project_id.as_str()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Err(StoreError::AlreadyExists),
            Err(err) => Err(StoreError::unavailable("DynamoDB PutItem", err)),
        }
    }

    async fn update(&self, config: &StreamConfig, expected_version: u64) -> StoreResult<()> {
        let mut update = Update::default();
        for (name, value) in config_attributes(config) {
            update.set_or_remove(name, value);
        }
        let condition = format!(
            "{} = {}",
            update.name(VERSION),
            update.value(n(expected_version))
        );
        if self
            .update_if(&config.project_id, update, condition)
            .await?
        {
            Ok(())
        } else {
            Err(self.conflict_or_missing(&config.project_id).await)
        }
    }

    async fn delete(&self, project: &ProjectId, expected_version: u64) -> StoreResult<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(project)))
            .condition_expression("#version = :version")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":version", n(expected_version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if condition_failed(&err) => Err(self.conflict_or_missing(project).await),
            Err(err) => Err(StoreError::unavailable("DynamoDB DeleteItem", err)),
        }
    }
}

#[async_trait]
impl HealthWrite for DynamoDbStreams {
    /// Read, add, write back if nobody wrote in between (`health_seq`), else again. Only the
    /// health attributes are read and written.
    async fn record(
        &self,
        project: &ProjectId,
        update: &DeliveryHealth,
    ) -> StoreResult<Option<DeliveryHealth>> {
        let projection = HEALTH_ATTRIBUTES
            .iter()
            .chain([&KEY])
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        for _ in 0..HEALTH_WRITE_TRIES {
            let Some(item) = self.get_item(project, Some(projection.clone())).await? else {
                return Ok(None);
            };
            let seen = number(&item, HEALTH_SEQ)?;
            let mut health = health_from_item(&item)?;
            health.apply(update);

            let mut write = Update::default();
            for (name, value) in health_attributes(&health) {
                write.set_or_remove(name, value);
            }
            write.set_or_remove(HEALTH_SEQ, Some(n(seen.unwrap_or(0) + 1)));
            let key = write.name(KEY);
            let seq = write.name(HEALTH_SEQ);
            let condition = match seen {
                Some(seen) => format!(
                    "attribute_exists({key}) AND {seq} = {}",
                    write.value(n(seen))
                ),
                None => format!("attribute_exists({key}) AND attribute_not_exists({seq})"),
            };
            // Otherwise another container wrote first, or the stream was deleted: read again.
            if self.update_if(project, write, condition).await? {
                return Ok(Some(health));
            }
        }
        Err(StoreError::Conflict)
    }

    async fn suspend(
        &self,
        project: &ProjectId,
        version: u64,
        suspension: &Suspension,
    ) -> StoreResult<bool> {
        let mut write = Update::default();
        write.set_or_remove(
            "streaming_status",
            Some(s(StreamingStatus::Suspended.as_str())),
        );
        write.set_or_remove("suspended_at", Some(time_value(suspension.at)));
        write.set_or_remove("suspended_reason", Some(s(&suspension.reason)));
        write.set_or_remove("updated_at", Some(time_value(suspension.at)));
        write.set_or_remove(VERSION, Some(n(version + 1)));
        let condition = format!(
            "{} = {} AND {} = {}",
            write.name(VERSION),
            write.value(n(version)),
            write.name("streaming_status"),
            write.value(s(StreamingStatus::Active.as_str())),
        );
        self.update_if(project, write, condition).await
    }
}

/// An UpdateItem expression with every name and value as a placeholder (several attribute
/// names, such as `version`, are DynamoDB reserved words).
#[derive(Default)]
struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn set_or_remove(&mut self, attribute: &str, value: Option<AttributeValue>) {
        let name = self.name(attribute);
        match value {
            Some(value) => {
                let value = self.value(value);
                self.set.push(format!("{name} = {value}"));
            }
            None => self.remove.push(name),
        }
    }

    fn apply(
        self,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let mut expression = String::new();
        if !self.set.is_empty() {
            expression = format!("SET {}", self.set.join(", "));
        }
        if !self.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.remove.join(", ")));
        }
        request
            .update_expression(expression)
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values(Some(self.values))
    }
}

// ---- the item's format

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn time_value(at: OffsetDateTime) -> AttributeValue {
    AttributeValue::S(at.format(&Rfc3339).expect("a time formats as RFC 3339"))
}

/// The configuration's attributes; `None` for those to remove.
fn config_attributes(config: &StreamConfig) -> Vec<(&'static str, Option<AttributeValue>)> {
    let (hostname, username, site) = match &config.endpoint {
        Endpoint::GrafanaLoki { hostname, username } => {
            (Some(s(&hostname.to_string())), Some(s(username)), None)
        }
        Endpoint::Datadog { site } => (None, None, Some(s(site.as_str()))),
    };
    let suspension = config.state.suspension.as_ref();
    vec![
        (
            "destination_type",
            Some(s(config.destination_type().as_str())),
        ),
        ("hostname", hostname),
        ("username", username),
        ("site", site),
        ("streaming_status", Some(s(config.state.status.as_str()))),
        ("enabled_at", config.state.enabled_at.map(time_value)),
        ("suspended_at", suspension.map(|s| time_value(s.at))),
        ("suspended_reason", suspension.map(|x| s(&x.reason))),
        ("created_at", Some(time_value(config.created_at))),
        ("updated_at", Some(time_value(config.updated_at))),
        (VERSION, Some(n(config.version))),
        (
            "credential_secret_id",
            Some(s(&config.credential.secret_id)),
        ),
        (
            "credential_version_id",
            Some(s(&config.credential.version_id)),
        ),
        (
            "credential_last_four",
            Some(s(&config.credential.last_four)),
        ),
    ]
}

fn health_attributes(health: &DeliveryHealth) -> Vec<(&'static str, Option<AttributeValue>)> {
    let errors = health
        .recent_errors
        .iter()
        .map(|e| {
            AttributeValue::M(HashMap::from([
                ("at".to_owned(), time_value(e.at)),
                (
                    "destination_status".to_owned(),
                    e.destination_status
                        .map_or(AttributeValue::Null(true), |status| n(status.into())),
                ),
                ("message".to_owned(), s(&e.message)),
            ]))
        })
        .collect();
    vec![
        ("last_success_at", health.last_success_at.map(time_value)),
        ("consecutive_failures", Some(n(health.consecutive_failures))),
        (
            "consecutive_auth_failures",
            Some(n(health.consecutive_auth_failures)),
        ),
        (
            "auth_failures_since",
            health.auth_failures_since.map(time_value),
        ),
        ("recent_errors", Some(AttributeValue::L(errors))),
        ("events_delivered", Some(n(health.events_delivered))),
        ("events_failed", Some(n(health.events_failed))),
    ]
}

fn corrupt(item: &Item, attribute: &str) -> StoreError {
    let project = item
        .get(KEY)
        .and_then(|v| v.as_s().ok())
        .map_or("?", String::as_str);
    StoreError::Corrupt(format!("attribute {attribute} of item {project}"))
}

fn string<'a>(item: &'a Item, name: &str) -> StoreResult<Option<&'a str>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(_) => Err(corrupt(item, name)),
    }
}

fn required<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    string(item, name)?.ok_or_else(|| corrupt(item, name))
}

fn number(item: &Item, name: &str) -> StoreResult<Option<u64>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(value)) => value.parse().map(Some).map_err(|_| corrupt(item, name)),
        Some(_) => Err(corrupt(item, name)),
    }
}

fn time(item: &Item, name: &str) -> StoreResult<Option<OffsetDateTime>> {
    string(item, name)?
        .map(|value| OffsetDateTime::parse(value, &Rfc3339).map_err(|_| corrupt(item, name)))
        .transpose()
}

fn stream_from_item(item: &Item) -> StoreResult<StoredStream> {
    let bad = |name| corrupt(item, name);
    let project_id = ProjectId::parse(required(item, KEY)?).map_err(|_| bad(KEY))?;
    let destination_type = DestinationType::parse(required(item, "destination_type")?)
        .map_err(|_| bad("destination_type"))?;
    let endpoint = match destination_type {
        DestinationType::GrafanaLoki => Endpoint::GrafanaLoki {
            hostname: LokiHostname::parse(required(item, "hostname")?)
                .map_err(|_| bad("hostname"))?,
            username: required(item, "username")?.to_owned(),
        },
        DestinationType::Datadog => Endpoint::Datadog {
            site: DatadogSite::parse(required(item, "site")?).map_err(|_| bad("site"))?,
        },
    };
    let status = StreamingStatus::parse(required(item, "streaming_status")?)
        .ok_or_else(|| bad("streaming_status"))?;
    let suspension = match (
        time(item, "suspended_at")?,
        string(item, "suspended_reason")?,
    ) {
        (Some(at), Some(reason)) => Some(Suspension {
            at,
            reason: reason.to_owned(),
        }),
        _ => None,
    };
    let config = StreamConfig {
        project_id,
        endpoint,
        credential: CredentialRef {
            secret_id: required(item, "credential_secret_id")?.to_owned(),
            version_id: required(item, "credential_version_id")?.to_owned(),
            last_four: string(item, "credential_last_four")?
                .unwrap_or_default()
                .to_owned(),
        },
        state: StreamState {
            status,
            enabled_at: time(item, "enabled_at")?,
            suspension,
        },
        created_at: time(item, "created_at")?.ok_or_else(|| bad("created_at"))?,
        updated_at: time(item, "updated_at")?.ok_or_else(|| bad("updated_at"))?,
        version: number(item, VERSION)?.ok_or_else(|| bad(VERSION))?,
    };
    Ok(StoredStream {
        config,
        health: health_from_item(item)?,
    })
}

fn health_from_item(item: &Item) -> StoreResult<DeliveryHealth> {
    let errors = match item.get("recent_errors") {
        None => Vec::new(),
        Some(AttributeValue::L(errors)) => errors
            .iter()
            .map(|error| {
                let error = error.as_m().map_err(|_| corrupt(item, "recent_errors"))?;
                Ok(DeliveryError {
                    at: time(error, "at")?.ok_or_else(|| corrupt(item, "recent_errors"))?,
                    destination_status: number(error, "destination_status")?
                        .and_then(|status| u16::try_from(status).ok()),
                    message: required(error, "message")?.to_owned(),
                })
            })
            .collect::<StoreResult<_>>()?,
        Some(_) => return Err(corrupt(item, "recent_errors")),
    };
    Ok(DeliveryHealth {
        last_success_at: time(item, "last_success_at")?,
        consecutive_failures: number(item, "consecutive_failures")?.unwrap_or(0),
        consecutive_auth_failures: number(item, "consecutive_auth_failures")?.unwrap_or(0),
        auth_failures_since: time(item, "auth_failures_since")?,
        recent_errors: errors,
        events_delivered: number(item, "events_delivered")?.unwrap_or(0),
        events_failed: number(item, "events_failed")?.unwrap_or(0),
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
            endpoint: Endpoint::GrafanaLoki {
                hostname: LokiHostname::parse("logs.example.com:8443").unwrap(),
                username: "123".into(),
            },
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
            recent_errors: vec![DeliveryError {
                at: datetime!(2026-11-24 09:50 UTC),
                destination_status: None,
                message: "could not connect".into(),
            }],
            events_delivered: 10,
            events_failed: 4,
        };
        let mut item: Item = config_attributes(&config)
            .into_iter()
            .chain(health_attributes(&health))
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
        item.insert(KEY.into(), s("p-1"));
        let stream = stream_from_item(&item).unwrap();
        assert_eq!(stream.config, config);
        assert_eq!(stream.health, health);
    }
}
