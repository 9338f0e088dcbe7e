//! Credentials by envelope encryption: one KMS key for the deployment, and each credential
//! version sealed with AES-256-GCM under a data key of its own, kept in the state table.
//!
//! Why: a Secrets Manager secret costs $0.40 a month, $40,000 a month at 100,000 streams; a
//! KMS key costs $1 a month whatever it protects, and a few hundred bytes more in DynamoDB
//! cost next to nothing (docs/cost.md). Why a data key rather than `kms:Encrypt` of the
//! secret itself (≤ 4 KB would do): the issue asks for envelope encryption, the plaintext
//! never travels to KMS, and the format does not depend on KMS's payload limit; the price
//! is the same, one KMS request per write (`GenerateDataKey`) and per uncached read
//! (`Decrypt`).
//!
//! Record: one item per secret in the streams table, keyed `envelope:{project}/{stream}`
//! (a project id has no `:`, so the key is never a project's; see [`SECRET_ID_PREFIX`]),
//! holding a map `credential_versions` from version id to
//! `{k: the data key as KMS encrypted it, n: nonce, c: ciphertext, f: format, seq}`
//! ([`sealed`]). The stream's own item names a version through its [`CredentialRef`], as it
//! names a Secrets Manager version, so the config API's conditional writes stay as they are,
//! and the streamer caches a decrypted credential by (secret, version) for its whole life
//! (`StreamDirectory`). Keeping the versions in an item of their own, not in the stream's
//! item, keeps the two writers apart: a credential is written before the configuration that
//! names it, and the health writes never carry ciphertext. One item per secret makes the
//! delete of every version one DeleteItem, and an update of a deleted stream's secret a
//! failed condition, never a new secret ([`CredentialWrite`]'s contract).
//!
//! Binding: the KMS encryption context, and the AES-GCM associated data, are the purpose,
//! project id, secret id and version id. A ciphertext moved to another stream or version
//! does not decrypt, CloudTrail shows which project each Decrypt was for, and the IAM
//! policy allows the key for this purpose only (`kms:EncryptionContext:purpose`).
//!
//! Limits: an item is at most 400 KB, and DynamoDB bills a write by the whole item's size
//! (1 WRU per KB) and a read per 4 KB: only the newest [`KEPT_VERSIONS`] are kept, about
//! 400 bytes each. Reads are strongly consistent, since the version a configuration names
//! was written just before it. Key rotation: with automatic rotation on (the template
//! enables it), KMS keeps every earlier key material and decrypts old data keys with it;
//! nothing here is re-encrypted.

pub mod sealed;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use super::{CredentialRead, CredentialWrite, SecretsManagerCredentials, StoreError, StoreResult};
use crate::domain::{CredentialRef, ProjectId, StreamSecret};
use sealed::{Context, DataKey, FORMAT, NONCE_LEN, Sealed};

/// The start of every secret id of this adapter. `:` is in neither a project id nor a
/// Secrets Manager secret name, so an id tells which adapter wrote it.
pub const SECRET_ID_PREFIX: &str = "envelope:";
/// The table's partition key (`store/dynamodb`).
const KEY: &str = "project_id";
const VERSIONS: &str = "credential_versions";
/// Versions kept per secret. A streamer may still read the version before the last for
/// a cache TTL after an update, and an update whose configuration write lost a race leaves a
/// version nobody names: four covers both with room.
pub const KEPT_VERSIONS: usize = 4;

pub struct KmsEnvelopeCredentials {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    kms: aws_sdk_kms::Client,
    key_id: String,
}

type Item = HashMap<String, AttributeValue>;

impl KmsEnvelopeCredentials {
    /// Credentials in `table`, sealed under data keys of the KMS key `key_id` (key id, ARN or
    /// alias).
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        kms: aws_sdk_kms::Client,
        key_id: impl Into<String>,
    ) -> Self {
        Self {
            dynamodb,
            table: table.into(),
            kms,
            key_id: key_id.into(),
        }
    }

    /// The secret of the stream `stream_id` of `project`.
    pub fn secret_id(project: &ProjectId, stream_id: &str) -> String {
        format!("{SECRET_ID_PREFIX}{project}/{stream_id}")
    }

    /// Whether `secret_id` names a secret of this adapter.
    pub fn owns(secret_id: &str) -> bool {
        secret_id.starts_with(SECRET_ID_PREFIX)
    }

    fn project_of(secret_id: &str) -> StoreResult<&str> {
        secret_id
            .strip_prefix(SECRET_ID_PREFIX)
            .and_then(|rest| rest.split_once('/'))
            .map(|(project, _)| project)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("{secret_id} is not a secret of the KMS envelope"))
            })
    }

    fn key(secret_id: &str) -> Item {
        HashMap::from([(KEY.to_owned(), AttributeValue::S(secret_id.to_owned()))])
    }

    /// The secret sealed as version `version_id` of `secret_id`, under a new data key.
    async fn seal(
        &self,
        secret_id: &str,
        version_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<Sealed> {
        let context = Context {
            project_id: Self::project_of(secret_id)?,
            secret_id,
            version_id,
        };
        let mut request = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256);
        for (name, value) in context.pairs() {
            request = request.encryption_context(name, value);
        }
        let output = request
            .send()
            .await
            .map_err(|e| StoreError::unavailable("KMS GenerateDataKey", e))?;
        let missing = || StoreError::unavailable("KMS GenerateDataKey", "no key in the answer");
        let encrypted_key = output.ciphertext_blob.ok_or_else(missing)?.into_inner();
        let key = DataKey::from_plaintext(output.plaintext.ok_or_else(missing)?.into_inner())
            .map_err(|e| StoreError::unavailable("KMS GenerateDataKey", e))?;
        let plaintext = zeroize::Zeroizing::new(SecretsManagerCredentials::secret_string(secret));
        sealed::seal(&key, encrypted_key, &context, plaintext.as_bytes())
            .map_err(|e| StoreError::unavailable("seal a credential", e))
    }

    /// Every secret id of this adapter in the table (a Scan: for the migration only).
    pub async fn secret_ids(&self) -> StoreResult<Vec<String>> {
        let mut pages = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .projection_expression("#key")
            .filter_expression("begins_with(#key, :prefix)")
            .expression_attribute_names("#key", KEY)
            .expression_attribute_values(":prefix", AttributeValue::S(SECRET_ID_PREFIX.into()))
            .into_paginator()
            .items()
            .send();
        let mut ids = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| StoreError::unavailable("DynamoDB Scan", e))?;
            if let Some(AttributeValue::S(id)) = item.get(KEY) {
                ids.push(id.clone());
            }
        }
        Ok(ids)
    }

    /// The versions of `secret_id` and their sequence numbers, oldest first; `None` when
    /// the secret does not exist.
    async fn versions(&self, secret_id: &str) -> StoreResult<Option<Vec<(String, u64)>>> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(secret_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("DynamoDB GetItem", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let mut versions: Vec<(String, u64)> = match item.get(VERSIONS) {
            Some(AttributeValue::M(versions)) => versions
                .iter()
                .map(|(id, value)| (id.clone(), sequence(value).unwrap_or(0)))
                .collect(),
            _ => Vec::new(),
        };
        versions.sort_by_key(|(_, seq)| *seq);
        Ok(Some(versions))
    }
}

/// A new version id: 128 random bits.
fn new_version_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn sequence(value: &AttributeValue) -> Option<u64> {
    value.as_m().ok()?.get("seq")?.as_n().ok()?.parse().ok()
}

fn version_value(sealed: &Sealed, seq: u64) -> AttributeValue {
    let blob = |bytes: &[u8]| AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes));
    AttributeValue::M(HashMap::from([
        ("k".to_owned(), blob(&sealed.encrypted_key)),
        ("n".to_owned(), blob(&sealed.nonce)),
        ("c".to_owned(), blob(&sealed.ciphertext)),
        ("f".to_owned(), AttributeValue::N(FORMAT.to_string())),
        ("seq".to_owned(), AttributeValue::N(seq.to_string())),
    ]))
}

/// The sealed version a record holds, or which of its fields is wrong.
fn sealed_from(value: &AttributeValue) -> Result<Sealed, &'static str> {
    let map = value.as_m().map_err(|_| "version")?;
    let bytes = |name: &'static str| {
        map.get(name)
            .and_then(|v| v.as_b().ok())
            .map(|b| b.as_ref().to_vec())
            .ok_or(name)
    };
    let format = map.get("f").and_then(|v| v.as_n().ok());
    if format.map(String::as_str) != Some(&FORMAT.to_string()) {
        return Err("f");
    }
    Ok(Sealed {
        encrypted_key: bytes("k")?,
        nonce: <[u8; NONCE_LEN]>::try_from(bytes("n")?.as_slice()).map_err(|_| "n")?,
        ciphertext: bytes("c")?,
    })
}

fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    err: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

#[async_trait]
impl CredentialRead for KmsEnvelopeCredentials {
    async fn get(&self, credential: &CredentialRef) -> StoreResult<StreamSecret> {
        let CredentialRef {
            secret_id,
            version_id,
            ..
        } = credential;
        let context = Context {
            project_id: Self::project_of(secret_id)?,
            secret_id,
            version_id,
        };
        let output = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(secret_id)))
            .projection_expression("#versions.#version")
            .expression_attribute_names("#versions", VERSIONS)
            .expression_attribute_names("#version", version_id)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable("DynamoDB GetItem", e))?;
        let value = output
            .item
            .as_ref()
            .and_then(|item| item.get(VERSIONS)?.as_m().ok()?.get(version_id))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "credential version {version_id} of secret {secret_id} does not exist"
                ))
            })?;
        let sealed = sealed_from(value).map_err(|field| {
            StoreError::Corrupt(format!(
                "field {field} of credential version {version_id} of secret {secret_id}"
            ))
        })?;
        let mut request = self
            .kms
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(sealed.encrypted_key.clone()));
        for (name, value) in context.pairs() {
            request = request.encryption_context(name, value);
        }
        let refused = || {
            StoreError::Corrupt(format!(
                "credential version {version_id} of secret {secret_id} does not decrypt: altered, \
                 or moved from another stream or version"
            ))
        };
        let plaintext = match request.send().await {
            Ok(output) => output.plaintext.ok_or_else(|| {
                StoreError::unavailable("KMS Decrypt", "no plaintext in the answer")
            })?,
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(
                        aws_sdk_kms::operation::decrypt::DecryptError::InvalidCiphertextException(
                            _
                        )
                    )
                ) =>
            {
                return Err(refused());
            }
            Err(err) => return Err(StoreError::unavailable("KMS Decrypt", err)),
        };
        let key = DataKey::from_plaintext(plaintext.into_inner())
            .map_err(|e| StoreError::unavailable("KMS Decrypt", e))?;
        let opened = sealed::open(&key, &sealed, &context).map_err(|_| refused())?;
        std::str::from_utf8(&opened)
            .ok()
            .and_then(SecretsManagerCredentials::parse_secret_string)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("secret {secret_id} does not hold a credential"))
            })
    }
}

#[async_trait]
impl CredentialWrite for KmsEnvelopeCredentials {
    async fn create_secret(
        &self,
        project: &ProjectId,
        stream_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        let secret_id = Self::secret_id(project, stream_id);
        let version_id = new_version_id();
        let sealed = self.seal(&secret_id, &version_id, secret).await?;
        let mut item = Self::key(&secret_id);
        item.insert(
            VERSIONS.to_owned(),
            AttributeValue::M(HashMap::from([(
                version_id.clone(),
                version_value(&sealed, 1),
            )])),
        );
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(CredentialRef {
                secret_id,
                version_id,
                last_four: secret.credential.last_four(),
            }),
            // A stream identity is 128 random bits: another secret of that name is a bug.
            Err(err) if condition_failed(&err) => Err(StoreError::AlreadyExists),
            Err(err) => Err(StoreError::unavailable("DynamoDB PutItem", err)),
        }
    }

    async fn put_version(
        &self,
        secret_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        let Some(versions) = self.versions(secret_id).await? else {
            return Err(StoreError::NotFound);
        };
        let seq = versions.last().map_or(0, |(_, seq)| *seq) + 1;
        let version_id = new_version_id();
        let sealed = self.seal(secret_id, &version_id, secret).await?;
        let mut names = HashMap::from([
            ("#key".to_owned(), KEY.to_owned()),
            ("#versions".to_owned(), VERSIONS.to_owned()),
            ("#new".to_owned(), version_id.clone()),
        ]);
        let mut expression = "SET #versions.#new = :new".to_owned();
        let dropped = versions.len().saturating_sub(KEPT_VERSIONS - 1);
        for (i, (old, _)) in versions.iter().take(dropped).enumerate() {
            let name = format!("#old{i}");
            expression.push_str(if i == 0 { " REMOVE " } else { ", " });
            expression.push_str(&format!("#versions.{name}"));
            names.insert(name, old.clone());
        }
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(secret_id)))
            .update_expression(expression)
            .condition_expression("attribute_exists(#key)")
            .set_expression_attribute_names(Some(names))
            .expression_attribute_values(":new", version_value(&sealed, seq))
            .send()
            .await;
        match result {
            Ok(_) => Ok(CredentialRef {
                secret_id: secret_id.to_owned(),
                version_id,
                last_four: secret.credential.last_four(),
            }),
            // Deleted since it was read: its stream is gone; never created again.
            Err(err) if condition_failed(&err) => Err(StoreError::NotFound),
            Err(err) => Err(StoreError::unavailable("DynamoDB UpdateItem", err)),
        }
    }

    async fn delete_secret(&self, secret_id: &str) -> StoreResult<()> {
        self.dynamodb
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(secret_id)))
            .send()
            .await
            .map_err(|e| StoreError::unavailable("DynamoDB DeleteItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_id_names_its_project_and_is_never_a_project_id() {
        let project = ProjectId::parse("proj-a").unwrap();
        let id = KmsEnvelopeCredentials::secret_id(&project, "0123abcd");
        assert_eq!(id, "envelope:proj-a/0123abcd");
        assert!(KmsEnvelopeCredentials::owns(&id));
        assert!(ProjectId::parse(&id).is_err());
        assert_eq!(KmsEnvelopeCredentials::project_of(&id).unwrap(), "proj-a");
        assert!(!KmsEnvelopeCredentials::owns(
            "event-log-streaming/proj-a/0123abcd"
        ));
        assert!(KmsEnvelopeCredentials::project_of("event-log-streaming/proj-a").is_err());
    }

    #[test]
    fn a_stored_version_reads_back_and_a_wrong_field_is_named() {
        let key = DataKey::from_plaintext(vec![3; sealed::DATA_KEY_LEN]).unwrap();
        let context = Context {
            project_id: "p",
            secret_id: "envelope:p/s",
            version_id: "v",
        };
        let sealed = sealed::seal(&key, b"blob".to_vec(), &context, b"{}").unwrap();
        let value = version_value(&sealed, 3);
        assert_eq!(sealed_from(&value).unwrap(), sealed);
        assert_eq!(sequence(&value), Some(3));
        let AttributeValue::M(mut map) = value else {
            unreachable!()
        };
        map.insert("f".into(), AttributeValue::N("2".into()));
        assert_eq!(sealed_from(&AttributeValue::M(map.clone())), Err("f"));
        map.insert("f".into(), AttributeValue::N("1".into()));
        map.insert("n".into(), AttributeValue::B(vec![0; 4].into()));
        assert_eq!(sealed_from(&AttributeValue::M(map)), Err("n"));
    }
}
