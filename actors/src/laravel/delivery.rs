//! Is the gateway delivering to Laravel? Remembers the last success, the
//! last failure (kind, message, when) and what waits in the outbox, and
//! decides `DEGRADED`: nothing delivered for longer than `degraded_after`
//! while held batches have waited that long. Pure (times are unix ms passed
//! in), owned by `LaravelClient`, published through [`DeliveryView`] for
//! `/health` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use super::attempt::Failure;

/// The last failed attempt, as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// `tls`, `dns`, `refused`, `timeout`, `http_401`, … (see `FailureKind`).
    pub kind: String,
    pub message: String,
    /// Unix ms.
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryHealth {
    /// Nothing delivered for this long while batches wait = degraded.
    degraded_after: Duration,
    /// When the client started: "nothing delivered since" before any success.
    started_ms: u64,
    last_success_ms: Option<u64>,
    last_error: Option<LastError>,
    /// Batches in the outbox (and the in-memory spill).
    held: usize,
    /// `created_ms` of the oldest held batch, when known.
    oldest_held_ms: Option<u64>,
}

/// The verdict `/health` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// With a sentence saying why.
    Degraded(String),
}

impl DeliveryHealth {
    pub fn new(degraded_after: Duration, now_ms: u64) -> Self {
        Self {
            degraded_after,
            started_ms: now_ms,
            last_success_ms: None,
            last_error: None,
            held: 0,
            oldest_held_ms: None,
        }
    }

    /// Laravel took a batch (2xx).
    pub fn record_success(&mut self, now_ms: u64) {
        self.last_success_ms = Some(now_ms);
    }

    pub fn record_failure(&mut self, failure: &Failure, now_ms: u64) {
        self.last_error = Some(LastError {
            kind: failure.kind.label().into_owned(),
            message: failure.message.clone(),
            at_ms: now_ms,
        });
    }

    /// What the outbox holds; `oldest_ms` is the oldest batch's `created_ms`
    /// if known (it is forgotten when nothing is held).
    pub fn set_held(&mut self, held: usize, oldest_ms: Option<u64>) {
        self.held = held;
        self.oldest_held_ms = if held == 0 {
            None
        } else {
            oldest_ms.or(self.oldest_held_ms)
        };
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn last_success_ms(&self) -> Option<u64> {
        self.last_success_ms
    }

    pub fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }

    /// How long the oldest held batch has waited.
    pub fn oldest_held_age(&self, now_ms: u64) -> Option<Duration> {
        (self.held > 0)
            .then_some(self.oldest_held_ms)
            .flatten()
            .map(|t| Duration::from_millis(now_ms.saturating_sub(t)))
    }

    /// `DEGRADED` when batches wait, the oldest has waited longer than
    /// `degraded_after`, and nothing was delivered for that long either. A
    /// slow drain that still delivers is not degraded; a fresh hold after
    /// an idle hour is not either, until it too has waited.
    pub fn verdict(&self, now_ms: u64) -> Verdict {
        let Some(age) = self.oldest_held_age(now_ms) else {
            return Verdict::Ok;
        };
        let since = self.last_success_ms.unwrap_or(self.started_ms);
        let silent = Duration::from_millis(now_ms.saturating_sub(since));
        if age <= self.degraded_after || silent <= self.degraded_after {
            return Verdict::Ok;
        }
        let delivered = match self.last_success_ms {
            Some(_) => format!("nothing delivered to Laravel for {} s", silent.as_secs()),
            None => format!(
                "nothing delivered to Laravel since start ({} s)",
                silent.as_secs()
            ),
        };
        let cause = match &self.last_error {
            Some(e) => format!("; last error ({}): {}", e.kind, e.message),
            None => String::new(),
        };
        Verdict::Degraded(format!(
            "{delivered} while {} batches wait (oldest {} s){cause}",
            self.held,
            age.as_secs()
        ))
    }
}

/// A shared copy of [`DeliveryHealth`] for readers on other threads
/// (`/health`); the client publishes after every change.
#[derive(Debug, Clone)]
pub struct DeliveryView(Arc<RwLock<DeliveryHealth>>);

impl DeliveryView {
    pub fn new(initial: DeliveryHealth) -> Self {
        Self(Arc::new(RwLock::new(initial)))
    }

    pub fn publish(&self, health: &DeliveryHealth) {
        self.0.write().clone_from(health);
    }

    pub fn read(&self) -> DeliveryHealth {
        self.0.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laravel::attempt::FailureKind;

    const AFTER: Duration = Duration::from_secs(120);
    const T0: u64 = 1_000_000;

    fn refused() -> Failure {
        Failure {
            kind: FailureKind::Refused,
            message: "connection refused".into(),
        }
    }

    #[test]
    fn degraded_only_when_held_batches_waited_and_nothing_was_delivered() {
        let mut h = DeliveryHealth::new(AFTER, T0);
        assert_eq!(h.verdict(T0 + 1_000_000), Verdict::Ok, "nothing held");
        h.record_failure(&refused(), T0 + 1_000);
        h.set_held(3, Some(T0 + 1_000));
        assert_eq!(h.verdict(T0 + 120_000), Verdict::Ok, "not long enough yet");
        let Verdict::Degraded(why) = h.verdict(T0 + 122_000) else {
            panic!("held for 121 s with no success since start");
        };
        assert!(why.contains("since start"), "{why}");
        assert!(why.contains("3 batches"), "{why}");
        assert!(why.contains("refused"), "{why}");
        assert_eq!(
            h.oldest_held_age(T0 + 122_000),
            Some(Duration::from_secs(121))
        );
    }

    #[test]
    fn a_recent_success_or_a_fresh_hold_is_not_degraded() {
        let mut h = DeliveryHealth::new(AFTER, T0);
        h.set_held(10, Some(T0));
        h.record_success(T0 + 200_000);
        assert_eq!(h.verdict(T0 + 210_000), Verdict::Ok, "still draining");
        // Idle for an hour, then a batch is held: only its own wait counts.
        let mut h = DeliveryHealth::new(AFTER, T0);
        h.record_success(T0);
        h.set_held(1, Some(T0 + 3_600_000));
        assert_eq!(h.verdict(T0 + 3_601_000), Verdict::Ok);
        assert!(matches!(h.verdict(T0 + 3_721_000), Verdict::Degraded(_)));
    }

    #[test]
    fn emptying_the_outbox_clears_the_age() {
        let mut h = DeliveryHealth::new(AFTER, T0);
        h.set_held(2, Some(T0));
        h.set_held(1, None);
        assert_eq!(
            h.oldest_held_age(T0 + 5_000),
            Some(Duration::from_secs(5)),
            "kept until known"
        );
        h.set_held(0, None);
        assert_eq!(h.oldest_held_age(T0 + 5_000), None);
        h.set_held(1, None);
        assert_eq!(
            h.oldest_held_age(T0 + 5_000),
            None,
            "forgotten when emptied"
        );
    }

    #[test]
    fn the_view_mirrors_the_last_publish() {
        let mut h = DeliveryHealth::new(AFTER, T0);
        let view = DeliveryView::new(h.clone());
        h.record_failure(&refused(), T0 + 5);
        view.publish(&h);
        assert_eq!(view.read().last_error().unwrap().kind, "refused");
        assert_eq!(view.read().last_error().unwrap().at_ms, T0 + 5);
    }
}
