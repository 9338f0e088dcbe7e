//! The config API's commands on a project's stream, HTTP aside: create, read, update,
//! delete, enable and disable, on the store ports ([`StreamWrite`], [`CredentialStore`]).
//! Callers hand in values already parsed at the edge and the time; errors are
//! [`StreamError`], which `error.rs` maps to status codes.
//!
//! The stream lives in two places that cannot be written together: the item (conditional on
//! its `version`) and the project's one credential secret (not conditional). The rules that
//! keep them pointing at each other while requests race:
//! - a delete removes the secret first, then the item at the version it read, so a 200 means
//!   the secret is gone and a create racing it finds the item still there (409) instead of
//!   saving a credential the delete would then remove;
//! - a delete overtaken by another write (which may have saved a new secret) reads the stream
//!   again and deletes both again, [`DELETE_ROUNDS`] times at most;
//! - a create or update whose item write fails after it saved a credential deletes the secret
//!   again if the project has no stream by then: a delete removed the stream between the two
//!   writes, and the secret saved meanwhile (created anew if the delete had removed the old
//!   one) would otherwise outlive it. With a stream there, the saved version sits unused in
//!   that stream's own secret and is left alone.
//!
//! Left open (one secret name per project cannot close it): a create starting in the few
//! milliseconds between such a failed write's check and its deletion of the secret loses its
//! credential to it; and a delete overtaken more than [`DELETE_ROUNDS`] times answers 409 with
//! the secret gone and the item still there, until the delete is sent again.

use event_log_streaming::Secret;
use event_log_streaming::domain::{
    Destination, DestinationType, Endpoint, ProjectId, StreamConfig, ValidationError,
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

    /// A new stream, DISABLED. A project that has one already is refused before the credential
    /// is written, so that the existing stream's secret is left alone.
    pub async fn create(
        &self,
        project: &ProjectId,
        destination: &Destination,
        now: OffsetDateTime,
    ) -> Result<StoredStream, StreamError> {
        if self.streams.get(project).await?.is_some() {
            return Err(StoreError::AlreadyExists.into());
        }
        match create_stream(self.streams, self.credentials, project, destination, now).await {
            Ok(config) => Ok(StoredStream {
                config,
                health: Default::default(),
            }),
            Err(err @ StoreError::AlreadyExists) => {
                self.release_if_unused(project).await?;
                Err(err.into())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces the endpoint; the status (SUSPENDED included) and `enabled_at` are kept.
    /// Without a `credential` the stored one is kept, unless a Loki stream moves to another
    /// host (see [`Endpoint::keeps_credential_for`]).
    pub async fn update(
        &self,
        project: &ProjectId,
        kind: DestinationType,
        endpoint: Endpoint,
        credential: Option<Secret>,
        now: OffsetDateTime,
    ) -> Result<StoredStream, StreamError> {
        let mut stream = self.read(project, kind).await?;
        let read = &stream.config;
        let (credential, saved) = match credential {
            None if read.endpoint.keeps_credential_for(&endpoint) => {
                (read.credential.clone(), false)
            }
            None => {
                return Err(ValidationError::new(
                    "destination_config.grafana_loki.password",
                    "required when the hostname changes (the stored token is only sent to the host it was saved for)",
                )
                .into());
            }
            Some(secret) => (self.credentials.put(project, &secret).await?, true),
        };
        let mut config = read.next_version(now);
        config.endpoint = endpoint;
        config.credential = credential;
        if let Err(err) = self.streams.update(&config, read.version).await {
            if saved {
                self.release_if_unused(project).await?;
            }
            return Err(err.into());
        }
        stream.config = config;
        Ok(stream)
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
            self.credentials.delete(project).await?;
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

    /// After a write that saved a credential and then failed: see the module's rules.
    async fn release_if_unused(&self, project: &ProjectId) -> Result<(), StoreError> {
        if self.streams.get(project).await?.is_none() {
            self.credentials.delete(project).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
