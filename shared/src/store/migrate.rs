//! Moves a deployment from one secret per project holding the whole configuration (the
//! format before the state table) to the table plus credential-only secrets.
//!
//! Idempotent and safe to run while the old streamer still runs. Per secret under the prefix:
//! 1. a credential-only version is added under the stage [`MIGRATED_STAGE`], leaving the old
//!    record current, so an old streamer still reads it;
//! 2. the table item is created, referring to that version (if the item exists already, it is
//!    kept: a config API write since wins);
//! 3. the version the item refers to becomes `AWSCURRENT`.
//!
//! A crash anywhere leaves a state that the next run finishes. Secrets already in the new
//! shape are counted and left alone.

use aws_sdk_secretsmanager::Client;
use serde::Deserialize;
use time::OffsetDateTime;

use super::secrets_manager::SecretsManagerCredentials;
use super::{StoreError, StoreResult, StreamWrite};
use crate::domain::{
    CredentialRef, Destination, DestinationConfigBody, DestinationType, ProjectId, StreamConfig,
    StreamSecret, StreamState, StreamingStatus,
};

pub const MIGRATED_STAGE: &str = "ELS_MIGRATED";
const CURRENT_STAGE: &str = "AWSCURRENT";

/// The old secret's JSON.
#[derive(Deserialize)]
struct LegacyRecord {
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

/// What a run did, project by project.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub migrated: Vec<ProjectId>,
    pub already_migrated: Vec<ProjectId>,
    /// Secret name and why it was left alone; no value is ever quoted.
    pub skipped: Vec<(String, String)>,
}

pub struct Migration<'a> {
    pub secrets: &'a Client,
    pub prefix: &'a str,
    pub streams: &'a dyn StreamWrite,
}

impl Migration<'_> {
    pub async fn run(&self) -> StoreResult<MigrationReport> {
        let mut report = MigrationReport::default();
        for name in self.secret_names().await? {
            let Some(project) = name
                .strip_prefix(self.prefix)
                .and_then(|id| ProjectId::parse(id).ok())
            else {
                report
                    .skipped
                    .push((name, "the name is not the prefix and a project id".into()));
                continue;
            };
            match self.migrate(&name, &project).await {
                Ok(true) => report.migrated.push(project),
                Ok(false) => report.already_migrated.push(project),
                Err(reason) => report.skipped.push((name, reason)),
            }
        }
        Ok(report)
    }

    async fn secret_names(&self) -> StoreResult<Vec<String>> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(self.prefix)
            .build();
        let mut names = Vec::new();
        let mut pages = self
            .secrets
            .list_secrets()
            .filters(filter)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| StoreError::unavailable("Secrets Manager ListSecrets", e))?;
            names.extend(
                page.secret_list()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with(self.prefix))
                    .map(str::to_owned),
            );
        }
        Ok(names)
    }

    /// `Ok(true)` when this run migrated the project, `Ok(false)` when it was done before.
    async fn migrate(&self, name: &str, project: &ProjectId) -> Result<bool, String> {
        let store_error = |e: StoreError| super::error_chain(&e);
        let current = self
            .secrets
            .get_secret_value()
            .secret_id(name)
            .version_stage(CURRENT_STAGE)
            .send()
            .await
            .map_err(|e| {
                store_error(StoreError::unavailable("Secrets Manager GetSecretValue", e))
            })?;
        let value = current.secret_string().unwrap_or_default();
        let current_version = current.version_id().unwrap_or_default().to_owned();
        if SecretsManagerCredentials::parse_secret_string(value).is_some() {
            return match self.streams.get(project).await.map_err(store_error)? {
                Some(_) => Ok(false),
                None => Err("the secret holds a credential but the table has no stream".into()),
            };
        }
        // Positions only: the record holds a credential.
        let legacy: LegacyRecord = serde_json::from_str(value).map_err(|e| {
            format!(
                "neither a credential nor an old record (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        let destination = Destination::parse(legacy.destination_type, &legacy.destination_config)
            .map_err(|e| e.to_string())?;

        let migrated_now = match self.streams.get(project).await.map_err(store_error)? {
            Some(_) => false,
            None => {
                let secret = StreamSecret::with_new_key(destination.credential().clone())
                    .map_err(|e| e.to_string())?;
                let version = self
                    .secrets
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(SecretsManagerCredentials::secret_string(&secret))
                    .version_stages(MIGRATED_STAGE)
                    .send()
                    .await
                    .map_err(|e| {
                        store_error(StoreError::unavailable("Secrets Manager PutSecretValue", e))
                    })?
                    .version_id
                    .ok_or("PutSecretValue returned no version")?;
                let credential = CredentialRef {
                    secret_id: name.to_owned(),
                    version_id: version,
                    last_four: destination.credential().last_four(),
                };
                let config = StreamConfig {
                    state: StreamState {
                        status: legacy.streaming_status,
                        enabled_at: legacy.enabled_at,
                        suspension: None,
                    },
                    updated_at: legacy.updated_at,
                    ..StreamConfig::new(
                        project.clone(),
                        destination.endpoint(),
                        credential,
                        legacy.created_at,
                    )
                };
                match self.streams.create(&config).await {
                    Ok(()) => true,
                    Err(StoreError::AlreadyExists) => false,
                    Err(e) => return Err(store_error(e)),
                }
            }
        };
        // The item's version of the credential becomes the current one.
        let stream = self
            .streams
            .get(project)
            .await
            .map_err(store_error)?
            .ok_or("the stream was deleted during the migration")?;
        let target = &stream.config.credential.version_id;
        if *target != current_version {
            self.secrets
                .update_secret_version_stage()
                .secret_id(name)
                .version_stage(CURRENT_STAGE)
                .move_to_version_id(target)
                .remove_from_version_id(&current_version)
                .send()
                .await
                .map_err(|e| {
                    store_error(StoreError::unavailable(
                        "Secrets Manager UpdateSecretVersionStage",
                        e,
                    ))
                })?;
        }
        Ok(migrated_now)
    }
}
