//! Rate limits on the API (not on `/health*`, `/metrics*` or the docs): a
//! token bucket per client IP (`RATE_LIMIT_PER_IP` requests a minute) and
//! one per API key (`RATE_LIMIT_PER_KEY`), each off at 0, with bursts of
//! `RATE_LIMIT_BURST` (0: one minute's worth). The IP is the peer's, or,
//! when the peer is a trusted proxy (`TRUSTED_PROXIES`, addresses or CIDR
//! blocks), the right-most `X-Forwarded-For` hop that is not one. A refused
//! request gets `429 rate_limited` with `Retry-After` and `RateLimit-*`
//! headers; an admitted one carries `RateLimit-Limit` and
//! `RateLimit-Remaining` of its tightest bucket. Buckets are GCRA
//! (`governor`); idle ones are forgotten so the maps stay small.
//! Mounted by `http::configure` outside the API-key check, so failed keys
//! spend their IP's budget too.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Data;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;

type Limiter<K> = DefaultKeyedRateLimiter<K, StateInformationMiddleware>;

/// Checks between two sweeps of idle buckets.
const SWEEP_EVERY: u64 = 10_000;

/// What `[server]` says about rate limits.
#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    pub per_key_per_minute: u32,
    pub per_ip_per_minute: u32,
    /// 0: the per-minute figure.
    pub burst: u32,
    pub trusted_proxies: Vec<IpNet>,
}

/// One bucket family and its limit, as the headers state it.
struct Family<K: std::hash::Hash + Eq + Clone> {
    limiter: Limiter<K>,
    per_minute: u32,
}

impl<K: std::hash::Hash + Eq + Clone> Family<K> {
    fn new(per_minute: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_minute)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = Quota::per_minute(rate).allow_burst(burst);
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota).with_middleware(),
            per_minute,
        })
    }

    /// `Ok(remaining)` or `Err(seconds to wait)`.
    fn check(&self, key: &K) -> Result<u32, u64> {
        match self.limiter.check_key(key) {
            Ok(state) => Ok(state.remaining_burst_capacity()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
        }
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The buckets of one gateway.
pub struct RateLimits {
    per_key: Option<Family<[u8; 32]>>,
    per_ip: Option<Family<IpAddr>>,
    trusted: Vec<IpNet>,
    checks: AtomicU64,
}

/// Which bucket refused, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ip,
    Key,
}

impl Scope {
    pub fn setting(self) -> &'static str {
        match self {
            Scope::Ip => "RATE_LIMIT_PER_IP",
            Scope::Key => "RATE_LIMIT_PER_KEY",
        }
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No limit applies.
    Free,
    Admitted {
        limit: u32,
        remaining: u32,
    },
    Refused {
        scope: Scope,
        limit: u32,
        retry_after_secs: u64,
    },
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            per_key: Family::new(config.per_key_per_minute, config.burst),
            per_ip: Family::new(config.per_ip_per_minute, config.burst),
            trusted: config.trusted_proxies.clone(),
            checks: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_key.is_some() || self.per_ip.is_some()
    }

    /// Spends one request of `ip`'s and (when given) the key's budget.
    /// `key` is a key already known to be valid (a made-up one would make
    /// a bucket per guess).
    pub fn check(&self, ip: IpAddr, key: Option<&str>) -> Verdict {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.per_ip.iter().for_each(Family::sweep);
            self.per_key.iter().for_each(Family::sweep);
        }
        let mut tightest: Option<(u32, u32)> = None;
        let mut note = |limit: u32, remaining: u32| {
            if tightest.is_none_or(|(_, r)| remaining < r) {
                tightest = Some((limit, remaining));
            }
        };
        if let Some(f) = &self.per_ip {
            match f.check(&ip) {
                Ok(remaining) => note(f.per_minute, remaining),
                Err(retry_after_secs) => {
                    return Verdict::Refused {
                        scope: Scope::Ip,
                        limit: f.per_minute,
                        retry_after_secs,
                    }
                }
            }
        }
        if let (Some(f), Some(key)) = (&self.per_key, key) {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            match f.check(&digest) {
                Ok(remaining) => note(f.per_minute, remaining),
                Err(retry_after_secs) => {
                    return Verdict::Refused {
                        scope: Scope::Key,
                        limit: f.per_minute,
                        retry_after_secs,
                    }
                }
            }
        }
        match tightest {
            None => Verdict::Free,
            Some((limit, remaining)) => Verdict::Admitted { limit, remaining },
        }
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted
    /// proxy, then the right-most `X-Forwarded-For` hop that is not one
    /// (hops left of it are the client's own claims, and could be forged).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        client_ip(peer, forwarded_for, &self.trusted)
    }
}

fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for.unwrap_or("").rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break, // garbage: trust nothing further left
        }
    }
    client
}

/// The middleware: 429 before the handler (and the key check) runs.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<Data<AppState>>()
        .expect("AppState is registered")
        .clone();
    let limits = &state.rate_limits;
    if !limits.enabled() {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let peer = req
        .peer_addr()
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = limits.client_ip(peer, forwarded);
    let key = super::auth::presented_key(&req).filter(|k| state.api_keys.accepts(k));
    match limits.check(ip, key) {
        Verdict::Free => Ok(next.call(req).await?.map_into_boxed_body()),
        Verdict::Admitted { limit, remaining } => {
            let mut res = next.call(req).await?.map_into_boxed_body();
            let h = res.headers_mut();
            h.insert(
                HeaderName::from_static("ratelimit-limit"),
                HeaderValue::from(limit),
            );
            h.insert(
                HeaderName::from_static("ratelimit-remaining"),
                HeaderValue::from(remaining),
            );
            Ok(res)
        }
        Verdict::Refused {
            scope,
            limit,
            retry_after_secs,
        } => {
            state.http.rate_limited(scope);
            let err = ApiError::RateLimited {
                setting: scope.setting(),
                limit,
                retry_after_secs,
            };
            Err(err.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.5/32"]);
        let xff = Some("1.2.3.4, 203.0.113.9, 10.0.0.7");
        // An untrusted peer's header is ignored: anyone can write one.
        assert_eq!(
            client_ip(ip("198.51.100.1"), xff, &trusted),
            ip("198.51.100.1")
        );
        // Through trusted proxies: the right-most untrusted hop.
        assert_eq!(
            client_ip(ip("192.168.1.5"), xff, &trusted),
            ip("203.0.113.9")
        );
        // A trusted peer with no header, or garbage: the last good hop.
        assert_eq!(client_ip(ip("10.1.1.1"), None, &trusted), ip("10.1.1.1"));
        assert_eq!(
            client_ip(ip("10.1.1.1"), Some("junk, 10.0.0.3"), &trusted),
            ip("10.0.0.3")
        );
        assert_eq!(client_ip(ip("10.1.1.1"), xff, &[]), ip("10.1.1.1"));
    }

    #[test]
    fn each_ip_and_each_key_has_its_own_bucket() {
        let limits = RateLimits::new(&RateLimitConfig {
            per_key_per_minute: 3,
            per_ip_per_minute: 5,
            burst: 0,
            trusted_proxies: Vec::new(),
        });
        let (a, b) = (ip("203.0.113.1"), ip("203.0.113.2"));
        assert_eq!(
            limits.check(a, Some("k1")),
            Verdict::Admitted {
                limit: 3,
                remaining: 2
            }
        );
        assert!(matches!(
            limits.check(a, Some("k1")),
            Verdict::Admitted { .. }
        ));
        assert!(matches!(
            limits.check(a, Some("k1")),
            Verdict::Admitted { .. }
        ));
        let Verdict::Refused {
            scope,
            limit,
            retry_after_secs,
        } = limits.check(a, Some("k1"))
        else {
            panic!("the key's fourth request in a minute")
        };
        assert_eq!((scope, limit), (Scope::Key, 3));
        assert!((1..=20).contains(&retry_after_secs), "{retry_after_secs}");
        // Another key from the same IP still has room; the IP has 0 left.
        assert_eq!(
            limits.check(a, Some("k2")),
            Verdict::Admitted {
                limit: 5,
                remaining: 0
            }
        );
        assert!(matches!(
            limits.check(a, None),
            Verdict::Refused {
                scope: Scope::Ip,
                ..
            }
        ));
        assert_eq!(
            limits.check(b, None),
            Verdict::Admitted {
                limit: 5,
                remaining: 4
            }
        );
    }

    #[test]
    fn off_at_zero() {
        let limits = RateLimits::new(&RateLimitConfig::default());
        assert!(!limits.enabled());
        assert_eq!(limits.check(ip("203.0.113.1"), Some("k")), Verdict::Free);
    }
}
