//! [`Effect`]: what the `SessionRegistry` actor carries out on the
//! [`SessionTable`](super::SessionTable)'s behalf (`registry/effects.rs`
//! does it); the table only ever returns these.

use std::time::Duration;

use crate::ids::SessionId;
use crate::session::machine::SessionState;
use crate::session::publisher::Audience;
use crate::session::StopCause;

/// What the registry actor does on the table's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A new entry: put its snapshot in the index (created at `created_ms`).
    Track { id: SessionId, created_ms: u64 },
    /// Start an actor for `id`, tagged `generation`.
    Spawn { id: SessionId, generation: u64 },
    /// Stop the running actor and let go of it: its exit report is stale.
    Stop { id: SessionId, cause: StopCause },
    /// Ask the running actor to stop, keeping it: its exit report is awaited.
    Shutdown { id: SessionId },
    /// The actor ended on its own: let go of its address.
    Release { id: SessionId },
    /// Call [`SessionTable::restart_due`] for `id` after `delay`.
    ScheduleRestart { id: SessionId, delay: Duration },
    /// Drop the pending restart timer of `id`.
    CancelRestart { id: SessionId },
    /// Publish a state through the `StatePublisher`.
    Publish {
        id: SessionId,
        state: SessionState,
        reason: String,
        audience: Audience,
    },
    /// The session keeps failing: publish `failed` and say so in the log.
    GiveUp { id: SessionId, reason: String },
    /// Show how many restarts are in the current window.
    CountRestarts { id: SessionId, restarts: u32 },
    /// The old QR is void (a restart): drop it from the snapshot.
    ClearQr { id: SessionId },
    /// Gone from the table: drop its snapshot.
    Untrack { id: SessionId },
    /// Delete the stored record in the background (the table already forgot it).
    DeleteRecord { id: SessionId },
}
