//! The streamer's read path: a per-container TTL cache in front of the store.
//!
//! Answers are cached for `CONFIG_CACHE_TTL_SECONDS`, including "not configured", because most
//! traffic comes from projects that never configured streaming and each lookup is a paid
//! Secrets Manager call. Errors are not cached: the next batch asks again. A change made through
//! the config API therefore reaches a warm container within one TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{ConfigStore, StoreError};
use crate::domain::{ProjectId, StreamingConfig};

type Entry = (Instant, Option<Arc<StreamingConfig>>);

pub struct CachedConfigStore {
    store: Arc<dyn ConfigStore>,
    ttl: Duration,
    entries: Mutex<HashMap<ProjectId, Entry>>,
}

impl CachedConfigStore {
    pub fn new(store: Arc<dyn ConfigStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn get(
        &self,
        project: &ProjectId,
    ) -> Result<Option<Arc<StreamingConfig>>, StoreError> {
        if let Some((fetched, config)) = self.entries.lock().unwrap().get(project)
            && fetched.elapsed() < self.ttl
        {
            return Ok(config.clone());
        }
        let config = self.store.get(project).await?.map(Arc::new);
        self.entries
            .lock()
            .unwrap()
            .insert(project.clone(), (Instant::now(), config.clone()));
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;

    /// Counts lookups and fails on demand.
    struct CountingStore {
        calls: AtomicUsize,
        fail: bool,
    }

    #[async_trait]
    impl ConfigStore for CountingStore {
        async fn get(&self, _: &ProjectId) -> Result<Option<StreamingConfig>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                Err(StoreError::Unavailable("throttled".into()))
            } else {
                Ok(None)
            }
        }
        async fn create(&self, _: &ProjectId, _: &StreamingConfig) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn put(&self, _: &ProjectId, _: &StreamingConfig) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn delete(&self, _: &ProjectId) -> Result<bool, StoreError> {
            unreachable!()
        }
    }

    fn store(fail: bool) -> Arc<CountingStore> {
        Arc::new(CountingStore {
            calls: AtomicUsize::new(0),
            fail,
        })
    }

    #[tokio::test]
    async fn not_configured_answers_are_cached_for_the_ttl() {
        let inner = store(false);
        let cache = CachedConfigStore::new(inner.clone(), Duration::from_secs(60));
        let project = ProjectId::parse("p").unwrap();
        assert!(cache.get(&project).await.unwrap().is_none());
        assert!(cache.get(&project).await.unwrap().is_none());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expired_entries_are_fetched_again() {
        let inner = store(false);
        let cache = CachedConfigStore::new(inner.clone(), Duration::ZERO);
        let project = ProjectId::parse("p").unwrap();
        cache.get(&project).await.unwrap();
        cache.get(&project).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let inner = store(true);
        let cache = CachedConfigStore::new(inner.clone(), Duration::from_secs(60));
        let project = ProjectId::parse("p").unwrap();
        assert!(cache.get(&project).await.is_err());
        assert!(cache.get(&project).await.is_err());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }
}
