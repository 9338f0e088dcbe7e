//! The local runner's keys file (`make run`: `.local/management-keys.json`), in the secret's
//! JSON shape. A write holds a lock file (made with `create_new`, so two els-admin cannot both
//! hold it), checks that the file is still as read, and replaces it atomically
//! (`write_private_atomically`: a temporary file and a rename). The runner reads the file at
//! start: a change applies at its next start.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use config_api::auth::ManagementKey;
use event_log_streaming::store::write_private_atomically;

use super::{KeyStore, KeysError};

pub struct FileKeys {
    path: PathBuf,
}

impl FileKeys {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn place(&self) -> String {
        self.path.display().to_string()
    }

    /// The file's bytes, `None` when there is none yet (the runner has not started).
    fn bytes(&self) -> Result<Option<Vec<u8>>, KeysError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeysError::Io {
                place: self.place(),
                source,
            }),
        }
    }
}

#[async_trait]
impl KeyStore for FileKeys {
    /// The file's bytes as read.
    type Version = Option<Vec<u8>>;

    async fn read(&self) -> Result<(Vec<ManagementKey>, Self::Version), KeysError> {
        let bytes = self.bytes()?;
        let keys = match &bytes {
            None => Vec::new(),
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| KeysError::NotAList {
                place: self.place(),
                line: e.line(),
                column: e.column(),
            })?,
        };
        Ok((keys, bytes))
    }

    async fn replace(
        &self,
        version: &Self::Version,
        keys: &[ManagementKey],
    ) -> Result<(), KeysError> {
        let _lock = Lock::take(&self.path)?;
        if self.bytes()? != *version {
            return Err(KeysError::Conflict(format!("{} changed", self.place())));
        }
        let text = serde_json::to_string_pretty(keys).expect("keys serialize");
        write_private_atomically(&self.path, text.as_bytes()).map_err(|source| KeysError::Io {
            place: self.place(),
            source,
        })
    }
}

/// `management-keys.json.lock` beside the file, removed when dropped.
struct Lock(PathBuf);

impl Lock {
    fn take(file: &Path) -> Result<Self, KeysError> {
        let mut name = file.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeysError::Io {
                place: dir.display().to_string(),
                source,
            })?;
        }
        match std::fs::File::create_new(&path) {
            Ok(_) => Ok(Self(path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(KeysError::Locked(file.display().to_string()))
            }
            Err(source) => Err(KeysError::Io {
                place: path.display().to_string(),
                source,
            }),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("els-admin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("management-keys.json")
    }

    #[tokio::test]
    async fn a_write_lands_only_on_the_file_it_read() {
        let path = scratch("file-conflict");
        let store = FileKeys::new(&path);
        let (keys, version) = store.read().await.unwrap();
        assert!(keys.is_empty() && version.is_none());
        let one = [ManagementKey::new("a", "s", &["*"])];
        store.replace(&version, &one).await.unwrap();
        // A second writer that read before the first wrote is told.
        let err = store.replace(&version, &one).await.unwrap_err();
        assert!(matches!(err, KeysError::Conflict(_)), "{err}");
        let (keys, _) = store.read().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert!(!path.with_extension("json.lock").exists());
    }

    #[tokio::test]
    async fn a_held_lock_refuses_the_write() {
        let path = scratch("file-lock");
        let store = FileKeys::new(&path);
        let (_, version) = store.read().await.unwrap();
        let _held = Lock::take(&path).unwrap();
        let err = store.replace(&version, &[]).await.unwrap_err();
        assert!(matches!(err, KeysError::Locked(_)), "{err}");
    }
}
