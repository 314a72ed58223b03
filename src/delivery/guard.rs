//! The guard against webhooks that reach private networks: which addresses count as private, and the check
//! of a callback URL when a subscription is created or changed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use reqwest::Url;

/// How long `check_callback_url` waits for DNS.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What to tell users who do mean to reach a private network.
pub(crate) const ALLOW_HINT: &str = "set [delivery] allow_private_networks = true to allow";

/// True for addresses a webhook must not reach when private networks are not allowed (v4: loopback, private
/// 10/8 172.16/12 192.168/16, link-local 169.254/16, CGNAT 100.64/10, unspecified and "this network" 0/8,
/// broadcast and reserved 240/4, multicast, documentation; v6: loopback, unspecified, unique-local fc00::/7,
/// link-local fe80::/10, site-local fec0::/10, multicast, documentation 2001:db8::/32, and the IPv4-mapped,
/// IPv4-compatible and NAT64 64:ff9b::/96 forms of the v4 ones).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || a == 0 // unspecified and "this network" 0/8
        || a >= 240 // reserved 240/4 and broadcast
        || ip.is_multicast()
        || ip.is_documentation()
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return true;
    }
    let first = segments[0];
    if (first & 0xfe00) == 0xfc00 // unique-local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routable inside sites)
        || (first == 0x2001 && segments[1] == 0x0db8)
    // documentation 2001:db8::/32
    {
        return true;
    }
    // v4 addresses wearing v6 clothes: mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d.
    let [.., hi, lo] = segments;
    let embedded = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let mapped_or_compatible = segments[..5].iter().all(|&s| s == 0) && (segments[5] == 0xffff || segments[5] == 0);
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped_or_compatible || nat64) && is_private_v4(embedded)
}

/// Validates a callback URL at subscription create/update time: scheme http or https, with a host; when
/// `allow_private_networks` is false, resolves the host (within 5 s) and rejects it if it does not resolve or
/// any resolved address is private.
///
/// The Err is a user-facing message (it becomes a 422 naming callback_url).
pub async fn check_callback_url(url: &str, allow_private_networks: bool) -> Result<(), String> {
    let parsed =
        Url::parse(url).map_err(|_| "must be an http or https URL, e.g. https://example.com/hooks".to_owned())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL, e.g. https://example.com/hooks".to_owned());
    }
    let Some(domain) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err("must name a host".to_owned());
    };
    if allow_private_networks {
        return Ok(());
    }
    if let Some(ip) = literal_ip(&parsed) {
        return if is_private(ip) { Err(format!("points at the private address {ip} ({ALLOW_HINT})")) } else { Ok(()) };
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((domain, port))).await
    {
        Err(_) => {
            return Err(format!("host {domain} did not resolve within 5 s"));
        }
        Ok(Err(e)) => return Err(format!("host {domain} does not resolve: {e}")),
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
    };
    if addrs.is_empty() {
        return Err(format!("host {domain} does not resolve to any address"));
    }
    match addrs.iter().find(|ip| is_private(**ip)) {
        Some(ip) => Err(format!("host {domain} resolves to the private address {ip} ({ALLOW_HINT})")),
        None => Ok(()),
    }
}

/// The host of `url` when it is an IP address (the URL parser has already normalised forms like `0x7f.1`).
pub(crate) fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_of_both_families() {
        let table: &[(&str, bool)] = &[
            // v4
            ("127.0.0.1", true),
            ("127.255.0.9", true),
            ("10.0.0.1", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.1.10", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.1", false),
            ("100.63.255.255", false),
            ("0.0.0.0", true),
            ("255.255.255.255", true),
            ("224.0.0.1", true),
            ("192.0.2.5", true),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("93.184.216.34", false),
            // v6
            ("::1", true),
            ("::", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("2001:db8::1", true),
            ("2606:4700:4700::1111", false),
            ("2001:4860:4860::8888", false),
            // v4 inside v6
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.1.2.3", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:8.8.8.8", false),
            ("::127.0.0.1", true),
            ("64:ff9b::192.168.0.1", true),
            ("64:ff9b::8.8.8.8", false),
        ];
        for (text, expected) in table {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(is_private(ip), *expected, "is_private({text})");
        }
    }

    #[tokio::test]
    async fn rejects_schemes_other_than_http() {
        for url in ["ftp://example.com/hook", "file:///etc/passwd", "not a url", "javascript:alert(1)"] {
            for allow in [false, true] {
                let err = check_callback_url(url, allow).await.unwrap_err();
                assert_eq!(err, "must be an http or https URL, e.g. https://example.com/hooks", "{url}");
            }
        }
    }

    #[tokio::test]
    async fn rejects_private_targets_when_disallowed() {
        for url in ["http://127.0.0.1/", "http://localhost/", "https://[::1]:8443/x", "http://10.0.0.1:9000/hook"] {
            let err = check_callback_url(url, false).await.unwrap_err();
            assert!(err.contains("private address") && err.contains("allow_private_networks"), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn accepts_private_targets_when_allowed() {
        for url in ["http://127.0.0.1/", "http://localhost/", "https://[::1]:8443/x", "http://10.0.0.1:9000/hook"] {
            assert_eq!(check_callback_url(url, true).await, Ok(()), "{url}");
        }
    }

    #[tokio::test]
    async fn accepts_public_literals_without_dns() {
        assert_eq!(check_callback_url("https://93.184.216.34/hook", false).await, Ok(()));
        assert_eq!(check_callback_url("http://[2606:4700:4700::1111]/", false).await, Ok(()));
    }

    #[tokio::test]
    async fn rejects_hosts_that_do_not_resolve() {
        // `.invalid` is reserved never to resolve (RFC 2606).
        let err = check_callback_url("https://nowhere.invalid/hook", false).await.unwrap_err();
        assert!(err.contains("nowhere.invalid") && err.contains("resolve"), "{err}");
    }
}
