//! The one HTTP client of a container, shared by every project and every invocation so that
//! TLS connections to a destination are reused.
//!
//! Timeouts: connecting is bounded by [`CONNECT_TIMEOUT`]; each request by the caller (the
//! time the invocation has left). Idle pooled connections are closed after
//! [`POOL_IDLE_TIMEOUT`], well before Loki's 120 s server idle timeout, so the client rarely
//! writes to a connection the server is closing. Redirects are never followed.
//!
//! A push goes on a pooled connection or a new one ([`Connection`]); which one a retry takes
//! is the retry policy's choice ([`crate::delivery::retry`]).
//!
//! Every push to a Loki stream with a `tenant_id` carries it as `X-Scope-OrgID`
//! ([`TENANT_HEADER`]): one tenant, validated to Loki's rules when it was configured.

use std::error::Error as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use hyper::body::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Certificate, Client, Url, redirect};
use time::OffsetDateTime;

use super::datadog;
use crate::domain::controls::TENANT_HEADER;
use crate::domain::{Destination, Endpoint, LokiHostname};
use crate::net::{
    AddressPolicy, DestinationRefusal, DnsFailure, PolicyResolver, RefusedAddress, check_port,
    has_public_suffix,
};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(25);
/// Enough of an error body to say why (Loki names the offending entry), bounded for logs.
const MAX_DETAIL_CHARS: usize = 300;
/// What a customer is shown of the destination's own words, when they are a recognised
/// Loki or Datadog error.
const MAX_QUOTE_CHARS: usize = 200;
const MAX_ERROR_BODY_BYTES: usize = 4096;

#[derive(Clone)]
pub struct ClientOptions {
    pub policy: AddressPolicy,
    /// PEM bundle trusted in addition to the public roots (development and tests only).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Replaces `https://http-intake.logs.{site}` for every site (development and tests only).
    pub datadog_intake_url: Option<String>,
    /// Ports a Loki hostname may name besides 443 (`ALLOWED_DESTINATION_PORTS`); any port
    /// when the policy allows private destinations.
    pub allowed_ports: Vec<u16>,
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
        /// The start of the response body, for 4xx/5xx only: for logs and the dead-letter
        /// queue, never shown to the customer as is.
        detail: String,
        /// The destination's words, when they are a recognised Loki or Datadog error (plain
        /// text or Datadog's JSON errors, not HTML), at most 200 characters: what a customer
        /// may be shown.
        quote: Option<String>,
    },
    /// Our policy refused the destination; nothing was sent.
    Refused(String),
    /// No HTTP answer.
    Transport {
        failure: TransportFailure,
        /// The error chain, for logs only.
        detail: String,
    },
}

impl PushResponse {
    /// The destination's HTTP status, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Refused(_) | Self::Transport { .. } => None,
        }
    }
}

/// Why no HTTP answer came, in the categories a customer can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The name does not resolve.
    Dns,
    /// Nothing listens on the port.
    ConnectionRefused,
    /// The connection was closed or reset before an answer.
    ConnectionReset,
    /// The TLS handshake failed (no TLS, or a certificate not valid for the name).
    Tls,
    /// No answer within the time allowed.
    Timeout,
    Other,
}

/// Which connection a push goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// A pooled one, reused across pushes to the same host.
    Pooled,
    /// A new one, closed after the push.
    Fresh,
}

pub struct DestinationClient {
    http: Client,
    /// Keeps no connection: each push opens its own. Built at the first retry that needs it:
    /// building a client (its TLS roots) is a few milliseconds of every cold start otherwise.
    fresh: OnceLock<Client>,
    options: ClientOptions,
}

impl DestinationClient {
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        Ok(Self {
            http: Self::builder(&options)?
                .build()
                .map_err(ClientBuildError::Build)?,
            fresh: OnceLock::new(),
            options,
        })
    }

    /// The client that keeps no connection. The same options built the pooled one, so this
    /// build does not fail; were it to, the pooled client serves.
    fn fresh(&self) -> &Client {
        self.fresh.get_or_init(|| {
            Self::builder(&self.options)
                .and_then(|b| {
                    b.pool_max_idle_per_host(0)
                        .build()
                        .map_err(ClientBuildError::Build)
                })
                .unwrap_or_else(|_| self.http.clone())
        })
    }

    fn builder(options: &ClientOptions) -> Result<reqwest::ClientBuilder, ClientBuildError> {
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
        Ok(builder)
    }

    /// Refuses, when a destination is configured and without any network traffic, a Loki
    /// hostname that is not a public name on an allowed port. Relaxed, like the address
    /// checks, by `ALLOW_PRIVATE_DESTINATIONS`.
    pub fn check_endpoint(&self, endpoint: &Endpoint) -> Result<(), DestinationRefusal> {
        let Endpoint::GrafanaLoki { hostname, .. } = endpoint else {
            return Ok(());
        };
        self.loki_push_url(hostname)?;
        if !self.options.policy.allow_private && !has_public_suffix(hostname.host()) {
            return Err(DestinationRefusal::NotPublicName);
        }
        Ok(())
    }

    /// The push URL, parsed once, if the policy lets its host and port through. The host is
    /// judged as written and as the URL parser reads it: an IP address there is connected to
    /// directly, without the resolver.
    fn loki_push_url(&self, hostname: &LokiHostname) -> Result<Url, DestinationRefusal> {
        let refused = || DestinationRefusal::PrivateAddress;
        self.options
            .policy
            .check_host(hostname.host())
            .map_err(|_| refused())?;
        if !self.options.policy.allow_private {
            check_port(hostname.port().unwrap_or(443), &self.options.allowed_ports)?;
        }
        let url = Url::parse(&hostname.push_url()).map_err(|_| refused())?;
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match ip {
            Some(ip) if !self.options.policy.permits(ip) => Err(refused()),
            _ => Ok(url),
        }
    }

    /// Pushes an already gzipped JSON body to the destination, once, at `now` (the caller's
    /// clock: a `Retry-After` given as a date is counted from it). `Bytes`, so that a retry
    /// shares the body instead of copying it.
    pub async fn push(
        &self,
        destination: &Destination,
        gzipped_json: Bytes,
        timeout: Duration,
        connection: Connection,
        now: OffsetDateTime,
    ) -> PushResponse {
        let http = match connection {
            Connection::Pooled => &self.http,
            Connection::Fresh => self.fresh(),
        };
        let request = match destination {
            Destination::GrafanaLoki(loki) => {
                let url = match self.loki_push_url(&loki.hostname) {
                    Ok(url) => url,
                    Err(refused) => {
                        return PushResponse::Refused(format!("the Loki hostname {refused}"));
                    }
                };
                let request = http
                    .post(url)
                    .basic_auth(&loki.username, Some(loki.password.expose()));
                match &loki.tenant_id {
                    Some(tenant) => request.header(TENANT_HEADER, tenant.as_str()),
                    None => request,
                }
            }
            Destination::Datadog(datadog) => {
                let base = match &self.options.datadog_intake_url {
                    Some(url) => url.trim_end_matches('/').to_owned(),
                    None => format!("https://{}", datadog.site.intake_host()),
                };
                let mut key = HeaderValue::from_str(datadog.api_key.secret().expose())
                    .expect("a validated API key is a valid header value");
                key.set_sensitive(true);
                http.post(format!("{base}{}", datadog::LOGS_PATH))
                    .header("DD-API-KEY", key)
            }
        };
        let result = request
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .timeout(timeout)
            .body(gzipped_json)
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::from(now)));
                if status < 400 {
                    return PushResponse::Status {
                        status,
                        retry_after,
                        detail: String::new(),
                        quote: None,
                    };
                }
                let content_type = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = read_start(response).await;
                PushResponse::Status {
                    status,
                    retry_after,
                    detail: excerpt(&body, MAX_DETAIL_CHARS),
                    quote: quotable(content_type.as_deref(), &body),
                }
            }
            Err(err) => describe_error(&err),
        }
    }
}

/// reqwest errors carry the URL, which holds no secret here (credentials travel in headers),
/// but the cause chain is what tells an operator what happened; the customer gets only the
/// category.
fn describe_error(err: &reqwest::Error) -> PushResponse {
    let mut failure = if err.is_timeout() {
        TransportFailure::Timeout
    } else {
        TransportFailure::Other
    };
    let mut detail = if err.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
            return PushResponse::Refused(refused.to_string());
        }
        if cause.is::<DnsFailure>() {
            failure = TransportFailure::Dns;
        } else if cause.is::<hyper::Error>() && !err.is_connect() && !err.is_timeout() {
            // The request went out and the connection or stream ended without an answer
            // (closed, HTTP/2 reset, or no HTTP at all).
            failure = TransportFailure::ConnectionReset;
        } else if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && failure == TransportFailure::Other
        {
            use std::io::ErrorKind::*;
            failure = match innermost_kind(io) {
                ConnectionRefused => TransportFailure::ConnectionRefused,
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    TransportFailure::ConnectionReset
                }
                // tokio-rustls reports handshake failures as invalid data.
                InvalidData if err.is_connect() => TransportFailure::Tls,
                TimedOut => TransportFailure::Timeout,
                _ => TransportFailure::Other,
            };
        }
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    PushResponse::Transport {
        failure,
        detail: excerpt(&detail, MAX_DETAIL_CHARS),
    }
}

/// The kind of an I/O error, looking through the `Other` wrappers that connectors put around
/// the error that says what happened.
fn innermost_kind(error: &std::io::Error) -> std::io::ErrorKind {
    let mut error = error;
    while error.kind() == std::io::ErrorKind::Other {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<std::io::Error>())
        {
            Some(inner) => error = inner,
            None => break,
        }
    }
    error.kind()
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

/// At most `max` characters, control characters removed.
fn excerpt(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The destination's error text, if it is one a customer may be shown: Loki's plain-text
/// errors, or the messages of Datadog's JSON error shape (`{"errors":[…]}`). Anything else,
/// HTML pages above all, is not repeated: a customer-chosen host must not turn the test
/// endpoint into a page reader.
fn quotable(content_type: Option<&str>, body: &str) -> Option<String> {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let text = match mime.as_deref() {
        Some("application/json") => datadog_errors(body)?,
        Some("text/plain") | None => body.to_owned(),
        Some(_) => return None,
    };
    let text = excerpt(&text, MAX_QUOTE_CHARS);
    let looks_like_markup = text.contains('<') && text.contains('>');
    (!text.is_empty() && !looks_like_markup).then_some(text)
}

/// The messages of Datadog's error shape: `{"errors":["…"]}` or
/// `{"errors":[{"title":"…","detail":"…"}]}`.
fn datadog_errors(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let messages: Vec<String> = value
        .get("errors")?
        .as_array()?
        .iter()
        .filter_map(|e| match e {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o
                .get("detail")
                .or_else(|| o.get("title"))
                .and_then(|d| d.as_str())
                .map(str::to_owned),
            _ => None,
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// `Retry-After` in either form HTTP allows: a number of seconds, or an HTTP date (one
/// already past asks for no wait).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT, the date RFC 9110 uses.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let table = [
            ("120", Some(Duration::from_secs(120))),
            (" 0 ", Some(Duration::ZERO)),
            (
                "Sun, 06 Nov 1994 08:50:07 GMT",
                Some(Duration::from_secs(30)),
            ),
            (
                "Sunday, 06-Nov-94 08:50:07 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Sun Nov  6 08:50:07 1994", Some(Duration::from_secs(30))),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in table {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }

    #[test]
    fn only_recognised_error_texts_are_quoted() {
        let long = "x".repeat(500);
        let table: &[(Option<&str>, &str, Option<&str>)] = &[
            (
                Some("text/plain; charset=utf-8"),
                "entry for stream '{source=\"stytch\"}' has timestamp too old",
                Some("entry for stream '{source=\"stytch\"}' has timestamp too old"),
            ),
            (
                None,
                "invalid authentication credentials\n",
                Some("invalid authentication credentials"),
            ),
            (
                Some("application/json"),
                r#"{"errors":[{"status":"403","title":"Forbidden","detail":"Invalid API key"}]}"#,
                Some("Invalid API key"),
            ),
            (
                Some("application/json"),
                r#"{"errors":["Forbidden"]}"#,
                Some("Forbidden"),
            ),
            (Some("application/json"), r#"{"message":"hello"}"#, None),
            (
                Some("text/html"),
                "<html><body>Welcome to nginx</body></html>",
                None,
            ),
            (
                Some("text/plain"),
                "<html><body>Welcome</body></html>",
                None,
            ),
            (Some("text/plain"), "", None),
            (Some("application/octet-stream"), "binary", None),
            (
                Some("text/plain"),
                "line one\u{1b}[31mred\u{0}",
                Some("line one[31mred"),
            ),
        ];
        for (content_type, body, expected) in table {
            assert_eq!(
                quotable(*content_type, body).as_deref(),
                *expected,
                "{body}"
            );
        }
        assert_eq!(
            quotable(Some("text/plain"), &long).unwrap().len(),
            MAX_QUOTE_CHARS
        );
    }
}
