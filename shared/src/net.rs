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
pub fn is_public(ip: IpAddr) -> bool {
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
            let permitted: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| policy.permits(addr.ip()))
                .collect();
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
