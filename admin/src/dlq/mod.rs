//! The dead-letter queue as operators see it: each message is one record set aside, with why
//! (`event_log_streaming::dead_letter`: reason, project, original send time and attempts).
//! `dlq summary` counts them ([`summary`]); `dlq redrive` moves the chosen ones back
//! ([`redrive`]). Both read the queue the same way ([`queue`]): each message received is
//! hidden while the command runs and made visible again at its end unless it was moved.

pub mod progress;
pub mod queue;
pub mod redrive;
pub mod summary;

use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use event_log_streaming::dead_letter::{PROJECT_ID_ATTRIBUTE, REASON_ATTRIBUTE};
use event_log_streaming::domain::ProjectId;
use event_log_streaming::event::{ATTEMPTS_ATTRIBUTE, RejectReason, SENT_TIMESTAMP_ATTRIBUTE};
use time::OffsetDateTime;

/// Every `rejection_reason` the streamer writes.
pub const REASONS: [&str; 7] = [
    "malformed_json",
    "not_an_object",
    "empty_batch",
    "invalid_project_id",
    "record_too_large",
    "destination_rejected",
    "retries_exhausted",
];

/// One message of the dead-letter queue, as received.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `rejection_reason`; none on a message moved by a queue's redrive policy.
    pub reason: Option<String>,
    /// `project_id`, when the record had a valid one.
    pub project: Option<String>,
    /// When its record was first sent: `els_sent_timestamp`, else the message's own
    /// `SentTimestamp` (which a redrive policy's move keeps).
    pub sent_at: OffsetDateTime,
    /// `els_attempts`: the delivery attempts its record had; none on a message moved by a
    /// redrive policy.
    pub attempts: Option<u32>,
}

impl DeadLetter {
    /// `None` for a message without an id, body or receipt handle (SQS always sets them).
    pub fn from_sqs(message: &Message, received_at: OffsetDateTime) -> Option<Self> {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        let sent_ms = attribute(SENT_TIMESTAMP_ATTRIBUTE).or_else(|| {
            message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .cloned()
        });
        let sent_at = sent_ms
            .and_then(|ms| ms.trim().parse::<i64>().ok())
            .and_then(|ms| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .unwrap_or(received_at);
        Some(Self {
            message_id: message.message_id()?.to_owned(),
            receipt_handle: message.receipt_handle()?.to_owned(),
            body: message.body()?.to_owned(),
            reason: attribute(REASON_ATTRIBUTE),
            project: attribute(PROJECT_ID_ATTRIBUTE),
            sent_at,
            attempts: attribute(ATTEMPTS_ATTRIBUTE).and_then(|a| a.trim().parse().ok()),
        })
    }

    pub fn age(&self, now: OffsetDateTime) -> Duration {
        (now - self.sent_at).try_into().unwrap_or(Duration::ZERO)
    }

    /// The original send time, in the Unix milliseconds of `els_sent_timestamp`.
    pub fn sent_ms(&self) -> i128 {
        self.sent_at.unix_timestamp_nanos() / 1_000_000
    }
}

/// Which messages a redrive moves: all the conditions given.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub reason: Option<String>,
    pub project: Option<ProjectId>,
    pub older_than: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

impl Filter {
    /// The command line's `--reason`, `--project` and `--older-than`, checked.
    pub fn parse(
        reason: Option<&str>,
        project: Option<&str>,
        older_than: Option<&str>,
    ) -> Result<Self, FilterError> {
        if let Some(reason) = reason
            && !REASONS.contains(&reason)
        {
            return Err(FilterError(format!(
                "--reason {reason:?}: expected one of {}",
                REASONS.join(", ")
            )));
        }
        let project = project
            .map(|p| ProjectId::parse(p).map_err(|e| FilterError(format!("--project {p:?}: {e}"))))
            .transpose()?;
        let older_than = older_than
            .map(|d| parse_duration(d).map_err(|e| FilterError(format!("--older-than: {e}"))))
            .transpose()?;
        Ok(Self {
            reason: reason.map(str::to_owned),
            project,
            older_than,
        })
    }

    pub fn chooses(&self, letter: &DeadLetter, now: OffsetDateTime) -> bool {
        let reason = self
            .reason
            .as_ref()
            .is_none_or(|r| letter.reason.as_ref() == Some(r));
        let project = self
            .project
            .as_ref()
            .is_none_or(|p| letter.project.as_deref() == Some(p.as_str()));
        let old = self.older_than.is_none_or(|d| letter.age(now) > d);
        reason && project && old
    }
}

/// A whole number and a unit: `45s`, `30m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: write 30m, 2h or 1d"))?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number: write 30m, 2h or 1d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The age bands of `dlq summary`: an hour, a day, and Loki's default 7-day limit on old
/// entries (a redrive beyond it is refused again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AgeBand {
    UnderAnHour,
    UnderADay,
    UnderAWeek,
    AWeekOrMore,
}

impl AgeBand {
    pub fn of(age: Duration) -> Self {
        const HOUR: u64 = 3_600;
        match age.as_secs() {
            s if s < HOUR => Self::UnderAnHour,
            s if s < 24 * HOUR => Self::UnderADay,
            s if s < 7 * 24 * HOUR => Self::UnderAWeek,
            _ => Self::AWeekOrMore,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::UnderAnHour => "under 1h",
            Self::UnderADay => "1h to 1d",
            Self::UnderAWeek => "1d to 7d",
            Self::AWeekOrMore => "7d or more",
        }
    }
}

/// Compiles only while [`REASONS`] names every reason: a new one must be added there.
#[allow(dead_code)]
fn every_reason_is_listed(reason: RejectReason) -> bool {
    match reason {
        RejectReason::MalformedJson
        | RejectReason::NotAnObject
        | RejectReason::EmptyBatch
        | RejectReason::InvalidProjectId
        | RejectReason::RecordTooLarge
        | RejectReason::DestinationRejected
        | RejectReason::RetriesExhausted => REASONS.contains(&reason.as_str()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn durations_are_a_number_and_a_unit() {
        let table = [
            ("45s", Some(45)),
            ("30m", Some(1_800)),
            ("2h", Some(7_200)),
            ("1d", Some(86_400)),
            (" 7d ", Some(604_800)),
            ("0m", Some(0)),
            ("30", None),
            ("m", None),
            ("1.5h", None),
            ("2w", None),
            ("-1h", None),
            ("99999999999999999999d", None),
        ];
        for (text, seconds) in table {
            assert_eq!(
                parse_duration(text).ok(),
                seconds.map(Duration::from_secs),
                "{text:?}"
            );
        }
    }

    pub(crate) fn letter(
        reason: Option<&str>,
        project: Option<&str>,
        sent_at: OffsetDateTime,
    ) -> DeadLetter {
        DeadLetter {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: "{}".into(),
            reason: reason.map(str::to_owned),
            project: project.map(str::to_owned),
            sent_at,
            attempts: None,
        }
    }

    #[test]
    fn a_filter_chooses_what_matches_every_condition_given() {
        let now = datetime!(2026-03-10 12:00 UTC);
        let old = letter(
            Some("retries_exhausted"),
            Some("p-1"),
            datetime!(2026-03-10 09:00 UTC),
        );
        let fresh = letter(
            Some("destination_rejected"),
            None,
            datetime!(2026-03-10 11:50 UTC),
        );
        let moved_by_policy = letter(None, None, datetime!(2026-03-01 00:00 UTC));
        let table = [
            (Filter::parse(None, None, None), [true, true, true]),
            (
                Filter::parse(Some("retries_exhausted"), None, None),
                [true, false, false],
            ),
            (Filter::parse(None, Some("p-1"), None), [true, false, false]),
            (Filter::parse(None, None, Some("1h")), [true, false, true]),
            (Filter::parse(None, None, Some("3h")), [false, false, true]),
            (
                Filter::parse(Some("retries_exhausted"), Some("p-1"), Some("2h")),
                [true, false, false],
            ),
            (
                Filter::parse(Some("retries_exhausted"), Some("p-2"), None),
                [false, false, false],
            ),
        ];
        for (filter, expected) in table {
            let filter = filter.unwrap();
            let chosen = [&old, &fresh, &moved_by_policy].map(|l| filter.chooses(l, now));
            assert_eq!(chosen, expected, "{filter:?}");
        }
    }

    #[test]
    fn filters_refuse_what_would_match_nothing_by_mistake() {
        assert!(Filter::parse(Some("retry_exhausted"), None, None).is_err());
        assert!(Filter::parse(None, Some("bad id"), None).is_err());
        assert!(Filter::parse(None, None, Some("2 hours")).is_err());
    }

    #[test]
    fn ages_fall_in_bands_bounded_by_an_hour_a_day_and_a_week() {
        let table = [
            (0, AgeBand::UnderAnHour),
            (3_599, AgeBand::UnderAnHour),
            (3_600, AgeBand::UnderADay),
            (86_399, AgeBand::UnderADay),
            (86_400, AgeBand::UnderAWeek),
            (604_800, AgeBand::AWeekOrMore),
        ];
        for (seconds, band) in table {
            assert_eq!(AgeBand::of(Duration::from_secs(seconds)), band, "{seconds}");
        }
    }

    #[test]
    fn every_reason_the_streamer_writes_can_be_filtered_on() {
        for reason in [
            RejectReason::MalformedJson,
            RejectReason::NotAnObject,
            RejectReason::EmptyBatch,
            RejectReason::InvalidProjectId,
            RejectReason::RecordTooLarge,
            RejectReason::DestinationRejected,
            RejectReason::RetriesExhausted,
        ] {
            assert!(every_reason_is_listed(reason), "{reason}");
        }
    }
}
