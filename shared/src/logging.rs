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
    let base = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
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
