//! One AWS Secrets Manager secret per project, named `{prefix}{project_id}`, holding the
//! stored JSON record (see [`crate::domain::StreamingConfig`]). Secrets are tagged with the
//! project id and destination type so operators can find them, and deleted without a recovery
//! window so that a project can reconfigure at once.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::Tag;

use super::{ConfigStore, StoreError};
use crate::domain::{ProjectId, StreamingConfig};

pub const DEFAULT_SECRET_PREFIX: &str = "event-log-streaming/";
/// Re-creating a configuration right after deleting it waits this long at most (10 × 0.5 s)
/// for the asynchronous deletion to finish.
const CREATE_AFTER_DELETE_TRIES: u32 = 10;
const CREATE_AFTER_DELETE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
}

impl SecretsManagerStore {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    pub fn secret_name(&self, project: &ProjectId) -> String {
        format!("{}{}", self.prefix, project)
    }

    async fn try_create(
        &self,
        project: &ProjectId,
        config: &StreamingConfig,
    ) -> Result<(), StoreError> {
        let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
        let result = self
            .client
            .create_secret()
            .name(self.secret_name(project))
            .description("Event log streaming destination of one project")
            .secret_string(config.to_stored_json())
            .tags(tag("project_id", project.as_str()))
            .tags(tag(
                "destination_type",
                config.destination.destination_type().as_str(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if error_code(&err) == Some("ResourceExistsException") => {
                Err(StoreError::AlreadyExists)
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

/// The service's error code, such as `ResourceNotFoundException`.
fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

fn unavailable<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

#[async_trait]
impl ConfigStore for SecretsManagerStore {
    async fn get(&self, project: &ProjectId) -> Result<Option<StreamingConfig>, StoreError> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(self.secret_name(project))
            .send()
            .await;
        match result {
            Ok(output) => {
                let json = output.secret_string().unwrap_or_default();
                Ok(Some(StreamingConfig::from_stored_json(json)?))
            }
            Err(err) if error_code(&err) == Some("ResourceNotFoundException") => Ok(None),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn create(
        &self,
        project: &ProjectId,
        config: &StreamingConfig,
    ) -> Result<(), StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_create(project, config).await {
                // A forced deletion completes asynchronously; until it has, the name is still
                // taken and AWS asks callers to back off and retry.
                Err(StoreError::Unavailable(message))
                    if tries < CREATE_AFTER_DELETE_TRIES
                        && message.contains("scheduled for deletion") =>
                {
                    tokio::time::sleep(CREATE_AFTER_DELETE_BACKOFF).await;
                }
                other => return other,
            }
        }
    }

    async fn put(&self, project: &ProjectId, config: &StreamingConfig) -> Result<(), StoreError> {
        let result = self
            .client
            .put_secret_value()
            .secret_id(self.secret_name(project))
            .secret_string(config.to_stored_json())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if error_code(&err) == Some("ResourceNotFoundException") => {
                Err(StoreError::NotFound)
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn delete(&self, project: &ProjectId) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_secret()
            .secret_id(self.secret_name(project))
            .force_delete_without_recovery(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if error_code(&err) == Some("ResourceNotFoundException") => Ok(false),
            Err(err) => Err(unavailable(err)),
        }
    }
}
