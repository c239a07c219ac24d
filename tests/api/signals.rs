//! A real SIGTERM to the gateway process (what `docker stop` sends): the
//! gateway's own drain runs, not actix-server's, so a status change and an
//! incoming message still waiting in the batchers reach Laravel before the
//! process exits.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wagate_testkit::{FakeLaravel, GatewayClient, GatewayProcess};

use crate::helpers::{eventually, metric_sample, PATIENCE};

const BINARY: &str = env!("CARGO_BIN_EXE_wagate");

#[actix_rt::test]
async fn sigterm_delivers_buffered_status_and_incoming_message() {
    let laravel = FakeLaravel::start();
    let api = laravel.base_url();
    let mut gw = GatewayProcess::start(
        Path::new(BINARY),
        &[
            ("LARAVEL_API", api.as_str()),
            // Nothing in the normal lanes would leave on its own in time.
            ("BATCH_INTERVAL", "600000"),
            ("MESSAGES_BATCH_INTERVAL", "600000"),
            ("SIM_QR_FIRST_MS", "100"),
            ("SIM_QR_ROTATE_MS", "600000"),
            ("SESSION_ARBITERS", "2"),
            ("CLUSTER_WORKERS", "2"),
        ],
    );
    let remote = GatewayClient::new(&gw.base_url());
    let (status, body) = remote
        .post("/sessions", &json!({ "id": "shop" }))
        .await
        .status_and_json();
    assert_eq!(status, 201, "{body}");
    remote.wait_state("shop", "qr").await;
    let (status, body) = remote
        .post("/sessions/shop/simulate/scan", &json!({}))
        .await
        .status_and_json();
    assert_eq!(status, 200, "{body}");
    remote.wait_state("shop", "connected").await;

    // A normal-lane status (`starting` of a second session) and an incoming
    // message, both left waiting in the batchers.
    let (status, body) = remote
        .post("/sessions", &json!({ "id": "late" }))
        .await
        .status_and_json();
    assert_eq!(status, 201, "{body}");
    let (status, body) = remote
        .post(
            "/sessions/shop/simulate/incoming",
            &json!({ "from": "5215512345678", "text": "just before the deploy" }),
        )
        .await
        .status_and_json();
    assert_eq!(status, 200, "{body}");
    let buffered = eventually(PATIENCE, || async {
        let m = remote.get_text("/metrics").await;
        metric_sample(
            &m,
            "wagate_actor_messages_handled_total{actor=\"inbound_batcher\"}",
        ) >= 1.0
    })
    .await;
    assert!(buffered, "the incoming message reached the inbound batcher");
    let items = |path: &str, field: &str| -> Vec<serde_json::Value> {
        laravel
            .requests_to(path)
            .iter()
            .flat_map(|r| r.json.as_ref().unwrap()[field].as_array().unwrap().clone())
            .collect()
    };
    assert!(
        !items("/whatsapp/status/batch", "statuses")
            .iter()
            .any(|s| s["sessionId"] == "late"),
        "`late`'s status is still buffered"
    );
    assert!(items("/whatsapp/messages/batch", "messages").is_empty());

    let exit = gw.terminate().expect("the process ran");
    assert!(
        exit.success(),
        "clean exit after SIGTERM: {exit:?}\n{}",
        gw.log()
    );
    assert!(
        items("/whatsapp/status/batch", "statuses")
            .iter()
            .any(|s| s["sessionId"] == "late"),
        "the buffered status reached Laravel before exit:\n{}",
        gw.log()
    );
    let messages = items("/whatsapp/messages/batch", "messages");
    assert!(
        messages
            .iter()
            .any(|m| m["text"] == "just before the deploy"),
        "the buffered incoming message reached Laravel before exit: {messages:?}\n{}",
        gw.log()
    );
    let _ = Duration::ZERO;
}
