//! Incoming media at receive time: the driver calls [`keep`] for each
//! message of a batch the durability hook holds, before it journals the
//! message. It downloads and decrypts the media with the client (WhatsApp's
//! links expire and need the account's keys) and keeps the bytes in
//! [`IncomingMedia`], so the item Laravel gets names a signed gateway URL.

use std::time::Duration;

use whatsapp_rust::types::events::InboundMessage;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::Client;

use super::kinds;
use crate::connector::{IncomingMessage, MessageKind};
use crate::ids::SessionId;
use crate::incoming_media::{IncomingMedia, NewMedia};

/// Longest download of one incoming media (the batch's ack waits for it;
/// WhatsApp redelivers an unacked batch).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// `m` with its media downloaded and kept, if `source` carries media.
/// Media that cannot be fetched or kept goes on as `unsupported` with its
/// type, logged: the message itself is not held back by a CDN.
pub async fn keep(
    client: &Client,
    keeper: &IncomingMedia,
    session: &SessionId,
    source: &InboundMessage,
    mut m: IncomingMessage,
) -> IncomingMessage {
    let Some(media) = kinds::media_of(source.message.get_base_message()) else {
        return m;
    };
    let bytes =
        match tokio::time::timeout(DOWNLOAD_TIMEOUT, client.download(media.downloadable)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::warn!(session = %session, id = %m.id, error = %e,
                "cannot download incoming media; forwarding the message as unsupported");
                return m;
            }
            Err(_) => {
                tracing::warn!(session = %session, id = %m.id,
                "incoming media download timed out; forwarding the message as unsupported");
                return m;
            }
        };
    let kind = media.kind;
    let new = NewMedia {
        kind,
        mime_type: media.mime_type,
        file_name: media.file_name,
        bytes: bytes.into(),
    };
    match keeper
        .keep(session, &m.id, new, crate::clock::unix_ms())
        .await
    {
        Ok(media) => m.kind = MessageKind::Media { kind, media },
        Err(e) => {
            tracing::warn!(session = %session, id = %m.id, error = %crate::error_chain::Chain(&e),
            "cannot keep incoming media; forwarding the message as unsupported")
        }
    }
    m
}
