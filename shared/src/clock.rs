//! Time as an argument. Decisions take `now` from their caller; the code that loops over
//! time (delivery with its retries, the caches, health) asks a [`Clock`] it was given, and
//! only the entry points (the Lambda handlers, the local runner) hand it the real one.
//!
//! Monotonic time is Tokio's [`Instant`], so a test on Tokio's paused clock
//! (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) drives deadlines, waits
//! and cache ages without sleeping; [`PausedClock`] makes the wall clock follow it.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::time::Instant;

pub trait Clock: Send + Sync {
    /// Monotonic time: deadlines, backoff, cache ages.
    fn now(&self) -> Instant;
    /// Wall-clock time: what is stored and shown (health, suspension), and event times.
    fn utc(&self) -> OffsetDateTime;
}

/// The real clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn utc(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The shared real clock, for the entry points.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// For tests: a wall clock that starts at `start` and then follows Tokio's clock, so that on
/// a paused runtime `tokio::time::advance` moves both.
#[derive(Debug, Clone, Copy)]
pub struct PausedClock {
    origin: Instant,
    start: OffsetDateTime,
}

impl PausedClock {
    pub fn starting_at(start: OffsetDateTime) -> Self {
        Self {
            origin: Instant::now(),
            start,
        }
    }
}

impl Clock for PausedClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn utc(&self) -> OffsetDateTime {
        self.start + (Instant::now() - self.origin)
    }
}
