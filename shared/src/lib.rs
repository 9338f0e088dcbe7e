//! Event log streaming: delivers each customer project's auth event logs to the project's own
//! Grafana Loki or Datadog.
//!
//! This library holds everything but the Lambda wiring, so the same code serves the SQS
//! Lambda, the config API and the local runner: domain types parsed at the edge, the
//! per-project configuration store, the destination clients, and the delivery logic.

pub mod aws;
pub mod clock;
pub mod dead_letter;
pub mod delivery;
pub mod destination;
pub mod domain;
pub mod event;
pub mod event_queue;
pub mod gzip;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod secret;
pub mod settings;
pub mod store;
pub mod test_event;

pub use delivery::{BatchReport, BatchSummary, Queues, Streamer, StreamerOptions};
pub use secret::Secret;
