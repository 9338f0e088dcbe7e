//! Environment settings, read once per container. Per-project destinations are not
//! settings: they live in the configuration store.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use crate::destination::LogLabels;
use crate::destination::client::ClientOptions;
use crate::domain::parse_port;
use crate::net::AddressPolicy;
use crate::store::DEFAULT_SECRET_PREFIX;

/// How destinations are reached; shared by the streamer and the config API's test endpoint.
#[derive(Debug, Clone)]
pub struct DestinationSettings {
    /// `LOG_SOURCE` (default `stytch`) and `LOG_SERVICE` (default `stytch.auth`).
    pub labels: LogLabels,
    /// `EXTRA_CA_CERTS` (development and tests only): a PEM bundle trusted in addition to the
    /// public roots.
    pub extra_ca_certs: Option<PathBuf>,
    /// `ALLOW_PRIVATE_DESTINATIONS` (development and tests only, default false).
    pub allow_private_destinations: bool,
    /// `DATADOG_INTAKE_URL` (development and tests only): replaces the site's intake URL.
    pub datadog_intake_url: Option<String>,
    /// `ALLOWED_DESTINATION_PORTS` (default `443,3100,8443`): the ports a Loki hostname may
    /// name; 443 always. Lifted by `ALLOW_PRIVATE_DESTINATIONS`.
    pub allowed_destination_ports: Vec<u16>,
}

impl DestinationSettings {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Ok(Self {
            labels: LogLabels {
                source: get("LOG_SOURCE").unwrap_or_else(|| "stytch".into()),
                service: get("LOG_SERVICE").unwrap_or_else(|| "stytch.auth".into()),
            },
            extra_ca_certs: get("EXTRA_CA_CERTS").map(PathBuf::from),
            allow_private_destinations: flag(lookup, "ALLOW_PRIVATE_DESTINATIONS")?,
            datadog_intake_url: get("DATADOG_INTAKE_URL"),
            allowed_destination_ports: ports(
                &get("ALLOWED_DESTINATION_PORTS").unwrap_or_else(|| "443,3100,8443".into()),
            )?,
        })
    }

    /// The HTTP client's options; reads the `EXTRA_CA_CERTS` file.
    pub fn client_options(&self) -> Result<ClientOptions, SettingsError> {
        let extra_ca_pem = match &self.extra_ca_certs {
            Some(path) => Some(std::fs::read(path).map_err(|e| SettingsError {
                name: "EXTRA_CA_CERTS",
                message: format!("cannot read {}: {e}", path.display()),
            })?),
            None => None,
        };
        Ok(ClientOptions {
            policy: AddressPolicy {
                allow_private: self.allow_private_destinations,
            },
            extra_ca_pem,
            datadog_intake_url: self.datadog_intake_url.clone(),
            allowed_ports: self.allowed_destination_ports.clone(),
        })
    }
}

/// A comma-separated list of ports, each 1–65535 written in digits only.
fn ports(list: &str) -> Result<Vec<u16>, SettingsError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            parse_port(p).ok_or_else(|| SettingsError {
                name: "ALLOWED_DESTINATION_PORTS",
                message: format!("expected ports such as 443,3100, got {p:?}"),
            })
        })
        .collect()
}

/// `CONFIG_CACHE_TTL_SECONDS`, read by both functions: the streamer caches configurations this
/// long, and the config API dates an enable this far ahead. At most an hour.
pub fn cache_ttl_seconds(lookup: &dyn Fn(&str) -> Option<String>) -> Result<u64, SettingsError> {
    const NAME: &str = "CONFIG_CACHE_TTL_SECONDS";
    const MAX: u64 = 3600;
    match lookup(NAME).filter(|v| !v.trim().is_empty()) {
        None => Ok(30),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|seconds| *seconds <= MAX)
            .ok_or_else(|| SettingsError {
                name: NAME,
                message: format!("expected a whole number of seconds up to {MAX}, got {v:?}"),
            }),
    }
}

/// A boolean setting: unset, `false` or `0`; `true` or `1`.
fn flag(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<bool, SettingsError> {
    match lookup(name).as_deref().map(str::trim) {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(SettingsError {
            name,
            message: format!("expected true or false, got {other:?}"),
        }),
    }
}

/// `STREAM_TABLE_NAME`: the DynamoDB table of streams, required by both functions in AWS.
pub fn stream_table_name(lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, SettingsError> {
    lookup("STREAM_TABLE_NAME")
        .filter(|v| !v.trim().is_empty())
        .ok_or(SettingsError {
            name: "STREAM_TABLE_NAME",
            message: "must name the DynamoDB table of streams".into(),
        })
}

/// `CONFIG_SECRET_PREFIX`, read by both functions and the migration: the credential secrets'
/// name prefix, default `event-log-streaming/`.
pub fn config_secret_prefix(lookup: &dyn Fn(&str) -> Option<String>) -> String {
    lookup("CONFIG_SECRET_PREFIX")
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SECRET_PREFIX.to_owned())
}

/// Where the credentials are: `CREDENTIAL_STORE`, read by both functions and the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialStoreKind {
    /// `SecretsManager` (the default): one secret per stream, named with
    /// `CONFIG_SECRET_PREFIX`.
    SecretsManager,
    /// `KmsEnvelope`: sealed under data keys of the KMS key `CREDENTIAL_KMS_KEY_ID` (key id,
    /// ARN or alias; required), in the streams table.
    KmsEnvelope { key_id: String },
}

/// `CREDENTIAL_STORE` and, for `KmsEnvelope`, `CREDENTIAL_KMS_KEY_ID`.
pub fn credential_store(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<CredentialStoreKind, SettingsError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    match get("CREDENTIAL_STORE").as_deref().map(str::trim) {
        None | Some("SecretsManager") => Ok(CredentialStoreKind::SecretsManager),
        Some("KmsEnvelope") => Ok(CredentialStoreKind::KmsEnvelope {
            key_id: get("CREDENTIAL_KMS_KEY_ID")
                .map(|v| v.trim().to_owned())
                .ok_or(SettingsError {
                    name: "CREDENTIAL_KMS_KEY_ID",
                    message: "must name the KMS key when CREDENTIAL_STORE is KmsEnvelope".into(),
                })?,
        }),
        Some(other) => Err(SettingsError {
            name: "CREDENTIAL_STORE",
            message: format!("expected SecretsManager or KmsEnvelope, got {other:?}"),
        }),
    }
}

#[derive(Debug, Clone)]
pub struct StreamerSettings {
    /// `CONFIG_SECRET_PREFIX`: credential secret name prefix, default `event-log-streaming/`.
    pub config_secret_prefix: String,
    /// `CREDENTIAL_STORE` (`SecretsManager` or `KmsEnvelope`) and `CREDENTIAL_KMS_KEY_ID`.
    pub credential_store: CredentialStoreKind,
    /// `CONFIG_CACHE_TTL_SECONDS`: how long a configuration lookup is reused, default 30.
    pub config_cache_ttl: Duration,
    /// `CONFIG_CACHE_SIZE`: streams (and credentials) a container keeps, default 10,000.
    pub config_cache_size: NonZeroUsize,
    /// `PUSH_TIMEOUT_SECONDS`: longest single push, default 20.
    pub request_timeout: Duration,
    /// `RETRY_WINDOW_SECONDS`: how long after a failing push's first attempt a retry may still
    /// start, default 10; then its records go back to the queue with a delay.
    pub retry_window: Duration,
    /// `HEALTH_WRITE_INTERVAL_SECONDS`: how often a container writes a stream's health when
    /// its state does not change, default 300.
    pub health_write_interval: Duration,
    /// `SUSPEND_AFTER_AUTH_FAILURES`: consecutive refused attempts that suspend, default 10.
    pub suspend_after_auth_failures: u64,
    /// `SUSPEND_AFTER_SECONDS`: the span those refusals must cover, default 900.
    pub suspend_after: Duration,
    pub destinations: DestinationSettings,
    /// `DEAD_LETTER_QUEUE_URL`: where rejected records go. Without it they are reported failed.
    pub dead_letter_queue_url: Option<String>,
    /// `RETRY_QUEUE_URL`: the retry queue, where the failed records of a message are sent back
    /// on their own. Without it, such a message is retried whole. Set with
    /// [`Self::retry_queue_arn`] or not at all.
    pub retry_queue_url: Option<String>,
    /// `RETRY_QUEUE_ARN`: the same queue's ARN. Only messages whose source is this queue are
    /// believed to be copies sent back (their attempts and original `SentTimestamp`), since
    /// only the streamer may send to it.
    pub retry_queue_arn: Option<String>,
    /// `MAX_DELIVERY_ATTEMPTS`: attempts a record gets before it is dead-lettered (default 5,
    /// the queue's `maxReceiveCount`).
    pub max_delivery_attempts: u32,
    /// `REQUEUE_BASE_DELAY_SECONDS`: the delay of a record sent back after its first failed
    /// attempt (default 30), doubling per attempt up to 900.
    pub requeue_base_delay: Duration,
    /// `MAX_CONCURRENT_PUSHES`: destination requests in flight at once, default 32. Every
    /// project of a batch is worked on at once; only the requests are bounded, so a project
    /// waiting out a backoff holds no slot.
    pub max_concurrent_pushes: usize,
}

/// `RETRY_QUEUE_URL` and `RETRY_QUEUE_ARN`, both or neither: a queue the streamer sends copies
/// to but does not believe would retry their records for ever, one it believes but never sends
/// to is a mistake. `EVENT_QUEUE_URL` is refused, so that a configuration that still sends
/// copies to the event queue fails at start instead of losing its sends back.
fn retry_queue(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<String>, Option<String>), SettingsError> {
    if get("EVENT_QUEUE_URL").is_some() {
        return Err(SettingsError {
            name: "EVENT_QUEUE_URL",
            message: "no longer read: failed records go back to RETRY_QUEUE_URL, a queue only \
                      the streamer may send to (with RETRY_QUEUE_ARN)"
                .into(),
        });
    }
    match (get("RETRY_QUEUE_URL"), get("RETRY_QUEUE_ARN")) {
        (None, None) => Ok((None, None)),
        (Some(_), None) => Err(SettingsError {
            name: "RETRY_QUEUE_ARN",
            message: "must name the queue RETRY_QUEUE_URL names".into(),
        }),
        (None, Some(_)) => Err(SettingsError {
            name: "RETRY_QUEUE_URL",
            message: "must name the queue RETRY_QUEUE_ARN names".into(),
        }),
        (Some(url), Some(arn)) => {
            let arn = arn.trim();
            let parts: Vec<&str> = arn.split(':').collect();
            let is_queue_arn = parts.len() == 6
                && parts[0] == "arn"
                && parts[2] == "sqs"
                && parts[1..].iter().all(|part| !part.is_empty());
            if !is_queue_arn {
                return Err(SettingsError {
                    name: "RETRY_QUEUE_ARN",
                    message: format!(
                        "expected an SQS queue ARN such as arn:aws:sqs:REGION:ACCOUNT:NAME, got {arn:?}"
                    ),
                });
            }
            Ok((Some(url.trim().to_owned()), Some(arn.to_owned())))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {message}")]
pub struct SettingsError {
    pub name: &'static str,
    pub message: String,
}

impl StreamerSettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let number = |name: &'static str, default: u64| -> Result<u64, SettingsError> {
            get(name).map_or(Ok(default), |v| {
                v.trim().parse().map_err(|_| SettingsError {
                    name,
                    message: format!("expected a whole number, got {v:?}"),
                })
            })
        };
        let at_least_one = |name: &'static str, default: u64| -> Result<u64, SettingsError> {
            match number(name, default)? {
                0 => Err(SettingsError {
                    name,
                    message: "must be at least 1".into(),
                }),
                n => Ok(n),
            }
        };
        let (retry_queue_url, retry_queue_arn) = retry_queue(&get)?;
        let max_concurrent_pushes = at_least_one("MAX_CONCURRENT_PUSHES", 32)?;
        let cache_size = at_least_one("CONFIG_CACHE_SIZE", 10_000)?;
        Ok(Self {
            config_secret_prefix: config_secret_prefix(&lookup),
            credential_store: credential_store(&lookup)?,
            config_cache_ttl: Duration::from_secs(cache_ttl_seconds(&lookup)?),
            config_cache_size: NonZeroUsize::new(cache_size as usize).expect("at least one"),
            request_timeout: Duration::from_secs(at_least_one("PUSH_TIMEOUT_SECONDS", 20)?),
            retry_window: Duration::from_secs(number("RETRY_WINDOW_SECONDS", 10)?),
            health_write_interval: Duration::from_secs(number(
                "HEALTH_WRITE_INTERVAL_SECONDS",
                300,
            )?),
            suspend_after_auth_failures: at_least_one("SUSPEND_AFTER_AUTH_FAILURES", 10)?,
            suspend_after: Duration::from_secs(number("SUSPEND_AFTER_SECONDS", 900)?),
            destinations: DestinationSettings::from_lookup(&lookup)?,
            dead_letter_queue_url: get("DEAD_LETTER_QUEUE_URL"),
            retry_queue_url,
            retry_queue_arn,
            max_delivery_attempts: u32::try_from(at_least_one("MAX_DELIVERY_ATTEMPTS", 5)?)
                .unwrap_or(u32::MAX),
            requeue_base_delay: Duration::from_secs(number("REQUEUE_BASE_DELAY_SECONDS", 30)?),
            max_concurrent_pushes: max_concurrent_pushes as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<StreamerSettings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StreamerSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.config_secret_prefix, "event-log-streaming/");
        assert_eq!(s.credential_store, CredentialStoreKind::SecretsManager);
        assert_eq!(s.config_cache_ttl, Duration::from_secs(30));
        assert_eq!(s.destinations.labels.source, "stytch");
        assert_eq!(s.destinations.labels.service, "stytch.auth");
        assert_eq!(s.max_concurrent_pushes, 32);
        assert_eq!(s.config_cache_size.get(), 10_000);
        assert_eq!(s.request_timeout, Duration::from_secs(20));
        assert_eq!(s.retry_window, Duration::from_secs(10));
        assert_eq!(s.health_write_interval, Duration::from_secs(300));
        assert_eq!(s.suspend_after_auth_failures, 10);
        assert_eq!(s.suspend_after, Duration::from_secs(900));
        assert!(!s.destinations.allow_private_destinations);
        assert!(s.dead_letter_queue_url.is_none());
        assert!(s.retry_queue_url.is_none());
        assert!(s.retry_queue_arn.is_none());
        assert_eq!(s.max_delivery_attempts, 5);
        assert_eq!(s.requeue_base_delay, Duration::from_secs(30));
        assert_eq!(s.destinations.allowed_destination_ports, [443, 3100, 8443]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = settings(&[("CONFIG_CACHE_TTL_SECONDS", "soon")]).unwrap_err();
        assert_eq!(err.name, "CONFIG_CACHE_TTL_SECONDS");
        assert!(settings(&[("CONFIG_CACHE_TTL_SECONDS", "3601")]).is_err());
        let err = settings(&[("ALLOW_PRIVATE_DESTINATIONS", "yes")]).unwrap_err();
        assert_eq!(err.name, "ALLOW_PRIVATE_DESTINATIONS");
        assert!(settings(&[("MAX_CONCURRENT_PUSHES", "0")]).is_err());
        assert!(settings(&[("CONFIG_CACHE_SIZE", "0")]).is_err());
        let err = settings(&[("ALLOWED_DESTINATION_PORTS", "443,+22")]).unwrap_err();
        assert_eq!(err.name, "ALLOWED_DESTINATION_PORTS");
        // Written as a hostname's port must be: no leading zero, not 0.
        assert!(settings(&[("ALLOWED_DESTINATION_PORTS", "0443")]).is_err());
        assert!(settings(&[("ALLOWED_DESTINATION_PORTS", "0")]).is_err());
        assert!(settings(&[("SUSPEND_AFTER_AUTH_FAILURES", "0")]).is_err());
    }

    #[test]
    fn the_kms_envelope_needs_its_key() {
        let s = settings(&[
            ("CREDENTIAL_STORE", "KmsEnvelope"),
            ("CREDENTIAL_KMS_KEY_ID", "alias/els"),
        ])
        .unwrap();
        assert_eq!(
            s.credential_store,
            CredentialStoreKind::KmsEnvelope {
                key_id: "alias/els".into()
            }
        );
        let err = settings(&[("CREDENTIAL_STORE", "KmsEnvelope")]).unwrap_err();
        assert_eq!(err.name, "CREDENTIAL_KMS_KEY_ID");
        let err = settings(&[("CREDENTIAL_STORE", "kms")]).unwrap_err();
        assert_eq!(err.name, "CREDENTIAL_STORE");
        let s = settings(&[("CREDENTIAL_STORE", "SecretsManager")]).unwrap();
        assert_eq!(s.credential_store, CredentialStoreKind::SecretsManager);
    }

    #[test]
    fn the_retry_queue_is_named_by_its_url_and_its_arn_together() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/els-retries";
        let arn = "arn:aws:sqs:us-east-1:123456789012:els-retries";
        let s = settings(&[("RETRY_QUEUE_URL", url), ("RETRY_QUEUE_ARN", arn)]).unwrap();
        assert_eq!(s.retry_queue_url.as_deref(), Some(url));
        assert_eq!(s.retry_queue_arn.as_deref(), Some(arn));

        let err = settings(&[("RETRY_QUEUE_URL", url)]).unwrap_err();
        assert_eq!(err.name, "RETRY_QUEUE_ARN");
        let err = settings(&[("RETRY_QUEUE_ARN", arn)]).unwrap_err();
        assert_eq!(err.name, "RETRY_QUEUE_URL");
        for bad in [
            "els-retries",
            "arn:aws:sns:us-east-1:123456789012:x",
            "arn:aws:sqs:::x",
        ] {
            let err = settings(&[("RETRY_QUEUE_URL", url), ("RETRY_QUEUE_ARN", bad)]).unwrap_err();
            assert_eq!(err.name, "RETRY_QUEUE_ARN", "{bad}");
        }
        let err = settings(&[("EVENT_QUEUE_URL", url)]).unwrap_err();
        assert_eq!(err.name, "EVENT_QUEUE_URL");
    }
}
