//! Which events a subscriber wants: one session or all, some kinds or all.
//! Parsed from the query of `GET /events` and `GET /events/ws`
//! (`?session=s1&types=state,qr`); pure.

use super::{Event, EventKind};
use crate::ids::SessionId;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub session: Option<SessionId>,
    /// `None`: every kind.
    pub kinds: Option<Vec<EventKind>>,
}

/// A filter that cannot be parsed; the message names the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(pub String);

impl EventFilter {
    /// From the raw `session` and `types` (comma-separated) parameters.
    pub fn parse(session: Option<&str>, types: Option<&str>) -> Result<Self, BadFilter> {
        let session = session
            .map(|s| SessionId::parse(s).map_err(|e| BadFilter(format!("session: {e}"))))
            .transpose()?;
        let kinds = match types.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|t| {
                        EventKind::parse(t.trim()).ok_or_else(|| {
                            BadFilter(format!(
                                "types: unknown event type '{}' (known: {})",
                                t.trim(),
                                EventKind::ALL.map(EventKind::as_str).join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Self { session, kinds })
    }

    pub fn matches(&self, e: &Event) -> bool {
        self.session.as_ref().is_none_or(|s| s == &e.session)
            && self.kinds.as_ref().is_none_or(|k| k.contains(&e.kind))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(session: &str, kind: EventKind) -> Event {
        Event {
            id: 1,
            kind,
            session: SessionId::parse(session).unwrap(),
            json: Arc::from("{}"),
        }
    }

    #[test]
    fn matches_by_session_and_kind() {
        let all = EventFilter::parse(None, None).unwrap();
        assert!(all.matches(&event("a", EventKind::Qr)));
        let f = EventFilter::parse(Some("a"), Some("qr, state")).unwrap();
        assert!(f.matches(&event("a", EventKind::Qr)));
        assert!(f.matches(&event("a", EventKind::State)));
        assert!(!f.matches(&event("a", EventKind::Message)));
        assert!(!f.matches(&event("b", EventKind::Qr)));
        assert_eq!(EventFilter::parse(None, Some(" ")).unwrap(), all);
    }

    #[test]
    fn refuses_unknown_types_and_bad_sessions_by_name() {
        let e = EventFilter::parse(None, Some("qr,typing")).unwrap_err();
        assert!(
            e.0.contains("'typing'") && e.0.contains("send_result"),
            "{e}"
        );
        let e = EventFilter::parse(Some("a b"), None).unwrap_err();
        assert!(e.0.starts_with("session:"), "{e}");
    }
}
