//! Values the tests and benchmarks build again and again: configurations, the product's
//! labels, and a client that trusts the test CA and may reach loopback.

use event_log_streaming::destination::LogLabels;
use event_log_streaming::destination::client::{ClientOptions, DestinationClient};
use event_log_streaming::domain::{
    DatadogBody, Destination, DestinationConfigBody, DestinationType, LokiBody, StreamingConfig,
    StreamingStatus,
};
use event_log_streaming::net::AddressPolicy;
use time::OffsetDateTime;

use crate::tls::pki;

pub fn labels() -> LogLabels {
    LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    }
}

/// A client for the local test servers: trusts the test CA, allows loopback.
pub fn loopback_client(datadog_intake_url: Option<String>) -> DestinationClient {
    DestinationClient::new(ClientOptions {
        policy: AddressPolicy {
            allow_private: true,
        },
        extra_ca_pem: Some(pki().ca_pem.clone().into_bytes()),
        datadog_intake_url,
    })
    .unwrap()
}

pub fn loki_config(hostname: &str, username: &str, password: &str) -> StreamingConfig {
    let body = DestinationConfigBody {
        datadog: None,
        grafana_loki: Some(LokiBody {
            hostname: hostname.into(),
            username: username.into(),
            password: password.into(),
        }),
    };
    active(Destination::parse(DestinationType::GrafanaLoki, &body).unwrap())
}

pub fn datadog_config(api_key: &str) -> StreamingConfig {
    let body = DestinationConfigBody {
        datadog: Some(DatadogBody {
            site: "US".into(),
            api_key: api_key.into(),
        }),
        grafana_loki: None,
    };
    active(Destination::parse(DestinationType::Datadog, &body).unwrap())
}

/// Active since an hour ago, so every event sent now counts as new.
pub fn active(destination: Destination) -> StreamingConfig {
    let now = OffsetDateTime::now_utc();
    StreamingConfig {
        destination,
        streaming_status: StreamingStatus::Active,
        enabled_at: Some(now - time::Duration::hours(1)),
        created_at: now - time::Duration::hours(2),
        updated_at: now - time::Duration::hours(1),
    }
}
