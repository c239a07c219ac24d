//! The JSON bodies the API answers with, as types: the handlers serialize
//! these (never an ad-hoc `json!`), and the OpenAPI document's schemas are
//! derived from the same types ([`super::openapi`]), so what the document
//! says is what a client gets. Request bodies live beside the handlers
//! that read them.

use serde::Serialize;
use utoipa::ToSchema;
use wagate_actors::ids::SessionId;

/// Every error: a stable machine-readable `code` and a message a person
/// can act on.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "session_not_found", "message": "session shop-1 not found"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// E.g. `invalid_body`, `session_not_found`, `queue_full`; the list is
    /// in the README's API table.
    pub code: &'static str,
    pub message: String,
}

/// One session, as `GET /sessions/{id}` shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "shop-1", "state": "connected", "reason": null,
    "jid": "5215512345678@s.whatsapp.net", "qrAvailable": false, "qrExpiresAt": null,
    "pairCode": null, "restarts": 0,
    "createdAt": "2026-12-01T10:00:00.000Z", "updatedAt": "2026-12-01T10:00:41.518Z"
}))]
pub struct SessionView {
    #[schema(value_type = String)]
    pub id: SessionId,
    /// `starting`, `qr`, `pairing`, `connected`, `disconnected`,
    /// `logged_out`, `stopped` or `failed`.
    pub state: &'static str,
    /// Why it is in that state (a disconnect's cause, a failure).
    pub reason: Option<String>,
    /// The linked account's JID, once connected.
    pub jid: Option<String>,
    /// A QR code waits to be scanned (`GET /sessions/{id}/qr`).
    pub qr_available: bool,
    pub qr_expires_at: Option<String>,
    /// The code to type on the phone after `POST …/pairing-code`.
    pub pair_code: Option<String>,
    /// Restarts by the supervisor since the session was created.
    pub restarts: u32,
    pub created_at: String,
    pub updated_at: String,
}

/// A page of `GET /sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    /// Sessions on this gateway, in any state.
    pub total: usize,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// The answer to `DELETE /sessions/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    #[schema(value_type = String)]
    pub id: SessionId,
    pub deleted: bool,
}

/// The answer to `stop` (`stopped`) and `restart` (`starting`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StateChanged {
    #[schema(value_type = String)]
    pub id: SessionId,
    pub state: &'static str,
}

/// The answer to `logout` (202: the unlinking goes on).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggingOut {
    #[schema(value_type = String)]
    pub id: SessionId,
    pub logging_out: bool,
}

/// A pairing code to type on the phone (Linked devices → Link with phone
/// number).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"sessionId": "shop-1", "code": "ABCD-EFGH"}))]
pub struct PairingCode {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    pub code: String,
}

/// The pending QR code (`GET /sessions/{id}/qr`, JSON form).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrView {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    /// The text the QR encodes (render it yourself if you like).
    pub qr: String,
    /// The QR as a PNG `data:` URL, ready for an `<img src>`.
    pub data_url: String,
    pub expires_at: String,
}

/// A message accepted for sending (202) or a repeated idempotency key (200).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"messageId": "3EB05A1C93D27E44F0A1", "sessionId": "shop-1", "status": "queued", "sessionConnected": true}))]
pub struct MessageAccepted {
    /// Also the message's WhatsApp id: receipts and `send_result` carry it.
    pub message_id: String,
    #[schema(value_type = String)]
    pub session_id: SessionId,
    /// `queued` when new; the first message's status for a duplicate.
    pub status: &'static str,
    /// New messages only: whether the session was connected when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_connected: Option<bool>,
    /// Duplicates only (`true`): this idempotency key was seen in the last
    /// 24 h; nothing new was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// A message's record (`GET /sessions/{id}/messages/{messageId}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub message_id: String,
    #[schema(value_type = String)]
    pub session_id: SessionId,
    pub to: String,
    /// The `type` it was posted with.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /sessions/{id}/contacts/check`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberChecks {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    /// One per phone asked, in the order given.
    pub results: Vec<NumberCheck>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberCheck {
    /// As it was asked.
    pub phone: String,
    /// `null`: WhatsApp did not say.
    #[serde(rename = "onWhatsApp")]
    pub on_whatsapp: Option<bool>,
    pub jid: Option<String>,
}

/// `POST /sessions/{id}/chats/{to}/typing`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypingShown {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    pub to: String,
    pub state: &'static str,
}

/// `POST /sessions/{id}/chats/{to}/read`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkedRead {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    pub chat: String,
    /// How many message ids were marked.
    pub read: usize,
}

/// `POST /sessions/{id}/simulate/{action}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Simulated {
    #[schema(value_type = String)]
    pub id: SessionId,
    /// The action played.
    pub simulated: &'static str,
}

/// `/health/live` and `/health/ready` when ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    /// `OK`, or `UNAVAILABLE` (then `reason` says why).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}
