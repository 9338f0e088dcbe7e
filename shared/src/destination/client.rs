//! The one HTTP client of a container, shared by every project and every invocation so that
//! TLS connections to a destination are reused.
//!
//! Timeouts: connecting is bounded by [`CONNECT_TIMEOUT`]; each request by the caller (the
//! time the invocation has left). Idle pooled connections are closed after
//! [`POOL_IDLE_TIMEOUT`], well before Loki's 120 s server idle timeout, so the client rarely
//! writes to a connection the server is closing. Redirects are never followed.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Certificate, Client, Url, redirect};

use super::datadog;
use crate::domain::{Destination, LokiDestination};
use crate::net::{AddressPolicy, PolicyResolver, RefusedAddress};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(25);
/// Enough of an error body to say why (Loki names the offending entry), bounded for logs.
const MAX_DETAIL_CHARS: usize = 300;
const MAX_ERROR_BODY_BYTES: usize = 4096;

#[derive(Clone)]
pub struct ClientOptions {
    pub policy: AddressPolicy,
    /// PEM bundle trusted in addition to the public roots (development and tests only).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Replaces `https://http-intake.logs.{site}` for every site (development and tests only).
    pub datadog_intake_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("EXTRA_CA_CERTS is not a valid PEM bundle: {0}")]
    ExtraCaCerts(reqwest::Error),
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
}

/// What came back from one push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushResponse {
    Status {
        status: u16,
        retry_after: Option<Duration>,
        /// The start of the response body, for 4xx/5xx only.
        detail: String,
    },
    /// Our address policy refused the destination; nothing was sent.
    Refused(String),
    /// No HTTP answer: connect failure, reset, timeout.
    Transport(String),
}

pub struct DestinationClient {
    http: Client,
    policy: AddressPolicy,
    datadog_intake_url: Option<String>,
}

impl DestinationClient {
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        let mut builder = Client::builder()
            .user_agent(concat!("event-log-streaming/", env!("CARGO_PKG_VERSION")))
            .https_only(true)
            .redirect(redirect::Policy::none())
            // A proxy from the environment would connect on our behalf, past the resolver.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .dns_resolver(PolicyResolver::new(options.policy));
        if let Some(pem) = &options.extra_ca_pem {
            let certs =
                Certificate::from_pem_bundle(pem).map_err(ClientBuildError::ExtraCaCerts)?;
            builder = builder.tls_certs_merge(certs);
        }
        Ok(Self {
            http: builder.build().map_err(ClientBuildError::Build)?,
            policy: options.policy,
            datadog_intake_url: options.datadog_intake_url,
        })
    }

    /// Refuses, without any network traffic, a destination whose host name alone shows it
    /// is not on the public internet.
    pub fn check_destination(&self, destination: &Destination) -> Result<(), RefusedAddress> {
        match destination {
            Destination::GrafanaLoki(loki) => self.loki_push_url(loki).map(|_| ()),
            Destination::Datadog(_) => Ok(()),
        }
    }

    /// The push URL, parsed once, if the address policy lets its host through. The host is
    /// judged as written and as the URL parser reads it: an IP address there is connected to
    /// directly, without the resolver.
    fn loki_push_url(&self, loki: &LokiDestination) -> Result<Url, RefusedAddress> {
        let refused = || RefusedAddress {
            host: loki.hostname.host().to_owned(),
        };
        self.policy.check_host(loki.hostname.host())?;
        let url = Url::parse(&loki.hostname.push_url()).map_err(|_| refused())?;
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match ip {
            Some(ip) if !self.policy.permits(ip) => Err(refused()),
            _ => Ok(url),
        }
    }

    /// Pushes an already gzipped JSON body to the destination, once.
    pub async fn push(
        &self,
        destination: &Destination,
        gzipped_json: &[u8],
        timeout: Duration,
    ) -> PushResponse {
        let request = match destination {
            Destination::GrafanaLoki(loki) => {
                let url = match self.loki_push_url(loki) {
                    Ok(url) => url,
                    Err(refused) => return PushResponse::Refused(refused.to_string()),
                };
                self.http
                    .post(url)
                    .basic_auth(&loki.username, Some(loki.password.expose()))
            }
            Destination::Datadog(datadog) => {
                let base = match &self.datadog_intake_url {
                    Some(url) => url.trim_end_matches('/').to_owned(),
                    None => format!("https://{}", datadog.site.intake_host()),
                };
                let mut key = HeaderValue::from_str(datadog.api_key.secret().expose())
                    .expect("a validated API key is a valid header value");
                key.set_sensitive(true);
                self.http
                    .post(format!("{base}{}", datadog::LOGS_PATH))
                    .header("DD-API-KEY", key)
            }
        };
        let result = request
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .timeout(timeout)
            .body(gzipped_json.to_vec())
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let detail = if status >= 400 {
                    excerpt(&read_start(response).await)
                } else {
                    String::new()
                };
                PushResponse::Status {
                    status,
                    retry_after,
                    detail,
                }
            }
            Err(err) => describe_error(&err),
        }
    }
}

/// reqwest errors carry the URL, which holds no secret here (credentials travel in headers),
/// but the cause chain is what tells an operator what happened.
fn describe_error(err: &reqwest::Error) -> PushResponse {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
            return PushResponse::Refused(refused.to_string());
        }
        source = cause.source();
    }
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut detail = kind.to_owned();
    let mut source = err.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    PushResponse::Transport(excerpt(&detail))
}

/// The first few KB of a body: enough to say why, and a hostile destination cannot make us
/// buffer an endless answer.
async fn read_start(mut response: reqwest::Response) -> String {
    let mut start = Vec::new();
    while start.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            _ => break,
        }
    }
    start.truncate(MAX_ERROR_BODY_BYTES);
    String::from_utf8_lossy(&start).into_owned()
}

fn excerpt(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}
