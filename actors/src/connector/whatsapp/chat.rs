//! Chat actions and the contacts check through the WhatsApp Web client:
//! chat states (`<chatstate>` with `composing`, `composing media="audio"`
//! or `paused`) through the crate's `chatstate()`, read receipts through
//! `mark_as_read`, and "is this number on WhatsApp" through the session's
//! [`NumberCheck`] (cached, batched). Called by the driver for the Session's
//! `check_numbers` / `chat_action` commands.

use futures_util::future::join_all;
use whatsapp_rust::{ChatStateType, Client};

use super::events;
use super::numbers::NumberCheck;
use crate::connector::{ChatAction, ChatState, ConnectorError, NumberStatus};

/// Carries out one chat action.
pub async fn perform(client: &Client, action: ChatAction) -> Result<(), ConnectorError> {
    match action {
        ChatAction::Typing { to, state } => {
            let jid = events::recipient(&to).map_err(ConnectorError::Rejected)?;
            let state = match state {
                ChatState::Composing => ChatStateType::Composing,
                ChatState::Recording => ChatStateType::Recording,
                ChatState::Paused => ChatStateType::Paused,
            };
            client
                .chatstate()
                .send(&jid, state)
                .await
                .map_err(|e| ConnectorError::Failed(e.to_string()))
        }
        ChatAction::Read {
            chat,
            sender,
            message_ids,
        } => {
            let chat = events::recipient(&chat).map_err(ConnectorError::Rejected)?;
            let sender = sender
                .as_deref()
                .map(events::recipient)
                .transpose()
                .map_err(ConnectorError::Rejected)?;
            let ids: Vec<&str> = message_ids.iter().map(String::as_str).collect();
            client
                .mark_as_read(&chat, sender.as_ref(), &ids)
                .await
                .map_err(|e| ConnectorError::Failed(e.to_string()))
        }
    }
}

/// Which of `phones` are on WhatsApp: every number goes to the session's
/// [`NumberCheck`] at once, so they share its cache and its batched queries.
pub async fn check(numbers: &NumberCheck, phones: Vec<String>) -> Vec<NumberStatus> {
    let answers = join_all(phones.iter().map(|p| numbers.registered(p))).await;
    phones
        .into_iter()
        .zip(answers)
        .map(|(phone, on_whatsapp)| NumberStatus {
            jid: (on_whatsapp == Some(true)).then(|| format!("{phone}@s.whatsapp.net")),
            on_whatsapp,
            phone,
        })
        .collect()
}
