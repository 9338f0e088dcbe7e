//! The streamer's core: a batch of queue messages in, the ids of the messages to retry out.
//!
//! The records of a batch are grouped by project; every project's stream is resolved at once
//! ([`StreamDirectory`]); each project's records are then judged ([`eligibility`]: not
//! configured, disabled, suspended or produced before the enable → acknowledged and skipped)
//! and delivered ([`project`]), every project concurrently with its own retries, so one
//! project's slow or failing destination never holds up another's. What each delivery saw
//! goes to the stream's delivery health ([`health`]), which may suspend the stream.
//!
//! Then, per message:
//! - records that failed now (transient error past the deadline, refused configuration,
//!   store outage) go back to the event queue on their own ([`requeue`]), or, at their last
//!   attempt, to the dead-letter queue as `retries_exhausted`; without an event queue, or if
//!   that send fails, the message is reported failed and SQS redelivers it whole;
//! - rejected records (malformed, no `project_id`, too large, destination 400) go to the
//!   dead-letter queue one by one ([`dead_letters`]);
//! - the message is acknowledged once all of its records are delivered, skipped, back in the
//!   event queue or in the dead-letter queue.
//!
//! Delivery is at-least-once: a record is sent again only if its own push failed. Loki drops
//! a duplicate (same timestamp and bytes); Datadog does not deduplicate.

pub mod dead_letters;
pub mod eligibility;
pub mod health;
pub mod outcome;
pub mod project;
pub mod requeue;
pub mod retry;
pub mod split;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::dead_letter::DeadLetterQueue;
use crate::destination::LogLabels;
use crate::destination::client::{ClientBuildError, DestinationClient};
use crate::domain::{ProjectId, SuspendPolicy};
use crate::event::{EventRecord, FailedRecord, QueueMessage, RejectedRecord, parse_message};
use crate::event_queue::EventQueue;
use crate::settings::{SettingsError, StreamerSettings};
use crate::store::{CredentialRead, HealthWrite, Resolved, StreamDirectory, StreamLookup};
use health::{HealthOptions, HealthTracker, Written};
use outcome::RecordOutcome;
pub use outcome::{BatchReport, BatchSummary, ProjectStatus, SkipReason};
use project::Pusher;

/// Time kept after delivery for sending rejected records to the dead-letter queue.
pub const DEAD_LETTER_RESERVE: Duration = Duration::from_secs(2);

/// A record with the index of the message that carried it.
pub type Slotted<'a> = (usize, EventRecord<'a>);

/// The queues the streamer writes to, besides reading its batches.
#[derive(Default)]
pub struct Queues {
    /// Records that can never be delivered (`DEAD_LETTER_QUEUE_URL`).
    pub dead_letters: Option<DeadLetterQueue>,
    /// The event queue, to send records back on their own (`EVENT_QUEUE_URL`). Without it, a
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
                .event_queue_url
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

pub struct StreamerOptions {
    pub labels: LogLabels,
    pub config_cache_ttl: Duration,
    pub config_cache_size: NonZeroUsize,
    pub max_concurrent_pushes: usize,
    /// Longest single push attempt. Generous, because a timed-out push is sent again and
    /// Datadog does not deduplicate.
    pub request_timeout: Duration,
    /// How long a failing push is retried, from its first attempt: one project's outage must
    /// not hold every batch it appears in until the deadline.
    pub retry_window: Duration,
    pub health: HealthOptions,
    /// Attempts a record gets before it is dead-lettered (`MAX_DELIVERY_ATTEMPTS`).
    pub max_attempts: u32,
    /// The first delay of a requeued copy, doubling per attempt.
    pub requeue_base_delay: Duration,
}

impl StreamerOptions {
    /// The options `settings` describe.
    pub fn from_settings(settings: &StreamerSettings) -> Self {
        Self {
            labels: settings.destinations.labels.clone(),
            config_cache_ttl: settings.config_cache_ttl,
            config_cache_size: settings.config_cache_size,
            max_concurrent_pushes: settings.max_concurrent_pushes,
            request_timeout: settings.request_timeout,
            retry_window: settings.retry_window,
            max_attempts: settings.max_delivery_attempts,
            requeue_base_delay: settings.requeue_base_delay,
            health: HealthOptions {
                write_interval: settings.health_write_interval,
                suspend: SuspendPolicy {
                    after_auth_failures: settings.suspend_after_auth_failures,
                    after: time::Duration::try_from(settings.suspend_after)
                        .unwrap_or(time::Duration::MAX),
                },
            },
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
    retry_window: Duration,
    max_attempts: u32,
    requeue_base_delay: Duration,
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
                options.config_cache_ttl,
                options.config_cache_size,
            ),
            health: HealthTracker::new(options.health, store.health, options.config_cache_size),
            client,
            queues,
            labels: options.labels,
            pushes: Semaphore::new(options.max_concurrent_pushes.max(1)),
            request_timeout: options.request_timeout,
            retry_window: options.retry_window,
            max_attempts: options.max_attempts.max(1),
            requeue_base_delay: options.requeue_base_delay,
        }
    }

    /// Builds the HTTP client from the settings (reading `EXTRA_CA_CERTS` if set).
    pub fn from_settings(
        settings: &StreamerSettings,
        store: StreamerStore,
        queues: Queues,
    ) -> Result<Self, StreamerBuildError> {
        let client = DestinationClient::new(settings.destinations.client_options()?)?;
        let options = StreamerOptions::from_settings(settings);
        Ok(Self::new(store, client, queues, options))
    }

    /// Processes a batch; all work, dead-letter sends included, ends by `deadline`.
    pub async fn process_batch(&self, messages: &[QueueMessage], deadline: Instant) -> BatchReport {
        let mut summary = BatchSummary {
            messages: messages.len(),
            ..Default::default()
        };
        let mut failed: Vec<Vec<FailedRecord>> = vec![Vec::new(); messages.len()];
        let mut rejected: Vec<Vec<RejectedRecord>> = vec![Vec::new(); messages.len()];
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
                    Err(record) => rejected[index].push(record),
                }
            }
        }

        let projects: Vec<ProjectId> = by_project.keys().cloned().collect();
        let resolved = self.directory.resolve(&projects).await;
        let delivery_deadline = deadline
            .checked_sub(DEAD_LETTER_RESERVE)
            .unwrap_or(deadline);
        let results = join_all(by_project.into_iter().map(|(project, records)| {
            let resolved = &resolved[&project];
            async move {
                self.stream_project(project, resolved, records, delivery_deadline)
                    .await
            }
        }))
        .await;
        for (outcomes, retries) in results {
            summary.retries += retries;
            for (index, outcome) in outcomes {
                summary.count(&outcome);
                match outcome {
                    RecordOutcome::Failed(record) => failed[index].push(record),
                    RecordOutcome::Rejected(record) => rejected[index].push(record),
                    RecordOutcome::Delivered | RecordOutcome::Skipped(_) => {}
                }
            }
        }

        // A record out of attempts is set aside for good, as SQS's redrive would.
        for (index, records) in failed.iter_mut().enumerate() {
            let attempt = messages[index].attempt;
            if !records.is_empty() && attempt >= self.max_attempts {
                rejected[index].extend(records.drain(..).map(|r| r.exhausted(attempt)));
            }
        }
        let mut retry: Vec<bool> = failed.iter().map(|records| !records.is_empty()).collect();
        if let Some(queue) = &self.queues.requeue {
            summary.requeued = requeue::send_back(
                queue,
                messages,
                &failed,
                &mut retry,
                self.requeue_base_delay,
                deadline,
            )
            .await;
        }
        let set_aside = dead_letters::set_aside(
            self.queues.dead_letters.as_ref(),
            messages,
            rejected,
            &mut retry,
            deadline,
        )
        .await;
        summary.dead_lettered = set_aside.sent;
        let mut failed = retry.clone();
        for (index, _) in &set_aside.kept {
            failed[*index] = true;
        }
        let failed_message_ids: Vec<String> = messages
            .iter()
            .zip(&failed)
            .filter(|(_, failed)| **failed)
            .map(|(message, _)| message.message_id.clone())
            .collect();
        summary.failed_messages = failed_message_ids.len();
        summary.log();
        BatchReport {
            failed_message_ids,
            retryable_messages: (0..messages.len()).filter(|i| retry[*i]).collect(),
            kept_rejections: set_aside.kept,
            summary,
        }
    }

    /// One project's records: their outcomes and the retries spent.
    async fn stream_project(
        &self,
        project: ProjectId,
        resolved: &Resolved,
        records: Vec<Slotted<'_>>,
        deadline: Instant,
    ) -> (Vec<(usize, RecordOutcome)>, usize) {
        let eligible = eligibility::partition(&project, resolved, records);
        let mut outcomes = eligible.settled;
        let Resolved::Stream(stream) = resolved else {
            return (outcomes, 0);
        };
        let (Some(destination), false) = (&stream.destination, eligible.streamable.is_empty())
        else {
            return (outcomes, 0);
        };
        let pusher = Pusher {
            client: &self.client,
            pushes: &self.pushes,
            labels: &self.labels,
            request_timeout: self.request_timeout,
            retry_window: self.retry_window,
        };
        let delivery = pusher
            .deliver(&project, destination, eligible.streamable, deadline)
            .await;
        let stored = &stream.stored;
        let written = self
            .health
            .observe(&stored.config, &stored.health, &delivery.health)
            .await;
        if written == Written::Suspended {
            self.directory.forget(&project);
        }
        outcomes.extend(delivery.outcomes);
        (outcomes, delivery.retries)
    }
}
