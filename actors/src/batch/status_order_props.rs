//! Property tests of [`super::StatusOrder`]: any sequence of updates (high
//! and normal, any sessions), polls of both lanes (draining or not),
//! completions in any order and time steps. Invariants: Laravel sees each
//! session's updates in `seq` order (no session in two requests at once);
//! every high update is sent exactly once; a request holds at most
//! `BATCH_SIZE` items; in-flight counts stay within their bounds; once
//! drained, each session's last update sent is the last one recorded.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::laravel::payload::StatusWord;

#[derive(Debug, Clone)]
enum Op {
    Record(usize, bool),
    PollHigh(bool),
    PollNormal(bool),
    Complete(usize),
    Advance(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0usize..4, any::<bool>()).prop_map(|(s, h)| Op::Record(s, h)),
            2 => prop::bool::weighted(0.1).prop_map(Op::PollHigh),
            2 => prop::bool::weighted(0.1).prop_map(Op::PollNormal),
            2 => (0usize..8).prop_map(Op::Complete),
            1 => (0u64..150).prop_map(Op::Advance),
        ],
        0..150,
    )
}

fn sid(s: usize) -> SessionId {
    SessionId::parse(&format!("s{s}")).expect("a valid id")
}

fn item(s: usize, high: bool, seq: u64) -> StatusItem {
    let (status, priority) = if high {
        (StatusWord::Active, Priority::High)
    } else {
        (StatusWord::Starting, Priority::Normal)
    };
    StatusItem {
        session_id: sid(s),
        status,
        priority,
        reason: None,
        timestamp: seq,
        seq,
    }
}

struct Check {
    size: usize,
    in_flight: Vec<Batch>,
    /// Last seq sent per session.
    last_sent: HashMap<SessionId, u64>,
    high_sent: Vec<u64>,
}

impl Check {
    fn dispatched(&mut self, batch: Batch, draining: bool) -> Result<(), TestCaseError> {
        prop_assert!(!batch.items.is_empty(), "an empty request");
        prop_assert!(
            batch.items.len() <= self.size,
            "{} items > BATCH_SIZE",
            batch.items.len()
        );
        for item in &batch.items {
            let busy = self
                .in_flight
                .iter()
                .any(|b| b.items.iter().any(|i| i.session_id == item.session_id));
            prop_assert!(!busy, "{} in two requests at once", item.session_id);
            let last = self.last_sent.insert(item.session_id.clone(), item.seq);
            prop_assert!(
                last.is_none_or(|l| l < item.seq),
                "{} went out of order",
                item.session_id
            );
            if item.priority == Priority::High {
                self.high_sent.push(item.seq);
            }
        }
        self.in_flight.push(batch);
        let high = self
            .in_flight
            .iter()
            .filter(|b| b.lane == Lane::High)
            .count();
        let normal = self
            .in_flight
            .iter()
            .filter(|b| b.lane == Lane::Normal)
            .count();
        prop_assert!(normal <= 1, "two normal requests in flight");
        prop_assert!(
            draining || high <= MAX_HIGH_IN_FLIGHT,
            "{} high requests in flight",
            high
        );
        Ok(())
    }
}

proptest! {
    #[test]
    fn sessions_see_their_updates_in_order_and_nothing_high_is_lost(ops in ops(), size in 1usize..5) {
        let config = BatchConfig {
            size,
            interval: Duration::from_millis(100),
            priority_interval: Duration::from_millis(20),
            inbound_interval: Duration::from_millis(100),
            legacy: false,
        };
        let mut order = StatusOrder::new(config);
        let mut now = Instant::now();
        let mut check = Check { size, in_flight: Vec::new(), last_sent: HashMap::new(), high_sent: Vec::new() };
        let mut seq = 0u64;
        let mut high_recorded = Vec::new();
        let mut last_recorded: HashMap<SessionId, u64> = HashMap::new();
        for op in ops {
            match op {
                Op::Record(s, high) => {
                    seq += 1;
                    if high {
                        high_recorded.push(seq);
                    }
                    last_recorded.insert(sid(s), seq);
                    order.record(item(s, high, seq), now);
                }
                Op::PollHigh(draining) => {
                    if let HighStep::Send(b) = order.poll_high(now, draining) {
                        prop_assert_eq!(b.lane, Lane::High);
                        check.dispatched(b, draining)?;
                    }
                }
                Op::PollNormal(draining) => {
                    if let Some(b) = order.poll_normal(now, draining) {
                        prop_assert_eq!(b.lane, Lane::Normal);
                        check.dispatched(b, draining)?;
                    }
                }
                Op::Complete(i) => {
                    if !check.in_flight.is_empty() {
                        let b = check.in_flight.remove(i % check.in_flight.len());
                        order.completed(b.lane, &b.items);
                    }
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
            }
            prop_assert_eq!(order.is_idle(), check.in_flight.is_empty() && order.waiting() == 0);
        }
        // Drain: complete what is in flight, poll both lanes until idle.
        for _ in 0..(2 * seq + 4) {
            for b in std::mem::take(&mut check.in_flight) {
                order.completed(b.lane, &b.items);
            }
            if order.is_idle() {
                break;
            }
            if let HighStep::Send(b) = order.poll_high(now, true) {
                check.dispatched(b, true)?;
            }
            if let Some(b) = order.poll_normal(now, true) {
                check.dispatched(b, true)?;
            }
        }
        prop_assert!(order.is_idle(), "updates left behind: {:?}", order.pending());
        check.high_sent.sort_unstable();
        prop_assert_eq!(&check.high_sent, &high_recorded, "every high update exactly once");
        prop_assert_eq!(&check.last_sent, &last_recorded, "each session ends at its latest state");
    }
}
