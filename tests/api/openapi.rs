//! The OpenAPI document and Swagger UI over real HTTP: served without a
//! key (the API itself still wants one), the UI's page and assets come
//! from the binary, and real answers have exactly the shape the document's
//! schemas give (every key a documented property, every required property
//! present). That the document lists exactly the router's routes is a unit
//! test in `src/http/openapi.rs`.

use serde_json::{json, Value};

use crate::helpers::{spawn, test_config};

/// The schema named `name` in the document's components.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s
}

/// `body` has the shape of schema `name`: no key the schema lacks, no
/// required property missing; nested objects named by `$ref` likewise.
fn conforms(doc: &Value, name: &str, body: &Value) {
    let s = schema(doc, name);
    let props = s["properties"].as_object().expect("an object schema");
    let object = body.as_object().unwrap_or_else(|| panic!("{name}: {body}"));
    for key in object.keys() {
        assert!(
            props.contains_key(key),
            "{name}: undocumented key {key:?} in {body}"
        );
    }
    for required in s["required"].as_array().into_iter().flatten() {
        let key = required.as_str().unwrap();
        assert!(
            object.contains_key(key),
            "{name}: required {key:?} missing in {body}"
        );
    }
    for (key, prop) in props {
        if let (Some(r), Some(v)) = (prop["$ref"].as_str(), object.get(key)) {
            conforms(doc, r.rsplit('/').next().unwrap(), v);
        }
    }
}

#[actix_rt::test]
async fn the_document_and_the_ui_are_served_without_a_key_from_the_binary() {
    let mut config = test_config();
    config.server.api_keys = "k-0123456789abcdef".into();
    let gw = spawn(config).await;

    let doc = gw.get("/openapi.json").await;
    assert_eq!(doc.status, 200, "{}", doc.text());
    assert_eq!(doc.json()["openapi"], "3.1.0");
    assert_eq!(
        gw.get("/sessions").await.status,
        401,
        "the API still wants a key"
    );

    // `/docs` redirects to `/docs/` (the client follows it).
    for path in ["/docs", "/docs/"] {
        let page = gw.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(
            page.text().contains("swagger-ui"),
            "{path}: {}",
            page.text()
        );
    }
    let initializer = gw.get("/docs/swagger-initializer.js").await;
    assert_eq!(initializer.status, 200);
    assert!(
        initializer.text().contains("/openapi.json"),
        "the UI reads this document: {}",
        initializer.text()
    );
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"] {
        let r = gw.get(asset).await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.body.len() > 1000, "{asset} is {} bytes", r.body.len());
    }
    gw.shutdown().await;
}

#[actix_rt::test]
async fn answers_have_the_shapes_the_document_gives() {
    let gw = spawn(test_config()).await;
    let doc = gw.get("/openapi.json").await.json();

    let (status, created) = gw
        .post("/sessions", json!({ "id": "doc-1" }))
        .await
        .status_and_json();
    assert_eq!(status, 201);
    conforms(&doc, "SessionView", &created);
    gw.wait_state("doc-1", "qr").await;
    conforms(&doc, "SessionPage", &gw.get("/sessions").await.json());
    conforms(&doc, "QrView", &gw.get("/sessions/doc-1/qr").await.json());
    gw.simulate("doc-1", "scan").await;
    gw.wait_state("doc-1", "connected").await;

    let body = json!({ "to": "5215512345678", "text": "hi", "idempotencyKey": "k1" });
    let (status, accepted) = gw
        .post("/sessions/doc-1/messages", &body)
        .await
        .status_and_json();
    assert_eq!(status, 202);
    conforms(&doc, "MessageAccepted", &accepted);
    let (status, duplicate) = gw
        .post("/sessions/doc-1/messages", &body)
        .await
        .status_and_json();
    assert_eq!(status, 200);
    conforms(&doc, "MessageAccepted", &duplicate);
    let id = accepted["messageId"].as_str().unwrap();
    let record = gw.wait_message("doc-1", id, "sent").await;
    conforms(&doc, "MessageView", &record);

    conforms(&doc, "HealthView", &gw.get("/health").await.json());
    conforms(&doc, "Probe", &gw.get("/health/ready").await.json());
    let (status, error) = gw
        .post("/sessions", json!({ "id": "doc-1" }))
        .await
        .status_and_json();
    assert_eq!(status, 409);
    conforms(&doc, "ErrorBody", &error);
    let (status, stopped) = gw
        .post("/sessions/doc-1/stop", json!({}))
        .await
        .status_and_json();
    assert_eq!(status, 200);
    conforms(&doc, "StateChanged", &stopped);
    let deleted = gw.request("DELETE", "/sessions/doc-1", None).await.json();
    conforms(&doc, "Deleted", &deleted);
    gw.shutdown().await;
}
