//! What to do with a push the destination refused as a whole: split it, or set its records
//! aside. A pure decision, tested as a table.
//!
//! A 400 answers for a whole push although only some entries may be invalid (Loki stores the
//! valid ones anyway; Datadog refuses the whole payload). Sending the two halves isolates the
//! invalid records, so that only they are dead-lettered; valid Loki entries sent again are
//! exact duplicates, which Loki drops. Such splits are bounded per project and batch
//! ([`MAX_REJECTION_SPLITS`]), so a destination that refuses everything costs a few requests,
//! not one per record. A 413 is always split: the push is too large, not the records wrong.

use crate::event::RejectReason;

pub const MAX_REJECTION_SPLITS: usize = 16;

/// Why the destination refused a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400/422: invalid entries.
    Invalid,
    /// 413.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitDecision {
    /// Send the two halves; `uses_budget` when it counts against [`MAX_REJECTION_SPLITS`].
    Split { uses_budget: bool },
    /// Every record of the push goes to the dead-letter queue.
    SetAside(RejectReason),
}

pub fn decide(refusal: Refusal, records: usize, splits_left: usize) -> SplitDecision {
    match refusal {
        _ if records <= 1 => SplitDecision::SetAside(match refusal {
            Refusal::Invalid => RejectReason::DestinationRejected,
            Refusal::TooLarge => RejectReason::RecordTooLarge,
        }),
        Refusal::TooLarge => SplitDecision::Split { uses_budget: false },
        Refusal::Invalid if splits_left > 0 => SplitDecision::Split { uses_budget: true },
        Refusal::Invalid => SplitDecision::SetAside(RejectReason::DestinationRejected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_pushes_are_split_or_set_aside_as_documented() {
        use Refusal::*;
        use SplitDecision::*;
        let table = [
            (Invalid, 2, 16, Split { uses_budget: true }),
            (Invalid, 2, 1, Split { uses_budget: true }),
            (Invalid, 2, 0, SetAside(RejectReason::DestinationRejected)),
            (Invalid, 1, 16, SetAside(RejectReason::DestinationRejected)),
            (TooLarge, 1000, 0, Split { uses_budget: false }),
            (TooLarge, 2, 16, Split { uses_budget: false }),
            (TooLarge, 1, 16, SetAside(RejectReason::RecordTooLarge)),
        ];
        for (refusal, records, splits_left, expected) in table {
            assert_eq!(
                decide(refusal, records, splits_left),
                expected,
                "{refusal:?} of {records} records with {splits_left} splits left"
            );
        }
    }
}
