//! Values the tests and benchmarks build again and again: configurations, the product's
//! labels, and a client that trusts the test CA and may reach loopback.

use event_log_streaming::destination::LogLabels;
use event_log_streaming::destination::client::{ClientOptions, DestinationClient};
use event_log_streaming::domain::controls::{EventFilterBody, RedactionBody};
use event_log_streaming::domain::{
    DatadogBody, Destination, DestinationConfigBody, DestinationType, LokiBody, ProjectId,
    StreamConfig, StreamControls, StreamState, StreamingStatus,
};
use event_log_streaming::net::AddressPolicy;
use event_log_streaming::store::{CredentialWrite, StreamWrite, create_stream};
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
        allowed_ports: Vec::new(),
    })
    .unwrap()
}

/// A stream to set up: a destination, its controls, a status and when it was enabled.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub destination: Destination,
    pub controls: StreamControls,
    pub status: StreamingStatus,
    pub enabled_at: Option<OffsetDateTime>,
}

pub fn loki_destination(hostname: &str, username: &str, password: &str) -> Destination {
    let body = DestinationConfigBody {
        datadog: None,
        grafana_loki: Some(LokiBody {
            hostname: hostname.into(),
            username: username.into(),
            password: password.into(),
            ..Default::default()
        }),
    };
    Destination::parse(DestinationType::GrafanaLoki, &body).unwrap()
}

pub fn datadog_destination(api_key: &str) -> Destination {
    let body = DestinationConfigBody {
        datadog: Some(DatadogBody {
            site: "US".into(),
            api_key: api_key.into(),
            ..Default::default()
        }),
        grafana_loki: None,
    };
    Destination::parse(DestinationType::Datadog, &body).unwrap()
}

pub fn loki_config(hostname: &str, username: &str, password: &str) -> StreamSpec {
    active(loki_destination(hostname, username, password))
}

pub fn datadog_config(api_key: &str) -> StreamSpec {
    active(datadog_destination(api_key))
}

/// Active since an hour ago, so every event sent now counts as new.
pub fn active(destination: Destination) -> StreamSpec {
    StreamSpec {
        destination,
        controls: StreamControls::default(),
        status: StreamingStatus::Active,
        enabled_at: Some(OffsetDateTime::now_utc() - time::Duration::hours(1)),
    }
}

/// Creates the stream `spec` describes, through the same path as the config API.
pub async fn provision(
    streams: &dyn StreamWrite,
    credentials: &dyn CredentialWrite,
    project: &str,
    spec: StreamSpec,
) -> StreamConfig {
    let project = ProjectId::parse(project).unwrap();
    let now = OffsetDateTime::now_utc();
    let created = create_stream(
        streams,
        credentials,
        &project,
        &spec.destination,
        &spec.controls,
        now - time::Duration::hours(2),
    )
    .await
    .unwrap();
    if spec.status == StreamingStatus::Disabled {
        return created;
    }
    let mut config = created.next_version(now);
    config.state = StreamState {
        status: spec.status,
        enabled_at: spec.enabled_at,
        suspension: None,
    };
    streams.update(&config, created.version).await.unwrap();
    config
}

/// Project ranks drawn from Zipf(s = 1), the traffic of many projects where a few send most
/// events: the cumulative distribution, inverted.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(ranks: usize) -> Self {
        let mut total = 0.0;
        let mut cumulative: Vec<f64> = (1..=ranks)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        cumulative.iter_mut().for_each(|c| *c /= total);
        Self { cumulative }
    }

    /// A rank from 0 (the busiest).
    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(self.cumulative.len() - 1)
    }
}

/// An `event_filter` streaming `actions` (any status).
pub fn filter_on(actions: &[&str]) -> StreamControls {
    let filter = EventFilterBody {
        actions: Some(actions.iter().map(|a| a.to_string()).collect()),
        statuses: None,
    };
    StreamControls::parse(Some(&filter), None).unwrap()
}

/// A `redaction` hashing `fields`.
pub fn hash_of(fields: &[&str]) -> StreamControls {
    let hash = RedactionBody {
        fields: fields.iter().map(|f| f.to_string()).collect(),
        mode: "HASH".into(),
    };
    StreamControls::parse(None, Some(&hash)).unwrap()
}
