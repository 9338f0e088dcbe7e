//! One project's records of a batch, delivered to its destination in four steps:
//! - **screen**: records larger than the destination accepts are set aside;
//! - **chunk**: the others are encoded into pushes within the destination's limits, one push
//!   at a time ([`Pushes`]);
//! - **push**: each push is attempted, and after each attempt the retry policy
//!   ([`super::retry::decide`]) says what follows;
//! - **settle**: every record gets its outcome, and every attempt is noted for the stream's
//!   delivery health.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::{Level, warn};

use super::Slotted;
use super::outcome::{ProjectStatus, RecordOutcome};
use super::retry::{self, Decision, MAX_REJECTION_SPLITS, PushState, RetryPolicy};
use crate::clock::Clock;
use crate::destination::classify::{Classification, advice, classify};
use crate::destination::client::{Connection, DestinationClient, PushResponse};
use crate::destination::{self, Limits, LogLabels, Payload};
use crate::domain::{DeliveryError, DeliveryHealth, Destination, DestinationType, ProjectId};
use crate::event::{EventRecord, FailedRecord, RejectReason, RejectedRecord};
use crate::gzip::gzip;

/// What became of a project's records, and what its attempts tell about its destination.
pub struct ProjectDelivery {
    /// Each record's outcome, with the index of its message.
    pub outcomes: Vec<(usize, RecordOutcome)>,
    pub status: ProjectStatus,
    /// Push attempts beyond the first.
    pub retries: usize,
    /// Every attempt, as delivery health sees it.
    pub health: DeliveryHealth,
}

/// The shared means of pushing: one client, one bound on requests in flight, one policy.
pub struct Pusher<'a> {
    pub client: &'a DestinationClient,
    /// Bounds requests in flight, not projects: a project sleeping in backoff must not keep
    /// another project from being delivered.
    pub pushes: &'a Semaphore,
    pub labels: &'a LogLabels,
    /// Longest single push attempt; the invocation's deadline bounds it further.
    pub request_timeout: Duration,
    pub policy: &'a RetryPolicy,
    pub clock: &'a dyn Clock,
}

/// How one push ended.
struct Pushed {
    /// Never [`Decision::Retry`]: the retries happened inside.
    decision: Decision,
    /// The last attempt's error, for logs and the dead-letter queue.
    detail: String,
    attempts: usize,
}

impl Pusher<'_> {
    pub async fn deliver(
        &self,
        project: &ProjectId,
        destination: &Destination,
        records: Vec<Slotted<'_>>,
        deadline: Instant,
    ) -> ProjectDelivery {
        let started = self.clock.now();
        let destination_type = destination.destination_type();
        let limits = destination::limits(destination_type);
        let mut delivery = ProjectDelivery {
            outcomes: Vec::with_capacity(records.len()),
            status: ProjectStatus::Delivered,
            retries: 0,
            health: DeliveryHealth::default(),
        };
        let sendable = screen(records, destination_type, limits, &mut delivery);

        let mut pushes = Pushes::new(&sendable);
        let mut splits_left = MAX_REJECTION_SPLITS;
        let (mut attempts, mut bytes) = (0, 0);
        let mut failure: Option<Arc<str>> = None;
        while let Some((range, body)) =
            pushes.next(|| Payload::new(destination_type, self.labels, limits))
        {
            bytes += body.len();
            // The uncompressed body is dropped before the push waits on the network: a 6 MB
            // batch has up to `MAX_CONCURRENT_PUSHES` pushes in flight.
            let gzipped = Bytes::from(gzip(&body));
            drop(body);
            let pushed = self
                .push(
                    destination,
                    &gzipped,
                    range.len(),
                    splits_left,
                    deadline,
                    &mut delivery.health,
                )
                .await;
            attempts += pushed.attempts;
            delivery.retries += pushed.attempts.saturating_sub(1);
            let chunk = &sendable[range.clone()];
            match pushed.decision {
                Decision::Delivered => {
                    let delivered = chunk.iter().map(|(i, _)| (*i, RecordOutcome::Delivered));
                    delivery.outcomes.extend(delivered);
                }
                Decision::Split { uses_budget } => {
                    splits_left -= usize::from(uses_budget);
                    pushes.split(range);
                }
                Decision::DeadLetter(reason) => {
                    if delivery.status == ProjectStatus::Delivered {
                        delivery.status = ProjectStatus::Rejected;
                    }
                    let rejected = chunk
                        .iter()
                        .map(|(i, r)| (*i, reject(r, reason, pushed.detail.clone())));
                    delivery.outcomes.extend(rejected);
                }
                // `push` retries inside and never ends on a retry; were it to, the records
                // must go back rather than count as delivered.
                Decision::FailNow | Decision::Retry { .. } => {
                    delivery.status = ProjectStatus::Failed;
                    let detail: Arc<str> = pushed.detail.into();
                    let failed = chunk
                        .iter()
                        .chain(pushes.rest())
                        .map(|(i, r)| (*i, RecordOutcome::Failed(FailedRecord::new(r, &detail))));
                    delivery.outcomes.extend(failed);
                    failure = Some(detail);
                    break;
                }
            }
        }
        settle(&mut delivery);
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
                    duration_ms = (self.clock.now() - started).as_millis() as u64,
                    error = failure.as_deref(),
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

    /// One push, attempted and retried as the retry policy decides. Each attempt is noted
    /// in `health`.
    async fn push(
        &self,
        destination: &Destination,
        gzipped: &Bytes,
        records: usize,
        splits_left: usize,
        deadline: Instant,
        health: &mut DeliveryHealth,
    ) -> Pushed {
        let mut attempts = 0;
        let mut first_attempt_at = None;
        let mut connection = Connection::Pooled;
        let mut last_detail = None;
        loop {
            let Some(slot) = self.slot(first_attempt_at, deadline).await else {
                return Pushed {
                    decision: Decision::FailNow,
                    detail: last_detail.unwrap_or_else(|| {
                        "no time left for an attempt in this invocation".to_owned()
                    }),
                    attempts,
                };
            };
            let now = self.clock.now();
            let first = *first_attempt_at.get_or_insert(now);
            attempts += 1;
            let timeout = deadline
                .saturating_duration_since(now)
                .min(self.request_timeout);
            let response = self
                .client
                .push(
                    destination,
                    gzipped.clone(),
                    timeout,
                    connection,
                    self.clock.utc(),
                )
                .await;
            drop(slot);
            let class = classify(&response);
            note_attempt(health, destination, &response, &class, self.clock);
            let state = PushState {
                attempts: attempts as u32,
                first_attempt_at: first,
                now: self.clock.now(),
                deadline,
                records,
                splits_left,
            };
            match retry::decide(&class, &state, self.policy, fastrand::f64()) {
                Decision::Retry {
                    delay,
                    connection: next,
                } => {
                    warn!(attempts, delay_ms = delay.as_millis() as u64, error = %class.detail(), "push failed; retrying");
                    tokio::time::sleep(delay).await;
                    connection = next;
                    last_detail = Some(class.detail().to_owned());
                }
                decision => {
                    return Pushed {
                        decision,
                        detail: class.detail().to_owned(),
                        attempts,
                    };
                }
            }
        }
    }

    /// A push slot, if an attempt may still start once it is free: waiting for one can use
    /// up the time.
    async fn slot(
        &self,
        first_attempt_at: Option<Instant>,
        deadline: Instant,
    ) -> Option<SemaphorePermit<'_>> {
        let may_start =
            || retry::may_start(first_attempt_at, self.clock.now(), deadline, self.policy);
        if !may_start() {
            return None;
        }
        let slot = self
            .pushes
            .acquire()
            .await
            .expect("the semaphore is never closed");
        may_start().then_some(slot)
    }
}

/// Sets aside the records larger than the destination accepts; the others, sorted by event
/// time (Loki wants each stream's values in time order; a stable sort keeps queue order among
/// equal timestamps), are returned to be pushed.
fn screen<'a>(
    mut records: Vec<Slotted<'a>>,
    destination_type: DestinationType,
    limits: Limits,
    delivery: &mut ProjectDelivery,
) -> Vec<Slotted<'a>> {
    records.sort_by_key(|(_, r)| r.event_time);
    let mut sendable = Vec::with_capacity(records.len());
    for (index, record) in records {
        let size = record.line().len();
        if size > limits.max_record_bytes {
            let detail = format!(
                "the record is {size} bytes; {destination_type} accepts at most {}",
                limits.max_record_bytes
            );
            delivery.status = ProjectStatus::Rejected;
            let outcome = reject(&record, RejectReason::RecordTooLarge, detail);
            delivery.outcomes.push((index, outcome));
        } else {
            sendable.push((index, record));
        }
    }
    sendable
}

/// The pushes of a project's records, encoded one at a time as they are needed: the halves
/// of a refused push first, then as many of the next records as one push takes.
struct Pushes<'r, 'a> {
    records: &'r [Slotted<'a>],
    next: usize,
    halves: VecDeque<Range<usize>>,
}

impl<'r, 'a> Pushes<'r, 'a> {
    fn new(records: &'r [Slotted<'a>]) -> Self {
        Self {
            records,
            next: 0,
            halves: VecDeque::new(),
        }
    }

    /// The next push: which records, and its uncompressed body.
    fn next<'p>(
        &mut self,
        new_payload: impl Fn() -> Payload<'p>,
    ) -> Option<(Range<usize>, Vec<u8>)> {
        let mut payload = new_payload();
        let range = if let Some(half) = self.halves.pop_front() {
            let records = &self.records[half.clone()];
            payload.reserve_for(records.iter().map(|(_, r)| r));
            for (_, record) in records {
                payload.add(record);
            }
            half
        } else if self.next < self.records.len() {
            let start = self.next;
            payload.reserve_for(self.records[start..].iter().map(|(_, r)| r));
            while self.next < self.records.len() && payload.try_add(&self.records[self.next].1) {
                self.next += 1;
            }
            start..self.next
        } else {
            return None;
        };
        Some((range, payload.finish()))
    }

    /// Sends the two halves of `range` next.
    fn split(&mut self, range: Range<usize>) {
        let middle = range.start + range.len() / 2;
        self.halves.push_front(middle..range.end);
        self.halves.push_front(range.start..middle);
    }

    /// Every record not pushed yet, and no more pushes after.
    fn rest(&mut self) -> impl Iterator<Item = &'r Slotted<'a>> + use<'r, 'a> {
        let records = self.records;
        let halves: Vec<Range<usize>> = self.halves.drain(..).collect();
        let tail = std::mem::replace(&mut self.next, records.len())..records.len();
        halves
            .into_iter()
            .chain(std::iter::once(tail))
            .flat_map(move |range| &records[range])
    }
}

/// Counts the project's events for its delivery health.
fn settle(delivery: &mut ProjectDelivery) {
    for (_, outcome) in &delivery.outcomes {
        match outcome {
            RecordOutcome::Delivered => delivery.health.events_delivered += 1,
            RecordOutcome::Failed(_) | RecordOutcome::Rejected(_) => {
                delivery.health.events_failed += 1
            }
            RecordOutcome::Skipped(_) => {}
        }
    }
}

fn note_attempt(
    health: &mut DeliveryHealth,
    destination: &Destination,
    response: &PushResponse,
    class: &Classification,
    clock: &dyn Clock,
) {
    let at = clock.utc();
    if let Classification::Delivered { .. } = class {
        health.success(at);
        return;
    }
    let error = DeliveryError {
        at,
        destination_status: response.status(),
        message: advice(destination.destination_type(), response),
    };
    health.failure(error, class.refuses_configuration());
}

fn reject(record: &EventRecord, reason: RejectReason, detail: String) -> RecordOutcome {
    RecordOutcome::Rejected(RejectedRecord {
        body: record.line().to_owned(),
        project_id: Some(record.project_id.clone()),
        reason,
        detail,
    })
}
