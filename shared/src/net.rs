//! Outbound network policy. Destinations are hosts chosen by customers, so the service must
//! not be usable to reach private networks or cloud metadata endpoints: every address a
//! destination name resolves to is checked before a connection is made, and IP literals are
//! checked before a request is built. Redirects are never followed, so a public host cannot
//! bounce a request inward either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which addresses destinations may resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Development and tests only: lets destinations on loopback and private networks through.
    pub allow_private: bool,
}

/// A destination whose address the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error(
    "destination {host} resolves only to private, loopback or link-local addresses, which are refused"
)]
pub struct RefusedAddress {
    pub host: String,
}

/// Why a destination is refused, worded for the customer who configured it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationRefusal {
    #[error(
        "must be reachable on the public internet (private, loopback and link-local addresses are refused)"
    )]
    PrivateAddress,
    #[error(
        "must be a host name that ends in a public suffix such as .com or .net (internal names such as .internal, .local, .lan or .home.arpa are refused)"
    )]
    NotPublicName,
    #[error("port {port} is not allowed; the allowed ports are {allowed}")]
    Port { port: u16, allowed: String },
}

/// Whether a host name ends in a suffix of the Public Suffix List and has a label of its own
/// before it, so it can be registered on the public internet. Names under `arpa` (RFC 3172,
/// infrastructure: reverse DNS, and `home.arpa`, RFC 8375, for home networks) are never a
/// Loki endpoint, although the list knows `arpa` and `home.arpa`.
pub fn has_public_suffix(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let known = psl::suffix(host.as_bytes()).is_some_and(|s| s.is_known());
    let registrable = psl::domain(host.as_bytes()).is_some();
    let infrastructure = host == "arpa" || host.ends_with(".arpa");
    known && registrable && !infrastructure
}

/// A port customers may configure: 443, and the operator's `ALLOWED_DESTINATION_PORTS`.
pub fn check_port(port: u16, allowed: &[u16]) -> Result<(), DestinationRefusal> {
    if port == 443 || allowed.contains(&port) {
        return Ok(());
    }
    let mut ports: Vec<u16> = allowed.to_vec();
    ports.push(443);
    ports.sort_unstable();
    ports.dedup();
    let allowed = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(DestinationRefusal::Port { port, allowed })
}

/// The resolver could not resolve the name (no such name, or no answer).
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}")]
pub struct DnsFailure {
    pub host: String,
    #[source]
    pub cause: std::io::Error,
}

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// Checks what can be judged from the host name alone, without resolving it: IP literals
    /// (the resolver never sees those) and `localhost` names (RFC 6761). Other names pass
    /// here and are checked address by address when they are resolved.
    pub fn check_host(&self, host: &str) -> Result<(), RefusedAddress> {
        let refused = || RefusedAddress {
            host: host.to_owned(),
        };
        let host_lower = host.to_ascii_lowercase();
        let is_localhost = host_lower == "localhost" || host_lower.ends_with(".localhost");
        match host.parse::<IpAddr>() {
            Ok(ip) if !self.permits(ip) => Err(refused()),
            Err(_) if is_localhost && !self.allow_private => Err(refused()),
            _ => Ok(()),
        }
    }
}

/// Whether an address is on the public internet. `IpAddr::is_global` is still unstable, so
/// the special-purpose ranges of the IANA registries are listed here.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inward)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0x0000) // Teredo, embeds an IPv4 address
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64, embeds an IPv4 address
        || s[0] == 0x2002 // 6to4, embeds an IPv4 address
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0)) // IPv4-compatible
}

/// DNS resolution for reqwest that keeps only the addresses the policy permits.
pub struct PolicyResolver {
    policy: AddressPolicy,
}

impl PolicyResolver {
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((host.clone(), 0)).await;
            let resolved = match lookup {
                Ok(resolved) => resolved,
                Err(cause) => return Err(Box::new(DnsFailure { host, cause }) as _),
            };
            let permitted: Vec<SocketAddr> =
                resolved.filter(|addr| policy.permits(addr.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(RefusedAddress { host }) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_private: false,
    };

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!STRICT.permits(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_permitted() {
        for ip in ["34.120.1.1", "8.8.8.8", "2600:1f18::1", "::ffff:34.120.1.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(STRICT.permits(ip), "{ip} should be permitted");
        }
    }

    #[test]
    fn literal_and_localhost_hosts_are_checked_and_names_pass_to_the_resolver() {
        assert!(STRICT.check_host("169.254.169.254").is_err());
        assert!(STRICT.check_host("10.0.0.1").is_err());
        assert!(STRICT.check_host("localhost").is_err());
        assert!(STRICT.check_host("loki.localhost").is_err());
        assert!(STRICT.check_host("34.120.1.1").is_ok());
        assert!(STRICT.check_host("logs-prod-021.grafana.net").is_ok());
        let open = AddressPolicy {
            allow_private: true,
        };
        assert!(open.check_host("127.0.0.1").is_ok());
        assert!(open.check_host("localhost").is_ok());
    }

    #[test]
    fn only_names_under_a_public_suffix_can_be_destinations() {
        for public in [
            "logs-prod-021.grafana.net",
            "loki.example.co.uk",
            "tenant.s3.amazonaws.com",
            "LOKI.EXAMPLE.COM",
        ] {
            assert!(has_public_suffix(public), "{public}");
        }
        for internal in [
            "metadata.google.internal",
            "metadata",
            "loki.local",
            "nas.lan",
            "router.home.arpa",
            "1.0.0.10.in-addr.arpa",
            "loki.example.test",
            "x.localhost",
            "grafana.net.invalid",
            "com",
            "co.uk",
            "34.120.1.1",
        ] {
            assert!(!has_public_suffix(internal), "{internal}");
        }
    }

    #[test]
    fn ports_are_443_or_from_the_allow_list() {
        assert_eq!(check_port(443, &[]), Ok(()));
        assert_eq!(check_port(3100, &[3100, 8443]), Ok(()));
        assert_eq!(
            check_port(22, &[3100, 8443]),
            Err(DestinationRefusal::Port {
                port: 22,
                allowed: "443, 3100, 8443".into()
            })
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_only_to_loopback() {
        // `localhost` resolves from /etc/hosts: no DNS query and no connection is made.
        let resolver = PolicyResolver::new(STRICT);
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Err(e) => e,
            Ok(_) => panic!("localhost must be refused"),
        };
        assert!(err.to_string().contains("refused"), "{err}");

        let open = PolicyResolver::new(AddressPolicy {
            allow_private: true,
        });
        let addrs: Vec<SocketAddr> = match open.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
