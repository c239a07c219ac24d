//! What an outbound message says: [`OutboundContent`], one enum for every
//! kind `POST /sessions/{id}/messages` accepts (text, media, location,
//! contact, reaction, edit, revoke). It is stored in the message log as
//! part of [`super::OutboundMessage`], read back by the `MessageQueue` and
//! handed to the connector as is. Media bytes are not in it: they live in
//! the log's blob store under the message id ([`super::MessageLog::store_blob`]);
//! [`MediaInfo`] only describes them.

use serde::{Deserialize, Serialize};

/// Longest emoji accepted for a reaction, in bytes (flags and skin-tone
/// sequences run to ~30 bytes; this leaves room without accepting prose).
pub const MAX_EMOJI_BYTES: usize = 64;

/// The kind of an outbound message, as the API names it (`type`) and as
/// `send_result` reports it (`kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    /// Records written before rich messages existed carry no kind: text.
    #[default]
    Text,
    Image,
    Video,
    Audio,
    Voice,
    Document,
    Sticker,
    Location,
    Contact,
    Reaction,
    Edit,
    Revoke,
}

impl ContentKind {
    pub const ALL: [ContentKind; 12] = [
        ContentKind::Text,
        ContentKind::Image,
        ContentKind::Video,
        ContentKind::Audio,
        ContentKind::Voice,
        ContentKind::Document,
        ContentKind::Sticker,
        ContentKind::Location,
        ContentKind::Contact,
        ContentKind::Reaction,
        ContentKind::Edit,
        ContentKind::Revoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Text => "text",
            ContentKind::Image => "image",
            ContentKind::Video => "video",
            ContentKind::Audio => "audio",
            ContentKind::Voice => "voice",
            ContentKind::Document => "document",
            ContentKind::Sticker => "sticker",
            ContentKind::Location => "location",
            ContentKind::Contact => "contact",
            ContentKind::Reaction => "reaction",
            ContentKind::Edit => "edit",
            ContentKind::Revoke => "revoke",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// Kinds that carry media bytes.
    pub fn is_media(self) -> bool {
        matches!(
            self,
            ContentKind::Image
                | ContentKind::Video
                | ContentKind::Audio
                | ContentKind::Voice
                | ContentKind::Document
                | ContentKind::Sticker
        )
    }

    /// Kinds that act on an earlier message (`messageId`) instead of
    /// starting a new one: no quote, no mentions.
    pub fn targets_a_message(self) -> bool {
        matches!(
            self,
            ContentKind::Reaction | ContentKind::Edit | ContentKind::Revoke
        )
    }
}

/// The stored description of a message's media; the bytes are the blob
/// stored under the message id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfo {
    /// Checked against the kind and the bytes at intake.
    pub mime_type: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes: the connector checks the blob against it,
    /// so a blob that changed or was cut is never sent.
    pub sha256: String,
    /// Where the gateway fetched it, when it came by URL (diagnostics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
}

/// What one outbound message says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OutboundContent {
    Text {
        text: String,
    },
    Image {
        media: MediaInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Video {
        media: MediaInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Audio {
        media: MediaInfo,
    },
    /// A push-to-talk voice note: always Opus in OGG (checked at intake).
    Voice {
        media: MediaInfo,
    },
    #[serde(rename_all = "camelCase")]
    Document {
        media: MediaInfo,
        file_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Sticker {
        media: MediaInfo,
    },
    Location {
        lat: f64,
        lng: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Contact {
        vcard: String,
    },
    /// An empty `emoji` removes this account's earlier reaction.
    #[serde(rename_all = "camelCase")]
    Reaction {
        message_id: String,
        emoji: String,
        /// The target was sent by this account (WhatsApp keys a message
        /// by its id and whether it is one's own).
        #[serde(default)]
        from_me: bool,
    },
    #[serde(rename_all = "camelCase")]
    Edit {
        message_id: String,
        text: String,
    },
    /// Delete for everyone.
    #[serde(rename_all = "camelCase")]
    Revoke {
        message_id: String,
    },
}

impl OutboundContent {
    pub fn kind(&self) -> ContentKind {
        match self {
            OutboundContent::Text { .. } => ContentKind::Text,
            OutboundContent::Image { .. } => ContentKind::Image,
            OutboundContent::Video { .. } => ContentKind::Video,
            OutboundContent::Audio { .. } => ContentKind::Audio,
            OutboundContent::Voice { .. } => ContentKind::Voice,
            OutboundContent::Document { .. } => ContentKind::Document,
            OutboundContent::Sticker { .. } => ContentKind::Sticker,
            OutboundContent::Location { .. } => ContentKind::Location,
            OutboundContent::Contact { .. } => ContentKind::Contact,
            OutboundContent::Reaction { .. } => ContentKind::Reaction,
            OutboundContent::Edit { .. } => ContentKind::Edit,
            OutboundContent::Revoke { .. } => ContentKind::Revoke,
        }
    }

    /// The media description, for the kinds that carry bytes.
    pub fn media(&self) -> Option<&MediaInfo> {
        match self {
            OutboundContent::Image { media, .. }
            | OutboundContent::Video { media, .. }
            | OutboundContent::Audio { media }
            | OutboundContent::Voice { media }
            | OutboundContent::Document { media, .. }
            | OutboundContent::Sticker { media } => Some(media),
            _ => None,
        }
    }

    /// The free text a person wrote (text, caption, vCard, new text of an
    /// edit), which a dead letter keeps only in part.
    pub fn text_mut(&mut self) -> Option<&mut String> {
        match self {
            OutboundContent::Text { text } | OutboundContent::Edit { text, .. } => Some(text),
            OutboundContent::Contact { vcard } => Some(vcard),
            OutboundContent::Image { caption, .. }
            | OutboundContent::Video { caption, .. }
            | OutboundContent::Document { caption, .. } => caption.as_mut(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in ContentKind::ALL {
            assert_eq!(ContentKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ContentKind::parse("poll"), None);
    }

    #[test]
    fn content_is_tagged_by_type() {
        let c = OutboundContent::Reaction {
            message_id: "3EB0AA".into(),
            emoji: String::new(),
            from_me: true,
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "reaction", "messageId": "3EB0AA", "emoji": "", "fromMe": true})
        );
        assert_eq!(serde_json::from_value::<OutboundContent>(json).unwrap(), c);
    }
}
