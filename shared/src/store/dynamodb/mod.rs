//! Streams in a DynamoDB table (`STREAM_TABLE_NAME`), one item per project, partition key
//! `project_id` (format: [`item`]). Two writers own the item's attributes and never touch
//! each other's:
//! - the configuration, written by the config API (and the streamer's suspension), each
//!   write conditional on `version`; a stream has an identity of its own (`stream_id`), so
//!   one deleted and created again is another stream;
//! - the health, written by the streamer, each write conditional on `health_seq` and on the
//!   stream's identity.
//!
//! Beside the streams, the table holds the index of configured projects ([`index`]), which
//! creates and deletes keep exact in the same transaction as the stream's item.
//!
//! Limits: BatchGetItem takes at most 100 keys per call and may leave some unserved under
//! load (`UnprocessedKeys`), which are asked for again with backoff. The streamer reads
//! eventually consistently (half the price; a change reaches it within its cache TTL
//! anyway); the config API reads consistently before a conditional write.

pub mod index;
mod item;
mod update;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem, Update as IndexUpdate,
};
use futures::future::join_all;
use tokio::time::Instant;

use super::{
    Found, HealthWrite, StoreError, StoreResult, StoredStream, StreamLookup, StreamWrite,
    error_chain,
};
use crate::domain::{
    DeliveryHealth, ProjectId, StreamConfig, StreamingStatus, Suspension, legacy_stream_id,
};
use item::{
    Item, attr, config_attributes, health_attributes, health_from_item, n, number, s,
    stream_from_item, stream_id, string, time, time_value,
};
use update::Update;

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
/// Tries of a create or delete whose transaction another one on the same index shard
/// cancelled (backoff 20 ms doubling, jittered).
const TRANSACTION_TRIES: u32 = 4;
const TRANSACTION_BACKOFF: Duration = Duration::from_millis(20);

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

    /// Builds the index of configured projects from the streams in the table
    /// ([`index::build`]); until then the streamer reads every project's item.
    pub async fn build_index(&self, now: time::OffsetDateTime) -> StoreResult<index::Built> {
        let projects = self.project_ids().await?;
        index::build(&self.client, &self.table, &projects, now).await
    }

    fn key(project: &ProjectId) -> Item {
        HashMap::from([(attr::PROJECT_ID.to_owned(), s(project.as_str()))])
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
    /// unprocessed ones: the items found, and the keys still unprocessed after
    /// [`UNPROCESSED_KEY_ROUNDS`] rounds.
    async fn batch_get(&self, mut keys: Vec<Item>) -> StoreResult<(Vec<Item>, Vec<Item>)> {
        let mut found = Vec::with_capacity(keys.len());
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
                break;
            }
        }
        Ok((found, keys))
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
        match self
            .get_item(project, Some(attr::PROJECT_ID.to_owned()))
            .await
        {
            Ok(Some(_)) => StoreError::Conflict,
            Ok(None) => StoreError::NotFound,
            Err(err) => err,
        }
    }
}

/// Why a transaction of a stream's item and its index entry did not happen.
enum Refused {
    /// The condition on the stream's item failed.
    Condition,
    Failed(StoreError),
}

impl DynamoDbStreams {
    /// `ADD` or `DELETE` of the project's id in its index shard.
    fn index_change(&self, project: &ProjectId, action: &str) -> TransactWriteItem {
        let update = IndexUpdate::builder()
            .table_name(&self.table)
            .set_key(Some(index::index_key(project)))
            .update_expression(format!("{action} #projects :id"))
            .expression_attribute_names("#projects", index::PROJECTS)
            .expression_attribute_values(
                ":id",
                AttributeValue::Ss(vec![project.as_str().to_owned()]),
            )
            .build()
            .expect("table, key and expression are set");
        TransactWriteItem::builder().update(update).build()
    }

    /// Writes `stream` (the item's own write, with its condition) and `index` together. Two
    /// transactions on one index shard at once cancel one of them (`TransactionConflict`):
    /// that one is tried again, a few times, after a short random pause.
    async fn transact(
        &self,
        stream: TransactWriteItem,
        index: TransactWriteItem,
    ) -> Result<(), Refused> {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = self
                .client
                .transact_write_items()
                .transact_items(stream.clone())
                .transact_items(index.clone())
                .send()
                .await;
            let Err(err) = result else {
                return Ok(());
            };
            let reasons: Vec<&str> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|reason| reason.code().unwrap_or("None"))
                    .collect(),
                _ => Vec::new(),
            };
            if reasons.first() == Some(&"ConditionalCheckFailed") {
                return Err(Refused::Condition);
            }
            if reasons.contains(&"TransactionConflict") && tries < TRANSACTION_TRIES {
                let pause = TRANSACTION_BACKOFF * 2u32.pow(tries - 1);
                tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64())).await;
                continue;
            }
            return Err(Refused::Failed(StoreError::unavailable(
                "DynamoDB TransactWriteItems",
                err,
            )));
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
    /// The index's head and shards, in one BatchGetItem.
    async fn configured(&self, deadline: Instant) -> StoreResult<Option<HashSet<ProjectId>>> {
        let read = tokio::time::timeout_at(deadline, self.batch_get(index::keys()))
            .await
            .map_err(|_| {
                StoreError::unavailable("DynamoDB BatchGetItem (index)", "no answer in time")
            })??;
        match read {
            (items, unprocessed) if unprocessed.is_empty() => index::projects_in(&items),
            _ => Err(StoreError::unavailable(
                "DynamoDB BatchGetItem (index)",
                format!("keys left unprocessed after {UNPROCESSED_KEY_ROUNDS} rounds"),
            )),
        }
    }

    /// One BatchGetItem per 100 projects, all at once; each chunk ends by `deadline` on its
    /// own, so a slow or throttled chunk leaves only its own projects unread.
    async fn get_many(&self, projects: &[ProjectId], deadline: Instant) -> Found {
        let chunks = projects
            .chunks(MAX_KEYS_PER_BATCH_GET)
            .map(|chunk| async move {
                let read = tokio::time::timeout_at(
                    deadline,
                    self.batch_get(chunk.iter().map(Self::key).collect()),
                )
                .await;
                (chunk, read)
            });
        let mut found = Found::default();
        for (chunk, read) in join_all(chunks).await {
            let unread = |why: String| chunk.iter().map(move |p| (p.clone(), why.clone()));
            let (items, unprocessed) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(err)) => {
                    found.unread.extend(unread(error_chain(&err)));
                    continue;
                }
                Err(_) => {
                    found.unread.extend(unread(
                        "DynamoDB BatchGetItem did not answer in time".into(),
                    ));
                    continue;
                }
            };
            for key in unprocessed {
                if let Some(project) = project_of(&key) {
                    let why = format!(
                        "DynamoDB BatchGetItem left the key unprocessed after {UNPROCESSED_KEY_ROUNDS} rounds"
                    );
                    found.unread.push((project, why));
                }
            }
            for item in items {
                match stream_from_item(&item) {
                    Ok(stream) => found.streams.push(stream),
                    // One corrupt item fails only its own project.
                    Err(err) => match project_of(&item) {
                        Some(project) => found.unread.push((project, error_chain(&err))),
                        None => {
                            tracing::error!(error = %error_chain(&err), "an item without a valid project id")
                        }
                    },
                }
            }
        }
        found
    }
}

fn project_of(item: &Item) -> Option<ProjectId> {
    ProjectId::parse(string(item, attr::PROJECT_ID).ok()??).ok()
}

#[async_trait]
impl StreamWrite for DynamoDbStreams {
    async fn get(&self, project: &ProjectId) -> StoreResult<Option<StoredStream>> {
        self.get_item(project, None)
            .await?
            .map(|item| stream_from_item(&item))
            .transpose()
    }

    /// The item, and the project's entry in the index, in one transaction.
    async fn create(&self, config: &StreamConfig) -> StoreResult<()> {
        let mut item: Item = config_attributes(config)
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?)))
            .collect();
        item.insert(attr::PROJECT_ID.to_owned(), s(config.project_id.as_str()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", attr::PROJECT_ID)
            .build()
            .expect("table and item are set");
        let put = TransactWriteItem::builder().put(put).build();
        let index = self.index_change(&config.project_id, "ADD");
        match self.transact(put, index).await {
            Ok(()) => Ok(()),
            Err(Refused::Condition) => Err(StoreError::AlreadyExists),
            Err(Refused::Failed(err)) => Err(err),
        }
    }

    async fn update(&self, config: &StreamConfig, expected_version: u64) -> StoreResult<()> {
        let mut update = Update::default();
        for (name, value) in config_attributes(config) {
            update.set_or_remove(name, value);
        }
        let condition = format!(
            "{} = {}",
            update.name(attr::VERSION),
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

    /// The item, and the project's entry in the index, in one transaction.
    async fn delete(&self, project: &ProjectId, expected_version: u64) -> StoreResult<()> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(project)))
            .condition_expression("#version = :version")
            .expression_attribute_names("#version", attr::VERSION)
            .expression_attribute_values(":version", n(expected_version))
            .build()
            .expect("table and key are set");
        let delete = TransactWriteItem::builder().delete(delete).build();
        let index = self.index_change(project, "DELETE");
        match self.transact(delete, index).await {
            Ok(()) => Ok(()),
            Err(Refused::Condition) => Err(self.conflict_or_missing(project).await),
            Err(Refused::Failed(err)) => Err(err),
        }
    }
}

#[async_trait]
impl HealthWrite for DynamoDbStreams {
    /// Read, add, write back if nobody wrote in between (`health_seq`) and the stream is
    /// still the one `seen` names, else again. Only the health attributes are written.
    async fn record(
        &self,
        seen: &StreamConfig,
        update: &DeliveryHealth,
    ) -> StoreResult<Option<DeliveryHealth>> {
        let project = &seen.project_id;
        let projection = attr::HEALTH_READ.join(", ");
        for _ in 0..HEALTH_WRITE_TRIES {
            let Some(item) = self.get_item(project, Some(projection.clone())).await? else {
                return Ok(None);
            };
            let Some(current_version) = number(&item, attr::VERSION)? else {
                return Err(StoreError::Corrupt(format!(
                    "attribute version of item {project}"
                )));
            };
            let created_at = time(&item, attr::CREATED_AT)?.ok_or_else(|| {
                StoreError::Corrupt(format!("attribute created_at of item {project}"))
            })?;
            if stream_id(&item, created_at)? != seen.stream_id {
                return Ok(None);
            }
            let mut write = Update::default();
            let same_stream = is_stream(seen, &mut write);
            let seq = number(&item, attr::HEALTH_SEQ)?;
            let mut health = health_from_item(&item)?;
            health.apply_seen(update, seen.version, current_version);

            for (name, value) in health_attributes(&health) {
                write.set_or_remove(name, value);
            }
            write.set_or_remove(attr::HEALTH_SEQ, Some(n(seq.unwrap_or(0) + 1)));
            let seq_name = write.name(attr::HEALTH_SEQ);
            let unchanged = match seq {
                Some(seq) => format!("{seq_name} = {}", write.value(n(seq))),
                None => format!("attribute_not_exists({seq_name})"),
            };
            // Otherwise another container wrote first, or the stream was deleted: read again.
            let condition = format!("{same_stream} AND {unchanged}");
            if self.update_if(project, write, condition).await? {
                return Ok(Some(health));
            }
        }
        Err(StoreError::Conflict)
    }

    async fn suspend(&self, seen: &StreamConfig, suspension: &Suspension) -> StoreResult<bool> {
        let mut write = Update::default();
        write.set_or_remove(
            attr::STREAMING_STATUS,
            Some(s(StreamingStatus::Suspended.as_str())),
        );
        write.set_or_remove(attr::SUSPENDED_AT, Some(time_value(suspension.at)));
        write.set_or_remove(attr::SUSPENDED_REASON, Some(s(&suspension.reason)));
        write.set_or_remove(attr::UPDATED_AT, Some(time_value(suspension.at)));
        write.set_or_remove(attr::VERSION, Some(n(seen.version + 1)));
        let condition = format!(
            "{} AND {} = {} AND {} = {}",
            is_stream(seen, &mut write),
            write.name(attr::VERSION),
            write.value(n(seen.version)),
            write.name(attr::STREAMING_STATUS),
            write.value(s(StreamingStatus::Active.as_str())),
        );
        self.update_if(&seen.project_id, write, condition).await
    }
}

/// The condition that the item is the stream `seen` names: its identity, or, for an item
/// written before streams had one, its creation time.
fn is_stream(seen: &StreamConfig, write: &mut Update) -> String {
    let id = write.name(attr::STREAM_ID);
    if seen.stream_id == legacy_stream_id(seen.created_at) {
        let created = write.name(attr::CREATED_AT);
        let value = write.value(time_value(seen.created_at));
        format!("attribute_not_exists({id}) AND {created} = {value}")
    } else {
        format!("{id} = {}", write.value(s(&seen.stream_id)))
    }
}

impl DynamoDbStreams {
    /// Every project with a stream (a Scan of the keys: for the migration only). Keys that are
    /// not project ids, such as the KMS envelope's credential items, are left out.
    pub async fn project_ids(&self) -> StoreResult<Vec<ProjectId>> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("#key")
            .expression_attribute_names("#key", attr::PROJECT_ID)
            .into_paginator()
            .items()
            .send();
        let mut projects = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| StoreError::unavailable("DynamoDB Scan", e))?;
            projects.extend(project_of(&item));
        }
        Ok(projects)
    }
}
