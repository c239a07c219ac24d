//! Permanent refusals: a message to a number that is not on WhatsApp fails
//! with a reason a person can act on, never reaches WhatsApp, and Laravel
//! hears `failed` with that reason. Uses the simulator's documented rule
//! (numbers beginning with `0` are not on WhatsApp), the stand-in for the
//! real connector's cached `is_on_whatsapp` check.

use wagate_testkit::FakeLaravel;

use crate::helpers::{message_items, spawn, test_config, PATIENCE};

const NOT_ON_WHATSAPP: &str = "0015550001";
const ON_WHATSAPP: &str = "5215512345678";

#[actix_rt::test]
async fn a_number_not_on_whatsapp_fails_with_the_reason_and_reaches_laravel() {
    let laravel = FakeLaravel::start();
    let mut config = test_config();
    config.laravel.api = laravel.base_url();
    config.batch.messages_interval_ms = 50;
    config.messages.retry_delay_ms = 100;
    let gw = spawn(config).await;
    gw.link("nw").await;

    let r = gw.send_text("nw", NOT_ON_WHATSAPP, "hello?").await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let refused = r.json()["messageId"].as_str().unwrap().to_owned();
    let ok = gw.send_text("nw", ON_WHATSAPP, "hello!").await;
    let fine = ok.json()["messageId"].as_str().unwrap().to_owned();

    let record = gw.wait_message("nw", &refused, "failed").await;
    assert!(
        record["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("0015550001 is not on WhatsApp")),
        "{record}"
    );
    assert_eq!(record["attempts"], 1, "a refusal is not retried: {record}");
    gw.wait_message("nw", &fine, "sent").await;
    let sim = gw.gateway.simulator().cloned().unwrap();
    assert_eq!(sim.deliveries(&refused), 0, "never reached WhatsApp");
    assert_eq!(sim.deliveries(&fine), 1, "other numbers are not affected");

    let reported = laravel
        .wait_for(PATIENCE, |_| {
            message_items(&laravel, "send_result")
                .iter()
                .any(|m| m["messageId"] == refused.as_str() && m["status"] == "failed")
        })
        .await;
    assert!(
        reported,
        "Laravel got {:?}",
        message_items(&laravel, "send_result")
    );
    let result = message_items(&laravel, "send_result")
        .into_iter()
        .find(|m| m["messageId"] == refused.as_str())
        .unwrap();
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("is not on WhatsApp")),
        "{result}"
    );
    gw.shutdown().await;
}
