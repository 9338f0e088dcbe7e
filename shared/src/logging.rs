//! Logs as JSON lines, one object per event, as CloudWatch Logs Insights reads them best.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber for a function's process; the level comes from `RUST_LOG`
/// (default `info`).
pub fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .init();
}
