//! The streamer's core: a batch of queue messages in, the ids of the messages to retry out.
//!
//! For each record: no configuration → acknowledged (skipped); `DISABLED` → skipped; produced
//! before `enabled_at` → skipped (re-enabling never backfills); otherwise delivered. Projects
//! are delivered concurrently, each with its own retries, so one project's slow or failing
//! destination never holds up another's. Per message the worst record decides:
//! - any record still failing (transient error past the deadline, 401/403, store outage) →
//!   the message is reported failed and SQS redelivers it whole;
//! - otherwise rejected records (malformed, no `project_id`, too large, destination 400) go to
//!   the dead-letter queue one by one, and the message is acknowledged once they are there.
//!   A push refused with 400 is split to find the invalid records ([`MAX_REJECTION_SPLITS`]).
//!
//! Delivery is at-least-once: a redelivered message is sent again. Loki drops the duplicates
//! (same timestamp and bytes); Datadog does not deduplicate.

pub mod classify;
pub mod retry;
pub mod test_event;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{StreamExt, stream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::dead_letter::DeadLetterQueue;
use crate::destination::client::{ClientBuildError, DestinationClient};
use crate::destination::{self, LogLabels};
use crate::domain::{Destination, ProjectId, StreamingConfig};
use crate::event::{EventRecord, QueueMessage, RejectReason, RejectedRecord, parse_message};
use crate::gzip::gzip;
use crate::settings::{SettingsError, StreamerSettings};
use crate::store::{CachedConfigStore, ConfigStore};
use classify::{Classification, LOKI_INGESTION_BLOCKED, classify};

/// A 400 answers for a whole push although only some entries may be invalid (Loki stores
/// the valid ones anyway; Datadog refuses the whole payload). Sending the two halves of a
/// refused push isolates the invalid records, so that only they are dead-lettered; valid Loki
/// entries sent again are exact duplicates, which Loki drops. Bounded per project and batch,
/// so a destination that refuses everything costs a few requests, not one per record.
pub const MAX_REJECTION_SPLITS: usize = 16;

/// Longest single push attempt. Generous, because a timed-out push is sent again and
/// Datadog does not deduplicate; the invocation's deadline bounds it further.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Time kept after delivery for sending rejected records to the dead-letter queue.
pub const DEAD_LETTER_RESERVE: Duration = Duration::from_secs(2);
/// Dead-letter sends in flight at once: a refused chunk can hold a thousand records.
pub const DEAD_LETTER_CONCURRENCY: usize = 16;

pub struct Streamer {
    store: CachedConfigStore,
    client: DestinationClient,
    dead_letters: Option<DeadLetterQueue>,
    labels: LogLabels,
    /// Bounds requests in flight, not projects: a project sleeping in backoff must not keep
    /// another project from being delivered.
    pushes: Semaphore,
}

pub struct StreamerOptions {
    pub labels: LogLabels,
    pub config_cache_ttl: Duration,
    pub max_concurrent_pushes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamerBuildError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// What became of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Messages SQS must deliver again.
    pub failed_message_ids: Vec<String>,
    pub summary: BatchSummary,
}

/// Record counts of one batch, logged once per invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub messages: usize,
    pub records: usize,
    pub delivered: usize,
    pub skipped_not_configured: usize,
    pub skipped_disabled: usize,
    pub skipped_before_enabled: usize,
    /// Push attempts beyond the first.
    pub retries: usize,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: usize,
    /// Records that could not be delivered now (their messages are redelivered).
    pub failed_records: usize,
    pub failed_messages: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkipReason {
    NotConfigured,
    Disabled,
    BeforeEnabled,
}

#[derive(Debug)]
enum RecordOutcome {
    Delivered,
    Skipped(SkipReason),
    Failed,
    Rejected(RejectedRecord),
}

/// A record with the index of the message that carried it.
type Slotted = (usize, EventRecord);

struct ProjectResult {
    outcomes: Vec<(usize, RecordOutcome)>,
    retries: usize,
}

impl Streamer {
    pub fn new(
        store: Arc<dyn ConfigStore>,
        client: DestinationClient,
        dead_letters: Option<DeadLetterQueue>,
        options: StreamerOptions,
    ) -> Self {
        Self {
            store: CachedConfigStore::new(store, options.config_cache_ttl),
            client,
            dead_letters,
            labels: options.labels,
            pushes: Semaphore::new(options.max_concurrent_pushes.max(1)),
        }
    }

    /// Builds the HTTP client from the settings (reading `EXTRA_CA_CERTS` if set).
    pub fn from_settings(
        settings: &StreamerSettings,
        store: Arc<dyn ConfigStore>,
        dead_letters: Option<DeadLetterQueue>,
    ) -> Result<Self, StreamerBuildError> {
        let client = DestinationClient::new(settings.destinations.client_options()?)?;
        let options = StreamerOptions {
            labels: settings.destinations.labels.clone(),
            config_cache_ttl: settings.config_cache_ttl,
            max_concurrent_pushes: settings.max_concurrent_pushes,
        };
        Ok(Self::new(store, client, dead_letters, options))
    }

    /// Processes a batch; all work, dead-letter sends included, ends by `deadline`.
    pub async fn process_batch(&self, messages: &[QueueMessage], deadline: Instant) -> BatchReport {
        let mut summary = BatchSummary {
            messages: messages.len(),
            ..Default::default()
        };
        let mut failed = vec![false; messages.len()];
        let mut rejected: Vec<Vec<RejectedRecord>> = vec![Vec::new(); messages.len()];
        let mut by_project: BTreeMap<ProjectId, Vec<Slotted>> = BTreeMap::new();
        for (index, message) in messages.iter().enumerate() {
            for record in parse_message(message) {
                summary.records += 1;
                match record {
                    Ok(record) => by_project
                        .entry(record.project_id.clone())
                        .or_default()
                        .push((index, record)),
                    Err(record) => rejected[index].push(record),
                }
            }
        }

        let delivery_deadline = deadline
            .checked_sub(DEAD_LETTER_RESERVE)
            .unwrap_or(deadline);
        let results: Vec<ProjectResult> =
            join_all(by_project.into_iter().map(|(project, records)| {
                self.stream_project(project, records, delivery_deadline)
            }))
            .await;
        for result in results {
            summary.retries += result.retries;
            for (index, outcome) in result.outcomes {
                match outcome {
                    RecordOutcome::Delivered => summary.delivered += 1,
                    RecordOutcome::Skipped(SkipReason::NotConfigured) => {
                        summary.skipped_not_configured += 1
                    }
                    RecordOutcome::Skipped(SkipReason::Disabled) => summary.skipped_disabled += 1,
                    RecordOutcome::Skipped(SkipReason::BeforeEnabled) => {
                        summary.skipped_before_enabled += 1
                    }
                    RecordOutcome::Failed => {
                        summary.failed_records += 1;
                        failed[index] = true;
                    }
                    RecordOutcome::Rejected(record) => rejected[index].push(record),
                }
            }
        }

        // A message that is retried anyway keeps its rejected records: they are judged again
        // on redelivery rather than dead-lettered twice. The others' records are sent one by
        // one, a bounded number at a time, within what is left of the deadline; a message is
        // acknowledged only once all of its records are in the dead-letter queue.
        let mut owed = vec![0usize; messages.len()];
        let mut sends = Vec::new();
        for (index, records) in rejected.into_iter().enumerate() {
            if failed[index] || records.is_empty() {
                continue;
            }
            owed[index] = records.len();
            sends.extend(records.into_iter().map(|record| (index, record)));
        }
        match &self.dead_letters {
            None if !sends.is_empty() => warn!(
                records = sends.len(),
                "records rejected but no DEAD_LETTER_QUEUE_URL is set; their messages will be retried"
            ),
            None => {}
            Some(queue) => {
                let mut results = stream::iter(sends)
                    .map(|(index, record)| async move {
                        let message_id = &messages[index].message_id;
                        warn!(
                            message_id = %message_id,
                            project_id = record.project_id.as_ref().map(ProjectId::as_str),
                            reason = %record.reason,
                            detail = %record.detail,
                            "record rejected"
                        );
                        (index, queue.send(&record, message_id).await)
                    })
                    .buffer_unordered(DEAD_LETTER_CONCURRENCY);
                let all_sent = tokio::time::timeout_at(deadline.into(), async {
                    while let Some((index, sent)) = results.next().await {
                        match sent {
                            Ok(()) => {
                                owed[index] -= 1;
                                summary.dead_lettered += 1;
                            }
                            Err(err) => warn!(error = %err, "dead-letter send failed; the message will be retried"),
                        }
                    }
                })
                .await;
                if all_sent.is_err() {
                    warn!(
                        "dead-letter sends did not finish in time; their messages will be retried"
                    );
                }
            }
        }
        for (index, owed) in owed.into_iter().enumerate() {
            if owed > 0 {
                failed[index] = true;
            }
        }

        let failed_message_ids: Vec<String> = messages
            .iter()
            .zip(&failed)
            .filter(|(_, failed)| **failed)
            .map(|(message, _)| message.message_id.clone())
            .collect();
        summary.failed_messages = failed_message_ids.len();
        info!(
            messages = summary.messages,
            records = summary.records,
            delivered = summary.delivered,
            skipped_not_configured = summary.skipped_not_configured,
            skipped_disabled = summary.skipped_disabled,
            skipped_before_enabled = summary.skipped_before_enabled,
            retries = summary.retries,
            dead_lettered = summary.dead_lettered,
            failed_records = summary.failed_records,
            failed_messages = summary.failed_messages,
            "batch processed"
        );
        BatchReport {
            failed_message_ids,
            summary,
        }
    }

    async fn stream_project(
        &self,
        project: ProjectId,
        records: Vec<Slotted>,
        deadline: Instant,
    ) -> ProjectResult {
        let all = |outcome: fn() -> RecordOutcome| ProjectResult {
            outcomes: records.iter().map(|(i, _)| (*i, outcome())).collect(),
            retries: 0,
        };
        let config = match self.store.get(&project).await {
            Ok(Some(config)) => config,
            Ok(None) => return all(|| RecordOutcome::Skipped(SkipReason::NotConfigured)),
            Err(err) => {
                warn!(project_id = %project, error = %err, "configuration lookup failed; the messages will be retried");
                return all(|| RecordOutcome::Failed);
            }
        };
        if !config.is_active() {
            return all(|| RecordOutcome::Skipped(SkipReason::Disabled));
        }
        let (streamable, before_enable): (Vec<Slotted>, Vec<Slotted>) = records
            .into_iter()
            .partition(|(_, r)| produced_after_enable(&config, r));
        let mut result = self
            .deliver(&project, &config.destination, streamable, deadline)
            .await;
        result.outcomes.extend(
            before_enable
                .into_iter()
                .map(|(i, _)| (i, RecordOutcome::Skipped(SkipReason::BeforeEnabled))),
        );
        result
    }

    async fn deliver(
        &self,
        project: &ProjectId,
        destination: &Destination,
        mut records: Vec<Slotted>,
        deadline: Instant,
    ) -> ProjectResult {
        let mut result = ProjectResult {
            outcomes: Vec::with_capacity(records.len()),
            retries: 0,
        };
        if records.is_empty() {
            return result;
        }
        let started = Instant::now();
        let destination_type = destination.destination_type();
        let limits = destination::limits(destination_type);
        // Loki wants each stream's values in time order; a stable sort keeps queue order
        // among equal timestamps.
        records.sort_by_key(|(_, r)| r.event_time);

        let mut entries = Vec::with_capacity(records.len());
        let mut sendable = Vec::with_capacity(records.len());
        for (index, record) in records {
            let entry = destination::encode_entry(destination_type, &record, &self.labels);
            if record.line().len() > limits.max_record_bytes
                || entry.len() > limits.max_request_bytes
            {
                let detail = format!(
                    "the record is {} bytes; {} accepts at most {}",
                    record.line().len(),
                    destination_type,
                    limits.max_record_bytes
                );
                result
                    .outcomes
                    .push((index, reject(&record, RejectReason::RecordTooLarge, detail)));
            } else {
                entries.push(entry);
                sendable.push((index, record));
            }
        }

        let sizes: Vec<usize> = entries.iter().map(String::len).collect();
        let mut queue: VecDeque<Range<usize>> = destination::chunk(&sizes, limits).into();
        let mut attempts = 0;
        let mut bytes = 0;
        let mut stopped: Option<String> = None;
        let mut last_status = "delivered";
        let mut rejection_splits = MAX_REJECTION_SPLITS;
        while let Some(range) = queue.pop_front() {
            if stopped.is_some() {
                result.outcomes.extend(
                    sendable[range]
                        .iter()
                        .map(|(i, _)| (*i, RecordOutcome::Failed)),
                );
                continue;
            }
            let body = destination::encode_body(
                destination_type,
                entries[range.clone()].iter().map(String::as_str),
                &self.labels,
            );
            bytes += body.len();
            let (class, tries) = self
                .push_with_retries(destination, &gzip(&body), deadline)
                .await;
            attempts += tries;
            result.retries += tries.saturating_sub(1);
            let chunk = &sendable[range.clone()];
            match class {
                Classification::Delivered { status } => {
                    if status == LOKI_INGESTION_BLOCKED {
                        warn!(project_id = %project, "Loki answered 260: the operator has blocked ingestion for this tenant");
                    }
                    result
                        .outcomes
                        .extend(chunk.iter().map(|(i, _)| (*i, RecordOutcome::Delivered)));
                }
                Classification::Rejected { .. } | Classification::TooLarge
                    if range.len() > 1
                        && (class == Classification::TooLarge || rejection_splits > 0) =>
                {
                    if class != Classification::TooLarge {
                        rejection_splits -= 1;
                    }
                    let middle = range.start + range.len() / 2;
                    queue.push_front(middle..range.end);
                    queue.push_front(range.start..middle);
                }
                Classification::Rejected { detail, .. } => {
                    last_status = "rejected";
                    result.outcomes.extend(chunk.iter().map(|(i, r)| {
                        (
                            *i,
                            reject(r, RejectReason::DestinationRejected, detail.clone()),
                        )
                    }));
                }
                Classification::TooLarge => {
                    last_status = "rejected";
                    let (i, r) = &chunk[0];
                    let detail = "the destination answered 413 for this record alone".to_owned();
                    result
                        .outcomes
                        .push((*i, reject(r, RejectReason::RecordTooLarge, detail)));
                }
                Classification::Misconfigured { detail }
                | Classification::Transient { detail, .. } => {
                    // Later chunks would meet the same credentials or the same outage.
                    last_status = "failed";
                    result
                        .outcomes
                        .extend(chunk.iter().map(|(i, _)| (*i, RecordOutcome::Failed)));
                    stopped = Some(detail);
                }
            }
        }
        info!(
            project_id = %project,
            destination_type = %destination_type,
            events = sendable.len(),
            bytes,
            status = last_status,
            attempts,
            duration_ms = started.elapsed().as_millis() as u64,
            error = stopped.as_deref(),
            "project delivery"
        );
        result
    }

    /// One payload, retried on transient failures while the deadline allows. Returns the
    /// final classification and the number of attempts made.
    async fn push_with_retries(
        &self,
        destination: &Destination,
        gzipped: &[u8],
        deadline: Instant,
    ) -> (Classification, usize) {
        let no_time_left = |attempts: u32| {
            let detail = "no time left in this invocation".to_owned();
            let class = Classification::Transient {
                retry_after: None,
                detail,
            };
            (class, attempts as usize)
        };
        let mut attempt: u32 = 0;
        loop {
            // Checked again once a slot is free: waiting for one can use up the time, and a
            // push started with too little of it risks a Datadog duplicate on timeout.
            if deadline.saturating_duration_since(Instant::now()) < retry::MIN_ATTEMPT_TIME {
                return no_time_left(attempt);
            }
            let slot = self
                .pushes
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < retry::MIN_ATTEMPT_TIME {
                return no_time_left(attempt);
            }
            attempt += 1;
            let response = self
                .client
                .push(destination, gzipped, remaining.min(REQUEST_TIMEOUT))
                .await;
            drop(slot);
            let class = classify(&response);
            let Classification::Transient {
                retry_after,
                detail,
            } = &class
            else {
                return (class, attempt as usize);
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match retry::next_delay(attempt, *retry_after, remaining, fastrand::f64()) {
                Some(delay) => {
                    warn!(attempt, delay_ms = delay.as_millis() as u64, error = %detail, "push failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return (class, attempt as usize),
            }
        }
    }
}

/// Re-enabling never backfills: only events produced after the last enable are streamed.
/// Compared in whole milliseconds, the precision of SQS's `SentTimestamp`, so an event sent
/// in the millisecond of the enable counts as after it.
fn produced_after_enable(config: &StreamingConfig, record: &EventRecord) -> bool {
    let millis = |t: time::OffsetDateTime| t.unix_timestamp_nanos().div_euclid(1_000_000);
    config
        .enabled_at
        .is_none_or(|enabled_at| millis(record.sent_at) >= millis(enabled_at))
}

fn reject(record: &EventRecord, reason: RejectReason, detail: String) -> RecordOutcome {
    RecordOutcome::Rejected(RejectedRecord {
        body: record.line().to_owned(),
        project_id: Some(record.project_id.clone()),
        reason,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;
    use crate::destination::client::ClientOptions;
    use crate::domain::{DestinationConfigBody, DestinationType, LokiBody, StreamingStatus};
    use crate::net::AddressPolicy;
    use crate::store::counting::CountingStore;

    const ENABLED_AT: OffsetDateTime = datetime!(2026-11-24 10:00:00.000_900 UTC);

    fn config(status: StreamingStatus) -> StreamingConfig {
        let body = DestinationConfigBody {
            datadog: None,
            grafana_loki: Some(LokiBody {
                hostname: "logs.example.com".into(),
                username: "u".into(),
                password: "p".into(),
            }),
        };
        StreamingConfig {
            destination: Destination::parse(DestinationType::GrafanaLoki, &body).unwrap(),
            streaming_status: status,
            enabled_at: Some(ENABLED_AT),
            created_at: ENABLED_AT,
            updated_at: ENABLED_AT,
        }
    }

    fn record_sent_at(sent_at: OffsetDateTime) -> EventRecord {
        let message = QueueMessage {
            message_id: "m".into(),
            body: r#"{"project_id":"p"}"#.into(),
            sent_at,
        };
        parse_message(&message).remove(0).unwrap()
    }

    #[test]
    fn only_events_sent_from_the_enable_on_are_streamed() {
        let config = config(StreamingStatus::Active);
        let table = [
            (datetime!(2026-11-24 09:59:59.999 UTC), false),
            // SentTimestamp has millisecond precision: the enable's millisecond counts as after.
            (datetime!(2026-11-24 10:00:00.000 UTC), true),
            (datetime!(2026-11-24 10:00:00.001 UTC), true),
        ];
        for (sent_at, streamed) in table {
            assert_eq!(
                produced_after_enable(&config, &record_sent_at(sent_at)),
                streamed,
                "{sent_at}"
            );
        }
        let mut never_enabled = config.clone();
        never_enabled.enabled_at = None;
        assert!(produced_after_enable(
            &never_enabled,
            &record_sent_at(datetime!(2000-01-01 0:00 UTC))
        ));
    }

    #[tokio::test]
    async fn records_are_grouped_by_project_and_each_project_is_looked_up_once() {
        let store = Arc::new(CountingStore::default());
        let off = ProjectId::parse("off").unwrap();
        store
            .create(&off, &config(StreamingStatus::Disabled))
            .await
            .unwrap();
        let client = DestinationClient::new(ClientOptions {
            policy: AddressPolicy {
                allow_private: false,
            },
            extra_ca_pem: None,
            datadog_intake_url: None,
        })
        .unwrap();
        let options = StreamerOptions {
            labels: LogLabels {
                source: "s".into(),
                service: "s".into(),
            },
            config_cache_ttl: Duration::ZERO,
            max_concurrent_pushes: 4,
        };
        let streamer = Streamer::new(store.clone(), client, None, options);
        let message = |id: &str, body: &str| QueueMessage {
            message_id: id.into(),
            body: body.into(),
            sent_at: OffsetDateTime::now_utc(),
        };
        let batch = [
            message("1", r#"{"project_id":"off"}"#),
            message("2", r#"[{"project_id":"none"},{"project_id":"off"}]"#),
            message("3", r#"{"project_id":"none"}"#),
            message("4", r#"{"project_id":"off"}"#),
        ];

        let report = streamer
            .process_batch(&batch, Instant::now() + Duration::from_secs(10))
            .await;

        assert_eq!(store.lookups(), 2);
        assert!(report.failed_message_ids.is_empty());
        assert_eq!(report.summary.records, 5);
        assert_eq!(report.summary.skipped_disabled, 3);
        assert_eq!(report.summary.skipped_not_configured, 2);
    }
}
