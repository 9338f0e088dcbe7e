//! Captures what the code under test logs, as the JSON lines production would emit, so tests
//! can assert what is (and is not) in them.

use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use tracing::subscriber::{DefaultGuard, Interest, Subscriber};
use tracing::{Dispatch, Event, Metadata, span};
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
    let (logs, dispatch) = capture_logs_at("trace");
    (logs, tracing::dispatcher::set_default(&dispatch))
}

/// A subscriber that captures what the code under test logs as production would with
/// `RUST_LOG=<filter>`, for a future to carry wherever it runs
/// ([`tracing::instrument::WithSubscriber`]): a multi-threaded test's tasks move between
/// threads.
pub fn capture_logs_at(filter: &str) -> (CapturedLogs, Dispatch) {
    static UNDECIDED: Once = Once::new();
    UNDECIDED.call_once(|| {
        let _ = tracing::subscriber::set_global_default(Undecided);
    });
    let logs = CapturedLogs::default();
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(logs.clone())
        .with_filter(event_log_streaming::logging::filter_from(Some(filter)));
    let subscriber = tracing_subscriber::registry().with(layer);
    (logs, Dispatch::new(subscriber))
}

/// The process-wide subscriber of the tests: it logs nothing and leaves every callsite to the
/// subscriber of the thread at hand. tracing caches, per callsite, what the subscribers alive
/// at its first use said; when a test sets up its capture while another test's thread meets a
/// callsite for the first time, the cache can miss the capture and say "never" for good (a
/// race in tracing-core), and the capture loses that line. A subscriber that always answers
/// "sometimes" keeps the cache from ever saying "never".
struct Undecided;

impl Subscriber for Undecided {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}
