//! The streamer's sequences against the in-memory store, on Tokio's paused clock: no test
//! here waits for real time, and none talks to a network.

use async_trait::async_trait;
use time::macros::datetime;

use super::*;
use crate::clock::PausedClock;
use crate::domain::{Endpoint, LokiHostname, StreamConfig, Suspension, new_stream_id};
use crate::secret::Secret;
use crate::store::{CredentialWrite, Found, MemoryStateStore, StreamWrite};

const START: time::OffsetDateTime = datetime!(2026-12-07 10:00 UTC);

/// A lookup that never answers for one project (a throttled or unreachable store) and
/// ignores its deadline: the directory's backstop must end it.
struct StuckFor {
    store: Arc<MemoryStateStore>,
    stuck: ProjectId,
}

#[async_trait]
impl StreamLookup for StuckFor {
    async fn get_many(&self, projects: &[ProjectId], deadline: Instant) -> Found {
        if projects.contains(&self.stuck) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        self.store.get_many(projects, deadline).await
    }
}

fn project(name: &str) -> ProjectId {
    ProjectId::parse(name).unwrap()
}

async fn configure(store: &MemoryStateStore, name: &str, active: bool) -> StreamConfig {
    configure_at(store, name, active, "logs.example.com").await
}

async fn configure_at(
    store: &MemoryStateStore,
    name: &str,
    active: bool,
    hostname: &str,
) -> StreamConfig {
    let project = project(name);
    let stream_id = new_stream_id();
    let credential = store
        .create_secret(
            &project,
            &stream_id,
            &Secret::new("glc_token-0123456789").into(),
        )
        .await
        .unwrap();
    let endpoint = Endpoint::GrafanaLoki {
        hostname: LokiHostname::parse(hostname).unwrap(),
        username: "u".into(),
        tenant_id: None,
        labels: Default::default(),
    };
    let mut config = StreamConfig::with_id(stream_id, project, endpoint, credential, START);
    if active {
        config.state = config.state.enable(START, time::Duration::ZERO).unwrap();
    }
    StreamWrite::create(store, &config).await.unwrap();
    config
}

fn streamer(store: StreamerStore) -> Streamer {
    streamer_with(store, &[])
}

fn streamer_with(store: StreamerStore, settings: &[(&str, &str)]) -> Streamer {
    let settings = StreamerSettings::from_lookup(|name| {
        let setting = settings.iter().find(|(n, _)| *n == name);
        setting.map(|(_, value)| value.to_string())
    })
    .unwrap();
    let mut options = StreamerOptions::from_settings(&settings);
    options.clock = Arc::new(PausedClock::starting_at(START));
    Streamer::with_options(&settings, store, Queues::default(), options).unwrap()
}

fn message(id: &str, projects: &[&str]) -> QueueMessage {
    let records: Vec<String> = projects
        .iter()
        .map(|p| format!(r#"{{"project_id":"{p}","event_id":"{id}-{p}"}}"#))
        .collect();
    QueueMessage::new(id, format!("[{}]", records.join(",")), START)
}

#[tokio::test(start_paused = true)]
async fn a_stuck_lookup_fails_only_the_messages_that_needed_it_and_never_the_batch() {
    let memory = Arc::new(MemoryStateStore::new());
    configure(&memory, "quiet", false).await;
    let streamer = streamer(StreamerStore {
        lookup: Arc::new(StuckFor {
            store: memory.clone(),
            stuck: project("stuck"),
        }),
        credentials: memory.clone(),
        health: memory.clone(),
    });
    // "quiet" is cached by a first batch; "stuck" is not.
    let warm = streamer
        .process_batch(
            &[message("m0", &["quiet"])],
            Instant::now() + Duration::from_secs(60),
        )
        .await;
    assert!(warm.failed_message_ids.is_empty());

    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let report = streamer
        .process_batch(
            &[
                message("m1", &["quiet"]),
                message("m2", &["stuck"]),
                message("m3", &["quiet", "stuck"]),
            ],
            deadline,
        )
        .await;

    // Only the messages holding "stuck"'s records go back to SQS, whole: nothing of them
    // went anywhere, so SQS's redelivery repeats nothing.
    assert_eq!(report.failed_message_ids, ["m2", "m3"]);
    assert_eq!(report.summary.skipped_disabled, 2);
    assert_eq!(report.summary.failed_records, 2);
    // The batch ended when the lookup gave up, long before the invocation's deadline.
    assert!(Instant::now() <= started + LOOKUP_TIMEOUT + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn retries_end_by_the_delivery_deadline_and_the_message_is_left_to_sqs() {
    let memory = Arc::new(MemoryStateStore::new());
    // Nothing listens there: every attempt fails without an answer, and is retried.
    configure_at(&memory, "p", true, "127.0.0.1:1").await;
    let streamer = streamer_with(
        StreamerStore {
            lookup: memory.clone(),
            credentials: memory.clone(),
            health: memory.clone(),
        },
        &[("ALLOW_PRIVATE_DESTINATIONS", "true")],
    );
    let deadline = Instant::now() + Duration::from_secs(6);

    let report = streamer
        .process_batch(&[message("m1", &["p"])], deadline)
        .await;

    // No retry queue here: nothing of the message went anywhere, so SQS takes it back whole.
    assert_eq!(report.failed_message_ids, ["m1"]);
    assert!(report.summary.retries >= 1, "{:?}", report.summary);
    // The delivery ended in time for the hand-off, and the batch by its deadline.
    assert!(
        Instant::now() <= deadline,
        "{:?}",
        Instant::now() - deadline
    );
}

#[tokio::test(start_paused = true)]
async fn a_credential_that_cannot_be_read_is_shown_in_the_streams_health() {
    let memory = Arc::new(MemoryStateStore::new());
    let config = configure(&memory, "p", true).await;
    let mut lost = config.next_version(START);
    lost.credential.version_id = "a-version-that-does-not-exist".into();
    memory.update(&lost, config.version).await.unwrap();
    let streamer = streamer(StreamerStore {
        lookup: memory.clone(),
        credentials: memory.clone(),
        health: memory.clone(),
    });

    let report = streamer
        .process_batch(
            &[message("m1", &["p"])],
            Instant::now() + Duration::from_secs(60),
        )
        .await;

    assert_eq!(report.failed_message_ids, ["m1"]);
    let stored = StreamWrite::get(memory.as_ref(), &project("p"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.health.events_failed, 1);
    let error = stored
        .health
        .last_error()
        .expect("the failure is in the health");
    assert!(
        error.message.contains("credential could not be read"),
        "{}",
        error.message
    );
    assert_eq!(error.at, START);
}

#[tokio::test]
async fn a_container_holding_a_deleted_stream_neither_writes_nor_suspends_its_successor() {
    let memory = MemoryStateStore::new();
    let old = configure(&memory, "p", true).await;
    StreamWrite::delete(&memory, &project("p"), old.version)
        .await
        .unwrap();
    let new = configure(&memory, "p", true).await;
    assert_eq!(new.version, old.version);
    assert_ne!(new.stream_id, old.stream_id);

    let mut refusals = DeliveryHealth::default();
    for minute in 0..20 {
        let error = DeliveryError {
            at: START + time::Duration::minutes(minute),
            destination_status: Some(401),
            message: "401".into(),
        };
        refusals.failure(error, true);
    }
    let suspension = Suspension {
        at: START,
        reason: "refused".into(),
    };

    assert_eq!(memory.record(&old, &refusals).await.unwrap(), None);
    assert!(!memory.suspend(&old, &suspension).await.unwrap());
    let stored = StreamWrite::get(&memory, &project("p"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.health, DeliveryHealth::default());
    assert_eq!(stored.config, new);
    // The container holding the new stream does write it.
    assert!(memory.record(&new, &refusals).await.unwrap().is_some());
}
