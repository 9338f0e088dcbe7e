//! Which records of a project are streamed: none when the project has no stream or it is
//! disabled or suspended, none produced before the last enable (no backfill), and none, for
//! now, when the store could not say (they are retried).

use std::sync::Arc;

use tracing::warn;

use super::Slotted;
use super::outcome::{RecordOutcome, SkipReason};
use crate::domain::ProjectId;
use crate::event::{EventRecord, FailedRecord};
use crate::store::Resolved;

pub struct Eligible<'a> {
    /// Records to send to the project's destination.
    pub streamable: Vec<Slotted<'a>>,
    /// Records settled without sending: skipped, or failed for want of a configuration.
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
        Resolved::Stream(stream) => {
            let state = &stream.stored.config.state;
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
    }
}
