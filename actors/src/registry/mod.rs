//! `SessionRegistry`: creates, stops, deletes and restarts Session actors,
//! one per account, spread round-robin over one arbiter per core. What to do
//! is decided by its [`table::SessionTable`] (limits, supervision with
//! backoff and `failed`, idle / lifetime sweep, retention, restore pacing);
//! this actor writes records to the store before a change is made, then
//! carries the table's effects out; requests it only passes on to one
//! session's actor are in [`forward`]. HTTP and the message queue call it
//! through [`RegistryHandle`]; reads go to the `SessionIndex` instead.

mod effects;
pub mod forward;
pub mod handle;
pub mod restore;
pub mod retention;
pub mod supervision;
pub mod table;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

pub use self::forward::{
    CheckNumbers, CrashSession, PerformChatAction, RequestPairingCode, SendMessage,
};
pub use self::handle::RegistryHandle;
pub use self::restore::RestoreProgress;
use self::restore::{RestoreQueue, RESTORE_TICK};
use self::supervision::{Lifetimes, RestartPolicy};
use self::table::{Limits, SessionTable};
use crate::clock::unix_ms;
use crate::connector::ConnectorError;
use crate::error_chain::Chain;
use crate::ids::SessionId;
use crate::mailbox::{MailboxMeter, MeteredAddr};
use crate::metrics::Metrics;
use crate::session::machine::SessionState;
use crate::session::{self, Logout, Session, SessionDeps, SessionExited};
use crate::store::{Desired, SessionRecord, StoreError};

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Live sessions allowed at once (`MAX_ACTIVE_SESSIONS`).
    pub max_active_sessions: usize,
    pub lifetimes: Lifetimes,
    /// How often idle and over-age sessions are swept.
    pub sweep_interval: Duration,
    pub restart: RestartPolicy,
    /// This node's name in stored session records (`NODE_ID`).
    pub node_id: String,
    /// Persisted sessions started per second at boot (`RESTORE_RATE`).
    pub restore_per_sec: u32,
    /// How often the cache TTLs of live sessions are renewed.
    pub cache_refresh: Duration,
    /// Sessions held in any state (`MAX_STORED_SESSIONS`).
    pub max_stored_sessions: usize,
    /// Ended, unlinked sessions are forgotten this long after they ended
    /// (`SESSION_RETENTION`, see [`retention`]).
    pub retention: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("session {0} already exists")]
    Exists(SessionId),
    #[error("session {0} not found")]
    NotFound(SessionId),
    #[error("the gateway holds its maximum of {0} active sessions")]
    LimitReached(usize),
    #[error("the gateway holds its maximum of {0} sessions in any state")]
    StoredLimitReached(usize),
    #[error("session {0} is not running")]
    NotRunning(SessionId),
    #[error("the connector refused: {0}")]
    Connector(#[from] ConnectorError),
    #[error("the session registry is not running")]
    Unavailable,
    #[error("the store is unavailable, nothing was changed")]
    Store(#[source] StoreError),
}

#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct CreateSession {
    pub id: SessionId,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct DeleteSession {
    pub id: SessionId,
}

/// Stop the actor but keep the session (state `stopped`; restart revives it).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct StopSession {
    pub id: SessionId,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct RestartSession {
    pub id: SessionId,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct LogoutSession {
    pub id: SessionId,
}

/// Stop every session (graceful shutdown); `done` fires once all exited.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopAll {
    pub done: oneshot::Sender<()>,
}

/// Run the idle / lifetime sweep now (the sweep timer runs the same);
/// answers how many sessions were swept.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct Sweep;

pub struct SessionRegistry {
    config: RegistryConfig,
    /// Every decision: entries, limits, supervision, sweep, restore queue.
    table: SessionTable,
    /// What sessions are built from; shared by all of them.
    deps: Arc<SessionDeps>,
    /// One per core; sessions are placed round-robin.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// The running actor of each session the table says is running.
    actors: HashMap<SessionId, MeteredAddr<Session>>,
    /// Pending restarts the table scheduled, cancelled when overtaken.
    restart_timers: HashMap<SessionId, SpawnHandle>,
    session_meter: MailboxMeter,
    /// Waiters of `StopAll`, released when no actor is left.
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// Shared with `/health`: persisted sessions not yet started.
    restore: Arc<RestoreProgress>,
    metrics: Arc<Metrics>,
}

impl SessionRegistry {
    /// `deps` carry the registry's own exit recipient, so this is built in
    /// the closure that starts the actor (`Actor::create` or
    /// `start_in_arbiter`), where its address is known.
    pub fn new(
        config: RegistryConfig,
        deps: SessionDeps,
        arbiters: Vec<ArbiterHandle>,
        restore: Arc<RestoreProgress>,
        metrics: Arc<Metrics>,
    ) -> Self {
        assert!(
            !arbiters.is_empty(),
            "the registry needs at least one session arbiter"
        );
        let limits = Limits {
            max_active: config.max_active_sessions,
            max_stored: config.max_stored_sessions,
            lifetimes: config.lifetimes,
            restart: config.restart,
            retention: config.retention,
        };
        Self {
            table: SessionTable::new(limits, RestoreQueue::new(config.restore_per_sec)),
            config,
            deps: Arc::new(deps),
            arbiters,
            next_arbiter: 0,
            actors: HashMap::new(),
            restart_timers: HashMap::new(),
            session_meter: MailboxMeter::new(&metrics, "session"),
            stop_waiters: Vec::new(),
            restore,
            metrics,
        }
    }

    /// Writes a session record, holding the registry until it is durable so
    /// no later command on the same session can overtake the write.
    fn persist(
        &self,
        id: &SessionId,
        desired: Desired,
        now_ms: u64,
    ) -> impl std::future::Future<Output = Result<(), RegistryError>> + 'static {
        let record: SessionRecord = self.table.record(id, desired, now_ms, &self.config.node_id);
        let store = Arc::clone(&self.deps.store);
        async move {
            store
                .save_session(&record)
                .await
                .map_err(RegistryError::Store)
        }
    }

    /// Renews the cache TTLs of every live session (timer).
    fn refresh_cache(&self) {
        if !self.deps.store.caches() {
            return;
        }
        let ids = self.table.running();
        if ids.is_empty() {
            return;
        }
        let store = Arc::clone(&self.deps.store);
        actix_rt::spawn(async move {
            if let Err(e) = store.refresh_cache(&ids).await {
                tracing::warn!(error = %Chain(&e), "cannot renew the session cache TTLs");
            }
        });
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) -> usize {
        let (swept, effects) = self.table.sweep(unix_ms());
        self.apply(effects, ctx);
        swept
    }

    fn release_stop_waiters(&mut self) {
        if !self.stop_waiters.is_empty() && self.table.all_exited() {
            for w in self.stop_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn actor_of(&self, id: &SessionId) -> Result<MeteredAddr<Session>, RegistryError> {
        if !self.table.contains(id) {
            return Err(RegistryError::NotFound(id.clone()));
        }
        self.actors
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotRunning(id.clone()))
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.load_stored(ctx);
        ctx.run_interval(RESTORE_TICK, |act, ctx| act.restore_tick(ctx));
        ctx.run_interval(self.config.cache_refresh, |act, _| act.refresh_cache());
        ctx.run_interval(self.config.sweep_interval, |act, ctx| act.forget_ended(ctx));
        ctx.run_interval(self.config.sweep_interval, |act, ctx| {
            let n = act.sweep(ctx);
            if n > 0 {
                tracing::info!(sessions = n, "swept idle or over-age sessions");
            }
        });
    }
}

crate::metered_actor!(
    SessionRegistry: CreateSession,
    DeleteSession,
    StopSession,
    RestartSession,
    LogoutSession,
    SendMessage,
    RequestPairingCode,
    CheckNumbers,
    PerformChatAction,
    CrashSession,
    SessionExited,
    StopAll,
    Sweep,
);

type Atomic = AtomicResponse<SessionRegistry, Result<(), RegistryError>>;

fn refuse(err: RegistryError) -> Atomic {
    AtomicResponse::new(Box::pin(fut::ready(Err(err))))
}

impl Handler<CreateSession> for SessionRegistry {
    type Result = Atomic;

    /// Answers once the session's record is durable: a created session
    /// survives a crash that follows the reply.
    fn handle(&mut self, msg: CreateSession, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.table.check_create(&msg.id) {
            if matches!(e, RegistryError::StoredLimitReached(_)) {
                self.metrics
                    .bounds
                    .hits
                    .with_label_values(&["stored_sessions"])
                    .inc();
            }
            return refuse(e);
        }
        let created = unix_ms();
        let save = self.persist(&msg.id, Desired::Running, created);
        AtomicResponse::new(Box::pin(save.into_actor(self).map(
            move |saved, act, ctx| {
                saved?;
                let effects = act.table.create(&msg.id, created);
                act.apply(effects, ctx);
                Ok(())
            },
        )))
    }
}

impl Handler<DeleteSession> for SessionRegistry {
    type Result = Atomic;

    /// Forgets the session in the store first: if that fails, nothing
    /// changes, and a restart cannot bring a deleted session back. Before
    /// that, its `stopped` is journaled (a tombstone), so a kill between
    /// the delete and the announcement still lets the next start tell
    /// Laravel (a tombstone left by a failed delete is released by that
    /// start, as the session is still stored).
    fn handle(&mut self, msg: DeleteSession, _: &mut Self::Context) -> Self::Result {
        let Some(shared) = self.table.shared(&msg.id) else {
            return refuse(RegistryError::NotFound(msg.id));
        };
        let store = Arc::clone(&self.deps.store);
        let publisher = self.deps.publisher.clone();
        let id = msg.id.clone();
        let forget = async move {
            let reason = session::StopCause::Deleted.reason();
            let tombstone = publisher
                .tombstone(&id, &shared, SessionState::Stopped, reason)
                .await
                .map_err(|e| RegistryError::Store(e.into()))?;
            store
                .delete_session(&id)
                .await
                .map_err(RegistryError::Store)?;
            Ok::<_, RegistryError>(tombstone)
        };
        AtomicResponse::new(Box::pin(forget.into_actor(self).map(
            move |forgotten, act, ctx| {
                let tombstone = forgotten?;
                let effects = act.table.delete(&msg.id)?;
                if let Some(item) = tombstone {
                    act.deps.publisher.replay(item);
                }
                act.apply(effects, ctx);
                Ok(())
            },
        )))
    }
}

impl Handler<StopSession> for SessionRegistry {
    type Result = Atomic;

    fn handle(&mut self, msg: StopSession, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.table.check_stop(&msg.id) {
            return refuse(e);
        }
        let save = self.persist(&msg.id, Desired::Stopped, unix_ms());
        AtomicResponse::new(Box::pin(save.into_actor(self).map(
            move |saved, act, ctx| {
                saved?;
                let effects = act.table.stop(&msg.id)?;
                act.apply(effects, ctx);
                Ok(())
            },
        )))
    }
}

impl Handler<RestartSession> for SessionRegistry {
    type Result = Atomic;

    fn handle(&mut self, msg: RestartSession, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.table.check_restart(&msg.id) {
            return refuse(e);
        }
        let save = self.persist(&msg.id, Desired::Running, unix_ms());
        AtomicResponse::new(Box::pin(save.into_actor(self).map(
            move |saved, act, ctx| {
                saved?;
                let effects = act.table.restart(&msg.id, unix_ms())?;
                act.apply(effects, ctx);
                Ok(())
            },
        )))
    }
}

impl Handler<LogoutSession> for SessionRegistry {
    type Result = ResponseFuture<Result<(), RegistryError>>;

    fn handle(&mut self, msg: LogoutSession, _: &mut Self::Context) -> Self::Result {
        let actor = self.actor_of(&msg.id);
        Box::pin(async move {
            actor?
                .send(Logout)
                .await
                .map_err(|_| RegistryError::NotRunning(msg.id))??;
            Ok(())
        })
    }
}

impl Handler<SessionExited> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionExited, ctx: &mut Self::Context) {
        let state = self.deps.publisher.index().get(&msg.id).map(|s| s.state);
        let effects = self
            .table
            .exited(&msg.id, msg.generation, &msg.exit, state, Instant::now());
        self.apply(effects, ctx);
    }
}

impl Handler<StopAll> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: StopAll, ctx: &mut Self::Context) {
        self.stop_waiters.push(msg.done);
        let effects = self.table.stop_all();
        self.apply(effects, ctx);
    }
}

impl Handler<Sweep> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, _: Sweep, ctx: &mut Self::Context) -> usize {
        self.sweep(ctx)
    }
}
