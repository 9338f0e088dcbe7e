//! An in-memory store for tests and the local runner.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ConfigStore, StoreError};
use crate::domain::{ProjectId, StreamingConfig};

#[derive(Default)]
pub struct MemoryConfigStore {
    configs: Mutex<HashMap<ProjectId, StreamingConfig>>,
}

impl MemoryConfigStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ConfigStore for MemoryConfigStore {
    async fn get(&self, project: &ProjectId) -> Result<Option<StreamingConfig>, StoreError> {
        Ok(self.configs.lock().unwrap().get(project).cloned())
    }

    async fn create(
        &self,
        project: &ProjectId,
        config: &StreamingConfig,
    ) -> Result<(), StoreError> {
        let mut configs = self.configs.lock().unwrap();
        if configs.contains_key(project) {
            return Err(StoreError::AlreadyExists);
        }
        configs.insert(project.clone(), config.clone());
        Ok(())
    }

    async fn put(&self, project: &ProjectId, config: &StreamingConfig) -> Result<(), StoreError> {
        let mut configs = self.configs.lock().unwrap();
        let slot = configs.get_mut(project).ok_or(StoreError::NotFound)?;
        *slot = config.clone();
        Ok(())
    }

    async fn delete(&self, project: &ProjectId) -> Result<bool, StoreError> {
        Ok(self.configs.lock().unwrap().remove(project).is_some())
    }
}
