//! `SessionId`: the validated name of one WhatsApp account in the gateway.
//! Built by the HTTP layer from user input and carried by every actor message.

use std::fmt;
use std::sync::Arc;

/// Longest accepted session id, in bytes.
pub const SESSION_ID_MAX_LEN: usize = 64;

/// A session id that matches `^[A-Za-z0-9_-]{1,64}$`.
///
/// Backed by `Arc<str>` because the same id is cloned into many messages,
/// map keys and Laravel payloads; a clone is a reference-count bump.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

/// Why a string is not a valid session id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionId {
    #[error("session id must not be empty")]
    Empty,
    #[error("session id is {0} bytes long; the limit is 64")]
    TooLong(usize),
    #[error("session id may contain only letters, digits, '_' and '-' (found {0:?})")]
    BadChar(char),
}

impl SessionId {
    pub fn parse(raw: &str) -> Result<Self, InvalidSessionId> {
        if raw.is_empty() {
            return Err(InvalidSessionId::Empty);
        }
        if raw.len() > SESSION_ID_MAX_LEN {
            return Err(InvalidSessionId::TooLong(raw.len()));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(InvalidSessionId::BadChar(bad));
        }
        Ok(Self(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    /// Validates like [`SessionId::parse`]: stored ids are checked on the way in.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(SessionId::parse("shop_42-A").is_ok());
        assert!(SessionId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_chars() {
        assert_eq!(SessionId::parse(""), Err(InvalidSessionId::Empty));
        assert_eq!(
            SessionId::parse(&"x".repeat(65)),
            Err(InvalidSessionId::TooLong(65))
        );
        assert_eq!(SessionId::parse("a b"), Err(InvalidSessionId::BadChar(' ')));
        assert_eq!(SessionId::parse("ñ"), Err(InvalidSessionId::BadChar('ñ')));
    }
}
