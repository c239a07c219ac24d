//! One delivery target's pure state: what waits to be sent, the batch in
//! flight or waiting for its retry, the target's own circuit breaker and
//! its backoff. The [`WebhookSender`](super::sender::WebhookSender) owns
//! one per webhook (items are events, several per request) and one for
//! `LARAVEL_FALLBACK_URL` (items are Laravel batches, one per request). It
//! asks [`Target::poll`] what to do now, carries the answer out and reports
//! the attempt with [`Target::finished`]. Takes `now`; never sleeps, never
//! does I/O; what it drops it returns, so the caller can count it.
//!
//! One request at a time per target, so a receiver sees its events in
//! order; what arrives meanwhile waits (bounded) and leaves in the next
//! batch, so a slow receiver gets fuller batches, not more requests.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::equal_jitter_from;
use crate::laravel::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};

/// How a target batches, bounds and retries.
#[derive(Debug, Clone, Copy)]
pub struct TargetConfig {
    /// Items per request.
    pub batch_items: usize,
    /// Items waiting behind the batch in flight; the oldest is dropped
    /// beyond this...
    pub max_pending: usize,
    /// ...or beyond this many bytes of them.
    pub max_pending_bytes: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A batch still failing this long after its first attempt is dropped.
    pub give_up_after: Duration,
    pub breaker: BreakerConfig,
}

/// Why items were dropped (the `reason` label of the dropped metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// More waited than `max_pending` / `max_pending_bytes` allow.
    Overflow,
    /// The receiver refused the batch (a 4xx other than 408/429).
    Refused,
    /// Failing for longer than `give_up_after`.
    GaveUp,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Overflow => "overflow",
            DropReason::Refused => "refused",
            DropReason::GaveUp => "gave_up",
        }
    }
}

/// Items dropped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub reason: DropReason,
    pub items: usize,
}

/// How one attempt ended, as far as the target cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Worth retrying: a transport error, a timeout, a 5xx. A breaker failure.
    Failed,
    /// The receiver asked to wait (429, or 503 with `Retry-After`): retried
    /// after that long, not a breaker failure.
    Throttled(Option<Duration>),
    /// The receiver understood and refused: the batch is dropped.
    Refused,
}

/// What the caller should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// POST the current batch ([`Target::batch`]) under `id`; this is its
    /// `attempt`th try (1 first).
    Send { id: String, attempt: u32 },
    /// Nothing before this instant.
    WaitUntil(Instant),
    /// A request is out; its outcome comes through [`Target::finished`].
    Busy,
    /// Nothing to send.
    Idle,
}

/// The batch being delivered: the same id and items on every attempt.
#[derive(Debug)]
pub struct Batch<T> {
    pub id: String,
    pub items: Vec<T>,
    attempts: u32,
    first_attempt: Option<Instant>,
    due: Instant,
    in_flight: bool,
}

pub struct Target<T> {
    config: TargetConfig,
    pending: VecDeque<(T, usize)>,
    pending_bytes: usize,
    current: Option<Batch<T>>,
    breaker: CircuitBreaker,
}

impl<T> Target<T> {
    pub fn new(config: TargetConfig) -> Self {
        Self {
            config,
            pending: VecDeque::new(),
            pending_bytes: 0,
            current: None,
            breaker: CircuitBreaker::new(config.breaker),
        }
    }

    /// Queues an item of `bytes`; returns what had to go to make room.
    pub fn offer(&mut self, item: T, bytes: usize) -> Option<Dropped> {
        self.pending.push_back((item, bytes));
        self.pending_bytes += bytes;
        let mut dropped = 0;
        while self.pending.len() > self.config.max_pending.max(1)
            || (self.pending_bytes > self.config.max_pending_bytes && self.pending.len() > 1)
        {
            if let Some((_, b)) = self.pending.pop_front() {
                self.pending_bytes -= b;
                dropped += 1;
            }
        }
        (dropped > 0).then_some(Dropped {
            reason: DropReason::Overflow,
            items: dropped,
        })
    }

    /// What to do now. `fresh_id` names a new batch when one is formed.
    pub fn poll(&mut self, now: Instant, fresh_id: impl FnOnce() -> String) -> Poll {
        if self.current.is_none() {
            if self.pending.is_empty() {
                return Poll::Idle;
            }
            let take = self.pending.len().min(self.config.batch_items.max(1));
            let items = self
                .pending
                .drain(..take)
                .map(|(item, bytes)| {
                    self.pending_bytes -= bytes;
                    item
                })
                .collect();
            self.current = Some(Batch {
                id: fresh_id(),
                items,
                attempts: 0,
                first_attempt: None,
                due: now,
                in_flight: false,
            });
        }
        let batch = self.current.as_mut().expect("formed above");
        if batch.in_flight {
            return Poll::Busy;
        }
        if now < batch.due {
            return Poll::WaitUntil(batch.due);
        }
        match self.breaker.admit(now) {
            Admission::Rejected { retry_at } => Poll::WaitUntil(retry_at),
            Admission::Allowed | Admission::Probe => {
                batch.in_flight = true;
                batch.attempts += 1;
                batch.first_attempt.get_or_insert(now);
                Poll::Send {
                    id: batch.id.clone(),
                    attempt: batch.attempts,
                }
            }
        }
    }

    /// The batch being delivered, if any.
    pub fn batch(&self) -> Option<&Batch<T>> {
        self.current.as_ref()
    }

    /// Records the outcome of the request `poll` asked for. `jitter` in
    /// `[0, 1)` spreads the retry. Returns the batch's items when they are
    /// dropped (refused, or failing for too long).
    pub fn finished(&mut self, outcome: Outcome, now: Instant, jitter: f64) -> Option<Dropped> {
        let batch = self.current.as_mut()?;
        if !batch.in_flight {
            return None;
        }
        batch.in_flight = false;
        let drop_batch = |this: &mut Self, reason| {
            let items = this.current.take().map_or(0, |b| b.items.len());
            Some(Dropped { reason, items })
        };
        match outcome {
            Outcome::Delivered => {
                self.breaker.record_success();
                self.current = None;
                None
            }
            Outcome::Refused => {
                // It answered: the receiver is up, only this batch is bad.
                self.breaker.record_success();
                drop_batch(self, DropReason::Refused)
            }
            Outcome::Failed | Outcome::Throttled(_) => {
                if matches!(outcome, Outcome::Failed) {
                    self.breaker.record_failure(now);
                }
                let first = batch.first_attempt.unwrap_or(now);
                if now.saturating_duration_since(first) >= self.config.give_up_after {
                    return drop_batch(self, DropReason::GaveUp);
                }
                let backoff = equal_jitter_from(
                    self.config.retry_base,
                    self.config.retry_max,
                    batch.attempts.saturating_sub(1),
                    jitter,
                );
                let wait = match outcome {
                    Outcome::Throttled(Some(asked)) => asked.min(self.config.retry_max),
                    _ => backoff,
                };
                batch.due = now + wait;
                None
            }
        }
    }

    /// Items waiting, the batch's included.
    pub fn pending(&self) -> usize {
        self.pending.len() + self.current.as_ref().map_or(0, |b| b.items.len())
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Empties the target (its webhook was deleted); returns what was dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.pending();
        self.pending.clear();
        self.pending_bytes = 0;
        self.current = None;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TargetConfig {
        TargetConfig {
            batch_items: 3,
            max_pending: 5,
            max_pending_bytes: 1_000,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(8),
            give_up_after: Duration::from_secs(60),
            breaker: BreakerConfig {
                failure_threshold: 3,
                reset_after: Duration::from_secs(30),
            },
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("d{n}")
        }
    }

    fn send(p: Poll) -> (String, u32) {
        match p {
            Poll::Send { id, attempt } => (id, attempt),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn batches_what_waited_and_keeps_one_request_out_at_a_time() {
        let mut t = Target::new(config());
        let now = Instant::now();
        let mut id = ids();
        assert_eq!(t.poll(now, &mut id), Poll::Idle);
        for i in 0..4 {
            assert_eq!(t.offer(i, 10), None);
        }
        assert_eq!(send(t.poll(now, &mut id)), ("d1".into(), 1));
        assert_eq!(t.batch().unwrap().items, vec![0, 1, 2]);
        t.offer(4, 10);
        assert_eq!(t.poll(now, &mut id), Poll::Busy);
        assert_eq!(t.finished(Outcome::Delivered, now, 0.5), None);
        assert_eq!(send(t.poll(now, &mut id)), ("d2".into(), 1));
        assert_eq!(t.batch().unwrap().items, vec![3, 4]);
        t.finished(Outcome::Delivered, now, 0.5);
        assert_eq!(t.poll(now, &mut id), Poll::Idle);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_failed_batch_is_retried_whole_under_its_id_after_a_growing_backoff() {
        let mut t = Target::new(config());
        let start = Instant::now();
        let mut id = ids();
        t.offer("a", 1);
        t.offer("b", 1);
        send(t.poll(start, &mut id));
        t.offer("c", 1);
        // jitter 1.0: the full backoff, 1 s then 2 s.
        t.finished(Outcome::Failed, start, 1.0);
        assert_eq!(
            t.poll(start, &mut id),
            Poll::WaitUntil(start + Duration::from_secs(1))
        );
        let later = start + Duration::from_secs(1);
        assert_eq!(send(t.poll(later, &mut id)), ("d1".into(), 2));
        assert_eq!(t.batch().unwrap().items, vec!["a", "b"]);
        t.finished(Outcome::Failed, later, 1.0);
        assert_eq!(
            t.poll(later, &mut id),
            Poll::WaitUntil(later + Duration::from_secs(2))
        );
        assert_eq!(t.pending(), 3);
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_after_its_reset() {
        let mut t = Target::new(config());
        let mut now = Instant::now();
        let mut id = ids();
        t.offer(1, 1);
        for _ in 0..3 {
            send(t.poll(now, &mut id));
            t.finished(Outcome::Failed, now, 0.0);
            now += Duration::from_secs(8);
        }
        assert_eq!(t.breaker_state(), BreakerState::Open);
        let opened = now - Duration::from_secs(8);
        assert_eq!(
            t.poll(now, &mut id),
            Poll::WaitUntil(opened + Duration::from_secs(30))
        );
        let probe = opened + Duration::from_secs(30);
        assert_eq!(send(t.poll(probe, &mut id)).1, 4);
        t.finished(Outcome::Delivered, probe, 0.0);
        assert_eq!(t.breaker_state(), BreakerState::Closed);
    }

    #[test]
    fn throttling_waits_as_asked_and_is_no_breaker_failure() {
        let mut t = Target::new(config());
        let now = Instant::now();
        let mut id = ids();
        t.offer(1, 1);
        for _ in 0..5 {
            send(t.poll(now + Duration::from_secs(10), &mut id));
            t.finished(Outcome::Throttled(Some(Duration::from_secs(3))), now, 0.0);
        }
        assert_eq!(t.breaker_state(), BreakerState::Closed);
        assert_eq!(
            t.poll(now, &mut id),
            Poll::WaitUntil(now + Duration::from_secs(3))
        );
    }

    #[test]
    fn refused_and_long_failing_batches_are_dropped_and_reported() {
        let mut t = Target::new(config());
        let now = Instant::now();
        let mut id = ids();
        t.offer(1, 1);
        t.offer(2, 1);
        send(t.poll(now, &mut id));
        assert_eq!(
            t.finished(Outcome::Refused, now, 0.0),
            Some(Dropped {
                reason: DropReason::Refused,
                items: 2
            })
        );
        assert_eq!(t.breaker_state(), BreakerState::Closed);
        t.offer(3, 1);
        send(t.poll(now, &mut id));
        t.finished(Outcome::Throttled(None), now, 0.0);
        let late = now + Duration::from_secs(60);
        send(t.poll(late, &mut id));
        assert_eq!(
            t.finished(Outcome::Failed, late, 0.0),
            Some(Dropped {
                reason: DropReason::GaveUp,
                items: 1
            })
        );
        assert_eq!(t.poll(late, &mut id), Poll::Idle);
    }

    #[test]
    fn the_oldest_waiting_items_make_room_by_count_and_by_bytes() {
        let mut t = Target::new(config());
        let now = Instant::now();
        let mut id = ids();
        t.offer(0, 1);
        send(t.poll(now, &mut id)); // 0 is in flight, not waiting
        for i in 1..=5 {
            assert_eq!(t.offer(i, 1), None);
        }
        assert_eq!(
            t.offer(6, 1),
            Some(Dropped {
                reason: DropReason::Overflow,
                items: 1
            })
        );
        assert_eq!(t.pending(), 6);
        // One item larger than the byte bound empties the rest but stays.
        assert_eq!(t.offer(7, 5_000).map(|d| d.items), Some(5));
        assert_eq!(t.pending(), 2);
        t.finished(Outcome::Delivered, now, 0.0);
        send(t.poll(now, &mut id));
        assert_eq!(t.batch().unwrap().items, vec![7]);
    }

    #[test]
    fn a_late_outcome_without_a_request_out_changes_nothing() {
        let mut t: Target<u8> = Target::new(config());
        let now = Instant::now();
        assert_eq!(t.finished(Outcome::Failed, now, 0.0), None);
        t.offer(1, 1);
        assert_eq!(t.finished(Outcome::Refused, now, 0.0), None);
        assert_eq!(t.pending(), 1);
        assert_eq!(t.clear(), 1);
        assert_eq!(t.poll(now, || unreachable!()), Poll::Idle);
    }
}
