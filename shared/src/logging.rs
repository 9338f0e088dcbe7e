//! Logs as JSON lines, one object per event, as CloudWatch Logs Insights reads them best.

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Dependencies that log whole requests or events at debug or trace: the Lambda runtime
/// (the raw event, with Authorization headers and bodies), the AWS SDK and its HTTP client
/// (request bodies, such as the secret string of CreateSecret), and the HTTP and TLS stacks.
/// Target prefixes; whatever `RUST_LOG` says, nothing below info from them is logged.
const CAPPED_PREFIXES: [&str; 8] = [
    "lambda_",
    "aws_smithy",
    "aws_sdk",
    "aws_config",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
];

/// The ceiling for [`CAPPED_PREFIXES`]; everything else is left to `RUST_LOG`.
fn ceiling() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED_PREFIXES.map(|prefix| (prefix, Level::INFO)))
}

/// `RUST_LOG` (default `info`), under the ceiling: both must let an event through.
pub fn filter<S: tracing::Subscriber + for<'a> LookupSpan<'a>>() -> impl Filter<S> {
    filter_from(std::env::var("RUST_LOG").ok().as_deref())
}

/// [`filter`] for a given `RUST_LOG`: also what tests capture with, so that a test sees what
/// production would print.
pub fn filter_from<S: tracing::Subscriber + for<'a> LookupSpan<'a>>(
    rust_log: Option<&str>,
) -> impl Filter<S> + use<S> {
    let requested = rust_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    requested.and(ceiling())
}

/// Installs the JSON subscriber for a function's process.
pub fn init_json_logs() {
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_target(false);
    tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(layer, filter()))
        .init();
}

/// Installs a human-readable subscriber, for the local runner.
pub fn init_text_logs() {
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(layer, filter()))
        .init();
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::Layer;

    use super::*;

    fn enabled(rust_log: &str, target: &str, level: Level) -> bool {
        // Callsites cache their interest process-wide: tests that each install their own
        // subscriber must take turns and rebuild that cache, or they see each other's.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(filter_from(Some(rust_log)));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            event_enabled(target, level)
        })
    }

    /// `event_enabled!` takes a literal target and level, hence the table.
    fn event_enabled(target: &str, level: Level) -> bool {
        macro_rules! check {
            ($($t:literal),*) => {
                match target {
                    $($t => match level {
                        Level::TRACE => tracing::event_enabled!(target: $t, Level::TRACE),
                        Level::DEBUG => tracing::event_enabled!(target: $t, Level::DEBUG),
                        Level::INFO => tracing::event_enabled!(target: $t, Level::INFO),
                        _ => tracing::event_enabled!(target: $t, Level::WARN),
                    },)*
                    _ => unreachable!(),
                }
            };
        }
        check!(
            "lambda_runtime::layers::api_response",
            "aws_smithy_runtime::client::orchestrator",
            "aws_smithy_http_client",
            "event_log_streaming"
        )
    }

    #[test]
    fn dependencies_that_log_requests_never_log_below_info() {
        for rust_log in [
            "trace",
            "debug",
            "aws_smithy_runtime=trace,lambda_runtime=trace",
            "aws_smithy_runtime::client::orchestrator=trace",
        ] {
            for target in [
                "lambda_runtime::layers::api_response",
                "aws_smithy_runtime::client::orchestrator",
                "aws_smithy_http_client",
            ] {
                assert!(
                    !enabled(rust_log, target, Level::DEBUG),
                    "{rust_log} {target}"
                );
            }
        }
    }

    #[test]
    fn rust_log_still_decides_below_the_ceiling() {
        assert!(enabled("debug", "event_log_streaming", Level::DEBUG));
        assert!(!enabled("info", "event_log_streaming", Level::DEBUG));
        // The ceiling never raises a level: warn means warn for dependencies too.
        assert!(!enabled(
            "warn",
            "aws_smithy_runtime::client::orchestrator",
            Level::INFO
        ));
        assert!(enabled(
            "warn",
            "aws_smithy_runtime::client::orchestrator",
            Level::WARN
        ));
    }
}
