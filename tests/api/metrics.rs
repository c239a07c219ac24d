//! Observability: mailbox metrics move under load, and the JSON metric
//! endpoints have the old gateway's shapes.

use serde_json::json;

use crate::helpers::{eventually, spawn, test_config, PATIENCE};

use crate::helpers::metric_sample as sample;

#[actix_rt::test]
async fn mailbox_metrics_move_under_load() {
    let gw = spawn(test_config()).await;
    let before = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    let registry_handled = r#"wagate_actor_messages_handled_total{actor="registry"}"#;
    let session_waits = r#"wagate_actor_mailbox_wait_seconds_count{actor="session"}"#;
    let qr_waits = r#"wagate_actor_mailbox_wait_seconds_count{actor="qr_batcher"}"#;

    for i in 0..200 {
        gw.create(&format!("m{i}")).await;
    }
    for i in 0..200 {
        gw.wait_state(&format!("m{i}"), "qr").await;
    }
    for i in 0..50 {
        assert_eq!(
            gw.post(&format!("/sessions/m{i}/logout"), json!({}))
                .await
                .status,
            409,
            "unlinked: nothing to log out"
        );
        let _ = i;
    }
    let moved = eventually(PATIENCE, || async {
        let after = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
        sample(&after, registry_handled) >= sample(&before, registry_handled) + 250.0
            && sample(&after, session_waits) >= sample(&before, session_waits) + 50.0
            && sample(&after, qr_waits) >= sample(&before, qr_waits) + 200.0
    })
    .await;
    assert!(
        moved,
        "{}",
        String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap()
    );
    let text = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    for family in [
        "wagate_actor_mailbox_depth",
        "wagate_actor_handle_seconds_bucket",
        "wagate_sessions{state=\"qr\"} 200",
        "wagate_circuit_breaker_state 0",
        "wagate_qr_events_total",
    ] {
        assert!(text.contains(family), "missing {family}");
    }

    let actors = gw.get("/metrics/actors").await.json();
    let registry = actors["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["actor"] == "registry")
        .unwrap()
        .clone();
    assert!(registry["handled"].as_f64().unwrap() >= 250.0);
    assert!(registry["wait"]["count"].as_u64().unwrap() >= 250);
    assert!(actors["deepestSessionMailboxes"].is_array());

    let batch = gw.get("/metrics/batch").await.json();
    assert_eq!(batch["success"], true);
    for key in [
        "qrBatchSize",
        "statusBatchSize",
        "lastFlushQr",
        "timeSinceLastFlushQr",
    ] {
        assert!(
            batch["metrics"].get(key).is_some(),
            "/metrics/batch lacks {key}"
        );
    }
    let cache = gw.get("/metrics/cache").await.json();
    assert_eq!(cache["metrics"]["sessionKeys"], 200);
    assert_eq!(cache["metrics"]["qrKeys"], 200);
    let health = gw.get("/health").await.json();
    assert_eq!(health["status"], "OK");
    assert_eq!(health["sessions"]["byState"]["qr"], 200);
    assert_eq!(health["circuitBreaker"]["state"], "CLOSED");
    assert_eq!(gw.get("/health/ready").await.status, 200);
    gw.shutdown().await;
}
