//! Mailbox instrumentation: depth, wait time (enqueue → handle), handle time
//! and handled count for every actor type, plus a per-instance depth for
//! Session actors (for `GET /metrics/actors`).
//!
//! actix exposes no mailbox length, so senders wrap messages in [`Metered`]
//! through a [`MeteredAddr`], and [`metered_actor!`] gives each actor a
//! `Handler<Metered<M>>` per message that unwraps and times the real handler. Handle time covers the synchronous part of a handler; a
//! handler that returns a future is timed until it returns that future.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Addr, Handler, MailboxError, Message, Recipient};
use prometheus::{Histogram, IntCounter, IntGauge};

use crate::metrics::Metrics;

/// Pre-labelled metric children for one actor type.
#[derive(Clone)]
pub struct MailboxMeter {
    depth: IntGauge,
    wait: Histogram,
    handle: Histogram,
    handled: IntCounter,
}

impl MailboxMeter {
    pub fn new(metrics: &Metrics, actor: &str) -> Self {
        Self {
            depth: metrics.mailbox_depth.with_label_values(&[actor]),
            wait: metrics.mailbox_wait_seconds.with_label_values(&[actor]),
            handle: metrics.handle_seconds.with_label_values(&[actor]),
            handled: metrics.messages_handled.with_label_values(&[actor]),
        }
    }
}

/// Keeps the depth gauges honest: decremented when handling starts, or when
/// the message is dropped unhandled (actor gone, mailbox closed).
struct DepthGuard {
    meter: MailboxMeter,
    instance: Option<Arc<AtomicI64>>,
}

impl DepthGuard {
    fn new(meter: MailboxMeter, instance: Option<Arc<AtomicI64>>) -> Self {
        meter.depth.inc();
        if let Some(i) = &instance {
            i.fetch_add(1, Ordering::Relaxed);
        }
        Self { meter, instance }
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        self.meter.depth.dec();
        if let Some(i) = &self.instance {
            i.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A message on its way through a measured mailbox.
pub struct Metered<M> {
    msg: M,
    enqueued: Instant,
    guard: DepthGuard,
}

impl<M: Message> Message for Metered<M> {
    type Result = M::Result;
}

impl<M> Metered<M> {
    /// Called by the generated handler: records the wait, releases the depth
    /// slot and returns the message with a probe that records handle time.
    pub fn open(self) -> (M, HandleProbe) {
        let started = Instant::now();
        self.guard
            .meter
            .wait
            .observe(started.duration_since(self.enqueued).as_secs_f64());
        let probe = HandleProbe {
            meter: self.guard.meter.clone(),
            started,
        };
        drop(self.guard);
        (self.msg, probe)
    }
}

/// Records handle time and the handled count when dropped.
pub struct HandleProbe {
    meter: MailboxMeter,
    started: Instant,
}

impl Drop for HandleProbe {
    fn drop(&mut self) {
        self.meter
            .handle
            .observe(self.started.elapsed().as_secs_f64());
        self.meter.handled.inc();
    }
}

/// An `Addr` whose sends are measured. Cheap to clone.
pub struct MeteredAddr<A: Actor> {
    addr: Addr<A>,
    meter: MailboxMeter,
    /// Per-instance depth (Session actors only), read by `/metrics/actors`.
    instance: Option<Arc<AtomicI64>>,
}

impl<A: Actor> Clone for MeteredAddr<A> {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
            meter: self.meter.clone(),
            instance: self.instance.clone(),
        }
    }
}

impl<A: Actor> MeteredAddr<A> {
    pub fn new(addr: Addr<A>, meter: MailboxMeter, instance: Option<Arc<AtomicI64>>) -> Self {
        Self {
            addr,
            meter,
            instance,
        }
    }

    fn wrap<M>(&self, msg: M) -> Metered<M> {
        Metered {
            msg,
            enqueued: Instant::now(),
            guard: DepthGuard::new(self.meter.clone(), self.instance.clone()),
        }
    }

    /// Sends and waits for the reply.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Metered<M>>,
        A::Context: actix::dev::ToEnvelope<A, Metered<M>>,
    {
        self.addr.send(self.wrap(msg)).await
    }

    /// Sends without waiting; a message to a stopped actor is dropped.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Metered<M>>,
        A::Context: actix::dev::ToEnvelope<A, Metered<M>>,
    {
        self.addr.do_send(self.wrap(msg));
    }

    pub fn connected(&self) -> bool {
        self.addr.connected()
    }

    /// A measured door for one message type that hides the actor's type, so
    /// a child can report to its supervisor without importing it.
    pub fn recipient<M>(&self) -> MeteredRecipient<M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Metered<M>>,
        A::Context: actix::dev::ToEnvelope<A, Metered<M>>,
    {
        MeteredRecipient {
            recipient: self.addr.clone().recipient(),
            meter: self.meter.clone(),
        }
    }
}

/// [`MeteredAddr`] for one message type, as `Recipient` is to `Addr`.
pub struct MeteredRecipient<M: Message + Send>
where
    M::Result: Send,
{
    recipient: Recipient<Metered<M>>,
    meter: MailboxMeter,
}

impl<M: Message + Send> Clone for MeteredRecipient<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Self {
            recipient: self.recipient.clone(),
            meter: self.meter.clone(),
        }
    }
}

impl<M: Message + Send> MeteredRecipient<M>
where
    M::Result: Send,
{
    /// Sends without waiting; a message to a stopped actor is dropped.
    pub fn do_send(&self, msg: M) {
        self.recipient.do_send(Metered {
            msg,
            enqueued: Instant::now(),
            guard: DepthGuard::new(self.meter.clone(), None),
        });
    }
}

/// Gives an actor a measured mailbox for the listed messages:
/// `metered_actor!(Session: Logout, Shutdown);` makes each
/// `Handler<Metered<M>>` delegate to `Handler<M>`.
#[macro_export]
macro_rules! metered_actor {
    ($actor:ty : $($msg:ty),+ $(,)?) => {
        $(
            impl ::actix::Handler<$crate::mailbox::Metered<$msg>> for $actor {
                type Result = <$actor as ::actix::Handler<$msg>>::Result;

                fn handle(
                    &mut self,
                    msg: $crate::mailbox::Metered<$msg>,
                    ctx: &mut <$actor as ::actix::Actor>::Context,
                ) -> Self::Result {
                    let (msg, _probe) = msg.open();
                    <$actor as ::actix::Handler<$msg>>::handle(self, msg, ctx)
                }
            }
        )+
    };
}
