//! What became of each record, of each project's delivery, and of a whole batch.

use std::time::Duration;

use crate::domain::Eligibility;
use crate::event::{FailedRecord, RejectedRecord};
use crate::metrics::BatchMetrics;

/// Why a record was acknowledged without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    NotConfigured,
    Disabled,
    Suspended,
    /// Produced before the last enable: re-enabling never backfills.
    BeforeEnabled,
    /// Not passed by the stream's `event_filter`: counted in its health, never sent.
    Filtered,
}

impl SkipReason {
    /// The skip reason of a record that is not streamed; `None` when it is.
    pub fn of(eligibility: Eligibility) -> Option<Self> {
        match eligibility {
            Eligibility::Stream => None,
            Eligibility::Disabled => Some(Self::Disabled),
            Eligibility::Suspended => Some(Self::Suspended),
            Eligibility::BeforeEnabled => Some(Self::BeforeEnabled),
        }
    }
}

#[derive(Debug)]
pub enum RecordOutcome {
    /// `lag`: from the record's send to the queue to the acceptance of the push carrying it.
    Delivered {
        lag: Duration,
    },
    Skipped(SkipReason),
    /// Not delivered now; sent again later (its message, or the record alone).
    Failed(FailedRecord),
    /// Can never be delivered; it goes to the dead-letter queue.
    Rejected(RejectedRecord),
}

/// How one project's delivery in a batch ended, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectStatus {
    /// Every sendable record was delivered.
    Delivered,
    /// Some records were refused as invalid or too large; the others were delivered.
    Rejected,
    /// Some records could not be delivered now.
    Failed,
}

impl ProjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// What became of a batch.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    /// Messages SQS must deliver again.
    pub failed_message_ids: Vec<String>,
    /// Of those, by index in the batch, the ones that may be delivered later (a failing
    /// destination or store, no time left); the others only hold rejected records.
    pub retryable_messages: Vec<usize>,
    /// With no dead-letter queue: records that can never be delivered, by message index,
    /// kept in their (failed) messages.
    pub kept_rejections: Vec<(usize, RejectedRecord)>,
    pub summary: BatchSummary,
    /// What the invocation's metric lines said.
    pub metrics: BatchMetrics,
}

/// Record counts of one batch, logged once per invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub messages: usize,
    pub records: usize,
    pub delivered: usize,
    pub skipped_not_configured: usize,
    pub skipped_disabled: usize,
    pub skipped_suspended: usize,
    pub skipped_before_enabled: usize,
    /// Records the stream's `event_filter` did not pass.
    pub skipped_filtered: usize,
    /// Push attempts beyond the first.
    pub retries: usize,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: usize,
    /// Records that could not be delivered now.
    pub failed_records: usize,
    /// Of those, the records sent back to the retry queue on their own.
    pub requeued: usize,
    pub failed_messages: usize,
    /// Of those, messages delivered again whole although some of their records had been
    /// handed elsewhere (both queues failed twice): their redelivery repeats those records.
    pub redelivered_whole: usize,
}

impl BatchSummary {
    /// Counts a record's outcome; rejected records are counted once dead-lettered.
    pub fn count(&mut self, outcome: &RecordOutcome) {
        match outcome {
            RecordOutcome::Delivered { .. } => self.delivered += 1,
            RecordOutcome::Skipped(reason) => match reason {
                SkipReason::NotConfigured => self.skipped_not_configured += 1,
                SkipReason::Disabled => self.skipped_disabled += 1,
                SkipReason::Suspended => self.skipped_suspended += 1,
                SkipReason::BeforeEnabled => self.skipped_before_enabled += 1,
                SkipReason::Filtered => self.skipped_filtered += 1,
            },
            RecordOutcome::Failed(_) => self.failed_records += 1,
            RecordOutcome::Rejected(_) => {}
        }
    }

    pub fn log(&self) {
        tracing::info!(
            messages = self.messages,
            records = self.records,
            delivered = self.delivered,
            skipped_not_configured = self.skipped_not_configured,
            skipped_disabled = self.skipped_disabled,
            skipped_suspended = self.skipped_suspended,
            skipped_before_enabled = self.skipped_before_enabled,
            skipped_filtered = self.skipped_filtered,
            retries = self.retries,
            dead_lettered = self.dead_lettered,
            failed_records = self.failed_records,
            requeued = self.requeued,
            failed_messages = self.failed_messages,
            redelivered_whole = self.redelivered_whole,
            "batch processed"
        );
    }
}
