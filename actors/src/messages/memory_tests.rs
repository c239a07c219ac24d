//! Unit tests of [`super::MemoryMessageLog`] (kept beside it so the log's
//! file stays short).

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::journal::HeldInbound;
use crate::messages::content::OutboundContent;
use crate::messages::{Finished, MessageStatus};

/// `entry` ended with `record` (failed for good when `dead` is given); the
/// memory log keeps no journal record, so any report will do.
fn ended(entry: &str, record: &MessageRecord, dead: Option<&OutboundMessage>) -> [Finished; 1] {
    [Finished {
        entry: entry.to_owned(),
        record: record.clone(),
        dead: dead.map(|m| Box::new(m.clone())),
        report: HeldInbound {
            key: "s/sent/m".into(),
            boot: "b".into(),
            n: 0,
            item: serde_json::Value::Null,
        },
    }]
}

fn lim(total: u64) -> QueueLimits {
    QueueLimits {
        total,
        per_session: u64::MAX,
    }
}

fn message(session: &str, key: Option<&str>) -> OutboundMessage {
    OutboundMessage {
        id: OutboundMessage::new_id(),
        session: SessionId::parse(session).unwrap(),
        to: "5215512345678".into(),
        content: OutboundContent::Text { text: "hi".into() },
        quoted_message_id: None,
        mentions: Vec::new(),
        idempotency_key: key.map(str::to_owned),
        humane: false,
        created_ms: 1,
    }
}

#[actix_rt::test]
async fn delivers_in_order_and_counts() {
    let log = MemoryMessageLog::default();
    let (a, b) = (message("s", None), message("s", None));
    log.enqueue(&a, lim(10)).await.unwrap();
    log.enqueue(&b, lim(10)).await.unwrap();
    let read = log.read("n1", 10).await.unwrap();
    assert_eq!(
        read.iter().map(|d| &d.message).collect::<Vec<_>>(),
        vec![&a, &b]
    );
    let mut sent = MessageRecord::queued(&a);
    sent.status = MessageStatus::Sent;
    log.finish(&ended(&read[0].entry, &sent, None))
        .await
        .unwrap();
    let mut failed = MessageRecord::queued(&b);
    failed.status = MessageStatus::Failed;
    log.finish(&ended(&read[1].entry, &failed, Some(&b)))
        .await
        .unwrap();
    let counts = log.counts().await.unwrap();
    assert_eq!((counts.completed, counts.failed, counts.active), (1, 1, 0));
    assert_eq!(log.dead_letters().len(), 1);
    let got = log.get(&a.session, &a.id).await.unwrap().unwrap();
    assert_eq!(got.status, MessageStatus::Sent);
    let other = SessionId::parse("other").unwrap();
    assert_eq!(log.get(&other, &a.id).await.unwrap(), None);
}

#[actix_rt::test]
async fn idempotency_and_limit() {
    let log = MemoryMessageLog::default();
    let first = message("s", Some("k"));
    assert_eq!(log.enqueue(&first, lim(2)).await.unwrap(), Enqueued::New);
    let again = message("s", Some("k"));
    assert_eq!(
        log.enqueue(&again, lim(2)).await.unwrap(),
        Enqueued::Duplicate(first.id.clone())
    );
    log.enqueue(&message("s", None), lim(2)).await.unwrap();
    assert!(matches!(
        log.enqueue(&message("s", None), lim(2)).await,
        Err(QueueError::Full { limit: 2 })
    ));
}

#[actix_rt::test]
async fn idle_entries_are_claimed_unless_kept_alive() {
    let now = Arc::new(AtomicU64::new(1_000));
    let clock = Arc::clone(&now);
    let log = MemoryMessageLog::with_clock(
        LogBounds::default(),
        Arc::new(move || clock.load(Ordering::SeqCst)),
    );
    log.enqueue(&message("s", None), lim(10)).await.unwrap();
    log.enqueue(&message("s", None), lim(10)).await.unwrap();
    let read = log.read("dead-node", 10).await.unwrap();
    now.store(1_500, Ordering::SeqCst);
    log.keep_alive("dead-node", &[read[1].entry.clone()])
        .await
        .unwrap();
    now.store(2_100, Ordering::SeqCst);
    let claimed = log.claim_idle("n2", 1_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the entry not kept alive");
    assert_eq!(claimed[0].entry, read[0].entry);
}

/// A log on a clock the test moves, with small bounds.
fn bounded(now: &Arc<AtomicU64>, b: LogBounds) -> MemoryMessageLog {
    let clock = Arc::clone(now);
    MemoryMessageLog::with_clock(b, Arc::new(move || clock.load(Ordering::SeqCst)))
}

async fn send_and_finish(log: &MemoryMessageLog, m: &OutboundMessage, at: u64, ok: bool) {
    log.enqueue(m, lim(1000)).await.unwrap();
    let d = log.read("n", 1).await.unwrap().remove(0);
    let mut r = MessageRecord::queued(m);
    r.updated_ms = at;
    if ok {
        r.status = MessageStatus::Sent;
        log.finish(&ended(&d.entry, &r, None)).await.unwrap();
    } else {
        r.status = MessageStatus::Failed;
        log.finish(&ended(&d.entry, &r, Some(m))).await.unwrap();
    }
}

#[actix_rt::test]
async fn finished_records_expire_and_are_capped_oldest_first() {
    let now = Arc::new(AtomicU64::new(10_000));
    let b = LogBounds {
        record_ttl: std::time::Duration::from_secs(60),
        max_records: 3,
        ..LogBounds::default()
    };
    let log = bounded(&now, b);
    let ms: Vec<_> = (0..5).map(|_| message("s", None)).collect();
    for m in &ms {
        send_and_finish(&log, m, 10_000, true).await;
    }
    let s = &ms[0].session;
    assert!(
        log.get(s, &ms[0].id).await.unwrap().is_none(),
        "cap: oldest gone"
    );
    assert!(log.get(s, &ms[1].id).await.unwrap().is_none());
    assert!(log.get(s, &ms[4].id).await.unwrap().is_some());
    // An unfinished message's record is never pruned, however old.
    let waiting = message("s", None);
    log.enqueue(&waiting, lim(1000)).await.unwrap();
    now.store(10_000 + 61_000, Ordering::SeqCst);
    log.enqueue(&message("s", None), lim(1000)).await.unwrap();
    assert!(
        log.get(s, &ms[4].id).await.unwrap().is_none(),
        "TTL: expired"
    );
    assert!(
        log.get(s, &waiting.id).await.unwrap().is_some(),
        "accepted work kept"
    );
}

#[actix_rt::test]
async fn idempotency_keys_expire_after_a_day() {
    let now = Arc::new(AtomicU64::new(1_000));
    let log = bounded(&now, LogBounds::default());
    let first = message("s", Some("k"));
    log.enqueue(&first, lim(10)).await.unwrap();
    now.store(1_000 + IDEMPOTENCY_TTL_MS - 1, Ordering::SeqCst);
    assert!(matches!(
        log.enqueue(&message("s", Some("k")), lim(10))
            .await
            .unwrap(),
        Enqueued::Duplicate(_)
    ));
    now.store(1_000 + IDEMPOTENCY_TTL_MS, Ordering::SeqCst);
    assert_eq!(
        log.enqueue(&message("s", Some("k")), lim(10))
            .await
            .unwrap(),
        Enqueued::New,
        "a day later the key is free again"
    );
}

#[actix_rt::test]
async fn dead_letters_are_capped_aged_and_cut() {
    let now = Arc::new(AtomicU64::new(1_000));
    let b = LogBounds {
        dead_max: 2,
        dead_ttl: std::time::Duration::from_secs(10),
        dead_text_max: 5,
        ..LogBounds::default()
    };
    let log = bounded(&now, b);
    for i in 0..3 {
        let mut m = message("s", None);
        m.content = OutboundContent::Text {
            text: format!("secret text number {i}"),
        };
        send_and_finish(&log, &m, 1_000, false).await;
    }
    let dead = log.dead_letters();
    assert_eq!(dead.len(), 2, "capped");
    let text = |m: &OutboundMessage| match &m.content {
        OutboundContent::Text { text } => text.clone(),
        other => panic!("not a text: {other:?}"),
    };
    assert!(
        text(&dead[0].0).starts_with("secre… [cut:"),
        "{}",
        text(&dead[0].0)
    );
    assert!(dead.iter().all(|(m, _)| !text(m).contains("number")));
    now.store(1_000 + 10_000, Ordering::SeqCst);
    log.enqueue(&message("s", None), lim(10)).await.unwrap();
    assert!(log.dead_letters().is_empty(), "aged out");
}

#[actix_rt::test]
async fn one_session_cannot_take_the_whole_queue() {
    let log = MemoryMessageLog::default();
    let limits = QueueLimits {
        total: 100,
        per_session: 2,
    };
    log.enqueue(&message("greedy", None), limits).await.unwrap();
    log.enqueue(&message("greedy", None), limits).await.unwrap();
    assert!(matches!(
        log.enqueue(&message("greedy", None), limits).await,
        Err(QueueError::SessionFull { limit: 2 })
    ));
    assert_eq!(
        log.enqueue(&message("other", None), limits).await.unwrap(),
        Enqueued::New,
        "another tenant still gets in"
    );
    let d = log.read("n", 1).await.unwrap().remove(0);
    let mut r = MessageRecord::queued(&d.message);
    r.status = MessageStatus::Sent;
    log.finish(&ended(&d.entry, &r, None)).await.unwrap();
    assert_eq!(
        log.enqueue(&message("greedy", None), limits).await.unwrap(),
        Enqueued::New,
        "a finished message frees its slot"
    );
}

#[actix_rt::test]
async fn blobs_go_when_their_message_ends() {
    let log = MemoryMessageLog::default();
    let (sent, failed, refused) = (message("s", None), message("s", None), message("s", None));
    for m in [&sent, &failed, &refused] {
        log.store_blob(&m.id, bytes::Bytes::from_static(b"media"))
            .await
            .unwrap();
    }
    assert_eq!(log.blob_count().await.unwrap(), 3);
    assert_eq!(
        log.blob(&sent.id).await.unwrap().as_deref(),
        Some(&b"media"[..])
    );
    log.drop_blob(&refused.id).await.unwrap();
    send_and_finish(&log, &sent, 1, true).await;
    assert_eq!(log.blob_count().await.unwrap(), 1, "sent: blob gone");
    send_and_finish(&log, &failed, 1, false).await;
    assert_eq!(log.blob_count().await.unwrap(), 0, "failed: blob gone");
}
