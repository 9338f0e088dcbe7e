//! Captures what the code under test logs, as the JSON lines production would emit, so tests
//! can assert what is (and is not) in them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log lines are JSON"))
            .collect()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures every event of the current thread until the guard drops, as production would
/// print them with `RUST_LOG=trace`: our code down to TRACE, dependencies under the same
/// ceiling as in production (info). `#[tokio::test]` runs on the current thread, so this sees
/// the whole test.
pub fn capture_logs() -> (CapturedLogs, DefaultGuard) {
    let logs = CapturedLogs::default();
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(logs.clone())
        .with_filter(event_log_streaming::logging::filter_from(Some("trace")));
    let subscriber = tracing_subscriber::registry().with(layer);
    (logs, tracing::subscriber::set_default(subscriber))
}
