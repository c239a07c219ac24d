//! What a server nack of a sent message means: a permanent refusal
//! ([`ConnectorError::Rejected`], the queue fails the message at once) or a
//! transient one ([`ConnectorError::Failed`], the queue retries it under
//! the same id, which WhatsApp dedups). Pure and unit-tested; called by the
//! driver when the `<ack>` of a send carries an `error` code.
//!
//! The codes are WhatsApp's own (HTTP-like). The crate names 463
//! (`MissingTcToken`: the recipient wants a trusted-contact token, a
//! "reachout timelock") and 479 (`SmaxInvalid`: a stanza field in the wrong
//! format) in `client/node_io.rs`, and 400/404/503 in the same log line;
//! the rest follow WhatsApp Web's and Baileys' reading. An unknown code is
//! treated as transient: a wrong "permanent" loses a message for good,
//! a wrong "transient" only costs the bounded retries.

use crate::connector::ConnectorError;

/// Whether sending the same message again can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nature {
    Permanent,
    Transient,
}

/// The nature of nack `code` and a reason a person can act on.
pub fn classify(code: &str) -> (Nature, &'static str) {
    use Nature::{Permanent, Transient};
    match code {
        "400" => (
            Permanent,
            "WhatsApp found the message malformed; sending it again will not help",
        ),
        "401" | "403" => (
            Permanent,
            "this account may not message that chat (blocked by the contact, or not a group member)",
        ),
        "404" => (Permanent, "the recipient is not on WhatsApp"),
        "406" => (
            Permanent,
            "WhatsApp does not accept this kind of message for that chat",
        ),
        "463" => (
            Permanent,
            "WhatsApp holds back messages to this contact until they write first or save the number",
        ),
        "475" => (
            Permanent,
            "this account reached WhatsApp's limit of new chats; wait before writing to new contacts",
        ),
        "479" => (
            Permanent,
            "WhatsApp refused the message's format or flagged it (spam or restriction)",
        ),
        "408" | "429" | "500" | "502" | "503" | "504" => {
            (Transient, "WhatsApp could not take the message right now")
        }
        // The client's group addressing was stale; it refreshes it, so a
        // retry goes out with the current one.
        "421" => (
            Transient,
            "WhatsApp asked for the group's current addressing; retrying",
        ),
        _ => (Transient, "WhatsApp refused the message for an unknown reason"),
    }
}

/// The send's error for a nack with `code`.
pub fn nack(code: &str) -> ConnectorError {
    let (nature, why) = classify(code);
    let reason = format!("{why} (nack {code})");
    match nature {
        Nature::Permanent => ConnectorError::Rejected(reason),
        Nature::Transient => ConnectorError::Failed(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_a_retry_cannot_fix_are_permanent() {
        for code in ["400", "401", "403", "404", "406", "463", "475", "479"] {
            assert_eq!(classify(code).0, Nature::Permanent, "nack {code}");
            assert!(
                matches!(nack(code), ConnectorError::Rejected(ref r) if r.ends_with(&format!("(nack {code})"))),
                "nack {code}: {:?}",
                nack(code)
            );
        }
    }

    #[test]
    fn overload_stale_addressing_and_unknown_codes_are_retried() {
        for code in ["408", "421", "429", "500", "503", "999", ""] {
            assert_eq!(classify(code).0, Nature::Transient, "nack {code:?}");
            assert!(matches!(nack(code), ConnectorError::Failed(_)), "{code:?}");
        }
    }

    #[test]
    fn reasons_say_what_to_do() {
        assert_eq!(
            nack("404"),
            ConnectorError::Rejected("the recipient is not on WhatsApp (nack 404)".into())
        );
        assert!(classify("463").1.contains("write first"));
        assert!(classify("401").1.contains("blocked"));
        assert!(classify("475").1.contains("new chats"));
    }
}
