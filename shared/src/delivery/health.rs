//! Each container's part in delivery health and suspension.
//!
//! A container adds up what it sees of each stream and writes it to the store:
//! - at once when the stream's state changes (its first outcome, a first failure after
//!   successes, a first success after failures) or when it should be suspended;
//! - otherwise at most once per stream per `HEALTH_WRITE_INTERVAL_SECONDS`.
//!
//! Counts never make a write due on their own: records delivered, failed or filtered out by
//! the stream's `event_filter`, and the latest delivery lag, ride along with the next write. A stream whose records are all
//! filtered (no push, so no change of state) is written at most once per interval.
//!
//! After a write, the stored health (all containers' observations) decides suspension: the
//! destination refused the configuration on `SUSPEND_AFTER_AUTH_FAILURES` consecutive
//! attempts spanning `SUSPEND_AFTER_SECONDS`. Suspension belongs to a configuration: only
//! refusals seen with the stream's current version count (saving or enabling starts a new
//! streak), and the suspension is conditional on the stream and version the failing
//! deliveries used, so a change made meanwhile wins, and a stream deleted and created again
//! is never written by a container that still holds the old one.
//!
//! Writes end by the deadline they are given: one that fails or runs out of time is kept and
//! added to the next one (an UpdateItem abandoned in flight may still land, so the counts
//! are approximate).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{error, warn};

use crate::clock::Clock;
use crate::destination::classify::destination_name;
use crate::domain::{DeliveryHealth, ProjectId, StreamConfig, SuspendPolicy, Suspension};
use crate::metrics::{self, MetricsOut};
use crate::store::{HealthWrite, error_chain};

#[derive(Debug, Clone, Copy)]
pub struct HealthOptions {
    pub write_interval: Duration,
    pub suspend: SuspendPolicy,
}

struct Tracked {
    /// The stream and version the pending observations were made with.
    stream_id: String,
    version: u64,
    /// The stream's health as last read or written by this container.
    stored: DeliveryHealth,
    /// Seen since, not written yet.
    pending: DeliveryHealth,
    last_write: Instant,
}

/// Health writes in flight at once: a new container's first batch can change the state of
/// hundreds of streams at once, and each write holds an HTTP connection and its buffers.
const CONCURRENT_WRITES: usize = 32;

pub struct HealthTracker {
    options: HealthOptions,
    store: Arc<dyn HealthWrite>,
    clock: Arc<dyn Clock>,
    streams: Mutex<LruCache<ProjectId, Tracked>>,
    writes: Semaphore,
    metrics: MetricsOut,
}

/// What a health write led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Nothing,
    Health,
    Suspended,
}

impl HealthTracker {
    pub fn new(
        options: HealthOptions,
        store: Arc<dyn HealthWrite>,
        clock: Arc<dyn Clock>,
        capacity: NonZeroUsize,
        metrics: MetricsOut,
    ) -> Self {
        Self {
            options,
            store,
            clock,
            streams: Mutex::new(LruCache::new(capacity)),
            writes: Semaphore::new(CONCURRENT_WRITES),
            metrics,
        }
    }

    /// Notes what a delivery with `config` saw, and writes it if it is time to, by
    /// `deadline`.
    pub async fn observe(
        &self,
        config: &StreamConfig,
        stored: &DeliveryHealth,
        seen: &DeliveryHealth,
        deadline: Instant,
    ) -> Written {
        let project = &config.project_id;
        let now = self.clock.utc();
        let update = {
            let mut streams = self.streams.lock().unwrap();
            let fresh = || Tracked {
                stream_id: config.stream_id.clone(),
                version: config.version,
                stored: stored.clone(),
                pending: DeliveryHealth::default(),
                last_write: self.clock.now(),
            };
            let tracked = streams.get_or_insert_mut(project.clone(), fresh);
            if tracked.stream_id != config.stream_id {
                // Deleted and created again: nothing seen of the old stream belongs to it.
                *tracked = fresh();
            } else if tracked.version != config.version {
                // Refusals of the old version say nothing about the new one.
                tracked.pending.forget_refusals();
                tracked.version = config.version;
            }
            let mut before = tracked.stored.clone();
            before.apply(&tracked.pending);
            tracked.pending.apply(seen);
            let mut after = tracked.stored.clone();
            after.apply(&tracked.pending);
            let due = before.state() != after.state()
                || after.should_suspend(self.options.suspend, now)
                || self.clock.now() >= tracked.last_write + self.options.write_interval;
            if !due || tracked.pending.is_empty() {
                return Written::Nothing;
            }
            tracked.last_write = self.clock.now();
            std::mem::take(&mut tracked.pending)
        };

        let write = async {
            let _slot = self
                .writes
                .acquire()
                .await
                .expect("the semaphore is never closed");
            self.store.record(config, &update).await
        };
        let health = match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(Some(health))) => health,
            Ok(Ok(None)) => return Written::Nothing,
            Ok(Err(err)) => {
                warn!(project_id = %project, error = %error_chain(&err), "health write failed; it is kept for the next one");
                self.keep(config, update);
                return Written::Nothing;
            }
            Err(_) => {
                warn!(project_id = %project, "health write did not finish in time; it is kept for the next one");
                self.keep(config, update);
                return Written::Nothing;
            }
        };
        if let Some(tracked) = self.streams.lock().unwrap().get_mut(project) {
            tracked.stored = health.clone();
        }
        if !health.should_suspend(self.options.suspend, now) {
            return Written::Health;
        }
        match tokio::time::timeout_at(deadline, self.suspend(config, &health, now)).await {
            Ok(written) => written,
            Err(_) => {
                warn!(project_id = %project, "suspension did not finish in time; it is tried again after the next failure");
                Written::Health
            }
        }
    }

    /// Puts back an update that could not be written, ahead of what was seen since.
    fn keep(&self, config: &StreamConfig, update: DeliveryHealth) {
        let mut streams = self.streams.lock().unwrap();
        if let Some(tracked) = streams.get_mut(&config.project_id)
            && tracked.stream_id == config.stream_id
        {
            let mut pending = update;
            if tracked.version != config.version {
                pending.forget_refusals();
            }
            pending.apply(&tracked.pending);
            tracked.pending = pending;
        }
    }

    async fn suspend(
        &self,
        config: &StreamConfig,
        health: &DeliveryHealth,
        now: OffsetDateTime,
    ) -> Written {
        let project = &config.project_id;
        let destination = config.destination_type();
        let since = health
            .auth_failures_since
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let last = health
            .last_error()
            .map(|e| e.message.as_str())
            .unwrap_or_default();
        let reason = format!(
            "{} refused the configuration on {} consecutive delivery attempts since {since} ({last}); fix it, check it with the test endpoint, then enable the stream again",
            destination_name(destination),
            health.consecutive_auth_failures,
        );
        let suspension = Suspension { at: now, reason };
        match self.store.suspend(config, &suspension).await {
            Ok(true) => {
                error!(
                    project_id = %project,
                    destination_type = %destination,
                    reason = %suspension.reason,
                    "stream suspended"
                );
                self.metrics
                    .emit(&metrics::stream_suspended(now, project, destination));
                Written::Suspended
            }
            // The configuration changed since these deliveries: the new one gets its chance.
            Ok(false) => Written::Health,
            Err(err) => {
                warn!(project_id = %project, error = %error_chain(&err), "suspension failed; it is tried again after the next failure");
                Written::Health
            }
        }
    }
}
