//! The config API's commands on a project's stream, HTTP aside: create, read, update,
//! delete, enable and disable, on the store ports ([`StreamWrite`], [`CredentialStore`]).
//! Callers hand in values already parsed at the edge and the time; errors are
//! [`StreamError`], which `error.rs` maps to status codes.
//!
//! The stream lives in two places that cannot be written together: the item (conditional on
//! its `version`) and the stream's own credential secret, named by the stream's identity
//! ([`event_log_streaming::store::CredentialWrite`]). The rules that keep them pointing at
//! each other while requests race:
//! - a create saves a new secret of its own, then the item; if the project has a stream
//!   already, it deletes that new secret again (nothing else can refer to it), so a create
//!   never leaves a secret without an item, and never touches another stream's;
//! - an update saves a new version of its stream's secret, never a new secret: if a delete
//!   removed the secret meanwhile, the update finds no stream (404) and leaves nothing behind;
//! - a delete removes the secret first, then the item at the version it read, so a 200 means
//!   the secret is gone; overtaken by another write (an enable or disable: a new credential
//!   can no longer be saved in the deleted secret), it reads the stream again and deletes
//!   both again, [`DELETE_ROUNDS`] times at most.
//!
//! Left open: a delete overtaken more than [`DELETE_ROUNDS`] times answers 409 with the secret
//! gone and the item still there (its streamer reads then fail and say so in its health)
//! until the delete is sent again.

use event_log_streaming::Secret;
use event_log_streaming::domain::{
    CredentialRef, Destination, DestinationType, Endpoint, ProjectId, StreamConfig, StreamControls,
    StreamSecret, ValidationError,
};
use event_log_streaming::store::{
    CredentialStore, StoreError, StoredStream, StreamWrite, create_stream,
};
use time::{Duration, OffsetDateTime};

/// Rounds of a delete that concurrent writes keep overtaking before it answers a conflict.
pub const DELETE_ROUNDS: usize = 3;

/// What a command on a stream can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the project has no event log streaming configuration")]
    NoStream,
    /// The path names a destination type the project does not stream to.
    #[error("the project streams to {stored}, not {requested}")]
    OtherType {
        stored: DestinationType,
        requested: DestinationType,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A status change asked for by the customer; the rules are the domain's state machine
/// ([`event_log_streaming::domain::StreamState`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCommand {
    /// From DISABLED or SUSPENDED, streaming events from `now + start_delay` on (the
    /// streamer's cache TTL, so that every container has seen the change by then).
    Enable {
        start_delay: Duration,
    },
    Disable,
}

/// The commands, on the ports they write through.
pub struct Streams<'a> {
    pub streams: &'a dyn StreamWrite,
    pub credentials: &'a dyn CredentialStore,
}

impl Streams<'_> {
    /// The project's stream, if its destination type is `kind`.
    pub async fn read(
        &self,
        project: &ProjectId,
        kind: DestinationType,
    ) -> Result<StoredStream, StreamError> {
        let stream = self
            .streams
            .get(project)
            .await?
            .ok_or(StreamError::NoStream)?;
        let stored = stream.config.destination_type();
        if stored != kind {
            return Err(StreamError::OtherType {
                stored,
                requested: kind,
            });
        }
        Ok(stream)
    }

    /// A new stream, DISABLED. A project that has one already is refused, before a secret is
    /// created when the read sees it (one paid call saved).
    pub async fn create(
        &self,
        project: &ProjectId,
        destination: &Destination,
        controls: &StreamControls,
        now: OffsetDateTime,
    ) -> Result<StoredStream, StreamError> {
        if self.streams.get(project).await?.is_some() {
            return Err(StoreError::AlreadyExists.into());
        }
        let config = create_stream(
            self.streams,
            self.credentials,
            project,
            destination,
            controls,
            now,
        )
        .await?;
        Ok(StoredStream {
            config,
            health: Default::default(),
        })
    }

    /// Replaces the endpoint and the controls; the status (SUSPENDED included) and
    /// `enabled_at` are kept. Without a `credential` the stored one is kept, unless a Loki
    /// stream moves to another host (see [`Endpoint::keeps_credential_for`]).
    pub async fn update(
        &self,
        project: &ProjectId,
        kind: DestinationType,
        endpoint: Endpoint,
        controls: StreamControls,
        credential: Option<Secret>,
        now: OffsetDateTime,
    ) -> Result<StoredStream, StreamError> {
        let mut stream = self.read(project, kind).await?;
        let read = &stream.config;
        if credential.is_none() && !read.endpoint.keeps_credential_for(&endpoint) {
            return Err(ValidationError::new(
                "destination_config.grafana_loki.password",
                "required when the hostname changes (the stored token is only sent to the host it was saved for)",
            )
            .into());
        }
        let credential = self.saved_secret(read, credential, &controls).await?;
        let mut config = read.next_version(now);
        config.endpoint = endpoint;
        config.controls = controls;
        config.credential = credential;
        self.streams.update(&config, read.version).await?;
        stream.config = config;
        Ok(stream)
    }

    /// The secret the next version refers to. A new version is saved when a new credential
    /// is given (with the stream's redaction key, which never changes), and when the controls
    /// hash but the secret, saved before keys existed, has none; otherwise the stored one is
    /// kept, and no secret is read.
    async fn saved_secret(
        &self,
        read: &StreamConfig,
        credential: Option<Secret>,
        controls: &StreamControls,
    ) -> Result<CredentialRef, StreamError> {
        if credential.is_none() && !controls.hashes() {
            return Ok(read.credential.clone());
        }
        let stored = self.credentials.get(&read.credential).await?;
        let next = match credential {
            Some(credential) => stored.with_credential(credential),
            None if stored.redaction_key.is_some() => return Ok(read.credential.clone()),
            None => stored,
        };
        let next = match next.redaction_key {
            Some(_) => next,
            None => StreamSecret::with_new_key(next.credential)
                .map_err(|e| StoreError::unavailable("generate a redaction key", e))?,
        };
        // A version unused because the item write fails stays in this stream's secret, and
        // goes with it.
        match self
            .credentials
            .put_version(&read.credential.secret_id, &next)
            .await
        {
            Err(StoreError::NotFound) => Err(StreamError::NoStream),
            saved => Ok(saved?),
        }
    }

    /// Deletes the credential secret, then the stream; returns what was deleted. See the
    /// module's rules for why in that order, and why again when overtaken.
    pub async fn delete(
        &self,
        project: &ProjectId,
        kind: DestinationType,
    ) -> Result<StreamConfig, StreamError> {
        for _ in 0..DELETE_ROUNDS {
            let stream = self.read(project, kind).await?;
            let secret = &stream.config.credential.secret_id;
            self.credentials.delete_secret(secret).await?;
            match self.streams.delete(project, stream.config.version).await {
                Ok(()) => return Ok(stream.config),
                Err(StoreError::Conflict) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// Enables or disables, keeping the configuration; a command that changes nothing (enable
    /// of an active stream) writes nothing.
    pub async fn set_status(
        &self,
        project: &ProjectId,
        kind: DestinationType,
        command: StatusCommand,
        now: OffsetDateTime,
    ) -> Result<(), StreamError> {
        let stream = self.read(project, kind).await?;
        let read = &stream.config;
        let next = match command {
            StatusCommand::Enable { start_delay } => read.state.enable(now, start_delay),
            StatusCommand::Disable => read.state.disable(),
        };
        if let Some(next) = next {
            let mut config = read.next_version(now);
            config.state = next;
            self.streams.update(&config, read.version).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
