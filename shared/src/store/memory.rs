//! Streams and credentials in memory, for unit tests; [`State`] is also the working copy of
//! the local runner's file store, so both follow exactly the same rules.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    CredentialRead, CredentialWrite, Found, HealthWrite, StoreError, StoreResult, StoredStream,
    StreamLookup, StreamWrite,
};
use crate::domain::{
    CredentialRef, DeliveryHealth, ProjectId, StreamConfig, StreamSecret, Suspension,
};

/// Versions of a credential kept: the current one and the one before, which a streamer may
/// still be reading while a change reaches every container.
const CREDENTIAL_VERSIONS_KEPT: usize = 2;

/// Every stream and credential; each operation has the semantics of the port it serves.
#[derive(Debug, Default, Clone)]
pub(super) struct State {
    pub streams: BTreeMap<ProjectId, StoredStream>,
    /// Per secret (one per stream, `{project}/{stream_id}`; `{project}` for streams made
    /// before), versions oldest first: (version id, secret).
    pub credentials: BTreeMap<String, Vec<(String, StreamSecret)>>,
}

impl State {
    pub fn get_many(&self, projects: &[ProjectId]) -> Found {
        let streams = projects
            .iter()
            .filter_map(|p| self.streams.get(p).cloned())
            .collect();
        Found {
            streams,
            unread: Vec::new(),
        }
    }

    pub fn create(&mut self, config: &StreamConfig) -> StoreResult<()> {
        if self.streams.contains_key(&config.project_id) {
            return Err(StoreError::AlreadyExists);
        }
        self.streams.insert(
            config.project_id.clone(),
            StoredStream {
                config: config.clone(),
                health: DeliveryHealth::default(),
            },
        );
        Ok(())
    }

    fn at_version(&mut self, project: &ProjectId, version: u64) -> StoreResult<&mut StoredStream> {
        let stream = self.streams.get_mut(project).ok_or(StoreError::NotFound)?;
        if stream.config.version != version {
            return Err(StoreError::Conflict);
        }
        Ok(stream)
    }

    pub fn update(&mut self, config: &StreamConfig, expected_version: u64) -> StoreResult<()> {
        self.at_version(&config.project_id, expected_version)?
            .config = config.clone();
        Ok(())
    }

    pub fn delete(&mut self, project: &ProjectId, expected_version: u64) -> StoreResult<()> {
        self.at_version(project, expected_version)?;
        self.streams.remove(project);
        Ok(())
    }

    pub fn record(
        &mut self,
        seen: &StreamConfig,
        update: &DeliveryHealth,
    ) -> Option<DeliveryHealth> {
        let stream = self.streams.get_mut(&seen.project_id)?;
        if stream.config.stream_id != seen.stream_id {
            return None;
        }
        let current = stream.config.version;
        stream.health.apply_seen(update, seen.version, current);
        Some(stream.health.clone())
    }

    pub fn suspend(&mut self, seen: &StreamConfig, suspension: &Suspension) -> bool {
        let Ok(stream) = self.at_version(&seen.project_id, seen.version) else {
            return false;
        };
        if stream.config.stream_id != seen.stream_id {
            return false;
        }
        let Some(state) = stream.config.state.suspend(suspension.clone()) else {
            return false;
        };
        let config = &mut stream.config;
        *config = config.next_version(suspension.at);
        config.state = state;
        true
    }

    /// A new stream's secret.
    pub fn create_credential(
        &mut self,
        project: &ProjectId,
        stream_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        let secret_id = format!("{project}/{stream_id}");
        if self.credentials.contains_key(&secret_id) {
            return Err(StoreError::AlreadyExists);
        }
        self.credentials.insert(secret_id.clone(), Vec::new());
        self.put_version(&secret_id, secret)
    }

    /// A new version of an existing secret; [`StoreError::NotFound`] if it is gone.
    pub fn put_version(
        &mut self,
        secret_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        let versions = self
            .credentials
            .get_mut(secret_id)
            .ok_or(StoreError::NotFound)?;
        let version_id = format!("{:032x}", fastrand::u128(..));
        versions.push((version_id.clone(), secret.clone()));
        let excess = versions.len().saturating_sub(CREDENTIAL_VERSIONS_KEPT);
        versions.drain(..excess);
        Ok(CredentialRef {
            secret_id: secret_id.to_owned(),
            version_id,
            last_four: secret.credential.last_four(),
        })
    }

    pub fn credential(&self, credential: &CredentialRef) -> StoreResult<StreamSecret> {
        self.credentials
            .get(&credential.secret_id)
            .and_then(|versions| versions.iter().find(|(v, _)| *v == credential.version_id))
            .map(|(_, secret)| secret.clone())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "credential version {} of {} does not exist",
                    credential.version_id, credential.secret_id
                ))
            })
    }
}

#[derive(Default)]
pub struct MemoryStateStore {
    state: Mutex<State>,
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StreamLookup for MemoryStateStore {
    async fn get_many(&self, projects: &[ProjectId], _deadline: Instant) -> Found {
        self.state.lock().unwrap().get_many(projects)
    }

    /// Every stream is at hand: the index is exact.
    async fn configured(&self, _deadline: Instant) -> StoreResult<Option<HashSet<ProjectId>>> {
        Ok(Some(
            self.state.lock().unwrap().streams.keys().cloned().collect(),
        ))
    }
}

#[async_trait]
impl StreamWrite for MemoryStateStore {
    async fn get(&self, project: &ProjectId) -> StoreResult<Option<StoredStream>> {
        Ok(self.state.lock().unwrap().streams.get(project).cloned())
    }
    async fn create(&self, config: &StreamConfig) -> StoreResult<()> {
        self.state.lock().unwrap().create(config)
    }
    async fn update(&self, config: &StreamConfig, expected_version: u64) -> StoreResult<()> {
        self.state.lock().unwrap().update(config, expected_version)
    }
    async fn delete(&self, project: &ProjectId, expected_version: u64) -> StoreResult<()> {
        self.state.lock().unwrap().delete(project, expected_version)
    }
}

#[async_trait]
impl HealthWrite for MemoryStateStore {
    async fn record(
        &self,
        seen: &StreamConfig,
        update: &DeliveryHealth,
    ) -> StoreResult<Option<DeliveryHealth>> {
        Ok(self.state.lock().unwrap().record(seen, update))
    }
    async fn suspend(&self, seen: &StreamConfig, suspension: &Suspension) -> StoreResult<bool> {
        Ok(self.state.lock().unwrap().suspend(seen, suspension))
    }
}

#[async_trait]
impl CredentialRead for MemoryStateStore {
    async fn get(&self, credential: &CredentialRef) -> StoreResult<StreamSecret> {
        self.state.lock().unwrap().credential(credential)
    }
}

#[async_trait]
impl CredentialWrite for MemoryStateStore {
    async fn create_secret(
        &self,
        project: &ProjectId,
        stream_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        let mut state = self.state.lock().unwrap();
        state.create_credential(project, stream_id, secret)
    }
    async fn put_version(
        &self,
        secret_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        self.state.lock().unwrap().put_version(secret_id, secret)
    }
    async fn delete_secret(&self, secret_id: &str) -> StoreResult<()> {
        self.state.lock().unwrap().credentials.remove(secret_id);
        Ok(())
    }
}
