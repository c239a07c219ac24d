//! Waiting on a condition with a deadline, never a bare sleep: what the
//! integration tests, the benchmark and [`crate::GatewayClient`] poll with.

use std::future::Future;
use std::time::{Duration, Instant};

/// Generous deadline for conditions that normally hold in milliseconds:
/// CI machines have 2 cores and run tests in parallel.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds or `deadline` passes. The poll interval is
/// short and the deadline generous: the test waits for an event, not a time.
pub async fn eventually<F, Fut>(deadline: Duration, cond: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_every(deadline, Duration::from_millis(20), cond).await
}

/// [`eventually`], polling every `interval` (for conditions that are
/// expensive to check, such as a query through PHP).
pub async fn eventually_every<F, Fut>(deadline: Duration, interval: Duration, cond: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        actix_rt::time::sleep(interval).await;
    }
}
