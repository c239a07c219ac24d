//! Backpressure from Laravel: a 429 (or a 503 with `Retry-After`) pauses
//! every request to Laravel for as long as it asked, and is not a breaker
//! failure — Laravel is up, only busy. Pure logic taking `now`, owned by
//! `LaravelClient`, unit-tested without sleeping.
//!
//! Bounds, so a misbehaving Laravel cannot stall delivery for good: one
//! pause lasts at most `max_wait` (the breaker's reset interval), and once
//! Laravel has kept throttling for longer than `persist_after` (also the
//! reset interval) every further 429/503 counts as a breaker failure again.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// The longest single pause, whatever `Retry-After` says.
    pub max_wait: Duration,
    /// Throttling for longer than this (without any other answer in
    /// between) makes each further 429/503 a breaker failure.
    pub persist_after: Duration,
}

/// What to do after a throttled answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// No request to Laravel before this.
    pub resume_at: Instant,
    /// Record a breaker failure (the throttling has persisted past the bound).
    pub breaker_failure: bool,
}

#[derive(Debug, Clone)]
pub struct Throttle {
    config: ThrottleConfig,
    /// When the current run of throttled answers began; `None` once any
    /// other answer came back.
    since: Option<Instant>,
    /// Requests wait until then.
    until: Option<Instant>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            since: None,
            until: None,
        }
    }

    /// Laravel answered 429/503 asking for `retry_after` (`None`: it did not
    /// say; `fallback` is used, the client's backoff).
    pub fn on_throttled(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        fallback: Duration,
    ) -> Throttled {
        let since = *self.since.get_or_insert(now);
        let wait = retry_after.unwrap_or(fallback).min(self.config.max_wait);
        let resume_at = now + wait;
        // Concurrent requests may be answered with different waits: honour
        // the longest.
        let until = self.until.map_or(resume_at, |u| u.max(resume_at));
        self.until = Some(until);
        Throttled {
            resume_at: until,
            breaker_failure: now.saturating_duration_since(since) > self.config.persist_after,
        }
    }

    /// Laravel answered anything but a throttle: the run is over.
    pub fn on_answer(&mut self) {
        self.since = None;
    }

    /// `Some(t)` while requests must wait until `t`.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|&u| u > now)
    }

    /// Throttled answers have been coming in without a break since then.
    pub fn throttled_since(&self) -> Option<Instant> {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> (Throttle, Instant) {
        (
            Throttle::new(ThrottleConfig {
                max_wait: Duration::from_secs(120),
                persist_after: Duration::from_secs(120),
            }),
            Instant::now(),
        )
    }

    #[test]
    fn pauses_for_retry_after_and_not_as_a_breaker_failure() {
        let (mut t, t0) = throttle();
        assert_eq!(t.paused_until(t0), None);
        let r = t.on_throttled(t0, Some(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(r.resume_at, t0 + Duration::from_secs(5));
        assert!(!r.breaker_failure);
        assert_eq!(
            t.paused_until(t0 + Duration::from_secs(4)),
            Some(r.resume_at)
        );
        assert_eq!(t.paused_until(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn without_retry_after_the_fallback_and_a_cap_apply() {
        let (mut t, t0) = throttle();
        let r = t.on_throttled(t0, None, Duration::from_millis(500));
        assert_eq!(r.resume_at, t0 + Duration::from_millis(500));
        let r = t.on_throttled(t0, Some(Duration::from_secs(3600)), Duration::ZERO);
        assert_eq!(r.resume_at, t0 + Duration::from_secs(120), "capped");
    }

    #[test]
    fn the_longest_concurrent_wait_wins() {
        let (mut t, t0) = throttle();
        t.on_throttled(t0, Some(Duration::from_secs(10)), Duration::ZERO);
        let r = t.on_throttled(t0, Some(Duration::from_secs(2)), Duration::ZERO);
        assert_eq!(r.resume_at, t0 + Duration::from_secs(10));
    }

    #[test]
    fn persistent_throttling_counts_for_the_breaker_until_another_answer() {
        let (mut t, t0) = throttle();
        assert!(
            !t.on_throttled(t0, Some(Duration::from_secs(60)), Duration::ZERO)
                .breaker_failure
        );
        let later = t0 + Duration::from_secs(121);
        assert!(
            t.on_throttled(later, Some(Duration::from_secs(60)), Duration::ZERO)
                .breaker_failure
        );
        t.on_answer();
        assert_eq!(t.throttled_since(), None);
        let again = later + Duration::from_secs(1);
        assert!(
            !t.on_throttled(again, Some(Duration::from_secs(1)), Duration::ZERO)
                .breaker_failure
        );
    }
}
