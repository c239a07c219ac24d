//! Humane sending, pure: how long a message "types" before it goes out.
//! A humane message (`"humane": true`, or `MESSAGE_HUMANE` for all) first
//! shows `composing` — `recording` before a voice note — for a time that
//! grows with what a person would type, with jitter, then `paused`, then
//! the send. The [`super::lanes`] scheduler asks [`typing`] once per
//! attempt and holds the lane until then; nothing waits on a thread.
//!
//! The formula (documented in the README): `base = clamp(n × per_char,
//! min, max)` where `n` is the characters of the text (or caption, place
//! name, vCard); for a voice note `base = clamp(seconds of audio, min,
//! max)`, the seconds estimated from its size at Opus voice's ~16 kbit/s.
//! The wait is `base × (0.8 + 0.4·u)` with `u` uniform in `[0, 1)`: at
//! least `0.8 × min`, at most `1.2 × max`.

use std::time::Duration;

use super::content::OutboundContent;
use crate::connector::ChatState;

/// Bytes per second of a voice note (Opus voice at ~16 kbit/s), to guess
/// how long one lasts without decoding it.
const VOICE_BYTES_PER_SEC: u64 = 2_000;

/// `HUMANE_TYPING_*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumaneRules {
    /// Typing time per character (`HUMANE_TYPING_PER_CHAR_MS`).
    pub per_char: Duration,
    /// Shortest typing time before jitter (`HUMANE_TYPING_MIN_MS`).
    pub min: Duration,
    /// Longest typing time before jitter (`HUMANE_TYPING_MAX_MS`).
    pub max: Duration,
}

impl Default for HumaneRules {
    fn default() -> Self {
        Self {
            per_char: Duration::from_millis(80),
            min: Duration::from_millis(1_500),
            max: Duration::from_millis(8_000),
        }
    }
}

/// What to show before sending `content`, and for how long; `u` is a
/// random number in `[0, 1)`. `None` for kinds that act on an earlier
/// message (reaction, edit, revoke): nobody types those.
pub fn typing(
    content: &OutboundContent,
    rules: &HumaneRules,
    u: f64,
) -> Option<(ChatState, Duration)> {
    let chars = |s: &str| s.chars().count() as u32;
    let typed = |n: u32| rules.per_char.saturating_mul(n);
    let (state, base) = match content {
        OutboundContent::Reaction { .. }
        | OutboundContent::Edit { .. }
        | OutboundContent::Revoke { .. } => return None,
        OutboundContent::Voice { media } => (
            ChatState::Recording,
            Duration::from_millis(media.size.saturating_mul(1000) / VOICE_BYTES_PER_SEC),
        ),
        OutboundContent::Text { text } => (ChatState::Composing, typed(chars(text))),
        OutboundContent::Contact { vcard } => (ChatState::Composing, typed(chars(vcard))),
        OutboundContent::Location { name, .. } => (
            ChatState::Composing,
            typed(name.as_deref().map_or(0, chars)),
        ),
        OutboundContent::Image { caption, .. }
        | OutboundContent::Video { caption, .. }
        | OutboundContent::Document { caption, .. } => (
            ChatState::Composing,
            typed(caption.as_deref().map_or(0, chars)),
        ),
        OutboundContent::Audio { .. } | OutboundContent::Sticker { .. } => {
            (ChatState::Composing, Duration::ZERO)
        }
    };
    let base = base.clamp(rules.min, rules.max.max(rules.min));
    Some((state, base.mul_f64(0.8 + 0.4 * u.clamp(0.0, 1.0))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::content::MediaInfo;

    fn text(n: usize) -> OutboundContent {
        OutboundContent::Text {
            text: "a".repeat(n),
        }
    }

    const MID: f64 = 0.5; // no jitter: 0.8 + 0.4 × 0.5 = 1

    #[test]
    fn typing_grows_with_the_text_within_its_bounds() {
        let r = HumaneRules::default();
        let at = |n| typing(&text(n), &r, MID).unwrap();
        assert_eq!(at(1), (ChatState::Composing, r.min), "short: the minimum");
        assert_eq!(at(50).1, Duration::from_millis(4_000), "50 × 80 ms");
        assert!(at(50).1 < at(80).1, "longer text types longer");
        assert_eq!(at(10_000).1, r.max, "long: the maximum");
    }

    #[test]
    fn jitter_stays_within_a_fifth_either_side() {
        let r = HumaneRules::default();
        let low = typing(&text(50), &r, 0.0).unwrap().1;
        let high = typing(&text(50), &r, 0.999_999).unwrap().1;
        assert_eq!(low, Duration::from_millis(3_200));
        assert!(high > Duration::from_millis(4_799) && high <= Duration::from_millis(4_800));
        let floor = typing(&text(0), &r, 0.0).unwrap().1;
        let ceiling = typing(&text(1_000_000), &r, 1.0).unwrap().1;
        assert_eq!(floor, r.min.mul_f64(0.8));
        assert_eq!(ceiling, r.max.mul_f64(1.2));
    }

    #[test]
    fn a_voice_note_records_for_about_its_length() {
        let r = HumaneRules::default();
        let voice = |size| OutboundContent::Voice {
            media: MediaInfo {
                mime_type: "audio/ogg; codecs=opus".into(),
                size,
                sha256: String::new(),
                source_url: None,
            },
        };
        assert_eq!(
            typing(&voice(10_000), &r, MID),
            Some((ChatState::Recording, Duration::from_secs(5)))
        );
        assert_eq!(typing(&voice(10_000_000), &r, MID).unwrap().1, r.max);
    }

    #[test]
    fn nobody_types_a_reaction_an_edit_or_a_revoke() {
        let r = HumaneRules::default();
        let revoke = OutboundContent::Revoke {
            message_id: "3EB0AA".into(),
        };
        assert_eq!(typing(&revoke, &r, MID), None);
    }
}
