//! Which URLs a webhook may be sent to (SSRF): `http` or `https` only, no credentials in the
//! URL, and — unless the operator allows private targets — only globally routable addresses.
//! Checked when an endpoint is registered and again at every delivery, on the addresses the
//! connection will actually use (see `crate::webhook_client`), so a DNS answer that changes
//! after registration (DNS rebinding) cannot reach an internal service.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("the URL is not valid: {0}")]
    Invalid(String),
    #[error("only http and https URLs are allowed")]
    Scheme,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is not a public address")]
    NotPublic(IpAddr),
    #[error("the host does not resolve: {0}")]
    Unresolvable(String),
}

/// Parses a webhook URL and checks what can be checked without DNS.
///
/// # Errors
/// Anything but an absolute `http`/`https` URL with a host and no credentials.
pub(crate) fn parse_url(raw: &str) -> Result<Url, TargetError> {
    let url = Url::parse(raw.trim()).map_err(|e| TargetError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if url.host().is_none() {
        return Err(TargetError::NoHost);
    }
    Ok(url)
}

/// The address literally written in the URL, if its host is one (then no DNS is involved).
pub(crate) fn literal_address(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Whether `ip` may be connected to under the policy.
///
/// # Errors
/// [`TargetError::NotPublic`] for a non-global address when private targets are not allowed.
pub(crate) fn vet(ip: IpAddr, allow_private: bool) -> Result<(), TargetError> {
    if allow_private || is_global(ip) { Ok(()) } else { Err(TargetError::NotPublic(ip)) }
}

/// Globally routable unicast: not loopback, private, shared (CGNAT), link-local,
/// unspecified, broadcast, multicast, documentation, benchmarking or reserved, in IPv4 or
/// IPv6 (IPv4-mapped, -compatible, -translated, 6to4 and well-known NAT64 addresses are
/// judged by the IPv4 inside; local-use NAT64, 64:ff9b:1::/48, is refused).
pub(crate) fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network"
        || ip.is_loopback()                    // 127/8
        || ip.is_private()                     // 10/8, 172.16/12, 192.168/16
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 shared address space
        || ip.is_link_local()                  // 169.254/16 (cloud metadata)
        || (a == 192 && b == 0 && c == 0)      // 192.0.0/24 protocol assignments
        || ip.is_documentation()               // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || (a == 198 && (b == 18 || b == 19))  // 198.18/15 benchmarking
        || ip.is_multicast()                   // 224/4
        || a >= 240) // 240/4 reserved, and broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let segments = ip.segments();
    let v4 = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // ::a.b.c.d (deprecated IPv4-compatible), ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765)
    // and 64:ff9b::/96 (well-known NAT64) reach IPv4 hosts.
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified()
        || segments[..6] == [0, 0, 0, 0, 0xffff, 0]
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        return is_global_v4(v4(segments[6], segments[7]));
    }
    // 2002:a.b.c.d::/48 (6to4) is routed to the IPv4 host inside.
    if segments[0] == 0x2002 {
        return is_global_v4(v4(segments[1], segments[2]));
    }
    // 64:ff9b:1::/48 (RFC 8215) is local-use NAT64: the operator picks the prefix length, so
    // where the IPv4 address sits is not knowable here, and IANA lists the block as not
    // globally reachable. Refused whatever it seems to carry.
    if segments[..3] == [0x64, 0xff9b, 1] {
        return false;
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00      // fc00::/7 unique local
        || (segments[0] & 0xffc0) == 0xfe80      // fe80::/10 link-local
        || (segments[0] & 0xffc0) == 0xfec0      // fec0::/10 site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0]) // 100::/64 discard
        || (segments[0] == 0x2001 && segments[1] < 0x0200)) // 2001::/23 IETF protocol assignments (Teredo, ORCHID, …)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn internal_addresses_are_not_global() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2002:a9fe:a9fe::",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::101:101",
            "64:ff9b:1:a00:1::",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_global() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "::ffff:0:101:101",
            "2002:101:101::1",
        ] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn only_http_and_https_urls_without_credentials_are_accepted() {
        assert!(parse_url("https://hooks.example.com/bulkhead").is_ok());
        assert!(parse_url("http://hooks.example.com:8080/x?y=1").is_ok());
        assert_eq!(parse_url("ftp://example.com/").unwrap_err(), TargetError::Scheme);
        assert_eq!(parse_url("file:///etc/passwd").unwrap_err(), TargetError::Scheme);
        assert_eq!(parse_url("https://user:pw@example.com/").unwrap_err(), TargetError::Credentials);
        assert!(matches!(parse_url("not a url").unwrap_err(), TargetError::Invalid(_)));
    }

    #[test]
    fn allowing_private_targets_lets_loopback_through() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(vet(loopback, false).is_err());
        assert!(vet(loopback, true).is_ok());
    }

    #[test]
    fn an_ip_literal_host_is_read_from_the_url() {
        assert_eq!(literal_address(&parse_url("http://[::1]:8080/").unwrap()), Some("::1".parse().unwrap()));
        assert_eq!(literal_address(&parse_url("http://10.0.0.1/").unwrap()), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(literal_address(&parse_url("http://example.com/").unwrap()), None);
    }
}
