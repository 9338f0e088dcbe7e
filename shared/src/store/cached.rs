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
    use super::*;
    use crate::store::counting::CountingStore;

    #[tokio::test]
    async fn not_configured_answers_are_cached_for_the_ttl() {
        let inner = Arc::new(CountingStore::default());
        let cache = CachedConfigStore::new(inner.clone(), Duration::from_secs(60));
        let project = ProjectId::parse("p").unwrap();
        assert!(cache.get(&project).await.unwrap().is_none());
        assert!(cache.get(&project).await.unwrap().is_none());
        assert_eq!(inner.lookups(), 1);
    }

    #[tokio::test]
    async fn expired_entries_are_fetched_again() {
        let inner = Arc::new(CountingStore::default());
        let cache = CachedConfigStore::new(inner.clone(), Duration::ZERO);
        let project = ProjectId::parse("p").unwrap();
        cache.get(&project).await.unwrap();
        cache.get(&project).await.unwrap();
        assert_eq!(inner.lookups(), 2);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let inner = Arc::new(CountingStore::failing());
        let cache = CachedConfigStore::new(inner.clone(), Duration::from_secs(60));
        let project = ProjectId::parse("p").unwrap();
        assert!(cache.get(&project).await.is_err());
        assert!(cache.get(&project).await.is_err());
        assert_eq!(inner.lookups(), 2);
    }
}
