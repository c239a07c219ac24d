//! The Session state machine, pure: connector events in, effects out. The
//! Session actor feeds it and carries out the effects; unit tests drive it
//! directly. States: `starting → qr → pairing → connected ⇄ disconnected`
//! (`pairing`: the phone accepted the link, the client logs in), ending in
//! `logged_out`, `stopped` or `failed`. Only a new QR is news.

use std::sync::Arc;
use std::time::Duration;

use crate::connector::{ConnectorEvent, Credentials, IncomingMessage, Receipt};
use crate::laravel::payload::StatusWord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    Starting,
    Qr,
    /// The phone accepted the link; the client is logging in and syncing.
    Pairing,
    Connected,
    /// Link dropped; the connector (or the registry) is reconnecting with backoff.
    Disconnected,
    LoggedOut,
    Stopped,
    Failed,
}

impl SessionState {
    pub const ALL: [SessionState; 8] = [
        SessionState::Starting,
        SessionState::Qr,
        SessionState::Pairing,
        SessionState::Connected,
        SessionState::Disconnected,
        SessionState::LoggedOut,
        SessionState::Stopped,
        SessionState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Starting => "starting",
            SessionState::Qr => "qr",
            SessionState::Pairing => "pairing",
            SessionState::Connected => "connected",
            SessionState::Disconnected => "disconnected",
            SessionState::LoggedOut => "logged_out",
            SessionState::Stopped => "stopped",
            SessionState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The status Laravel gets on entering this state. `qr` travels inside
    /// the QR batch item instead of a status request.
    pub fn status_word(self) -> Option<StatusWord> {
        match self {
            SessionState::Starting => Some(StatusWord::Starting),
            SessionState::Qr => None,
            SessionState::Pairing => Some(StatusWord::Pairing),
            SessionState::Connected => Some(StatusWord::Active),
            SessionState::Disconnected => Some(StatusWord::Inactive),
            SessionState::LoggedOut => Some(StatusWord::LoggedOut),
            SessionState::Stopped => Some(StatusWord::Stopped),
            SessionState::Failed => Some(StatusWord::Failed),
        }
    }

    /// No actor runs in these states.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::LoggedOut | SessionState::Stopped | SessionState::Failed
        )
    }
}

/// How a Session actor ended, reported to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on request (delete, stop, restart, shutdown).
    Requested,
    /// Reached a terminal state on its own (logged out, QR exhausted, banned).
    Terminal,
    /// The connection failed; the registry restarts it with backoff.
    Failure(String),
    /// The actor panicked (it stopped without a recorded reason).
    Crashed,
}

// `Message` carries an incoming message of any kind; effects are carried
// out at once, so boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Enter a state (snapshot + the state's status to Laravel).
    Enter {
        state: SessionState,
        reason: Option<String>,
    },
    ShowQr {
        code: Arc<str>,
        ttl: Duration,
    },
    HideQr,
    Linked {
        jid: String,
    },
    PairCode {
        code: String,
    },
    SaveCredentials(Credentials),
    DeleteCredentials,
    Message(IncomingMessage),
    Receipt(Receipt),
    /// Stop the actor.
    Finish(Exit),
}

#[derive(Debug, Clone)]
pub struct Machine {
    state: SessionState,
    /// The code last shown, for dedup.
    last_qr: Option<Arc<str>>,
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    pub fn new() -> Self {
        Self {
            state: SessionState::Starting,
            last_qr: None,
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Effects of starting (or restarting) the session.
    pub fn start(&mut self) -> Vec<Effect> {
        self.state = SessionState::Starting;
        vec![Effect::Enter {
            state: SessionState::Starting,
            reason: None,
        }]
    }

    fn enter(&mut self, state: SessionState, reason: Option<String>, out: &mut Vec<Effect>) {
        self.state = state;
        out.push(Effect::Enter { state, reason });
    }

    fn hide_qr(&mut self, out: &mut Vec<Effect>) {
        if self.last_qr.take().is_some() {
            out.push(Effect::HideQr);
        }
    }

    pub fn on_event(&mut self, event: ConnectorEvent) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.state.is_terminal() {
            return out;
        }
        match event {
            ConnectorEvent::Qr { code, ttl } => {
                if self.last_qr.as_deref() == Some(code.as_str()) {
                    return out;
                }
                let code: Arc<str> = Arc::from(code);
                self.last_qr = Some(Arc::clone(&code));
                if self.state != SessionState::Qr {
                    self.enter(SessionState::Qr, None, &mut out);
                }
                out.push(Effect::ShowQr { code, ttl });
            }
            ConnectorEvent::QrExhausted => {
                self.enter(SessionState::Stopped, Some("qr_exhausted".into()), &mut out);
                out.push(Effect::Finish(Exit::Terminal));
            }
            ConnectorEvent::PairCode { code } => out.push(Effect::PairCode { code }),
            ConnectorEvent::Paired { jid } => {
                // The QR is spent: nobody must scan it again while the
                // client logs in (which can take until the sync deadline).
                if matches!(self.state, SessionState::Starting | SessionState::Qr) {
                    self.hide_qr(&mut out);
                    out.push(Effect::Linked { jid });
                    self.enter(SessionState::Pairing, None, &mut out);
                }
            }
            ConnectorEvent::Connected { jid } => {
                if self.state == SessionState::Connected {
                    return out;
                }
                self.hide_qr(&mut out);
                out.push(Effect::Linked { jid });
                self.enter(SessionState::Connected, None, &mut out);
            }
            ConnectorEvent::Reconnecting { .. } => {
                // Already `disconnected`: attempts are not news (no status storm).
                if self.state == SessionState::Connected {
                    self.enter(
                        SessionState::Disconnected,
                        Some("reconnecting".into()),
                        &mut out,
                    );
                }
            }
            ConnectorEvent::Disconnected { reason, transient } => {
                // Once per outage, from any live state: a QR cannot be
                // scanned while WhatsApp is unreachable.
                if self.state != SessionState::Disconnected {
                    self.hide_qr(&mut out);
                    self.enter(SessionState::Disconnected, Some(reason.clone()), &mut out);
                }
                if !transient {
                    out.push(Effect::Finish(Exit::Failure(reason)));
                }
            }
            ConnectorEvent::LoggedOut { reason } => {
                self.hide_qr(&mut out);
                out.push(Effect::DeleteCredentials);
                self.enter(SessionState::LoggedOut, Some(reason), &mut out);
                out.push(Effect::Finish(Exit::Terminal));
            }
            ConnectorEvent::Ended { reason } => {
                self.hide_qr(&mut out);
                self.enter(SessionState::Failed, Some(reason), &mut out);
                out.push(Effect::Finish(Exit::Terminal));
            }
            ConnectorEvent::Banned { until_ms } => {
                let reason = match until_ms {
                    Some(t) => format!("banned until {t}"),
                    None => "banned".to_owned(),
                };
                self.hide_qr(&mut out);
                self.enter(SessionState::Failed, Some(reason), &mut out);
                out.push(Effect::Finish(Exit::Terminal));
            }
            ConnectorEvent::CredentialsUpdated(creds) => out.push(Effect::SaveCredentials(creds)),
            ConnectorEvent::Message(m) => out.push(Effect::Message(m)),
            ConnectorEvent::Receipt(r) => out.push(Effect::Receipt(r)),
            ConnectorEvent::Closed { error } => {
                let reason = error.unwrap_or_else(|| "connection closed".into());
                out.push(Effect::Finish(Exit::Failure(reason)));
            }
        }
        out
    }

    /// Effects of a requested stop (delete, stop, idle expiry).
    pub fn stop(&mut self, reason: &str, announce: bool) -> Vec<Effect> {
        let mut out = Vec::new();
        self.hide_qr(&mut out);
        if announce && !self.state.is_terminal() {
            self.enter(SessionState::Stopped, Some(reason.to_owned()), &mut out);
        }
        out.push(Effect::Finish(Exit::Requested));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laravel::payload::Priority;

    fn qr(code: &str) -> ConnectorEvent {
        ConnectorEvent::Qr {
            code: code.into(),
            ttl: Duration::from_secs(20),
        }
    }

    fn entered(effects: &[Effect]) -> Vec<SessionState> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Enter { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_qr_enters_qr_state_and_repeats_are_not_news() {
        let mut m = Machine::new();
        assert_eq!(entered(&m.start()), vec![SessionState::Starting]);
        let e = m.on_event(qr("a"));
        assert_eq!(entered(&e), vec![SessionState::Qr]);
        assert!(matches!(e.last(), Some(Effect::ShowQr { code, .. }) if &**code == "a"));
        assert!(m.on_event(qr("a")).is_empty(), "same code is deduped");
        let e = m.on_event(qr("b"));
        assert_eq!(e.len(), 1, "a new code is shown without re-entering qr");
    }

    #[test]
    fn scan_connects_hides_qr_and_links() {
        let mut m = Machine::new();
        m.on_event(qr("a"));
        let e = m.on_event(ConnectorEvent::Connected { jid: "1@s".into() });
        assert_eq!(e[0], Effect::HideQr);
        assert_eq!(e[1], Effect::Linked { jid: "1@s".into() });
        assert_eq!(entered(&e), vec![SessionState::Connected]);
        assert_eq!(
            SessionState::Connected.status_word(),
            Some(StatusWord::Active)
        );
    }

    #[test]
    fn pairing_hides_the_qr_until_connected() {
        let mut m = Machine::new();
        m.start();
        m.on_event(qr("a"));
        let e = m.on_event(ConnectorEvent::Paired { jid: "1@s".into() });
        assert_eq!(e[0], Effect::HideQr);
        assert_eq!(e[1], Effect::Linked { jid: "1@s".into() });
        assert_eq!(entered(&e), vec![SessionState::Pairing]);
        assert_eq!(
            SessionState::Pairing.status_word(),
            Some(StatusWord::Pairing)
        );
        assert_eq!(StatusWord::Pairing.priority(), Priority::Normal);
        let e = m.on_event(ConnectorEvent::Connected { jid: "1@s".into() });
        assert!(!e.contains(&Effect::HideQr), "nothing left to hide");
        assert_eq!(entered(&e), vec![SessionState::Connected]);
        assert!(
            m.on_event(ConnectorEvent::Paired { jid: "1@s".into() })
                .is_empty(),
            "a linked session does not go back to pairing"
        );
    }

    #[test]
    fn transient_drop_reports_once_and_reconnects() {
        let mut m = Machine::new();
        m.on_event(ConnectorEvent::Connected { jid: "j".into() });
        let e = m.on_event(ConnectorEvent::Disconnected {
            reason: "net".into(),
            transient: true,
        });
        assert_eq!(entered(&e), vec![SessionState::Disconnected]);
        assert!(!e.iter().any(|e| matches!(e, Effect::Finish(_))));
        let again = m.on_event(ConnectorEvent::Reconnecting {
            attempt: 2,
            delay: Duration::from_secs(1),
        });
        assert!(again.is_empty(), "reconnect attempts are not news");
        let e = m.on_event(ConnectorEvent::Connected { jid: "j".into() });
        assert_eq!(entered(&e), vec![SessionState::Connected]);
    }

    #[test]
    fn unreachable_before_linking_is_disconnected_once_and_hides_the_qr() {
        let mut m = Machine::new();
        m.start();
        m.on_event(qr("a"));
        let down = || ConnectorEvent::Disconnected {
            reason: "cannot reach WhatsApp".into(),
            transient: true,
        };
        let e = m.on_event(down());
        assert_eq!(e[0], Effect::HideQr);
        assert_eq!(entered(&e), vec![SessionState::Disconnected]);
        assert!(m.on_event(down()).is_empty(), "retries are not news");
        let e = m.on_event(qr("a"));
        assert_eq!(
            entered(&e),
            vec![SessionState::Qr],
            "back online: the QR shows again"
        );
    }

    #[test]
    fn ended_is_a_terminal_failure_that_keeps_credentials() {
        let mut m = Machine::new();
        m.on_event(ConnectorEvent::Connected { jid: "j".into() });
        let e = m.on_event(ConnectorEvent::Ended {
            reason: "stream_replaced".into(),
        });
        assert_eq!(entered(&e), vec![SessionState::Failed]);
        assert!(!e.contains(&Effect::DeleteCredentials));
        assert_eq!(e.last(), Some(&Effect::Finish(Exit::Terminal)));
    }

    #[test]
    fn permanent_drop_and_close_finish_with_failure() {
        let mut m = Machine::new();
        m.on_event(ConnectorEvent::Connected { jid: "j".into() });
        let e = m.on_event(ConnectorEvent::Disconnected {
            reason: "gone".into(),
            transient: false,
        });
        assert_eq!(
            e.last(),
            Some(&Effect::Finish(Exit::Failure("gone".into())))
        );
        let mut m = Machine::new();
        let e = m.on_event(ConnectorEvent::Closed { error: None });
        assert_eq!(
            e,
            vec![Effect::Finish(Exit::Failure("connection closed".into()))]
        );
    }

    #[test]
    fn logout_deletes_credentials_and_is_terminal() {
        let mut m = Machine::new();
        m.on_event(ConnectorEvent::Connected { jid: "j".into() });
        let e = m.on_event(ConnectorEvent::LoggedOut {
            reason: "phone".into(),
        });
        assert!(e.contains(&Effect::DeleteCredentials));
        assert_eq!(entered(&e), vec![SessionState::LoggedOut]);
        assert_eq!(e.last(), Some(&Effect::Finish(Exit::Terminal)));
        assert!(
            m.on_event(ConnectorEvent::Connected { jid: "j".into() })
                .is_empty(),
            "nothing happens after a terminal state"
        );
    }

    #[test]
    fn exhausted_qr_stops_and_ban_fails() {
        let mut m = Machine::new();
        m.on_event(qr("a"));
        let e = m.on_event(ConnectorEvent::QrExhausted);
        assert_eq!(entered(&e), vec![SessionState::Stopped]);
        let mut m = Machine::new();
        let e = m.on_event(ConnectorEvent::Banned { until_ms: Some(5) });
        assert_eq!(
            e[0],
            Effect::Enter {
                state: SessionState::Failed,
                reason: Some("banned until 5".into())
            }
        );
    }

    #[test]
    fn requested_stop_announces_unless_told_not_to() {
        let mut m = Machine::new();
        m.on_event(qr("a"));
        let e = m.stop("deleted", true);
        assert_eq!(e[0], Effect::HideQr);
        assert_eq!(entered(&e), vec![SessionState::Stopped]);
        let mut m = Machine::new();
        assert_eq!(
            m.stop("shutdown", false),
            vec![Effect::Finish(Exit::Requested)]
        );
    }
}

#[cfg(test)]
#[path = "machine_props.rs"]
mod props;
