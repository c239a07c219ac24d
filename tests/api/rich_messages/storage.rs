//! Storage of rich messages: media blobs live exactly as long as their
//! message, and entries stored before rich messages existed are still sent.

use super::*;

#[actix_rt::test]
async fn blobs_are_stored_until_the_message_ends_and_never_leak_in_redis() {
    let redis = RedisServer::start();
    let mut config = redis_config(&redis);
    config.simulator.qr_first_ms = 60_000;
    config.simulator.qr_rotate_ms = 60_000;
    config.messages.max_retries = 0;
    let gw = spawn(config).await;
    let blobs = || async { gw.gateway.messages().blob_count().await.unwrap() };
    gw.create("blobs").await;
    gw.wait_state("blobs", "qr").await;

    // Accepted while the session is not linked: the bytes wait in Redis.
    let image = |n: u8| {
        let mut b = png();
        b.push(n);
        json!({"to": TO, "type": "image", "base64": B64.encode(&b), "idempotencyKey": format!("img-{n}")})
    };
    let first = accepted(&gw, "blobs", image(1)).await;
    let second = accepted(&gw, "blobs", image(2)).await;
    assert_eq!(blobs().await, 2, "accepted means stored");
    // A repeated idempotency key stores nothing new.
    let again = post(&gw, "blobs", image(1)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["messageId"], first.as_str());
    assert_eq!(blobs().await, 2, "the duplicate's blob was dropped");
    // Media bound for a number that is not on WhatsApp fails for good.
    let doomed = accepted(&gw, "blobs", json!({"to": "0015550001", "type": "document", "base64": B64.encode(b"%PDF-1.7"), "fileName": "x.pdf"})).await;
    // An edit of a message this account never sent is refused for good.
    let bad_edit = accepted(
        &gw,
        "blobs",
        json!({"to": TO, "type": "edit", "messageId": "3EB0000000000000BEEF", "text": "x"}),
    )
    .await;
    assert_eq!(blobs().await, 3);

    gw.simulate("blobs", "scan").await;
    gw.wait_message("blobs", &first, "sent").await;
    gw.wait_message("blobs", &second, "sent").await;
    let failed = gw.wait_message("blobs", &doomed, "failed").await;
    assert_eq!(failed["type"], "document");
    let failed = gw.wait_message("blobs", &bad_edit, "failed").await;
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap()
            .contains("not sent by this account"),
        "{failed}"
    );
    let gone = eventually(PATIENCE, || async { blobs().await == 0 }).await;
    assert!(
        gone,
        "{} blobs left after sends and failures",
        blobs().await
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn texts_stored_before_rich_messages_are_still_sent() {
    let redis = RedisServer::start();
    let gw = spawn(redis_config(&redis)).await;
    gw.link("legacy").await;
    // An entry and record exactly as the text-only gateway wrote them.
    let id = "3EB00123456789ABCDEF";
    let entry = json!({"id": id, "session": "legacy", "to": TO, "text": "from before", "createdMs": 1_767_225_600_000u64});
    let record = json!({"messageId": id, "session": "legacy", "to": TO, "status": "queued", "attempts": 0, "lastError": null, "createdMs": 1_767_225_600_000u64, "updatedMs": 1_767_225_600_000u64});
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["SET", &format!("wagate:message:{id}"), &record.to_string()]);
    cli(&["XADD", "wagate:messages", "*", "m", &entry.to_string()]);
    // A new message wakes the queue, which reads both.
    let new = gw.send_text("legacy", TO, "from after").await.json()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = gw.wait_message("legacy", id, "sent").await;
    assert_eq!(old["type"], "text");
    gw.wait_message("legacy", &new, "sent").await;
    let sim = gw.gateway.simulator().cloned().unwrap();
    assert_eq!(
        sim.sent_message(id).unwrap().content,
        OutboundContent::Text {
            text: "from before".into()
        }
    );
    gw.shutdown().await;
}
