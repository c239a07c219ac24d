//! The circuit breaker in front of Laravel: `CLOSED → OPEN → HALF_OPEN`.
//! Pure logic driven by `now` arguments (unit-tested without sleeping), owned
//! by `LaravelClient`, which publishes it through [`BreakerView`] for
//! `/health` and `/metrics` without a mailbox round trip.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The seed's spelling, shown in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        }
    }

    fn code(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (`CIRCUIT_BREAKER_THRESHOLD`).
    pub failure_threshold: u32,
    /// Time open before one probe is let through (`CIRCUIT_BREAKER_RESET`).
    pub reset_after: Duration,
}

/// May a request go to Laravel now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The single trial request of the half-open state; its outcome decides.
    Probe,
    /// Not before `retry_at`.
    Rejected {
        retry_at: Instant,
    },
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Consecutive failures while closed (reset by a success).
    failures: u32,
    /// Successful requests since start (the seed's `successCount`).
    successes: u64,
    /// When the breaker last opened; the next probe is due `reset_after` later.
    opened_at: Option<Instant>,
    /// When the outstanding half-open probe was admitted.
    probe_since: Option<Instant>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            failures: 0,
            successes: 0,
            opened_at: None,
            probe_since: None,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open => {
                let due = self.probe_due();
                if now >= due {
                    self.state = BreakerState::HalfOpen;
                    self.probe_since = Some(now);
                    Admission::Probe
                } else {
                    Admission::Rejected { retry_at: due }
                }
            }
            BreakerState::HalfOpen => {
                // A probe whose outcome never came back must not wedge the
                // breaker: after another reset interval, allow a new one.
                let since = self.probe_since.unwrap_or(now);
                if now >= since + self.config.reset_after {
                    self.probe_since = Some(now);
                    Admission::Probe
                } else {
                    Admission::Rejected {
                        retry_at: since + self.config.reset_after,
                    }
                }
            }
        }
    }

    pub fn record_success(&mut self) {
        self.successes += 1;
        match self.state {
            BreakerState::Closed => self.failures = 0,
            BreakerState::HalfOpen => {
                self.state = BreakerState::Closed;
                self.failures = 0;
                self.opened_at = None;
                self.probe_since = None;
            }
            // A late answer to a request admitted before the breaker opened
            // says little about now; the probe decides.
            BreakerState::Open => {}
        }
    }

    pub fn record_failure(&mut self, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.failures += 1;
                if self.failures >= self.config.failure_threshold {
                    self.open(now);
                }
            }
            BreakerState::HalfOpen => {
                self.failures += 1;
                self.open(now);
            }
            // Late failures of requests admitted while closed must not push
            // the next probe further out.
            BreakerState::Open => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.probe_since = None;
    }

    fn probe_due(&self) -> Instant {
        // `opened_at` is always set while open.
        self.opened_at
            .map(|t| t + self.config.reset_after)
            .unwrap_or_else(Instant::now)
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn failure_count(&self) -> u32 {
        self.failures
    }

    pub fn success_count(&self) -> u64 {
        self.successes
    }
}

/// A lock-free copy of the breaker for readers on other threads.
#[derive(Clone, Default)]
pub struct BreakerView(Arc<ViewInner>);

#[derive(Default)]
struct ViewInner {
    state: AtomicU8,
    failures: AtomicU64,
    successes: AtomicU64,
}

/// What `/health` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub failure_count: u64,
    pub success_count: u64,
}

impl BreakerView {
    pub fn publish(&self, breaker: &CircuitBreaker) {
        self.0
            .state
            .store(breaker.state().code(), Ordering::Relaxed);
        self.0
            .failures
            .store(breaker.failure_count() as u64, Ordering::Relaxed);
        self.0
            .successes
            .store(breaker.success_count(), Ordering::Relaxed);
    }

    pub fn read(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            state: BreakerState::from_code(self.0.state.load(Ordering::Relaxed)),
            failure_count: self.0.failures.load(Ordering::Relaxed),
            success_count: self.0.successes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (CircuitBreaker, Instant) {
        let cfg = BreakerConfig {
            failure_threshold: 3,
            reset_after: Duration::from_secs(120),
        };
        (CircuitBreaker::new(cfg), Instant::now())
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let (mut b, t0) = breaker();
        b.record_failure(t0);
        b.record_failure(t0);
        b.record_success();
        assert_eq!(b.failure_count(), 0, "a success resets the streak");
        for _ in 0..2 {
            b.record_failure(t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_failure(t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(1)),
            Admission::Rejected {
                retry_at: t0 + Duration::from_secs(120)
            }
        );
    }

    #[test]
    fn one_probe_per_reset_interval_then_closes_on_success() {
        let (mut b, t0) = breaker();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let due = t0 + Duration::from_secs(120);
        assert_eq!(b.admit(due), Admission::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(
            matches!(b.admit(due), Admission::Rejected { .. }),
            "only one probe at a time"
        );
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(due), Admission::Allowed);
    }

    #[test]
    fn failed_probe_reopens_for_a_full_interval() {
        let (mut b, t0) = breaker();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let probe_at = t0 + Duration::from_secs(120);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        b.record_failure(probe_at);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.admit(probe_at + Duration::from_secs(119)),
            Admission::Rejected {
                retry_at: probe_at + Duration::from_secs(120)
            }
        );
        assert_eq!(
            b.admit(probe_at + Duration::from_secs(120)),
            Admission::Probe
        );
    }

    #[test]
    fn late_results_while_open_do_not_move_the_probe() {
        let (mut b, t0) = breaker();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        b.record_failure(t0 + Duration::from_secs(100));
        b.record_success();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(t0 + Duration::from_secs(120)), Admission::Probe);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_an_interval() {
        let (mut b, t0) = breaker();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        let probe_at = t0 + Duration::from_secs(120);
        assert_eq!(b.admit(probe_at), Admission::Probe);
        assert_eq!(
            b.admit(probe_at + Duration::from_secs(120)),
            Admission::Probe
        );
    }

    #[test]
    fn view_mirrors_the_breaker() {
        let (mut b, t0) = breaker();
        let view = BreakerView::default();
        for _ in 0..3 {
            b.record_failure(t0);
        }
        view.publish(&b);
        let snap = view.read();
        assert_eq!(snap.state, BreakerState::Open);
        assert_eq!(snap.state.as_str(), "OPEN");
        assert_eq!(snap.failure_count, 3);
    }
}

#[cfg(test)]
#[path = "breaker_props.rs"]
mod props;
