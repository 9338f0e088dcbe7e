//! Setting rejected records aside at the end of a batch.
//!
//! A message that is retried anyway keeps its rejected records: they are judged again on
//! redelivery rather than dead-lettered twice. The others' records are sent one by one, a
//! bounded number at a time, within what is left of the deadline; a message is acknowledged
//! only once all of its records are in the dead-letter queue.

use std::time::Instant;

use futures::{StreamExt, stream};
use tracing::warn;

use crate::dead_letter::DeadLetterQueue;
use crate::domain::ProjectId;
use crate::event::{QueueMessage, RejectedRecord};
use crate::store::error_chain;

/// Dead-letter sends in flight at once: a refused chunk can hold a thousand records.
pub const DEAD_LETTER_CONCURRENCY: usize = 16;

/// What became of the rejected records.
#[derive(Debug, Default)]
pub struct SetAside {
    /// Records now in the dead-letter queue.
    pub sent: usize,
    /// With no dead-letter queue: the rejected records, kept in their messages, which are
    /// reported failed. Sending them again cannot help.
    pub kept: Vec<(usize, RejectedRecord)>,
}

/// Sends the rejected records of the messages not already to `retry`, and marks to retry the
/// messages whose records could not all be sent.
pub async fn set_aside(
    queue: Option<&DeadLetterQueue>,
    messages: &[QueueMessage],
    rejected: Vec<Vec<RejectedRecord>>,
    retry: &mut [bool],
    deadline: Instant,
) -> SetAside {
    let mut owed = vec![0usize; messages.len()];
    let mut sends = Vec::new();
    for (index, records) in rejected.into_iter().enumerate() {
        if retry[index] || records.is_empty() {
            continue;
        }
        owed[index] = records.len();
        sends.extend(records.into_iter().map(|record| (index, record)));
    }
    let mut sent = 0;
    match queue {
        None => {
            if !sends.is_empty() {
                warn!(
                    records = sends.len(),
                    "records rejected but no DEAD_LETTER_QUEUE_URL is set; their messages are reported failed"
                );
            }
            return SetAside { sent, kept: sends };
        }
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
                while let Some((index, result)) = results.next().await {
                    match result {
                        Ok(()) => {
                            owed[index] -= 1;
                            sent += 1;
                        }
                        Err(err) => {
                            warn!(error = %error_chain(&err), "dead-letter send failed; the message will be retried")
                        }
                    }
                }
            })
            .await;
            if all_sent.is_err() {
                warn!("dead-letter sends did not finish in time; their messages will be retried");
            }
        }
    }
    for (index, owed) in owed.into_iter().enumerate() {
        if owed > 0 {
            retry[index] = true;
        }
    }
    SetAside {
        sent,
        kept: Vec::new(),
    }
}
