//! One project's records of a batch, delivered to its destination: encoded, cut into pushes
//! within the destination's limits, each push retried on transient failures while the
//! deadline allows, refused pushes split ([`super::split`]), and every attempt noted for the
//! stream's delivery health.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::{Level, warn};

use super::Slotted;
use super::outcome::{ProjectStatus, RecordOutcome};
use super::retry;
use super::split::{self, MAX_REJECTION_SPLITS, Refusal, SplitDecision};
use crate::destination::classify::{Classification, LOKI_INGESTION_BLOCKED, advice, classify};
use crate::destination::client::{Connection, DestinationClient, PushResponse};
use crate::destination::{self, LogLabels, Payload};
use crate::domain::{DeliveryError, DeliveryHealth, Destination, ProjectId};
use crate::event::{EventRecord, FailedRecord, RejectReason, RejectedRecord};
use crate::gzip::gzip;

/// What became of a project's records, and what its attempts tell about its destination.
pub struct ProjectDelivery {
    pub outcomes: Vec<(usize, RecordOutcome)>,
    pub status: ProjectStatus,
    /// Push attempts beyond the first.
    pub retries: usize,
    /// Every attempt, as delivery health sees it.
    pub health: DeliveryHealth,
}

/// The shared means of pushing: one client and one bound on requests in flight.
pub struct Pusher<'a> {
    pub client: &'a DestinationClient,
    /// Bounds requests in flight, not projects: a project sleeping in backoff must not keep
    /// another project from being delivered.
    pub pushes: &'a Semaphore,
    pub labels: &'a LogLabels,
    /// Longest single push attempt; the invocation's deadline bounds it further.
    pub request_timeout: Duration,
    /// How long a push is retried from its first attempt (the deadline may end it sooner).
    pub retry_window: Duration,
}

impl Pusher<'_> {
    pub async fn deliver(
        &self,
        project: &ProjectId,
        destination: &Destination,
        mut records: Vec<Slotted<'_>>,
        deadline: Instant,
    ) -> ProjectDelivery {
        let started = Instant::now();
        let destination_type = destination.destination_type();
        let limits = destination::limits(destination_type);
        let mut delivery = ProjectDelivery {
            outcomes: Vec::with_capacity(records.len()),
            status: ProjectStatus::Delivered,
            retries: 0,
            health: DeliveryHealth::default(),
        };
        // Loki wants each stream's values in time order; a stable sort keeps queue order
        // among equal timestamps.
        records.sort_by_key(|(_, r)| r.event_time);

        let mut sendable = Vec::with_capacity(records.len());
        for (index, record) in records {
            if record.line().len() > limits.max_record_bytes {
                let detail = format!(
                    "the record is {} bytes; {} accepts at most {}",
                    record.line().len(),
                    destination_type,
                    limits.max_record_bytes
                );
                delivery.status = ProjectStatus::Rejected;
                delivery
                    .outcomes
                    .push((index, reject(&record, RejectReason::RecordTooLarge, detail)));
            } else {
                sendable.push((index, record));
            }
        }

        // Records are encoded as their push is built, one push at a time: the halves of a
        // refused push first, then as many of the next records as one push takes.
        let mut next = 0;
        let mut halves: VecDeque<Range<usize>> = VecDeque::new();
        let mut attempts = 0;
        let mut bytes = 0;
        let mut stopped: Option<Arc<str>> = None;
        let mut splits_left = MAX_REJECTION_SPLITS;
        loop {
            if let Some(detail) = &stopped {
                let rest = halves
                    .drain(..)
                    .flat_map(|half| &sendable[half])
                    .chain(&sendable[next..]);
                let failed =
                    rest.map(|(i, r)| (*i, RecordOutcome::Failed(FailedRecord::new(r, detail))));
                delivery.outcomes.extend(failed);
                break;
            }
            let mut payload = Payload::new(destination_type, self.labels, limits);
            let range = if let Some(half) = halves.pop_front() {
                payload.reserve_for(sendable[half.clone()].iter().map(|(_, r)| r));
                for (_, record) in &sendable[half.clone()] {
                    payload.add(record);
                }
                half
            } else if next < sendable.len() {
                let start = next;
                payload.reserve_for(sendable[next..].iter().map(|(_, r)| r));
                while next < sendable.len() && payload.try_add(&sendable[next].1) {
                    next += 1;
                }
                start..next
            } else {
                break;
            };
            let chunk = &sendable[range.clone()];
            // The uncompressed body is dropped before the push waits on the network: a 6 MB
            // batch has up to `MAX_CONCURRENT_PUSHES` pushes in flight.
            let gzipped = {
                let body = payload.finish();
                bytes += body.len();
                Bytes::from(gzip(&body))
            };
            let (class, tries) = self
                .push_with_retries(destination, &gzipped, deadline, &mut delivery.health)
                .await;
            attempts += tries;
            delivery.retries += tries.saturating_sub(1);
            let refusal = match class {
                Classification::Delivered { status } => {
                    if status == LOKI_INGESTION_BLOCKED {
                        warn!(project_id = %project, "Loki answered 260: the operator has blocked ingestion for this tenant");
                    }
                    let delivered = chunk.iter().map(|(i, _)| (*i, RecordOutcome::Delivered));
                    delivery.outcomes.extend(delivered);
                    continue;
                }
                Classification::Misconfigured { detail }
                | Classification::Transient { detail, .. } => {
                    // Later chunks would meet the same credentials or the same outage.
                    delivery.status = ProjectStatus::Failed;
                    let detail: Arc<str> = detail.into();
                    let failed = chunk
                        .iter()
                        .map(|(i, r)| (*i, RecordOutcome::Failed(FailedRecord::new(r, &detail))));
                    delivery.outcomes.extend(failed);
                    stopped = Some(detail);
                    continue;
                }
                Classification::Rejected { detail, .. } => (Refusal::Invalid, detail),
                Classification::TooLarge => (
                    Refusal::TooLarge,
                    "the destination answered 413 for this record alone".to_owned(),
                ),
            };
            match split::decide(refusal.0, range.len(), splits_left) {
                SplitDecision::Split { uses_budget } => {
                    splits_left -= usize::from(uses_budget);
                    let middle = range.start + range.len() / 2;
                    halves.push_front(middle..range.end);
                    halves.push_front(range.start..middle);
                }
                SplitDecision::SetAside(reason) => {
                    if delivery.status == ProjectStatus::Delivered {
                        delivery.status = ProjectStatus::Rejected;
                    }
                    let rejected = chunk
                        .iter()
                        .map(|(i, r)| (*i, reject(r, reason, refusal.1.clone())));
                    delivery.outcomes.extend(rejected);
                }
            }
        }
        let health = &mut delivery.health;
        for (_, outcome) in &delivery.outcomes {
            match outcome {
                RecordOutcome::Delivered => health.events_delivered += 1,
                RecordOutcome::Failed(_) | RecordOutcome::Rejected(_) => health.events_failed += 1,
                RecordOutcome::Skipped(_) => {}
            }
        }
        // A delivered project is the common case, and a line for each at 100 M events a day
        // is most of the streamer's log bill: it is debug; anything else is info.
        macro_rules! project_delivery {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    project_id = %project,
                    destination_type = %destination_type,
                    events = sendable.len(),
                    bytes,
                    status = delivery.status.as_str(),
                    attempts,
                    duration_ms = started.elapsed().as_millis() as u64,
                    error = stopped.as_deref(),
                    "project delivery"
                )
            };
        }
        if delivery.status == ProjectStatus::Delivered {
            project_delivery!(Level::DEBUG);
        } else {
            project_delivery!(Level::INFO);
        }
        delivery
    }

    /// One payload, retried on transient failures while a wait and the start of one more
    /// attempt ([`retry::MIN_ATTEMPT_TIME`] before its end) fit in the retry window, counted
    /// from the first attempt, and before the deadline. An attempt that starts may take its
    /// whole timeout. Returns the final classification and the number of attempts made; each
    /// attempt is noted in `health`.
    async fn push_with_retries(
        &self,
        destination: &Destination,
        gzipped: &Bytes,
        deadline: Instant,
        health: &mut DeliveryHealth,
    ) -> (Classification, usize) {
        let no_time_left = |attempts: u32| {
            let detail = "no time left for another attempt in this invocation".to_owned();
            let class = Classification::Transient {
                retry_after: None,
                detail,
            };
            (class, attempts as usize)
        };
        let mut attempt: u32 = 0;
        // Attempts start at least MIN_ATTEMPT_TIME before this: the deadline for the first,
        // the end of the retry window (never past the deadline) for the others.
        let mut start_by = deadline;
        let mut connection = Connection::Pooled;
        loop {
            // Checked again once a slot is free: waiting for one can use up the time, and a
            // push started with too little of it risks a Datadog duplicate on timeout.
            let too_late =
                || start_by.saturating_duration_since(Instant::now()) < retry::MIN_ATTEMPT_TIME;
            if too_late() {
                return no_time_left(attempt);
            }
            let slot = self
                .pushes
                .acquire()
                .await
                .expect("the semaphore is never closed");
            if too_late() {
                return no_time_left(attempt);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            attempt += 1;
            if attempt == 1 {
                start_by = deadline.min(Instant::now() + self.retry_window);
            }
            let response = self
                .client
                .push(
                    destination,
                    gzipped.clone(),
                    remaining.min(self.request_timeout),
                    connection,
                )
                .await;
            drop(slot);
            connection = response.next_connection();
            let class = classify(&response);
            note_attempt(health, destination, &response, &class);
            let Classification::Transient {
                retry_after,
                detail,
            } = &class
            else {
                return (class, attempt as usize);
            };
            let remaining = start_by.saturating_duration_since(Instant::now());
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

fn note_attempt(
    health: &mut DeliveryHealth,
    destination: &Destination,
    response: &PushResponse,
    class: &Classification,
) {
    let at = OffsetDateTime::now_utc();
    if let Classification::Delivered { .. } = class {
        health.success(at);
        return;
    }
    let error = DeliveryError {
        at,
        destination_status: response.status(),
        message: advice(destination.destination_type(), response),
    };
    // 401/403 and the answers treated like them refuse the configuration itself: the
    // trigger of suspension, since no retry can succeed until it changes.
    let refused = matches!(class, Classification::Misconfigured { .. });
    health.failure(error, refused);
}

fn reject(record: &EventRecord, reason: RejectReason, detail: String) -> RecordOutcome {
    RecordOutcome::Rejected(RejectedRecord {
        body: record.line().to_owned(),
        project_id: Some(record.project_id.clone()),
        reason,
        detail,
    })
}
