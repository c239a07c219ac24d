//! The bounds on everything outside input can grow (issue 17), as plain
//! settings and pure rules: which outbox batches to shed when it is full
//! ([`plan_shed`]: QR first, incoming messages next, statuses last) and how
//! a dead letter's text is cut ([`dead_letter_text`]). The message logs and
//! outboxes apply them; `wagate::config` fills them from the settings.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::laravel::payload::Endpoint;

/// Bounds of the message log (memory mode keeps everything in RAM).
#[derive(Debug, Clone)]
pub struct LogBounds {
    /// A finished message's record is forgotten this long after its last
    /// change (`MESSAGE_RECORD_TTL`).
    pub record_ttl: Duration,
    /// Records kept at most; the oldest finished go first (`MESSAGE_LOG_MAX`).
    pub max_records: usize,
    /// Dead letters kept at most, oldest dropped (`DEAD_LETTER_MAX`).
    pub dead_max: usize,
    /// Dead letters older than this are dropped (`DEAD_LETTER_TTL`).
    pub dead_ttl: Duration,
    /// Characters of a dead letter's text kept (`DEAD_LETTER_TEXT_MAX`).
    pub dead_text_max: usize,
}

impl Default for LogBounds {
    fn default() -> Self {
        Self {
            record_ttl: Duration::from_secs(7 * 24 * 3600),
            max_records: 200_000,
            dead_max: 10_000,
            dead_ttl: Duration::from_secs(7 * 24 * 3600),
            dead_text_max: 200,
        }
    }
}

/// Bounds of the Laravel outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxBounds {
    /// `OUTBOX_MAX_BATCHES`.
    pub max_batches: usize,
    /// Bytes of batch bodies (`OUTBOX_MAX_BYTES`).
    pub max_bytes: usize,
}

impl Default for OutboxBounds {
    fn default() -> Self {
        Self {
            max_batches: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

/// Shedding rank: lower goes first. A held QR is stale within a minute
/// anyway; incoming messages are worth more; a status (connected, logged
/// out) is what Laravel most needs to be right, so it goes last.
pub fn shed_rank(endpoint: Endpoint) -> u8 {
    match endpoint {
        Endpoint::QrBatch | Endpoint::LegacyQr => 0,
        Endpoint::MessagesBatch => 1,
        Endpoint::StatusBatch | Endpoint::LegacyStatus => 2,
    }
}

/// Which entries (indices into `held`, oldest first, as `(endpoint,
/// bytes)`) to drop so the rest fits `bounds`: the oldest of the lowest
/// rank first. Returns them in index order.
pub fn plan_shed(held: &[(Endpoint, usize)], bounds: OutboxBounds) -> Vec<usize> {
    let mut count = held.len();
    let mut bytes: usize = held.iter().map(|(_, b)| b).sum();
    if count <= bounds.max_batches && bytes <= bounds.max_bytes {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..held.len()).collect();
    // Stable: within a rank, oldest first.
    order.sort_by_key(|&i| shed_rank(held[i].0));
    let mut shed = Vec::new();
    for i in order {
        if count <= bounds.max_batches && bytes <= bounds.max_bytes {
            break;
        }
        count -= 1;
        bytes -= held[i].1;
        shed.push(i);
    }
    shed.sort_unstable();
    shed
}

/// The first `max` characters of `text`; when cut, followed by the length
/// and SHA-256 of the whole, so a dead letter can still be matched to its
/// message without keeping all of it.
pub fn dead_letter_text(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kept}… [cut: {} bytes, sha256 {hex}]", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const QR: Endpoint = Endpoint::QrBatch;
    const ST: Endpoint = Endpoint::StatusBatch;
    const MSG: Endpoint = Endpoint::MessagesBatch;

    #[test]
    fn nothing_is_shed_within_bounds() {
        let b = OutboxBounds {
            max_batches: 3,
            max_bytes: 30,
        };
        assert!(plan_shed(&[(QR, 10), (ST, 10), (MSG, 10)], b).is_empty());
    }

    #[test]
    fn qr_goes_first_then_messages_and_statuses_last() {
        let b = OutboxBounds {
            max_batches: 2,
            max_bytes: usize::MAX,
        };
        let held = [(ST, 1), (MSG, 1), (QR, 1), (ST, 1), (QR, 1)];
        assert_eq!(
            plan_shed(&held, b),
            vec![1, 2, 4],
            "both QRs, then the message batch"
        );
        let only_status = [(ST, 1), (ST, 1), (ST, 1)];
        assert_eq!(
            plan_shed(&only_status, b),
            vec![0],
            "oldest status when nothing else is left"
        );
    }

    #[test]
    fn bytes_bound_sheds_until_it_fits() {
        let b = OutboxBounds {
            max_batches: 100,
            max_bytes: 25,
        };
        let held = [(ST, 10), (MSG, 10), (MSG, 10), (QR, 5)];
        assert_eq!(
            plan_shed(&held, b),
            vec![1, 3],
            "QR (5) is not enough; one message batch too"
        );
    }

    #[test]
    fn long_texts_are_cut_with_a_hash() {
        assert_eq!(dead_letter_text("short", 10), "short");
        let long = "ñ".repeat(50);
        let cut = dead_letter_text(&long, 4);
        assert!(cut.starts_with("ññññ… [cut: 100 bytes, sha256 "), "{cut}");
        assert!(!cut.contains(&"ñ".repeat(5)));
    }
}
