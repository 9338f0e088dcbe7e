//! Where streams are kept: configuration, status and delivery health in a table, credentials
//! in one secret per stream (Secrets Manager) or sealed under a KMS key in the same table
//! (envelope encryption, for many projects: [`kms_envelope`]).
//!
//! Ports, each as narrow as its caller:
//! - [`StreamLookup`]: the streamer's batch read;
//! - [`StreamWrite`]: the config API's versioned writes, each conditional on the version read;
//! - [`HealthWrite`]: the streamer's health writes and suspension;
//! - [`CredentialRead`] / [`CredentialWrite`]: the credential secrets, one per stream, read by
//!   version.
//!
//! Adapters, one file each, each owning its record format: DynamoDB, and Secrets Manager or
//! the KMS envelope (`CREDENTIAL_STORE`), in AWS, an embedded JSON file for the local runner, memory for unit tests. The streamer reads
//! through [`StreamDirectory`], a bounded cache in front of the lookup and credential ports.

pub mod credential_move;
mod directory;
mod dynamodb;
mod file;
pub mod kms_envelope;
mod memory;
pub mod migrate;
mod secrets_manager;

use std::collections::HashSet;

use async_trait::async_trait;
use tokio::time::Instant;

pub use directory::{Resolved, ResolvedStream, StreamDirectory};
pub use dynamodb::DynamoDbStreams;
pub use dynamodb::index::Built as IndexBuilt;
pub use file::{FileStateStore, write_private_atomically};
pub use kms_envelope::KmsEnvelopeCredentials;
pub use memory::MemoryStateStore;
pub use secrets_manager::{DEFAULT_SECRET_PREFIX, SecretsManagerCredentials};

use crate::domain::controls::Redactor;
use crate::domain::{
    CredentialRef, DeliveryHealth, Destination, ProjectId, StreamConfig, StreamControls,
    StreamSecret, Suspension, new_stream_id,
};

/// A stream as the table holds it: its configuration and its delivery health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStream {
    pub config: StreamConfig,
    pub health: DeliveryHealth,
}

/// What a lookup found of the projects it was asked about.
#[derive(Debug, Default)]
pub struct Found {
    /// The streams of the projects that are configured.
    pub streams: Vec<StoredStream>,
    /// Projects whose stream could not be read (their part of the read failed, ran out of
    /// time, or their item is corrupt), with why. The others are not configured.
    pub unread: Vec<(ProjectId, String)>,
}

/// The streamer's read: many projects at once.
#[async_trait]
pub trait StreamLookup: Send + Sync {
    /// The streams of `projects`. A failure of one part of the read (one project's corrupt
    /// item, one chunk of keys out of retries or out of time) affects only its projects.
    /// Ends by `deadline`: what is not read then is unread.
    async fn get_many(&self, projects: &[ProjectId], deadline: Instant) -> Found;

    /// Every project that has a stream, when the store keeps an index of them; `None` when it
    /// keeps none (or it is not built yet): then every project must be looked up. The index
    /// may list a project whose stream was just deleted, never miss one that has a stream.
    /// Ends by `deadline`.
    async fn configured(&self, _deadline: Instant) -> StoreResult<Option<HashSet<ProjectId>>> {
        Ok(None)
    }
}

/// The config API's writes. Each is conditional on the version the caller read, so two
/// concurrent changes never lose one another: the second gets [`StoreError::Conflict`].
#[async_trait]
pub trait StreamWrite: Send + Sync {
    /// The project's stream, read consistently.
    async fn get(&self, project: &ProjectId) -> Result<Option<StoredStream>, StoreError>;
    /// [`StoreError::AlreadyExists`] if the project has a stream.
    async fn create(&self, config: &StreamConfig) -> Result<(), StoreError>;
    /// Replaces the configuration (never the health) if it is still at `expected_version`.
    async fn update(&self, config: &StreamConfig, expected_version: u64) -> Result<(), StoreError>;
    /// Deletes the stream, health included, if it is still at `expected_version`.
    async fn delete(&self, project: &ProjectId, expected_version: u64) -> Result<(), StoreError>;
}

/// The streamer's writes: health, and the one transition it makes. Both name the stream by
/// the configuration the deliveries used (`seen`): its identity and its version.
#[async_trait]
pub trait HealthWrite: Send + Sync {
    /// Adds `update`, seen while delivering with `seen`, to the stream's health, touching
    /// nothing else ([`DeliveryHealth::apply_seen`]: refusals count only towards the
    /// suspension of the version they were seen with). Returns the health after it, or
    /// `None` when the project has no stream any more, or another one (deleted and created
    /// again).
    async fn record(
        &self,
        seen: &StreamConfig,
        update: &DeliveryHealth,
    ) -> Result<Option<DeliveryHealth>, StoreError>;
    /// ACTIVE → SUSPENDED, only if the stream is still `seen`'s, at its version (a
    /// configuration saved or enabled meanwhile wins). Returns whether it was suspended.
    async fn suspend(
        &self,
        seen: &StreamConfig,
        suspension: &Suspension,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait CredentialRead: Send + Sync {
    async fn get(&self, credential: &CredentialRef) -> Result<StreamSecret, StoreError>;
}

/// Each stream's credential lives in a secret of its own, named by the stream's identity:
/// a secret is created with its stream, written only by that stream's updates, and deleted
/// with it, so that no create, update or delete of one stream can write or remove another's
/// (a project's next stream included).
#[async_trait]
pub trait CredentialWrite: Send + Sync {
    /// Saves the secret of the new stream `stream_id` of `project` in a new secret.
    async fn create_secret(
        &self,
        project: &ProjectId,
        stream_id: &str,
        secret: &StreamSecret,
    ) -> Result<CredentialRef, StoreError>;
    /// Saves a new version of the secret `secret_id`. [`StoreError::NotFound`] when the
    /// secret is gone (its stream was deleted): it is never created again.
    async fn put_version(
        &self,
        secret_id: &str,
        secret: &StreamSecret,
    ) -> Result<CredentialRef, StoreError>;
    /// Deletes the secret `secret_id` at once, every version; deleting nothing is fine.
    async fn delete_secret(&self, secret_id: &str) -> Result<(), StoreError>;
}

/// Both halves of the credential port, for the config API (its test endpoint reads).
pub trait CredentialStore: CredentialRead + CredentialWrite {}
impl<T: CredentialRead + CredentialWrite> CredentialStore for T {}

/// A new stream for `destination`: its credential and a new redaction key saved first, in a
/// secret of its own, then the configuration that refers to it, DISABLED until enabled. If the
/// project has a stream already, the new secret is deleted again (nothing else refers to it)
/// and the answer is [`StoreError::AlreadyExists`].
pub async fn create_stream(
    streams: &dyn StreamWrite,
    credentials: &dyn CredentialWrite,
    project: &ProjectId,
    destination: &Destination,
    controls: &StreamControls,
    now: time::OffsetDateTime,
) -> StoreResult<StreamConfig> {
    let stream_id = new_stream_id();
    let secret = StreamSecret::with_new_key(destination.credential().clone())
        .map_err(|e| StoreError::unavailable("generate a redaction key", e))?;
    let credential = credentials
        .create_secret(project, &stream_id, &secret)
        .await?;
    let mut config = StreamConfig::with_id(
        stream_id,
        project.clone(),
        destination.endpoint(),
        credential,
        now,
    );
    config.controls = controls.clone();
    if let Err(err) = streams.create(&config).await {
        credentials
            .delete_secret(&config.credential.secret_id)
            .await?;
        return Err(err);
    }
    Ok(config)
}

/// The destination of a stream, and the redactor of its records.
pub async fn destination_of(
    config: &StreamConfig,
    credentials: &dyn CredentialRead,
) -> Result<(Destination, Option<Redactor>), StoreError> {
    let secret = credentials.get(&config.credential).await?;
    joined(config, secret)
}

/// A stream's endpoint joined with its credential (a mismatch is a corrupt record), and its
/// redactor under its key. A stream that hashes without a key has no redactor and sends
/// nothing: never values in clear.
pub(crate) fn joined(
    config: &StreamConfig,
    secret: StreamSecret,
) -> Result<(Destination, Option<Redactor>), StoreError> {
    let redactor = match &config.controls.redaction {
        None => None,
        Some(redaction) => Some(
            Redactor::new(redaction, secret.redaction_key.as_ref()).ok_or_else(|| {
                StoreError::Corrupt(
                    "the stream has no redaction key to HASH with: save its configuration \
                     again to make one"
                        .into(),
                )
            })?,
        ),
    };
    let destination = Destination::assemble(&config.endpoint, secret.credential)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((destination, redactor))
}

pub type StoreResult<T> = Result<T, StoreError>;

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Store failures. None of the messages carries a secret: SDK errors describe the call, not
/// the value, and corrupt records are reported by field only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the project already has a configuration")]
    AlreadyExists,
    #[error("the project has no configuration")]
    NotFound,
    #[error("the configuration changed since it was read")]
    Conflict,
    /// Throttling, an outage, missing permissions: worth trying again later.
    #[error("{operation} failed")]
    Unavailable {
        operation: &'static str,
        #[source]
        cause: Cause,
    },
    /// A stored record that does not parse; the message names the field, never a value.
    #[error("stored record is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(operation: &'static str, cause: impl Into<Cause>) -> Self {
        Self::Unavailable {
            operation,
            cause: cause.into(),
        }
    }
}

/// The error and its causes on one line, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
