//! The `wagate` binary: configuration → logging → build → serve until
//! SIGTERM/SIGINT, then drain. `wagate healthcheck` probes a running one.

use wagate::config::Config;
use wagate::{healthcheck, telemetry, Application};

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
