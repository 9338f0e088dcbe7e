//! Management keys (format: `config_api::auth`): create, list and revoke, on the Secrets
//! Manager secret the config API reads or on the local runner's keys file.
//!
//! A change reads the list with its version, edits it and writes it back only if the list is
//! still at that version ([`KeyStore::replace`]); otherwise it reads again, [`CHANGE_ROUNDS`]
//! times at most, then fails saying so. A concurrent change is detected, never lost. A new
//! key's secret is made once, before the first round, and returned only once it is stored:
//! it is printed once and only its SHA-256 is kept.

mod file;
mod secrets_manager;

use async_trait::async_trait;
use config_api::auth::{ManagementKey, sha256_hex};
use event_log_streaming::domain::ProjectId;
use event_log_streaming::secret::Secret;
use time::OffsetDateTime;

use crate::aws_error::AwsError;
pub use file::FileKeys;
pub use secrets_manager::SecretsManagerKeys;

/// Rounds of a change that concurrent changes keep overtaking before it gives up.
pub const CHANGE_ROUNDS: usize = 4;
/// The longest pause before a round after a conflict, times the round: writers that
/// collided pick different pauses and so do not collide again.
const CONFLICT_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// A new key's secret: 24 random bytes, 48 hex characters (as the local runner's key).
const SECRET_BYTES: usize = 24;
/// Key ids are the user half of HTTP Basic (`key_id:secret`), so they hold no `:`.
const MAX_KEY_ID_CHARS: usize = 64;

/// Where the list of keys is kept, read with a version and replaced only at that version.
#[async_trait]
pub trait KeyStore: Send + Sync {
    type Version: Send + Sync;
    async fn read(&self) -> Result<(Vec<ManagementKey>, Self::Version), KeysError>;
    /// [`KeysError::Conflict`] when the list is no longer at `version`; then nothing of
    /// `keys` took effect.
    async fn replace(
        &self,
        version: &Self::Version,
        keys: &[ManagementKey],
    ) -> Result<(), KeysError>;
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{place}: {source}")]
    Io {
        place: String,
        #[source]
        source: std::io::Error,
    },
    /// Position only: the text holds hashes.
    #[error(
        "{place} is not a JSON list of {{key_id, secret_sha256, projects}} (line {line}, column {column})"
    )]
    NotAList {
        place: String,
        line: usize,
        column: usize,
    },
    #[error("{0} is locked by another els-admin (if none is running, remove the lock file)")]
    Locked(String),
    #[error("the key id must be 1 to 64 letters, digits, '.', '_' or '-', got {0:?}")]
    InvalidKeyId(String),
    #[error("--projects takes '*' or project ids separated by commas: {0}")]
    InvalidProjects(String),
    #[error("a key with id {0} exists already (revoke it first to replace it)")]
    Exists(String),
    #[error("no key with id {0}")]
    NoSuchKey(String),
    #[error("the keys changed since they were read ({0})")]
    Conflict(String),
    #[error(
        "the keys were changed by someone else while this command changed them, {CHANGE_ROUNDS} times in a row; this change was not made (last: {0})"
    )]
    KeptChanging(String),
    #[error("cannot make a random secret: {0}")]
    Random(String),
}

/// What `keys list` shows of a key: never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    pub key_id: String,
    pub projects: Vec<String>,
    pub created_at: Option<OffsetDateTime>,
}

/// `keys create`: a new key for `projects` (`*` or a comma-separated list); returns its
/// secret, stored only as its hash.
pub async fn create(
    store: &impl KeyStore,
    key_id: &str,
    projects: &str,
    now: OffsetDateTime,
) -> Result<Secret, KeysError> {
    let key_id = parse_key_id(key_id)?;
    let projects = parse_projects(projects)?;
    let secret = new_secret()?;
    let key = ManagementKey {
        key_id: key_id.clone(),
        secret_sha256: sha256_hex(secret.expose()),
        projects,
        created_at: Some(now),
    };
    change(store, |keys| {
        if keys.iter().any(|k| k.key_id == key_id) {
            return Err(KeysError::Exists(key_id.clone()));
        }
        keys.push(key.clone());
        Ok(())
    })
    .await?;
    Ok(secret)
}

/// `keys list`.
pub async fn list(store: &impl KeyStore) -> Result<Vec<KeySummary>, KeysError> {
    let (keys, _) = store.read().await?;
    Ok(keys
        .into_iter()
        .map(|k| KeySummary {
            key_id: k.key_id,
            projects: k.projects,
            created_at: k.created_at,
        })
        .collect())
}

/// `keys revoke`: the key no longer authenticates once the config API rereads the list
/// (`config_api::auth::KEYS_CACHE_TTL`).
pub async fn revoke(store: &impl KeyStore, key_id: &str) -> Result<(), KeysError> {
    change(store, |keys| {
        let before = keys.len();
        keys.retain(|k| k.key_id != key_id);
        if keys.len() == before {
            return Err(KeysError::NoSuchKey(key_id.to_owned()));
        }
        Ok(())
    })
    .await
}

/// Read, edit, write at the version read; again on a conflict.
async fn change(
    store: &impl KeyStore,
    edit: impl Fn(&mut Vec<ManagementKey>) -> Result<(), KeysError>,
) -> Result<(), KeysError> {
    let mut last = String::new();
    for round in 0..CHANGE_ROUNDS {
        if round > 0 {
            tokio::time::sleep(CONFLICT_PAUSE.mul_f64(fastrand::f64()) * round as u32).await;
        }
        let (mut keys, version) = store.read().await?;
        edit(&mut keys)?;
        match store.replace(&version, &keys).await {
            Err(KeysError::Conflict(why)) => last = why,
            other => return other,
        }
    }
    Err(KeysError::KeptChanging(last))
}

fn parse_key_id(key_id: &str) -> Result<String, KeysError> {
    let valid = !key_id.is_empty()
        && key_id.chars().count() <= MAX_KEY_ID_CHARS
        && key_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(key_id.to_owned())
    } else {
        Err(KeysError::InvalidKeyId(key_id.to_owned()))
    }
}

/// `*` alone, or project ids as the API parses them.
fn parse_projects(list: &str) -> Result<Vec<String>, KeysError> {
    let items: Vec<&str> = list.split(',').map(str::trim).collect();
    if items == ["*"] {
        return Ok(vec!["*".to_owned()]);
    }
    if items.contains(&"*") {
        return Err(KeysError::InvalidProjects(
            "'*' already means every project; give it alone".into(),
        ));
    }
    let mut projects = Vec::new();
    for item in items {
        let project = ProjectId::parse(item)
            .map_err(|e| KeysError::InvalidProjects(format!("{item:?}: {e}")))?;
        if !projects.contains(&project.as_str().to_owned()) {
            projects.push(project.as_str().to_owned());
        }
    }
    Ok(projects)
}

fn new_secret() -> Result<Secret, KeysError> {
    Ok(Secret::new(random_hex::<SECRET_BYTES>()?))
}

pub(crate) fn random_hex<const N: usize>() -> Result<String, KeysError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeysError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store in memory whose version is a counter, and which can be made to lose the next
    /// `conflicts` writes to someone else's.
    #[derive(Default)]
    struct Memory {
        state: Mutex<(Vec<ManagementKey>, u64)>,
        conflicts: Mutex<usize>,
    }

    #[async_trait]
    impl KeyStore for Memory {
        type Version = u64;
        async fn read(&self) -> Result<(Vec<ManagementKey>, u64), KeysError> {
            Ok(self.state.lock().unwrap().clone())
        }
        async fn replace(&self, version: &u64, keys: &[ManagementKey]) -> Result<(), KeysError> {
            let mut state = self.state.lock().unwrap();
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                *conflicts -= 1;
                state.1 += 1;
                let other = ManagementKey::new(&format!("other-{}", state.1), "x", &["*"]);
                state.0.push(other);
                return Err(KeysError::Conflict("moved on".into()));
            }
            if state.1 != *version {
                return Err(KeysError::Conflict("moved on".into()));
            }
            *state = (keys.to_vec(), version + 1);
            Ok(())
        }
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 12:00 UTC)
    }

    #[tokio::test]
    async fn a_created_key_keeps_only_the_hash_of_the_secret_it_returns() {
        let store = Memory::default();
        let secret = create(&store, "ops-1", "p-1, p-2", now()).await.unwrap();
        let (keys, _) = store.read().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].secret_sha256, sha256_hex(secret.expose()));
        assert_eq!(secret.expose().len(), 2 * SECRET_BYTES);
        assert_eq!(keys[0].projects, ["p-1", "p-2"]);
        assert_eq!(keys[0].created_at, Some(now()));
        let listed = list(&store).await.unwrap();
        assert_eq!(listed[0].key_id, "ops-1");
    }

    async fn key_ids(store: &Memory) -> Vec<String> {
        let keys = list(store).await.unwrap();
        keys.into_iter().map(|k| k.key_id).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_overtaken_reads_again_and_keeps_the_other_change() {
        let store = Memory::default();
        *store.conflicts.lock().unwrap() = CHANGE_ROUNDS - 1;
        create(&store, "ops-1", "*", now()).await.unwrap();
        let ids = key_ids(&store).await;
        let mut expected: Vec<String> = (1..CHANGE_ROUNDS).map(|n| format!("other-{n}")).collect();
        expected.push("ops-1".into());
        assert_eq!(ids, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_overtaken_every_round_is_refused() {
        let store = Memory::default();
        *store.conflicts.lock().unwrap() = CHANGE_ROUNDS;
        let err = create(&store, "ops-1", "*", now()).await.unwrap_err();
        assert!(matches!(err, KeysError::KeptChanging(_)), "{err}");
        let ids = key_ids(&store).await;
        assert!(!ids.contains(&"ops-1".to_owned()));
    }

    #[tokio::test]
    async fn ids_are_unique_and_revoking_needs_an_existing_one() {
        let store = Memory::default();
        create(&store, "ops-1", "*", now()).await.unwrap();
        assert!(matches!(
            create(&store, "ops-1", "*", now()).await,
            Err(KeysError::Exists(_))
        ));
        revoke(&store, "ops-1").await.unwrap();
        assert!(list(&store).await.unwrap().is_empty());
        assert!(matches!(
            revoke(&store, "ops-1").await,
            Err(KeysError::NoSuchKey(_))
        ));
    }

    #[test]
    fn scopes_are_a_lone_wildcard_or_valid_project_ids() {
        assert_eq!(parse_projects("*").unwrap(), ["*"]);
        assert_eq!(parse_projects("a,b,a").unwrap(), ["a", "b"]);
        for bad in ["*,a", "", "a,,b", "bad id"] {
            assert!(parse_projects(bad).is_err(), "{bad:?}");
        }
        assert!(parse_key_id("ops-2026.11_a").is_ok());
        for bad in ["", "a:b", "a b", &"k".repeat(65)] {
            assert!(parse_key_id(bad).is_err(), "{bad:?}");
        }
    }
}
