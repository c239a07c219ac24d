//! The dashboard: `GET /dashboard` and its two assets, embedded in the binary
//! from `assets/dashboard/` (no CDN, no build step), and `GET /` pointing at
//! it. The page is static and needs no key to load; everything it shows
//! comes from the keyed API, with the key the operator types once (kept in
//! the tab's session storage, sent as `X-Api-Key`, never in a URL). Served
//! with a strict Content-Security-Policy and an ETag. Mounted by
//! [`super::configure`].

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::routes::Routes;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../assets/dashboard/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/dashboard/app.css"),
    },
];

/// Scripts and styles from this origin only, images also from `blob:` (the
/// QR code is fetched with the key and shown from a blob), requests to
/// this origin only, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub fn routes() -> Routes {
    Routes::new("/dashboard")
        .at("", Method::GET, page)
        .at("/{asset}", Method::GET, asset)
}

pub fn root_routes() -> Routes {
    Routes::new("").at("/", Method::GET, root)
}

/// `"<first 16 hex digits of SHA-256>"`, as an ETag.
fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..8]))
}

fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let tag = etag(asset.body);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if fresh {
        return res.finish();
    }
    res.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    ))
    .body(asset.body)
}

/// The dashboard: sessions with live states, linking by QR or pairing code,
/// a session's actions and recent events, the gateway's health.
#[utoipa::path(get, path = "/dashboard", tag = "docs", security(()),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag"),
    ))]
pub(crate) async fn page(req: HttpRequest) -> HttpResponse {
    serve(&req, &ASSETS[0])
}

/// The dashboard's script and stylesheet.
#[utoipa::path(get, path = "/dashboard/{asset}", tag = "docs", security(()),
    params(("asset" = String, Path, description = "`app.js` or `app.css`")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag"),
        (status = 404, description = "`not_found`: no such file", body = super::views::ErrorBody),
    ))]
pub(crate) async fn asset(
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    ASSETS[1..]
        .iter()
        .find(|a| a.name == name.as_str())
        .map(|a| serve(&req, a))
        .ok_or_else(|| ApiError::RouteNotFound {
            method: "GET".to_owned(),
            path: req.path().to_owned(),
        })
}

/// To the dashboard.
#[utoipa::path(get, path = "/", tag = "docs", security(()),
    responses((status = 302, description = "To `/dashboard`")))]
pub(crate) async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/dashboard"))
        .finish()
}

#[cfg(test)]
mod tests {
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::App;

    use super::*;

    #[actix_rt::test]
    async fn assets_are_served_with_their_type_a_csp_and_an_etag_that_revalidates() {
        let app = init_service(App::new().service(routes().scope())).await;
        for (path, ty) in [
            ("/dashboard", "text/html"),
            ("/dashboard/app.js", "text/javascript"),
            ("/dashboard/app.css", "text/css"),
        ] {
            let res = call_service(&app, TestRequest::get().uri(path).to_request()).await;
            assert_eq!(res.status(), 200, "{path}");
            let h = res.headers();
            assert!(h
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(ty));
            assert!(h
                .get(header::CONTENT_SECURITY_POLICY)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("script-src 'self'"));
            let tag = h.get(header::ETAG).unwrap().clone();
            assert!(!read_body(res).await.is_empty());
            let again = TestRequest::get()
                .uri(path)
                .insert_header((header::IF_NONE_MATCH, tag))
                .to_request();
            assert_eq!(call_service(&app, again).await.status(), 304, "{path}");
        }
        let res = call_service(
            &app,
            TestRequest::get().uri("/dashboard/secret.txt").to_request(),
        )
        .await;
        assert_eq!(res.status(), 404);
    }

    #[test]
    fn the_page_loads_only_what_is_embedded() {
        let html = ASSETS[0].body;
        for a in &ASSETS[1..] {
            assert!(
                html.contains(&format!("/dashboard/{}", a.name)),
                "{}",
                a.name
            );
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!ASSETS[1].body.contains("localStorage"));
    }
}
