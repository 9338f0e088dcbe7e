//! Wiring only: settings, tracing, clients built once per container, then the router served
//! through lambda_http.

use std::sync::Arc;

use config_api::auth::{KeySource, ManagementKeys};
use config_api::settings::ConfigApiSettings;
use config_api::{AppState, app};
use event_log_streaming::destination::client::DestinationClient;
use event_log_streaming::store::DynamoDbStreams;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    event_log_streaming::logging::init_json_logs();

    let settings = ConfigApiSettings::from_env()?;
    let aws = event_log_streaming::aws::load().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let streams = DynamoDbStreams::new(
        aws_sdk_dynamodb::Client::new(&aws),
        settings.stream_table_name.clone(),
    );
    let credentials = event_log_streaming::aws::credential_store(
        &aws,
        &settings.credential_store,
        &settings.config_secret_prefix,
        &settings.stream_table_name,
    );
    let keys = ManagementKeys::new(KeySource::SecretsManager {
        client: secrets,
        secret_id: settings.management_keys_secret_id.clone(),
    });
    let client = DestinationClient::new(settings.destinations.client_options()?)?;
    let state = AppState::new(
        Arc::new(streams),
        credentials,
        keys,
        client,
        settings.destinations.labels.clone(),
        settings.streaming_start_delay,
    );

    lambda_http::run(app(state)).await
}
