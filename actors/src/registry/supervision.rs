//! Pure supervision rules for the registry: restart backoff with a
//! restart-rate limit (more than `max_restarts` in `window` → `failed`), and
//! the idle-TTL / max-lifetime sweep verdict. Times come in as arguments.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Restarts allowed within `window` before the session is `failed`.
    pub max_restarts: u32,
    pub window: Duration,
    /// First restart delay; doubles per restart in the window.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    After(Duration),
    GiveUp,
}

/// Recent restarts of one session.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    pub fn record(&mut self, policy: &RestartPolicy, now: Instant) -> RestartDecision {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let n = self.recent.len() as u32;
        if n > policy.max_restarts {
            return RestartDecision::GiveUp;
        }
        RestartDecision::After(crate::backoff::capped(
            policy.backoff_base,
            policy.backoff_max,
            n - 1,
        ))
    }

    pub fn reset(&mut self) {
        self.recent.clear();
    }

    pub fn count(&self) -> usize {
        self.recent.len()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Sessions that never linked, quiet this long, are forgotten (seed:
    /// 24 h). A linked session is never idle-expired: the account is still
    /// listed on the phone, and forgetting it would force a new scan.
    pub idle_ttl: Duration,
    /// Sessions running this long are reconnected with their keys kept
    /// (the device stays linked). `None` (the default) never renews: a
    /// WhatsApp Web device stays connected for weeks, and a forced
    /// reconnect only replays offline messages and flips presence.
    pub max_lifetime: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepVerdict {
    Keep,
    /// Never linked and idle too long: stop and forget (nothing to unlink).
    Expire,
    /// Lived too long: reconnect, keys kept.
    Renew,
}

/// What the sweep does with one running session.
#[derive(Debug, Clone, Copy)]
pub struct SweepInput {
    pub now_ms: u64,
    pub started_ms: u64,
    pub last_activity_ms: u64,
    /// The session has credentials (a linked device).
    pub linked: bool,
}

pub fn sweep_verdict(lifetimes: &Lifetimes, s: SweepInput) -> SweepVerdict {
    let idle = Duration::from_millis(s.now_ms.saturating_sub(s.last_activity_ms));
    let age = Duration::from_millis(s.now_ms.saturating_sub(s.started_ms));
    if !s.linked && idle >= lifetimes.idle_ttl {
        SweepVerdict::Expire
    } else if lifetimes.max_lifetime.is_some_and(|max| age >= max) {
        SweepVerdict::Renew
    } else {
        SweepVerdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(60),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(250),
        }
    }

    #[test]
    fn backoff_doubles_then_caps_then_gives_up() {
        let (p, t0) = (policy(), Instant::now());
        let mut r = RestartTracker::default();
        assert_eq!(
            r.record(&p, t0),
            RestartDecision::After(Duration::from_millis(100))
        );
        assert_eq!(
            r.record(&p, t0),
            RestartDecision::After(Duration::from_millis(200))
        );
        assert_eq!(
            r.record(&p, t0),
            RestartDecision::After(Duration::from_millis(250))
        );
        assert_eq!(r.record(&p, t0), RestartDecision::GiveUp);
    }

    #[test]
    fn restarts_outside_the_window_are_forgotten() {
        let (p, t0) = (policy(), Instant::now());
        let mut r = RestartTracker::default();
        for _ in 0..3 {
            r.record(&p, t0);
        }
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            r.record(&p, later),
            RestartDecision::After(Duration::from_millis(100))
        );
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn sweep_expires_idle_and_renews_old() {
        let l = Lifetimes {
            idle_ttl: Duration::from_secs(10),
            max_lifetime: Some(Duration::from_secs(100)),
        };
        let at = |now_ms, last_activity_ms, linked| SweepInput {
            now_ms,
            started_ms: 0,
            last_activity_ms,
            linked,
        };
        assert_eq!(
            sweep_verdict(&l, at(50_000, 45_000, false)),
            SweepVerdict::Keep
        );
        assert_eq!(
            sweep_verdict(&l, at(50_000, 40_000, false)),
            SweepVerdict::Expire
        );
        assert_eq!(
            sweep_verdict(&l, at(100_000, 99_000, false)),
            SweepVerdict::Renew
        );
    }

    #[test]
    fn a_quiet_linked_session_is_never_expired() {
        let l = Lifetimes {
            idle_ttl: Duration::from_secs(10),
            max_lifetime: None,
        };
        let quiet_for_a_year = SweepInput {
            now_ms: 365 * 86_400_000,
            started_ms: 0,
            last_activity_ms: 0,
            linked: true,
        };
        assert_eq!(sweep_verdict(&l, quiet_for_a_year), SweepVerdict::Keep);
        let renewing = Lifetimes {
            max_lifetime: Some(Duration::from_secs(100)),
            ..l
        };
        assert_eq!(
            sweep_verdict(&renewing, quiet_for_a_year),
            SweepVerdict::Renew,
            "renewed (keys kept), not forgotten"
        );
    }
}

#[cfg(test)]
#[path = "supervision_props.rs"]
mod props;
