//! Wiring only: settings, tracing, clients built once per container, then the runtime loop.

use std::sync::Arc;

use event_log_streaming::Streamer;
use event_log_streaming::dead_letter::DeadLetterQueue;
use event_log_streaming::settings::StreamerSettings;
use event_log_streaming::store::SecretsManagerStore;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    event_log_streaming::logging::init_json_logs();

    let settings = StreamerSettings::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        settings.config_secret_prefix.clone(),
    );
    let dead_letters = settings
        .dead_letter_queue_url
        .as_ref()
        .map(|url| DeadLetterQueue::new(aws_sdk_sqs::Client::new(&aws), url.clone()));
    let streamer = Streamer::from_settings(&settings, Arc::new(store), dead_letters)?;

    run(service_fn(|event: LambdaEvent<_>| {
        streamer::handle(&streamer, event)
    }))
    .await
}
