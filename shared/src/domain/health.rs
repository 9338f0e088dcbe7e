//! A stream's delivery health, as the customer sees it next to the configuration: last
//! success, last errors with what to fix, failure streaks and event counts.
//!
//! The same type holds what one streamer container saw since it last wrote (built with
//! [`DeliveryHealth::success`] and [`DeliveryHealth::failure`]) and what the store holds since
//! the stream was created; [`DeliveryHealth::apply`] adds the first to the second, the same
//! for every store. The counts are approximate: what a container saw but had not written
//! when it stopped is lost.

use time::{Duration, OffsetDateTime};

/// How many errors a stream's health keeps, newest first.
pub const MAX_RECENT_ERRORS: usize = 10;

/// One failed delivery attempt, in the customer's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub at: OffsetDateTime,
    /// The destination's HTTP status; `None` when it could not be reached.
    pub destination_status: Option<u16>,
    /// What went wrong and what to fix; never holds a secret.
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryHealth {
    pub last_success_at: Option<OffsetDateTime>,
    /// Failed delivery attempts since the last success.
    pub consecutive_failures: u64,
    /// The refusals of the credentials (401/403 and the like) at the end of that streak.
    pub consecutive_auth_failures: u64,
    /// When the first of those refusals happened.
    pub auth_failures_since: Option<OffsetDateTime>,
    /// The configuration version those refusals were seen with: saving or enabling a stream
    /// makes a new version, which starts a new streak. Stored health only.
    pub auth_failures_version: Option<u64>,
    /// Newest first, at most [`MAX_RECENT_ERRORS`].
    pub recent_errors: Vec<DeliveryError>,
    pub events_delivered: u64,
    pub events_failed: u64,
    /// Records the stream's `event_filter` kept from leaving: acknowledged, never sent.
    pub events_filtered: u64,
    /// How long the latest delivery's events took from being sent to the queue to being
    /// accepted by the destination; `None` before the first delivery.
    pub last_delivery_lag: Option<DeliveryLag>,
}

/// How late a delivery's events arrived: the median, over its delivered events, of the time
/// from the event's send to the queue to the destination's acceptance of the push carrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryLag {
    /// When the delivery's last push was accepted.
    pub at: OffsetDateTime,
    pub millis: u64,
}

/// When the streamer suspends a stream whose credentials keep being refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspendPolicy {
    /// `SUSPEND_AFTER_AUTH_FAILURES`: consecutive refused attempts (default 10).
    pub after_auth_failures: u64,
    /// `SUSPEND_AFTER_SECONDS`: the refusals span at least this long (default 900 s), so a
    /// burst of retries in one minute never suspends a stream.
    pub after: Duration,
}

impl DeliveryHealth {
    pub fn last_error(&self) -> Option<&DeliveryError> {
        self.recent_errors.first()
    }

    pub fn last_failure_at(&self) -> Option<OffsetDateTime> {
        self.last_error().map(|e| e.at)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn is_failing(&self) -> bool {
        self.consecutive_failures > 0
    }

    /// Healthy (`Some(false)`), failing (`Some(true)`), or never delivered to (`None`).
    pub fn state(&self) -> Option<bool> {
        if self.is_failing() {
            Some(true)
        } else {
            self.last_success_at.map(|_| false)
        }
    }

    /// Adds `update`, what came after this: a container's observations since its last write.
    pub fn apply(&mut self, update: &DeliveryHealth) {
        self.events_delivered += update.events_delivered;
        self.events_failed += update.events_failed;
        self.events_filtered += update.events_filtered;
        // Containers write in any order: the latest observation wins.
        if let Some(lag) = update.last_delivery_lag
            && self.last_delivery_lag.is_none_or(|kept| kept.at <= lag.at)
        {
            self.last_delivery_lag = Some(lag);
        }
        if let Some(at) = update.last_success_at {
            self.last_success_at = self.last_success_at.max(Some(at));
            self.consecutive_failures = update.consecutive_failures;
            self.consecutive_auth_failures = update.consecutive_auth_failures;
            self.auth_failures_since = update.auth_failures_since;
        } else {
            self.consecutive_failures += update.consecutive_failures;
            let streak_goes_on = update.consecutive_auth_failures == update.consecutive_failures
                && self.consecutive_auth_failures > 0;
            if streak_goes_on {
                self.consecutive_auth_failures += update.consecutive_auth_failures;
            } else if update.consecutive_failures > 0 {
                self.consecutive_auth_failures = update.consecutive_auth_failures;
                self.auth_failures_since = update.auth_failures_since;
            }
        }
        if !update.recent_errors.is_empty() {
            let mut errors = update.recent_errors.clone();
            errors.append(&mut self.recent_errors);
            // Containers write in any order: keep the newest, newest first.
            errors.sort_by_key(|e| std::cmp::Reverse(e.at));
            errors.truncate(MAX_RECENT_ERRORS);
            self.recent_errors = errors;
        }
    }

    /// Adds `update`, seen by a container delivering with configuration version
    /// `seen_version`, to the stored health of a stream now at `current_version`. A new
    /// version starts a new refusal streak; refusals seen with another version neither
    /// extend nor break it (a customer who fixed the key must not find the stream suspended
    /// for refusals of the old one), though they are counted and shown like any failure.
    pub fn apply_seen(&mut self, update: &DeliveryHealth, seen_version: u64, current_version: u64) {
        if self.auth_failures_version != Some(current_version) {
            self.consecutive_auth_failures = 0;
            self.auth_failures_since = None;
            self.auth_failures_version = Some(current_version);
        }
        let streak = (self.consecutive_auth_failures, self.auth_failures_since);
        self.apply(update);
        if seen_version != current_version {
            (self.consecutive_auth_failures, self.auth_failures_since) = streak;
        }
    }

    /// Drops the refusal streak of observations made with a configuration that has changed
    /// since: they no longer say anything about the new one.
    pub fn forget_refusals(&mut self) {
        self.consecutive_auth_failures = 0;
        self.auth_failures_since = None;
    }

    /// A delivery attempt that succeeded.
    pub fn success(&mut self, at: OffsetDateTime) {
        self.last_success_at = Some(at);
        self.consecutive_failures = 0;
        self.consecutive_auth_failures = 0;
        self.auth_failures_since = None;
    }

    /// A delivery attempt that failed. `credentials_refused`: the destination refused the
    /// credentials (the trigger of suspension), as opposed to an outage or a refused payload.
    pub fn failure(&mut self, error: DeliveryError, credentials_refused: bool) {
        self.consecutive_failures += 1;
        if credentials_refused {
            if self.consecutive_auth_failures == 0 {
                self.auth_failures_since = Some(error.at);
            }
            self.consecutive_auth_failures += 1;
        } else {
            self.consecutive_auth_failures = 0;
            self.auth_failures_since = None;
        }
        self.recent_errors.insert(0, error);
        self.recent_errors.truncate(MAX_RECENT_ERRORS);
    }

    /// Whether adding `update` turns the stream healthy, failing, or tells its first outcome.
    pub fn changes_state(&self, update: &DeliveryHealth) -> bool {
        let mut after = self.clone();
        after.apply(update);
        after.state() != self.state()
    }

    pub fn should_suspend(&self, policy: SuspendPolicy, now: OffsetDateTime) -> bool {
        self.consecutive_auth_failures >= policy.after_auth_failures
            && self
                .auth_failures_since
                .is_some_and(|since| now - since >= policy.after)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-11-24 10:00 UTC);
    const POLICY: SuspendPolicy = SuspendPolicy {
        after_auth_failures: 3,
        after: Duration::minutes(15),
    };

    fn error(minutes: i64, status: Option<u16>) -> DeliveryError {
        DeliveryError {
            at: T0 + Duration::minutes(minutes),
            destination_status: status,
            message: format!("failed at +{minutes} min"),
        }
    }

    fn refused(update: &mut DeliveryHealth, minutes: i64) {
        update.failure(error(minutes, Some(401)), true);
    }

    #[test]
    fn refusals_spanning_enough_time_suspend_and_a_success_resets_them() {
        let mut health = DeliveryHealth::default();
        // Two containers each saw refusals; together they make the streak.
        let mut first = DeliveryHealth::default();
        refused(&mut first, 0);
        refused(&mut first, 5);
        health.apply(&first);
        assert!(!health.should_suspend(POLICY, T0 + Duration::minutes(5)));
        let mut second = DeliveryHealth::default();
        refused(&mut second, 14);
        health.apply(&second);
        assert_eq!(health.consecutive_auth_failures, 3);
        assert_eq!(health.auth_failures_since, Some(T0));
        assert!(
            !health.should_suspend(POLICY, T0 + Duration::minutes(14)),
            "three refusals, but within 15 minutes"
        );
        assert!(health.should_suspend(POLICY, T0 + Duration::minutes(15)));

        let mut recovered = DeliveryHealth::default();
        recovered.success(T0 + Duration::minutes(16));
        health.apply(&recovered);
        assert_eq!(health.consecutive_failures, 0);
        assert_eq!(health.consecutive_auth_failures, 0);
        assert!(!health.should_suspend(POLICY, T0 + Duration::hours(2)));
    }

    #[test]
    fn a_new_configuration_version_starts_a_new_refusal_streak() {
        let mut stored = DeliveryHealth::default();
        let mut old_key = DeliveryHealth::default();
        for minute in 0..20 {
            refused(&mut old_key, minute);
        }
        stored.apply_seen(&old_key, 1, 1);
        assert!(stored.should_suspend(POLICY, T0 + Duration::minutes(20)));

        // The customer saves a new key (version 2); one transient refusal follows.
        let mut new_key = DeliveryHealth::default();
        refused(&mut new_key, 21);
        stored.apply_seen(&new_key, 2, 2);
        assert_eq!(stored.consecutive_auth_failures, 1);
        assert_eq!(stored.auth_failures_since, Some(T0 + Duration::minutes(21)));
        assert!(!stored.should_suspend(POLICY, T0 + Duration::minutes(40)));

        // A container still on version 1 reports more refusals: counted and shown, never
        // part of version 2's streak, which they neither extend nor break.
        let mut stale = DeliveryHealth::default();
        for minute in 22..40 {
            refused(&mut stale, minute);
        }
        stale.events_failed = 18;
        stored.apply_seen(&stale, 1, 2);
        assert_eq!(stored.consecutive_auth_failures, 1);
        assert_eq!(stored.auth_failures_since, Some(T0 + Duration::minutes(21)));
        assert_eq!(stored.events_failed, 18);
        assert_eq!(stored.last_failure_at(), Some(T0 + Duration::minutes(39)));
        assert!(!stored.should_suspend(POLICY, T0 + Duration::minutes(60)));

        // Enabling again (version 3) starts from zero, even before anything is seen with it.
        stored.apply_seen(&DeliveryHealth::default(), 2, 3);
        assert_eq!(stored.consecutive_auth_failures, 0);
        assert_eq!(stored.auth_failures_version, Some(3));
    }

    #[test]
    fn an_outage_between_refusals_breaks_the_streak() {
        let mut health = DeliveryHealth::default();
        let mut update = DeliveryHealth::default();
        refused(&mut update, 0);
        refused(&mut update, 10);
        update.failure(error(11, Some(503)), false);
        refused(&mut update, 20);
        health.apply(&update);
        assert_eq!(health.consecutive_failures, 4);
        assert_eq!(health.consecutive_auth_failures, 1);
        assert_eq!(health.auth_failures_since, Some(T0 + Duration::minutes(20)));
    }

    #[test]
    fn recent_errors_keep_the_newest_ten_newest_first_across_containers() {
        let mut health = DeliveryHealth::default();
        let mut early = DeliveryHealth::default();
        let mut late = DeliveryHealth::default();
        for minute in 0..8 {
            early.failure(error(minute * 2, None), false);
            late.failure(error(minute * 2 + 1, Some(500)), false);
        }
        health.apply(&late);
        health.apply(&early);
        let minutes: Vec<i64> = health
            .recent_errors
            .iter()
            .map(|e| (e.at - T0).whole_minutes())
            .collect();
        assert_eq!(minutes, [15, 14, 13, 12, 11, 10, 9, 8, 7, 6]);
        assert_eq!(health.last_failure_at(), Some(T0 + Duration::minutes(15)));
        assert_eq!(health.consecutive_failures, 16);
    }

    #[test]
    fn counts_add_up_and_the_latest_success_wins() {
        let mut health = DeliveryHealth::default();
        for (delivered, failed, at) in [(5, 1, 10), (7, 0, 3)] {
            let mut update = DeliveryHealth {
                events_delivered: delivered,
                events_failed: failed,
                ..Default::default()
            };
            update.success(T0 + Duration::minutes(at));
            health.apply(&update);
        }
        assert_eq!((health.events_delivered, health.events_failed), (12, 1));
        assert_eq!(health.last_success_at, Some(T0 + Duration::minutes(10)));
    }

    #[test]
    fn the_latest_delivery_lag_wins_whatever_order_containers_write_in() {
        let lag = |minutes, millis| DeliveryHealth {
            last_delivery_lag: Some(DeliveryLag {
                at: T0 + Duration::minutes(minutes),
                millis,
            }),
            ..Default::default()
        };
        let mut health = DeliveryHealth::default();
        health.apply(&lag(10, 800));
        health.apply(&lag(3, 90_000));
        assert_eq!(health.last_delivery_lag, lag(10, 800).last_delivery_lag);
        health.apply(&DeliveryHealth::default());
        assert_eq!(health.last_delivery_lag, lag(10, 800).last_delivery_lag);
        health.apply(&lag(11, 1_200));
        assert_eq!(health.last_delivery_lag, lag(11, 1_200).last_delivery_lag);
    }

    #[test]
    fn a_state_change_is_a_first_outcome_a_first_failure_or_a_first_success() {
        let mut failing = DeliveryHealth::default();
        failing.failure(error(0, None), false);
        let mut healthy = DeliveryHealth::default();
        healthy.success(T0);
        let mut recovered_then_failed = healthy.clone();
        recovered_then_failed.failure(error(1, Some(500)), false);
        let new = DeliveryHealth::default();
        let table = [
            (&new, &failing, true),
            (&new, &healthy, true),
            (&healthy, &failing, true),
            (&failing, &failing, false),
            (&healthy, &healthy, false),
            (&failing, &healthy, true),
            (&failing, &recovered_then_failed, false),
            (&healthy, &recovered_then_failed, true),
            (&failing, &new, false),
        ];
        for (stored, update, changes) in table {
            assert_eq!(
                stored.changes_state(update),
                changes,
                "{stored:?} + {update:?}"
            );
        }
    }
}
