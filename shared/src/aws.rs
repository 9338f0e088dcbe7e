//! How the functions' AWS SDK clients are configured: the default credentials and region,
//! and timeouts well inside an invocation's, so that a slow DynamoDB, Secrets Manager or SQS
//! fails its own calls (and, in the streamer, its own messages) instead of holding the batch
//! until Lambda's timeout redelivers all of it.
//!
//! The SDK's standard retry mode (3 attempts with backoff, throttling included) runs inside
//! [`OPERATION_TIMEOUT`]; each attempt inside [`ATTEMPT_TIMEOUT`]. The callers bound the
//! calls further by their own deadlines.

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::settings::CredentialStoreKind;
use crate::store::{CredentialStore, KmsEnvelopeCredentials, SecretsManagerCredentials};

/// In-region AWS endpoints connect in milliseconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// One attempt: a GetItem, BatchGetItem, GetSecretValue or SendMessage answers in tens of
/// milliseconds; two seconds is an outage or throttling.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The timeouts of a long poll (SQS ReceiveMessage waiting up to `wait` for messages): the
/// wait is the answer's normal time, so each limit is the wait plus the usual one. With
/// [`timeouts`], every idle poll would time out and be retried.
pub fn long_poll_timeouts(wait: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(wait + ATTEMPT_TIMEOUT)
        .operation_timeout(wait + OPERATION_TIMEOUT)
        .build()
}

/// The SDK configuration from the environment, with [`timeouts`].
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .load()
        .await
}

/// The credential adapter `kind` names, on clients of `aws`: Secrets Manager secrets named
/// with `secret_prefix`, or the KMS envelope in the streams table `table`.
pub fn credential_store(
    aws: &SdkConfig,
    kind: &CredentialStoreKind,
    secret_prefix: &str,
    table: &str,
) -> Arc<dyn CredentialStore> {
    match kind {
        CredentialStoreKind::SecretsManager => Arc::new(SecretsManagerCredentials::new(
            aws_sdk_secretsmanager::Client::new(aws),
            secret_prefix,
        )),
        CredentialStoreKind::KmsEnvelope { key_id } => Arc::new(KmsEnvelopeCredentials::new(
            aws_sdk_dynamodb::Client::new(aws),
            table,
            aws_sdk_kms::Client::new(aws),
            key_id,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_poll_outlives_its_wait_and_keeps_the_usual_margins() {
        let wait = Duration::from_secs(10);
        let long_poll = long_poll_timeouts(wait);
        assert_eq!(
            long_poll.operation_attempt_timeout(),
            Some(wait + ATTEMPT_TIMEOUT)
        );
        assert_eq!(
            long_poll.operation_timeout(),
            Some(wait + OPERATION_TIMEOUT)
        );
        assert_eq!(long_poll.connect_timeout(), Some(CONNECT_TIMEOUT));
        // The usual limits would end an idle poll before SQS answers it.
        assert!(timeouts().operation_timeout().unwrap() < wait);
    }
}
