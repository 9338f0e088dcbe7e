//! A clock for tests that talk to real servers, where Tokio's paused clock cannot serve (it
//! jumps ahead whenever the runtime waits on a socket): it runs with the real clock and can
//! be moved ahead, so a cache's TTL passes without a test waiting for it. It is never behind
//! the real clock, so timers set from it still fire, only later.

use std::sync::Mutex;
use std::time::Duration;

use event_log_streaming::clock::Clock;
use time::OffsetDateTime;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct AdvancingClock {
    ahead: Mutex<Duration>,
}

impl AdvancingClock {
    /// Moves the clock `by` ahead of where it was.
    pub fn advance(&self, by: Duration) {
        *self.ahead.lock().unwrap() += by;
    }

    fn ahead(&self) -> Duration {
        *self.ahead.lock().unwrap()
    }
}

impl Clock for AdvancingClock {
    fn now(&self) -> Instant {
        Instant::now() + self.ahead()
    }

    fn utc(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.ahead()
    }
}

/// A wall clock that stands still at `at` while monotonic time runs with the real clock: every
/// push is accepted "at" `at`, so a lag measured from a known send time is exact.
#[derive(Debug)]
pub struct StillWallClock {
    pub at: OffsetDateTime,
}

impl Clock for StillWallClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn utc(&self) -> OffsetDateTime {
        self.at
    }
}
