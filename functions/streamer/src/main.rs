//! Wiring only: settings, tracing, clients built once per container, then the runtime loop.

use std::sync::Arc;

use event_log_streaming::delivery::StreamerStore;
use event_log_streaming::settings::{StreamerSettings, stream_table_name};
use event_log_streaming::store::DynamoDbStreams;
use event_log_streaming::{Queues, Streamer};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

// One thread: a Lambda of 512 MB has about a third of a vCPU, so worker threads bring no
// parallelism, only wake-ups and task migrations; measured in `tests/benches/lambda.rs`,
// one thread gives 25–50 % more events per CPU-second and a smaller peak.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    event_log_streaming::logging::init_json_logs();

    let settings = StreamerSettings::from_env()?;
    let table = stream_table_name(&|name| std::env::var(name).ok())?;
    let aws = event_log_streaming::aws::load().await;
    let credentials = event_log_streaming::aws::credential_store(
        &aws,
        &settings.credential_store,
        &settings.config_secret_prefix,
        &table,
    );
    let streams = Arc::new(DynamoDbStreams::new(
        aws_sdk_dynamodb::Client::new(&aws),
        table,
    ));
    let store = StreamerStore {
        lookup: streams.clone(),
        credentials,
        health: streams,
    };
    let queues = Queues::from_settings(&settings, &aws_sdk_sqs::Client::new(&aws));
    let streamer = Streamer::from_settings(&settings, store, queues)?;

    let retry_queue_arn = settings.retry_queue_arn.as_deref();
    run(service_fn(|event: LambdaEvent<_>| {
        streamer::handle(&streamer, retry_queue_arn, event)
    }))
    .await
}
