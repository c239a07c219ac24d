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
    /// Sessions with no activity for this long are removed (seed: 24 h).
    pub idle_ttl: Duration,
    /// Sessions running this long are restarted to renew them (seed: 7 days).
    pub max_lifetime: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepVerdict {
    Keep,
    /// Idle too long: stop and remove from memory (credentials are kept).
    Expire,
    /// Lived too long: restart.
    Renew,
}

pub fn sweep_verdict(
    lifetimes: &Lifetimes,
    now_ms: u64,
    started_ms: u64,
    last_activity_ms: u64,
) -> SweepVerdict {
    let idle = Duration::from_millis(now_ms.saturating_sub(last_activity_ms));
    let age = Duration::from_millis(now_ms.saturating_sub(started_ms));
    if idle >= lifetimes.idle_ttl {
        SweepVerdict::Expire
    } else if age >= lifetimes.max_lifetime {
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
            max_lifetime: Duration::from_secs(100),
        };
        assert_eq!(sweep_verdict(&l, 50_000, 0, 45_000), SweepVerdict::Keep);
        assert_eq!(sweep_verdict(&l, 50_000, 0, 40_000), SweepVerdict::Expire);
        assert_eq!(sweep_verdict(&l, 100_000, 0, 99_000), SweepVerdict::Renew);
    }
}
