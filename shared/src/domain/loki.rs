//! A customer's Grafana Loki: a host name (the product fixes `https://` and
//! `/loki/api/v1/push`) and basic-auth credentials.

use std::fmt;

use super::ValidationError;
use super::controls::{LokiLabels, LokiTenantId};
use crate::secret::Secret;

const FIELD: &str = "destination_config.grafana_loki.hostname";
/// RFC 1035 limits.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A bare host name with an optional port (`logs-prod-021.grafana.net`, or
/// `loki.example.com:8443` for a self-hosted Loki behind TLS on another port).
///
/// Only the syntax is checked here; whether the name resolves to an address we may connect
/// to is decided at connection time by [`crate::net::AddressPolicy`], because DNS answers
/// change after a configuration is saved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LokiHostname {
    host: String,
    port: Option<u16>,
}

impl LokiHostname {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let value = value.trim();
        if value.contains("://") {
            return Err(ValidationError::new(
                FIELD,
                "must be a host name only: https:// is added for you",
            ));
        }
        if value.contains(['/', '?', '#']) {
            return Err(ValidationError::new(
                FIELD,
                "must be a host name only: the path /loki/api/v1/push is added for you",
            ));
        }
        if value.contains('@') {
            return Err(ValidationError::new(
                FIELD,
                "must not contain credentials: set username and password instead",
            ));
        }
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) => {
                let port = parse_port(port).ok_or_else(|| {
                    ValidationError::new(FIELD, "has an invalid port (1 to 65535, digits only)")
                })?;
                (host, Some(port))
            }
            None => (value, None),
        };
        let host = host.to_ascii_lowercase();
        if looks_numeric(&host) && host.parse::<std::net::Ipv4Addr>().is_err() {
            // `127.1`, `2130706433`, `0x7f.0.0.1`: URL parsers read these as IPv4 addresses,
            // so they would slip past any check of the host as a name.
            return Err(ValidationError::new(
                FIELD,
                "must be a DNS host name; an IPv4 address must be written as four decimal numbers",
            ));
        }
        if !is_dns_name(&host) {
            return Err(ValidationError::new(
                FIELD,
                "must be a DNS host name such as logs-prod-021.grafana.net",
            ));
        }
        Ok(Self { host, port })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn push_url(&self) -> String {
        format!("https://{self}/loki/api/v1/push")
    }
}

/// Whether the WHATWG URL standard (which reqwest's `url` follows) would parse the host as an
/// IPv4 address: its last label is a decimal, octal or hexadecimal number.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .map(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || hex == Some(true))
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl fmt::Display for LokiHostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiDestination {
    pub hostname: LokiHostname,
    pub username: String,
    pub password: Secret,
    pub tenant_id: Option<LokiTenantId>,
    pub labels: LokiLabels,
}

/// A port written one way only: digits, no sign, no leading zero, 1 to 65535. `+443` and
/// `0443` parse as numbers, but a port written two ways can slip past a check made on the
/// text.
pub fn parse_port(text: &str) -> Option<u16> {
    let canonical =
        !text.is_empty() && !text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit());
    canonical.then(|| text.parse::<u16>().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_grafana_cloud_and_self_hosted_names() {
        let cloud = LokiHostname::parse("logs-prod-021.grafana.net").unwrap();
        assert_eq!(
            cloud.push_url(),
            "https://logs-prod-021.grafana.net/loki/api/v1/push"
        );
        let own = LokiHostname::parse("Loki.Example.com:8443").unwrap();
        assert_eq!(
            own.push_url(),
            "https://loki.example.com:8443/loki/api/v1/push"
        );
        assert_eq!(own.host(), "loki.example.com");
    }

    #[test]
    fn canonical_ipv4_addresses_parse_so_the_address_policy_can_judge_them() {
        assert_eq!(
            LokiHostname::parse("10.0.0.1:3100").unwrap().host(),
            "10.0.0.1"
        );
        assert_eq!(
            LokiHostname::parse("34.120.1.1").unwrap().host(),
            "34.120.1.1"
        );
    }

    #[test]
    fn refuses_schemes_paths_credentials_and_garbage() {
        for bad in [
            "https://logs.grafana.net",
            "logs.grafana.net/loki/api/v1/push",
            "logs.grafana.net?x=1",
            "user:pw@logs.grafana.net",
            "logs.grafana.net:0",
            "logs.grafana.net:99999",
            "logs.grafana.net:+443",
            "logs.grafana.net:0443",
            "logs.grafana.net:",
            "logs.grafana.net: 443",
            "logs..grafana.net",
            "-logs.grafana.net",
            "logs_grafana.net",
            "",
            "[::1]:3100",
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "10.0.0.1.",
            "167772161:8443",
            "a.0x1",
            &format!("{}.net", "a".repeat(64)),
        ] {
            assert!(LokiHostname::parse(bad).is_err(), "{bad}");
        }
    }
}
