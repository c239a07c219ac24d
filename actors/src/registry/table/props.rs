//! Property tests of the [`SessionTable`] against a model of the actors it
//! asks for: any sequence of creates, stops, restarts, deletes, exits
//! (current or stale), due restarts, restores and a final `stop_all`.
//! Invariants: a session never has two actors the registry answers for
//! (no session running twice); a stale exit report changes nothing; the
//! active count is exactly the sessions with an actor or a restart due and
//! never exceeds `max_active`; entries never exceed `max_stored`.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::registry::supervision::{Lifetimes, RestartPolicy};

const IDS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Stop(usize),
    Restart(usize),
    Delete(usize),
    /// The current actor of a session ends (0 requested, 1 terminal,
    /// 2 failure, 3 crash); `stale`: a report from the one before it.
    Exit(usize, u8, bool),
    RestartDue(usize),
    Restore(Vec<(usize, bool)>),
    RestoreTick,
    Advance(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let id = 0..IDS;
    prop::collection::vec(
        prop_oneof![
            3 => id.clone().prop_map(Op::Create),
            1 => id.clone().prop_map(Op::Stop),
            1 => id.clone().prop_map(Op::Restart),
            1 => id.clone().prop_map(Op::Delete),
            3 => (id.clone(), 0u8..4, prop::bool::weighted(0.2)).prop_map(|(i, k, s)| Op::Exit(i, k, s)),
            2 => id.clone().prop_map(Op::RestartDue),
            1 => prop::collection::vec((id, any::<bool>()), 0..4).prop_map(Op::Restore),
            1 => Just(Op::RestoreTick),
            1 => (0u64..5_000).prop_map(Op::Advance),
        ],
        0..80,
    )
}

fn sid(i: usize) -> SessionId {
    SessionId::parse(&format!("s{i}")).expect("a valid id")
}

/// The actors the registry would hold, as the effects describe them.
#[derive(Default)]
struct World {
    /// The actor the registry answers for, per session, and its generation.
    owned: HashMap<SessionId, u64>,
    /// Sessions whose restart timer is running (no actor meanwhile).
    restart_due: HashSet<SessionId>,
    tracked: HashSet<SessionId>,
}

impl World {
    fn apply(&mut self, effects: &[Effect]) -> Result<(), TestCaseError> {
        for e in effects {
            match e {
                Effect::Track { id, .. } => {
                    prop_assert!(self.tracked.insert(id.clone()), "{} tracked twice", id);
                }
                Effect::Untrack { id } => {
                    prop_assert!(self.tracked.remove(id), "{} untracked but not tracked", id);
                    prop_assert!(
                        !self.owned.contains_key(id),
                        "{} forgotten with its actor owned",
                        id
                    );
                    self.restart_due.remove(id);
                }
                Effect::Spawn { id, generation } => {
                    prop_assert!(self.tracked.contains(id), "spawned untracked {}", id);
                    let before = self.owned.insert(id.clone(), *generation);
                    prop_assert!(
                        before.is_none(),
                        "{} running twice (generations {:?} and {})",
                        id,
                        before,
                        generation
                    );
                    self.restart_due.remove(id);
                }
                Effect::Stop { id, .. } | Effect::Release { id } => {
                    prop_assert!(self.owned.remove(id).is_some(), "{:?} without an actor", e);
                }
                Effect::ScheduleRestart { id, .. } => {
                    prop_assert!(!self.owned.contains_key(id));
                    prop_assert!(
                        self.restart_due.insert(id.clone()),
                        "two restarts due for {}",
                        id
                    );
                }
                Effect::CancelRestart { id } => {
                    prop_assert!(
                        self.restart_due.remove(id),
                        "cancelled a restart never scheduled"
                    );
                }
                Effect::Shutdown { id } => {
                    prop_assert!(
                        self.owned.contains_key(id),
                        "shutdown of {} without an actor",
                        id
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn no_session_runs_twice_and_counts_stay_derived(ops in ops(), max_active in 1usize..4, max_stored in 1usize..5) {
        let limits = Limits {
            max_active,
            max_stored,
            lifetimes: Lifetimes { idle_ttl: Duration::from_secs(60), max_lifetime: None },
            restart: RestartPolicy {
                max_restarts: 2,
                window: Duration::from_secs(10),
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
            },
            retention: Duration::from_secs(600),
        };
        let mut t = SessionTable::new(limits, RestoreQueue::new(1000));
        let mut w = World::default();
        let t0 = Instant::now();
        let mut ms = 0u64;
        let now_ms = |ms: u64| 1_700_000_000_000 + ms;
        for op in ops {
            let effects = match op {
                Op::Create(i) => match t.check_create(&sid(i)) {
                    Ok(()) => t.create(&sid(i), now_ms(ms)),
                    Err(_) => Vec::new(),
                },
                Op::Stop(i) => match t.check_stop(&sid(i)) {
                    Ok(()) => t.stop(&sid(i)).expect("checked"),
                    Err(_) => Vec::new(),
                },
                Op::Restart(i) => match t.check_restart(&sid(i)) {
                    Ok(()) => t.restart(&sid(i), now_ms(ms)).expect("checked"),
                    Err(_) => Vec::new(),
                },
                Op::Delete(i) => t.delete(&sid(i)).unwrap_or_default(),
                Op::Exit(i, kind, stale) => {
                    let Some(generation) = w.owned.get(&sid(i)).copied() else { continue };
                    let exit = match kind {
                        0 => Exit::Requested,
                        1 => Exit::Terminal,
                        2 => Exit::Failure("dropped".into()),
                        _ => Exit::Crashed,
                    };
                    let state = (kind == 1).then_some(SessionState::LoggedOut);
                    let at = t0 + Duration::from_millis(ms);
                    if stale {
                        let fx = t.exited(&sid(i), generation.saturating_sub(1), &exit, state, at);
                        prop_assert!(fx.is_empty(), "a stale report acted: {:?}", fx);
                        fx
                    } else {
                        t.exited(&sid(i), generation, &exit, state, at)
                    }
                }
                Op::RestartDue(i) => t.restart_due(&sid(i), now_ms(ms)),
                Op::Restore(records) => {
                    let records = records
                        .into_iter()
                        .map(|(i, running)| SessionRecord {
                            id: sid(i),
                            desired: if running { Desired::Running } else { Desired::Stopped },
                            created_ms: i as u64,
                            node: "n".into(),
                        })
                        .collect::<Vec<_>>();
                    let mut unique: Vec<SessionRecord> = Vec::new();
                    for r in records {
                        if !unique.iter().any(|u| u.id == r.id) && (t.len() + unique.len() < max_stored) {
                            unique.push(r);
                        }
                    }
                    t.restore(unique, now_ms(ms))
                }
                Op::RestoreTick => t.restore_tick(now_ms(ms)),
                Op::Advance(d) => {
                    ms += d;
                    Vec::new()
                }
            };
            w.apply(&effects)?;
            let derived: HashSet<&SessionId> = w.owned.keys().chain(w.restart_due.iter()).collect();
            prop_assert_eq!(t.active(), derived.len(), "active count drifted from the actors");
            prop_assert!(t.active() <= max_active, "{} active over the limit {}", t.active(), max_active);
            prop_assert!(t.len() <= max_stored);
            prop_assert_eq!(t.len(), w.tracked.len());
        }
        // Shutdown: every owned actor is asked to stop, nothing starts after.
        let fx = t.stop_all();
        w.apply(&fx)?;
        prop_assert!(w.restart_due.is_empty(), "restarts left due after stop_all");
        for id in w.owned.keys() {
            prop_assert!(fx.contains(&Effect::Shutdown { id: id.clone() }), "{} not asked to stop", id);
        }
        prop_assert!(t.restore_tick(now_ms(ms)).is_empty(), "started something after stop_all");
    }
}
