//! What an operator reads during a Laravel outage: the gateway process's
//! own log (JSON lines) has one WARN when the breaker opens, one INFO when
//! it closes (with how many batches were held and for how long), and the
//! per-batch "held" / "stale QR dropped" warnings rate-limited to a line
//! or two, each counting the lines it stands for — not one line per batch.

use std::path::Path;

use serde_json::Value;
use wagate_testkit::{FakeLaravel, GatewayClient, GatewayProcess};

use crate::helpers::{eventually, PATIENCE};

const BINARY: &str = env!("CARGO_BIN_EXE_wagate");

/// The log records (flattened JSON events) whose message starts with `prefix`.
fn records(log: &str, prefix: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .collect()
}

#[actix_rt::test]
async fn an_outage_is_a_few_log_lines() {
    let laravel = FakeLaravel::start();
    laravel.set_status(500);
    let api = laravel.base_url();
    let env = [
        ("LARAVEL_API", api.as_str()),
        ("LARAVEL_MAX_RETRIES", "0"),
        ("CIRCUIT_BREAKER_THRESHOLD", "2"),
        ("CIRCUIT_BREAKER_RESET", "300"),
        ("BATCH_INTERVAL", "50"),
        // New QR codes every 100 ms: many batches to hold, soon stale.
        ("SIM_QR_FIRST_MS", "100"),
        ("SIM_QR_ROTATE_MS", "100"),
        ("SIM_QR_COUNT", "1000"),
        ("QR_STALE_AFTER", "200"),
        ("LOG_LEVEL", "info"),
        ("LOG_FORMAT", "json"),
    ];
    let mut gateway = GatewayProcess::start(Path::new(BINARY), &env);
    let remote = GatewayClient::new(&gateway.base_url());
    for i in 0..10 {
        let r = remote
            .post("/sessions", serde_json::json!({ "id": format!("o{i}") }))
            .await;
        assert_eq!(r.status, 201);
    }
    let piled_up = eventually(PATIENCE, || async {
        let h = remote.get("/health").await.json_or_null();
        h["circuitBreaker"]["state"] != "CLOSED" && h["laravel"]["heldBatches"].as_u64() >= Some(30)
    })
    .await;
    assert!(piled_up, "the breaker opened and batches piled up");

    laravel.set_status(200);
    let recovered = eventually(PATIENCE, || async {
        let log = gateway.log();
        !records(&log, "circuit breaker CLOSED").is_empty()
    })
    .await;
    let log = gateway.log();
    assert!(recovered, "the breaker closes once Laravel answers\n{log}");

    let opened = records(&log, "circuit breaker OPEN");
    assert_eq!(opened.len(), 1, "one WARN for the whole outage\n{log}");
    assert_eq!(opened[0]["level"], "WARN");
    let closed = records(&log, "circuit breaker CLOSED");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["level"], "INFO");
    assert!(
        closed[0]["held_batches"].as_u64() >= Some(30),
        "{}",
        closed[0]
    );
    assert!(closed[0]["outage_secs"].is_u64(), "{}", closed[0]);

    // Dozens of batches held, a line or two about it, counting the rest.
    let held = records(&log, "holding a batch");
    assert!(
        (1..=2).contains(&held.len()),
        "{} 'holding' lines\n{log}",
        held.len()
    );
    let dropped = records(&log, "dropping a stale QR batch");
    assert!(
        dropped.len() <= 2,
        "{} 'dropping' lines\n{log}",
        dropped.len()
    );
    gateway.terminate();
}
