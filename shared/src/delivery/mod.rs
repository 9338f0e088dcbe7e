//! The streamer's core: a batch of queue messages in, the ids of the messages SQS must
//! deliver again out. Four steps, all ending by the deadline they are given:
//! - **screen**: every message is split into its records; unreadable ones go to their
//!   message's ledger ([`handoff::MessageLedger`]), the others are grouped by project;
//! - **resolve**: every project's stream is read at once ([`StreamDirectory`]), within
//!   [`LOOKUP_TIMEOUT`]; a project whose read fails or runs out of time fails only its own
//!   records;
//! - **deliver**: each project's records are judged ([`eligibility`]: not configured,
//!   disabled, suspended, produced before the enable or not passed by the stream's
//!   `event_filter` → acknowledged and skipped) and delivered ([`project`]: redacted first when
//!   the stream redacts), every project concurrently, each push retried as the retry policy
//!   says ([`retry`]), so one project's slow or failing destination never holds up another's.
//!   What each delivery saw, filtered records included, goes to the stream's health
//!   ([`health`]), which may suspend the stream;
//! - **hand off**: what was not delivered leaves each message once ([`handoff`]): failed
//!   records back to the retry queue, rejected ones to the dead-letter queue; a message is
//!   left to SQS whole only when none of its records went anywhere.
//!
//! Then the batch's summary is logged and its metrics written ([`crate::metrics::batch`]):
//! every record counted under the destination type it was headed for.
//!
//! Delivery is at-least-once: a record is sent again only if its own push failed (or, as a
//! last resort, when both queues refuse what is left of its message). Loki drops a duplicate
//! (same timestamp and bytes); Datadog does not deduplicate.

pub mod eligibility;
pub mod handoff;
pub mod health;
pub mod outcome;
pub mod project;
pub mod retry;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::dead_letter::DeadLetterQueue;
use crate::destination::LogLabels;
use crate::destination::client::{ClientBuildError, DestinationClient};
use crate::domain::{DeliveryError, DeliveryHealth, Destination, ProjectId, SuspendPolicy};
use crate::event::{EventRecord, FailedRecord, QueueMessage, parse_message};
use crate::event_queue::EventQueue;
use crate::metrics::batch::Route;
use crate::metrics::{BatchMetrics, MetricsOut, PushCounts};
use crate::settings::{SettingsError, StreamerSettings};
use crate::store::{
    CredentialRead, HealthWrite, Resolved, ResolvedStream, StreamDirectory, StreamLookup,
};
use handoff::{HandedTo, MessageLedger};
use health::{HealthOptions, HealthTracker, Written};
use outcome::RecordOutcome;
pub use outcome::{BatchReport, BatchSummary, ProjectStatus, SkipReason};
use project::Pusher;
use retry::RetryPolicy;

/// Time kept after delivery for handing off what was not delivered: sends back and
/// dead-letter sends.
pub const HANDOFF_RESERVE: Duration = Duration::from_secs(2);
/// Longest the store lookups of a batch may take: every delivery waits for them, so a slow
/// store fails its own projects' records instead of the whole invocation.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A record with the index of the message that carried it.
pub type Slotted<'a> = (usize, EventRecord<'a>);

/// The queues the streamer writes to, besides reading its batches.
#[derive(Default)]
pub struct Queues {
    /// Records that can never be delivered (`DEAD_LETTER_QUEUE_URL`).
    pub dead_letters: Option<DeadLetterQueue>,
    /// The retry queue, to send records back on their own (`RETRY_QUEUE_URL`). Without it, a
    /// message with a failed record is retried whole.
    pub requeue: Option<EventQueue>,
}

impl Queues {
    /// The queues `settings` name, reached through `sqs`.
    pub fn from_settings(settings: &StreamerSettings, sqs: &aws_sdk_sqs::Client) -> Self {
        Self {
            dead_letters: settings
                .dead_letter_queue_url
                .as_ref()
                .map(|url| DeadLetterQueue::new(sqs.clone(), url.clone())),
            requeue: settings
                .retry_queue_url
                .as_ref()
                .map(|url| EventQueue::new(sqs.clone(), url.clone())),
        }
    }
}

/// The store ports the streamer uses.
pub struct StreamerStore {
    pub lookup: Arc<dyn StreamLookup>,
    pub credentials: Arc<dyn CredentialRead>,
    pub health: Arc<dyn HealthWrite>,
}

impl StreamerStore {
    /// One store serving the three ports: the local runner's file, memory in tests.
    pub fn of_one<S>(store: Arc<S>) -> Self
    where
        S: StreamLookup + CredentialRead + HealthWrite + 'static,
    {
        Self {
            lookup: store.clone(),
            credentials: store.clone(),
            health: store,
        }
    }
}

pub struct StreamerOptions {
    pub labels: LogLabels,
    /// The clock every decision reads; the real one outside tests.
    pub clock: Arc<dyn Clock>,
    pub config_cache_ttl: Duration,
    pub config_cache_size: NonZeroUsize,
    pub max_concurrent_pushes: usize,
    /// Longest single push attempt. Generous, because a timed-out push is sent again and
    /// Datadog does not deduplicate.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub health: HealthOptions,
    /// Where metric lines go: standard output outside tests.
    pub metrics: MetricsOut,
}

impl StreamerOptions {
    /// The options `settings` describe.
    pub fn from_settings(settings: &StreamerSettings) -> Self {
        Self {
            labels: settings.destinations.labels.clone(),
            clock: crate::clock::system(),
            config_cache_ttl: settings.config_cache_ttl,
            config_cache_size: settings.config_cache_size,
            max_concurrent_pushes: settings.max_concurrent_pushes,
            request_timeout: settings.request_timeout,
            retry: RetryPolicy {
                retry_window: settings.retry_window,
                max_attempts: settings.max_delivery_attempts.max(1),
                requeue_base_delay: settings.requeue_base_delay,
            },
            health: HealthOptions {
                write_interval: settings.health_write_interval,
                suspend: SuspendPolicy {
                    after_auth_failures: settings.suspend_after_auth_failures,
                    after: time::Duration::try_from(settings.suspend_after)
                        .unwrap_or(time::Duration::MAX),
                },
            },
            metrics: MetricsOut::Stdout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamerBuildError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

pub struct Streamer {
    directory: StreamDirectory,
    health: HealthTracker,
    client: DestinationClient,
    queues: Queues,
    labels: LogLabels,
    pushes: Semaphore,
    request_timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    metrics: MetricsOut,
}

/// What became of one project's records in a batch.
struct ProjectOutcome {
    /// Each record's outcome, with the index of its message.
    outcomes: Vec<(usize, RecordOutcome)>,
    /// Push attempts beyond the first.
    retries: usize,
    pushes: PushCounts,
}

impl ProjectOutcome {
    fn settled(outcomes: Vec<(usize, RecordOutcome)>) -> Self {
        Self {
            outcomes,
            retries: 0,
            pushes: PushCounts::default(),
        }
    }
}

impl Streamer {
    pub fn new(
        store: StreamerStore,
        client: DestinationClient,
        queues: Queues,
        options: StreamerOptions,
    ) -> Self {
        Self {
            directory: StreamDirectory::new(
                store.lookup,
                store.credentials,
                options.clock.clone(),
                options.config_cache_ttl,
                options.config_cache_size,
            ),
            health: HealthTracker::new(
                options.health,
                store.health,
                options.clock.clone(),
                options.config_cache_size,
                options.metrics.clone(),
            ),
            client,
            queues,
            labels: options.labels,
            pushes: Semaphore::new(options.max_concurrent_pushes.max(1)),
            request_timeout: options.request_timeout,
            retry: options.retry,
            clock: options.clock,
            metrics: options.metrics,
        }
    }

    /// Builds the HTTP client from the settings (reading `EXTRA_CA_CERTS` if set).
    pub fn from_settings(
        settings: &StreamerSettings,
        store: StreamerStore,
        queues: Queues,
    ) -> Result<Self, StreamerBuildError> {
        Self::with_options(
            settings,
            store,
            queues,
            StreamerOptions::from_settings(settings),
        )
    }

    /// As [`Self::from_settings`], with options of the caller's (a test's clock).
    pub fn with_options(
        settings: &StreamerSettings,
        store: StreamerStore,
        queues: Queues,
        options: StreamerOptions,
    ) -> Result<Self, StreamerBuildError> {
        let client = DestinationClient::new(settings.destinations.client_options()?)?;
        Ok(Self::new(store, client, queues, options))
    }

    /// Processes a batch in four steps (screen, resolve, deliver, hand off); all work ends by
    /// `deadline`.
    pub async fn process_batch(&self, messages: &[QueueMessage], deadline: Instant) -> BatchReport {
        let now = self.clock.now();
        let delivery_deadline = deadline.checked_sub(HANDOFF_RESERVE).unwrap_or(deadline);
        let lookup_deadline = delivery_deadline.min(now + LOOKUP_TIMEOUT);
        let mut summary = BatchSummary {
            messages: messages.len(),
            ..Default::default()
        };
        let mut metrics = BatchMetrics::default();
        let (mut ledgers, by_project) = screen(messages, &mut summary, &mut metrics);

        let projects: Vec<ProjectId> = by_project.keys().cloned().collect();
        let resolved = self.directory.resolve(&projects, lookup_deadline).await;
        let route_of = |project: &ProjectId| resolved.get(project).and_then(route);
        for (project, records) in &by_project {
            metrics.route(route_of(project)).received += records.len() as u64;
        }
        let deliveries = join_all(by_project.into_iter().map(|(project, records)| {
            let resolved = &resolved[&project];
            self.stream_project(project, resolved, records, delivery_deadline)
        }))
        .await;
        for (project, delivery) in projects.iter().zip(deliveries) {
            let counts = metrics.route(route_of(project));
            counts.pushes.add(&delivery.pushes);
            summary.retries += delivery.retries;
            for (index, outcome) in delivery.outcomes {
                summary.count(&outcome);
                let ledger = &mut ledgers[index];
                match outcome {
                    RecordOutcome::Delivered { lag } => {
                        ledger.delivered += 1;
                        counts.delivered += 1;
                        counts.lag.record(lag);
                    }
                    RecordOutcome::Skipped(reason) => {
                        *counts.skipped.entry(reason).or_default() += 1;
                    }
                    RecordOutcome::Failed(record) => ledger.failed.push(record),
                    RecordOutcome::Rejected(record) => ledger.rejected.push(record),
                }
            }
        }

        let settled = handoff::settle(
            messages,
            ledgers,
            &self.queues,
            &self.retry,
            self.clock.now(),
            deadline,
        )
        .await;
        for (project, handed) in &settled.handed {
            let counts = metrics.route(project.as_ref().and_then(route_of));
            match handed {
                HandedTo::RetryQueue => counts.sent_back += 1,
                HandedTo::DeadLetterQueue(reason) => {
                    *counts.dead_lettered.entry(*reason).or_default() += 1;
                }
            }
        }
        summary.requeued = settled.sent_back;
        summary.dead_lettered = settled.dead_lettered;
        summary.redelivered_whole = settled.redelivered_whole;
        let failed_message_ids: Vec<String> = settled
            .left
            .iter()
            .map(|index| messages[*index].message_id.clone())
            .collect();
        summary.failed_messages = failed_message_ids.len();
        summary.log();
        for line in metrics.lines(self.clock.utc()) {
            self.metrics.emit(&line);
        }
        BatchReport {
            failed_message_ids,
            retryable_messages: settled.retryable,
            kept_rejections: settled.kept_rejections,
            summary,
            metrics,
        }
    }

    /// One project's records: their outcomes, the retries and the pushes spent.
    async fn stream_project(
        &self,
        project: ProjectId,
        resolved: &Resolved,
        records: Vec<Slotted<'_>>,
        deadline: Instant,
    ) -> ProjectOutcome {
        let eligible = eligibility::partition(&project, resolved, records);
        let mut outcomes = eligible.settled;
        let (stored, mut seen, retries, pushes) = match resolved {
            Resolved::Stream(stream) => match &stream.destination {
                Some(destination) if !eligible.streamable.is_empty() => {
                    let delivery = self
                        .deliver(&project, stream, destination, eligible.streamable, deadline)
                        .await;
                    outcomes.extend(delivery.outcomes);
                    (
                        &stream.stored,
                        delivery.health,
                        delivery.retries,
                        delivery.pushes,
                    )
                }
                Some(_) if eligible.filtered > 0 => (
                    &stream.stored,
                    DeliveryHealth::default(),
                    0,
                    PushCounts::default(),
                ),
                _ => return ProjectOutcome::settled(outcomes),
            },
            // The customer sees why nothing arrives, as for any failed delivery.
            Resolved::NoCredential { stored, error } => {
                let failed = outcomes
                    .iter()
                    .filter(|(_, outcome)| matches!(outcome, RecordOutcome::Failed(_)))
                    .count();
                if failed == 0 && eligible.filtered == 0 {
                    return ProjectOutcome::settled(outcomes);
                }
                let mut health = DeliveryHealth {
                    events_failed: failed as u64,
                    ..Default::default()
                };
                if failed > 0 {
                    tracing::warn!(project_id = %project, error = %error, "credential read failed; the records will be retried");
                    let error = DeliveryError {
                        at: self.clock.utc(),
                        destination_status: None,
                        message: "the stream's credential could not be read; its events are kept and sent again later".into(),
                    };
                    health.failure(error, false);
                }
                (stored, health, 0, PushCounts::default())
            }
            Resolved::NotConfigured | Resolved::Unavailable(_) => {
                return ProjectOutcome::settled(outcomes);
            }
        };
        // Filtered records cost no write of their own: the tracker adds them to what it writes
        // anyway (a change of state, or at most once per interval), so a project whose records
        // are all filtered is written no more often than one whose records are delivered.
        seen.events_filtered += eligible.filtered;
        let written = self
            .health
            .observe(&stored.config, &stored.health, &seen, deadline)
            .await;
        if written == Written::Suspended {
            self.directory.forget(&project);
        }
        ProjectOutcome {
            outcomes,
            retries,
            pushes,
        }
    }

    /// The streamable records of a project with a destination, through its redaction.
    async fn deliver(
        &self,
        project: &ProjectId,
        stream: &ResolvedStream,
        destination: &Destination,
        records: Vec<Slotted<'_>>,
        deadline: Instant,
    ) -> project::ProjectDelivery {
        if stream.stored.config.controls.redaction.is_some() && stream.redactor.is_none() {
            // The directory never resolves such a stream (it is `NoCredential`); were it to,
            // its records must wait rather than leave unredacted.
            let detail: Arc<str> = "the stream's redaction could not be prepared".into();
            let outcomes = records
                .iter()
                .map(|(i, r)| (*i, RecordOutcome::Failed(FailedRecord::new(r, &detail))))
                .collect();
            return project::ProjectDelivery {
                outcomes,
                status: ProjectStatus::Failed,
                retries: 0,
                health: DeliveryHealth::default(),
                pushes: PushCounts::default(),
            };
        }
        let pusher = Pusher {
            client: &self.client,
            pushes: &self.pushes,
            labels: &self.labels,
            request_timeout: self.request_timeout,
            policy: &self.retry,
            clock: self.clock.as_ref(),
        };
        let redactor = stream.redactor.as_ref();
        pusher
            .deliver(project, destination, redactor, records, deadline)
            .await
    }
}

/// The destination type a project's records are headed for, when it has a stream.
fn route(resolved: &Resolved) -> Route {
    match resolved {
        Resolved::Stream(stream) => Some(stream.stored.config.destination_type()),
        Resolved::NoCredential { stored, .. } => Some(stored.config.destination_type()),
        Resolved::NotConfigured | Resolved::Unavailable(_) => None,
    }
}

/// Splits every message into its records, counted, and groups the valid ones by project;
/// records that can never be delivered go straight to their message's ledger (and count as
/// received with no destination: they never have one).
fn screen<'a>(
    messages: &'a [QueueMessage],
    summary: &mut BatchSummary,
    metrics: &mut BatchMetrics,
) -> (Vec<MessageLedger>, BTreeMap<ProjectId, Vec<Slotted<'a>>>) {
    let mut ledgers: Vec<MessageLedger> =
        messages.iter().map(|_| MessageLedger::default()).collect();
    let mut by_project: BTreeMap<ProjectId, Vec<Slotted>> = BTreeMap::new();
    for (index, message) in messages.iter().enumerate() {
        for record in parse_message(message) {
            summary.records += 1;
            match record {
                // The id is cloned once per project, not per record.
                Ok(record) => match by_project.get_mut(&record.project_id) {
                    Some(records) => records.push((index, record)),
                    None => {
                        by_project.insert(record.project_id.clone(), vec![(index, record)]);
                    }
                },
                Err(record) => {
                    metrics.route(None).received += 1;
                    ledgers[index].rejected.push(record);
                }
            }
        }
    }
    (ledgers, by_project)
}
