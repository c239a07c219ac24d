//! `SessionTable`: the registry's decisions as a plain struct. It holds one
//! entry per session (run state, actor generation, restart history), the
//! limits, the restore queue, and answers commands, exit reports and timer
//! ticks with [`Effect`]s; times come in as arguments. The
//! `SessionRegistry` actor owns one and only carries the effects out
//! (actors, timers, the `StatePublisher`, the store).
//!
//! One concept past ~500 lines: each command's rule sits next to the
//! others it must agree with (limits, restarts, sweep, restore); the
//! effects are in `effect.rs`, the tests in `tests.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::restore::RestoreQueue;
use super::retention::forgettable;
use super::supervision::{
    sweep_verdict, Lifetimes, RestartDecision, RestartPolicy, RestartTracker, SweepInput,
    SweepVerdict,
};
use super::RegistryError;
use crate::ids::SessionId;
use crate::session::index::SessionShared;
use crate::session::machine::{Exit, SessionState};
use crate::session::publisher::Audience;
use crate::session::StopCause;
use crate::store::{Desired, SessionRecord};

mod effect;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use self::effect::Effect;

/// Most retention candidates per sweep: each costs a store read.
const RETENTION_PER_SWEEP: usize = 1000;

/// The rules a table enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Live sessions allowed at once (`MAX_ACTIVE_SESSIONS`).
    pub max_active: usize,
    /// Sessions held in any state (`MAX_STORED_SESSIONS`).
    pub max_stored: usize,
    pub lifetimes: Lifetimes,
    pub restart: RestartPolicy,
    /// Ended, unlinked sessions are forgotten this long after they ended.
    pub retention: Duration,
}

/// Whether a session has an actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// No actor and none scheduled (stopped, failed, logged out, restoring).
    Idle,
    Running,
    /// Crashed or failed; a restart is scheduled.
    RestartPending,
}

struct Entry {
    run: Run,
    /// Bumped for each new actor; exit reports of older ones are ignored.
    generation: u64,
    restarts: RestartTracker,
    shared: Arc<SessionShared>,
    /// Unix ms when the current actor started (max lifetime).
    started_ms: u64,
    /// Unix ms when the session was first created (kept across restores).
    created_ms: u64,
}

impl Entry {
    /// Counts against `max_active_sessions`: running or about to run again.
    fn active(&self) -> bool {
        self.run != Run::Idle
    }
}

/// The sessions this node holds and what each is doing.
pub struct SessionTable {
    limits: Limits,
    entries: HashMap<SessionId, Entry>,
    /// Restored sessions waiting for their turn to start (bounded rate).
    restore: RestoreQueue,
    /// Set by `stop_all`: nothing new starts from the restore queue after it.
    stopping: bool,
}

impl SessionTable {
    pub fn new(limits: Limits, restore: RestoreQueue) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            restore,
            stopping: false,
        }
    }

    /// Sessions counting against `max_active_sessions`; derived, never kept.
    pub fn active(&self) -> usize {
        self.entries.values().filter(|e| e.active()).count()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &SessionId) -> bool {
        self.entries.contains_key(id)
    }

    /// The counters shared with the session's actors and the index.
    pub fn shared(&self, id: &SessionId) -> Option<Arc<SessionShared>> {
        self.entries.get(id).map(|e| Arc::clone(&e.shared))
    }

    /// Sessions with a running actor (their cache TTLs are renewed).
    pub fn running(&self) -> Vec<SessionId> {
        self.entries
            .iter()
            .filter(|(_, e)| e.run == Run::Running)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// No actor is left (graceful shutdown may finish).
    pub fn all_exited(&self) -> bool {
        self.entries.values().all(|e| e.run != Run::Running)
    }

    /// Restored sessions still waiting to start.
    pub fn restore_pending(&self) -> usize {
        self.restore.len()
    }

    /// The record to persist for `id` wanting `desired`, created now or earlier.
    pub fn record(
        &self,
        id: &SessionId,
        desired: Desired,
        now_ms: u64,
        node: &str,
    ) -> SessionRecord {
        SessionRecord {
            id: id.clone(),
            desired,
            created_ms: self.entries.get(id).map_or(now_ms, |e| e.created_ms),
            node: node.to_owned(),
        }
    }

    /// May `id` be created? Checked before its record is written.
    pub fn check_create(&self, id: &SessionId) -> Result<(), RegistryError> {
        if self.entries.contains_key(id) {
            return Err(RegistryError::Exists(id.clone()));
        }
        if self.active() >= self.limits.max_active {
            return Err(RegistryError::LimitReached(self.limits.max_active));
        }
        if self.entries.len() >= self.limits.max_stored {
            return Err(RegistryError::StoredLimitReached(self.limits.max_stored));
        }
        Ok(())
    }

    /// A new session (its record is durable): track it and start it.
    pub fn create(&mut self, id: &SessionId, now_ms: u64) -> Vec<Effect> {
        let mut out = vec![self.insert(id, now_ms, now_ms)];
        self.spawn(id, now_ms, &mut out);
        out
    }

    /// May `id` be stopped? Only a session with an actor, running or due.
    pub fn check_stop(&self, id: &SessionId) -> Result<(), RegistryError> {
        match self.entries.get(id) {
            None => Err(RegistryError::NotFound(id.clone())),
            Some(e) if !e.active() => Err(RegistryError::NotRunning(id.clone())),
            Some(_) => Ok(()),
        }
    }

    /// Stops `id`, keeping it (`stopped`; a restart revives it).
    pub fn stop(&mut self, id: &SessionId) -> Result<Vec<Effect>, RegistryError> {
        let was_running = match self.entries.get(id) {
            None => return Err(RegistryError::NotFound(id.clone())),
            Some(e) => e.run == Run::Running,
        };
        let mut out = self.halt(id, StopCause::Stopped);
        if !was_running {
            // Waiting for a restart: no actor to announce the stop, so we do.
            out.push(Effect::Publish {
                id: id.clone(),
                state: SessionState::Stopped,
                reason: StopCause::Stopped.reason().into(),
                audience: Audience::Laravel,
            });
        }
        Ok(out)
    }

    /// May `id` be (re)started? An idle one needs room under the limit.
    pub fn check_restart(&self, id: &SessionId) -> Result<(), RegistryError> {
        match self.entries.get(id) {
            None => Err(RegistryError::NotFound(id.clone())),
            Some(e) if !e.active() && self.active() >= self.limits.max_active => {
                Err(RegistryError::LimitReached(self.limits.max_active))
            }
            Some(_) => Ok(()),
        }
    }

    /// Replaces whatever runs for `id` with a fresh actor and a clean
    /// restart history (an operator's restart revives a `failed` session).
    pub fn restart(&mut self, id: &SessionId, now_ms: u64) -> Result<Vec<Effect>, RegistryError> {
        let Some(entry) = self.entries.get_mut(id) else {
            return Err(RegistryError::NotFound(id.clone()));
        };
        entry.restarts.reset();
        let mut out = self.halt(id, StopCause::Restart);
        out.push(Effect::ClearQr { id: id.clone() });
        out.push(Effect::Publish {
            id: id.clone(),
            state: SessionState::Starting,
            reason: StopCause::Restart.reason().into(),
            audience: Audience::Local,
        });
        self.spawn(id, now_ms, &mut out);
        Ok(out)
    }

    /// Deletes `id` (its record is already gone from the store).
    pub fn delete(&mut self, id: &SessionId) -> Result<Vec<Effect>, RegistryError> {
        if !self.entries.contains_key(id) {
            return Err(RegistryError::NotFound(id.clone()));
        }
        let mut out = self.halt(id, StopCause::Deleted);
        out.push(self.remove(id));
        Ok(out)
    }

    /// An actor ended. `state` is what its snapshot shows now; `now` feeds
    /// the restart-rate limit.
    pub fn exited(
        &mut self,
        id: &SessionId,
        generation: u64,
        exit: &Exit,
        state: Option<SessionState>,
        now: Instant,
    ) -> Vec<Effect> {
        let policy = self.limits.restart;
        let Some(entry) = self.entries.get_mut(id) else {
            return Vec::new();
        };
        if entry.generation != generation {
            return Vec::new(); // a replaced actor; its successor is in charge
        }
        entry.run = Run::Idle;
        let mut out = vec![Effect::Release { id: id.clone() }];
        let reason = match exit {
            Exit::Requested => return out,
            // Logged out stays gone after a gateway restart; other ends (QR
            // exhausted, banned) come back and show a QR again.
            Exit::Terminal => {
                if state == Some(SessionState::LoggedOut) {
                    out.push(Effect::DeleteRecord { id: id.clone() });
                }
                return out;
            }
            Exit::Failure(r) => r.clone(),
            Exit::Crashed => "the session actor crashed".to_owned(),
        };
        match entry.restarts.record(&policy, now) {
            RestartDecision::After(delay) => {
                entry.run = Run::RestartPending;
                out.push(Effect::ScheduleRestart {
                    id: id.clone(),
                    delay,
                });
                out.push(Effect::Publish {
                    id: id.clone(),
                    state: SessionState::Disconnected,
                    reason: format!("restarting in {} ms: {reason}", delay.as_millis()),
                    audience: Audience::Local,
                });
                out.push(Effect::CountRestarts {
                    id: id.clone(),
                    restarts: entry.restarts.count() as u32,
                });
            }
            RestartDecision::GiveUp => out.push(Effect::GiveUp {
                id: id.clone(),
                reason,
            }),
        }
        out
    }

    /// A scheduled restart is due.
    pub fn restart_due(&mut self, id: &SessionId, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if self
            .entries
            .get(id)
            .is_some_and(|e| e.run == Run::RestartPending)
        {
            self.spawn(id, now_ms, &mut out);
        }
        out
    }

    /// The stored sessions, read at start: track them all, queue the ones
    /// that should run for a paced start (oldest first). Returns the effects
    /// and how many records were found.
    pub fn restore(&mut self, mut records: Vec<SessionRecord>, now_ms: u64) -> Vec<Effect> {
        records.sort_by_key(|r| r.created_ms);
        let mut out = Vec::new();
        for r in records {
            if self.entries.contains_key(&r.id) {
                continue; // created through the API while we were loading
            }
            out.push(self.insert(&r.id, r.created_ms, now_ms));
            let (state, reason) = match r.desired {
                Desired::Running => {
                    self.restore.push(r.id.clone());
                    (SessionState::Starting, "restoring")
                }
                Desired::Stopped => (SessionState::Stopped, "stopped"),
            };
            out.push(Effect::Publish {
                id: r.id,
                state,
                reason: reason.into(),
                audience: Audience::Local,
            });
        }
        out
    }

    /// Starts the next group of restored sessions (timer); over the limit
    /// they stay `stopped`.
    pub fn restore_tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.stopping {
            return out;
        }
        for id in self.restore.next_group() {
            if self.entries.get(&id).is_none_or(Entry::active) {
                continue; // deleted or started meanwhile
            }
            if self.active() >= self.limits.max_active {
                out.push(Effect::Publish {
                    id,
                    state: SessionState::Stopped,
                    reason: "max_active_sessions reached at restore".into(),
                    audience: Audience::Local,
                });
                continue;
            }
            self.spawn(&id, now_ms, &mut out);
        }
        out
    }

    /// Idle / lifetime sweep over running sessions: never-linked idle ones
    /// are stopped and forgotten, over-age ones reconnect with keys kept.
    /// Returns how many were swept, and the effects.
    pub fn sweep(&mut self, now_ms: u64) -> (usize, Vec<Effect>) {
        let verdicts: Vec<(SessionId, SweepVerdict)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.run == Run::Running)
            .map(|(id, e)| {
                let input = SweepInput {
                    now_ms,
                    started_ms: e.started_ms,
                    last_activity_ms: e.shared.last_activity_ms(),
                    linked: e.shared.is_linked(),
                };
                (id.clone(), sweep_verdict(&self.limits.lifetimes, input))
            })
            .filter(|(_, v)| *v != SweepVerdict::Keep)
            .collect();
        let mut out = Vec::new();
        for (id, verdict) in &verdicts {
            if *verdict == SweepVerdict::Expire {
                out.extend(self.halt(id, StopCause::IdleTtl));
                out.push(self.remove(id));
                out.push(Effect::DeleteRecord { id: id.clone() });
            } else {
                out.extend(self.halt(id, StopCause::MaxLifetime));
                out.push(Effect::Publish {
                    id: id.clone(),
                    state: SessionState::Starting,
                    reason: StopCause::MaxLifetime.reason().into(),
                    audience: Audience::Local,
                });
                self.spawn(id, now_ms, &mut out);
            }
        }
        (verdicts.len(), out)
    }

    /// Ended sessions past `SESSION_RETENTION`, as `(id, updated_ms)`;
    /// `view` gives a session's snapshot state and last change. Whether
    /// each holds credentials is for the caller to check before
    /// [`forget`](Self::forget).
    pub fn retention_candidates(
        &self,
        now_ms: u64,
        view: impl Fn(&SessionId) -> Option<(SessionState, u64)>,
    ) -> Vec<(SessionId, u64)> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.active())
            .filter_map(|(id, _)| {
                let (state, updated_ms) = view(id)?;
                forgettable(state, false, updated_ms, now_ms, self.limits.retention)
                    .then(|| (id.clone(), updated_ms))
            })
            .take(RETENTION_PER_SWEEP)
            .collect()
    }

    /// Still the ended session picked at `updated_ms` (nothing changed it)?
    pub fn still_ended(&self, id: &SessionId, updated_ms: Option<u64>, picked_ms: u64) -> bool {
        self.entries.get(id).is_some_and(|e| !e.active()) && updated_ms == Some(picked_ms)
    }

    /// Forgets an ended session (its record is already gone from the store).
    pub fn forget(&mut self, id: &SessionId) -> Vec<Effect> {
        if !self.entries.contains_key(id) {
            return Vec::new();
        }
        vec![self.remove(id)]
    }

    /// Graceful shutdown: nothing starts any more; every actor is asked to
    /// stop and awaited (see [`all_exited`](Self::all_exited)).
    pub fn stop_all(&mut self) -> Vec<Effect> {
        self.stopping = true;
        self.restore.clear();
        let mut out = Vec::new();
        for (id, e) in &mut self.entries {
            match e.run {
                Run::RestartPending => {
                    e.run = Run::Idle;
                    out.push(Effect::CancelRestart { id: id.clone() });
                }
                // Keep the generation: we wait for these exit reports.
                Run::Running => out.push(Effect::Shutdown { id: id.clone() }),
                Run::Idle => {}
            }
        }
        out
    }

    fn insert(&mut self, id: &SessionId, created_ms: u64, now_ms: u64) -> Effect {
        self.entries.insert(
            id.clone(),
            Entry {
                run: Run::Idle,
                generation: 0,
                restarts: RestartTracker::default(),
                shared: Arc::new(SessionShared::new(now_ms)),
                started_ms: now_ms,
                created_ms,
            },
        );
        Effect::Track {
            id: id.clone(),
            created_ms,
        }
    }

    fn remove(&mut self, id: &SessionId) -> Effect {
        self.entries.remove(id);
        self.restore.remove(id);
        Effect::Untrack { id: id.clone() }
    }

    /// A new actor for an existing entry.
    fn spawn(&mut self, id: &SessionId, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.generation += 1;
        entry.started_ms = now_ms;
        entry.run = Run::Running;
        out.push(Effect::Spawn {
            id: id.clone(),
            generation: entry.generation,
        });
    }

    /// Ends whatever runs for `id`: cancels a pending restart, stops an
    /// actor (whose exit report becomes stale).
    fn halt(&mut self, id: &SessionId, cause: StopCause) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(entry) = self.entries.get_mut(id) else {
            return out;
        };
        match entry.run {
            Run::RestartPending => out.push(Effect::CancelRestart { id: id.clone() }),
            Run::Running => {
                entry.generation += 1;
                out.push(Effect::Stop {
                    id: id.clone(),
                    cause,
                });
            }
            Run::Idle => {}
        }
        entry.run = Run::Idle;
        out
    }
}
