//! `dlq redrive`: moves the dead-letter queue's chosen messages back to a queue the streamer
//! consumes, each as it was: the same body, with its record's original send time
//! (`els_sent_timestamp`) and attempts (`els_attempts`), so that the no-backfill rule and the
//! event time hold and its retries continue where they stopped.
//!
//! The streamer believes those attributes only on the retry queue (only it, and the role
//! `RedriveRoleArn` names, may send there: `event_log_streaming::event::MessageSource`), so
//! that is the default destination; on the event queue they are carried but not believed.
//!
//! Nothing is lost whatever stops the command: a message is deleted from the dead-letter
//! queue only after SQS accepted its copy. A failed send leaves it there, visible again at the
//! end of the run; a command killed midway leaves what it held hidden for at most
//! `queue::SCAN_VISIBILITY`. The one thing an interruption can do is duplicate: killed between
//! a send and its delete, the next redrive sends that message again (at most one batch).
//! Ctrl-C stops the command between batches, with nothing held.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use event_log_streaming::event::{ATTEMPTS_ATTRIBUTE, SENT_TIMESTAMP_ATTRIBUTE};
use time::OffsetDateTime;

use super::progress::Progress;
use super::queue::{BATCH, DeadLetters};
use super::{DeadLetter, Filter};
use crate::aws_error::AwsError;
use crate::resources::Resource;

/// The most a SendMessageBatch may carry, all messages together (SQS's limit as of 2024;
/// since raised to 1 MiB, but not in every region and emulator at once).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Room for the two attributes, their names and types, per message.
const ATTRIBUTES_BYTES: usize = 100;

/// Where redriven messages go.
pub struct Target {
    sqs: Client,
    url: String,
    queue: Resource,
}

impl Target {
    /// `queue` is [`Resource::RetryQueue`] or [`Resource::EventQueue`].
    pub fn new(sqs: Client, url: impl Into<String>, queue: Resource) -> Self {
        Self {
            sqs,
            url: url.into(),
            queue,
        }
    }

    pub fn description(&self) -> &'static str {
        self.queue.description()
    }

    fn resource(&self) -> String {
        let why = match self.queue {
            // Its queue policy is the usual reason for a refusal.
            Resource::RetryQueue => {
                " (only the streamer and the RedriveRoleArn role may send to it; or redrive --to event-queue)"
            }
            _ => "",
        };
        format!("{} {}{why}", self.queue.description(), self.url)
    }

    /// One SendMessageBatch; per message, whether SQS took it (else its error).
    async fn send(&self, letters: &[DeadLetter]) -> Result<Vec<Result<(), String>>, AwsError> {
        let number = |value: String| {
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(value)
                .build()
                .expect("type and value are set")
        };
        let entries = letters.iter().enumerate().map(|(i, letter)| {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&letter.body)
                .message_attributes(
                    SENT_TIMESTAMP_ATTRIBUTE,
                    number(letter.sent_ms().to_string()),
                );
            if let Some(attempts) = letter.attempts {
                entry = entry.message_attributes(ATTEMPTS_ATTRIBUTE, number(attempts.to_string()));
            }
            entry.build().expect("id and body are set")
        });
        let output = self
            .sqs
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries.collect()))
            .send()
            .await
            .map_err(|e| AwsError::of("sqs:SendMessage", self.resource(), &e))?;
        let mut results = vec![Ok(()); letters.len()];
        for failed in output.failed() {
            if let Some(result) = failed
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| results.get_mut(i))
            {
                *result = Err(format!(
                    "{}: {}",
                    failed.code(),
                    failed.message().unwrap_or("no message")
                ));
            }
        }
        Ok(results)
    }
}

/// What a redrive did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Messages read (each counted once).
    pub read: usize,
    /// Sent to the target and deleted from the dead-letter queue.
    pub moved: usize,
    /// Not chosen by the filter; left in the dead-letter queue.
    pub kept: usize,
    /// Not taken by the target (id, why); left in the dead-letter queue.
    pub failed: Vec<(String, String)>,
    /// Sent, but still in the dead-letter queue: a later redrive would send them again.
    pub not_deleted: Vec<String>,
    /// Stopped by Ctrl-C before the queue was read through.
    pub interrupted: bool,
}

impl Report {
    pub fn counts(&self) -> String {
        format!(
            "moved {}, kept {}, failed {}",
            self.moved,
            self.kept,
            self.failed.len() + self.not_deleted.len()
        )
    }

    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.not_deleted.is_empty() && !self.interrupted
    }
}

/// A redrive that stopped on a failed call; what it did until then is in `report`.
#[derive(Debug, thiserror::Error)]
#[error("{source} (stopped after moving {}; the rest stay in the dead-letter queue)", .report.moved)]
pub struct RedriveError {
    #[source]
    pub source: AwsError,
    pub report: Report,
}

pub struct Redrive<'a> {
    pub from: &'a DeadLetters,
    pub to: &'a Target,
    pub filter: &'a Filter,
    pub now: OffsetDateTime,
    /// Set by Ctrl-C: stop before the next receive.
    pub stop: &'a AtomicBool,
}

/// What a run has in hand.
#[derive(Default)]
struct Run {
    report: Report,
    /// Messages read and left in the queue, by id (newest receipt handle): released at the end.
    held: HashMap<String, DeadLetter>,
    moved: HashSet<String>,
}

impl Redrive<'_> {
    pub async fn run(&self, progress: &mut Progress) -> Result<Report, RedriveError> {
        let mut run = Run::default();
        let outcome = self.read_through(&mut run, progress).await;
        let held: Vec<DeadLetter> = run.held.into_values().collect();
        let released = self.from.release(&held).await;
        progress.finish();
        let report = run.report;
        match outcome.and(released.map(|_| ())) {
            Ok(()) => Ok(report),
            Err(source) => Err(RedriveError { source, report }),
        }
    }

    async fn read_through(&self, run: &mut Run, progress: &mut Progress) -> Result<(), AwsError> {
        let mut scan = self.from.scan().await?;
        progress.start(scan.expected());
        loop {
            if self.stop.load(Ordering::SeqCst) {
                run.report.interrupted = true;
                return Ok(());
            }
            let Some(received) = scan.next(self.now).await? else {
                return Ok(());
            };
            // Seen again: a copy of one moved already is a duplicate delivery, gone with it.
            let (duplicates, again): (Vec<_>, Vec<_>) = received
                .again
                .into_iter()
                .partition(|l| run.moved.contains(&l.message_id));
            self.from.delete(&duplicates).await?;
            hold(run, again);
            run.report.read += received.fresh.len();
            let (chosen, others): (Vec<_>, Vec<_>) = received
                .fresh
                .into_iter()
                .partition(|l| self.filter.chooses(l, self.now));
            run.report.kept += others.len();
            hold(run, others);
            for batch in batches(chosen) {
                self.move_batch(run, batch).await?;
            }
            progress.update(&run.report);
        }
    }

    /// Sends `batch`, then deletes from the dead-letter queue what the target took.
    async fn move_batch(&self, run: &mut Run, batch: Vec<DeadLetter>) -> Result<(), AwsError> {
        let results = match self.to.send(&batch).await {
            Ok(results) => results,
            Err(err) => {
                hold(run, batch);
                return Err(err);
            }
        };
        let mut sent = Vec::new();
        for (letter, result) in batch.into_iter().zip(results) {
            match result {
                Ok(()) => sent.push(letter),
                Err(why) => {
                    run.report.failed.push((letter.message_id.clone(), why));
                    hold(run, vec![letter]);
                }
            }
        }
        run.report.moved += sent.len();
        run.moved.extend(sent.iter().map(|l| l.message_id.clone()));
        match self.from.delete(&sent).await {
            Ok(not_deleted) => {
                run.report.not_deleted.extend(not_deleted);
                Ok(())
            }
            Err(err) => {
                run.report
                    .not_deleted
                    .extend(sent.into_iter().map(|l| l.message_id));
                Err(err)
            }
        }
    }
}

fn hold(run: &mut Run, letters: Vec<DeadLetter>) {
    for letter in letters {
        run.held.insert(letter.message_id.clone(), letter);
    }
}

/// `letters` in SendMessageBatch calls: at most [`BATCH`] messages and [`MAX_BATCH_BYTES`]
/// each. A message alone always fits: it came from SQS with more attributes.
fn batches(letters: Vec<DeadLetter>) -> Vec<Vec<DeadLetter>> {
    let mut batches: Vec<Vec<DeadLetter>> = Vec::new();
    let mut bytes = 0;
    for letter in letters {
        let size = letter.body.len() + ATTRIBUTES_BYTES;
        match batches.last_mut() {
            Some(batch) if batch.len() < BATCH && bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                batch.push(letter);
            }
            _ => {
                bytes = size;
                batches.push(vec![letter]);
            }
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(body_len: usize) -> DeadLetter {
        DeadLetter {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: "x".repeat(body_len),
            reason: None,
            project: None,
            sent_at: OffsetDateTime::UNIX_EPOCH,
            attempts: None,
        }
    }

    #[test]
    fn batches_hold_ten_messages_and_fit_the_size_limit() {
        let sizes = |letters: Vec<DeadLetter>| -> Vec<usize> {
            batches(letters).iter().map(Vec::len).collect()
        };
        assert_eq!(sizes((0..25).map(|_| letter(10)).collect()), [10, 10, 5]);
        assert_eq!(
            sizes((0..3).map(|_| letter(200 * 1024)).collect()),
            [1, 1, 1]
        );
        assert_eq!(
            sizes(vec![
                letter(100 * 1024),
                letter(100 * 1024),
                letter(100 * 1024)
            ]),
            [2, 1]
        );
        assert!(batches(Vec::new()).is_empty());
    }
}
