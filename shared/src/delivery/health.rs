//! Each container's part in delivery health and suspension.
//!
//! A container adds up what it sees of each stream and writes it to the store:
//! - at once when the stream's state changes (its first outcome, a first failure after
//!   successes, a first success after failures) or when it should be suspended;
//! - otherwise at most once per stream per `HEALTH_WRITE_INTERVAL_SECONDS`.
//!
//! After a write, the stored health (all containers' observations) decides suspension: the
//! destination refused the configuration on `SUSPEND_AFTER_AUTH_FAILURES` consecutive
//! attempts spanning `SUSPEND_AFTER_SECONDS`. The suspension is conditional on the
//! configuration version the failing deliveries used, so a credential update made meanwhile
//! wins. A write that fails is kept and added to the next one.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::{error, warn};

use crate::destination::classify::destination_name;
use crate::domain::{DeliveryHealth, ProjectId, StreamConfig, SuspendPolicy, Suspension};
use crate::metrics;
use crate::store::{HealthWrite, error_chain};

#[derive(Debug, Clone, Copy)]
pub struct HealthOptions {
    pub write_interval: Duration,
    pub suspend: SuspendPolicy,
}

struct Tracked {
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
    streams: Mutex<LruCache<ProjectId, Tracked>>,
    writes: Semaphore,
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
        capacity: NonZeroUsize,
    ) -> Self {
        Self {
            options,
            store,
            streams: Mutex::new(LruCache::new(capacity)),
            writes: Semaphore::new(CONCURRENT_WRITES),
        }
    }

    /// Notes what a delivery saw of `stream`, and writes it if it is time to.
    pub async fn observe(
        &self,
        config: &StreamConfig,
        stored: &DeliveryHealth,
        seen: &DeliveryHealth,
    ) -> Written {
        let project = &config.project_id;
        let now = OffsetDateTime::now_utc();
        let update = {
            let mut streams = self.streams.lock().unwrap();
            let tracked = streams.get_or_insert_mut(project.clone(), || Tracked {
                stored: stored.clone(),
                pending: DeliveryHealth::default(),
                last_write: Instant::now(),
            });
            let mut before = tracked.stored.clone();
            before.apply(&tracked.pending);
            tracked.pending.apply(seen);
            let mut after = tracked.stored.clone();
            after.apply(&tracked.pending);
            let due = before.state() != after.state()
                || after.should_suspend(self.options.suspend, now)
                || tracked.last_write.elapsed() >= self.options.write_interval;
            if !due || tracked.pending.is_empty() {
                return Written::Nothing;
            }
            tracked.last_write = Instant::now();
            std::mem::take(&mut tracked.pending)
        };

        let _slot = self
            .writes
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let health = match self.store.record(project, &update).await {
            Ok(Some(health)) => health,
            Ok(None) => return Written::Nothing,
            Err(err) => {
                warn!(project_id = %project, error = %error_chain(&err), "health write failed; it is kept for the next one");
                let mut streams = self.streams.lock().unwrap();
                if let Some(tracked) = streams.get_mut(project) {
                    let mut pending = update;
                    pending.apply(&tracked.pending);
                    tracked.pending = pending;
                }
                return Written::Nothing;
            }
        };
        if let Some(tracked) = self.streams.lock().unwrap().get_mut(project) {
            tracked.stored = health.clone();
        }
        if !health.should_suspend(self.options.suspend, now) {
            return Written::Health;
        }
        self.suspend(config, &health, now).await
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
        match self
            .store
            .suspend(project, config.version, &suspension)
            .await
        {
            Ok(true) => {
                error!(
                    project_id = %project,
                    destination_type = %destination,
                    reason = %suspension.reason,
                    "stream suspended"
                );
                metrics::emit(&metrics::stream_suspended(now, project, destination));
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
