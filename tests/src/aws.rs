//! AWS as the tests see it: clients for moto that count every request by operation (what AWS
//! bills), and the state table created as the template declares it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Counts requests per `Service.Operation`; one counter can serve several clients.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl CallCounter {
    pub fn count(&self, operation: &str) -> usize {
        self.0.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    pub fn all(&self) -> BTreeMap<String, usize> {
        self.0.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
    }

    pub fn dynamodb(&self, aws: &SdkConfig) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(aws)
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    pub fn secrets_manager(&self, aws: &SdkConfig) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::config::Builder::from(aws)
            .interceptor(self.clone())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }
}

impl CallCounter {
    pub fn kms(&self, aws: &SdkConfig) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::config::Builder::from(aws)
            .interceptor(self.clone())
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    /// Once per attempt: a retried request is billed again.
    /// BatchGetItem is billed per key, so its keys are counted too (`….keys`).
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let key = format!("{}.{}", metadata.service(), metadata.name());
        let keys = (metadata.name() == "BatchGetItem")
            .then(|| context.request().body().bytes())
            .flatten()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
            .map(|request| {
                request["RequestItems"]
                    .as_object()
                    .into_iter()
                    .flat_map(|tables| tables.values())
                    .map(|table| table["Keys"].as_array().map_or(0, Vec::len))
                    .sum::<usize>()
            });
        let mut counts = self.0.lock().unwrap();
        *counts.entry(key.clone()).or_default() += 1;
        if let Some(keys) = keys {
            *counts.entry(format!("{key}.keys")).or_default() += keys;
        }
        Ok(())
    }
}

/// The state table, as `infra/template.yaml` declares it: on-demand, keyed by project id.
pub async fn create_stream_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("project_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("project_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}
