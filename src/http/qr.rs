//! `GET /sessions/{id}/qr`: the pending QR as JSON (`qr`, `dataUrl`,
//! `expiresAt`), `?format=png` or `?format=svg`. Images come from the render
//! pool's cache; nothing is rendered on an HTTP worker.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use wagate_actors::clock::unix_ms;
use wagate_actors::qr_render::QrFormat;

use super::error::ApiError;
use super::views::{ErrorBody, QrView};
use super::{rfc3339, session_id, AppState};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QrQuery {
    /// `json` (the default), `png` or `svg`.
    format: Option<String>,
}

/// The QR code to scan while the session shows one (`state` `qr`).
#[utoipa::path(get, path = "/sessions/{id}/qr", tag = "sessions",
    params(("id" = String, Path, description = "The session's id: 1 to 64 letters, digits, `_` or `-`", pattern = r"^[A-Za-z0-9_-]{1,64}$"), QrQuery),
    responses(
        (status = 200, description = "The pending QR: JSON, or the image itself", content(
            (QrView = "application/json"),
            (Vec<u8> = "image/png"),
            (String = "image/svg+xml"),
        )),
        (status = 400, description = "`invalid_query`: an unknown format", body = ErrorBody),
        (status = 404, description = "`session_not_found`, or `qr_not_available` (none yet, or already connected)", body = ErrorBody),
    ))]
pub async fn get_qr(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<QrQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let snap = state
        .gateway
        .index()
        .get(&id)
        .ok_or_else(|| ApiError::SessionNotFound(id.clone()))?;
    let qr = snap.pending_qr(unix_ms()).ok_or(ApiError::QrNotAvailable {
        id: id.clone(),
        state: snap.state.as_str(),
    })?;
    let renderer = &state.gateway.renderer();
    let render_err = |e: wagate_actors::qr_render::RenderError| ApiError::Internal(e.to_string());
    let image = |bytes: bytes::Bytes, content_type: &str| {
        HttpResponse::Ok()
            .content_type(content_type)
            .insert_header(("Cache-Control", "no-store"))
            .body(bytes)
    };
    match query.format.as_deref() {
        None | Some("json") => {
            let data_url = renderer.png_data_url(&qr.code).await.map_err(render_err)?;
            Ok(HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(QrView {
                    session_id: id,
                    qr: qr.code.to_string(),
                    data_url,
                    expires_at: rfc3339(qr.expires_at_ms),
                }))
        }
        Some("png") => Ok(image(
            renderer
                .render(&qr.code, QrFormat::Png)
                .await
                .map_err(render_err)?,
            "image/png",
        )),
        Some("svg") => Ok(image(
            renderer
                .render(&qr.code, QrFormat::Svg)
                .await
                .map_err(render_err)?,
            "image/svg+xml",
        )),
        Some(other) => Err(ApiError::InvalidQuery(format!(
            "unknown format {other:?}; use json, png or svg"
        ))),
    }
}
