//! What a request needs, and whether a key's scope grants it: the pure core
//! of scoped API keys. [`need`] reads the method and path (and `?session=`
//! for events) and names the action and the session; [`Scope::grants`]
//! answers yes or why not. Anything [`need`] does not know is admin-only,
//! so a new route is closed to scoped keys until it is named here. Called
//! by `auth::require_api_key` for every keyed request.

use std::collections::BTreeSet;

use actix_web::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a scoped key may do with its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `GET /sessions` (its own), `GET /sessions/{id}`, message status,
    /// `GET /events?session=`.
    Read,
    /// The QR code and pairing codes.
    Qr,
    /// Messages, number checks, typing and read receipts.
    Send,
    /// Create (its own ids), stop, restart, log out, delete, simulate.
    Manage,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Qr => "qr",
            Action::Send => "send",
            Action::Manage => "manage",
        }
    }
}

/// What one request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need<'a> {
    /// One session's action (the id as the path has it).
    Session(&'a str, Action),
    /// `GET /sessions`: a scoped key sees only its own sessions.
    ListOwn,
    /// `POST /sessions`: a scoped key may create only ids of its scope
    /// (the id is in the body: the handler checks it).
    CreateOwn,
    /// `GET /events[/ws]`: a scoped key must name one of its sessions.
    Events(Option<String>),
    /// Everything else: key management, and any route not named here.
    Admin,
}

/// The need of `method path?query`.
pub fn need<'a>(method: &Method, path: &'a str, query: &str) -> Need<'a> {
    use Action::*;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method.as_str();
    match (m, segments.as_slice()) {
        ("GET", ["sessions"]) => Need::ListOwn,
        ("POST", ["sessions"]) => Need::CreateOwn,
        ("GET", ["sessions", id]) => Need::Session(id, Read),
        ("DELETE", ["sessions", id]) => Need::Session(id, Manage),
        ("POST", ["sessions", id, "messages"]) => Need::Session(id, Send),
        ("GET", ["sessions", id, "messages", _]) => Need::Session(id, Read),
        ("GET", ["sessions", id, "qr"]) | ("POST", ["sessions", id, "pairing-code"]) => {
            Need::Session(id, Qr)
        }
        ("POST", ["sessions", id, "logout" | "restart" | "stop"]) => Need::Session(id, Manage),
        ("POST", ["sessions", id, "simulate", _]) => Need::Session(id, Manage),
        ("POST", ["sessions", id, "contacts", "check"])
        | ("POST", ["sessions", id, "chats", _, "typing" | "read"]) => Need::Session(id, Send),
        ("GET", ["events"] | ["events", "ws"]) => Need::Events(query_session(query)),
        _ => Need::Admin,
    }
}

/// `session=` of a query string, decoded.
fn query_session(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "session")
        .map(|(_, v)| v)
}

/// A scoped key's grant: its sessions and what it may do with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub sessions: BTreeSet<String>,
    pub actions: BTreeSet<Action>,
}

impl Scope {
    pub fn owns(&self, session: &str) -> bool {
        self.sessions.contains(session)
    }

    /// `Ok` when the scope grants `need`, else the refusal's message.
    pub fn grants(&self, need: &Need<'_>) -> Result<(), String> {
        let action = |a: Action, session: &str| {
            if !self.owns(session) {
                Err(format!("this key has no access to session {session:?}"))
            } else if !self.actions.contains(&a) {
                Err(format!(
                    "this key may not {} for session {session:?}",
                    a.as_str()
                ))
            } else {
                Ok(())
            }
        };
        match need {
            Need::Session(id, a) => action(*a, id),
            Need::ListOwn => self.require(Action::Read),
            Need::CreateOwn => self.require(Action::Manage),
            Need::Events(Some(session)) => action(Action::Read, session),
            Need::Events(None) => Err(
                "a scoped key must name one of its sessions: GET /events?session=<id>".to_owned(),
            ),
            Need::Admin => Err("this route needs an admin key (API_KEYS)".to_owned()),
        }
    }

    fn require(&self, a: Action) -> Result<(), String> {
        if self.actions.contains(&a) {
            Ok(())
        } else {
            Err(format!("this key may not {}", a.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(sessions: &[&str], actions: &[Action]) -> Scope {
        Scope {
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().copied().collect(),
        }
    }

    #[test]
    fn every_session_route_names_its_session_and_only_key_management_is_admin() {
        for (method, path) in crate::http::route_table() {
            let concrete = path
                .replace("{id}", "s1")
                .replace("{message_id}", "m1")
                .replace("{to}", "521")
                .replace("{action}", "scan");
            let n = need(&method, &concrete, "session=s1");
            if path.starts_with("/sessions/{id}") {
                assert!(
                    matches!(n, Need::Session("s1", _)),
                    "{method} {path}: {n:?} (name its action in access::need)"
                );
            } else if path.starts_with("/keys") {
                assert_eq!(n, Need::Admin, "{method} {path}");
            } else if path.starts_with("/events") {
                assert_eq!(n, Need::Events(Some("s1".into())), "{method} {path}");
            }
        }
    }

    #[test]
    fn a_scope_grants_its_actions_on_its_sessions_only() {
        let s = scope(&["shop-1", "shop-2"], &[Action::Read, Action::Send]);
        let m = |method: Method, path: &'static str| need(&method, path, "");
        assert!(s.grants(&m(Method::GET, "/sessions/shop-1")).is_ok());
        assert!(s
            .grants(&m(Method::POST, "/sessions/shop-2/messages"))
            .is_ok());
        assert!(s
            .grants(&m(Method::POST, "/sessions/shop-1/chats/521/typing"))
            .is_ok());
        let other = s.grants(&m(Method::GET, "/sessions/shop-3")).unwrap_err();
        assert!(other.contains("shop-3"), "{other}");
        let qr = s
            .grants(&m(Method::GET, "/sessions/shop-1/qr"))
            .unwrap_err();
        assert!(qr.contains("may not qr"), "{qr}");
        assert!(s.grants(&m(Method::DELETE, "/sessions/shop-1")).is_err());
        assert!(s.grants(&m(Method::POST, "/sessions")).is_err());
        assert!(s.grants(&m(Method::GET, "/sessions")).is_ok());
        assert!(s.grants(&m(Method::GET, "/keys")).is_err());
        assert!(s.grants(&m(Method::GET, "/unknown")).is_err());
    }

    #[test]
    fn events_need_one_of_the_keys_sessions() {
        let s = scope(&["shop-1"], &[Action::Read]);
        let events = |q: &str| need(&Method::GET, "/events", q);
        assert!(s.grants(&events("session=shop-1&types=qr")).is_ok());
        assert!(s.grants(&events("types=qr")).is_err());
        assert!(s.grants(&events("session=shop-2")).is_err());
        assert!(s
            .grants(&need(&Method::GET, "/events/ws", "session=shop-1"))
            .is_ok());
        // Percent-encoding is decoded, not a way around the check.
        assert_eq!(
            events("session=shop%2D1"),
            Need::Events(Some("shop-1".into()))
        );
    }

    #[test]
    fn odd_paths_are_admin_only() {
        for path in [
            "/sessions/a/b/c/d/e",
            "/sessions//messages",
            "/keys/k1",
            "/",
            "/sessions/x/simulate",
        ] {
            let n = need(&Method::POST, path, "");
            assert!(
                matches!(n, Need::Admin | Need::Session("", _)),
                "{path}: {n:?}"
            );
        }
        // An empty id owns nothing.
        let s = scope(&["shop-1"], &[Action::Send]);
        assert!(s
            .grants(&need(&Method::POST, "/sessions//messages", ""))
            .is_err());
    }
}
