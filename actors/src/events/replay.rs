//! The replay buffer behind `Last-Event-ID`: the most recent events in id
//! order, at most `capacity` of them and at most `max_bytes` of JSON (an
//! incoming text may be 64 KB: 10,000 of those must not pin 640 MB). Pure;
//! the [`EventBus`](super::EventBus) holds one under its lock.

use std::collections::VecDeque;
use std::sync::Arc;

use super::Event;

/// What a subscriber resuming after `after` gets from the buffer.
#[derive(Debug, PartialEq)]
pub struct Resumed {
    /// Held events newer than `after`, oldest first.
    pub events: Vec<Arc<Event>>,
    /// Events after `after` that are no longer held (the subscriber was
    /// away too long): the first id it will get, when some were missed.
    pub missed_until: Option<u64>,
}

#[derive(Debug)]
pub struct Replay {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    events: VecDeque<Arc<Event>>,
}

impl Replay {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity,
            max_bytes,
            bytes: 0,
            events: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    /// Keeps `event` (ids only grow), forgetting the oldest beyond capacity.
    pub fn push(&mut self, event: Arc<Event>) {
        debug_assert!(self.events.back().is_none_or(|e| e.id < event.id));
        let size = event.json.len();
        if self.capacity == 0 || size > self.max_bytes {
            return;
        }
        while self.events.len() >= self.capacity || self.bytes + size > self.max_bytes {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old.json.len();
        }
        self.bytes += size;
        self.events.push_back(event);
    }

    /// The events after id `after`; `next_id` is the id the next event
    /// will get (so a subscriber that saw everything misses nothing).
    pub fn since(&self, after: u64, next_id: u64) -> Resumed {
        let start = self.events.partition_point(|e| e.id <= after);
        let events: Vec<Arc<Event>> = self.events.range(start..).cloned().collect();
        let first_held = events.first().map_or(next_id, |e| e.id);
        // Ids are consecutive, so anything between `after` and the first
        // held (or next) id was published and is gone.
        let missed_until = (first_held > after + 1 && after + 1 < next_id).then_some(first_held);
        Resumed {
            events,
            missed_until,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use crate::ids::SessionId;

    fn event(id: u64) -> Arc<Event> {
        sized(id, 2)
    }

    fn sized(id: u64, bytes: usize) -> Arc<Event> {
        Arc::new(Event {
            id,
            kind: EventKind::State,
            session: SessionId::parse("s").unwrap(),
            json: Arc::from("x".repeat(bytes)),
        })
    }

    fn ids(r: &Resumed) -> Vec<u64> {
        r.events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn resumes_after_the_last_seen_id_without_gaps_or_repeats() {
        let mut r = Replay::new(5, 1 << 20);
        for id in 1..=3 {
            r.push(event(id));
        }
        let got = r.since(1, 4);
        assert_eq!((ids(&got), got.missed_until), (vec![2, 3], None));
        let got = r.since(3, 4);
        assert_eq!((ids(&got), got.missed_until), (vec![], None));
        let got = r.since(0, 4);
        assert_eq!((ids(&got), got.missed_until), (vec![1, 2, 3], None));
    }

    #[test]
    fn keeps_only_the_newest_and_says_what_was_missed() {
        let mut r = Replay::new(3, 1 << 20);
        for id in 1..=10 {
            r.push(event(id));
        }
        assert_eq!(r.len(), 3);
        let got = r.since(2, 11);
        assert_eq!((ids(&got), got.missed_until), (vec![8, 9, 10], Some(8)));
        let got = r.since(7, 11);
        assert_eq!((ids(&got), got.missed_until), (vec![8, 9, 10], None));
        // An id from the future (another process's) misses nothing here.
        let got = r.since(50, 11);
        assert_eq!((ids(&got), got.missed_until), (vec![], None));
    }

    #[test]
    fn a_zero_capacity_holds_nothing_and_reports_the_gap() {
        let mut r = Replay::new(0, 1 << 20);
        r.push(event(1));
        r.push(event(2));
        assert!(r.is_empty());
        let got = r.since(0, 3);
        assert_eq!((ids(&got), got.missed_until), (vec![], Some(3)));
    }

    #[test]
    fn keeps_no_more_bytes_than_allowed() {
        let mut r = Replay::new(100, 1000);
        for id in 1..=10 {
            r.push(sized(id, 300));
        }
        let got = r.since(0, 11);
        assert_eq!(ids(&got), vec![8, 9, 10], "900 bytes of the newest");
        assert_eq!(got.missed_until, Some(8));
        r.push(sized(11, 2000)); // larger than the whole budget: not kept
        assert_eq!(ids(&r.since(0, 12)), vec![8, 9, 10]);
        assert_eq!(r.since(10, 12).missed_until, Some(12));
    }
}
