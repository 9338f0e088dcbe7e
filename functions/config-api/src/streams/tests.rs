use event_log_streaming::domain::{DatadogBody, DestinationConfigBody, LokiBody, StreamingStatus};
use std::sync::Mutex;

use event_log_streaming::domain::CredentialRef;
use event_log_streaming::store::{CredentialRead, CredentialWrite, MemoryStateStore};
use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-11-24 10:00 UTC);
const TOKEN: &str = "glc_token-Fixture-0001";
const OTHER_TOKEN: &str = "glc_token-Fixture-0002";
const DATADOG_KEY: &str = "0123456789abcdef0123456789abcdef";

fn project() -> ProjectId {
    ProjectId::parse("proj-a").unwrap()
}

fn loki(hostname: &str, password: &str) -> Destination {
    let body = DestinationConfigBody {
        datadog: None,
        grafana_loki: Some(LokiBody {
            hostname: hostname.into(),
            username: "123456".into(),
            password: password.into(),
            ..Default::default()
        }),
    };
    Destination::parse(DestinationType::GrafanaLoki, &body).unwrap()
}

fn datadog() -> Destination {
    let body = DestinationConfigBody {
        datadog: Some(DatadogBody {
            site: "EU".into(),
            api_key: DATADOG_KEY.into(),
            ..Default::default()
        }),
        grafana_loki: None,
    };
    Destination::parse(DestinationType::Datadog, &body).unwrap()
}

/// No stream controls.
fn none() -> StreamControls {
    StreamControls::default()
}

fn commands(store: &MemoryStateStore) -> Streams<'_> {
    Streams {
        streams: store,
        credentials: store,
    }
}

async fn credential_of(store: &MemoryStateStore, stream: &StoredStream) -> String {
    CredentialRead::get(store, &stream.config.credential)
        .await
        .unwrap()
        .credential
        .expose()
        .to_owned()
}

#[tokio::test]
async fn a_new_stream_is_disabled_and_refers_to_the_credential_it_saved() {
    let store = MemoryStateStore::new();

    let created = commands(&store)
        .create(&project(), &loki("h.example.com", TOKEN), &none(), NOW)
        .await
        .unwrap();

    assert_eq!(created.config.state.status, StreamingStatus::Disabled);
    assert_eq!(created.config.version, 1);
    assert_eq!(credential_of(&store, &created).await, TOKEN);
}

#[tokio::test]
async fn a_second_create_is_refused_and_leaves_the_first_streams_secret_alone() {
    let store = MemoryStateStore::new();
    let app = commands(&store);
    let first = app
        .create(&project(), &loki("h.example.com", TOKEN), &none(), NOW)
        .await
        .unwrap();

    let second = app.create(&project(), &datadog(), &none(), NOW).await;

    assert!(matches!(
        second,
        Err(StreamError::Store(StoreError::AlreadyExists))
    ));
    let read = app
        .read(&project(), DestinationType::GrafanaLoki)
        .await
        .unwrap();
    assert_eq!(read, first);
    assert_eq!(credential_of(&store, &read).await, TOKEN);
}

#[tokio::test]
async fn a_path_naming_another_destination_type_finds_no_stream() {
    let store = MemoryStateStore::new();
    let app = commands(&store);
    app.create(&project(), &datadog(), &none(), NOW)
        .await
        .unwrap();

    let read = app.read(&project(), DestinationType::GrafanaLoki).await;
    let deleted = app.delete(&project(), DestinationType::GrafanaLoki).await;

    for refused in [read.map(|_| ()), deleted.map(|_| ())] {
        assert_eq!(
            refused.unwrap_err().to_string(),
            "the project streams to DATADOG, not GRAFANA_LOKI"
        );
    }
    assert!(app.read(&project(), DestinationType::Datadog).await.is_ok());
}

#[tokio::test]
async fn an_update_without_a_credential_keeps_the_stored_one_and_the_status() {
    let store = MemoryStateStore::new();
    let app = commands(&store);
    app.create(&project(), &loki("h.example.com", TOKEN), &none(), NOW)
        .await
        .unwrap();
    app.set_status(
        &project(),
        DestinationType::GrafanaLoki,
        StatusCommand::Enable {
            start_delay: Duration::seconds(30),
        },
        NOW,
    )
    .await
    .unwrap();
    let later = NOW + Duration::minutes(5);
    let endpoint = Endpoint::GrafanaLoki {
        hostname: event_log_streaming::domain::LokiHostname::parse("h.example.com").unwrap(),
        username: "654321".into(),
        tenant_id: None,
        labels: Default::default(),
    };

    let updated = app
        .update(
            &project(),
            DestinationType::GrafanaLoki,
            endpoint.clone(),
            none(),
            None,
            later,
        )
        .await
        .unwrap();

    assert_eq!(updated.config.endpoint, endpoint);
    assert_eq!(updated.config.version, 3);
    assert_eq!(updated.config.updated_at, later);
    assert_eq!(updated.config.state.status, StreamingStatus::Active);
    assert_eq!(
        updated.config.state.enabled_at,
        Some(NOW + Duration::seconds(30))
    );
    assert_eq!(credential_of(&store, &updated).await, TOKEN);
}

#[tokio::test]
async fn a_loki_stream_moved_to_another_host_needs_its_credential_again() {
    let store = MemoryStateStore::new();
    let app = commands(&store);
    app.create(&project(), &loki("h.example.com", TOKEN), &none(), NOW)
        .await
        .unwrap();
    let elsewhere = loki("other.example.com", OTHER_TOKEN);

    let without = app
        .update(
            &project(),
            DestinationType::GrafanaLoki,
            elsewhere.endpoint(),
            none(),
            None,
            NOW,
        )
        .await;
    let with = app
        .update(
            &project(),
            DestinationType::GrafanaLoki,
            elsewhere.endpoint(),
            none(),
            Some(elsewhere.credential().clone()),
            NOW,
        )
        .await
        .unwrap();

    assert!(matches!(
        without,
        Err(StreamError::Invalid(ValidationError { ref field, .. }))
            if field == "destination_config.grafana_loki.password"
    ));
    assert_eq!(with.config.version, 2, "the refused update wrote nothing");
    assert_eq!(credential_of(&store, &with).await, OTHER_TOKEN);
}

#[tokio::test]
async fn enabling_dates_the_start_ahead_and_enabling_again_writes_nothing() {
    let store = MemoryStateStore::new();
    let app = commands(&store);
    let id = project();
    app.create(&id, &datadog(), &none(), NOW).await.unwrap();
    let enable = StatusCommand::Enable {
        start_delay: Duration::seconds(30),
    };
    let read = || app.read(&id, DestinationType::Datadog);

    app.set_status(&id, DestinationType::Datadog, enable, NOW)
        .await
        .unwrap();
    let enabled = read().await.unwrap();
    app.set_status(
        &project(),
        DestinationType::Datadog,
        enable,
        NOW + Duration::hours(1),
    )
    .await
    .unwrap();
    let again = read().await.unwrap();
    app.set_status(
        &project(),
        DestinationType::Datadog,
        StatusCommand::Disable,
        NOW,
    )
    .await
    .unwrap();
    let disabled = read().await.unwrap();

    assert_eq!(enabled.config.state.status, StreamingStatus::Active);
    assert_eq!(
        enabled.config.state.enabled_at,
        Some(NOW + Duration::seconds(30))
    );
    assert_eq!(again, enabled);
    assert_eq!(disabled.config.state.status, StreamingStatus::Disabled);
    assert_eq!(disabled.config.version, 3);
    assert_eq!(disabled.config.endpoint, enabled.config.endpoint);
}

#[tokio::test]
async fn a_delete_removes_the_secret_and_the_stream() {
    let store = MemoryStateStore::new();
    let app = commands(&store);
    let created = app
        .create(&project(), &datadog(), &none(), NOW)
        .await
        .unwrap();

    let deleted = app
        .delete(&project(), DestinationType::Datadog)
        .await
        .unwrap();

    assert_eq!(deleted, created.config);
    assert!(matches!(
        app.read(&project(), DestinationType::Datadog).await,
        Err(StreamError::NoStream)
    ));
    assert!(
        CredentialRead::get(&store, &created.config.credential)
            .await
            .is_err()
    );
    // The project may stream again at once.
    app.create(&project(), &datadog(), &none(), NOW)
        .await
        .unwrap();
}

/// A real in-memory store, with the steps of a racing delete (and of another create) played
/// between this request's own calls, at the points a test names.
#[derive(Default)]
struct RacedStore {
    store: MemoryStateStore,
    /// Another create of this stream lands just after this request read the table.
    created_after_read: Mutex<Option<Destination>>,
    /// A delete removes the stream's secret just before this request saves a credential...
    secret_deleted_before_save: bool,
    /// ...or the whole stream (secret, then item) just after it saved one.
    stream_deleted_after_save: bool,
    /// ...or the stream's item just after this request's create found it still there.
    stream_deleted_after_create: bool,
    /// What this request saved.
    saved: Mutex<Option<CredentialRef>>,
}

impl RacedStore {
    /// The delete's steps: the stream's secret, then, unless `secret_only`, its item.
    async fn delete_stream(&self, secret_only: bool) {
        let stream = StreamWrite::get(&self.store, &project())
            .await
            .unwrap()
            .unwrap();
        let secret = &stream.config.credential.secret_id;
        self.store.delete_secret(secret).await.unwrap();
        if !secret_only {
            StreamWrite::delete(&self.store, &project(), stream.config.version)
                .await
                .unwrap();
        }
    }

    /// The credential this request saved, if it can still be read.
    async fn saved_secret(&self) -> Option<String> {
        let saved = self.saved.lock().unwrap().clone()?;
        let read = CredentialRead::get(&self.store, &saved).await.ok()?;
        Some(read.credential.expose().to_owned())
    }

    fn remember(&self, saved: &CredentialRef) {
        *self.saved.lock().unwrap() = Some(saved.clone());
    }
}

#[async_trait::async_trait]
impl StreamWrite for RacedStore {
    async fn get(&self, project: &ProjectId) -> Result<Option<StoredStream>, StoreError> {
        let read = StreamWrite::get(&self.store, project).await;
        let other = self.created_after_read.lock().unwrap().take();
        if let Some(destination) = other {
            create_stream(
                &self.store,
                &self.store,
                project,
                &destination,
                &none(),
                NOW,
            )
            .await
            .unwrap();
        }
        read
    }
    async fn create(&self, config: &StreamConfig) -> Result<(), StoreError> {
        let created = StreamWrite::create(&self.store, config).await;
        if self.stream_deleted_after_create {
            let live = StreamWrite::get(&self.store, &project())
                .await
                .unwrap()
                .unwrap();
            StreamWrite::delete(&self.store, &project(), live.config.version)
                .await
                .unwrap();
        }
        created
    }
    async fn update(&self, config: &StreamConfig, expected_version: u64) -> Result<(), StoreError> {
        self.store.update(config, expected_version).await
    }
    async fn delete(&self, project: &ProjectId, expected_version: u64) -> Result<(), StoreError> {
        StreamWrite::delete(&self.store, project, expected_version).await
    }
}

#[async_trait::async_trait]
impl CredentialRead for RacedStore {
    async fn get(&self, credential: &CredentialRef) -> Result<StreamSecret, StoreError> {
        CredentialRead::get(&self.store, credential).await
    }
}

#[async_trait::async_trait]
impl CredentialWrite for RacedStore {
    async fn create_secret(
        &self,
        project: &ProjectId,
        stream_id: &str,
        credential: &StreamSecret,
    ) -> Result<CredentialRef, StoreError> {
        let saved = self
            .store
            .create_secret(project, stream_id, credential)
            .await?;
        self.remember(&saved);
        Ok(saved)
    }
    async fn put_version(
        &self,
        secret_id: &str,
        credential: &StreamSecret,
    ) -> Result<CredentialRef, StoreError> {
        if self.secret_deleted_before_save {
            self.delete_stream(true).await;
        }
        let saved = self.store.put_version(secret_id, credential).await?;
        self.remember(&saved);
        if self.stream_deleted_after_save {
            self.delete_stream(false).await;
        }
        Ok(saved)
    }
    async fn delete_secret(&self, secret_id: &str) -> Result<(), StoreError> {
        self.store.delete_secret(secret_id).await
    }
}

fn raced(store: &RacedStore) -> Streams<'_> {
    Streams {
        streams: store,
        credentials: store,
    }
}

/// An update of the Loki token of a stream that `store` holds.
async fn update_token(store: &RacedStore) -> Result<StoredStream, StreamError> {
    create_stream(
        &store.store,
        &store.store,
        &project(),
        &loki("h.example.com", TOKEN),
        &none(),
        NOW,
    )
    .await
    .unwrap();
    let new = loki("h.example.com", OTHER_TOKEN);
    raced(store)
        .update(
            &project(),
            DestinationType::GrafanaLoki,
            new.endpoint(),
            none(),
            Some(new.credential().clone()),
            NOW,
        )
        .await
}

#[tokio::test]
async fn an_update_whose_secret_a_racing_delete_removed_saves_nothing() {
    let store = RacedStore {
        secret_deleted_before_save: true,
        ..Default::default()
    };

    let updated = update_token(&store).await;

    // The deleted secret is never created again: nothing is left for the delete to miss.
    assert!(matches!(updated, Err(StreamError::NoStream)), "{updated:?}");
    assert_eq!(store.saved_secret().await, None);
}

#[tokio::test]
async fn an_update_overtaken_by_a_whole_delete_leaves_no_secret_behind() {
    let store = RacedStore {
        stream_deleted_after_save: true,
        ..Default::default()
    };

    let updated = update_token(&store).await;

    assert!(
        matches!(updated, Err(StreamError::Store(StoreError::NotFound))),
        "{updated:?}"
    );
    assert_eq!(
        store.saved_secret().await,
        None,
        "the version saved went with its stream's secret"
    );
}

#[tokio::test]
async fn a_create_that_lost_to_another_create_deletes_only_its_own_new_secret() {
    let store = RacedStore {
        created_after_read: Mutex::new(Some(loki("h.example.com", TOKEN))),
        stream_deleted_after_create: true,
        ..Default::default()
    };

    let created = raced(&store)
        .create(&project(), &datadog(), &none(), NOW)
        .await;

    assert!(
        matches!(created, Err(StreamError::Store(StoreError::AlreadyExists))),
        "{created:?}"
    );
    assert_eq!(store.saved_secret().await, None);
}

#[tokio::test]
async fn a_create_that_lost_to_a_live_stream_leaves_that_streams_secret_alone() {
    let store = RacedStore {
        created_after_read: Mutex::new(Some(loki("h.example.com", TOKEN))),
        ..Default::default()
    };

    let created = raced(&store)
        .create(&project(), &datadog(), &none(), NOW)
        .await;

    assert!(matches!(
        created,
        Err(StreamError::Store(StoreError::AlreadyExists))
    ));
    let live = StreamWrite::get(&store.store, &project())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credential_of(&store.store, &live).await, TOKEN);
    assert_eq!(store.saved_secret().await, None);
}

#[tokio::test]
async fn each_stream_of_a_project_has_a_secret_of_its_own() {
    let store = MemoryStateStore::new();
    let app = commands(&store);
    let first = app
        .create(&project(), &datadog(), &none(), NOW)
        .await
        .unwrap();
    app.delete(&project(), DestinationType::Datadog)
        .await
        .unwrap();

    let second = app
        .create(&project(), &datadog(), &none(), NOW)
        .await
        .unwrap();

    let (a, b) = (
        &first.config.credential.secret_id,
        &second.config.credential.secret_id,
    );
    assert_ne!(a, b);
    assert!(
        a.starts_with("proj-a/") && b.starts_with("proj-a/"),
        "{a} {b}"
    );
}
