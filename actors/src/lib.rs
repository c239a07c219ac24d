//! wagate's actor system: everything between WhatsApp connections and
//! Laravel, with no HTTP server in it (the `wagate` crate adds that).
//!
//! # Layout
//! ```text
//!  HTTP (wagate crate) ──RegistryHandle──► SessionRegistry ──start/stop──► Session (one per account,
//!      │                     (SessionTable decides,  ▲                     │  on one arbiter per core)
//!      │ reads                the actor carries out) └─ SessionExited ─────┤◄── ConnectorEvent stream
//!      ▼                                                (a Recipient)      │     (simulator | WhatsApp Web)
//!  SessionIndex (DashMap snapshots) ◄── StatePublisher ◄── states ─────────┤ (registry too, for sessions
//!                                       ├─ Redis state cache               │  without an actor)
//!                                       └─ RecordStatus ──► StatusBatcher ─┼────────────────────────┐
//!                                                                          ├── PublishQr/ClearQr ─► QrBatcher ──────┤ DeliverBatch
//!                                                                          └── RecordInbound ─────► InboundBatcher ─┤
//!  QrRenderer pool (SyncArbiter) ◄── PNG/SVG renders (QrBatcher, HTTP)                                             ▼
//!                                                                   LaravelClient ── breaker ── outbox ──► Laravel
//! ```
//! Outbound messages: HTTP ──`MessagesHandle::submit`──► `MessageLog`, then
//! `Wake` ─► `MessageQueue` (decisions in `messages::lanes`) ─► `RegistryHandle`
//! ─► Session; results ─► `InboundBatcher`. Contacts check and chat
//! actions (typing, read): HTTP ─`RegistryHandle`─► Session ─► connection,
//! never queued; a humane send's typing goes the same way from the queue.
//! Incoming media: a connector downloads it, `IncomingMedia::keep`s it
//! ([`incoming_media`], memory or Redis, `MEDIA_TTL`) and only then journals
//! the message, whose item names a signed URL that HTTP serves through
//! `Gateway::incoming_media()`.
//! The registry's decisions (limits, restarts with backoff, idle / lifetime
//! sweep, retention, restore pacing) live in the pure
//! [`registry::table::SessionTable`]; a session's state reaches the index,
//! the Redis cache and Laravel only through [`session::publisher`]. Sessions
//! never name the registry: they report their end through a
//! `MeteredRecipient<SessionExited>` in the `SessionDeps` that
//! [`Gateway::start`] builds in the registry's start closure.
//! Control actors (registry) run on their own arbiter, the batchers and the
//! Laravel client on an I/O arbiter, sessions on `session_arbiters` arbiters.
//! Every mailbox is measured ([`mailbox`]). [`Gateway::start`] wires it all
//! ([`gateway`]: one named step per part), building the shared TLS client
//! configuration ([`tls`]) once. Callers outside this crate see only the
//! [`Gateway`] façade: typed handles (`registry()`, `messages()`,
//! `batchers()`) and read-only views (`index()`, `health()`, the one source
//! of `/health`); the Laravel client publishes its delivery health into it
//! ([`laravel::delivery`]).
//!
//! Modules, by who uses them: [`gateway`] (the façade: `start`, `health`,
//! `batchers`, `backends`); [`registry`] (`table` decides, `effects`,
//! `forward`, `handle`, `restore`, `retention`, `supervision`); [`session`]
//! (`machine`, `publisher`, `index`); [`messages`] (`handle`, `queue` with
//! `log_io`, `lanes`, `humane`, `content`, `upload`, `memory`, `redis`);
//! [`batch`] (`qr`, `status`, `status_order`, `inbound`, `buffer`);
//! [`journal`] (`plan`, `memory`, `redis`); [`laravel`] (`client` with
//! `attempt`, `breaker`, `throttle`, `signature`, `payload`, `merge`,
//! `replay`, `outbox`, `outbox_redis`, `delivery`, `notice`); [`connector`]
//! (`simulator` with `control` and `device`; `whatsapp` with `driver`,
//! `deliver`, `send`, `events`, …); [`incoming_media`] (`token`, `memory`,
//! `redis`); [`events`] (the live bus: `feed`, `filter`, `replay`);
//! [`webhooks`] (`sender` on its own arbiter, `target` decides; it reads
//! the event bus and takes the Laravel client's fallback copies);
//! [`store`], [`redis`], [`qr_render`]; shared by all:
//! [`mailbox`], [`metrics`], [`runtime_tasks`], [`stats`], [`tls`], [`clock`],
//! [`backoff`], [`bounds`], [`ids`], [`error_chain`].

pub mod backoff;
pub mod batch;
pub mod bounds;
pub mod clock;
pub mod connector;
pub mod error_chain;
pub mod events;
pub mod gateway;
pub mod ids;
pub mod incoming_media;
pub mod journal;
pub mod laravel;
pub mod mailbox;
pub mod messages;
pub mod metrics;
pub mod qr_render;
pub mod redis;
pub mod registry;
pub mod runtime_tasks;
pub mod session;
pub mod stats;
pub mod store;
pub mod tls;
pub mod webhooks;

pub use crate::gateway::{
    Backends, ConnectorChoice, Gateway, GatewayConfig, StartError, CLIENT_FLUSH_GRACE,
    SEND_DRAIN_GRACE,
};
