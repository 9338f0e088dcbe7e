//! One project's records of a batch, delivered to its destination in four steps:
//! - **screen**: each record's line is redacted, once, when the stream redacts (the redacted
//!   line is what every push of the record carries, after a split or on a retry, so a resend
//!   is byte-identical and an unredacted line is never sent); lines larger than the
//!   destination accepts, as they would be sent, are set aside;
//! - **chunk**: the others are encoded into pushes within the destination's limits, one push
//!   at a time ([`Pushes`]);
//! - **push**: each push is attempted, and after each attempt the retry policy
//!   ([`super::retry::decide`]) says what follows;
//! - **settle**: every record gets its outcome (a delivered one with its lag: from its send to
//!   the queue to its push's acceptance), and every attempt is noted for the stream's
//!   delivery health and counted for the metrics.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use time::OffsetDateTime;
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
use crate::domain::controls::Redactor;
use crate::domain::{
    DeliveryError, DeliveryHealth, DeliveryLag, Destination, DestinationType, ProjectId,
};
use crate::event::{EventRecord, FailedRecord, RejectReason, RejectedRecord};
use crate::gzip::gzip;
use crate::metrics::PushCounts;

/// What became of a project's records, and what its attempts tell about its destination.
pub struct ProjectDelivery {
    /// Each record's outcome, with the index of its message.
    pub outcomes: Vec<(usize, RecordOutcome)>,
    pub status: ProjectStatus,
    /// Push attempts beyond the first.
    pub retries: usize,
    /// Every attempt, as delivery health sees it.
    pub health: DeliveryHealth,
    /// Every attempt, as the metrics count it.
    pub pushes: PushCounts,
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

/// A record to push, with the line sent for it: its own text, or its redacted copy.
struct Outgoing<'a> {
    /// The index of the message that carried it.
    index: usize,
    record: EventRecord<'a>,
    line: Cow<'a, str>,
}

impl Pusher<'_> {
    /// Delivers `records` to `destination`, each line through `redactor` when the stream
    /// redacts.
    pub async fn deliver(
        &self,
        project: &ProjectId,
        destination: &Destination,
        redactor: Option<&Redactor>,
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
            pushes: PushCounts::default(),
        };
        let sendable = screen(records, redactor, destination_type, limits, &mut delivery);

        let mut pushes = Pushes::new(&sendable);
        let mut splits_left = MAX_REJECTION_SPLITS;
        let (mut attempts, mut bytes) = (0, 0);
        let mut failure: Option<Arc<str>> = None;
        let mut last_accepted = None;
        while let Some((range, body)) =
            pushes.next(|| Payload::new(destination, self.labels, limits))
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
                    &mut delivery,
                )
                .await;
            attempts += pushed.attempts;
            delivery.retries += pushed.attempts.saturating_sub(1);
            let chunk = &sendable[range.clone()];
            match pushed.decision {
                Decision::Delivered => {
                    let accepted = self.clock.utc();
                    let delivered = chunk.iter().map(|o| {
                        let lag = lag(o.record.sent_at, accepted);
                        (o.index, RecordOutcome::Delivered { lag })
                    });
                    delivery.outcomes.extend(delivered);
                    last_accepted = Some(accepted);
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
                        .map(|o| (o.index, reject(&o.record, reason, pushed.detail.clone())));
                    delivery.outcomes.extend(rejected);
                }
                // `push` retries inside and never ends on a retry; were it to, the records
                // must go back rather than count as delivered.
                Decision::FailNow | Decision::Retry { .. } => {
                    delivery.status = ProjectStatus::Failed;
                    let detail: Arc<str> = pushed.detail.into();
                    let failed = chunk.iter().chain(pushes.rest()).map(|o| {
                        let record = FailedRecord::new(&o.record, &detail);
                        (o.index, RecordOutcome::Failed(record))
                    });
                    delivery.outcomes.extend(failed);
                    failure = Some(detail);
                    break;
                }
            }
        }
        settle(&mut delivery, last_accepted);
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
    /// in the delivery's health and counted in its pushes.
    async fn push(
        &self,
        destination: &Destination,
        gzipped: &Bytes,
        records: usize,
        splits_left: usize,
        deadline: Instant,
        delivery: &mut ProjectDelivery,
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
            note_attempt(
                &mut delivery.health,
                destination,
                &response,
                &class,
                self.clock,
            );
            delivery.pushes.attempt(&class);
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

/// Redacts each record's line when the stream redacts, and sets aside the records whose line
/// is larger than the destination accepts; the others, sorted by event time (Loki wants each
/// stream's values in time order; a stable sort keeps queue order among equal timestamps), are
/// returned to be pushed. A record set aside goes to the dead-letter queue as the producer
/// wrote it, like every record that leaves a batch undelivered.
fn screen<'a>(
    mut records: Vec<Slotted<'a>>,
    redactor: Option<&Redactor>,
    destination_type: DestinationType,
    limits: Limits,
    delivery: &mut ProjectDelivery,
) -> Vec<Outgoing<'a>> {
    records.sort_by_key(|(_, r)| r.event_time);
    let mut sendable = Vec::with_capacity(records.len());
    for (index, record) in records {
        let line = match redactor {
            Some(redactor) => redactor.apply(record.line()),
            None => Cow::Borrowed(record.line()),
        };
        let size = line.len();
        if size > limits.max_record_bytes {
            let redacted = if redactor.is_some() { " redacted" } else { "" };
            let detail = format!(
                "the record is {size} bytes{redacted}; {destination_type} accepts at most {}",
                limits.max_record_bytes
            );
            delivery.status = ProjectStatus::Rejected;
            let outcome = reject(&record, RejectReason::RecordTooLarge, detail);
            delivery.outcomes.push((index, outcome));
        } else {
            sendable.push(Outgoing {
                index,
                record,
                line,
            });
        }
    }
    sendable
}

/// The pushes of a project's records, encoded one at a time as they are needed: the halves
/// of a refused push first, then as many of the next records as one push takes.
struct Pushes<'r, 'a> {
    records: &'r [Outgoing<'a>],
    next: usize,
    halves: VecDeque<Range<usize>>,
}

impl<'r, 'a> Pushes<'r, 'a> {
    fn new(records: &'r [Outgoing<'a>]) -> Self {
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
            payload.reserve_for(records.iter().map(|o| o.line.as_ref()));
            for o in records {
                payload.add_line(&o.record, &o.line);
            }
            half
        } else if self.next < self.records.len() {
            let start = self.next;
            payload.reserve_for(self.records[start..].iter().map(|o| o.line.as_ref()));
            while let Some(o) = self.records.get(self.next)
                && payload.try_add_line(&o.record, &o.line)
            {
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
    fn rest(&mut self) -> impl Iterator<Item = &'r Outgoing<'a>> + use<'r, 'a> {
        let records = self.records;
        let halves: Vec<Range<usize>> = self.halves.drain(..).collect();
        let tail = std::mem::replace(&mut self.next, records.len())..records.len();
        halves
            .into_iter()
            .chain(std::iter::once(tail))
            .flat_map(move |range| &records[range])
    }
}

/// Counts the project's events for its delivery health, with the delivery's lag (the median
/// of its delivered records', seen when its last push was accepted).
fn settle(delivery: &mut ProjectDelivery, last_accepted: Option<OffsetDateTime>) {
    let mut lags = Vec::new();
    for (_, outcome) in &delivery.outcomes {
        match outcome {
            RecordOutcome::Delivered { lag } => {
                delivery.health.events_delivered += 1;
                lags.push(*lag);
            }
            RecordOutcome::Failed(_) | RecordOutcome::Rejected(_) => {
                delivery.health.events_failed += 1
            }
            RecordOutcome::Skipped(_) => {}
        }
    }
    if let (Some(at), false) = (last_accepted, lags.is_empty()) {
        let middle = lags.len() / 2;
        let median = *lags.select_nth_unstable(middle).1;
        delivery.health.last_delivery_lag = Some(DeliveryLag {
            at,
            millis: u64::try_from(median.as_millis()).unwrap_or(u64::MAX),
        });
    }
}

/// From a record's send to the queue to its push's acceptance; none when the clocks disagree
/// (SQS stamps the send, this container the acceptance).
fn lag(sent_at: OffsetDateTime, accepted: OffsetDateTime) -> Duration {
    Duration::try_from(accepted - sent_at).unwrap_or(Duration::ZERO)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::tests_support::records;
    use crate::domain::controls::{Redaction, RedactionBody, RedactionKey};

    fn redactor(mode: &str, fields: &[&str]) -> Redactor {
        let redaction = Redaction::parse(&RedactionBody {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            mode: mode.into(),
        })
        .unwrap();
        Redactor::new(&redaction, Some(&RedactionKey::generate().unwrap())).unwrap()
    }

    fn delivery() -> ProjectDelivery {
        ProjectDelivery {
            outcomes: Vec::new(),
            status: ProjectStatus::Delivered,
            retries: 0,
            health: DeliveryHealth::default(),
            pushes: PushCounts::default(),
        }
    }

    fn slotted() -> Vec<Slotted<'static>> {
        records().into_iter().enumerate().collect()
    }

    fn loki_with_max_record(bytes: usize) -> Limits {
        Limits {
            max_record_bytes: bytes,
            ..destination::loki::LIMITS
        }
    }

    #[test]
    fn screening_judges_each_line_as_it_will_be_sent() {
        let loki = DestinationType::GrafanaLoki;
        let longest = records().iter().map(|r| r.line().len()).max().unwrap();

        // Both fit as written; hashed, both grow past the limit.
        let hash = redactor("HASH", &["event_id"]);
        let mut hashed = delivery();
        let limits = loki_with_max_record(longest);
        let sendable = screen(slotted(), Some(&hash), loki, limits, &mut hashed);
        assert!(sendable.is_empty());
        assert_eq!(hashed.outcomes.len(), 2);
        for (_, outcome) in &hashed.outcomes {
            let RecordOutcome::Rejected(rejected) = outcome else {
                panic!("{outcome:?}");
            };
            assert_eq!(rejected.reason, RejectReason::RecordTooLarge);
            assert!(rejected.detail.contains("redacted"), "{}", rejected.detail);
            // The dead-letter queue keeps the record as the producer wrote it.
            assert!(records().iter().any(|r| r.line() == rejected.body));
        }

        // The longest does not fit as written; with `action` removed, it does.
        let limits = loki_with_max_record(longest - 1);
        let mut unredacted = delivery();
        assert_eq!(
            screen(slotted(), None, loki, limits, &mut unredacted).len(),
            1
        );
        let remove = redactor("REMOVE", &["action"]);
        let mut removed = delivery();
        let sendable = screen(slotted(), Some(&remove), loki, limits, &mut removed);
        assert!(removed.outcomes.is_empty());
        assert_eq!(sendable.len(), 2);
        assert!(sendable.iter().all(|o| !o.line.contains("\"action\"")));
    }

    #[test]
    fn without_a_redaction_the_lines_are_the_records_own_borrowed() {
        let limits = destination::loki::LIMITS;
        let mut screened = delivery();
        let sendable = screen(
            slotted(),
            None,
            DestinationType::GrafanaLoki,
            limits,
            &mut screened,
        );
        assert!(
            sendable.iter().all(
                |o| matches!(o.line, Cow::Borrowed(line) if std::ptr::eq(line, o.record.line()))
            )
        );
    }

    /// Redacted once, in the screen: the halves of a refused push carry the very lines the
    /// whole push did, and no original value.
    #[test]
    fn every_push_of_a_record_carries_its_one_redacted_line() {
        let labels = LogLabels {
            source: "stytch".into(),
            service: "stytch.auth".into(),
        };
        let loki = DestinationType::GrafanaLoki;
        let mask = redactor("MASK", &["event_id", "note"]);
        let limits = destination::limits(loki);
        let sendable = screen(slotted(), Some(&mask), loki, limits, &mut delivery());
        let mut pushes = Pushes::new(&sendable);
        let new_payload = || Payload::new(loki, &labels, limits);

        let (whole, body) = pushes.next(new_payload).unwrap();
        assert_eq!(whole, 0..2);
        pushes.split(whole);
        let halves: Vec<Vec<u8>> = std::iter::from_fn(|| pushes.next(new_payload))
            .map(|(_, body)| body)
            .collect();
        assert_eq!(halves.len(), 2);

        let lines = |body: &[u8]| -> Vec<String> {
            let push: serde_json::Value = serde_json::from_slice(body).unwrap();
            push["streams"][0]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v[1].as_str().unwrap().to_owned())
                .collect()
        };
        let expected: Vec<String> = sendable.iter().map(|o| o.line.to_string()).collect();
        assert_eq!(lines(&body), expected);
        assert_eq!([lines(&halves[0]), lines(&halves[1])].concat(), expected);
        for line in &expected {
            assert!(line.contains(r#""event_id":"[REDACTED]""#), "{line}");
            assert!(
                !line.contains("\"e-1\"") && !line.contains("quote"),
                "{line}"
            );
        }
    }
}
