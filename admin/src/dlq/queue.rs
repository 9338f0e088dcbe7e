//! Reading the dead-letter queue without consuming it: each message received is hidden for
//! [`SCAN_VISIBILITY`], long enough for the command to decide on it, and made visible again
//! by [`DeadLetters::release`] (visibility 0) when the command leaves it; only a message
//! moved is deleted. Should the command die, what it held reappears after
//! [`SCAN_VISIBILITY`]: nothing is lost.
//!
//! A scan ends when it has seen as many messages as the queue said it held when the scan
//! began, or when a [`RECEIVE_WAIT`] long poll finds nothing (an SQS short poll may answer
//! empty while messages remain). A message received twice (SQS delivers at least once) is
//! reported apart, so that it is counted once.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName,
};
use time::OffsetDateTime;

use super::DeadLetter;
use crate::aws_error::AwsError;

/// How long a received message stays hidden: a scan of thousands of messages takes a few
/// minutes at most, and a command killed midway hides them no longer than this.
pub const SCAN_VISIBILITY: Duration = Duration::from_secs(300);
/// The long poll that decides a queue is empty.
pub const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// SQS's most messages per receive and per batch call.
pub const BATCH: usize = 10;

pub struct DeadLetters {
    /// With `event_log_streaming::aws::long_poll_timeouts(RECEIVE_WAIT)`.
    sqs: Client,
    url: String,
}

/// One receive: the messages seen for the first time in this scan, and those seen again.
#[derive(Debug, Default)]
pub struct Received {
    pub fresh: Vec<DeadLetter>,
    pub again: Vec<DeadLetter>,
}

impl DeadLetters {
    pub fn new(sqs: Client, url: impl Into<String>) -> Self {
        Self {
            sqs,
            url: url.into(),
        }
    }

    pub fn resource(&self) -> String {
        format!("the dead-letter queue {}", self.url)
    }

    fn aws_error<E, R>(
        &self,
        action: &'static str,
        err: &aws_sdk_sqs::error::SdkError<E, R>,
    ) -> AwsError
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        AwsError::of(action, self.resource(), err)
    }

    /// `ApproximateNumberOfMessages`: the visible messages.
    pub async fn visible_count(&self) -> Result<u64, AwsError> {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| self.aws_error("sqs:GetQueueAttributes", &e))?;
        Ok(output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// A scan of the messages visible now.
    pub async fn scan(&self) -> Result<Scan<'_>, AwsError> {
        Ok(Scan {
            queue: self,
            expected: self.visible_count().await?,
            seen: HashSet::new(),
            done: false,
        })
    }

    async fn receive(&self, now: OffsetDateTime) -> Result<Vec<DeadLetter>, AwsError> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(BATCH as i32)
            .visibility_timeout(SCAN_VISIBILITY.as_secs() as i32)
            .wait_time_seconds(RECEIVE_WAIT.as_secs() as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| self.aws_error("sqs:ReceiveMessage", &e))?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| DeadLetter::from_sqs(m, now))
            .collect())
    }

    /// Makes `letters` visible again at once; returns the ids SQS did not release (they
    /// reappear after [`SCAN_VISIBILITY`]).
    pub async fn release(&self, letters: &[DeadLetter]) -> Result<Vec<String>, AwsError> {
        let mut unreleased = Vec::new();
        for chunk in letters.chunks(BATCH) {
            let entries = chunk.iter().enumerate().map(|(i, l)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&l.receipt_handle)
                    .visibility_timeout(0)
                    .build()
                    .expect("id and receipt handle are set")
            });
            let output = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .map_err(|e| self.aws_error("sqs:ChangeMessageVisibility", &e))?;
            unreleased.extend(failed_ids(chunk, output.failed().iter().map(|f| f.id())));
        }
        Ok(unreleased)
    }

    /// Deletes `letters`; returns the ids SQS did not delete.
    pub async fn delete(&self, letters: &[DeadLetter]) -> Result<Vec<String>, AwsError> {
        let mut kept = Vec::new();
        for chunk in letters.chunks(BATCH) {
            let entries = chunk.iter().enumerate().map(|(i, l)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&l.receipt_handle)
                    .build()
                    .expect("id and receipt handle are set")
            });
            let output = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .map_err(|e| self.aws_error("sqs:DeleteMessage", &e))?;
            kept.extend(failed_ids(chunk, output.failed().iter().map(|f| f.id())));
        }
        Ok(kept)
    }
}

/// The message ids of a batch's failed entries (entry ids are indexes into `chunk`).
fn failed_ids<'a>(chunk: &[DeadLetter], failed: impl Iterator<Item = &'a str>) -> Vec<String> {
    failed
        .filter_map(|id| id.parse::<usize>().ok())
        .filter_map(|i| chunk.get(i))
        .map(|l| l.message_id.clone())
        .collect()
}

/// One pass over the queue.
pub struct Scan<'a> {
    queue: &'a DeadLetters,
    expected: u64,
    seen: HashSet<String>,
    done: bool,
}

impl Scan<'_> {
    /// The messages visible when the scan began.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// The next receive, `None` once the scan is over.
    pub async fn next(&mut self, now: OffsetDateTime) -> Result<Option<Received>, AwsError> {
        if self.done || self.seen.len() as u64 >= self.expected {
            return Ok(None);
        }
        let letters = self.queue.receive(now).await?;
        if letters.is_empty() {
            self.done = true;
            return Ok(None);
        }
        let mut received = Received::default();
        for letter in letters {
            if self.seen.insert(letter.message_id.clone()) {
                received.fresh.push(letter);
            } else {
                received.again.push(letter);
            }
        }
        Ok(Some(received))
    }
}
