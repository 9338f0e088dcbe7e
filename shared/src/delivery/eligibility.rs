//! Which records of a project are streamed: none when the project has no stream or it is
//! disabled or suspended, none produced before the last enable (no backfill), and none, for
//! now, when the store or the stream's credential could not be read (they are retried).

use std::sync::Arc;

use tracing::warn;

use super::Slotted;
use super::outcome::{RecordOutcome, SkipReason};
use crate::domain::{ProjectId, StreamState};
use crate::event::{EventRecord, FailedRecord};
use crate::store::Resolved;

pub struct Eligible<'a> {
    /// Records to send to the project's destination.
    pub streamable: Vec<Slotted<'a>>,
    /// Records settled without sending: skipped, or failed for want of a configuration or a
    /// credential.
    pub settled: Vec<(usize, RecordOutcome)>,
}

pub fn partition<'a>(
    project: &ProjectId,
    resolved: &Resolved,
    records: Vec<Slotted<'a>>,
) -> Eligible<'a> {
    let settle_all = |outcome: &dyn Fn(&EventRecord) -> RecordOutcome| Eligible {
        streamable: Vec::new(),
        settled: records.iter().map(|(i, r)| (*i, outcome(r))).collect(),
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
        Resolved::Stream(stream) => by_state(&stream.stored.config.state, records),
        Resolved::NoCredential { stored, error } => {
            let mut eligible = by_state(&stored.config.state, records);
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

/// Records of a configured project, judged by its status and enable time.
fn by_state<'a>(state: &StreamState, records: Vec<Slotted<'a>>) -> Eligible<'a> {
    let mut eligible = Eligible {
        streamable: Vec::with_capacity(records.len()),
        settled: Vec::new(),
    };
    for (index, record) in records {
        match SkipReason::of(state.eligibility(record.sent_at)) {
            None => eligible.streamable.push((index, record)),
            Some(reason) => eligible
                .settled
                .push((index, RecordOutcome::Skipped(reason))),
        }
    }
    eligible
}
