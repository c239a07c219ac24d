//! Property tests of the supervision rules: any restart times, any policy,
//! any sweep input. Invariants: a session gives up exactly when more than
//! `max_restarts` restarts fall within `window`; a delay never exceeds
//! `backoff_max` and never shrinks while restarts pile up in the window; a
//! linked session is never expired; renewal only past `max_lifetime`.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn policy() -> impl Strategy<Value = RestartPolicy> {
    (0u32..6, 1u64..5_000, 0u64..1_000, 0u64..10_000).prop_map(|(max, window, base, max_ms)| {
        RestartPolicy {
            max_restarts: max,
            window: Duration::from_millis(window),
            backoff_base: Duration::from_millis(base),
            backoff_max: Duration::from_millis(max_ms),
        }
    })
}

proptest! {
    #[test]
    fn gives_up_exactly_past_the_rate_limit(policy in policy(), gaps in prop::collection::vec(0u64..3_000, 1..40), resets in prop::collection::vec(any::<bool>(), 40)) {
        let mut tracker = RestartTracker::default();
        let t0 = Instant::now();
        let mut now = t0;
        // Model: the restart times since the last reset.
        let mut times: Vec<Instant> = Vec::new();
        let mut last_delay: Option<Duration> = None;
        for (gap, reset) in gaps.into_iter().zip(resets) {
            now += Duration::from_millis(gap);
            if reset {
                tracker.reset();
                times.clear();
                last_delay = None;
            }
            times.push(now);
            let in_window = times.iter().filter(|t| now.duration_since(**t) <= policy.window).count();
            match tracker.record(&policy, now) {
                RestartDecision::GiveUp => {
                    prop_assert!(in_window as u32 > policy.max_restarts, "gave up after {} restarts in the window", in_window);
                }
                RestartDecision::After(delay) => {
                    prop_assert!(in_window as u32 <= policy.max_restarts, "{} restarts in the window allowed", in_window);
                    prop_assert!(delay <= policy.backoff_max);
                    prop_assert!(delay >= policy.backoff_base.min(policy.backoff_max));
                    if let Some(last) = last_delay {
                        // No restart left the window since the last one: the
                        // wait does not shrink.
                        let left = times.iter().any(|t| now.duration_since(*t) > policy.window);
                        prop_assert!(left || delay >= last, "{:?} after {:?}", delay, last);
                    }
                    last_delay = Some(delay);
                }
            }
            prop_assert_eq!(tracker.count(), in_window);
        }
    }

    #[test]
    fn sweep_never_expires_a_linked_session(
        now_ms in 0u64..1_000_000,
        started in 0u64..1_000_000,
        active in 0u64..1_000_000,
        linked: bool,
        idle_ttl in 0u64..500_000,
        max_lifetime in prop::option::of(0u64..500_000),
    ) {
        let lifetimes = Lifetimes {
            idle_ttl: Duration::from_millis(idle_ttl),
            max_lifetime: max_lifetime.map(Duration::from_millis),
        };
        let input = SweepInput { now_ms, started_ms: started, last_activity_ms: active, linked };
        let idle = now_ms.saturating_sub(active);
        let age = now_ms.saturating_sub(started);
        match sweep_verdict(&lifetimes, input) {
            SweepVerdict::Expire => {
                prop_assert!(!linked, "a linked session expired");
                prop_assert!(idle >= idle_ttl);
            }
            SweepVerdict::Renew => {
                prop_assert!(max_lifetime.is_some_and(|m| age >= m));
                prop_assert!(linked || idle < idle_ttl, "renewed what should expire");
            }
            SweepVerdict::Keep => {
                prop_assert!(linked || idle < idle_ttl, "kept an idle unlinked session");
                prop_assert!(max_lifetime.is_none_or(|m| age < m), "kept past its lifetime");
            }
        }
    }
}
