//! The management keys secret in Secrets Manager, written with optimistic concurrency.
//!
//! A write puts the new list as a new version staged [`PENDING_STAGE`] (not `AWSCURRENT`,
//! so no reader sees it yet), then moves `AWSCURRENT` to it with UpdateSecretVersionStage
//! `RemoveFromVersionId` = the version read. Secrets Manager refuses that move with
//! `InvalidParameterException` when `AWSCURRENT` is no longer on the version read: someone
//! wrote meanwhile, and the change is read again instead of overwriting theirs. The version
//! left staged [`PENDING_STAGE`] by a lost round takes effect nowhere; the next write moves
//! the label on. (moto 5.2.5 checks `RemoveFromVersionId` the same way; it serves a
//! GetSecretValue without a stage from the version last put as `AWSCURRENT`, not from where
//! the label is now, so reads name the stage.)

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use config_api::auth::ManagementKey;

use super::{KeyStore, KeysError, random_hex};
use crate::aws_error::AwsError;

/// The label of a version written but not yet current; a label moves with each write.
pub const PENDING_STAGE: &str = "ELS_ADMIN_PENDING";
const CURRENT_STAGE: &str = "AWSCURRENT";

pub struct SecretsManagerKeys {
    client: Client,
    secret_id: String,
}

impl SecretsManagerKeys {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }

    fn resource(&self) -> String {
        format!("the management keys secret {}", self.secret_id)
    }
}

#[async_trait]
impl KeyStore for SecretsManagerKeys {
    /// The `VersionId` holding `AWSCURRENT` when read.
    type Version = String;

    async fn read(&self) -> Result<(Vec<ManagementKey>, String), KeysError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(CURRENT_STAGE)
            .send()
            .await
            .map_err(|e| AwsError::of("secretsmanager:GetSecretValue", self.resource(), &e))?;
        let version = output.version_id().unwrap_or_default().to_owned();
        let keys =
            serde_json::from_str(output.secret_string().unwrap_or_default()).map_err(|e| {
                KeysError::NotAList {
                    place: self.resource(),
                    line: e.line(),
                    column: e.column(),
                }
            })?;
        Ok((keys, version))
    }

    async fn replace(&self, version: &String, keys: &[ManagementKey]) -> Result<(), KeysError> {
        let text = serde_json::to_string(keys).expect("keys serialize");
        let written = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(text)
            .client_request_token(request_token()?)
            .version_stages(PENDING_STAGE)
            .send()
            .await
            .map_err(|e| AwsError::of("secretsmanager:PutSecretValue", self.resource(), &e))?;
        let new_version = written.version_id().unwrap_or_default();
        let moved = self
            .client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(CURRENT_STAGE)
            .move_to_version_id(new_version)
            .remove_from_version_id(version)
            .send()
            .await;
        match moved {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("InvalidParameterException") => Err(
                KeysError::Conflict(err.message().unwrap_or("AWSCURRENT moved").to_owned()),
            ),
            Err(err) => Err(AwsError::of(
                "secretsmanager:UpdateSecretVersionStage",
                self.resource(),
                &err,
            )
            .into()),
        }
    }
}

/// A `ClientRequestToken` (the new version's id) in the UUID shape the console shows: a
/// retry of the same put by the SDK makes no second version.
fn request_token() -> Result<String, KeysError> {
    let hex = random_hex::<16>()?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}
