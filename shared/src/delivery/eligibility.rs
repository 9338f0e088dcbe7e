//! Which records of a project are streamed: none when the project has no stream or it is
//! disabled or suspended, none produced before the last enable (no backfill), none that the
//! stream's `event_filter` does not pass, and none, for now, when the store or the stream's
//! credential could not be read (they are retried).
//!
//! The filter is asked last, so only records that would otherwise be streamed are read for
//! their `action` and `status`, and a stream without a filter reads nothing more of them.
//! Filtered records are acknowledged and counted, as they would be if the credential could be
//! read: retrying them would only filter them again.

use std::sync::Arc;

use tracing::warn;

use super::Slotted;
use super::outcome::{RecordOutcome, SkipReason};
use crate::domain::controls::EventFilter;
use crate::domain::{ProjectId, StreamConfig};
use crate::event::{EventRecord, FailedRecord};
use crate::store::Resolved;

pub struct Eligible<'a> {
    /// Records to send to the project's destination.
    pub streamable: Vec<Slotted<'a>>,
    /// Records settled without sending: skipped, or failed for want of a configuration or a
    /// credential.
    pub settled: Vec<(usize, RecordOutcome)>,
    /// Of those, the records the stream's filter did not pass.
    pub filtered: u64,
}

pub fn partition<'a>(
    project: &ProjectId,
    resolved: &Resolved,
    records: Vec<Slotted<'a>>,
) -> Eligible<'a> {
    let settle_all = |outcome: &dyn Fn(&EventRecord) -> RecordOutcome| Eligible {
        streamable: Vec::new(),
        settled: records.iter().map(|(i, r)| (*i, outcome(r))).collect(),
        filtered: 0,
    };
    match resolved {
        Resolved::NotConfigured => {
            settle_all(&|_| RecordOutcome::Skipped(SkipReason::NotConfigured))
        }
        Resolved::Unavailable(error) => {
            warn!(project_id = %project, error = %error, "configuration lookup failed; the records will be retried");
            let detail: Arc<str> = format!("configuration lookup failed: {error}").into();
            settle_all(&|r| RecordOutcome::Failed(FailedRecord::new(r, &detail)))
        }
        Resolved::Stream(stream) => by_config(&stream.stored.config, records),
        Resolved::NoCredential { stored, error } => {
            let mut eligible = by_config(&stored.config, records);
            let detail: Arc<str> = format!("the credential could not be read: {error}").into();
            let failed = eligible
                .streamable
                .drain(..)
                .map(|(i, r)| (i, RecordOutcome::Failed(FailedRecord::new(&r, &detail))));
            eligible.settled.extend(failed);
            eligible
        }
    }
}

/// Records of a configured project, judged by its status and enable time, then by its filter.
fn by_config<'a>(config: &StreamConfig, records: Vec<Slotted<'a>>) -> Eligible<'a> {
    let filter = config
        .controls
        .event_filter
        .as_ref()
        .filter(|f| !f.passes_all());
    let mut eligible = Eligible {
        streamable: Vec::with_capacity(records.len()),
        settled: Vec::new(),
        filtered: 0,
    };
    for (index, record) in records {
        let reason = SkipReason::of(config.state.eligibility(record.sent_at))
            .or_else(|| filtered_out(filter, &record).then_some(SkipReason::Filtered));
        match reason {
            None => eligible.streamable.push((index, record)),
            Some(reason) => {
                eligible.filtered += u64::from(reason == SkipReason::Filtered);
                eligible
                    .settled
                    .push((index, RecordOutcome::Skipped(reason)));
            }
        }
    }
    eligible
}

fn filtered_out(filter: Option<&EventFilter>, record: &EventRecord) -> bool {
    filter.is_some_and(|filter| !filter.matches(record.raw))
}
