//! Moves a deployment's credentials from one adapter to the other (`make migrate` with
//! `--to kms-envelope` or `--to secrets-manager`).
//!
//! Idempotent and safe beside running functions. Per project in the table:
//! 1. a stream whose credential reference already names a secret of the target adapter
//!    (the secret id tells: [`KmsEnvelopeCredentials::owns`]) is left alone;
//! 2. otherwise the version its item names is read from the source adapter and written to
//!    the target as the stream's secret there (a new version, if an interrupted run made it);
//! 3. the item is rewritten to name it, conditional on the version read in 1: a
//!    configuration saved meanwhile wins, and the stream is reported for the next run.
//!
//! The old secrets stay until [`CredentialMove::delete_old`], a separate step: run it once
//! the functions read the target adapter. It deletes the source adapter's stream secrets that
//! no item names.

use std::collections::HashSet;

use time::OffsetDateTime;

use super::{
    CredentialRead, CredentialWrite, DynamoDbStreams, KmsEnvelopeCredentials,
    SecretsManagerCredentials, StoreError, StreamWrite, error_chain,
};
use crate::domain::ProjectId;

/// Where the credentials go; the other adapter is where they come from.
pub enum Target<'a> {
    KmsEnvelope {
        to: &'a KmsEnvelopeCredentials,
        from: &'a SecretsManagerCredentials,
    },
    SecretsManager {
        to: &'a SecretsManagerCredentials,
        from: &'a KmsEnvelopeCredentials,
    },
}

impl Target<'_> {
    fn owns(&self, secret_id: &str) -> bool {
        match self {
            Self::KmsEnvelope { .. } => KmsEnvelopeCredentials::owns(secret_id),
            Self::SecretsManager { .. } => !KmsEnvelopeCredentials::owns(secret_id),
        }
    }

    fn secret_id(&self, project: &ProjectId, stream_id: &str) -> String {
        match self {
            Self::KmsEnvelope { .. } => KmsEnvelopeCredentials::secret_id(project, stream_id),
            Self::SecretsManager { to, .. } => to.secret_name(project, stream_id),
        }
    }

    fn to(&self) -> &dyn CredentialWrite {
        match self {
            Self::KmsEnvelope { to, .. } => *to,
            Self::SecretsManager { to, .. } => *to,
        }
    }

    fn from(&self) -> (&dyn CredentialRead, &dyn CredentialWrite) {
        match self {
            Self::KmsEnvelope { from, .. } => (*from, *from),
            Self::SecretsManager { from, .. } => (*from, *from),
        }
    }
}

/// What a run did, project by project. No value is ever quoted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MoveReport {
    pub moved: Vec<ProjectId>,
    pub already_moved: Vec<ProjectId>,
    /// Project and why it was left as it was; the next run tries again.
    pub skipped: Vec<(ProjectId, String)>,
}

pub struct CredentialMove<'a> {
    pub streams: &'a DynamoDbStreams,
    pub target: Target<'a>,
    /// `updated_at` of the rewritten items.
    pub now: OffsetDateTime,
}

impl CredentialMove<'_> {
    pub async fn run(&self) -> Result<MoveReport, StoreError> {
        let mut report = MoveReport::default();
        for project in self.streams.project_ids().await? {
            match self.move_one(&project).await {
                Ok(true) => report.moved.push(project),
                Ok(false) => report.already_moved.push(project),
                Err(reason) => report.skipped.push((project, reason)),
            }
        }
        Ok(report)
    }

    /// `Ok(true)` when this run moved the stream, `Ok(false)` when there was nothing to do.
    async fn move_one(&self, project: &ProjectId) -> Result<bool, String> {
        let text = |e: StoreError| error_chain(&e);
        let Some(stream) = self.streams.get(project).await.map_err(text)? else {
            return Ok(false);
        };
        let config = stream.config;
        if self.target.owns(&config.credential.secret_id) {
            return Ok(false);
        }
        let (from, _) = self.target.from();
        let secret = from.get(&config.credential).await.map_err(text)?;
        let to = self.target.to();
        let credential = match to.create_secret(project, &config.stream_id, &secret).await {
            Err(StoreError::AlreadyExists) => to
                .put_version(&self.target.secret_id(project, &config.stream_id), &secret)
                .await
                .map_err(text)?,
            saved => saved.map_err(text)?,
        };
        let mut moved = config.next_version(self.now);
        moved.credential = credential;
        match self.streams.update(&moved, config.version).await {
            Ok(()) => Ok(true),
            // The new version stays unnamed; the next run writes another.
            Err(StoreError::Conflict) => {
                Err("the configuration changed during the move; run again".into())
            }
            Err(StoreError::NotFound) => Ok(false),
            Err(err) => Err(text(err)),
        }
    }

    /// Deletes the source adapter's stream secrets that no item names; returns their ids.
    pub async fn delete_old(&self) -> Result<Vec<String>, StoreError> {
        let mut named = HashSet::new();
        for project in self.streams.project_ids().await? {
            if let Some(stream) = self.streams.get(&project).await? {
                named.insert(stream.config.credential.secret_id);
            }
        }
        let old = match &self.target {
            Target::KmsEnvelope { from, .. } => from.stream_secret_names().await?,
            Target::SecretsManager { from, .. } => from.secret_ids().await?,
        };
        let (_, from) = self.target.from();
        let mut deleted = Vec::new();
        for id in old {
            if !named.contains(&id) && !self.target.owns(&id) {
                from.delete_secret(&id).await?;
                deleted.push(id);
            }
        }
        Ok(deleted)
    }
}
