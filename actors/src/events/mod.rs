//! Live events: every session change, QR code, incoming message, receipt
//! and send result, numbered and fanned out to subscribers (`GET /events`
//! over Server-Sent Events, `GET /events/ws` over a WebSocket). The
//! [`EventBus`] is published to by the `StatePublisher` (states), the
//! Session actor (QR codes, messages, receipts) and the message queue (send
//! results, once written); publishing never waits on a subscriber: each
//! gets a bounded [`feed`] and is dropped when it falls behind.
//!
//! Ids grow across restarts (they start at the process's start time in
//! seconds × 1,000,000, safe as JSON numbers), and the newest events are
//! kept in a [`replay::Replay`] buffer so a subscriber that reconnects with
//! `Last-Event-ID` gets what it missed, or is told what it can no longer get.

pub mod feed;
pub mod filter;
pub mod replay;

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGauge};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::unix_ms;
use crate::ids::SessionId;

use self::replay::{Replay, Resumed};

/// Events kept for `Last-Event-ID` resumption...
pub const REPLAY_CAPACITY: usize = 10_000;
/// ...and at most this many bytes of them.
pub const REPLAY_BYTES: usize = 16 << 20;
/// Events a subscriber may be behind before it is dropped (its own feed)...
pub const SUBSCRIBER_BUFFER: usize = 1_024;
/// ...or bytes of them, whichever comes first.
pub const SUBSCRIBER_BYTES: usize = 4 << 20;
/// Events the fan-out keeps for feeds that have not taken them yet. Feeds
/// take them at once (each is its own task), so only a starved runtime
/// lets one fall this far behind ("lagged").
pub const FAN_OUT: usize = 256;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A session entered a state (`data`: `state`, `status`, `reason`).
    State,
    /// A new QR code to scan (`data`: the raw `qr` and `expiresAt`).
    Qr,
    /// An incoming message, as Laravel receives it.
    Message,
    /// A delivery or read receipt, as Laravel receives it.
    Receipt,
    /// How an outgoing message ended, as Laravel receives it.
    SendResult,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        Self::State,
        Self::Qr,
        Self::Message,
        Self::Receipt,
        Self::SendResult,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Qr => "qr",
            Self::Message => "message",
            Self::Receipt => "receipt",
            Self::SendResult => "send_result",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One published event. `json` is the whole event as subscribers receive
/// it, serialized once for all of them:
/// `{"id","type","sessionId","timestamp","data"}`.
#[derive(Debug, PartialEq)]
pub struct Event {
    pub id: u64,
    pub kind: EventKind,
    pub session: SessionId,
    pub json: Arc<str>,
}

/// The bus's Prometheus figures (registered by `Metrics`).
#[derive(Clone)]
pub struct EventMetrics {
    pub published: IntCounterVec,
    pub subscribers: IntGauge,
    pub dropped: IntCounterVec,
}

struct Inner {
    next_id: u64,
    replay: Replay,
}

/// Where events are published and subscribed to. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Mutex<Inner>>,
    live: broadcast::Sender<Arc<Event>>,
    metrics: EventMetrics,
}

/// What a new subscriber starts from.
pub struct Subscription {
    /// Held events after the id it resumed from, oldest first.
    pub resumed: Resumed,
    /// Everything published after those.
    pub live: broadcast::Receiver<Arc<Event>>,
}

impl EventBus {
    pub fn new(metrics: EventMetrics) -> Self {
        Self::with_capacity(metrics, REPLAY_CAPACITY, FAN_OUT)
    }

    pub fn with_capacity(metrics: EventMetrics, replay: usize, fan_out: usize) -> Self {
        let (live, _) = broadcast::channel(fan_out.max(1));
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next_id: unix_ms() / 1000 * 1_000_000 + 1,
                replay: Replay::new(replay, REPLAY_BYTES),
            })),
            live,
            metrics,
        }
    }

    pub fn metrics(&self) -> &EventMetrics {
        &self.metrics
    }

    /// Publishes `data` as an event of `kind` about `session`. The data is
    /// serialized before the lock; numbering, keeping and fanning out happen
    /// under it, so every subscriber sees ids in order.
    pub fn publish(&self, kind: EventKind, session: &SessionId, data: &impl Serialize) {
        let data = serde_json::to_string(data).expect("event data serializes to JSON");
        let session_json = serde_json::to_string(session).expect("a session id serializes");
        let now = unix_ms();
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let json = format!(
            r#"{{"id":{id},"type":"{}","sessionId":{session_json},"timestamp":{now},"data":{data}}}"#,
            kind.as_str()
        );
        let event = Arc::new(Event {
            id,
            kind,
            session: session.clone(),
            json: Arc::from(json),
        });
        inner.replay.push(Arc::clone(&event));
        // No receiver is fine: nobody is listening now.
        let _ = self.live.send(event);
        drop(inner);
        self.metrics
            .published
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Subscribes to what comes after id `after` (`None`: only new events).
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let inner = self.inner.lock();
        let live = self.live.subscribe();
        let resumed = match after {
            Some(after) => inner.replay.since(after, inner.next_id),
            None => Resumed {
                events: Vec::new(),
                missed_until: None,
            },
        };
        Subscription { resumed, live }
    }

    /// The id the last published event got (0 before any).
    pub fn last_id(&self) -> u64 {
        self.inner.lock().next_id - 1
    }
}

#[cfg(test)]
pub(crate) fn test_metrics() -> EventMetrics {
    EventMetrics {
        published: IntCounterVec::new(prometheus::Opts::new("p", "p"), &["type"]).unwrap(),
        subscribers: IntGauge::new("s", "s").unwrap(),
        dropped: IntCounterVec::new(prometheus::Opts::new("d", "d"), &["reason"]).unwrap(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_in_order_and_serialized_once_for_all() {
        let bus = EventBus::with_capacity(test_metrics(), 10, 10);
        let s = SessionId::parse("s1").unwrap();
        let mut early = bus.subscribe(None);
        bus.publish(EventKind::Qr, &s, &serde_json::json!({ "qr": "2@abc" }));
        bus.publish(
            EventKind::State,
            &s,
            &serde_json::json!({ "state": "connected" }),
        );
        let a = early.live.try_recv().unwrap();
        let b = early.live.try_recv().unwrap();
        assert_eq!(b.id, a.id + 1);
        assert_eq!(bus.last_id(), b.id);
        let v: serde_json::Value = serde_json::from_str(&a.json).unwrap();
        assert_eq!(v["id"], a.id);
        assert_eq!(v["type"], "qr");
        assert_eq!(v["sessionId"], "s1");
        assert_eq!(v["data"]["qr"], "2@abc");
        assert!(v["timestamp"].as_u64().unwrap() > 0);
        // A later subscriber resuming after `a` gets `b` from the buffer.
        let late = bus.subscribe(Some(a.id));
        assert_eq!(late.resumed.events, vec![b]);
        assert_eq!(late.resumed.missed_until, None);
        assert_eq!(bus.metrics().published.with_label_values(&["qr"]).get(), 1);
    }

    #[test]
    fn ids_start_from_the_clock_so_a_restart_continues_above_them() {
        let bus = EventBus::with_capacity(test_metrics(), 10, 10);
        let floor = unix_ms() / 1000 * 1_000_000;
        assert!(bus.last_id() >= floor - 1_000_000 && bus.last_id() <= floor);
        assert!(bus.last_id() < (1 << 53), "safe as a JSON number");
    }
}
