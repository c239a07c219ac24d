//! Property tests of [`super::Machine`]: any sequence of connector events,
//! starts and stops. Invariants: every `Enter` changes the state (no status
//! storm) and leaves the machine in it; a terminal state takes no further
//! event; a scannable QR is shown only in `qr` and is hidden before any
//! other state; `Finish` is the last effect of a call; a link is announced
//! before `connected`; credentials are deleted only on logout.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::connector::Receipt;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-c]{1,2}", any::<String>()]
}

fn event() -> impl Strategy<Value = ConnectorEvent> {
    prop_oneof![
        4 => ("[a-c]", 0u64..60).prop_map(|(code, s)| ConnectorEvent::Qr { code, ttl: Duration::from_secs(s) }),
        1 => Just(ConnectorEvent::QrExhausted),
        1 => text().prop_map(|code| ConnectorEvent::PairCode { code }),
        2 => text().prop_map(|jid| ConnectorEvent::Paired { jid }),
        3 => text().prop_map(|jid| ConnectorEvent::Connected { jid }),
        2 => (any::<u32>(), 0u64..10_000).prop_map(|(attempt, ms)| ConnectorEvent::Reconnecting { attempt, delay: Duration::from_millis(ms) }),
        3 => (text(), prop::bool::weighted(0.8)).prop_map(|(reason, transient)| ConnectorEvent::Disconnected { reason, transient }),
        1 => text().prop_map(|reason| ConnectorEvent::LoggedOut { reason }),
        1 => text().prop_map(|reason| ConnectorEvent::Ended { reason }),
        1 => prop::option::of(any::<u64>()).prop_map(|until_ms| ConnectorEvent::Banned { until_ms }),
        1 => (text(), text(), any::<u64>()).prop_map(|(message_id, status, timestamp_ms)| ConnectorEvent::Receipt(Receipt { message_id, status, timestamp_ms })),
        1 => prop::option::of(text()).prop_map(|error| ConnectorEvent::Closed { error }),
    ]
}

#[allow(clippy::large_enum_variant)] // test input: size does not matter
#[derive(Debug, Clone)]
enum Op {
    Start,
    Event(ConnectorEvent),
    Stop(bool),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            1 => Just(Op::Start),
            12 => event().prop_map(Op::Event),
            1 => any::<bool>().prop_map(Op::Stop),
        ],
        0..60,
    )
}

proptest! {
    #[test]
    fn every_transition_is_news_and_qr_only_shows_in_qr(ops in ops()) {
        let mut m = Machine::new();
        // A QR was shown and not hidden since.
        let mut qr_visible = false;
        // The last code of an exhausted QR, which a later stop may hide.
        let mut exhausted_qr = false;
        for op in ops {
            let before = m.state();
            let terminal = before.is_terminal();
            let effects = match op.clone() {
                Op::Start => {
                    // A restart begins afresh (the registry starts a new actor).
                    m = Machine::new();
                    qr_visible = false;
                    exhausted_qr = false;
                    m.start()
                }
                Op::Event(e) => m.on_event(e),
                Op::Stop(announce) => m.stop("stop", announce),
            };
            if terminal && matches!(op, Op::Event(_)) {
                prop_assert!(effects.is_empty(), "{:?} acted on {:?} after it ended", before, op);
            }
            // The last code goes to Laravel as it is (the QR batcher keeps
            // it): exhaustion ends the QR without a HideQr; a later stop may
            // still hide that last code.
            if matches!(op, Op::Event(ConnectorEvent::QrExhausted)) && qr_visible {
                qr_visible = false;
                exhausted_qr = true;
            }
            let mut state = before;
            for (i, effect) in effects.iter().enumerate() {
                match effect {
                    Effect::Enter { state: next, .. } => {
                        prop_assert!(*next != state || matches!(op, Op::Start), "{:?} entered again", next);
                        prop_assert!(!qr_visible || *next == SessionState::Qr, "{:?} entered with a QR still shown", next);
                        state = *next;
                    }
                    Effect::ShowQr { .. } => {
                        prop_assert_eq!(state, SessionState::Qr, "a QR shown outside qr");
                        qr_visible = true;
                    }
                    Effect::HideQr => {
                        prop_assert!(qr_visible || exhausted_qr, "hid a QR never shown");
                        qr_visible = false;
                        exhausted_qr = false;
                    }
                    Effect::Linked { .. } => {
                        prop_assert!(
                            matches!(effects.get(i + 1), Some(Effect::Enter { state: SessionState::Connected | SessionState::Pairing, .. })),
                            "a link not followed by connected or pairing"
                        );
                    }
                    Effect::DeleteCredentials => {
                        prop_assert!(matches!(op, Op::Event(ConnectorEvent::LoggedOut { .. })), "credentials deleted on {:?}", op);
                    }
                    Effect::Finish(_) => {
                        prop_assert_eq!(i, effects.len() - 1, "Finish is not the last effect");
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(state, m.state(), "the last Enter is the machine's state");
            if qr_visible {
                prop_assert_eq!(m.state(), SessionState::Qr, "a scannable QR outside qr");
            }
        }
    }
}
