//! Stop signals for the binary. actix-server's own handling is disabled
//! (it stops the whole actor system ~300 ms after SIGTERM, killing the
//! session arbiters before the drain runs); `main` waits here instead, and
//! [`crate::Application::run_until_signalled`] drains before exiting.
//! In-process tests never install these handlers.

use tokio::signal::unix::{signal, SignalKind};

/// Waits for SIGTERM (what `docker stop` sends) or SIGINT (Ctrl-C) and
/// names the one that came.
///
/// # Errors
/// When the handlers cannot be installed (no signal support in this process).
pub async fn stop_requested() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
