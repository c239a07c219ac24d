//! The API described: `GET /openapi.json` (OpenAPI 3.1, built by utoipa
//! from the handlers' `#[utoipa::path]` annotations and the request and
//! response types they use, see [`super::views`]) and Swagger UI at
//! `GET /docs/` (its assets are inside the binary: no CDN, works offline).
//! Neither needs a key; "Authorize" in the UI takes one for the calls.
//! The unit test below checks the document's operations against
//! [`super::route_table`], so a route cannot go undocumented.

use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::routes::Routes;
use super::{
    chats, dashboard, events, health, keys, media_download, messages, metrics, qr, sessions,
    simulate, views, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wagate",
        description = "A multi-session WhatsApp gateway: link accounts by QR code or pairing code, \
            send messages of every kind through a durable per-session queue, and hear about QR \
            codes, statuses and incoming messages in batched, signed requests to your Laravel \
            app (its contract is docs/laravel.md). Every error is `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "MIT"),
    ),
    paths(
        sessions::create, sessions::list, sessions::get, sessions::delete,
        sessions::stop, sessions::restart, sessions::logout, sessions::pairing_code,
        qr::get_qr,
        messages::send, messages::status,
        chats::check, chats::typing, chats::read,
        simulate::simulate,
        health::health, health::live, health::ready,
        metrics::prometheus_text, metrics::batch, metrics::cache, metrics::actors,
        media_download::download,
        events::sse, events::websocket,
        document, docs,
        dashboard::page, dashboard::asset, dashboard::root,
        keys::create, keys::list, keys::delete,
        webhooks::create, webhooks::list, webhooks::get, webhooks::delete,
    ),
    components(schemas(views::ErrorBody)),
    modifiers(&Keys, &CommonResponses),
    security(("bearer" = []), ("apiKey" = [])),
    tags(
        (name = "sessions", description = "Link, list, stop, restart, log out and delete WhatsApp accounts"),
        (name = "messages", description = "Send messages and read their status"),
        (name = "chats", description = "Number checks, typing and read receipts"),
        (name = "simulator", description = "The phone's side, when CONNECTOR=simulator"),
        (name = "health", description = "Health and probes (no key)"),
        (name = "metrics", description = "Prometheus and JSON metrics (METRICS_KEY when set)"),
        (name = "media", description = "Incoming media by signed URL"),
        (name = "keys", description = "Scoped API keys: chosen sessions, chosen actions (admin keys only)"),
        (name = "webhooks", description = "Live events POSTed to your URLs, signed, retried, each receiver with its own breaker (admin keys only)"),
        (name = "events", description = "Live events: states, QR codes, messages, receipts, send results (SSE and WebSocket)"),
        (name = "docs", description = "This document, its UI and the dashboard (no key to load; the dashboard asks for one)"),
    ),
)]
pub struct ApiDoc;

/// The two ways to send an API key (`API_KEYS`).
struct Keys;

impl Modify for Keys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The answers many operations share, added here once rather than on each
/// handler: 429 `rate_limited` (`http::rate_limit`) and 403
/// `key_out_of_scope` (`http::access`) on every keyed route, 400
/// `invalid_session_id` wherever a session id is in the path, and 400/413/
/// 415 wherever a body is read.
struct CommonResponses;

/// Adds `text` to the `code` answer of `responses`, creating it (with the
/// error body) when absent.
fn ensure(responses: &mut utoipa::openapi::Responses, code: &str, text: &str) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    match responses.responses.get_mut(code) {
        Some(RefOr::T(r)) if !r.description.contains(text) => {
            r.description = format!("{}; or {text}", r.description);
        }
        Some(_) => {}
        None => {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(text)
                .content("application/json", body)
                .build();
            responses
                .responses
                .insert(code.to_owned(), RefOr::T(response));
        }
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const LIMITED: &str = "`rate_limited`: over `RATE_LIMIT_PER_IP` or `RATE_LIMIT_PER_KEY`, with `Retry-After` and `RateLimit-*` headers";
        const SCOPE: &str =
            "`key_out_of_scope`: a scoped key whose sessions or actions do not cover this call";
        const BAD_ID: &str = "`invalid_session_id`";
        let open = [
            "/health",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/media",
            "/dashboard",
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            let keyed = !(path == "/" || open.iter().any(|p| path.starts_with(p)));
            let session_path = path.starts_with("/sessions/{id}");
            let ops = [
                (false, &mut item.get),
                (true, &mut item.post),
                (true, &mut item.put),
                (true, &mut item.delete),
                (true, &mut item.patch),
            ];
            for (command, op) in ops {
                let Some(op) = op else { continue };
                if keyed {
                    ensure(&mut op.responses, "429", LIMITED);
                    ensure(&mut op.responses, "403", SCOPE);
                }
                if session_path {
                    ensure(&mut op.responses, "400", BAD_ID);
                }
                // Commands go through the registry, which may refuse any
                // of them for the session's state or be unreachable.
                let registry_command = command
                    && (path == "/sessions/{id}"
                        || ["/stop", "/restart", "/logout", "/pairing-code"]
                            .iter()
                            .any(|end| path.ends_with(end)));
                if registry_command {
                    ensure(
                        &mut op.responses,
                        "409",
                        "`session_not_running` or `conflict`",
                    );
                    ensure(
                        &mut op.responses,
                        "503",
                        "`unavailable` or `store_unavailable`: nothing was changed",
                    );
                }
                if op.request_body.is_some() {
                    ensure(&mut op.responses, "400", "`invalid_json` or `invalid_body`");
                    ensure(&mut op.responses, "413", "`payload_too_large`");
                    ensure(
                        &mut op.responses,
                        "415",
                        "`unsupported_media_type`: not the body's type",
                    );
                }
            }
        }
    }
}

/// The document as served, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

pub fn routes() -> Routes {
    Routes::new("/openapi.json").at("", Method::GET, document)
}

pub fn docs_routes() -> Routes {
    Routes::new("/docs").at("", Method::GET, docs)
}

/// Swagger UI's page and assets under `/docs/`, reading `/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").config(Config::from("/openapi.json"))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "docs", security(()),
    responses((status = 200, description = "The document", body = Object)))]
pub(crate) async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

/// Swagger UI, to read the API and try it (its page is `/docs/`).
#[utoipa::path(get, path = "/docs", tag = "docs", security(()),
    responses((status = 308, description = "To `/docs/`")))]
pub(crate) async fn docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every operation of the document, as `METHOD /path`.
    fn documented() -> BTreeSet<String> {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    ops.insert(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        ops
    }

    #[test]
    fn the_document_describes_exactly_the_routes_the_router_serves() {
        let served: BTreeSet<String> = super::super::route_table()
            .into_iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "served but not documented: {undocumented:?}; documented but not served: {unserved:?}"
        );
    }

    #[test]
    fn keyed_routes_say_they_may_be_rate_limited_and_open_ones_do_not() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let paths = &doc["paths"];
        let r = &paths["/sessions"]["get"]["responses"]["429"];
        assert!(r["description"].as_str().unwrap().contains("rate_limited"));
        let queue = &paths["/sessions/{id}/messages"]["post"]["responses"]["429"];
        let text = queue["description"].as_str().unwrap();
        assert!(
            text.contains("queue_full") && text.contains("rate_limited"),
            "{text}"
        );
        assert!(paths["/health"]["get"]["responses"]["429"].is_null());
    }

    #[test]
    fn every_operation_documents_its_success_and_its_errors_as_error_bodies() {
        let doc: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses
                        .keys()
                        // 101: the WebSocket upgrade of /events/ws.
                        .any(|c| c.starts_with('2') || c.starts_with('3') || c == "101"),
                    "{method} {path} has no success response"
                );
                for (code, r) in responses {
                    let json = &r["content"]["application/json"]["schema"]["$ref"];
                    if code.starts_with('4')
                        && *json != serde_json::Value::Null
                        && path != "/health/ready"
                    {
                        assert_eq!(
                            json, "#/components/schemas/ErrorBody",
                            "{method} {path} {code} is not an ErrorBody"
                        );
                    }
                }
            }
        }
    }
}
