//! The streamer's sequences against the in-memory store, on Tokio's paused clock: no test
//! here waits for real time, and none talks to a network.

use async_trait::async_trait;
use time::macros::datetime;

use super::*;
use crate::clock::PausedClock;
use crate::domain::controls::{EventFilter, EventFilterBody};
use crate::domain::{
    Endpoint, LokiHostname, StreamConfig, StreamControls, Suspension, new_stream_id,
};
use crate::secret::Secret;
use crate::store::{CredentialWrite, Found, MemoryStateStore, StoreError, StreamWrite};

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
    configure_with(store, name, active, hostname, StreamControls::default()).await
}

async fn configure_with(
    store: &MemoryStateStore,
    name: &str,
    active: bool,
    hostname: &str,
    controls: StreamControls,
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
    config.controls = controls;
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
        StreamerStore::of_one(memory.clone()),
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
    let streamer = streamer(StreamerStore::of_one(memory.clone()));

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

/// Counts the health writes that reach the store.
struct CountingHealth {
    store: Arc<MemoryStateStore>,
    writes: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl HealthWrite for CountingHealth {
    async fn record(
        &self,
        seen: &StreamConfig,
        update: &DeliveryHealth,
    ) -> Result<Option<DeliveryHealth>, StoreError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.store.record(seen, update).await
    }

    async fn suspend(
        &self,
        seen: &StreamConfig,
        suspension: &Suspension,
    ) -> Result<bool, StoreError> {
        self.store.suspend(seen, suspension).await
    }
}

fn only_actions(actions: &[&str]) -> StreamControls {
    let body = EventFilterBody {
        actions: Some(actions.iter().map(|a| a.to_string()).collect()),
        statuses: None,
    };
    StreamControls {
        event_filter: Some(EventFilter::parse(&body).unwrap()),
        redaction: None,
    }
}

/// The records of `message` carry no `action`: a filter on actions passes none of them.
#[tokio::test(start_paused = true)]
async fn filtered_records_are_acknowledged_unsent_and_counted_with_the_trackers_own_writes() {
    let memory = Arc::new(MemoryStateStore::new());
    // Nothing listens there: a push would fail the batch.
    let filtered = only_actions(&["Passwords*"]);
    configure_with(&memory, "p", true, "127.0.0.1:1", filtered).await;
    let health = Arc::new(CountingHealth {
        store: memory.clone(),
        writes: Default::default(),
    });
    let streamer = streamer_with(
        StreamerStore {
            lookup: memory.clone(),
            credentials: memory.clone(),
            health: health.clone(),
        },
        &[
            ("ALLOW_PRIVATE_DESTINATIONS", "true"),
            ("HEALTH_WRITE_INTERVAL_SECONDS", "60"),
        ],
    );
    let stored = || async {
        StreamWrite::get(memory.as_ref(), &project("p"))
            .await
            .unwrap()
            .unwrap()
            .health
    };

    // A batch every second for most of a write interval: no write of its own.
    for batch in 0..50 {
        let report = streamer
            .process_batch(
                &[message(&format!("m{batch}"), &["p", "p"])],
                Instant::now() + Duration::from_secs(30),
            )
            .await;
        assert!(report.failed_message_ids.is_empty());
        assert_eq!(
            (report.summary.skipped_filtered, report.summary.delivered),
            (2, 0)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(health.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(stored().await.events_filtered, 0);

    // Once the interval has passed, the next batch carries every count so far.
    tokio::time::advance(Duration::from_secs(11)).await;
    streamer
        .process_batch(
            &[message("last", &["p"])],
            Instant::now() + Duration::from_secs(30),
        )
        .await;
    assert_eq!(health.writes.load(std::sync::atomic::Ordering::SeqCst), 1);
    let written = stored().await;
    assert_eq!(written.events_filtered, 101);
    assert_eq!((written.events_delivered, written.events_failed), (0, 0));
    assert_eq!(
        written.last_success_at, None,
        "a filtered record is no delivery"
    );
}

#[tokio::test(start_paused = true)]
async fn records_of_a_disabled_stream_are_skipped_as_disabled_not_filtered() {
    let memory = Arc::new(MemoryStateStore::new());
    configure_with(&memory, "p", false, "127.0.0.1:1", only_actions(&["X"])).await;
    let streamer = streamer(StreamerStore::of_one(memory.clone()));

    let report = streamer
        .process_batch(
            &[message("m1", &["p"])],
            Instant::now() + Duration::from_secs(30),
        )
        .await;

    assert_eq!(
        (
            report.summary.skipped_disabled,
            report.summary.skipped_filtered
        ),
        (1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn the_batch_metrics_count_each_record_under_the_destination_type_it_was_headed_for() {
    let memory = Arc::new(MemoryStateStore::new());
    // Nothing listens there: each attempt fails without an answer.
    configure_at(&memory, "down", true, "127.0.0.1:1").await;
    configure(&memory, "off", false).await;
    let metrics = crate::metrics::MetricsOut::kept();
    let settings = StreamerSettings::from_lookup(|name| {
        (name == "ALLOW_PRIVATE_DESTINATIONS").then(|| "true".to_owned())
    })
    .unwrap();
    let mut options = StreamerOptions::from_settings(&settings);
    options.clock = Arc::new(PausedClock::starting_at(START));
    options.metrics = metrics.clone();
    let streamer = Streamer::with_options(
        &settings,
        StreamerStore::of_one(memory.clone()),
        Queues::default(),
        options,
    )
    .unwrap();

    let report = streamer
        .process_batch(
            &[
                message("m1", &["down", "off", "nobody"]),
                QueueMessage::new("m2", "not json", START),
            ],
            Instant::now() + Duration::from_secs(8),
        )
        .await;

    let loki = report
        .metrics
        .get(Some(crate::domain::DestinationType::GrafanaLoki))
        .unwrap();
    assert_eq!((loki.received, loki.delivered), (2, 0));
    assert_eq!(loki.skipped.get(&SkipReason::Disabled), Some(&1));
    assert!(loki.pushes.attempts >= 2, "{:?}", loki.pushes);
    assert_eq!(
        loki.pushes.failures.get("Transient"),
        Some(&loki.pushes.attempts)
    );
    assert!(loki.lag.is_empty(), "a record never pushed has no lag");
    let none = report.metrics.get(None).unwrap();
    assert_eq!(none.received, 2);
    assert_eq!(none.skipped.get(&SkipReason::NotConfigured), Some(&1));
    // No dead-letter queue here: the malformed record stays in its message, not counted as
    // dead-lettered.
    assert!(none.dead_lettered.is_empty());
    assert_eq!(none.pushes, crate::metrics::PushCounts::default());

    // What the report holds is what the lines said, one per destination type.
    let lines = metrics.lines();
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let millis = first["_aws"]["Timestamp"].as_i64().unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000);
    assert_eq!(lines, report.metrics.lines(at.unwrap()));
    assert_eq!(lines.len(), 2);
}
