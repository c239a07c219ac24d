//! The SSRF guard of media fetched by `url` ([`super::media::fetch`]): the
//! gateway must not become a way into the network it runs in (Redis, the
//! cloud metadata service at 169.254.169.254, admin ports on loopback).
//! Addresses are judged after DNS resolution, inside the HTTP client's own
//! resolver ([`GuardedResolver`]), so the addresses checked are exactly the
//! ones it connects to: a name that resolves (or rebinds) to a private
//! address is refused, and an IP literal is checked before any connection.
//! `MEDIA_FETCH_ALLOW_PRIVATE=true` turns the guard off (tests that fetch
//! from 127.0.0.1; a media server on the private network).
//! Hand-written because `IpAddr::is_global` is still unstable in std.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix_tls::connect::Resolve;
use futures_util::future::LocalBoxFuture;

/// Why an address may not be fetched from: its class, or `None` for a
/// public (global unicast) address.
pub fn non_global(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private (RFC 1918)",
        _ if ip.is_link_local() => "link-local",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(class)
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Addresses that carry an IPv4 one are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    let class = match s {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        // IPv4-compatible (deprecated) ::a.b.c.d and NAT64 64:ff9b::a.b.c.d.
        [0, 0, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            return v4_class(embedded_v4(hi, lo));
        }
        // 6to4 2002:a.b.c.d::/48.
        [0x2002, hi, lo, ..] => return v4_class(embedded_v4(hi, lo)),
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique local (ULA)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0xdb8, ..] => "documentation",
        // Teredo, ORCHID and the other IETF special-purpose blocks.
        [0x2001, y, ..] if y < 0x200 => "IETF special-purpose",
        [0x100, 0, 0, 0, ..] => "discard-only",
        _ => return None,
    };
    Some(class)
}

/// A fetch refused by the guard: the first refused address and its class.
#[derive(Debug, thiserror::Error)]
#[error("{addr} is a {class} address")]
pub struct Forbidden {
    pub addr: IpAddr,
    pub class: &'static str,
}

/// Keeps the public addresses of `addrs`; refuses when none is left.
pub fn only_global(addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Forbidden> {
    let mut refused = None;
    let kept: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match non_global(a.ip()) {
            None => true,
            Some(class) => {
                refused.get_or_insert(Forbidden {
                    addr: a.ip(),
                    class,
                });
                false
            }
        })
        .collect();
    match (kept.is_empty(), refused) {
        (true, Some(forbidden)) => Err(forbidden),
        _ => Ok(kept),
    }
}

/// The HTTP client's resolver when the guard is on: the system's lookup,
/// then [`only_global`] over its answer.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            Ok(only_global(addrs)?)
        })
    }
}

/// The client of one fetch: no redirects, bounded by `timeout`, and with
/// `guarded` connecting only to public addresses.
pub fn client(timeout: std::time::Duration, guarded: bool) -> awc::Client {
    let builder = awc::Client::builder().timeout(timeout).disable_redirects();
    if !guarded {
        return builder.finish();
    }
    let tcp =
        actix_tls::connect::Connector::new(actix_tls::connect::Resolver::custom(GuardedResolver))
            .service();
    builder
        .connector(awc::Connector::new().connector(tcp))
        .finish()
}

/// The guard's refusal inside a failed request, if that is why it failed.
pub fn refusal(e: &awc::error::SendRequestError) -> Option<&Forbidden> {
    match e {
        awc::error::SendRequestError::Connect(awc::error::ConnectError::Resolver(inner)) => {
            inner.downcast_ref::<Forbidden>()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<&'static str> {
        non_global(s.parse().unwrap())
    }

    #[test]
    fn only_public_addresses_are_global() {
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
            "2002:c0a8:0101::1",
            "2001:db8::1",
        ] {
            assert!(class(private).is_some(), "{private} passed as public");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class(public), None, "{public} refused");
        }
        assert_eq!(class("169.254.169.254"), Some("link-local"));
        assert_eq!(class("fd12::1"), Some("unique local (ULA)"));
    }

    #[test]
    fn a_name_resolving_to_private_addresses_only_is_refused() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let err = only_global(vec![a("127.0.0.1:80"), a("[::1]:80")]).unwrap_err();
        assert_eq!(err.class, "loopback");
        // Mixed answers keep only the public addresses: a rebinding entry
        // beside a public one is never connected to.
        assert_eq!(
            only_global(vec![a("10.0.0.1:80"), a("8.8.8.8:80")]).unwrap(),
            vec![a("8.8.8.8:80")]
        );
        assert!(only_global(vec![]).unwrap().is_empty());
    }
}
