//! Credentials in AWS Secrets Manager: one secret per stream, named
//! `{prefix}{project_id}/{stream_id}`, holding only the credential as `{"credential":"…"}`
//! (streams made before had `{prefix}{project_id}`; the item names its secret, so both are
//! read, updated and deleted alike). A secret is created with its stream, written only by
//! that stream's updates, each a new version, and deleted with it: no request on one stream
//! can touch another's secret, the project's next stream included, and a deleted secret is
//! never created again. The state table names the version in use, so a streamer caches a
//! credential by (secret, version) for its whole life and calls Secrets Manager again only
//! when the version changes. Secrets are tagged with the project id, and deleted without a
//! recovery window (nothing could recover them: no item refers to them any more).

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::operation::delete_secret::DeleteSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError;
use aws_sdk_secretsmanager::types::Tag;
use serde::{Deserialize, Serialize};

use super::{CredentialRead, CredentialWrite, StoreError, StoreResult};
use crate::domain::controls::RedactionKey;
use crate::domain::{CredentialRef, ProjectId, StreamSecret};
use crate::secret::Secret;

pub const DEFAULT_SECRET_PREFIX: &str = "event-log-streaming/";

/// A secret's JSON. Owned strings: a credential may hold characters JSON escapes, and an
/// escaped string cannot be borrowed from the text.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretValue {
    credential: String,
    /// Absent in secrets saved before redaction keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redaction_key: Option<String>,
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

    /// The secret of the stream `stream_id` of `project`.
    pub fn secret_name(&self, project: &ProjectId, stream_id: &str) -> String {
        format!("{}{project}/{stream_id}", self.prefix)
    }

    /// The names of every stream secret under the prefix: those this adapter made, tagged with
    /// their project (a ListSecrets: for the migration only). Other secrets under the prefix,
    /// the management keys' should an operator put them there, are not among them.
    pub async fn stream_secret_names(&self) -> StoreResult<Vec<String>> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(&self.prefix)
            .build();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter)
            .into_paginator()
            .send();
        let mut entries = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| StoreError::unavailable("Secrets Manager ListSecrets", e))?;
            entries.extend(page.secret_list.unwrap_or_default());
        }
        let mut names = Vec::new();
        for entry in entries {
            let Some(name) = entry.name() else { continue };
            let Some(project) = name
                .strip_prefix(&self.prefix)
                .map(|rest| rest.split('/').next().unwrap_or_default())
            else {
                continue;
            };
            let tagged = entry
                .tags()
                .iter()
                .any(|t| t.key() == Some("project_id") && t.value() == Some(project));
            if tagged {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// The secret string of a stream's secret: `{"credential":…,"redaction_key":…}`.
    pub fn secret_string(secret: &StreamSecret) -> String {
        serde_json::to_string(&SecretValue {
            credential: secret.credential.expose().to_owned(),
            redaction_key: secret
                .redaction_key
                .as_ref()
                .map(|key| key.to_secret().expose().to_owned()),
        })
        .expect("a string serializes")
    }

    /// The stream's secret in a secret string, if it has the shape [`Self::secret_string`]
    /// writes (a redaction key included, if any, that is well formed).
    pub fn parse_secret_string(value: &str) -> Option<StreamSecret> {
        let value = serde_json::from_str::<SecretValue>(value).ok()?;
        let redaction_key = match value.redaction_key {
            Some(key) => Some(RedactionKey::from_secret(&Secret::new(key)).ok()?),
            None => None,
        };
        Some(StreamSecret {
            credential: Secret::new(value.credential),
            redaction_key,
        })
    }
}

#[async_trait]
impl CredentialRead for SecretsManagerCredentials {
    async fn get(&self, credential: &CredentialRef) -> StoreResult<StreamSecret> {
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
    async fn create_secret(
        &self,
        project: &ProjectId,
        stream_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        let name = self.secret_name(project, stream_id);
        let result = self
            .client
            .create_secret()
            .name(&name)
            .description("Event log streaming credential of one stream")
            .secret_string(Self::secret_string(secret))
            .tags(
                Tag::builder()
                    .key("project_id")
                    .value(project.as_str())
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(output) => saved(
                name,
                output.version_id,
                &secret.credential,
                "Secrets Manager CreateSecret",
            ),
            // A stream identity is 128 random bits: another secret of that name is a bug.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(CreateSecretError::ResourceExistsException(_))
                ) =>
            {
                Err(StoreError::AlreadyExists)
            }
            Err(err) => Err(StoreError::unavailable("Secrets Manager CreateSecret", err)),
        }
    }

    async fn put_version(
        &self,
        secret_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        let result = self
            .client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(Self::secret_string(secret))
            .send()
            .await;
        match result {
            Ok(output) => saved(
                secret_id.to_owned(),
                output.version_id,
                &secret.credential,
                "Secrets Manager PutSecretValue",
            ),
            // Gone, or still being deleted (AWS deletes in the background, even when forced):
            // its stream was deleted; the secret is never created again.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(
                        PutSecretValueError::ResourceNotFoundException(_)
                            | PutSecretValueError::InvalidRequestException(_)
                    )
                ) =>
            {
                Err(StoreError::NotFound)
            }
            Err(err) => Err(StoreError::unavailable(
                "Secrets Manager PutSecretValue",
                err,
            )),
        }
    }

    async fn delete_secret(&self, secret_id: &str) -> StoreResult<()> {
        let result = self
            .client
            .delete_secret()
            .secret_id(secret_id)
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

/// Where a write saved `credential`: the version the answer names.
fn saved(
    secret_id: String,
    version_id: Option<String>,
    credential: &Secret,
    operation: &'static str,
) -> StoreResult<CredentialRef> {
    let version_id =
        version_id.ok_or_else(|| StoreError::unavailable(operation, "no version in the answer"))?;
    Ok(CredentialRef {
        secret_id,
        version_id,
        last_four: credential.last_four(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_string_round_trips_whatever_its_credential_holds() {
        let key = |s: &StreamSecret| s.redaction_key.as_ref().map(|k| k.to_secret());
        for credential in ["glc_plain", "quote \" backslash \\ tab \t é ✓ \u{1F600}"] {
            let secret = StreamSecret::with_new_key(Secret::new(credential)).unwrap();
            let text = SecretsManagerCredentials::secret_string(&secret);
            let read = SecretsManagerCredentials::parse_secret_string(&text).unwrap();
            assert_eq!(read.credential.expose(), credential);
            assert_eq!(key(&read), key(&secret));
        }
        let without_key = SecretsManagerCredentials::parse_secret_string(r#"{"credential":"c"}"#);
        assert!(without_key.unwrap().redaction_key.is_none());
        for refused in [
            r#"{"credential":"c","redaction_key":"short"}"#,
            r#"{"other":1}"#,
            "c",
        ] {
            assert!(SecretsManagerCredentials::parse_secret_string(refused).is_none());
        }
    }
}
