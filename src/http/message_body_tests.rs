//! Unit tests of [`super::validate`] (kept beside it so the body's file
//! stays short).

use std::time::Duration;

use super::*;

fn body(json: serde_json::Value) -> SendBody {
    serde_json::from_value(json).expect("a body")
}

async fn code(json: serde_json::Value) -> String {
    let limits = MediaLimits {
        max_bytes: 1024,
        fetch_timeout: Duration::from_secs(1),
        allow_private: false,
    };
    match validate(body(json), &limits).await {
        Ok(d) => format!("ok {}", d.content.kind().as_str()),
        Err(e) => e.code().to_owned(),
    }
}

#[actix_rt::test]
async fn each_kind_takes_its_own_fields() {
    use serde_json::json;
    let to = "5215512345678";
    let cases = [
        (json!({"to": to, "text": "hi"}), "ok text"),
        (
            json!({"to": to, "type": "poll", "text": "hi"}),
            "unknown_message_type",
        ),
        (json!({"to": to, "type": "text"}), "missing_field"),
        (json!({"to": to}), "invalid_json"),
        (json!({"to": to, "text": "  "}), "invalid_body"),
        (
            json!({"to": to, "type": "text", "text": "hi", "lat": 1.0}),
            "field_not_allowed",
        ),
        (
            json!({"to": to, "type": "location", "lat": 19.4, "lng": -99.1, "name": "Zócalo"}),
            "ok location",
        ),
        (
            json!({"to": to, "type": "location", "lat": 91.0, "lng": 0.0}),
            "invalid_body",
        ),
        (
            json!({"to": to, "type": "location", "lat": 1.0}),
            "missing_field",
        ),
        (
            json!({"to": to, "type": "contact", "vcard": "BEGIN:VCARD\nFN:A\nEND:VCARD"}),
            "ok contact",
        ),
        (
            json!({"to": to, "type": "contact", "vcard": "Ana"}),
            "invalid_body",
        ),
        (
            json!({"to": to, "type": "reaction", "messageId": "3EB0AA", "emoji": "👍"}),
            "ok reaction",
        ),
        (
            json!({"to": to, "type": "reaction", "messageId": "3EB0AA", "emoji": ""}),
            "ok reaction",
        ),
        (
            json!({"to": to, "type": "reaction", "messageId": "3EB0AA", "emoji": "nice"}),
            "invalid_body",
        ),
        (
            json!({"to": to, "type": "reaction", "messageId": "3EB0AA", "emoji": "👍", "quotedMessageId": "X"}),
            "field_not_allowed",
        ),
        (
            json!({"to": to, "type": "edit", "messageId": "3EB0AA", "text": "fixed"}),
            "ok edit",
        ),
        (
            json!({"to": to, "type": "revoke", "messageId": "3EB0AA"}),
            "ok revoke",
        ),
        (
            json!({"to": to, "type": "revoke", "messageId": "no spaces"}),
            "invalid_body",
        ),
        (
            json!({"to": to, "type": "document", "base64": "JVBERi0xLjc=", "mimeType": "application/pdf"}),
            "missing_field",
        ),
        (
            json!({"to": to, "type": "document", "base64": "JVBERi0xLjc=", "fileName": "a.pdf"}),
            "ok document",
        ),
        (
            json!({"to": to, "type": "image", "base64": "JVBERi0xLjc=", "url": "http://x/y"}),
            "invalid_body",
        ),
        (json!({"to": to, "type": "image"}), "missing_field"),
        (
            json!({"to": to, "type": "image", "base64": "%%%"}),
            "invalid_base64",
        ),
        (
            json!({"to": to, "type": "image", "base64": "JVBERi0xLjc="}),
            "invalid_body",
        ),
        (
            json!({"to": to, "text": "hi", "mentions": ["5215500000001", "52155@lid"]}),
            "ok text",
        ),
        (
            json!({"to": to, "text": "hi", "mentions": ["120363@g.us"]}),
            "invalid_body",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(code(json.clone()).await, want, "{json}");
    }
}

#[actix_rt::test]
async fn mentions_become_user_jids() {
    let limits = MediaLimits {
        max_bytes: 1024,
        fetch_timeout: Duration::from_secs(1),
        allow_private: false,
    };
    let d = validate(
        body(serde_json::json!({"to": "120363-1234@g.us", "text": "hi @ana", "mentions": ["+5215500000001"], "quotedMessageId": "3EB0AB"})),
        &limits,
    )
    .await
    .unwrap();
    assert_eq!(d.mentions, ["5215500000001@s.whatsapp.net"]);
    assert_eq!(d.quoted_message_id.as_deref(), Some("3EB0AB"));
    assert_eq!(d.to, "120363-1234@g.us");
}
