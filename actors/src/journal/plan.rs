//! What a start does with the journal, pure: which held statuses are sent
//! again, which are moot, which stored sessions get their status re-sent,
//! which incoming messages are replayed and in what order; and which
//! updates are journaled at all, and when a batch's outcome releases its
//! records. The registry's restore and the batchers carry these out.

use std::collections::HashMap;

use crate::ids::SessionId;
use crate::journal::HeldInbound;
use crate::laravel::client::Delivery;
use crate::laravel::payload::{StatusItem, StatusWord};
use crate::store::{Desired, SessionRecord};

/// Whether a status update is journaled: the states in which no actor runs,
/// so nothing would publish them again after a restart (a deleted or
/// logged-out session is not even restored). Every other state is published
/// anew, with a higher `seq`, by the restored session itself.
pub fn holds(status: StatusWord) -> bool {
    matches!(
        status,
        StatusWord::Stopped | StatusWord::LoggedOut | StatusWord::Failed
    )
}

/// Whether a batch's outcome ends its items' journal records: Laravel took
/// it, the outbox holds it (and replays it itself), Laravel refused it for
/// good, or there is no Laravel to send to. Only a batch whose client died
/// under it stays journaled, for the next start.
pub fn releases(outcome: &Delivery) -> bool {
    match outcome {
        Delivery::Sent | Delivery::Held | Delivery::Rejected | Delivery::NotForwarded => true,
        Delivery::Lost => false,
    }
}

/// The status side of a start.
#[derive(Debug, Default, PartialEq)]
pub struct RecoveryPlan {
    /// Held statuses of sessions that are not stored any more (deleted,
    /// logged out, expired): sent again with their original `seq`, so a
    /// later update Laravel already has still wins. They stay journaled
    /// until delivered.
    pub replay: Vec<StatusItem>,
    /// Held statuses of stored sessions: moot, since the restore publishes
    /// those sessions' current state with a fresh `seq`. Removed.
    pub release: Vec<StatusItem>,
    /// Stored sessions that stay stopped: nothing would publish them, so
    /// their `stopped` is sent again with a fresh `seq`.
    pub resync: Vec<SessionId>,
}

impl RecoveryPlan {
    pub fn new(records: &[SessionRecord], held: Vec<StatusItem>) -> Self {
        let stored: HashMap<&SessionId, Desired> =
            records.iter().map(|r| (&r.id, r.desired)).collect();
        let mut plan = Self::default();
        for item in held {
            if stored.contains_key(&item.session_id) {
                plan.release.push(item);
            } else {
                plan.replay.push(item);
            }
        }
        // Oldest first, as they were published.
        plan.replay.sort_by_key(|i| i.seq);
        let mut resync: Vec<&SessionRecord> = records
            .iter()
            .filter(|r| r.desired == Desired::Stopped)
            .collect();
        resync.sort_by_key(|r| r.created_ms);
        plan.resync = resync.into_iter().map(|r| r.id.clone()).collect();
        plan
    }
}

/// Incoming messages to replay at start: those journaled by earlier
/// processes (this one's are still in its own buffer), in the order they
/// were written (boot ids are UUIDv7, so they sort by time).
pub fn inbound_replay(held: Vec<HeldInbound>, boot: &str) -> Vec<HeldInbound> {
    let mut replay: Vec<HeldInbound> = held.into_iter().filter(|h| h.boot != boot).collect();
    replay.sort_by(|a, b| (&a.boot, a.n).cmp(&(&b.boot, b.n)));
    replay
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    fn status(session: &str, status: StatusWord, seq: u64) -> StatusItem {
        StatusItem {
            session_id: id(session),
            status,
            priority: status.priority(),
            reason: None,
            timestamp: 1,
            seq,
        }
    }

    fn record(session: &str, desired: Desired, created_ms: u64) -> SessionRecord {
        SessionRecord {
            id: id(session),
            desired,
            created_ms,
            node: "n".into(),
        }
    }

    #[test]
    fn only_states_nothing_republishes_are_journaled() {
        for w in [
            StatusWord::Stopped,
            StatusWord::LoggedOut,
            StatusWord::Failed,
        ] {
            assert!(holds(w), "{w:?}");
        }
        for w in [
            StatusWord::Active,
            StatusWord::Inactive,
            StatusWord::Qr,
            StatusWord::Starting,
            StatusWord::Pairing,
        ] {
            assert!(!holds(w), "{w:?}");
        }
    }

    #[test]
    fn a_batch_releases_its_records_unless_it_was_lost() {
        assert!(releases(&Delivery::Sent));
        assert!(releases(&Delivery::Held));
        assert!(releases(&Delivery::Rejected));
        assert!(releases(&Delivery::NotForwarded));
        assert!(!releases(&Delivery::Lost));
    }

    #[test]
    fn statuses_of_gone_sessions_are_replayed_oldest_first_and_stored_ones_released() {
        let held = vec![
            status("gone2", StatusWord::LoggedOut, 30),
            status("kept", StatusWord::Stopped, 20),
            status("gone1", StatusWord::Stopped, 10),
            status("back", StatusWord::Stopped, 5),
        ];
        let records = [
            record("kept", Desired::Stopped, 2),
            record("back", Desired::Running, 1),
            record("idle", Desired::Stopped, 1),
        ];
        let plan = RecoveryPlan::new(&records, held);
        let seqs: Vec<u64> = plan.replay.iter().map(|i| i.seq).collect();
        assert_eq!(seqs, [10, 30], "gone sessions, by seq");
        let mut released: Vec<&str> = plan.release.iter().map(|i| i.session_id.as_str()).collect();
        released.sort();
        assert_eq!(released, ["back", "kept"]);
        let resync: Vec<&str> = plan.resync.iter().map(|i| i.as_str()).collect();
        assert_eq!(resync, ["idle", "kept"], "stopped ones, oldest first");
    }

    #[test]
    fn nothing_held_and_nothing_stopped_is_an_empty_plan() {
        let plan = RecoveryPlan::new(&[record("a", Desired::Running, 1)], Vec::new());
        assert_eq!(plan, RecoveryPlan::default());
    }

    fn held(boot: &str, n: u64) -> HeldInbound {
        HeldInbound {
            key: format!("s/{boot}{n}"),
            boot: boot.into(),
            n,
            item: serde_json::json!({"n": n}),
        }
    }

    #[test]
    fn inbound_replay_skips_this_process_and_keeps_write_order() {
        let all = vec![
            held("02", 1),
            held("me", 0),
            held("01", 7),
            held("02", 0),
            held("01", 2),
        ];
        let keys: Vec<String> = inbound_replay(all, "me")
            .into_iter()
            .map(|h| h.key)
            .collect();
        assert_eq!(keys, ["s/012", "s/017", "s/020", "s/021"]);
    }
}
