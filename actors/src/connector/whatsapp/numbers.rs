//! Is a phone number on WhatsApp? Asked once per session before sending to
//! a number, so a number that is not on WhatsApp fails at once
//! (`Rejected`) instead of after a nack or a timeout. The pure
//! [`Directory`] caches answers (registered for [`REGISTERED_TTL`], not
//! registered for [`UNREGISTERED_TTL`]) and coalesces waiting callers; the
//! [`NumberCheck`] task carries it out with the crate's `is_on_whatsapp`
//! (one usync query per batch). Started by the driver with its client; each
//! send asks it through [`NumberCheck::registered`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use whatsapp_rust::{Client, Jid, Server};

/// How long a "registered" answer is trusted: numbers rarely leave WhatsApp.
pub const REGISTERED_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a "not on WhatsApp" answer is trusted: shorter, so a number that
/// joins WhatsApp can be written to within the hour.
pub const UNREGISTERED_TTL: Duration = Duration::from_secs(3600);
/// Numbers asked in one usync query at most.
pub const MAX_BATCH: usize = 50;
/// Answers kept per session; beyond it expired ones go first, then any.
const CAPACITY: usize = 10_000;
/// A query not answered in this time counts as "unknown": the send goes
/// ahead and WhatsApp's own ack decides.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Cached answers and the callers waiting for one. `W` is whatever the
/// caller is woken with (a oneshot sender in the task, a tag in tests).
pub struct Directory<W> {
    known: HashMap<String, (bool, Instant)>,
    waiting: HashMap<String, Vec<W>>,
    asked: HashSet<String>,
}

impl<W> Default for Directory<W> {
    fn default() -> Self {
        Self {
            known: HashMap::new(),
            waiting: HashMap::new(),
            asked: HashSet::new(),
        }
    }
}

impl<W> Directory<W> {
    /// The cached answer for `number`, handing `waiter` back with it; else
    /// `waiter` waits for the next query that covers `number`.
    pub fn ask(&mut self, number: &str, waiter: W, now: Instant) -> Option<(W, bool)> {
        if let Some(&(registered, at)) = self.known.get(number) {
            let ttl = if registered {
                REGISTERED_TTL
            } else {
                UNREGISTERED_TTL
            };
            if now.duration_since(at) < ttl {
                return Some((waiter, registered));
            }
            self.known.remove(number);
        }
        self.waiting
            .entry(number.to_owned())
            .or_default()
            .push(waiter);
        None
    }

    /// Up to `max` waited-for numbers not yet in a query; they are in one now.
    pub fn batch(&mut self, max: usize) -> Vec<String> {
        let batch: Vec<String> = self
            .waiting
            .keys()
            .filter(|n| !self.asked.contains(*n))
            .take(max)
            .cloned()
            .collect();
        self.asked.extend(batch.iter().cloned());
        batch
    }

    /// WhatsApp's answer for `number` (`None`: it did not say); returns the
    /// callers to wake with it. Only a clear answer is cached.
    pub fn answer(&mut self, number: &str, registered: Option<bool>, now: Instant) -> Vec<W> {
        self.asked.remove(number);
        if let Some(registered) = registered {
            self.remember(number, registered, now);
        }
        self.waiting.remove(number).unwrap_or_default()
    }

    fn remember(&mut self, number: &str, registered: bool, now: Instant) {
        if self.known.len() >= CAPACITY {
            self.known.retain(|_, (registered, at)| {
                let ttl = if *registered {
                    REGISTERED_TTL
                } else {
                    UNREGISTERED_TTL
                };
                now.duration_since(*at) < ttl
            });
        }
        if self.known.len() >= CAPACITY {
            if let Some(any) = self.known.keys().next().cloned() {
                self.known.remove(&any);
            }
        }
        self.known.insert(number.to_owned(), (registered, now));
    }
}

type Request = (String, oneshot::Sender<Option<bool>>);

/// One session's number checks: a task that owns the [`Directory`] and the
/// client's usync queries. Ends when the last handle is dropped.
#[derive(Clone)]
pub struct NumberCheck {
    requests: mpsc::UnboundedSender<Request>,
}

impl NumberCheck {
    pub fn start(client: Arc<Client>) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, rx));
        Self { requests }
    }

    /// `Some(false)`: WhatsApp says `number` (digits) is not on WhatsApp.
    /// `None` when it could not say (not connected, timeout, an error for
    /// that number): the caller sends anyway.
    pub async fn registered(&self, number: &str) -> Option<bool> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((number.to_owned(), tx)).ok()?;
        rx.await.ok().flatten()
    }
}

async fn run(client: Arc<Client>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut directory = Directory::default();
    while let Some(first) = requests.recv().await {
        // Everything asked while the previous query ran joins this round.
        let mut next = Some(first);
        while let Some((number, reply)) = next.take().or_else(|| requests.try_recv().ok()) {
            if let Some((reply, registered)) = directory.ask(&number, reply, Instant::now()) {
                let _ = reply.send(Some(registered));
            }
        }
        loop {
            let batch = directory.batch(MAX_BATCH);
            if batch.is_empty() {
                break;
            }
            let answers = query(&client, &batch).await;
            let now = Instant::now();
            for number in &batch {
                let registered = answers.get(number).copied();
                for reply in directory.answer(number, registered, now) {
                    let _ = reply.send(registered);
                }
            }
        }
    }
}

/// One usync query for `numbers`; the answer by number, only for numbers
/// WhatsApp answered without an error.
async fn query(client: &Client, numbers: &[String]) -> HashMap<String, bool> {
    let jids: Vec<Jid> = numbers.iter().map(|n| Jid::pn(n.as_str())).collect();
    let results =
        match tokio::time::timeout(QUERY_TIMEOUT, client.contacts().is_on_whatsapp(&jids)).await {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "is_on_whatsapp failed; sending without the check");
                return HashMap::new();
            }
            Err(_) => {
                tracing::debug!("is_on_whatsapp timed out; sending without the check");
                return HashMap::new();
            }
        };
    let mut answers = HashMap::new();
    for r in &results {
        if r.contact_error.is_some() {
            continue;
        }
        let pn = if r.jid.server == Server::Pn {
            Some(&r.jid)
        } else {
            r.pn_jid.as_ref()
        };
        if let Some(pn) = pn {
            answers.insert(pn.user.to_string(), r.is_registered);
        }
    }
    // WhatsApp may answer a single number in its own normal form (a
    // country's extra mobile digit): the one answer is still about it.
    if let ([number], [r]) = (numbers, results.as_slice()) {
        if r.contact_error.is_none() && !answers.contains_key(number) {
            answers.insert(number.clone(), r.is_registered);
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_for_one_number_share_one_question() {
        let mut d = Directory::default();
        let now = Instant::now();
        assert!(d.ask("111", 'a', now).is_none());
        assert!(d.ask("111", 'b', now).is_none());
        assert!(d.ask("222", 'c', now).is_none());
        let mut batch = d.batch(MAX_BATCH);
        batch.sort();
        assert_eq!(batch, ["111", "222"], "each number asked once");
        assert!(d.batch(MAX_BATCH).is_empty(), "nothing asked twice");
        assert_eq!(d.answer("111", Some(false), now), ['a', 'b']);
        assert_eq!(d.answer("222", Some(true), now), ['c']);
    }

    #[test]
    fn answers_are_cached_for_their_ttl() {
        let mut d = Directory::default();
        let t0 = Instant::now();
        d.ask("111", 0, t0);
        d.ask("222", 0, t0);
        d.batch(MAX_BATCH);
        d.answer("111", Some(true), t0);
        d.answer("222", Some(false), t0);
        let later = t0 + UNREGISTERED_TTL - Duration::from_secs(1);
        assert_eq!(d.ask("111", 1, later), Some((1, true)));
        assert_eq!(d.ask("222", 2, later), Some((2, false)));
        // A "not on WhatsApp" is asked again after its shorter TTL …
        assert!(d.ask("222", 3, t0 + UNREGISTERED_TTL).is_none());
        assert_eq!(d.batch(MAX_BATCH), ["222"]);
        // … a "registered" only after a day.
        assert_eq!(d.ask("111", 4, t0 + UNREGISTERED_TTL), Some((4, true)));
        assert!(d.ask("111", 5, t0 + REGISTERED_TTL).is_none());
    }

    #[test]
    fn an_unclear_answer_wakes_callers_but_is_not_cached() {
        let mut d = Directory::default();
        let now = Instant::now();
        d.ask("111", 'a', now);
        d.batch(MAX_BATCH);
        assert_eq!(d.answer("111", None, now), ['a']);
        assert!(d.ask("111", 'b', now).is_none(), "asked again next time");
        assert_eq!(d.batch(MAX_BATCH), ["111"]);
    }

    #[test]
    fn batches_are_bounded() {
        let mut d = Directory::default();
        let now = Instant::now();
        for n in 0..(MAX_BATCH + 5) {
            d.ask(&n.to_string(), n, now);
        }
        assert_eq!(d.batch(MAX_BATCH).len(), MAX_BATCH);
        assert_eq!(d.batch(MAX_BATCH).len(), 5, "the rest in the next query");
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let mut d: Directory<()> = Directory::default();
        let now = Instant::now();
        for n in 0..(CAPACITY + 10) {
            d.remember(&n.to_string(), true, now);
        }
        assert!(d.known.len() <= CAPACITY);
    }
}
