//! The status state machine both functions drive: the config API enables and disables, the
//! streamer suspends a stream whose credentials keep being refused.
//!
//! ```text
//!            enable                 (credentials refused N times over S seconds)
//! DISABLED ──────────▶ ACTIVE ───────────────────────────────────────▶ SUSPENDED
//!    ▲  ◀──────────────  │ ▲                  enable                        │
//!    │     disable       │ └────────────────────────────────────────────────┘
//!    └───────────────────┴──────────────── disable ◀────────────────────────┘
//! ```
//! An update of the destination keeps the status: a SUSPENDED stream stays suspended until
//! the customer enables it again, after checking the new credentials with the test endpoint.
//! Every enable is dated `start_delay` ahead (the streamer's cache TTL), so that only events
//! produced from then on are streamed: no backfill, and none lost to a warm cache.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamingStatus {
    Active,
    Disabled,
    Suspended,
}

impl StreamingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Disabled => "DISABLED",
            Self::Suspended => "SUSPENDED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Active, Self::Disabled, Self::Suspended]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// Why and since when the streamer suspended a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub at: OffsetDateTime,
    pub reason: String,
}

/// A stream's status with the facts that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub status: StreamingStatus,
    /// When streaming was last turned on; events produced before it are never streamed.
    pub enabled_at: Option<OffsetDateTime>,
    /// Set exactly while the status is SUSPENDED.
    pub suspension: Option<Suspension>,
}

/// Whether a record of a configured project is streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    Stream,
    Disabled,
    Suspended,
    /// Produced before the last enable: re-enabling never backfills.
    BeforeEnabled,
}

impl StreamState {
    /// A new configuration: disabled until the customer enables it.
    pub fn created() -> Self {
        Self {
            status: StreamingStatus::Disabled,
            enabled_at: None,
            suspension: None,
        }
    }

    /// DISABLED or SUSPENDED → ACTIVE, streaming events produced from `now + start_delay` on.
    /// `None` when already active: its `enabled_at` stays, so nothing sent since is skipped.
    pub fn enable(&self, now: OffsetDateTime, start_delay: Duration) -> Option<Self> {
        (self.status != StreamingStatus::Active).then(|| Self {
            status: StreamingStatus::Active,
            enabled_at: Some(now + start_delay),
            suspension: None,
        })
    }

    /// ACTIVE or SUSPENDED → DISABLED; `None` when already disabled.
    pub fn disable(&self) -> Option<Self> {
        (self.status != StreamingStatus::Disabled).then_some(Self {
            status: StreamingStatus::Disabled,
            enabled_at: self.enabled_at,
            suspension: None,
        })
    }

    /// ACTIVE → SUSPENDED; `None` from any other status (the customer got there first).
    pub fn suspend(&self, suspension: Suspension) -> Option<Self> {
        (self.status == StreamingStatus::Active).then_some(Self {
            status: StreamingStatus::Suspended,
            enabled_at: self.enabled_at,
            suspension: Some(suspension),
        })
    }

    /// Compared in whole milliseconds, the precision of SQS's `SentTimestamp`, so an event
    /// sent in the millisecond of the enable counts as after it.
    pub fn eligibility(&self, sent_at: OffsetDateTime) -> Eligibility {
        let millis = |t: OffsetDateTime| t.unix_timestamp_nanos().div_euclid(1_000_000);
        match self.status {
            StreamingStatus::Disabled => Eligibility::Disabled,
            StreamingStatus::Suspended => Eligibility::Suspended,
            StreamingStatus::Active => match self.enabled_at {
                Some(enabled_at) if millis(sent_at) < millis(enabled_at) => {
                    Eligibility::BeforeEnabled
                }
                _ => Eligibility::Stream,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-24 10:00 UTC);
    const DELAY: Duration = Duration::seconds(30);

    fn state(status: StreamingStatus) -> StreamState {
        StreamState {
            status,
            enabled_at: Some(datetime!(2026-11-24 09:00 UTC)),
            suspension: (status == StreamingStatus::Suspended).then(|| Suspension {
                at: datetime!(2026-11-24 09:30 UTC),
                reason: "401".into(),
            }),
        }
    }

    #[test]
    fn every_transition_goes_where_the_diagram_says() {
        use StreamingStatus::*;
        let suspension = Suspension {
            at: NOW,
            reason: "refused".into(),
        };
        // (from, enable, disable, suspend): the status after each, or None for no change.
        let table = [
            (Disabled, Some(Active), None, None),
            (Active, None, Some(Disabled), Some(Suspended)),
            (Suspended, Some(Active), Some(Disabled), None),
        ];
        for (from, enable, disable, suspend) in table {
            let s = state(from);
            let status = |next: Option<StreamState>| next.map(|n| n.status);
            assert_eq!(status(s.enable(NOW, DELAY)), enable, "enable from {from:?}");
            assert_eq!(status(s.disable()), disable, "disable from {from:?}");
            assert_eq!(
                status(s.suspend(suspension.clone())),
                suspend,
                "suspend from {from:?}"
            );
        }
    }

    #[test]
    fn enabling_dates_the_start_ahead_and_clears_the_suspension() {
        let resumed = state(StreamingStatus::Suspended)
            .enable(NOW, DELAY)
            .unwrap();
        assert_eq!(resumed.enabled_at, Some(NOW + DELAY));
        assert_eq!(resumed.suspension, None);
        assert_eq!(
            state(StreamingStatus::Suspended)
                .disable()
                .unwrap()
                .suspension,
            None
        );
    }

    #[test]
    fn only_events_sent_from_the_enable_on_are_streamed() {
        let active = StreamState {
            enabled_at: Some(datetime!(2026-11-24 10:00:00.000_900 UTC)),
            ..state(StreamingStatus::Active)
        };
        let table = [
            (
                datetime!(2026-11-24 09:59:59.999 UTC),
                Eligibility::BeforeEnabled,
            ),
            // SentTimestamp has millisecond precision: the enable's millisecond counts as after.
            (datetime!(2026-11-24 10:00:00.000 UTC), Eligibility::Stream),
            (datetime!(2026-11-24 10:00:00.001 UTC), Eligibility::Stream),
        ];
        for (sent_at, expected) in table {
            assert_eq!(active.eligibility(sent_at), expected, "{sent_at}");
        }
        assert_eq!(
            state(StreamingStatus::Disabled).eligibility(NOW),
            Eligibility::Disabled
        );
        assert_eq!(
            state(StreamingStatus::Suspended).eligibility(NOW),
            Eligibility::Suspended
        );
    }
}
