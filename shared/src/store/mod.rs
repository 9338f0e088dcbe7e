//! Where per-project configurations live.
//!
//! This is the one trait seam of the library: production keeps one Secrets Manager secret per
//! project, tests keep them in memory and the local runner in a file. The streamer reads
//! through [`CachedConfigStore`]; the config API writes straight to the store.

mod cached;
mod file;
mod memory;
mod secrets_manager;

use async_trait::async_trait;

pub use cached::CachedConfigStore;
pub use file::{FileConfigStore, write_private_atomically};
pub use memory::MemoryConfigStore;
pub use secrets_manager::{DEFAULT_SECRET_PREFIX, SecretsManagerStore};

use crate::domain::{ProjectId, StoredConfigError, StreamingConfig};

#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// The project's configuration, or `None` when the project has none.
    async fn get(&self, project: &ProjectId) -> Result<Option<StreamingConfig>, StoreError>;
    /// Stores a new configuration; [`StoreError::AlreadyExists`] if the project has one.
    async fn create(&self, project: &ProjectId, config: &StreamingConfig)
    -> Result<(), StoreError>;
    /// Replaces an existing configuration; [`StoreError::NotFound`] if there is none.
    async fn put(&self, project: &ProjectId, config: &StreamingConfig) -> Result<(), StoreError>;
    /// Deletes at once (no recovery window, so the project can reconfigure immediately).
    /// Returns whether there was anything to delete.
    async fn delete(&self, project: &ProjectId) -> Result<bool, StoreError>;
}

/// Store failures. None of the messages carries a secret: SDK errors describe the call, not
/// the secret value, and corrupt records are reported by position only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the project already has a configuration")]
    AlreadyExists,
    #[error("the project has no configuration")]
    NotFound,
    /// Throttling, an outage, missing permissions: worth trying again later.
    #[error("configuration store unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Corrupt(#[from] StoredConfigError),
}

/// A store for unit tests: memory-backed, counts lookups, and fails them on demand.
#[cfg(test)]
pub(crate) mod counting {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::{ConfigStore, MemoryConfigStore, StoreError};
    use crate::domain::{ProjectId, StreamingConfig};

    #[derive(Default)]
    pub struct CountingStore {
        inner: MemoryConfigStore,
        lookups: AtomicUsize,
        failing: AtomicBool,
    }

    impl CountingStore {
        pub fn failing() -> Self {
            let store = Self::default();
            store.failing.store(true, Ordering::SeqCst);
            store
        }

        pub fn lookups(&self) -> usize {
            self.lookups.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl ConfigStore for CountingStore {
        async fn get(&self, project: &ProjectId) -> Result<Option<StreamingConfig>, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("throttled".into()));
            }
            self.inner.get(project).await
        }
        async fn create(&self, p: &ProjectId, c: &StreamingConfig) -> Result<(), StoreError> {
            self.inner.create(p, c).await
        }
        async fn put(&self, p: &ProjectId, c: &StreamingConfig) -> Result<(), StoreError> {
            self.inner.put(p, c).await
        }
        async fn delete(&self, p: &ProjectId) -> Result<bool, StoreError> {
            self.inner.delete(p).await
        }
    }
}
