//! The status batcher's ordering, pure: which status updates go out in
//! which request, so Laravel sees each session's updates in order although
//! they travel in two lanes. High (`active`, `inactive`, `logged_out`,
//! `failed`) keeps every update; normal keeps the latest per session. A
//! session with an update in flight, or a high update pending, is held back;
//! a pending normal update is promoted ahead of a new high one. Time is an
//! argument; [`super::status::StatusBatcher`] sends what this returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::buffer::{Coalescing, Fifo};
use super::BatchConfig;
use crate::ids::SessionId;
use crate::laravel::payload::{Priority, StatusItem};

/// High-lane requests allowed in flight at once when items have waited
/// `PRIORITY_INTERVAL` behind a slow one.
pub const MAX_HIGH_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    High,
    Normal,
}

/// One request's worth of updates, counted in flight until [`StatusOrder::completed`].
#[derive(Debug)]
pub struct Batch {
    pub lane: Lane,
    pub items: Vec<StatusItem>,
}

/// What the high lane wants now.
#[derive(Debug)]
pub enum HighStep {
    Send(Batch),
    /// Items wait for a free slot; look again after this long.
    WakeIn(Duration),
    /// Nothing to send (empty, or everything waits for its session's
    /// request in flight, whose completion looks again).
    Idle,
}

pub struct StatusOrder {
    /// `size`, `interval` and `priority_interval` of [`BatchConfig`].
    config: BatchConfig,
    /// High-priority updates, every one kept, in order.
    high: Fifo<SessionId, StatusItem>,
    /// Normal updates, latest per session.
    normal: Coalescing<SessionId, StatusItem>,
    /// Sessions with an update in a request that has not completed; their
    /// later updates wait so Laravel sees them in order.
    in_flight: HashMap<SessionId, u32>,
    high_in_flight: usize,
    normal_in_flight: bool,
}

impl StatusOrder {
    pub fn new(config: BatchConfig) -> Self {
        Self {
            config,
            high: Fifo::default(),
            normal: Coalescing::default(),
            in_flight: HashMap::new(),
            high_in_flight: 0,
            normal_in_flight: false,
        }
    }

    /// Takes in one update.
    pub fn record(&mut self, item: StatusItem, now: Instant) {
        let session = item.session_id.clone();
        match item.priority {
            Priority::High => {
                // An older normal update of this session goes first, in the same lane.
                if let Some(older) = self.normal.remove(&session) {
                    self.high.push(session.clone(), older, now);
                }
                self.high.push(session, item, now);
            }
            Priority::Normal => {
                // "Latest" is by `seq`, not by arrival: a status replayed
                // from the journal at start must not replace a newer one.
                if self.normal.get(&session).is_some_and(|p| p.seq > item.seq) {
                    return;
                }
                self.normal.push(session, item, now);
            }
        }
    }

    /// The next high-lane request, if one may go now. One is in flight at a
    /// time, up to [`MAX_HIGH_IN_FLIGHT`] once the oldest item has waited
    /// `PRIORITY_INTERVAL`, any number while `draining`.
    pub fn poll_high(&mut self, now: Instant, draining: bool) -> HighStep {
        let Some(oldest) = self.high.oldest() else {
            return HighStep::Idle;
        };
        let waited = now.saturating_duration_since(oldest);
        let slot_free = self.high_in_flight == 0
            || (self.high_in_flight < MAX_HIGH_IN_FLIGHT
                && waited >= self.config.priority_interval)
            || draining;
        if !slot_free {
            return HighStep::WakeIn(self.config.priority_interval.saturating_sub(waited));
        }
        let in_flight = &self.in_flight;
        let items = self
            .high
            .take(self.config.size, |s| in_flight.contains_key(s));
        if items.is_empty() {
            return HighStep::Idle;
        }
        HighStep::Send(self.dispatch(items, Lane::High))
    }

    /// The next normal-lane request, if one may go now: one at a time, once
    /// full, once the oldest has waited `BATCH_INTERVAL`, or while `draining`.
    pub fn poll_normal(&mut self, now: Instant, draining: bool) -> Option<Batch> {
        if self.normal_in_flight || self.normal.is_empty() {
            return None;
        }
        let ripe = self
            .normal
            .oldest()
            .is_some_and(|t| now.saturating_duration_since(t) >= self.config.interval);
        if !(ripe || draining || self.normal.len() >= self.config.size) {
            return None;
        }
        let (in_flight, high) = (&self.in_flight, &self.high);
        let items = self.normal.take(self.config.size, |s| {
            in_flight.contains_key(s) || high.iter().any(|(k, _)| k == s)
        });
        (!items.is_empty()).then(|| self.dispatch(items, Lane::Normal))
    }

    /// A request [`poll_high`](Self::poll_high) or
    /// [`poll_normal`](Self::poll_normal) returned has completed (delivered,
    /// or held in the outbox): its sessions' later updates may go.
    pub fn completed(&mut self, lane: Lane, items: &[StatusItem]) {
        for item in items {
            if let Some(n) = self.in_flight.get_mut(&item.session_id) {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(&item.session_id);
                }
            }
        }
        match lane {
            Lane::High => self.high_in_flight -= 1,
            Lane::Normal => self.normal_in_flight = false,
        }
    }

    /// Nothing pending and no request in flight.
    pub fn is_idle(&self) -> bool {
        self.waiting() == 0 && self.high_in_flight == 0 && !self.normal_in_flight
    }

    /// Updates pending in both lanes.
    pub fn waiting(&self) -> usize {
        self.high.len() + self.normal.len()
    }

    /// Pending `(high, normal)` counts.
    pub fn pending(&self) -> (usize, usize) {
        (self.high.len(), self.normal.len())
    }

    /// When the oldest pending `(high, normal)` update arrived.
    pub fn oldest(&self) -> (Option<Instant>, Option<Instant>) {
        (self.high.oldest(), self.normal.oldest())
    }

    fn dispatch(&mut self, items: Vec<(SessionId, StatusItem)>, lane: Lane) -> Batch {
        for (s, _) in &items {
            *self.in_flight.entry(s.clone()).or_default() += 1;
        }
        match lane {
            Lane::High => self.high_in_flight += 1,
            Lane::Normal => self.normal_in_flight = true,
        }
        Batch {
            lane,
            items: items.into_iter().map(|(_, v)| v).collect(),
        }
    }
}

#[cfg(test)]
#[path = "status_order_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "status_order_props.rs"]
mod props;
