//! The expiring HMAC token of a signed media URL (`GET /media/{id}?token=`).
//! Pure: [`sign`] is called by [`super::IncomingMedia::keep`] when it builds
//! the URL Laravel gets, [`verify`] by the HTTP handler before it serves a
//! byte. Hand-written because it is five lines over `hmac`: a token is
//! `<expires_ms>.<hex HMAC-SHA256("media:<id>:<expires_ms>")>`, so it names
//! its own expiry, cannot be moved to another media id, and needs no state.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a token was refused (every case answers 403: nothing tells a
/// guesser which part was wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the media token is malformed")]
    Malformed,
    #[error("the media token does not match this media")]
    BadSignature,
    #[error("the media token has expired")]
    Expired,
}

fn mac(secret: &[u8], id: &str, expires_ms: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(format!("media:{id}:{expires_ms}").as_bytes());
    mac
}

/// The token that lets its holder read media `id` until `expires_ms`.
pub fn sign(secret: &[u8], id: &str, expires_ms: u64) -> String {
    let sig = mac(secret, id, expires_ms).finalize().into_bytes();
    format!("{expires_ms}.{}", hex::encode(sig))
}

/// Checks `token` for media `id` at `now_ms` (constant-time comparison).
pub fn verify(secret: &[u8], id: &str, token: &str, now_ms: u64) -> Result<(), TokenError> {
    let (expires, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let expires_ms: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| TokenError::Malformed)?;
    mac(secret, id, expires_ms)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    // Checked after the signature, so a forged expiry is a bad signature.
    if now_ms >= expires_ms {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"secret";

    #[test]
    fn a_token_opens_its_media_until_it_expires() {
        let t = sign(KEY, "abc", 1_000);
        assert_eq!(verify(KEY, "abc", &t, 999), Ok(()));
        assert_eq!(verify(KEY, "abc", &t, 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_is_bound_to_its_id_key_and_expiry() {
        let t = sign(KEY, "abc", 1_000);
        assert_eq!(verify(KEY, "abd", &t, 0), Err(TokenError::BadSignature));
        assert_eq!(
            verify(b"other", "abc", &t, 0),
            Err(TokenError::BadSignature)
        );
        let (_, sig) = t.split_once('.').unwrap();
        let longer = format!("9999999.{sig}");
        assert_eq!(
            verify(KEY, "abc", &longer, 0),
            Err(TokenError::BadSignature)
        );
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            verify(KEY, "abc", &flipped, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for t in ["", ".", "abc", "12.zz", "x.00", "1.2.3"] {
            assert!(verify(KEY, "abc", t, 0).is_err(), "{t}");
        }
    }
}
