//! A store in one local JSON file, for the local runner: no AWS account needed.
//!
//! The file maps project ids to the same records Secrets Manager would hold. It holds
//! credentials, so it is created readable by its owner only (0600), and every change is
//! written to a temporary file, flushed and renamed over the old one, so a crash never leaves
//! a half-written store.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::sync::Mutex;

use super::{ConfigStore, StoreError};
use crate::domain::{ProjectId, StreamingConfig};

pub struct FileConfigStore {
    path: PathBuf,
    /// Serializes read-modify-write cycles within the process.
    lock: Mutex<()>,
}

type Records = BTreeMap<String, Box<RawValue>>;

impl FileConfigStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<Records, StoreError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                StoreError::Unavailable(format!(
                    "{} is not a JSON object of records (line {}, column {})",
                    self.path.display(),
                    e.line(),
                    e.column()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::new()),
            Err(e) => Err(io_error(&self.path, e)),
        }
    }

    fn write(&self, records: &Records) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(records).expect("records serialize");
        write_private_atomically(&self.path, &json).map_err(|e| io_error(&self.path, e))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` via a temporary file and a rename, readable by the owner only.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

fn record(config: &StreamingConfig) -> Box<RawValue> {
    RawValue::from_string(config.to_stored_json()).expect("a stored record is JSON")
}

#[async_trait]
impl ConfigStore for FileConfigStore {
    async fn get(&self, project: &ProjectId) -> Result<Option<StreamingConfig>, StoreError> {
        let _guard = self.lock.lock().await;
        match self.read()?.get(project.as_str()) {
            Some(raw) => Ok(Some(StreamingConfig::from_stored_json(raw.get())?)),
            None => Ok(None),
        }
    }

    async fn create(
        &self,
        project: &ProjectId,
        config: &StreamingConfig,
    ) -> Result<(), StoreError> {
        let _guard = self.lock.lock().await;
        let mut records = self.read()?;
        if records.contains_key(project.as_str()) {
            return Err(StoreError::AlreadyExists);
        }
        records.insert(project.to_string(), record(config));
        self.write(&records)
    }

    async fn put(&self, project: &ProjectId, config: &StreamingConfig) -> Result<(), StoreError> {
        let _guard = self.lock.lock().await;
        let mut records = self.read()?;
        let slot = records
            .get_mut(project.as_str())
            .ok_or(StoreError::NotFound)?;
        *slot = record(config);
        self.write(&records)
    }

    async fn delete(&self, project: &ProjectId) -> Result<bool, StoreError> {
        let _guard = self.lock.lock().await;
        let mut records = self.read()?;
        let existed = records.remove(project.as_str()).is_some();
        if existed {
            self.write(&records)?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use time::macros::datetime;

    use super::*;
    use crate::domain::{
        DatadogBody, Destination, DestinationConfigBody, DestinationType, StreamingStatus,
    };

    fn config() -> StreamingConfig {
        let body = DestinationConfigBody {
            datadog: Some(DatadogBody {
                site: "EU".into(),
                api_key: "0123456789abcdef0123456789abcdef".into(),
            }),
            grafana_loki: None,
        };
        StreamingConfig {
            destination: Destination::parse(DestinationType::Datadog, &body).unwrap(),
            streaming_status: StreamingStatus::Disabled,
            enabled_at: None,
            created_at: datetime!(2026-11-24 10:00 UTC),
            updated_at: datetime!(2026-11-24 10:00 UTC),
        }
    }

    #[tokio::test]
    async fn records_survive_a_new_store_on_the_same_file_and_the_file_is_private() {
        let dir = std::env::temp_dir().join(format!(
            "els-file-store-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let path = dir.join("configs.json");
        let project = ProjectId::parse("p-1").unwrap();

        let store = FileConfigStore::new(&path);
        store.create(&project, &config()).await.unwrap();
        assert!(matches!(
            store.create(&project, &config()).await,
            Err(StoreError::AlreadyExists)
        ));

        let reopened = FileConfigStore::new(&path);
        assert_eq!(reopened.get(&project).await.unwrap(), Some(config()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());

        assert!(reopened.delete(&project).await.unwrap());
        assert!(!reopened.delete(&project).await.unwrap());
        assert!(matches!(
            reopened.put(&project, &config()).await,
            Err(StoreError::NotFound)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
