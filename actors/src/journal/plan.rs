//! What a start does with the journal, pure: which held statuses are sent
//! again, which are moot, which stored sessions get their status re-sent,
//! which incoming messages are replayed and in what order, which of this
//! process's own records were orphaned and are sent again; and which
//! updates are journaled at all, and when a batch's outcome releases its
//! records. The registry's restore and the batchers carry these out.

use std::collections::{HashMap, HashSet};

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
/// good, or there is no Laravel to send to. A batch whose client died under
/// it, or that waits in memory because the outbox store refused it (the
/// chaos run lost incoming messages to a kill while they were there), stays
/// journaled: the next start replays it, and the `InboundBatcher`'s sweep
/// resends this process's incoming messages meanwhile.
pub fn releases(outcome: &Delivery) -> bool {
    match outcome {
        Delivery::Sent | Delivery::Held | Delivery::Rejected | Delivery::NotForwarded => true,
        Delivery::Lost | Delivery::Spilled => false,
    }
}

/// The status side of a start.
#[derive(Debug, Default, PartialEq)]
pub struct RecoveryPlan {
    /// Held statuses of sessions that are not stored any more (deleted,
    /// logged out, expired): sent again, [`reissued`] with a fresh `seq`
    /// (the session ended, whatever Laravel heard after the held status was
    /// written). They stay journaled until delivered.
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

/// A held status of a session that is no longer stored, as it is sent
/// again at start: its `seq` above both its own and any the session could
/// have published (a session's `seq` starts at `now_ms × 1000`). Without
/// it, an update the session published after the held status was written
/// (a connect racing its delete) and delivered before a kill would outrank
/// the replay at Laravel, which would keep a deleted session `active`.
pub fn reissued(item: StatusItem, now_ms: u64) -> StatusItem {
    let seq = item.seq.max(now_ms.saturating_mul(1000)) + 1;
    StatusItem {
        seq,
        timestamp: now_ms,
        ..item
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

/// The incoming messages this process journaled that are neither waiting
/// in the batcher nor in flight (`queued`) at two sweeps in a row: their
/// session dropped them after the journal write (it stopped, was deleted
/// or logged out with the message still on its way), or their batch went
/// out but the release failed (Redis away). They are sent again (Laravel
/// dedupes on the message id), in write order. Returns them and the
/// records seen unqueued at this sweep (the next sweep's `suspects`); one
/// sweep's grace lets a message still on its way to the batcher arrive.
pub fn inbound_orphans(
    held: Vec<HeldInbound>,
    boot: &str,
    queued: &HashSet<String>,
    suspects: &HashSet<String>,
) -> (Vec<HeldInbound>, HashSet<String>) {
    let (mut orphans, mut seen) = (Vec::new(), HashSet::new());
    for h in held {
        if h.boot != boot || queued.contains(&h.key) {
            continue;
        }
        if suspects.contains(&h.key) {
            orphans.push(h);
        } else {
            seen.insert(h.key);
        }
    }
    orphans.sort_by_key(|h| h.n);
    (orphans, seen)
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
        assert!(!releases(&Delivery::Spilled));
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

    #[test]
    fn an_own_record_unqueued_at_two_sweeps_is_an_orphan() {
        let queued: HashSet<String> = ["s/me1".to_owned()].into();
        let all = || vec![held("me", 2), held("me", 1), held("me", 0), held("01", 3)];
        // First sweep: nothing is resent; the unqueued own records are suspects.
        let (orphans, suspects) = inbound_orphans(all(), "me", &queued, &HashSet::new());
        assert!(orphans.is_empty());
        assert_eq!(suspects, ["s/me0".to_owned(), "s/me2".to_owned()].into());
        // Second sweep: still unqueued, so resent in write order; another
        // process's record is never this sweep's business.
        let (orphans, next) = inbound_orphans(all(), "me", &queued, &suspects);
        let keys: Vec<String> = orphans.into_iter().map(|h| h.key).collect();
        assert_eq!(keys, ["s/me0", "s/me2"]);
        assert!(next.is_empty());
        // A suspect that got queued meanwhile (it was on its way) is left.
        let queued: HashSet<String> = ["s/me0".to_owned(), "s/me1".to_owned()].into();
        let (orphans, _) = inbound_orphans(all(), "me", &queued, &suspects);
        assert_eq!(orphans.len(), 1);
    }

    #[test]
    fn a_reissued_status_outranks_anything_its_session_published() {
        let held = status("gone", StatusWord::Stopped, 5_000_000);
        // Published by the session after the held status, before a kill:
        // a few updates past the held one, far below `now_ms × 1000` at the
        // restart (a session created at 5,000 ms started at 5,000,000).
        let later = 5_000_007;
        let again = reissued(held.clone(), 6_000);
        assert!(again.seq > later && again.seq > held.seq, "{again:?}");
        assert_eq!(again.status, held.status);
        assert_eq!(again.session_id, held.session_id);
        // A clock behind the held seq still yields a higher one.
        assert!(reissued(held.clone(), 1).seq > held.seq);
    }
}
