//! Sending back, on their own, the records of a message that could not be delivered now, so
//! that the records delivered with them are not delivered again ([`crate::event_queue`]).
//! A message whose records are all back in the queue is acknowledged; one whose send failed
//! stays to be retried whole, as before.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use tracing::warn;

use super::retry::requeue_delay;
use crate::event::{FailedRecord, QueueMessage};
use crate::event_queue::EventQueue;
use crate::store::error_chain;

/// Sends in flight at once.
pub const REQUEUE_CONCURRENCY: usize = 16;

/// Sends back the failed records of every message, clearing `retry` for the messages whose
/// records are back in the queue. Returns how many records were sent back.
pub async fn send_back(
    queue: &EventQueue,
    messages: &[QueueMessage],
    failed: &[Vec<FailedRecord>],
    retry: &mut [bool],
    base_delay: Duration,
    deadline: Instant,
) -> usize {
    // Indexes, not references, in the closures: borrowed items there defeat the `Send`
    // inference of the futures that hold them.
    let pending: Vec<usize> = (0..failed.len())
        .filter(|index| !failed[*index].is_empty())
        .collect();
    let sends = pending.into_iter().map(|index| async move {
        let message = &messages[index];
        let delay = requeue_delay(message.attempt, base_delay, fastrand::f64());
        (index, queue.send_back(message, &failed[index], delay).await)
    });
    let mut results = stream::iter(sends).buffer_unordered(REQUEUE_CONCURRENCY);
    let mut sent_back = 0;
    let all = tokio::time::timeout_at(deadline.into(), async {
        while let Some((index, result)) = results.next().await {
            match result {
                Ok(()) => {
                    retry[index] = false;
                    sent_back += failed[index].len();
                }
                Err(err) => warn!(
                    message_id = %messages[index].message_id,
                    error = %error_chain(&err),
                    "records not sent back; the message will be retried whole"
                ),
            }
        }
    })
    .await;
    if all.is_err() {
        warn!("sending records back did not finish in time; their messages will be retried whole");
    }
    sent_back
}
