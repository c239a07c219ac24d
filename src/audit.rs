//! The audit trail: `tracing` events with target `audit` for refused keys,
//! deletes, logouts and the keys in force at start (fingerprints, never the
//! keys). Route them with `RUST_LOG=audit=info,...` or a JSON log filter.
//! Auth failures come from outside, so their lines are rate-limited by
//! [`AuditLimiter`]: a flood of bad keys cannot flood the log.

use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Lines allowed per window; the rest are counted and summarised.
const LINES_PER_WINDOW: u32 = 10;
/// Window length.
const WINDOW_MS: u64 = 10_000;

/// What to do with one more event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log it; `suppressed` lines were dropped in the previous window.
    Log { suppressed: u64 },
    /// Count it, do not log it.
    Suppress,
}

/// Fixed-window limiter; pure (the caller passes `now_ms`).
#[derive(Debug, Default)]
pub struct Window {
    started_ms: u64,
    logged: u32,
    suppressed: u64,
}

impl Window {
    pub fn admit(&mut self, now_ms: u64) -> Admit {
        let mut carried = 0;
        if now_ms.saturating_sub(self.started_ms) >= WINDOW_MS {
            carried = std::mem::take(&mut self.suppressed);
            self.started_ms = now_ms;
            self.logged = 0;
        }
        if self.logged < LINES_PER_WINDOW {
            self.logged += 1;
            Admit::Log {
                suppressed: carried,
            }
        } else {
            self.suppressed += 1;
            Admit::Suppress
        }
    }
}

/// Shared by every HTTP worker.
#[derive(Debug, Default)]
pub struct AuditLimiter {
    window: Mutex<Window>,
}

impl AuditLimiter {
    /// Logs one refused request, unless this window already had its lines.
    pub fn auth_failure(&self, now_ms: u64, peer: &str, method: &str, path: &str, reason: &str) {
        let admit = self
            .window
            .lock()
            // A panic while holding this lock cannot corrupt a counter pair.
            .unwrap_or_else(|e| e.into_inner())
            .admit(now_ms);
        if let Admit::Log { suppressed } = admit {
            tracing::warn!(
                target: "audit",
                event = "auth_failure",
                peer,
                method,
                path,
                reason,
                suppressed_before = suppressed,
                "request refused: {reason}"
            );
        }
    }
}

/// A short, non-reversible name for a key, for logs: the first 8 hex
/// digits of its SHA-256.
pub fn fingerprint(key: &str) -> String {
    hex_prefix(&Sha256::digest(key.as_bytes()))
}

fn hex_prefix(digest: &[u8]) -> String {
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// An operator's action on a session (delete, logout, stop).
pub fn session_action(action: &str, session: &str, peer: &str) {
    tracing::info!(target: "audit", event = action, session, peer, "session {action}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_window_and_summarised_after() {
        let mut w = Window::default();
        let t0 = 1_000_000;
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(w.admit(t0), Admit::Log { suppressed: 0 });
        }
        for i in 0..500 {
            assert_eq!(w.admit(t0 + i), Admit::Suppress);
        }
        assert_eq!(
            w.admit(t0 + WINDOW_MS),
            Admit::Log { suppressed: 500 },
            "the next window says how many were dropped"
        );
        assert_eq!(w.admit(t0 + WINDOW_MS + 1), Admit::Log { suppressed: 0 });
    }

    #[test]
    fn fingerprints_are_short_stable_and_not_the_key() {
        let f = fingerprint("a-key-long-enough-0123");
        assert_eq!(f.len(), 8);
        assert_eq!(f, fingerprint("a-key-long-enough-0123"));
        assert_ne!(f, fingerprint("a-key-long-enough-0124"));
    }
}
