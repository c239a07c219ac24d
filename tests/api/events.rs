//! Live events over SSE (`GET /events`) and WebSocket (`GET /events/ws`):
//! a session's whole life arrives in order with ids that resume through
//! `Last-Event-ID`, filters hold, bad filters get a 400, and a subscriber
//! that stops reading is dropped while the others carry on.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

use crate::helpers::{eventually, metric_sample, spawn, test_config, PATIENCE};

/// One SSE frame: its id (none for `missed`/`dropped`), event name, data.
#[derive(Debug)]
struct Frame {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// A reading SSE subscriber.
struct Sse {
    body: awc::ClientResponse<actix_web::dev::Decompress<actix_web::dev::Payload>>,
    buf: String,
}

impl Sse {
    async fn open(base: &str, query: &str, last_event_id: Option<u64>) -> Self {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(600))
            .finish();
        let mut req = client.get(format!("{base}/events{query}"));
        if let Some(id) = last_event_id {
            req = req.insert_header(("Last-Event-ID", id.to_string()));
        }
        let body = req.send().await.expect("the event stream opens");
        assert_eq!(body.status(), 200);
        assert_eq!(
            body.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        Self {
            body,
            buf: String::new(),
        }
    }

    /// The next frame that is not a comment.
    async fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), Value::Null);
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).unwrap();
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                return Frame { id, event, data };
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("an event within the patience")
                .expect("the stream stays open")
                .expect("the stream reads");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Frames until one satisfies `done` (included).
    async fn until(&mut self, done: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut seen = Vec::new();
        loop {
            let f = self.next().await;
            let stop = done(&f);
            seen.push(f);
            if stop {
                return seen;
            }
        }
    }
}

fn is_state(f: &Frame, state: &str) -> bool {
    f.event == "state" && f.data["data"]["state"] == state
}

#[actix_rt::test]
async fn a_sessions_life_arrives_in_order_and_resumes_after_the_last_event_id() {
    let mut config = test_config();
    config.simulator.qr_first_ms = 60_000; // one QR code
    config.batch.messages_interval_ms = 20;
    let gw = spawn(config).await;
    let mut sse = Sse::open(gw.base_url(), "?session=e1", None).await;

    gw.create("e1").await;
    gw.create("other").await;
    let to_qr = sse.until(|f| f.event == "qr").await;
    let qr = to_qr.last().unwrap();
    let shown = gw.get("/sessions/e1/qr").await.json();
    assert_eq!(
        qr.data["data"]["qr"], shown["qr"],
        "the raw code, as GET …/qr shows it"
    );
    assert_eq!(qr.data["sessionId"], "e1");
    assert_eq!(qr.data["id"].as_u64(), qr.id);
    assert_eq!(
        gw.post("/sessions/e1/simulate/scan", json!({}))
            .await
            .status,
        200
    );
    sse.until(|f| is_state(f, "connected")).await;
    let incoming = gw
        .post(
            "/sessions/e1/simulate/incoming",
            json!({ "from": "5215512345678", "text": "hola" }),
        )
        .await;
    assert_eq!(incoming.status, 200);
    let message = sse.until(|f| f.event == "message").await.pop().unwrap();
    assert_eq!(message.data["data"]["text"], "hola");
    let sent = gw.send_text("e1", "5215512345678", "adiós").await.json();
    let result = sse.until(|f| f.event == "send_result").await.pop().unwrap();
    assert_eq!(result.data["data"]["messageId"], sent["messageId"]);
    assert_eq!(result.data["data"]["status"], "sent");

    // Everything after the QR event, as the first subscriber saw it...
    let qr_id = qr.id.unwrap();
    let mut seen: Vec<u64> = Vec::new();
    let mut replay = Sse::open(gw.base_url(), "?session=e1", Some(qr_id)).await;
    let resumed = replay.until(|f| f.event == "send_result").await;
    for f in &resumed {
        assert_eq!(
            f.data["sessionId"], "e1",
            "the filter holds on replay: {f:?}"
        );
        seen.push(f.id.unwrap());
    }
    // ...comes again to a subscriber resuming after it: in order, once.
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen[0] > qr_id);
    assert_eq!(resumed.last().unwrap().id, result.id);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn the_websocket_carries_only_the_kinds_asked_for() {
    let mut config = test_config();
    config.simulator.qr_first_ms = 60_000;
    let gw = spawn(config).await;
    let url = format!("{}/events/ws?session=w1&types=state", gw.base_url());
    let (_resp, mut ws) = awc::Client::new()
        .ws(url)
        .connect()
        .await
        .expect("upgraded");
    gw.create("w1").await;
    gw.wait_state("w1", "qr").await;
    assert_eq!(
        gw.post("/sessions/w1/simulate/scan", json!({}))
            .await
            .status,
        200
    );
    let mut states = Vec::new();
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame within the patience")
            .expect("open")
            .expect("reads");
        let awc::ws::Frame::Text(text) = frame else {
            continue;
        };
        let event: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(event["type"], "state", "only states: {event}");
        assert_eq!(event["sessionId"], "w1");
        let state = event["data"]["state"].as_str().unwrap().to_owned();
        states.push(state.clone());
        if state == "connected" {
            break;
        }
    }
    assert!(states.contains(&"qr".to_owned()), "{states:?}");
    ws.send(awc::ws::Message::Close(None)).await.unwrap();
    gw.shutdown().await;
}

#[actix_rt::test]
async fn bad_filters_get_a_400_and_subscribe_nothing() {
    let gw = spawn(test_config()).await;
    for (query, needle) in [
        ("?types=state,typing", "typing"),
        ("?session=a%20b", "session"),
        ("?after=soon", ""),
        ("?colour=red", "colour"),
    ] {
        let r = gw.get(&format!("/events{query}")).await;
        assert_eq!(r.status, 400, "{query}");
        let body = r.json();
        assert_eq!(body["error"]["code"], "invalid_query", "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }
    let r = awc::Client::new()
        .get(format!("{}/events", gw.base_url()))
        .insert_header(("Last-Event-ID", "yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let metrics = gw.get_text("/metrics").await;
    assert_eq!(metric_sample(&metrics, "wagate_events_subscribers"), 0.0);
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_subscriber_that_stops_reading_is_dropped_and_the_others_go_on() {
    let mut config = test_config();
    config.batch.messages_interval_ms = 20;
    let gw = spawn(config).await;
    gw.link("big").await;
    // A client that asks for the stream and never reads a byte of it.
    let addr = gw.base_url().trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stuck
        .write_all(b"GET /events?types=message HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reader = Sse::open(gw.base_url(), "?types=message", None).await;
    let subscribed = eventually(PATIENCE, || async {
        metric_sample(&gw.get_text("/metrics").await, "wagate_events_subscribers") == 2.0
    })
    .await;
    assert!(subscribed);

    // ~60 KB per event: the stuck client's socket buffers fill, then its feed.
    let text = "x".repeat(60_000);
    let mut sent = 0;
    let dropped = loop {
        for _ in 0..50 {
            let r = gw
                .post(
                    "/sessions/big/simulate/incoming",
                    json!({ "from": "5215512345678", "text": text }),
                )
                .await;
            assert_eq!(r.status, 200);
            sent += 1;
        }
        // The reader keeps up: read what was published so far.
        for _ in 0..50 {
            let f = reader.next().await;
            assert_eq!(f.event, "message", "{f:?}");
        }
        let metrics = gw.get_text("/metrics").await;
        let slow = r#"wagate_events_dropped_subscribers_total{reason="slow"}"#;
        if metric_sample(&metrics, slow) >= 1.0 {
            break true;
        }
        if sent >= 5_000 {
            break false;
        }
    };
    assert!(
        dropped,
        "the stuck subscriber was not dropped after {sent} events"
    );
    let metrics = gw.get_text("/metrics").await;
    assert_eq!(metric_sample(&metrics, "wagate_events_subscribers"), 1.0);
    // The reader was not dropped: it still gets what comes next.
    let r = gw
        .post(
            "/sessions/big/simulate/incoming",
            json!({ "from": "5215512345678", "text": "after" }),
        )
        .await;
    assert_eq!(r.status, 200);
    let last = reader.until(|f| f.data["data"]["text"] == "after").await;
    assert!(!last.is_empty());
    drop(stuck);
    gw.shutdown().await;
}
