//! The end of a batch: each message's records that were not delivered are handed off once,
//! and a message is acknowledged once none is left.
//!
//! - Records that failed now go back to the retry queue on their own ([`EventQueue`]), or,
//!   at their last attempt, to the dead-letter queue as `retries_exhausted`
//!   ([`retry::hand_off`]).
//! - Rejected records go to the dead-letter queue one by one ([`DeadLetterQueue`]).
//! - A message is left to SQS whole (reported failed, delivered again by SQS) only when none
//!   of its records has been handed elsewhere (delivered, sent back or dead-lettered): then
//!   its redelivery repeats nothing. Without a retry queue that is the rule for failed
//!   records; without a dead-letter queue, for rejected ones.
//! - Once one of its records is handed elsewhere, what is left of a message is handed off on
//!   its own in a second round: failed records are sent back again, and rejected records go
//!   to the dead-letter queue again or, if it refuses them once more, back to the retry queue
//!   one by one, exactly as they were (judged again, they are set aside then). Only if that fails too is the message left to
//!   SQS whole: a redelivery that repeats records beats a lost one.
//!
//! Sends run [`HANDOFF_CONCURRENCY`] at a time and end by the invocation's deadline; a send
//! still in flight then counts as failed, so its records are never taken as handed off.

use std::time::Duration;

use futures::{StreamExt, stream};
use tokio::time::Instant;
use tracing::warn;

use super::Queues;
use super::retry::{self, Handoff, RetryPolicy};
use crate::domain::ProjectId;
use crate::event::{FailedRecord, QueueMessage, RejectReason, RejectedRecord};
use crate::store::error_chain;

/// Sends in flight at once: a refused chunk can hold a thousand records.
pub const HANDOFF_CONCURRENCY: usize = 16;
/// Time kept at the end of the invocation for the second round.
const SECOND_ROUND_RESERVE: Duration = Duration::from_millis(500);

/// What happened to the records of one message, as the batch goes.
#[derive(Debug, Default)]
pub struct MessageLedger {
    /// Records delivered to their destination.
    pub delivered: usize,
    /// Records not delivered now, to be sent again later.
    pub failed: Vec<FailedRecord>,
    /// Records that can never be delivered.
    pub rejected: Vec<RejectedRecord>,
    /// Records already sent back to the retry queue.
    sent_back: usize,
    /// Records already in the dead-letter queue.
    dead_lettered: usize,
    /// The delay of the copy its failed records go back in.
    send_back_delay: Option<Duration>,
    /// Left to SQS whole: nothing of it is sent anywhere.
    left_whole: bool,
}

impl MessageLedger {
    fn is_done(&self) -> bool {
        self.failed.is_empty() && self.rejected.is_empty()
    }

    /// Whether a redelivery of the whole message would repeat a record handed elsewhere.
    fn handed_elsewhere(&self) -> bool {
        self.delivered > 0 || self.sent_back > 0 || self.dead_lettered > 0
    }
}

/// What the hand-off did.
#[derive(Debug, Default)]
pub struct Settled {
    /// Indexes of the messages left to SQS, which must deliver them again.
    pub left: Vec<usize>,
    /// Of those, the ones that may be delivered later (they hold failed records); the others
    /// only hold rejected records that had no dead-letter queue to go to.
    pub retryable: Vec<usize>,
    /// With no dead-letter queue: the rejected records, kept in their (failed) messages.
    pub kept_rejections: Vec<(usize, RejectedRecord)>,
    /// Records sent back to the retry queue.
    pub sent_back: usize,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: usize,
    /// Messages left whole although some of their records had been handed elsewhere: their
    /// redelivery repeats those (both queues failed twice).
    pub redelivered_whole: usize,
    /// Each record handed off, with its project (none when it had no valid one), for the
    /// metrics.
    pub handed: Vec<(Option<ProjectId>, HandedTo)>,
}

/// Where a record was handed off to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandedTo {
    RetryQueue,
    DeadLetterQueue(RejectReason),
}

/// One send: records taken out of their message's ledger for the time of a round, and put
/// back unless the send succeeded.
enum Send {
    Back {
        message: usize,
        records: Vec<FailedRecord>,
        delay: Duration,
    },
    DeadLetter {
        message: usize,
        record: RejectedRecord,
    },
    /// A rejected record the dead-letter queue refused: to it again, else back to the retry
    /// queue on its own, visible after `delay`.
    DeadLetterElseBack {
        message: usize,
        record: RejectedRecord,
        delay: Duration,
    },
}

/// Where a send put its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handed {
    Back,
    DeadLettered,
}

impl Send {
    /// The projects of the records this send put where `handed` says.
    fn projects_handed_to(&self, handed: Handed) -> Vec<(Option<ProjectId>, HandedTo)> {
        match (self, handed) {
            (Self::Back { records, .. }, _) => records
                .iter()
                .map(|r| (Some(r.project_id.clone()), HandedTo::RetryQueue))
                .collect(),
            (
                Self::DeadLetter { record, .. } | Self::DeadLetterElseBack { record, .. },
                Handed::DeadLettered,
            ) => vec![(
                record.project_id.clone(),
                HandedTo::DeadLetterQueue(record.reason),
            )],
            (Self::DeadLetter { record, .. } | Self::DeadLetterElseBack { record, .. }, _) => {
                vec![(record.project_id.clone(), HandedTo::RetryQueue)]
            }
        }
    }
}

/// Hands off what each message has left, by `deadline`.
pub async fn settle(
    messages: &[QueueMessage],
    mut ledgers: Vec<MessageLedger>,
    queues: &Queues,
    policy: &RetryPolicy,
    now: Instant,
    deadline: Instant,
) -> Settled {
    let mut settled = Settled::default();
    for (index, ledger) in ledgers.iter_mut().enumerate() {
        if !ledger.failed.is_empty() {
            let attempt = messages[index].attempt;
            match retry::hand_off(attempt, queues.requeue.is_some(), policy, fastrand::f64()) {
                Handoff::SendBack { delay } => ledger.send_back_delay = Some(delay),
                Handoff::DeadLetter(_) => {
                    let exhausted = ledger.failed.drain(..).map(|r| r.exhausted(attempt));
                    ledger.rejected.extend(exhausted);
                }
                Handoff::LeaveToQueue => ledger.left_whole = true,
            }
        }
        // A message SQS delivers again keeps its rejected records: they are judged again
        // then, rather than dead-lettered twice.
        if !ledger.rejected.is_empty() && queues.dead_letters.is_none() {
            ledger.left_whole = true;
        }
    }

    let first_round_end = deadline
        .checked_sub(SECOND_ROUND_RESERVE)
        .filter(|end| *end > now)
        .unwrap_or(deadline);
    for (round, end) in [(1, first_round_end), (2, deadline)] {
        // In the second round, rejected records may go back to the retry queue if there is one.
        let rejected_back = round == 2 && queues.requeue.is_some();
        let sends = take_sends(&mut ledgers, rejected_back, policy);
        if sends.is_empty() {
            break;
        }
        let handed = send_all(messages, queues, &sends, end).await;
        for (send, handed) in sends.into_iter().zip(handed) {
            let (message, records) = match &send {
                Send::Back {
                    message, records, ..
                } => (*message, records.len()),
                Send::DeadLetter { message, .. } | Send::DeadLetterElseBack { message, .. } => {
                    (*message, 1)
                }
            };
            if let Some(handed) = handed {
                settled.handed.extend(send.projects_handed_to(handed));
            }
            let ledger = &mut ledgers[message];
            match (handed, send) {
                (Some(Handed::Back), _) => {
                    ledger.sent_back += records;
                    settled.sent_back += records;
                }
                (Some(Handed::DeadLettered), _) => {
                    ledger.dead_lettered += records;
                    settled.dead_lettered += records;
                }
                (None, Send::Back { records, .. }) => ledger.failed = records,
                (
                    None,
                    Send::DeadLetter { record, .. } | Send::DeadLetterElseBack { record, .. },
                ) => ledger.rejected.push(record),
            }
        }
        if round == 1 {
            // Nothing of these went anywhere: SQS's redelivery repeats nothing.
            for ledger in &mut ledgers {
                if !ledger.is_done() && !ledger.handed_elsewhere() {
                    ledger.left_whole = true;
                }
            }
        }
    }

    for (index, ledger) in ledgers.into_iter().enumerate() {
        if ledger.is_done() {
            continue;
        }
        // Not left by rule (no queue to go to) nor for want of anything handed elsewhere:
        // the last resort.
        if !ledger.left_whole && ledger.handed_elsewhere() {
            settled.redelivered_whole += 1;
            warn!(
                message_id = %messages[index].message_id,
                "records could not be handed off twice; the message will be delivered again whole, repeating the records already handed off"
            );
        }
        settled.left.push(index);
        if !ledger.failed.is_empty() {
            settled.retryable.push(index);
        }
        if queues.dead_letters.is_none() {
            let kept = ledger.rejected.into_iter().map(|record| (index, record));
            settled.kept_rejections.extend(kept);
        }
    }
    if !settled.kept_rejections.is_empty() {
        warn!(
            records = settled.kept_rejections.len(),
            "records rejected but no DEAD_LETTER_QUEUE_URL is set; their messages are reported failed"
        );
    }
    settled
}

/// Takes out of the ledgers the records to send in this round; rejected ones to the retry
/// queue when `rejected_back`, else to the dead-letter queue.
fn take_sends(
    ledgers: &mut [MessageLedger],
    rejected_back: bool,
    policy: &RetryPolicy,
) -> Vec<Send> {
    let mut sends = Vec::new();
    for (message, ledger) in ledgers.iter_mut().enumerate() {
        if ledger.left_whole {
            continue;
        }
        if let (false, Some(delay)) = (ledger.failed.is_empty(), ledger.send_back_delay) {
            sends.push(Send::Back {
                message,
                records: std::mem::take(&mut ledger.failed),
                delay,
            });
        }
        let rejected = ledger.rejected.drain(..);
        if rejected_back {
            // Set aside again as soon as the copy comes back, if the dead-letter queue is up.
            let delay = policy.requeue_base_delay;
            sends.extend(rejected.map(|record| Send::DeadLetterElseBack {
                message,
                record,
                delay,
            }));
        } else {
            sends.extend(rejected.map(|record| Send::DeadLetter { message, record }));
        }
    }
    sends
}

/// Runs the sends by `end`; where each one put its records (one still in flight at `end`
/// put them nowhere).
async fn send_all(
    messages: &[QueueMessage],
    queues: &Queues,
    sends: &[Send],
    end: Instant,
) -> Vec<Option<Handed>> {
    let mut done = vec![None; sends.len()];
    // Indexes, not references, in the closure: borrowed items there defeat the `Send`
    // inference of the futures that hold them.
    let mut results = stream::iter(0..sends.len())
        .map(|index| async move { (index, one_send(messages, queues, &sends[index]).await) })
        .buffer_unordered(HANDOFF_CONCURRENCY);
    let finished = tokio::time::timeout_at(end, async {
        while let Some((index, handed)) = results.next().await {
            done[index] = handed;
        }
    })
    .await;
    if finished.is_err() {
        warn!("sending records back or to the dead-letter queue did not finish in time");
    }
    done
}

async fn one_send(messages: &[QueueMessage], queues: &Queues, send: &Send) -> Option<Handed> {
    match send {
        Send::Back {
            message,
            records,
            delay,
        } => {
            let original = &messages[*message];
            let queue = queues.requeue.as_ref()?;
            match queue.send_back(original, records, *delay).await {
                Ok(()) => Some(Handed::Back),
                Err(err) => {
                    warn!(message_id = %original.message_id, error = %error_chain(&err), "records not sent back");
                    None
                }
            }
        }
        Send::DeadLetter { message, record } => {
            dead_letter(&messages[*message], queues, record).await
        }
        Send::DeadLetterElseBack {
            message,
            record,
            delay,
        } => {
            let original = &messages[*message];
            if let Some(handed) = dead_letter(original, queues, record).await {
                return Some(handed);
            }
            let queue = queues.requeue.as_ref()?;
            match queue.send_record_back(original, &record.body, *delay).await {
                Ok(()) => Some(Handed::Back),
                Err(err) => {
                    warn!(message_id = %original.message_id, error = %error_chain(&err), "rejected record not sent back");
                    None
                }
            }
        }
    }
}

async fn dead_letter(
    original: &QueueMessage,
    queues: &Queues,
    record: &RejectedRecord,
) -> Option<Handed> {
    let queue = queues.dead_letters.as_ref()?;
    warn!(
        message_id = %original.message_id,
        project_id = record.project_id.as_ref().map(ProjectId::as_str),
        reason = %record.reason,
        detail = %record.detail,
        "record rejected"
    );
    match queue.send(record, original).await {
        Ok(()) => Some(Handed::DeadLettered),
        Err(err) => {
            warn!(message_id = %original.message_id, error = %error_chain(&err), "dead-letter send failed");
            None
        }
    }
}
