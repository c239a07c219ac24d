//! Incoming kinds against the docs' real Laravel app: every kind is stored
//! once with its columns, an edit and a revoke change the message they
//! target, and incoming media is fetched by its signed URL after the
//! response and kept with a matching SHA-256.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate_testkit::LaravelApp;

use super::probe::{forward_to, laravel_env, php_eval, query, within, SECRET};
use crate::helpers::{spawn, test_config, TestGateway, PATIENCE};

async fn incoming(gw: &TestGateway, body: Value) {
    let r = gw.post("/sessions/rk-1/simulate/incoming", &body).await;
    assert_eq!(r.status, 200, "{body}: {}", r.text());
}

async fn rows(app: &Arc<LaravelApp>) -> Vec<Value> {
    query(
        app,
        "SELECT wa_id, kind, text, target_wa_id, quoted_wa_id, details, media_path, edited_at, revoked_at FROM whatsapp_messages WHERE direction = 'in' ORDER BY id",
    )
    .await
}

#[actix_rt::test]
async fn the_docs_laravel_app_stores_every_incoming_kind_and_fetches_media() {
    let app = Arc::new(LaravelApp::start(&laravel_env()));
    let gw = spawn(forward_to(test_config(), &app, SECRET)).await;
    gw.link("rk-1").await;
    incoming(&gw, json!({"from": "5215550001", "text": "original"})).await;
    assert!(
        within(PATIENCE, || async { !rows(&app).await.is_empty() }).await,
        "the text never reached Laravel: {}",
        app.log()
    );
    let target = rows(&app).await[0]["wa_id"].as_str().unwrap().to_owned();

    let pdf = b"%PDF-1.4 the invoice".to_vec();
    for body in [
        json!({"from": "5215550001", "type": "edit", "messageId": target, "text": "edited"}),
        json!({"from": "5215550001", "type": "reaction", "messageId": target, "emoji": "👍"}),
        json!({"from": "5215550001", "type": "location", "lat": 1.5, "lng": 2.5}),
        json!({"from": "5215550001", "type": "document", "base64": B64.encode(&pdf),
               "mimeType": "application/pdf", "fileName": "invoice.pdf", "caption": "pay me",
               "quotedMessageId": target}),
        json!({"from": "5215550001", "type": "revoke", "messageId": target}),
    ] {
        incoming(&gw, body).await;
    }
    let done = within(PATIENCE, || async {
        let r = rows(&app).await;
        r.len() == 6
            && r[0]["text"] == "edited"
            && !r[0]["revoked_at"].is_null()
            && r.iter()
                .any(|m| m["kind"] == "document" && !m["media_path"].is_null())
    })
    .await;
    let all = rows(&app).await;
    assert!(done, "{all:#?}\n{}", app.log());
    let kinds: Vec<&str> = all.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["text", "edit", "reaction", "location", "document", "revoke"]
    );
    assert_eq!(all[2]["target_wa_id"], target.as_str());
    let reaction: Value = serde_json::from_str(all[2]["details"].as_str().unwrap()).unwrap();
    assert_eq!(reaction["emoji"], "👍");
    let document = &all[4];
    assert_eq!(document["text"], "pay me");
    assert_eq!(document["quoted_wa_id"], target.as_str());
    let stored = php_eval(
        &app,
        "return hash_file('sha256', storage_path('app/'.\\App\\Models\\WhatsappMessage::where('kind', 'document')->first()->media_path));".into(),
    )
    .await;
    assert_eq!(
        stored,
        hex::encode(Sha256::digest(&pdf)),
        "the fetched file is the media"
    );
    gw.shutdown().await;
}
