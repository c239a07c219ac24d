//! Unit tests of [`super::StatusOrder`] on a clock moved by hand.

use super::*;
use crate::laravel::payload::StatusWord;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn config() -> BatchConfig {
    BatchConfig {
        size: 10,
        interval: MS(100),
        priority_interval: MS(20),
        inbound_interval: MS(100),
        legacy: false,
    }
}

fn item(session: &str, seq: u64, priority: Priority) -> StatusItem {
    StatusItem {
        session_id: SessionId::parse(session).unwrap(),
        status: match priority {
            Priority::High => StatusWord::Active,
            Priority::Normal => StatusWord::Starting,
        },
        priority,
        reason: None,
        timestamp: seq,
        seq,
    }
}

fn high(session: &str, seq: u64) -> StatusItem {
    item(session, seq, Priority::High)
}

fn normal(session: &str, seq: u64) -> StatusItem {
    item(session, seq, Priority::Normal)
}

/// `(session, seq)` of a batch's items, in order.
fn seqs(batch: &Batch) -> Vec<(String, u64)> {
    batch
        .items
        .iter()
        .map(|i| (i.session_id.to_string(), i.seq))
        .collect()
}

fn sent(step: HighStep) -> Batch {
    match step {
        HighStep::Send(b) => b,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn pair(session: &str, seq: u64) -> (String, u64) {
    (session.to_owned(), seq)
}

#[test]
fn the_high_lane_is_never_behind_the_normal_lane_for_one_session() {
    let t0 = Instant::now();
    let mut o = StatusOrder::new(config());
    o.record(normal("a", 1), t0);
    o.record(normal("b", 2), t0);
    o.record(high("a", 3), t0);
    let batch = sent(o.poll_high(t0, false));
    assert_eq!(batch.lane, Lane::High);
    assert_eq!(
        seqs(&batch),
        [pair("a", 1), pair("a", 3)],
        "a's pending normal update went first, in the high lane"
    );
    let rest = o.poll_normal(t0 + MS(100), false).unwrap();
    assert_eq!(seqs(&rest), [pair("b", 2)], "b is not affected");
}

#[test]
fn a_normal_update_waits_while_its_session_has_a_high_one_pending_or_in_flight() {
    let t0 = Instant::now();
    let mut o = StatusOrder::new(config());
    o.record(high("b", 1), t0);
    let b_request = sent(o.poll_high(t0, false));
    o.record(high("a", 2), t0);
    assert!(
        matches!(o.poll_high(t0, false), HighStep::WakeIn(d) if d == MS(20)),
        "one high request at a time until PRIORITY_INTERVAL"
    );
    o.record(normal("a", 3), t0);
    o.record(normal("c", 4), t0);
    let t1 = t0 + MS(100);
    let normal_request = o.poll_normal(t1, false).unwrap();
    assert_eq!(
        seqs(&normal_request),
        [pair("c", 4)],
        "a waits: its high update is still pending"
    );
    o.completed(Lane::Normal, &normal_request.items);
    let a_high = sent(o.poll_high(t1, false));
    assert_eq!(seqs(&a_high), [pair("a", 2)]);
    assert!(
        o.poll_normal(t1, false).is_none(),
        "a waits: its high update is in flight"
    );
    o.completed(Lane::High, &a_high.items);
    o.completed(Lane::High, &b_request.items);
    assert_eq!(seqs(&o.poll_normal(t1, false).unwrap()), [pair("a", 3)]);
}

#[test]
fn a_sessions_next_high_update_waits_for_its_request_in_flight() {
    let t0 = Instant::now();
    let mut o = StatusOrder::new(config());
    o.record(high("a", 1), t0);
    let first = sent(o.poll_high(t0, false));
    o.record(high("a", 2), t0);
    o.record(high("b", 3), t0);
    let t1 = t0 + MS(20);
    let second = sent(o.poll_high(t1, false));
    assert_eq!(seqs(&second), [pair("b", 3)], "a's second update is held");
    assert!(matches!(o.poll_high(t1, false), HighStep::Idle));
    o.completed(Lane::High, &first.items);
    assert_eq!(seqs(&sent(o.poll_high(t1, false))), [pair("a", 2)]);
}

#[test]
fn slow_requests_open_up_to_four_high_slots_after_the_priority_interval() {
    let t0 = Instant::now();
    let mut o = StatusOrder::new(config());
    o.record(high("s0", 0), t0);
    sent(o.poll_high(t0, false));
    for n in 1..=4 {
        o.record(high(&format!("s{n}"), n), t0);
    }
    assert!(matches!(o.poll_high(t0 + MS(5), false), HighStep::WakeIn(d) if d == MS(15)));
    let t1 = t0 + MS(20);
    let second = sent(o.poll_high(t1, false));
    assert_eq!(second.items.len(), 4, "everything waiting, in one request");
    o.record(high("s5", 5), t1);
    o.record(high("s6", 6), t1);
    let t2 = t1 + MS(20);
    sent(o.poll_high(t2, false));
    o.record(high("s7", 7), t2);
    sent(o.poll_high(t2 + MS(20), false));
    o.record(high("s8", 8), t2);
    assert!(
        matches!(o.poll_high(t2 + MS(40), false), HighStep::WakeIn(_)),
        "four in flight: the fifth waits"
    );
    assert_eq!(
        seqs(&sent(o.poll_high(t2 + MS(40), true))),
        [pair("s8", 8)],
        "a drain does not wait"
    );
}

#[test]
fn the_normal_lane_coalesces_and_waits_for_the_interval_or_a_full_batch() {
    let t0 = Instant::now();
    let mut o = StatusOrder::new(BatchConfig {
        size: 3,
        ..config()
    });
    o.record(normal("a", 1), t0);
    o.record(normal("a", 2), t0 + MS(50));
    assert_eq!(o.pending(), (0, 1), "latest per session");
    assert!(o.poll_normal(t0 + MS(99), false).is_none());
    assert!(
        o.poll_normal(t0 + MS(10), true).is_some(),
        "a drain flushes"
    );
    let mut o = StatusOrder::new(BatchConfig {
        size: 3,
        ..config()
    });
    for (n, s) in ["a", "b", "c"].into_iter().enumerate() {
        o.record(normal(s, n as u64), t0);
    }
    let full = o.poll_normal(t0, false).unwrap();
    assert_eq!(full.items.len(), 3, "full: no linger");
    o.record(normal("d", 9), t0);
    assert!(
        o.poll_normal(t0 + MS(100), false).is_none(),
        "one normal request at a time"
    );
    o.completed(Lane::Normal, &full.items);
    assert!(o.poll_normal(t0 + MS(100), false).is_some());
    assert!(!o.is_idle());
}

/// A long mixed run with requests completing out of order: every session's
/// updates reach Laravel with increasing `seq`, every high update arrives,
/// and each session's last update is the last one it sent.
#[test]
fn each_sessions_updates_go_out_in_seq_order_whatever_completes_first() {
    let t0 = Instant::now();
    let mut o = StatusOrder::new(BatchConfig {
        size: 4,
        ..config()
    });
    let sessions = ["a", "b", "c"];
    let mut in_flight: Vec<Batch> = Vec::new();
    let mut delivered: Vec<StatusItem> = Vec::new();
    let mut last_seq = [0u64; 3];
    let mut highs = 0;
    /// Everything both lanes may send now goes in flight.
    fn step(o: &mut StatusOrder, in_flight: &mut Vec<Batch>, now: Instant, draining: bool) {
        loop {
            let mut moved = false;
            if let HighStep::Send(b) = o.poll_high(now, draining) {
                in_flight.push(b);
                moved = true;
            }
            if let Some(b) = o.poll_normal(now, draining) {
                in_flight.push(b);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }
    for i in 0..300u64 {
        let now = t0 + MS(i * 7);
        let s = (i as usize * 5 + i as usize / 7) % 3;
        let seq = i + 1;
        last_seq[s] = seq;
        let priority = if i % 4 == 0 || i % 11 == 3 {
            highs += 1;
            Priority::High
        } else {
            Priority::Normal
        };
        o.record(item(sessions[s], seq, priority), now);
        step(&mut o, &mut in_flight, now, false);
        // Complete the newest request every other step: later ones first.
        if i % 2 == 1 {
            if let Some(b) = in_flight.pop() {
                o.completed(b.lane, &b.items);
                delivered.extend(b.items.iter().cloned());
            }
            step(&mut o, &mut in_flight, now, false);
        }
    }
    let end = t0 + MS(300 * 7);
    while !o.is_idle() {
        step(&mut o, &mut in_flight, end, true);
        let b = in_flight
            .pop()
            .expect("pending work has a request in flight");
        o.completed(b.lane, &b.items);
        delivered.extend(b.items.iter().cloned());
    }
    for (n, s) in sessions.iter().enumerate() {
        let mine: Vec<u64> = delivered
            .iter()
            .filter(|i| i.session_id.as_str() == *s)
            .map(|i| i.seq)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "{s} out of order: {mine:?}"
        );
        assert_eq!(
            mine.last(),
            Some(&last_seq[n]),
            "{s}'s latest update arrives"
        );
    }
    let high_delivered = delivered
        .iter()
        .filter(|i| i.priority == Priority::High)
        .count();
    assert_eq!(high_delivered, highs, "no high update is coalesced away");
}

#[test]
fn a_late_older_normal_update_never_replaces_a_newer_one() {
    // A status replayed from the journal at start arrives after the
    // session's fresh one: the fresh one (higher seq) is what goes out.
    let t0 = Instant::now();
    let mut o = StatusOrder::new(config());
    o.record(normal("a", 9), t0);
    o.record(normal("a", 5), t0 + MS(1));
    let batch = o.poll_normal(t0 + MS(100), false).unwrap();
    assert_eq!(seqs(&batch), [pair("a", 9)]);
    // In order, the newer one still replaces the older.
    let mut o = StatusOrder::new(config());
    o.record(normal("b", 5), t0);
    o.record(normal("b", 9), t0 + MS(1));
    let batch = o.poll_normal(t0 + MS(100), false).unwrap();
    assert_eq!(seqs(&batch), [pair("b", 9)]);
}
