//! What happens to a push after each attempt, and to records that cannot be delivered now:
//! the whole retry policy, in one place, as pure functions of what was seen and of the time
//! passed in. Callers ask and act; the table tests below read like the table in docs/delivery.md
//! ("What is delivered, and how").
//!
//! - [`decide`]: after one attempt of a push, deliver, wait and try again (on the pooled
//!   connection or a new one), split the push, dead-letter its records, or fail them now.
//! - [`may_start`]: whether an attempt may still start (checked again once a push slot is
//!   free, since waiting for one uses up time).
//! - [`hand_off`]: where the records of a message that failed now go: back to the event
//!   queue with a delay, to the dead-letter queue once out of attempts, or, without an event
//!   queue, left in their message for SQS to deliver again.

use std::time::Duration;

use tokio::time::Instant;

use crate::destination::classify::Classification;
use crate::destination::client::Connection;
use crate::event::RejectReason;

/// First backoff ceiling; doubles per attempt.
pub const BASE_DELAY: Duration = Duration::from_millis(500);
/// Largest wait between two attempts, as mature shippers do (Vector, Fluent Bit).
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Time an attempt needs to be worth starting: a connect plus a small push. An attempt
/// started with less risks a Datadog duplicate when it times out after the intake stored it.
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(2);
/// Splits of refused pushes per project and batch: a destination that refuses everything
/// costs a few requests, not one per record. 413s are split without counting against it.
pub const MAX_REJECTION_SPLITS: usize = 16;

/// The settings the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `RETRY_WINDOW_SECONDS`: how long after a push's first attempt a retry may start.
    pub retry_window: Duration,
    /// `MAX_DELIVERY_ATTEMPTS`: attempts a record gets before it is dead-lettered.
    pub max_attempts: u32,
    /// `REQUEUE_BASE_DELAY_SECONDS`: the delay of a copy sent back after its first attempt.
    pub requeue_base_delay: Duration,
}

/// Where a push stands after an attempt.
#[derive(Debug, Clone, Copy)]
pub struct PushState {
    /// Attempts made, the last one included (from 1).
    pub attempts: u32,
    pub first_attempt_at: Instant,
    pub now: Instant,
    /// When this invocation's deliveries must be done.
    pub deadline: Instant,
    /// Records in the push.
    pub records: usize,
    /// What is left of [`MAX_REJECTION_SPLITS`] for this project in this batch.
    pub splits_left: usize,
}

/// What to do with a push after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Wait, then push again on this connection.
    Retry {
        delay: Duration,
        connection: Connection,
    },
    /// Push the two halves; `uses_budget` when the split counts against
    /// [`MAX_REJECTION_SPLITS`].
    Split {
        uses_budget: bool,
    },
    /// The records can never be delivered.
    DeadLetter(RejectReason),
    /// Not deliverable in this invocation; each message's records go by [`hand_off`]. Later
    /// pushes of the project would meet the same credentials, block or outage, so they fail
    /// now too.
    FailNow,
}

/// The decision after one attempt answered `class`. `jitter` is a uniform random number in
/// `[0, 1)`, passed in to keep this function pure.
pub fn decide(
    class: &Classification,
    push: &PushState,
    policy: &RetryPolicy,
    jitter: f64,
) -> Decision {
    match class {
        Classification::Delivered { .. } => Decision::Delivered,
        Classification::Misconfigured { .. } | Classification::Blocked { .. } => Decision::FailNow,
        Classification::Rejected { .. } if push.records <= 1 => {
            Decision::DeadLetter(RejectReason::DestinationRejected)
        }
        Classification::Rejected { .. } if push.splits_left > 0 => {
            Decision::Split { uses_budget: true }
        }
        Classification::Rejected { .. } => Decision::DeadLetter(RejectReason::DestinationRejected),
        Classification::TooLarge if push.records <= 1 => {
            Decision::DeadLetter(RejectReason::RecordTooLarge)
        }
        Classification::TooLarge => Decision::Split { uses_budget: false },
        Classification::Transient {
            retry_after,
            fresh_connection,
            ..
        } => {
            let delay = match retry_after {
                Some(wait) => (*wait).min(MAX_DELAY),
                None => {
                    doubling(BASE_DELAY, push.attempts, MAX_DELAY).mul_f64(jitter.clamp(0.0, 1.0))
                }
            };
            let start_by = start_by(push.first_attempt_at, push.deadline, policy);
            if push.now + delay + MIN_ATTEMPT_TIME <= start_by {
                let connection = if *fresh_connection {
                    Connection::Fresh
                } else {
                    Connection::Pooled
                };
                Decision::Retry { delay, connection }
            } else {
                Decision::FailNow
            }
        }
    }
}

/// Whether an attempt may start `now`: the first one before the deadline, the others
/// within the retry window of the first, each with [`MIN_ATTEMPT_TIME`] to spare.
pub fn may_start(
    first_attempt_at: Option<Instant>,
    now: Instant,
    deadline: Instant,
    policy: &RetryPolicy,
) -> bool {
    let start_by = match first_attempt_at {
        None => deadline,
        Some(first) => start_by(first, deadline, policy),
    };
    start_by.saturating_duration_since(now) >= MIN_ATTEMPT_TIME
}

/// The latest an attempt may end its start: the retry window bounds when attempts start, the
/// deadline bounds everything.
fn start_by(first_attempt_at: Instant, deadline: Instant, policy: &RetryPolicy) -> Instant {
    deadline.min(first_attempt_at + policy.retry_window)
}

/// Where the records of a message that failed now go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Back to the retry queue on their own, visible after `delay`.
    SendBack { delay: Duration },
    /// Out of attempts: set aside for good, as SQS's redrive would.
    DeadLetter(RejectReason),
    /// No retry queue to send them to: the message is reported failed and SQS delivers it
    /// again, whole.
    LeaveToQueue,
}

/// The hand-off of the failed records of a message at delivery attempt `attempt` (from 1).
pub fn hand_off(attempt: u32, retry_queue: bool, policy: &RetryPolicy, jitter: f64) -> Handoff {
    if attempt >= policy.max_attempts.max(1) {
        Handoff::DeadLetter(RejectReason::RetriesExhausted)
    } else if retry_queue {
        Handoff::SendBack {
            delay: requeue_delay(attempt, policy.requeue_base_delay, jitter),
        }
    } else {
        Handoff::LeaveToQueue
    }
}

/// The delay of a requeued copy after `attempts` failed attempts: `base` doubling per
/// attempt, at most SQS's 900 s, with equal jitter (half fixed, half random) so that copies
/// of one outage do not all come back at once yet never come back at once either.
pub fn requeue_delay(attempts: u32, base: Duration, jitter: f64) -> Duration {
    let ceiling = doubling(base, attempts, crate::event_queue::MAX_DELAY);
    ceiling / 2 + (ceiling / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

/// `base` doubled for each attempt after the first, at most `cap`.
fn doubling(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::classify::classify;
    use crate::destination::client::{PushResponse, TransportFailure};

    const POLICY: RetryPolicy = RetryPolicy {
        retry_window: Duration::from_secs(10),
        max_attempts: 5,
        requeue_base_delay: Duration::from_secs(30),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn answer(status: u16, retry_after: Option<Duration>) -> Classification {
        classify(&PushResponse::Status {
            status,
            retry_after,
            detail: String::new(),
            quote: None,
        })
    }

    fn no_answer() -> Classification {
        classify(&PushResponse::Transport {
            failure: TransportFailure::ConnectionReset,
            detail: "reset".into(),
        })
    }

    fn refused_address() -> Classification {
        classify(&PushResponse::Refused("private".into()))
    }

    /// A push of `records` records after `attempts` attempts, `elapsed` after its first, with
    /// `left` before the deadline.
    fn push(attempts: u32, records: usize, elapsed: Duration, left: Duration) -> PushState {
        let first_attempt_at = Instant::now();
        let now = first_attempt_at + elapsed;
        PushState {
            attempts,
            first_attempt_at,
            now,
            deadline: now + left,
            records,
            splits_left: MAX_REJECTION_SPLITS,
        }
    }

    fn retry(delay: Duration, connection: Connection) -> Decision {
        Decision::Retry { delay, connection }
    }

    /// Every row of docs/delivery.md's table, in its order. Jitter 0.5: the computed wait is half
    /// its ceiling.
    #[test]
    fn every_answer_meets_the_documented_fate() {
        use Connection::{Fresh, Pooled};
        use Decision::*;
        let plenty = secs(600);
        let early = push(1, 10, Duration::ZERO, plenty);
        let one = push(1, 1, Duration::ZERO, plenty);
        let table: Vec<(&str, Classification, PushState, Decision)> = vec![
            ("2xx", answer(200, None), early, Delivered),
            ("204", answer(204, None), early, Delivered),
            (
                "Loki 260: blocked, kept for later",
                answer(260, None),
                early,
                FailNow,
            ),
            (
                "400 of several: split",
                answer(400, None),
                early,
                Split { uses_budget: true },
            ),
            (
                "422 of several: split",
                answer(422, None),
                early,
                Split { uses_budget: true },
            ),
            (
                "400 of one: dead-lettered",
                answer(400, None),
                one,
                DeadLetter(RejectReason::DestinationRejected),
            ),
            (
                "400 with no split left",
                answer(400, None),
                PushState {
                    splits_left: 0,
                    ..early
                },
                DeadLetter(RejectReason::DestinationRejected),
            ),
            ("401", answer(401, None), early, FailNow),
            ("403", answer(403, None), early, FailNow),
            ("404: not a push API", answer(404, None), early, FailNow),
            ("3xx: never followed", answer(301, None), early, FailNow),
            ("private address", refused_address(), early, FailNow),
            (
                "413 of several: split",
                answer(413, None),
                early,
                Split { uses_budget: false },
            ),
            (
                "413 of several, budget spent",
                answer(413, None),
                PushState {
                    splits_left: 0,
                    ..early
                },
                Split { uses_budget: false },
            ),
            (
                "413 of one",
                answer(413, None),
                one,
                DeadLetter(RejectReason::RecordTooLarge),
            ),
            (
                "408: same connection",
                answer(408, None),
                early,
                retry(ms(250), Pooled),
            ),
            (
                "429: same connection",
                answer(429, None),
                early,
                retry(ms(250), Pooled),
            ),
            (
                "500: new connection",
                answer(500, None),
                early,
                retry(ms(250), Fresh),
            ),
            (
                "503: new connection",
                answer(503, None),
                early,
                retry(ms(250), Fresh),
            ),
            (
                "no answer: new connection",
                no_answer(),
                early,
                retry(ms(250), Fresh),
            ),
            (
                "third attempt: ceiling doubled twice",
                answer(503, None),
                push(3, 10, secs(1), plenty),
                retry(ms(1000), Fresh),
            ),
            (
                "Retry-After replaces the wait",
                answer(429, Some(secs(3))),
                early,
                retry(secs(3), Pooled),
            ),
            (
                "Retry-After longer than the window",
                answer(429, Some(secs(300))),
                early,
                FailNow,
            ),
            (
                "a retry must start 2 s before the window ends",
                answer(503, None),
                push(1, 10, ms(7_751), plenty),
                FailNow,
            ),
            (
                "just inside the window",
                answer(503, None),
                push(1, 10, ms(7_750), plenty),
                retry(ms(250), Fresh),
            ),
            (
                "the deadline comes before the window ends",
                answer(503, None),
                push(1, 10, Duration::ZERO, ms(2_249)),
                FailNow,
            ),
        ];
        for (row, class, push, expected) in table {
            assert_eq!(decide(&class, &push, &POLICY, 0.5), expected, "{row}");
        }
    }

    #[test]
    fn the_backoff_ceiling_doubles_per_attempt_up_to_the_cap() {
        let table = [
            (1, ms(500)),
            (2, ms(1000)),
            (3, ms(2000)),
            (6, ms(16_000)),
            (7, ms(30_000)),
            (40, ms(30_000)),
        ];
        let policy = RetryPolicy {
            retry_window: secs(3600),
            ..POLICY
        };
        for (attempts, ceiling) in table {
            let state = push(attempts, 2, Duration::ZERO, secs(3600));
            let Decision::Retry { delay, .. } =
                decide(&answer(503, None), &state, &policy, 0.999_999)
            else {
                panic!("attempt {attempts} is not retried");
            };
            assert!(
                delay <= ceiling && delay + ms(1) >= ceiling,
                "{attempts}: {delay:?}"
            );
            assert_eq!(
                decide(&answer(503, None), &state, &policy, 0.0),
                retry(Duration::ZERO, Connection::Fresh)
            );
        }
    }

    #[test]
    fn an_attempt_starts_only_with_two_seconds_of_its_window_left() {
        let first = Instant::now();
        let far = first + secs(600);
        let table = [
            // (first attempt made?, elapsed, deadline after first, may start)
            (false, Duration::ZERO, far, true),
            (false, Duration::ZERO, first + ms(1_999), false),
            (true, secs(8), far, true),
            (true, ms(8_001), far, false),
            (true, secs(1), first + secs(2), false),
        ];
        for (started, elapsed, deadline, expected) in table {
            let first_attempt_at = started.then_some(first);
            assert_eq!(
                may_start(first_attempt_at, first + elapsed, deadline, &POLICY),
                expected,
                "{started} {elapsed:?}"
            );
        }
    }

    #[test]
    fn records_that_failed_now_go_back_until_their_last_attempt() {
        use Handoff::*;
        let table = [
            // (attempt, retry queue?, jitter, hand-off)
            (1, true, 0.0, SendBack { delay: secs(15) }),
            (1, true, 1.0, SendBack { delay: secs(30) }),
            (3, true, 0.5, SendBack { delay: secs(90) }),
            (4, true, 1.0, SendBack { delay: secs(240) }),
            (5, true, 0.5, DeadLetter(RejectReason::RetriesExhausted)),
            (9, true, 0.5, DeadLetter(RejectReason::RetriesExhausted)),
            (1, false, 0.5, LeaveToQueue),
            (5, false, 0.5, DeadLetter(RejectReason::RetriesExhausted)),
        ];
        for (attempt, queue, jitter, expected) in table {
            assert_eq!(
                hand_off(attempt, queue, &POLICY, jitter),
                expected,
                "attempt {attempt}, queue {queue}"
            );
        }
    }

    #[test]
    fn requeued_copies_wait_longer_after_each_attempt_up_to_sqs_maximum() {
        let base = secs(30);
        let table = [
            (1, 0.0, 15),
            (1, 1.0, 30),
            (2, 0.0, 30),
            (3, 0.5, 90),
            (5, 1.0, 480),
            (6, 1.0, 900),
            (40, 0.0, 450),
        ];
        for (attempts, jitter, seconds) in table {
            assert_eq!(
                requeue_delay(attempts, base, jitter),
                secs(seconds),
                "{attempts} {jitter}"
            );
        }
        assert_eq!(requeue_delay(3, Duration::ZERO, 0.7), Duration::ZERO);
    }
}
