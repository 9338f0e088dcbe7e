//! Logs as JSON lines, one object per event, as CloudWatch Logs Insights reads them best.

use tracing_subscriber::EnvFilter;

/// Dependencies that log whole requests or events at debug or trace: the Lambda runtime
/// (the raw event, with Authorization headers and bodies), the AWS SDK (request bodies, such
/// as the secret string of CreateSecret) and the HTTP stacks. They stay at info whatever
/// `RUST_LOG` says, so no log level can put a secret in the logs.
const CAPPED: [&str; 8] = [
    "lambda_runtime=info",
    "lambda_runtime_api_client=info",
    "lambda_http=info",
    "aws_smithy_runtime=info",
    "aws_smithy_runtime_api=info",
    "hyper=info",
    "hyper_util=info",
    "reqwest=info",
];

/// The filter of `RUST_LOG` (default `info`) with [`CAPPED`] applied.
pub fn filter() -> EnvFilter {
    filter_from(std::env::var("RUST_LOG").ok().as_deref())
}

fn filter_from(rust_log: Option<&str>) -> EnvFilter {
    let base = rust_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    CAPPED.iter().fold(base, |filter, directive| {
        filter.add_directive(directive.parse().expect("a valid directive"))
    })
}

/// Installs the JSON subscriber for a function's process.
pub fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_current_span(false)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn enabled(rust_log: &str, target: &str, level: Level) -> bool {
        let subscriber = tracing_subscriber::registry().with(filter_from(Some(rust_log)));
        tracing::subscriber::with_default(subscriber, || event_enabled(target, level))
    }

    /// `event_enabled!` takes a literal target and level, hence the table.
    fn event_enabled(target: &str, level: Level) -> bool {
        macro_rules! check {
            ($($t:literal),*) => {
                match target {
                    $($t => match level {
                        Level::TRACE => tracing::event_enabled!(target: $t, Level::TRACE),
                        Level::DEBUG => tracing::event_enabled!(target: $t, Level::DEBUG),
                        _ => tracing::event_enabled!(target: $t, Level::INFO),
                    },)*
                    _ => unreachable!(),
                }
            };
        }
        check!(
            "lambda_runtime",
            "aws_smithy_runtime",
            "event_log_streaming"
        )
    }

    #[test]
    fn dependencies_that_log_requests_stay_at_info_whatever_rust_log_says() {
        for rust_log in [
            "trace",
            "debug",
            "aws_smithy_runtime=trace,lambda_runtime=trace",
        ] {
            assert!(
                !enabled(rust_log, "lambda_runtime", Level::TRACE),
                "{rust_log}"
            );
            assert!(
                !enabled(rust_log, "aws_smithy_runtime", Level::DEBUG),
                "{rust_log}"
            );
            assert!(
                enabled(rust_log, "aws_smithy_runtime", Level::INFO),
                "{rust_log}"
            );
        }
        assert!(enabled("debug", "event_log_streaming", Level::DEBUG));
        assert!(!enabled("info", "event_log_streaming", Level::DEBUG));
    }
}
