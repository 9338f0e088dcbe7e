//! Arranging a streamer against moto (configuration store and dead-letter queue) and the
//! strict local destinations.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use config_api::AppState;
use config_api::auth::{KeySource, ManagementKey, ManagementKeys};
use event_log_streaming::clock::Clock;
use event_log_streaming::delivery::StreamerStore;
use event_log_streaming::domain::{ProjectId, StreamConfig, StreamingStatus};
use event_log_streaming::metrics::MetricsOut;
use event_log_streaming::settings::StreamerSettings;
use event_log_streaming::store::{
    CredentialStore, DynamoDbStreams, HealthWrite, KmsEnvelopeCredentials,
    SecretsManagerCredentials, StoredStream, StreamLookup, StreamWrite,
};
use event_log_streaming::{Queues, Streamer, StreamerOptions};
use integration_tests::aws::{CallCounter, create_stream_table};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::fixtures::{self, StreamSpec, provision};
use integration_tests::lambda::{RETRY_QUEUE_ARN, SqsRecord, sqs_event};
use integration_tests::moto::moto;
use integration_tests::tls::pki;
use serde_json::json;
use time::OffsetDateTime;

pub const LOKI_USER: &str = "123456";
pub const LOKI_PASSWORD: &str = "glc_loki-password-SECRET-4e1f";
pub const DATADOG_KEY: &str = "5f3c0ffee0ddba11c0ffee5ca1ab1e42";

/// Names unique to one test, so tests share moto without seeing each other's data.
pub fn unique(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A new SQS queue on moto, its name made unique from `label`; its URL.
pub async fn new_queue(sqs: &aws_sdk_sqs::Client, label: &str) -> String {
    let created = sqs.create_queue().queue_name(unique(label)).send().await;
    created.unwrap().queue_url().unwrap().to_owned()
}

pub fn ca_file() -> String {
    pki().ca_file.display().to_string()
}

/// A streamer on a fresh [`StateEnv`] (which it derefs to), with a dead-letter queue.
pub struct StreamerEnv {
    pub streamer: Streamer,
    pub state: StateEnv,
    pub sqs: aws_sdk_sqs::Client,
    pub dlq_url: Option<String>,
    /// The retry queue failed records are sent back to, when the options asked for one.
    pub retry_queue_url: Option<String>,
    /// `RETRY_QUEUE_ARN`: the source whose messages the streamer believes are copies.
    pub retry_queue_arn: Option<String>,
    /// The metric lines the streamer wrote, kept rather than printed.
    pub metrics: MetricsOut,
}

impl std::ops::Deref for StreamerEnv {
    type Target = StateEnv;
    fn deref(&self) -> &StateEnv {
        &self.state
    }
}

pub struct Options {
    pub datadog_intake_url: Option<String>,
    pub dead_letter_queue: bool,
    pub allow_private: bool,
    pub cache_ttl_seconds: u64,
    /// Send failed records back (no delay) to a retry queue in moto (`RETRY_QUEUE_URL`),
    /// believing the copies whose source is [`integration_tests::lambda::RETRY_QUEUE_ARN`]
    /// (`RETRY_QUEUE_ARN`; the handler only compares it), as [`SqsRecord::with_attributes`]
    /// makes them.
    pub event_queue: bool,
    /// Other settings, as environment variables.
    pub settings: Vec<(&'static str, String)>,
    /// Where the credentials are.
    pub adapter: Adapter,
    /// The streamer's clock, when not the real one.
    pub clock: Option<Arc<dyn Clock>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            datadog_intake_url: None,
            dead_letter_queue: true,
            allow_private: true,
            cache_ttl_seconds: 30,
            event_queue: false,
            settings: Vec::new(),
            adapter: Adapter::SecretsManager,
            clock: None,
        }
    }
}

impl Options {
    /// A retry queue, and `max_attempts` delivery attempts before a record is dead-lettered.
    pub fn retrying(max_attempts: u32) -> Self {
        Self {
            event_queue: true,
            settings: vec![("MAX_DELIVERY_ATTEMPTS", max_attempts.to_string())],
            ..Self::default()
        }
    }
}

/// The credential adapters (`CREDENTIAL_STORE`); the tests of credentials run on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    SecretsManager,
    KmsEnvelope,
}

impl Adapter {
    /// The operation that reads a credential version (what a streamer's cache saves).
    pub fn credential_read(self) -> &'static str {
        match self {
            Self::SecretsManager => "Secrets Manager.GetSecretValue",
            Self::KmsEnvelope => "KMS.Decrypt",
        }
    }
}

/// One test per adapter, each calling `$name(adapter)`.
macro_rules! on_both_adapters {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn secrets_manager() {
                super::$name($crate::helpers::Adapter::SecretsManager).await
            }
            #[tokio::test]
            async fn kms_envelope() {
                super::$name($crate::helpers::Adapter::KmsEnvelope).await
            }
        }
    };
}

/// A fresh state table and secret prefix in moto (and a KMS key, for the envelope), with
/// clients that count their calls.
pub struct StateEnv {
    pub streams: Arc<DynamoDbStreams>,
    pub credentials: Arc<dyn CredentialStore>,
    pub calls: CallCounter,
    pub table: String,
    pub prefix: String,
    pub adapter: Adapter,
    /// The envelope's KMS key (one per environment); made for either adapter, so that a
    /// migration can move to it.
    pub kms_key_id: String,
}

impl StateEnv {
    pub async fn new() -> Self {
        Self::with_adapter(Adapter::SecretsManager).await
    }

    pub async fn with_adapter(adapter: Adapter) -> Self {
        let aws = moto().sdk_config().await;
        let calls = CallCounter::default();
        let table = unique("streams");
        let dynamodb = calls.dynamodb(&aws);
        create_stream_table(&dynamodb, &table).await;
        let prefix = format!("{}/", unique("els"));
        let kms_key_id = aws_sdk_kms::Client::new(&aws)
            .create_key()
            .description(unique("els"))
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id;
        let env = Self {
            streams: Arc::new(DynamoDbStreams::new(dynamodb, table.clone())),
            credentials: credential_adapter(&aws, &calls, adapter, &table, &prefix, &kms_key_id),
            calls,
            table,
            prefix,
            adapter,
            kms_key_id,
        };
        env.calls.reset();
        env
    }

    /// The credential adapter `adapter` on this environment's table, secrets and key.
    pub fn credentials_on(
        &self,
        aws: &SdkConfig,
        calls: &CallCounter,
        adapter: Adapter,
    ) -> Arc<dyn CredentialStore> {
        credential_adapter(
            aws,
            calls,
            adapter,
            &self.table,
            &self.prefix,
            &self.kms_key_id,
        )
    }

    /// The environment's settings of its credential adapter.
    pub fn credential_settings(&self) -> Vec<(&'static str, String)> {
        match self.adapter {
            Adapter::SecretsManager => vec![("CREDENTIAL_STORE", "SecretsManager".into())],
            Adapter::KmsEnvelope => vec![
                ("CREDENTIAL_STORE", "KmsEnvelope".into()),
                ("CREDENTIAL_KMS_KEY_ID", self.kms_key_id.clone()),
            ],
        }
    }

    pub fn streamer_store(&self) -> StreamerStore {
        StreamerStore {
            lookup: self.streams.clone(),
            credentials: self.credentials.clone(),
            health: self.streams.clone(),
        }
    }

    /// The ports of another streamer container on the same table and secrets, whose AWS
    /// requests `calls` counts.
    pub async fn container_store(&self, calls: &CallCounter) -> StreamerStore {
        self.store_on(&moto().sdk_config().await, calls)
    }

    /// The ports of a streamer on the same table and secrets whose clients use `aws` (a
    /// proxy's, say), their requests counted by `calls`.
    pub fn store_on(&self, aws: &SdkConfig, calls: &CallCounter) -> StreamerStore {
        let streams = Arc::new(DynamoDbStreams::new(
            calls.dynamodb(aws),
            self.table.clone(),
        ));
        StreamerStore {
            lookup: streams.clone(),
            credentials: self.credentials_on(aws, calls, self.adapter),
            health: streams,
        }
    }

    pub async fn configure(&self, project: &str, spec: StreamSpec) -> StreamConfig {
        provision(
            self.streams.as_ref(),
            self.credentials.as_ref(),
            project,
            spec,
        )
        .await
    }

    pub async fn stored(&self, project: &str) -> Option<StoredStream> {
        let project = ProjectId::parse(project).unwrap();
        StreamWrite::get(self.streams.as_ref(), &project)
            .await
            .unwrap()
    }

    /// Builds the index of configured projects, as `make migrate` does: from then on the
    /// streamer reads only configured projects' items.
    pub async fn build_index(&self) {
        self.streams
            .build_index(time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    }

    /// The project's item as DynamoDB holds it, read past the store (and its call counter).
    pub async fn raw_item(
        &self,
        project: &str,
    ) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        let aws = moto().sdk_config().await;
        aws_sdk_dynamodb::Client::new(&aws)
            .get_item()
            .table_name(&self.table)
            .key(
                "project_id",
                aws_sdk_dynamodb::types::AttributeValue::S(project.into()),
            )
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    }
}

fn credential_adapter(
    aws: &SdkConfig,
    calls: &CallCounter,
    adapter: Adapter,
    table: &str,
    prefix: &str,
    kms_key_id: &str,
) -> Arc<dyn CredentialStore> {
    match adapter {
        Adapter::SecretsManager => Arc::new(SecretsManagerCredentials::new(
            calls.secrets_manager(aws),
            prefix,
        )),
        Adapter::KmsEnvelope => Arc::new(KmsEnvelopeCredentials::new(
            calls.dynamodb(aws),
            table,
            calls.kms(aws),
            kms_key_id,
        )),
    }
}

impl StreamerEnv {
    pub async fn new(options: Options) -> Self {
        let aws = moto().sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let queue = |label: &'static str| new_queue(&sqs, label);
        let dlq_url = if options.dead_letter_queue {
            Some(queue("dlq").await)
        } else {
            None
        };
        let retry_queue_url = if options.event_queue {
            Some(queue("retries").await)
        } else {
            None
        };
        let state = StateEnv::with_adapter(options.adapter).await;
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("CONFIG_SECRET_PREFIX", state.prefix.clone()),
            (
                "CONFIG_CACHE_TTL_SECONDS",
                options.cache_ttl_seconds.to_string(),
            ),
            ("EXTRA_CA_CERTS", ca_file()),
            (
                "ALLOW_PRIVATE_DESTINATIONS",
                options.allow_private.to_string(),
            ),
        ]);
        if let Some(url) = &options.datadog_intake_url {
            vars.insert("DATADOG_INTAKE_URL", url.clone());
        }
        if let Some(url) = &dlq_url {
            vars.insert("DEAD_LETTER_QUEUE_URL", url.clone());
        }
        if let Some(url) = &retry_queue_url {
            vars.insert("RETRY_QUEUE_URL", url.clone());
            vars.insert("RETRY_QUEUE_ARN", RETRY_QUEUE_ARN.into());
            vars.insert("REQUEUE_BASE_DELAY_SECONDS", "0".into());
        }
        vars.extend(state.credential_settings());
        vars.extend(options.settings);
        let settings = StreamerSettings::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let queues = Queues::from_settings(&settings, &sqs);
        let metrics = MetricsOut::kept();
        let mut streamer_options = StreamerOptions::from_settings(&settings);
        streamer_options.metrics = metrics.clone();
        if let Some(clock) = options.clock {
            streamer_options.clock = clock;
        }
        let streamer =
            Streamer::with_options(&settings, state.streamer_store(), queues, streamer_options)
                .unwrap();
        Self {
            streamer,
            metrics,
            state,
            sqs,
            dlq_url,
            retry_queue_url,
            retry_queue_arn: settings.retry_queue_arn.clone(),
        }
    }

    /// A streamer whose Datadog intake is `datadog`.
    pub async fn with_datadog(datadog: &FakeDestination) -> Self {
        Self::new(Options {
            datadog_intake_url: Some(datadog.base_url()),
            ..Options::default()
        })
        .await
    }

    /// The project's stream as the table holds it now.
    pub async fn stream(&self, project: &str) -> StoredStream {
        self.stored(project)
            .await
            .expect("the project has a stream")
    }

    pub async fn invoke(&self, records: Vec<SqsRecord>) -> SqsBatchResponse {
        self.invoke_with_time_left(records, Duration::from_secs(30))
            .await
    }

    pub async fn invoke_with_time_left(
        &self,
        records: Vec<SqsRecord>,
        time_left: Duration,
    ) -> SqsBatchResponse {
        let retry_queue_arn = self.retry_queue_arn.as_deref();
        streamer::handle(
            &self.streamer,
            retry_queue_arn,
            sqs_event(records, time_left),
        )
        .await
        .unwrap()
    }

    /// Everything in the dead-letter queue: (body, attributes).
    pub async fn dead_letters(&self) -> Vec<(String, HashMap<String, String>)> {
        let url = self.dlq_url.as_ref().expect("this environment has a DLQ");
        receive_all(&self.sqs, url).await
    }

    /// Everything sent back to the retry queue: (body, attributes).
    pub async fn requeued(&self) -> Vec<(String, HashMap<String, String>)> {
        let url = self
            .retry_queue_url
            .as_ref()
            .expect("this environment has a retry queue");
        receive_all(&self.sqs, url).await
    }
}

/// Every message of a queue, with its message attributes, received once (hidden for 5
/// minutes afterwards).
pub async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Vec<(String, HashMap<String, String>)> {
    let mut all = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(300)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        if messages.is_empty() {
            return all;
        }
        for m in messages {
            let attributes = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            all.push((m.body().unwrap_or_default().to_owned(), attributes));
        }
    }
}

pub fn loki_config(hostname: &str, password: &str) -> StreamSpec {
    fixtures::loki_config(hostname, LOKI_USER, password)
}

pub use integration_tests::fixtures::datadog_config;

pub fn disabled(mut spec: StreamSpec) -> StreamSpec {
    spec.status = StreamingStatus::Disabled;
    spec
}

/// An event log record as the platform produces it.
pub fn event(project: &str, event_id: &str) -> serde_json::Value {
    json!({
        "event_id": event_id,
        "project_id": project,
        "project_name": "Test project",
        "action": "MagicLinksEmailLoginOrCreate",
        "status": "success",
        "request_id": format!("request-{event_id}"),
        "http_status_code": 200,
        "timestamp": OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
    })
}

pub fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

/// The local runner's app (config API, page and `POST /v1/events`) on `store`, with the
/// streamer's settings for loopback test servers, no cache, enables dated now, and `keys`.
pub fn local_runner_app<S>(store: Arc<S>, keys: Vec<ManagementKey>) -> axum::Router
where
    S: StreamLookup + StreamWrite + HealthWrite + CredentialStore + 'static,
{
    let settings = StreamerSettings::from_lookup(|name| match name {
        "CONFIG_CACHE_TTL_SECONDS" => Some("0".into()),
        "ALLOW_PRIVATE_DESTINATIONS" => Some("true".into()),
        "EXTRA_CA_CERTS" => Some(ca_file()),
        _ => None,
    })
    .unwrap();
    let ports = StreamerStore::of_one(store.clone());
    let streamer = Arc::new(Streamer::from_settings(&settings, ports, Default::default()).unwrap());
    let api = AppState::new(
        store.clone(),
        store,
        ManagementKeys::new(KeySource::Fixed(keys)),
        fixtures::loopback_client(None),
        fixtures::labels(),
        Duration::ZERO,
    );
    local_runner::local_app(api, streamer)
}

/// Whether a queue holds nothing: visible, in flight or delayed.
pub async fn queue_is_empty(sqs: &aws_sdk_sqs::Client, url: &str) -> bool {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    attributes
        .attributes()
        .unwrap()
        .values()
        .all(|count| count == "0")
}
