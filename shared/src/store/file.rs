//! The local runner's embedded store: every stream and credential in one JSON file, so the
//! runner needs no AWS account.
//!
//! The file holds credentials, so it is created readable by its owner only (0600). Every
//! change is written to a temporary file, flushed and renamed over the old one, so a crash
//! never leaves a half-written store, and the data survives restarts.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::memory::State;
use super::{
    CredentialRead, CredentialWrite, Found, HealthWrite, StoreError, StoreResult, StoredStream,
    StreamLookup, StreamWrite, error_chain,
};
use crate::domain::controls::{
    DatadogTags, EventFilterBody, LokiLabels, LokiTenantId, RedactionBody, RedactionKey,
};
use crate::domain::{
    CredentialRef, DatadogSite, DeliveryError, DeliveryHealth, DeliveryLag, DestinationType,
    Endpoint, LokiHostname, ProjectId, StreamConfig, StreamControls, StreamSecret, StreamState,
    StreamingStatus, Suspension, legacy_stream_id,
};
use crate::secret::Secret;

pub struct FileStateStore {
    path: PathBuf,
    /// Serializes read-modify-write cycles within the process.
    lock: Mutex<()>,
}

impl FileStateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> StoreResult<State> {
        let records: FileRecords = match std::fs::read_to_string(&self.path) {
            // Positions only: serde_json's messages can quote a value, here a credential.
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                StoreError::Corrupt(format!(
                    "{} is not a state file (line {}, column {})",
                    self.path.display(),
                    e.line(),
                    e.column()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileRecords::default(),
            Err(e) => return Err(StoreError::unavailable("reading the state file", e)),
        };
        records.into_state()
    }

    /// Runs `change` on the current state and saves the result if `change` succeeded.
    async fn change<T>(&self, change: impl FnOnce(&mut State) -> StoreResult<T>) -> StoreResult<T> {
        let _guard = self.lock.lock().await;
        let mut state = self.read()?;
        let result = change(&mut state)?;
        let json =
            serde_json::to_vec_pretty(&FileRecords::from(&state)).expect("records serialize");
        write_private_atomically(&self.path, &json)
            .map_err(|e| StoreError::unavailable("writing the state file", e))?;
        Ok(result)
    }

    async fn view<T>(&self, view: impl FnOnce(&State) -> T) -> StoreResult<T> {
        let _guard = self.lock.lock().await;
        Ok(view(&self.read()?))
    }
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

#[async_trait]
impl StreamLookup for FileStateStore {
    async fn get_many(&self, projects: &[ProjectId], _deadline: Instant) -> Found {
        match self.view(|state| state.get_many(projects)).await {
            Ok(found) => found,
            Err(err) => {
                let why = error_chain(&err);
                Found {
                    streams: Vec::new(),
                    unread: projects.iter().map(|p| (p.clone(), why.clone())).collect(),
                }
            }
        }
    }
}

#[async_trait]
impl StreamWrite for FileStateStore {
    async fn get(&self, project: &ProjectId) -> StoreResult<Option<StoredStream>> {
        self.view(|state| state.streams.get(project).cloned()).await
    }
    async fn create(&self, config: &StreamConfig) -> StoreResult<()> {
        self.change(|state| state.create(config)).await
    }
    async fn update(&self, config: &StreamConfig, expected_version: u64) -> StoreResult<()> {
        self.change(|state| state.update(config, expected_version))
            .await
    }
    async fn delete(&self, project: &ProjectId, expected_version: u64) -> StoreResult<()> {
        self.change(|state| state.delete(project, expected_version))
            .await
    }
}

#[async_trait]
impl HealthWrite for FileStateStore {
    async fn record(
        &self,
        seen: &StreamConfig,
        update: &DeliveryHealth,
    ) -> StoreResult<Option<DeliveryHealth>> {
        self.change(|state| Ok(state.record(seen, update))).await
    }
    async fn suspend(&self, seen: &StreamConfig, suspension: &Suspension) -> StoreResult<bool> {
        self.change(|state| Ok(state.suspend(seen, suspension)))
            .await
    }
}

#[async_trait]
impl CredentialRead for FileStateStore {
    async fn get(&self, credential: &CredentialRef) -> StoreResult<StreamSecret> {
        self.view(|state| state.credential(credential)).await?
    }
}

#[async_trait]
impl CredentialWrite for FileStateStore {
    async fn create_secret(
        &self,
        project: &ProjectId,
        stream_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        self.change(|state| state.create_credential(project, stream_id, secret))
            .await
    }
    async fn put_version(
        &self,
        secret_id: &str,
        secret: &StreamSecret,
    ) -> StoreResult<CredentialRef> {
        self.change(|state| state.put_version(secret_id, secret))
            .await
    }
    async fn delete_secret(&self, secret_id: &str) -> StoreResult<()> {
        self.change(|state| {
            state.credentials.remove(secret_id);
            Ok(())
        })
        .await
    }
}

// ---- the file's format

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecords {
    #[serde(default)]
    streams: BTreeMap<String, StreamRecord>,
    /// Per secret (`{project}/{stream_id}`; `{project}` in files written before streams
    /// had secrets of their own), versions oldest first.
    #[serde(default)]
    credentials: BTreeMap<String, Vec<CredentialRecord>>,
}

#[derive(Serialize, Deserialize)]
struct CredentialRecord {
    version_id: String,
    value: String,
    /// Absent in files written before redaction keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redaction_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StreamRecord {
    destination_type: DestinationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    site: Option<DatadogSite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_filter: Option<EventFilterBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redaction: Option<RedactionBody>,
    streaming_status: StreamingStatus,
    #[serde(default, with = "time::serde::rfc3339::option")]
    enabled_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    suspended_at: Option<OffsetDateTime>,
    #[serde(default)]
    suspended_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    version: u64,
    /// Absent in files written before streams had an identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream_id: Option<String>,
    /// Absent in files written before streams had secrets of their own: the project id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credential_secret_id: Option<String>,
    credential_version_id: String,
    credential_last_four: String,
    #[serde(default)]
    health: HealthRecord,
}

#[derive(Default, Serialize, Deserialize)]
struct HealthRecord {
    #[serde(default, with = "time::serde::rfc3339::option")]
    last_success_at: Option<OffsetDateTime>,
    consecutive_failures: u64,
    consecutive_auth_failures: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    auth_failures_since: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_failures_version: Option<u64>,
    recent_errors: Vec<ErrorRecord>,
    events_delivered: u64,
    events_failed: u64,
    #[serde(default)]
    events_filtered: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_delivery_lag: Option<LagRecord>,
}

#[derive(Serialize, Deserialize)]
struct LagRecord {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    millis: u64,
}

#[derive(Serialize, Deserialize)]
struct ErrorRecord {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    destination_status: Option<u16>,
    message: String,
}

impl From<&State> for FileRecords {
    fn from(state: &State) -> Self {
        Self {
            streams: state
                .streams
                .iter()
                .map(|(project, stream)| (project.to_string(), StreamRecord::from(stream)))
                .collect(),
            credentials: state
                .credentials
                .iter()
                .map(|(secret_id, versions)| {
                    let versions = versions
                        .iter()
                        .map(|(version_id, secret)| CredentialRecord {
                            version_id: version_id.clone(),
                            value: secret.credential.expose().to_owned(),
                            redaction_key: secret
                                .redaction_key
                                .as_ref()
                                .map(|key| key.to_secret().expose().to_owned()),
                        })
                        .collect();
                    (secret_id.clone(), versions)
                })
                .collect(),
        }
    }
}

impl FileRecords {
    fn into_state(self) -> StoreResult<State> {
        let project = |id: &str| {
            ProjectId::parse(id).map_err(|_| StoreError::Corrupt("a project id is invalid".into()))
        };
        let mut state = State::default();
        for (id, record) in self.streams {
            let project_id = project(&id)?;
            state
                .streams
                .insert(project_id.clone(), record.into_stream(project_id)?);
        }
        for (secret_id, versions) in self.credentials {
            let versions = versions
                .into_iter()
                .map(|v| {
                    let redaction_key = v
                        .redaction_key
                        .map(|key| RedactionKey::from_secret(&Secret::new(key)))
                        .transpose()
                        .map_err(|_| {
                            StoreError::Corrupt(format!("the redaction key of {secret_id}"))
                        })?;
                    let secret = StreamSecret {
                        credential: Secret::new(v.value),
                        redaction_key,
                    };
                    Ok((v.version_id, secret))
                })
                .collect::<StoreResult<_>>()?;
            state.credentials.insert(secret_id, versions);
        }
        Ok(state)
    }
}

impl From<&StoredStream> for StreamRecord {
    fn from(stream: &StoredStream) -> Self {
        let config = &stream.config;
        let mut record = Self::of_config(config);
        let health = &stream.health;
        record.health = HealthRecord {
            last_success_at: health.last_success_at,
            consecutive_failures: health.consecutive_failures,
            consecutive_auth_failures: health.consecutive_auth_failures,
            auth_failures_since: health.auth_failures_since,
            auth_failures_version: health.auth_failures_version,
            recent_errors: health
                .recent_errors
                .iter()
                .map(|e| ErrorRecord {
                    at: e.at,
                    destination_status: e.destination_status,
                    message: e.message.clone(),
                })
                .collect(),
            events_delivered: health.events_delivered,
            events_failed: health.events_failed,
            events_filtered: health.events_filtered,
            last_delivery_lag: health.last_delivery_lag.map(|lag| LagRecord {
                at: lag.at,
                millis: lag.millis,
            }),
        };
        record
    }
}

impl StreamRecord {
    /// The record of `config`, with no health.
    fn of_config(config: &StreamConfig) -> Self {
        let (mut hostname, mut username, mut site) = (None, None, None);
        let (mut tenant_id, mut labels, mut tags) = (None, BTreeMap::new(), Vec::new());
        match &config.endpoint {
            Endpoint::GrafanaLoki {
                hostname: host,
                username: user,
                tenant_id: tenant,
                labels: extra,
            } => {
                hostname = Some(host.to_string());
                username = Some(user.clone());
                tenant_id = tenant.as_ref().map(|t| t.as_str().to_owned());
                labels = extra.to_body();
            }
            Endpoint::Datadog {
                site: at,
                tags: all,
            } => {
                site = Some(*at);
                tags = all.to_body();
            }
        }
        Self {
            destination_type: config.destination_type(),
            hostname,
            username,
            site,
            tenant_id,
            labels,
            tags,
            event_filter: config.controls.event_filter.as_ref().map(|f| f.to_body()),
            redaction: config.controls.redaction.as_ref().map(|r| r.to_body()),
            streaming_status: config.state.status,
            enabled_at: config.state.enabled_at,
            suspended_at: config.state.suspension.as_ref().map(|s| s.at),
            suspended_reason: config.state.suspension.as_ref().map(|s| s.reason.clone()),
            created_at: config.created_at,
            updated_at: config.updated_at,
            version: config.version,
            stream_id: Some(config.stream_id.clone()),
            credential_secret_id: Some(config.credential.secret_id.clone()),
            credential_version_id: config.credential.version_id.clone(),
            credential_last_four: config.credential.last_four.clone(),
            health: HealthRecord::default(),
        }
    }

    fn into_stream(self, project_id: ProjectId) -> StoreResult<StoredStream> {
        let corrupt =
            |field: &str| StoreError::Corrupt(format!("{field} of {project_id} is invalid"));
        let endpoint = match (
            self.destination_type,
            self.hostname,
            self.username,
            self.site,
        ) {
            (DestinationType::GrafanaLoki, Some(hostname), Some(username), None) => {
                Endpoint::GrafanaLoki {
                    hostname: LokiHostname::parse(&hostname).map_err(|_| corrupt("hostname"))?,
                    username,
                    tenant_id: self
                        .tenant_id
                        .as_deref()
                        .map(LokiTenantId::parse)
                        .transpose()
                        .map_err(|_| corrupt("tenant_id"))?,
                    labels: LokiLabels::parse(&self.labels).map_err(|_| corrupt("labels"))?,
                }
            }
            (DestinationType::Datadog, None, None, Some(site)) => Endpoint::Datadog {
                site,
                tags: DatadogTags::parse(&self.tags).map_err(|_| corrupt("tags"))?,
            },
            _ => return Err(corrupt("the destination")),
        };
        let controls = StreamControls::parse(self.event_filter.as_ref(), self.redaction.as_ref())
            .map_err(|e| corrupt(&e.field))?;
        let suspension = match (self.suspended_at, self.suspended_reason) {
            (Some(at), Some(reason)) => Some(Suspension { at, reason }),
            _ => None,
        };
        let health = self.health;
        Ok(StoredStream {
            config: StreamConfig {
                credential: CredentialRef {
                    secret_id: self
                        .credential_secret_id
                        .unwrap_or_else(|| project_id.to_string()),
                    version_id: self.credential_version_id,
                    last_four: self.credential_last_four,
                },
                project_id,
                stream_id: self
                    .stream_id
                    .unwrap_or_else(|| legacy_stream_id(self.created_at)),
                endpoint,
                controls,
                state: StreamState {
                    status: self.streaming_status,
                    enabled_at: self.enabled_at,
                    suspension,
                },
                created_at: self.created_at,
                updated_at: self.updated_at,
                version: self.version,
            },
            health: DeliveryHealth {
                last_success_at: health.last_success_at,
                consecutive_failures: health.consecutive_failures,
                consecutive_auth_failures: health.consecutive_auth_failures,
                auth_failures_since: health.auth_failures_since,
                auth_failures_version: health.auth_failures_version,
                recent_errors: health
                    .recent_errors
                    .into_iter()
                    .map(|e| DeliveryError {
                        at: e.at,
                        destination_status: e.destination_status,
                        message: e.message,
                    })
                    .collect(),
                events_delivered: health.events_delivered,
                events_failed: health.events_failed,
                events_filtered: health.events_filtered,
                last_delivery_lag: health.last_delivery_lag.map(|lag| DeliveryLag {
                    at: lag.at,
                    millis: lag.millis,
                }),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use time::macros::datetime;

    use super::*;

    fn temporary_path() -> PathBuf {
        std::env::temp_dir()
            .join(format!(
                "els-file-store-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ))
            .join("state.json")
    }

    #[tokio::test]
    async fn streams_health_and_credentials_survive_a_restart_in_a_private_file() {
        let path = temporary_path();
        let project = ProjectId::parse("p-1").unwrap();
        let now = datetime!(2026-11-24 10:00 UTC);

        let store = FileStateStore::new(&path);
        let secret = StreamSecret::with_new_key(Secret::new("glc_a-long-loki-token-1a2b")).unwrap();
        let credential = store
            .create_secret(&project, "stream", &secret)
            .await
            .unwrap();
        assert_eq!(credential.last_four, "1a2b");
        let endpoint = Endpoint::GrafanaLoki {
            hostname: LokiHostname::parse("logs.example.com").unwrap(),
            username: "123".into(),
            tenant_id: None,
            labels: Default::default(),
        };
        let config = StreamConfig::new(project.clone(), endpoint, credential.clone(), now);
        store.create(&config).await.unwrap();
        assert!(matches!(
            store.create(&config).await,
            Err(StoreError::AlreadyExists)
        ));
        let mut update = DeliveryHealth::default();
        update.failure(
            DeliveryError {
                at: now,
                destination_status: Some(401),
                message: "401 from Grafana Loki".into(),
            },
            true,
        );
        let lag = DeliveryLag {
            at: now,
            millis: 1_250,
        };
        update.last_delivery_lag = Some(lag);
        store.record(&config, &update).await.unwrap();
        let suspension = Suspension {
            at: now,
            reason: "refused".into(),
        };
        assert!(
            !store.suspend(&config, &suspension).await.unwrap(),
            "DISABLED"
        );

        let reopened = FileStateStore::new(&path);
        let stream = StreamWrite::get(&reopened, &project)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stream.config, config);
        assert_eq!(stream.health.consecutive_auth_failures, 1);
        assert_eq!(stream.health.last_delivery_lag, Some(lag));
        let read = CredentialRead::get(&reopened, &credential).await.unwrap();
        assert_eq!(read.credential.expose(), "glc_a-long-loki-token-1a2b");
        let key = |s: &StreamSecret| s.redaction_key.as_ref().map(|k| k.to_secret());
        assert_eq!(key(&read), key(&secret));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());

        assert!(matches!(
            StreamWrite::delete(&reopened, &project, 7).await,
            Err(StoreError::Conflict)
        ));
        StreamWrite::delete(&reopened, &project, 1).await.unwrap();
        assert!(matches!(
            StreamWrite::delete(&reopened, &project, 1).await,
            Err(StoreError::NotFound)
        ));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
