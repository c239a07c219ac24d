//! What the simulated WhatsApp remembers of the messages sessions sent
//! through it: attempts, deliveries, what each said and when it arrived,
//! for the last [`CAPACITY`] message ids (the oldest is forgotten first).
//! Tests read it through the [`Simulator`](super::Simulator); the
//! simulator itself reads it to refuse an edit or revoke of a message the
//! session never sent. Bounded, because the simulator is also what the
//! gateway runs by default: a demo that posts messages for days must not
//! grow without end (the 1-hour soak found 4 unbounded maps here).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::SimSent;

/// Message ids remembered. A real WhatsApp lets a message be edited for
/// 15 minutes; at the soak's 20 sends/s this covers about 17 minutes.
pub const CAPACITY: usize = 20_000;

/// One message id's story.
#[derive(Debug, Default)]
struct Record {
    attempts: u32,
    delivered: u32,
    /// The last delivered send: what the recipient saw, and when.
    sent: Option<(SimSent, Instant)>,
}

#[derive(Debug)]
pub(super) struct History {
    capacity: usize,
    records: HashMap<String, Record>,
    /// Ids in the order they were first seen: the front is forgotten first.
    order: VecDeque<String>,
}

impl Default for History {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl History {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            records: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The record of `id`, made (and the oldest forgotten) if new.
    fn record(&mut self, id: &str) -> &mut Record {
        if !self.records.contains_key(id) {
            while self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.records.remove(&old);
                }
            }
            self.order.push_back(id.to_owned());
            self.records.insert(id.to_owned(), Record::default());
        }
        self.records.get_mut(id).expect("inserted above")
    }

    /// Counts one more attempt to send `id`; returns which one this is.
    pub(super) fn attempt(&mut self, id: &str) -> u32 {
        let r = self.record(id);
        r.attempts += 1;
        r.attempts
    }

    /// `id` was delivered (again) as `sent`, at `at`.
    pub(super) fn delivered(&mut self, id: &str, sent: SimSent, at: Instant) {
        let r = self.record(id);
        r.delivered += 1;
        r.sent = Some((sent, at));
    }

    /// Successful sends of `id` (0 when unknown or forgotten).
    pub(super) fn deliveries(&self, id: &str) -> u32 {
        self.records.get(id).map_or(0, |r| r.delivered)
    }

    /// What `id` said when last delivered, and when.
    pub(super) fn sent(&self, id: &str) -> Option<&(SimSent, Instant)> {
        self.records.get(id).and_then(|r| r.sent.as_ref())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SessionId;
    use crate::messages::content::OutboundContent;

    fn sent(text: &str) -> SimSent {
        SimSent {
            session: SessionId::parse("s").unwrap(),
            to: "1".into(),
            content: OutboundContent::Text { text: text.into() },
            quoted_message_id: None,
            mentions: Vec::new(),
            media: None,
        }
    }

    #[test]
    fn counts_attempts_and_deliveries_and_keeps_the_last_send() {
        let mut h = History::default();
        let at = Instant::now();
        assert_eq!((h.attempt("a"), h.attempt("a")), (1, 2));
        assert_eq!(h.deliveries("a"), 0);
        h.delivered("a", sent("one"), at);
        h.delivered("a", sent("two"), at);
        assert_eq!(h.deliveries("a"), 2);
        assert_eq!(h.sent("a").unwrap().0, sent("two"));
        assert!(h.sent("b").is_none());
    }

    #[test]
    fn forgets_the_oldest_ids_beyond_its_capacity() {
        let mut h = History::with_capacity(3);
        let at = Instant::now();
        for id in ["a", "b", "c"] {
            h.delivered(id, sent(id), at);
        }
        h.attempt("a"); // known: forgets nothing, keeps its place
        assert_eq!(h.len(), 3);
        h.attempt("d");
        assert_eq!(h.len(), 3);
        assert_eq!(h.deliveries("a"), 0, "the first seen goes first");
        assert_eq!((h.deliveries("b"), h.deliveries("c")), (1, 1));
        for i in 0..1000 {
            h.attempt(&format!("x{i}"));
        }
        assert_eq!((h.len(), h.order.len()), (3, 3));
    }
}
