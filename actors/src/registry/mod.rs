//! `SessionRegistry`: creates, stops, deletes and restarts Session actors,
//! one per account, spread round-robin over one arbiter per core. It
//! supervises them: a Session that panics or fails is restarted with backoff,
//! and one that keeps failing ends `failed` (see [`supervision`]). It
//! enforces `max_active_sessions`, sweeps idle and over-age sessions, and
//! stops everything on shutdown. HTTP calls it through [`RegistryHandle`];
//! reads go to the `SessionIndex` instead, never through this mailbox.

pub mod retention;
pub mod supervision;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use self::supervision::{
    sweep_verdict, Lifetimes, RestartDecision, RestartPolicy, RestartTracker, SweepInput,
    SweepVerdict,
};
use crate::batch::inbound::InboundBatcher;
use crate::batch::qr::QrBatcher;
use crate::batch::status::{RecordStatus, StatusBatcher};
use crate::clock::unix_ms;
use crate::connector::{Connector, ConnectorError};
use crate::error_chain::Chain;
use crate::ids::SessionId;
use crate::laravel::payload::StatusItem;
use crate::mailbox::{MailboxMeter, MeteredAddr};
use crate::metrics::Metrics;
use crate::session::index::{SessionIndex, SessionShared};
use crate::session::machine::{Exit, SessionState};
use crate::session::{Crash, Logout, RequestPairCode, SendText, Session, SessionDeps, Shutdown};
use crate::store::{Desired, SessionRecord, Store};

/// Restore pacing: sessions are started in small groups this often.
const RESTORE_TICK: Duration = Duration::from_millis(100);
/// Pause before reading the stored sessions again when the store is down.
const RESTORE_RETRY: Duration = Duration::from_secs(1);

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("the store is unavailable, nothing was changed: {0}")]
    Store(String),
}

/// What sessions are built from, minus the registry's own address.
pub struct SessionParts {
    pub connector: Arc<dyn Connector>,
    pub store: Arc<dyn Store>,
    pub qr: MeteredAddr<QrBatcher>,
    pub status: MeteredAddr<StatusBatcher>,
    pub inbound: MeteredAddr<InboundBatcher>,
    pub index: SessionIndex,
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

/// Send a text through a session (from the `MessageQueue`).
#[derive(Debug, Message)]
#[rtype(result = "Result<String, RegistryError>")]
pub struct SendMessage {
    pub id: SessionId,
    pub to: String,
    pub text: String,
    pub message_id: String,
}

/// Ask a session for a phone-number pairing code.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, RegistryError>")]
pub struct PairingCode {
    pub id: SessionId,
    pub phone: String,
}

/// Fault injection: make the session's actor panic.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct CrashSession {
    pub id: SessionId,
}

/// A Session actor ended (sent by the Session itself).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionExited {
    pub id: SessionId,
    pub generation: u64,
    pub exit: Exit,
}

/// Stop every session (graceful shutdown); `done` fires once all exited.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopAll {
    pub done: oneshot::Sender<()>,
}

/// Idle / lifetime sweep (timer, or a test).
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct Sweep;

struct Entry {
    /// The running actor, if any.
    actor: Option<MeteredAddr<Session>>,
    /// A restart scheduled after a crash or failure.
    restart_timer: Option<SpawnHandle>,
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
    /// Counts against `max_active_sessions`.
    fn active(&self) -> bool {
        self.actor.is_some() || self.restart_timer.is_some()
    }
}

pub struct SessionRegistry {
    config: RegistryConfig,
    /// Parts until `started` turns them into `deps` (needs our own address).
    parts: Option<SessionParts>,
    deps: Option<Arc<SessionDeps>>,
    index: SessionIndex,
    /// One per core; sessions are placed round-robin.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    sessions: HashMap<SessionId, Entry>,
    /// Entries for which `Entry::active` holds, kept in step on every change.
    active: usize,
    session_meter: MailboxMeter,
    own_meter: MailboxMeter,
    /// Waiters of `StopAll`, released when no actor is left.
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// Restored sessions waiting for their turn to start (bounded rate).
    restore_queue: std::collections::VecDeque<SessionId>,
    /// Shared with `/health`: persisted sessions not yet started.
    restore: Arc<RestoreProgress>,
    /// Set by `StopAll`: nothing new starts after it.
    stopping: bool,
    metrics: Arc<Metrics>,
}

/// How far the start-up restore got, for `/health` and tests.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// The stored sessions were read (or there is nothing to read).
    pub loaded: std::sync::atomic::AtomicBool,
    /// Sessions found in the store at start.
    pub found: std::sync::atomic::AtomicU64,
    /// Restored sessions still waiting to start.
    pub pending: std::sync::atomic::AtomicU64,
}

impl SessionRegistry {
    pub fn new(
        config: RegistryConfig,
        parts: SessionParts,
        arbiters: Vec<ArbiterHandle>,
        metrics: Arc<Metrics>,
    ) -> Self {
        assert!(
            !arbiters.is_empty(),
            "the registry needs at least one session arbiter"
        );
        Self {
            index: parts.index.clone(),
            config,
            parts: Some(parts),
            deps: None,
            arbiters,
            next_arbiter: 0,
            sessions: HashMap::new(),
            active: 0,
            session_meter: MailboxMeter::new(&metrics, "session"),
            own_meter: MailboxMeter::new(&metrics, "registry"),
            stop_waiters: Vec::new(),
            restore_queue: Default::default(),
            restore: Arc::default(),
            stopping: false,
            metrics,
        }
    }

    /// Progress of the start-up restore (shared; read by `/health`).
    pub fn restore_progress(&self) -> Arc<RestoreProgress> {
        Arc::clone(&self.restore)
    }

    fn record(&self, id: &SessionId, desired: Desired, created_ms: u64) -> SessionRecord {
        SessionRecord {
            id: id.clone(),
            desired,
            created_ms,
            node: self.config.node_id.clone(),
        }
    }

    /// Writes a session record, holding the registry until it is durable so
    /// no later command on the same session can overtake the write.
    fn persist(
        &self,
        record: SessionRecord,
    ) -> impl std::future::Future<Output = Result<(), RegistryError>> + 'static {
        let store = Arc::clone(&self.deps().store);
        async move {
            store
                .save_session(&record)
                .await
                .map_err(|e| RegistryError::Store(Chain(&e).to_string()))
        }
    }

    /// Adds an entry (no actor yet) for a new or restored session.
    fn insert_entry(&mut self, id: &SessionId, created_ms: u64) {
        let shared = Arc::new(SessionShared::new(unix_ms()));
        self.index.insert(id.clone(), Arc::clone(&shared));
        self.index.update(id, |s| s.created_at_ms = created_ms);
        self.sessions.insert(
            id.clone(),
            Entry {
                actor: None,
                restart_timer: None,
                generation: 0,
                restarts: RestartTracker::default(),
                shared,
                started_ms: unix_ms(),
                created_ms,
            },
        );
    }

    /// Reads the stored sessions and queues them for a paced start; retries
    /// while the store is down.
    fn load_stored(&mut self, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.deps().store);
        ctx.spawn(
            async move { store.load_sessions().await }
                .into_actor(self)
                .map(|loaded, act, ctx| match loaded {
                    Ok(records) => act.queue_restore(records),
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "cannot read stored sessions; retrying");
                        ctx.run_later(RESTORE_RETRY, |act, ctx| act.load_stored(ctx));
                    }
                }),
        );
    }

    fn queue_restore(&mut self, mut records: Vec<SessionRecord>) {
        use std::sync::atomic::Ordering::Relaxed;
        records.sort_by_key(|r| r.created_ms);
        let found = records.len();
        for r in records {
            if self.sessions.contains_key(&r.id) {
                continue; // created through the API while we were loading
            }
            self.insert_entry(&r.id, r.created_ms);
            match r.desired {
                Desired::Running => {
                    self.index
                        .update(&r.id, |s| s.reason = Some("restoring".into()));
                    self.restore_queue.push_back(r.id);
                }
                Desired::Stopped => {
                    self.index
                        .set_state(&r.id, SessionState::Stopped, Some("stopped".into()));
                }
            }
        }
        self.restore.found.store(found as u64, Relaxed);
        self.restore
            .pending
            .store(self.restore_queue.len() as u64, Relaxed);
        self.restore.loaded.store(true, Relaxed);
        if found > 0 {
            tracing::info!(
                sessions = found,
                to_start = self.restore_queue.len(),
                per_sec = self.config.restore_per_sec,
                "restoring stored sessions"
            );
        }
    }

    /// Starts the next group of restored sessions (timer).
    fn restore_tick(&mut self) {
        if self.restore_queue.is_empty() || self.stopping {
            return;
        }
        let per_tick = (u64::from(self.config.restore_per_sec) * RESTORE_TICK.as_millis() as u64
            / 1000)
            .max(1);
        for _ in 0..per_tick {
            let Some(id) = self.restore_queue.pop_front() else {
                break;
            };
            if self.sessions.get(&id).is_none_or(|e| e.active()) {
                continue; // deleted or started meanwhile
            }
            if self.active >= self.config.max_active_sessions {
                self.index.set_state(
                    &id,
                    SessionState::Stopped,
                    Some("max_active_sessions reached at restore".into()),
                );
                continue;
            }
            self.spawn(&id);
        }
        self.restore.pending.store(
            self.restore_queue.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Renews the cache TTLs of every live session (timer).
    fn refresh_cache(&self) {
        if !self.deps().store.caches() {
            return;
        }
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.actor.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let store = Arc::clone(&self.deps().store);
        actix_rt::spawn(async move {
            if let Err(e) = store.refresh_cache(&ids).await {
                tracing::warn!(error = %Chain(&e), "cannot renew the session cache TTLs");
            }
        });
    }

    fn deps(&self) -> Arc<SessionDeps> {
        Arc::clone(self.deps.as_ref().expect("deps are built in started()"))
    }

    /// Starts a new actor for an existing entry.
    fn spawn(&mut self, id: &SessionId) {
        let arbiter = self.arbiters[self.next_arbiter % self.arbiters.len()].clone();
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let deps = self.deps();
        let meter = self.session_meter.clone();
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        let was_active = entry.active();
        entry.generation += 1;
        entry.started_ms = unix_ms();
        let (sid, shared, generation) = (id.clone(), Arc::clone(&entry.shared), entry.generation);
        let depth = Arc::clone(&shared.mailbox_depth);
        let addr = Session::start_in_arbiter(&arbiter, move |_| {
            Session::new(sid, deps, shared, generation)
        });
        entry.actor = Some(MeteredAddr::new(addr, meter, Some(depth)));
        if !was_active {
            self.active += 1;
        }
    }

    fn entry_became_inactive(&mut self, was_active: bool, id: &SessionId) {
        let now_active = self.sessions.get(id).is_some_and(Entry::active);
        match (was_active, now_active) {
            (true, false) => self.active -= 1,
            (false, true) => self.active += 1,
            _ => {}
        }
    }

    fn stop_actor(&mut self, id: &SessionId, shutdown: Shutdown, ctx: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        let was_active = entry.active();
        if let Some(h) = entry.restart_timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(actor) = entry.actor.take() {
            // Bump the generation: this actor's exit report is now stale.
            entry.generation += 1;
            actor.do_send(shutdown);
        }
        self.entry_became_inactive(was_active, id);
    }

    /// Sets a state on behalf of a session that has no actor, and tells Laravel.
    fn announce(
        &self,
        id: &SessionId,
        shared: &SessionShared,
        state: SessionState,
        reason: String,
    ) {
        self.index.set_state(id, state, Some(reason.clone()));
        let Some(status) = state.status_word() else {
            return;
        };
        self.deps().status.do_send(RecordStatus {
            item: StatusItem {
                session_id: id.clone(),
                status,
                priority: status.priority(),
                reason: Some(reason),
                timestamp: unix_ms(),
                seq: shared.next_seq(),
            },
        });
    }

    fn release_stop_waiters(&mut self) {
        if self.sessions.values().all(|e| e.actor.is_none()) {
            for w in self.stop_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn actor_of(&self, id: &SessionId) -> Result<MeteredAddr<Session>, RegistryError> {
        let entry = self
            .sessions
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
        entry
            .actor
            .clone()
            .ok_or_else(|| RegistryError::NotRunning(id.clone()))
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let parts = self.parts.take().expect("started runs once");
        self.deps = Some(Arc::new(SessionDeps {
            connector: parts.connector,
            store: parts.store,
            qr: parts.qr,
            status: parts.status,
            inbound: parts.inbound,
            index: parts.index,
            registry: MeteredAddr::new(ctx.address(), self.own_meter.clone(), None),
        }));
        self.load_stored(ctx);
        ctx.run_interval(RESTORE_TICK, |act, _| act.restore_tick());
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

impl SessionRegistry {
    fn sweep(&mut self, ctx: &mut Context<Self>) -> usize {
        let now = unix_ms();
        let verdicts: Vec<(SessionId, SweepVerdict)> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.actor.is_some())
            .map(|(id, e)| {
                let v = sweep_verdict(
                    &self.config.lifetimes,
                    SweepInput {
                        now_ms: now,
                        started_ms: e.started_ms,
                        last_activity_ms: e.shared.last_activity_ms(),
                        linked: e.shared.is_linked(),
                    },
                );
                (id.clone(), v)
            })
            .filter(|(_, v)| *v != SweepVerdict::Keep)
            .collect();
        for (id, verdict) in &verdicts {
            match verdict {
                SweepVerdict::Expire => {
                    self.stop_actor(
                        id,
                        Shutdown {
                            reason: "idle_ttl",
                            announce: true,
                            forget: false,
                        },
                        ctx,
                    );
                    self.sessions.remove(id);
                    self.index.remove(id);
                    let (store, id) = (Arc::clone(&self.deps().store), id.clone());
                    actix_rt::spawn(async move {
                        if let Err(e) = store.delete_session(&id).await {
                            tracing::error!(session = %id, error = %Chain(&e), "cannot forget an expired session");
                        }
                    });
                }
                SweepVerdict::Renew => {
                    self.stop_actor(
                        id,
                        Shutdown {
                            reason: "max_lifetime",
                            announce: false,
                            forget: false,
                        },
                        ctx,
                    );
                    self.index
                        .set_state(id, SessionState::Starting, Some("max_lifetime".into()));
                    self.spawn(id);
                }
                SweepVerdict::Keep => {}
            }
        }
        verdicts.len()
    }
}

crate::metered_actor!(
    SessionRegistry: CreateSession,
    DeleteSession,
    StopSession,
    RestartSession,
    LogoutSession,
    SendMessage,
    PairingCode,
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
        if self.sessions.contains_key(&msg.id) {
            return refuse(RegistryError::Exists(msg.id));
        }
        if self.active >= self.config.max_active_sessions {
            return refuse(RegistryError::LimitReached(self.config.max_active_sessions));
        }
        if self.sessions.len() >= self.config.max_stored_sessions {
            self.metrics
                .bounds
                .hits
                .with_label_values(&["stored_sessions"])
                .inc();
            return refuse(RegistryError::StoredLimitReached(
                self.config.max_stored_sessions,
            ));
        }
        let created = unix_ms();
        let save = self.persist(self.record(&msg.id, Desired::Running, created));
        AtomicResponse::new(Box::pin(save.into_actor(self).map(move |saved, act, _| {
            saved?;
            act.insert_entry(&msg.id, created);
            act.spawn(&msg.id);
            Ok(())
        })))
    }
}

impl Handler<DeleteSession> for SessionRegistry {
    type Result = Atomic;

    /// Forgets the session in the store first: if that fails, nothing
    /// changes, and a restart cannot bring a deleted session back.
    fn handle(&mut self, msg: DeleteSession, _: &mut Self::Context) -> Self::Result {
        if !self.sessions.contains_key(&msg.id) {
            return refuse(RegistryError::NotFound(msg.id));
        }
        let store = Arc::clone(&self.deps().store);
        let id = msg.id.clone();
        let forget = async move {
            store
                .delete_session(&id)
                .await
                .map_err(|e| RegistryError::Store(Chain(&e).to_string()))
        };
        AtomicResponse::new(Box::pin(forget.into_actor(self).map(
            move |forgotten, act, ctx| {
                forgotten?;
                act.stop_actor(
                    &msg.id,
                    Shutdown {
                        reason: "deleted",
                        announce: true,
                        forget: true,
                    },
                    ctx,
                );
                act.sessions.remove(&msg.id);
                act.index.remove(&msg.id);
                act.restore_queue.retain(|q| q != &msg.id);
                act.release_stop_waiters();
                Ok(())
            },
        )))
    }
}

impl Handler<StopSession> for SessionRegistry {
    type Result = Atomic;

    fn handle(&mut self, msg: StopSession, _: &mut Self::Context) -> Self::Result {
        let Some(entry) = self.sessions.get(&msg.id) else {
            return refuse(RegistryError::NotFound(msg.id));
        };
        if !entry.active() {
            return refuse(RegistryError::NotRunning(msg.id));
        }
        let save = self.persist(self.record(&msg.id, Desired::Stopped, entry.created_ms));
        AtomicResponse::new(Box::pin(save.into_actor(self).map(
            move |saved, act, ctx| {
                saved?;
                let Some(entry) = act.sessions.get(&msg.id) else {
                    return Err(RegistryError::NotFound(msg.id));
                };
                let running = entry.actor.is_some();
                let shared = Arc::clone(&entry.shared);
                act.stop_actor(
                    &msg.id,
                    Shutdown {
                        reason: "stopped",
                        announce: true,
                        forget: false,
                    },
                    ctx,
                );
                if !running {
                    // Waiting for a restart: no actor to announce the stop, so we do.
                    act.announce(&msg.id, &shared, SessionState::Stopped, "stopped".into());
                }
                Ok(())
            },
        )))
    }
}

impl Handler<RestartSession> for SessionRegistry {
    type Result = Atomic;

    fn handle(&mut self, msg: RestartSession, _: &mut Self::Context) -> Self::Result {
        let Some(entry) = self.sessions.get(&msg.id) else {
            return refuse(RegistryError::NotFound(msg.id));
        };
        if !entry.active() && self.active >= self.config.max_active_sessions {
            return refuse(RegistryError::LimitReached(self.config.max_active_sessions));
        }
        let save = self.persist(self.record(&msg.id, Desired::Running, entry.created_ms));
        AtomicResponse::new(Box::pin(save.into_actor(self).map(
            move |saved, act, ctx| {
                saved?;
                let Some(entry) = act.sessions.get_mut(&msg.id) else {
                    return Err(RegistryError::NotFound(msg.id));
                };
                entry.restarts.reset();
                act.stop_actor(
                    &msg.id,
                    Shutdown {
                        reason: "restart",
                        announce: false,
                        forget: false,
                    },
                    ctx,
                );
                act.index.update(&msg.id, |s| {
                    s.qr = None;
                    s.reason = Some("restart".into());
                });
                act.spawn(&msg.id);
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
            let actor = actor?;
            actor
                .send(Logout)
                .await
                .map_err(|_| RegistryError::NotRunning(msg.id))??;
            Ok(())
        })
    }
}

impl Handler<SendMessage> for SessionRegistry {
    type Result = ResponseFuture<Result<String, RegistryError>>;

    fn handle(&mut self, msg: SendMessage, _: &mut Self::Context) -> Self::Result {
        let actor = self.actor_of(&msg.id);
        Box::pin(async move {
            let actor = actor?;
            let sent = actor
                .send(SendText {
                    to: msg.to,
                    text: msg.text,
                    message_id: msg.message_id,
                })
                .await
                .map_err(|_| RegistryError::NotRunning(msg.id))??;
            Ok(sent)
        })
    }
}

impl Handler<PairingCode> for SessionRegistry {
    type Result = ResponseFuture<Result<String, RegistryError>>;

    fn handle(&mut self, msg: PairingCode, _: &mut Self::Context) -> Self::Result {
        let actor = self.actor_of(&msg.id);
        Box::pin(async move {
            let code = actor?
                .send(RequestPairCode { phone: msg.phone })
                .await
                .map_err(|_| RegistryError::NotRunning(msg.id))??;
            Ok(code)
        })
    }
}

impl Handler<CrashSession> for SessionRegistry {
    type Result = Result<(), RegistryError>;

    fn handle(&mut self, msg: CrashSession, _: &mut Self::Context) -> Self::Result {
        self.actor_of(&msg.id)?.do_send(Crash);
        Ok(())
    }
}

impl Handler<SessionExited> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionExited, ctx: &mut Self::Context) {
        let policy = self.config.restart;
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return;
        };
        if entry.generation != msg.generation {
            return; // a replaced actor; its successor is in charge
        }
        let was_active = entry.active();
        entry.actor = None;
        match msg.exit {
            Exit::Requested => {}
            Exit::Terminal => {
                // Logged out stays gone after a restart; other ends (QR
                // exhausted, banned) come back and show a QR again.
                let logged_out = self
                    .index
                    .get(&msg.id)
                    .is_some_and(|s| s.state == SessionState::LoggedOut);
                if logged_out {
                    let (store, id) = (Arc::clone(&self.deps().store), msg.id.clone());
                    actix_rt::spawn(async move {
                        if let Err(e) = store.delete_session(&id).await {
                            tracing::error!(session = %id, error = %Chain(&e), "cannot forget a logged-out session");
                        }
                    });
                }
            }
            Exit::Failure(_) | Exit::Crashed => {
                let reason = match &msg.exit {
                    Exit::Failure(r) => r.clone(),
                    _ => "the session actor crashed".to_owned(),
                };
                match entry.restarts.record(&policy, Instant::now()) {
                    RestartDecision::After(delay) => {
                        self.metrics.session_restarts.inc();
                        let id = msg.id.clone();
                        entry.restart_timer = Some(ctx.run_later(delay, move |act, _| {
                            if let Some(e) = act.sessions.get_mut(&id) {
                                e.restart_timer = None;
                                act.active -= 1; // spawn() counts it again
                                act.spawn(&id);
                            }
                        }));
                        let restarts = entry.restarts.count() as u32;
                        self.index.update(&msg.id, |s| {
                            s.state = SessionState::Disconnected;
                            s.reason =
                                Some(format!("restarting in {} ms: {reason}", delay.as_millis()));
                            s.restarts = restarts;
                        });
                    }
                    RestartDecision::GiveUp => {
                        let shared = Arc::clone(&entry.shared);
                        tracing::warn!(session = %msg.id, %reason, "session keeps failing; giving up");
                        self.announce(
                            &msg.id,
                            &shared,
                            SessionState::Failed,
                            format!("too many restarts: {reason}"),
                        );
                    }
                }
            }
        }
        self.entry_became_inactive(was_active, &msg.id);
        self.release_stop_waiters();
    }
}

impl Handler<StopAll> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: StopAll, ctx: &mut Self::Context) {
        self.stopping = true;
        self.restore_queue.clear();
        self.stop_waiters.push(msg.done);
        let ids: Vec<SessionId> = self.sessions.keys().cloned().collect();
        for id in ids {
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            if let Some(h) = entry.restart_timer.take() {
                ctx.cancel_future(h);
            }
            if let Some(actor) = &entry.actor {
                // Keep the generation: we wait for these exit reports.
                actor.do_send(Shutdown {
                    reason: "shutdown",
                    announce: false,
                    forget: false,
                });
            }
        }
        self.active = self.sessions.values().filter(|e| e.active()).count();
        self.release_stop_waiters();
    }
}

impl Handler<Sweep> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, _: Sweep, ctx: &mut Self::Context) -> usize {
        self.sweep(ctx)
    }
}

/// The typed door to the registry for the HTTP layer.
#[derive(Clone)]
pub struct RegistryHandle {
    addr: MeteredAddr<SessionRegistry>,
}

impl RegistryHandle {
    pub fn new(addr: MeteredAddr<SessionRegistry>) -> Self {
        Self { addr }
    }

    async fn call<M>(&self, msg: M) -> Result<(), RegistryError>
    where
        M: Message<Result = Result<(), RegistryError>> + Send + 'static,
        SessionRegistry: Handler<crate::mailbox::Metered<M>>,
    {
        self.addr
            .send(msg)
            .await
            .map_err(|_| RegistryError::Unavailable)?
    }

    pub async fn create(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(CreateSession { id }).await
    }

    pub async fn delete(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(DeleteSession { id }).await
    }

    pub async fn stop(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(StopSession { id }).await
    }

    pub async fn restart(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(RestartSession { id }).await
    }

    pub async fn logout(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(LogoutSession { id }).await
    }

    /// Sends a text through the session's connection; WhatsApp's id back.
    pub async fn send_text(
        &self,
        id: SessionId,
        to: String,
        text: String,
        message_id: String,
    ) -> Result<String, RegistryError> {
        self.addr
            .send(SendMessage {
                id,
                to,
                text,
                message_id,
            })
            .await
            .map_err(|_| RegistryError::Unavailable)?
    }

    /// A phone-number pairing code for an unlinked session.
    pub async fn pairing_code(
        &self,
        id: SessionId,
        phone: String,
    ) -> Result<String, RegistryError> {
        self.addr
            .send(PairingCode { id, phone })
            .await
            .map_err(|_| RegistryError::Unavailable)?
    }

    pub async fn crash(&self, id: SessionId) -> Result<(), RegistryError> {
        self.call(CrashSession { id }).await
    }

    pub async fn sweep(&self) -> Result<usize, RegistryError> {
        self.addr
            .send(Sweep)
            .await
            .map_err(|_| RegistryError::Unavailable)
    }

    /// The registry actor is alive.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }

    /// Stops every session and waits until all have exited.
    pub async fn stop_all(&self) {
        let (tx, rx) = oneshot::channel();
        self.addr.do_send(StopAll { done: tx });
        let _ = rx.await;
    }
}
