//! The `wagate` binary: configuration → logging → build → serve until
//! SIGTERM/SIGINT, then drain. `wagate healthcheck` probes a running one.

use wagate::config::Config;
use wagate::{healthcheck, telemetry, Application};

/// mimalloc rather than glibc's malloc: measured faster under message
/// intake (docs/benchmarks.md); allocation-heavy paths (HTTP, JSON, Redis
/// replies) are the gateway's hot paths.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load()?;
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck::probe(config.server.port);
    }
    telemetry::init(&config.log);
    let app = Application::build(config).await?;
    app.run_until_signalled().await?;
    Ok(())
}
