//! Property tests of [`super::CircuitBreaker`]: any sequence of admissions,
//! successes and failures at any (monotonic) times. Invariants: nothing
//! passes while open before the reset interval is over; at most one probe
//! per reset interval; only a closed breaker allows freely; the threshold
//! opens it; a refusal always names a moment in the future.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    /// Time moves on by this many ms, then one request asks to go.
    Admit(u64),
    Success,
    /// Time moves on by this many ms, then a request fails.
    Failure(u64),
}

fn op(reset_ms: u64) -> impl Strategy<Value = Op> {
    // Steps around the reset interval so every state is reached.
    let step = prop_oneof![0..=reset_ms / 4, reset_ms / 2..=reset_ms * 2];
    prop_oneof![
        step.clone().prop_map(Op::Admit),
        Just(Op::Success),
        step.prop_map(Op::Failure),
    ]
}

fn case() -> impl Strategy<Value = (u32, u64, Vec<Op>)> {
    (1u32..6, 1u64..10_000).prop_flat_map(|(threshold, reset_ms)| {
        (
            Just(threshold),
            Just(reset_ms),
            prop::collection::vec(op(reset_ms), 0..80),
        )
    })
}

proptest! {
    #[test]
    fn never_lets_a_request_through_while_open_before_reset((threshold, reset_ms, ops) in case()) {
        let reset = Duration::from_millis(reset_ms);
        let mut b = CircuitBreaker::new(BreakerConfig { failure_threshold: threshold, reset_after: reset });
        let t0 = Instant::now();
        let mut now = t0;
        // Model: when the breaker last opened, the last probe, the streak.
        let mut opened_at: Option<Instant> = None;
        let mut last_probe: Option<Instant> = None;
        let mut streak = 0u32;
        let mut successes = 0u64;
        for op in ops {
            let before = b.state();
            match op {
                Op::Admit(dt) => {
                    now += Duration::from_millis(dt);
                    match b.admit(now) {
                        Admission::Allowed => {
                            prop_assert_eq!(before, BreakerState::Closed, "only a closed breaker allows freely");
                        }
                        Admission::Probe => {
                            prop_assert_ne!(before, BreakerState::Closed);
                            let opened = opened_at.expect("a probe needs an opening");
                            prop_assert!(now >= opened + reset, "probe before the reset interval");
                            if let Some(p) = last_probe {
                                prop_assert!(now >= p + reset, "two probes within one reset interval");
                            }
                            last_probe = Some(now);
                            prop_assert_eq!(b.state(), BreakerState::HalfOpen);
                        }
                        Admission::Rejected { retry_at } => {
                            prop_assert_ne!(before, BreakerState::Closed, "a closed breaker refused");
                            prop_assert!(retry_at > now, "a refusal names a moment in the future");
                            prop_assert!(retry_at <= now + reset, "never longer than one reset interval");
                        }
                    }
                }
                Op::Success => {
                    b.record_success();
                    successes += 1;
                    match before {
                        BreakerState::Open => prop_assert_eq!(b.state(), BreakerState::Open, "a late success does not close it"),
                        _ => {
                            prop_assert_eq!(b.state(), BreakerState::Closed);
                            streak = 0;
                            opened_at = None;
                            last_probe = None;
                        }
                    }
                }
                Op::Failure(dt) => {
                    now += Duration::from_millis(dt);
                    b.record_failure(now);
                    match before {
                        BreakerState::Closed => {
                            streak += 1;
                            let opens = streak >= threshold;
                            prop_assert_eq!(b.state() == BreakerState::Open, opens, "the threshold opens it, nothing less");
                            if opens {
                                opened_at = Some(now);
                                last_probe = None;
                            }
                        }
                        BreakerState::HalfOpen => {
                            prop_assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
                            opened_at = Some(now);
                            last_probe = None;
                        }
                        BreakerState::Open => {
                            prop_assert_eq!(b.state(), BreakerState::Open);
                        }
                    }
                }
            }
            if b.state() == BreakerState::Closed {
                prop_assert!(b.failure_count() < threshold, "closed with the threshold reached");
            }
            prop_assert_eq!(b.success_count(), successes);
        }
    }
}
