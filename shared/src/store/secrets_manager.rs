//! Credentials in AWS Secrets Manager: one secret per project, named `{prefix}{project_id}`,
//! holding only the credential as `{"credential":"…"}`. Every change is a new version; the
//! state table names the version in use, so a streamer caches a credential by (secret,
//! version) for its whole life and calls Secrets Manager again only when the version changes.
//! Secrets are tagged with the project id, and deleted without a recovery window so that a
//! project can reconfigure at once.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
use aws_sdk_secretsmanager::types::Tag;
use serde::{Deserialize, Serialize};

use super::{CredentialRead, CredentialWrite, StoreError, StoreResult};
use crate::domain::{CredentialRef, ProjectId};
use crate::secret::Secret;

pub const DEFAULT_SECRET_PREFIX: &str = "event-log-streaming/";
/// A secret deleted a moment ago is still being deleted (AWS does it asynchronously) and its
/// name is taken until then: wait this long at most (10 × 0.5 s) before giving up.
const RECREATE_TRIES: u32 = 10;
const RECREATE_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretValue<'a> {
    credential: &'a str,
}

pub struct SecretsManagerCredentials {
    client: Client,
    prefix: String,
}

impl SecretsManagerCredentials {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    pub fn secret_name(&self, project: &ProjectId) -> String {
        format!("{}{}", self.prefix, project)
    }

    /// The secret string of a credential.
    pub fn secret_string(credential: &Secret) -> String {
        serde_json::to_string(&SecretValue {
            credential: credential.expose(),
        })
        .expect("a string serializes")
    }

    /// The credential in a secret string, if it has the credential-only shape.
    pub fn parse_secret_string(value: &str) -> Option<Secret> {
        serde_json::from_str::<SecretValue>(value)
            .ok()
            .map(|v| Secret::new(v.credential))
    }

    /// Puts a new version of an existing secret; `Ok(None)` if there is no such secret, or
    /// only one being deleted (AWS deletes in the background, even when forced: a create
    /// right after a delete meets it, and [`Self::create`] waits for it to go).
    async fn put_version(&self, name: &str, value: &str) -> StoreResult<Option<String>> {
        let result = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await;
        match result {
            Ok(output) => Ok(output.version_id),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(
                        PutSecretValueError::ResourceNotFoundException(_)
                            | PutSecretValueError::InvalidRequestException(_)
                    )
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(StoreError::unavailable(
                "Secrets Manager PutSecretValue",
                err,
            )),
        }
    }

    /// Creates the secret; `Ok(None)` if it exists already (a concurrent create).
    async fn create(
        &self,
        project: &ProjectId,
        name: &str,
        value: &str,
    ) -> StoreResult<Option<String>> {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = self
                .client
                .create_secret()
                .name(name)
                .description("Event log streaming credential of one project")
                .secret_string(value)
                .tags(
                    Tag::builder()
                        .key("project_id")
                        .value(project.as_str())
                        .build(),
                )
                .send()
                .await;
            match result {
                Ok(output) => return Ok(output.version_id),
                Err(err) => match err.as_service_error() {
                    Some(CreateSecretError::ResourceExistsException(_)) => return Ok(None),
                    // The name of a secret still being deleted.
                    Some(CreateSecretError::InvalidRequestException(_))
                        if tries < RECREATE_TRIES =>
                    {
                        tokio::time::sleep(RECREATE_BACKOFF).await;
                    }
                    _ => return Err(StoreError::unavailable("Secrets Manager CreateSecret", err)),
                },
            }
        }
    }
}

#[async_trait]
impl CredentialRead for SecretsManagerCredentials {
    async fn get(&self, credential: &CredentialRef) -> StoreResult<Secret> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(&credential.secret_id)
            .version_id(&credential.version_id)
            .send()
            .await;
        let missing = || {
            StoreError::Corrupt(format!(
                "credential version {} of secret {} does not exist",
                credential.version_id, credential.secret_id
            ))
        };
        match result {
            Ok(output) => output
                .secret_string()
                .and_then(Self::parse_secret_string)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "secret {} does not hold a credential",
                        credential.secret_id
                    ))
                }),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(GetSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                Err(missing())
            }
            Err(err) => Err(StoreError::unavailable(
                "Secrets Manager GetSecretValue",
                err,
            )),
        }
    }
}

#[async_trait]
impl CredentialWrite for SecretsManagerCredentials {
    async fn put(&self, project: &ProjectId, credential: &Secret) -> StoreResult<CredentialRef> {
        let name = self.secret_name(project);
        let value = Self::secret_string(credential);
        // Usually the secret exists (updates); a first create finds none, or one still being
        // deleted. Two rounds cover a concurrent create.
        for _ in 0..2 {
            let version = match self.put_version(&name, &value).await? {
                Some(version) => Some(version),
                None => self.create(project, &name, &value).await?,
            };
            if let Some(version_id) = version {
                return Ok(CredentialRef {
                    secret_id: name,
                    version_id,
                    last_four: credential.last_four(),
                });
            }
        }
        Err(StoreError::Conflict)
    }

    async fn delete(&self, project: &ProjectId) -> StoreResult<()> {
        let result = self
            .client
            .delete_secret()
            .secret_id(self.secret_name(project))
            .force_delete_without_recovery(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(DeleteSecretError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(StoreError::unavailable("Secrets Manager DeleteSecret", err)),
        }
    }
}
