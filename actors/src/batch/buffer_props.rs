//! Property tests of the batch buffers against a plain model: any sequence
//! of pushes, removals and takes (with any keys held back). Invariants:
//! nothing is lost or sent twice, a held key is never taken, a take never
//! exceeds its `max`, [`Coalescing`] keeps one item per key (the latest, at
//! its first position and arrival time) and [`Fifo`] keeps per-key order.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Push(u8),
    Remove(u8),
    /// `max`, and a bit mask of the keys held back.
    Take(usize, u8),
    Wait(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u8..6).prop_map(Op::Push),
            1 => (0u8..6).prop_map(Op::Remove),
            2 => (0usize..5, any::<u8>()).prop_map(|(m, h)| Op::Take(m, h)),
            1 => (0u64..100).prop_map(Op::Wait),
        ],
        0..120,
    )
}

fn held(mask: u8) -> impl Fn(&u8) -> bool {
    move |k: &u8| mask & (1 << k) != 0
}

proptest! {
    #[test]
    fn coalescing_keeps_the_latest_per_key_and_loses_nothing(ops in ops()) {
        let mut now = Instant::now();
        let mut b: Coalescing<u8, u32> = Coalescing::default();
        // Model: (key, latest value, first arrival) in first-arrival order.
        let mut model: Vec<(u8, u32, Instant)> = Vec::new();
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::Push(k) => {
                    next += 1;
                    let replaced = b.push(k, next, now);
                    match model.iter_mut().find(|(m, _, _)| *m == k) {
                        Some(entry) => {
                            prop_assert!(replaced);
                            entry.1 = next;
                        }
                        None => {
                            prop_assert!(!replaced);
                            model.push((k, next, now));
                        }
                    }
                }
                Op::Remove(k) => {
                    let expected = model.iter().position(|(m, _, _)| *m == k).map(|i| model.remove(i).1);
                    prop_assert_eq!(b.remove(&k), expected);
                }
                Op::Take(max, mask) => {
                    let hold = held(mask);
                    let taken = b.take(max, &hold);
                    prop_assert!(taken.len() <= max);
                    let expected: Vec<(u8, u32)> = model.iter().filter(|(k, _, _)| !hold(k)).take(max).map(|(k, v, _)| (*k, *v)).collect();
                    prop_assert_eq!(&taken, &expected);
                    model.retain(|(k, _, _)| !taken.iter().any(|(t, _)| t == k));
                }
                Op::Wait(ms) => now += Duration::from_millis(ms),
            }
            prop_assert_eq!(b.len(), model.len(), "one item per key, never more");
            prop_assert!(b.len() <= 6);
            prop_assert_eq!(b.oldest(), model.iter().map(|(_, _, t)| *t).min());
            let items: Vec<(u8, u32)> = b.iter().map(|(k, v)| (*k, *v)).collect();
            let expected: Vec<(u8, u32)> = model.iter().map(|(k, v, _)| (*k, *v)).collect();
            prop_assert_eq!(items, expected, "first position kept, latest value held");
        }
    }

    #[test]
    fn fifo_delivers_every_item_once_in_per_key_order(ops in ops()) {
        let mut now = Instant::now();
        let mut b: Fifo<u8, u32> = Fifo::default();
        let mut pushed: Vec<(u8, u32)> = Vec::new();
        let mut delivered: Vec<(u8, u32)> = Vec::new();
        let mut next = 0u32;
        let mut arrivals: Vec<(u32, Instant)> = Vec::new();
        for op in ops {
            match op {
                Op::Push(k) => {
                    next += 1;
                    b.push(k, next, now);
                    pushed.push((k, next));
                    arrivals.push((next, now));
                }
                // A FIFO has no removal: the key only moves time on here.
                Op::Remove(_) | Op::Wait(_) => now += Duration::from_millis(1),
                Op::Take(max, mask) => {
                    let hold = held(mask);
                    let before: Vec<(u8, u32)> = b.iter().map(|(k, v)| (*k, *v)).collect();
                    let taken = b.take(max, &hold);
                    prop_assert!(taken.len() <= max);
                    for (k, v) in &taken {
                        prop_assert!(!hold(k), "held key {} taken", k);
                        // Everything of this key pending before it was taken too.
                        let earlier = before.iter().take_while(|(_, w)| w != v).filter(|(j, _)| j == k);
                        for e in earlier {
                            prop_assert!(taken.contains(e), "{:?} overtook {:?}", (k, v), e);
                        }
                    }
                    delivered.extend(taken);
                }
            }
            let pending: Vec<u32> = b.iter().map(|(_, v)| *v).collect();
            let oldest = pending.first().and_then(|v| arrivals.iter().find(|(a, _)| a == v)).map(|(_, t)| *t);
            prop_assert_eq!(b.oldest(), oldest);
        }
        delivered.extend(b.take(usize::MAX, |_| false));
        prop_assert!(b.is_empty());
        // Every item exactly once, each key's items in push order.
        let mut sorted = delivered.clone();
        sorted.sort_by_key(|(_, v)| *v);
        prop_assert_eq!(&sorted, &pushed, "lost or duplicated");
        for key in 0u8..6 {
            let order: Vec<u32> = delivered.iter().filter(|(k, _)| *k == key).map(|(_, v)| *v).collect();
            prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "key {} out of order: {:?}", key, order);
        }
    }
}
