//! How the `SessionRegistry` carries out its table's [`Effect`]s: actors
//! started on the session arbiters and stopped, restart timers, states
//! through the `StatePublisher`, snapshots in the index, background record
//! deletes. Called by every handler and timer of the registry after the
//! table decided.

use std::sync::Arc;

use actix::prelude::*;

use super::table::Effect;
use super::SessionRegistry;
use crate::clock::unix_ms;
use crate::error_chain::Chain;
use crate::ids::SessionId;
use crate::mailbox::MeteredAddr;
use crate::session::machine::SessionState;
use crate::session::publisher::Audience;
use crate::session::{Session, Shutdown, StopCause};

impl SessionRegistry {
    /// Carries the table's effects out, in order.
    pub(super) fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            self.apply_one(effect, ctx);
        }
        self.release_stop_waiters();
    }

    fn apply_one(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        let index = self.deps.publisher.index();
        match effect {
            Effect::Track { id, created_ms } => {
                if let Some(shared) = self.table.shared(&id) {
                    index.insert(id.clone(), shared);
                    index.update(&id, |s| s.created_at_ms = created_ms);
                }
            }
            Effect::Spawn { id, generation } => self.spawn(id, generation),
            Effect::Stop { id, cause } => {
                if let Some(actor) = self.actors.remove(&id) {
                    actor.do_send(Shutdown { cause });
                }
            }
            Effect::Shutdown { id } => {
                if let Some(actor) = self.actors.get(&id) {
                    actor.do_send(Shutdown {
                        cause: StopCause::Shutdown,
                    });
                }
            }
            Effect::Release { id } => {
                self.actors.remove(&id);
            }
            Effect::ScheduleRestart { id, delay } => {
                self.metrics.session_restarts.inc();
                let due = id.clone();
                let timer = ctx.run_later(delay, move |act, ctx| {
                    act.restart_timers.remove(&due);
                    let effects = act.table.restart_due(&due, unix_ms());
                    act.apply(effects, ctx);
                });
                if let Some(old) = self.restart_timers.insert(id, timer) {
                    ctx.cancel_future(old);
                }
            }
            Effect::CancelRestart { id } => {
                if let Some(timer) = self.restart_timers.remove(&id) {
                    ctx.cancel_future(timer);
                }
            }
            Effect::Publish {
                id,
                state,
                reason,
                audience,
            } => self.publish(&id, state, reason, audience),
            Effect::GiveUp { id, reason } => {
                tracing::warn!(session = %id, %reason, "session keeps failing; giving up");
                let reason = format!("too many restarts: {reason}");
                self.publish(&id, SessionState::Failed, reason, Audience::Laravel);
            }
            Effect::CountRestarts { id, restarts } => index.update(&id, |s| s.restarts = restarts),
            Effect::ClearQr { id } => index.update(&id, |s| s.qr = None),
            Effect::Untrack { id } => index.remove(&id),
            Effect::DeleteRecord { id } => {
                let store = Arc::clone(&self.deps.store);
                actix_rt::spawn(async move {
                    if let Err(e) = store.delete_session(&id).await {
                        tracing::error!(session = %id, error = %Chain(&e), "cannot forget a session's record");
                    }
                });
            }
        }
    }

    fn publish(&self, id: &SessionId, state: SessionState, reason: String, audience: Audience) {
        if let Some(shared) = self.table.shared(id) {
            self.deps
                .publisher
                .enter(id, &shared, state, Some(reason), audience);
        }
    }

    /// Starts the actor the table asked for, on the next arbiter.
    fn spawn(&mut self, id: SessionId, generation: u64) {
        let Some(shared) = self.table.shared(&id) else {
            return;
        };
        let arbiter = self.arbiters[self.next_arbiter % self.arbiters.len()].clone();
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let deps = Arc::clone(&self.deps);
        let depth = Arc::clone(&shared.mailbox_depth);
        let sid = id.clone();
        let addr = Session::start_in_arbiter(&arbiter, move |_| {
            Session::new(sid, deps, shared, generation)
        });
        let actor = MeteredAddr::new(addr, self.session_meter.clone(), Some(depth));
        self.actors.insert(id, actor);
    }
}
