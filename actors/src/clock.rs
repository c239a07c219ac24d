//! Wall-clock timestamps for payloads and people. Time-dependent logic
//! (breaker, buffers, state machine, sweeps) never reads a clock itself: it
//! takes `now: Instant` as an argument, so unit tests drive time by hand.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, for payload timestamps.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        // A clock before 1970 is a broken host; 0 is an honest "unknown".
        .unwrap_or(0)
}
