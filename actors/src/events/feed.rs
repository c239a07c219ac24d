//! One subscriber's feed: a task that takes the [`EventBus`]'s events
//! (first those it resumes, then live ones), keeps those its
//! [`EventFilter`] wants, and hands them over a bounded channel to the
//! HTTP side (SSE or WebSocket) as a [`Feed`], with an [`FeedItem::Idle`] tick when
//! nothing happened for a while so the connection shows it is alive.
//!
//! Nothing here ever blocks a publisher: when the subscriber does not read
//! (a stuck client, a full socket) its channel fills ([`SUBSCRIBER_BUFFER`]
//! events or [`SUBSCRIBER_BYTES`]), and the feed ends it ("slow"); when it fell behind the bus's fan-out it ends too ("lagged").
//! Either way `wagate_events_dropped_subscribers_total` counts it and the
//! client may reconnect with `Last-Event-ID`.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::filter::EventFilter;
use super::{Event, EventBus, SUBSCRIBER_BUFFER, SUBSCRIBER_BYTES};

/// What the HTTP side writes next.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// Events between the resumed id and `next` are no longer held: the
    /// subscriber was away too long (or the gateway restarted).
    Missed {
        next: u64,
    },
    Event(Arc<Event>),
    /// Nothing for an idle interval: a keep-alive.
    Idle,
    /// The subscriber fell behind and is dropped; nothing follows.
    Dropped {
        reason: &'static str,
    },
}

/// The HTTP side's end of a feed.
pub struct Feed {
    rx: mpsc::Receiver<FeedItem>,
    /// Bytes of events handed over and not yet taken.
    pending: Arc<AtomicUsize>,
}

impl Feed {
    /// The next item; `None` once the feed ended.
    pub async fn recv(&mut self) -> Option<FeedItem> {
        let item = self.rx.recv().await?;
        if let FeedItem::Event(e) = &item {
            self.pending.fetch_sub(e.json.len(), Relaxed);
        }
        Some(item)
    }
}

/// How long a quiet feed waits before an [`FeedItem::Idle`].
pub const IDLE: Duration = Duration::from_secs(15);

/// Starts a feed for `filter`, resuming after `after` when given. Must be
/// called inside a tokio runtime (an actix-web worker). The feed ends when
/// the receiver is dropped (the client went away) or the subscriber is
/// dropped for falling behind.
pub fn start(bus: &EventBus, filter: EventFilter, after: Option<u64>, idle: Duration) -> Feed {
    let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
    let pending = Arc::new(AtomicUsize::new(0));
    let out = Output {
        tx,
        pending: Arc::clone(&pending),
    };
    let sub = bus.subscribe(after);
    let metrics = bus.metrics().clone();
    metrics.subscribers.inc();
    tokio::spawn(async move {
        let _gauge = Decrement(metrics.subscribers.clone());
        let end = run(sub, &filter, &out, idle).await;
        if let Some(reason) = end {
            metrics.dropped.with_label_values(&[reason]).inc();
            // Best effort: a full channel is why it ends when "slow".
            let _ = out.tx.try_send(FeedItem::Dropped { reason });
        }
    });
    Feed { rx, pending }
}

/// The feed task's end: the channel and the bytes in it.
struct Output {
    tx: mpsc::Sender<FeedItem>,
    pending: Arc<AtomicUsize>,
}

impl Output {
    /// Hands `item` over; `Err(Some(reason))` drops the subscriber,
    /// `Err(None)` means it left.
    fn send(&self, item: FeedItem) -> Result<(), Option<&'static str>> {
        let size = match &item {
            FeedItem::Event(e) => e.json.len(),
            _ => 0,
        };
        if size > 0 && self.pending.load(Relaxed) + size > SUBSCRIBER_BYTES {
            return Err(Some("slow"));
        }
        self.pending.fetch_add(size, Relaxed);
        self.tx.try_send(item).map_err(|e| {
            self.pending.fetch_sub(size, Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => Some("slow"),
                mpsc::error::TrySendError::Closed(_) => None,
            }
        })
    }
}

/// Lowers the subscriber gauge when the feed ends, however it ends.
struct Decrement(prometheus::IntGauge);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Forwards until the client leaves (`None`) or is dropped (the reason).
async fn run(
    mut sub: super::Subscription,
    filter: &EventFilter,
    out: &Output,
    idle: Duration,
) -> Option<&'static str> {
    let send = |item: FeedItem| out.send(item);
    if let Some(next) = sub.resumed.missed_until {
        if let Err(end) = send(FeedItem::Missed { next }) {
            return end;
        }
    }
    for e in std::mem::take(&mut sub.resumed.events) {
        if filter.matches(&e) {
            if let Err(end) = send(FeedItem::Event(e)) {
                return end;
            }
        }
    }
    loop {
        let item = tokio::select! {
            got = sub.live.recv() => match got {
                Ok(e) if filter.matches(&e) => FeedItem::Event(e),
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return Some("lagged"),
                Err(RecvError::Closed) => return None,
            },
            () = tokio::time::sleep(idle) => FeedItem::Idle,
            () = out.tx.closed() => return None,
        };
        if let Err(end) = send(item) {
            return end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{test_metrics, EventKind};
    use crate::ids::SessionId;

    fn sid(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    fn data(n: u32) -> serde_json::Value {
        serde_json::json!({ "n": n })
    }

    #[tokio::test]
    async fn resumes_then_follows_live_events_through_the_filter() {
        let bus = EventBus::with_capacity(test_metrics(), 100, 100);
        bus.publish(EventKind::State, &sid("a"), &data(1));
        let first = bus.last_id();
        bus.publish(EventKind::State, &sid("b"), &data(2));
        bus.publish(EventKind::Qr, &sid("a"), &data(3));
        let filter = EventFilter::parse(Some("a"), None).unwrap();
        let mut rx = start(&bus, filter, Some(first - 1), IDLE);
        bus.publish(EventKind::Message, &sid("a"), &data(4));
        bus.publish(EventKind::Message, &sid("b"), &data(5));
        let mut got = Vec::new();
        for _ in 0..3 {
            match rx.recv().await.unwrap() {
                FeedItem::Event(e) => got.push(e.id - first),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, vec![0, 2, 3], "a's events in order, b's left out");
        assert_eq!(bus.metrics().subscribers.get(), 1);
        drop(rx);
        bus.publish(EventKind::Message, &sid("a"), &data(6));
        // The feed notices the client left and ends.
        for _ in 0..100 {
            if bus.metrics().subscribers.get() == 0 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(bus.metrics().subscribers.get(), 0);
    }

    #[tokio::test]
    async fn says_what_a_late_resume_can_no_longer_get() {
        let bus = EventBus::with_capacity(test_metrics(), 2, 100);
        for n in 0..5 {
            bus.publish(EventKind::State, &sid("a"), &data(n));
        }
        let last = bus.last_id();
        let mut rx = start(&bus, EventFilter::default(), Some(last - 5), IDLE);
        assert_eq!(
            rx.recv().await.unwrap(),
            FeedItem::Missed { next: last - 1 }
        );
        assert!(matches!(rx.recv().await.unwrap(), FeedItem::Event(e) if e.id == last - 1));
        assert!(matches!(rx.recv().await.unwrap(), FeedItem::Event(e) if e.id == last));
    }

    #[tokio::test]
    async fn a_quiet_feed_ticks_idle() {
        let bus = EventBus::with_capacity(test_metrics(), 2, 100);
        let mut rx = start(
            &bus,
            EventFilter::default(),
            None,
            Duration::from_millis(20),
        );
        assert_eq!(rx.recv().await.unwrap(), FeedItem::Idle);
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_dropped_not_buffered() {
        let bus = EventBus::with_capacity(test_metrics(), 10, 4 * SUBSCRIBER_BUFFER);
        let mut rx = start(&bus, EventFilter::default(), None, IDLE);
        tokio::task::yield_now().await;
        for n in 0..(2 * SUBSCRIBER_BUFFER as u32) {
            bus.publish(EventKind::Qr, &sid("a"), &data(n));
            if n % 64 == 0 {
                tokio::task::yield_now().await; // let the feed forward
            }
        }
        let mut events = 0;
        let end = loop {
            match rx.recv().await {
                Some(FeedItem::Event(_)) => events += 1,
                Some(other) => break Some(other),
                None => break None,
            }
        };
        assert!(events <= SUBSCRIBER_BUFFER, "{events} buffered");
        assert!(end.is_none() || end == Some(FeedItem::Dropped { reason: "slow" }));
        let dropped = bus.metrics().dropped.with_label_values(&["slow"]).get();
        assert_eq!(dropped, 1);
    }

    #[tokio::test]
    async fn a_subscriber_is_dropped_by_bytes_before_events_when_they_are_big() {
        let bus = EventBus::with_capacity(test_metrics(), 10, 4 * SUBSCRIBER_BUFFER);
        let mut rx = start(&bus, EventFilter::default(), None, IDLE);
        tokio::task::yield_now().await;
        let big = serde_json::json!({ "text": "x".repeat(60_000) });
        for _ in 0..100 {
            bus.publish(EventKind::Message, &sid("a"), &big);
            tokio::task::yield_now().await;
        }
        let mut events = 0;
        while let Some(FeedItem::Event(_)) = rx.recv().await {
            events += 1;
        }
        assert!(events * 60_000 <= SUBSCRIBER_BYTES, "{events} held");
        assert!(events >= 60, "{events}: dropped early");
        assert_eq!(bus.metrics().dropped.with_label_values(&["slow"]).get(), 1);
    }
}
