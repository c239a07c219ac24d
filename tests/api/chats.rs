//! Contacts and chat actions over HTTP with the simulator: the contacts
//! check (answers from the simulated list: numbers beginning with `0` and
//! `SIM_NOT_ON_WHATSAPP`), typing and read receipts (the simulated WhatsApp
//! records them), their 400/404/409 refusals, and humane sending (a message
//! with `"humane": true` shows `composing`, waits, shows `paused`, then is
//! sent, also after a restart of the gateway).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wagate_actors::connector::simulator::Simulator;
use wagate_actors::connector::{ChatAction, ChatState};
use wagate_actors::ids::SessionId;
use wagate_testkit::RedisServer;

use crate::helpers::{eventually, redis_config, spawn, test_config, TestGateway, PATIENCE};

const LISTED: &str = "5215500000001";
const ON: &str = "5215512345678";

fn sim(gw: &TestGateway) -> std::sync::Arc<Simulator> {
    gw.gateway.simulator().cloned().expect("the simulator")
}

fn actions(gw: &TestGateway, id: &str) -> Vec<(ChatAction, Instant)> {
    sim(gw)
        .chat_actions(&SessionId::parse(id).unwrap())
        .into_iter()
        .map(|a| (a.action, a.at))
        .collect()
}

fn typing(to: &str, state: ChatState) -> ChatAction {
    ChatAction::Typing {
        to: to.into(),
        state,
    }
}

#[actix_rt::test]
async fn the_contacts_check_says_which_numbers_are_on_whatsapp() {
    let mut config = test_config();
    config.simulator.not_on_whatsapp = format!("{LISTED}, 5215500000002");
    let gw = spawn(config).await;
    gw.link("cc").await;

    let phones = json!({"phones": [format!("+{ON}"), "0015550001", LISTED, ON]});
    let r = gw.post("/sessions/cc/contacts/check", &phones).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].clone();
    assert_eq!(
        results,
        json!([
            {"phone": format!("+{ON}"), "onWhatsApp": true, "jid": format!("{ON}@s.whatsapp.net")},
            {"phone": "0015550001", "onWhatsApp": false, "jid": null},
            {"phone": LISTED, "onWhatsApp": false, "jid": null},
            {"phone": ON, "onWhatsApp": true, "jid": format!("{ON}@s.whatsapp.net")},
        ])
    );

    // Bad input: 400 naming the bad phones, nothing asked.
    let r = gw
        .post(
            "/sessions/cc/contacts/check",
            json!({"phones": [ON, "abc", "12"]}),
        )
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_body"));
    assert!(
        r.text().contains("abc") && r.text().contains("\\\"12\\\""),
        "{}",
        r.text()
    );
    let many: Vec<String> = (0..501).map(|n| format!("52155{n:08}")).collect();
    let r = gw
        .post("/sessions/cc/contacts/check", json!({ "phones": many }))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("at most 500"), "{}", r.text());
    let r = gw
        .post("/sessions/cc/contacts/check", json!({"phones": []}))
        .await;
    assert_eq!(r.status, 400);

    // A session that is not connected: 409; one that does not exist: 404.
    gw.create("unlinked").await;
    gw.wait_state("unlinked", "qr").await;
    let r = gw
        .post("/sessions/unlinked/contacts/check", json!({"phones": [ON]}))
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = gw
        .post("/sessions/nobody/contacts/check", json!({"phones": [ON]}))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    gw.shutdown().await;
}

#[actix_rt::test]
async fn typing_and_read_receipts_reach_the_simulated_whatsapp() {
    let gw = spawn(test_config()).await;
    gw.link("ct").await;

    for state in ["composing", "recording", "paused"] {
        let r = gw
            .post(
                &format!("/sessions/ct/chats/+{ON}/typing"),
                json!({ "state": state }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["to"], ON);
    }
    let group = "120363012345678901@g.us";
    let r = gw
        .post(
            &format!("/sessions/ct/chats/{group}/read"),
            json!({"messageIds": ["3EB0AA", "3EB0BB"], "sender": ON}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["read"], 2);
    let seen: Vec<ChatAction> = actions(&gw, "ct").into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        seen,
        [
            typing(ON, ChatState::Composing),
            typing(ON, ChatState::Recording),
            typing(ON, ChatState::Paused),
            ChatAction::Read {
                chat: group.into(),
                sender: Some(ON.into()),
                message_ids: vec!["3EB0AA".into(), "3EB0BB".into()],
            },
        ]
    );

    // Refused, and nothing reaches WhatsApp.
    let refusals: [(String, Value); 5] = [
        (
            format!("/sessions/ct/chats/{ON}/typing"),
            json!({"state": "typing"}),
        ),
        (
            "/sessions/ct/chats/hello/typing".into(),
            json!({"state": "paused"}),
        ),
        (
            format!("/sessions/ct/chats/{ON}/read"),
            json!({"messageIds": []}),
        ),
        (
            format!("/sessions/ct/chats/{ON}/read"),
            json!({"messageIds": ["no spaces"]}),
        ),
        (
            format!("/sessions/ct/chats/{ON}/read"),
            json!({"messageIds": ["3EB0AA"], "sender": "x"}),
        ),
    ];
    for (path, body) in refusals {
        let r = gw.post(&path, &body).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
    }
    assert_eq!(
        actions(&gw, "ct").len(),
        4,
        "a refused request did something"
    );

    gw.create("cold").await;
    gw.wait_state("cold", "qr").await;
    let r = gw
        .post(
            &format!("/sessions/cold/chats/{ON}/typing"),
            json!({"state": "composing"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    gw.shutdown().await;
}

/// The chat states shown to `to`, in order, with when.
fn states_to(gw: &TestGateway, id: &str, to: &str) -> Vec<(ChatState, Instant)> {
    actions(gw, id)
        .into_iter()
        .filter_map(|(a, at)| match a {
            ChatAction::Typing { to: t, state } if t == to => Some((state, at)),
            _ => None,
        })
        .collect()
}

/// Typing fixed at `ms` (jitter: ±20%).
fn humane_config(mut config: wagate::config::Config, ms: u64) -> wagate::config::Config {
    config.messages.humane_min_ms = ms;
    config.messages.humane_max_ms = ms;
    config
}

async fn send(gw: &TestGateway, id: &str, body: Value) -> String {
    let r = gw.post(&format!("/sessions/{id}/messages"), &body).await;
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["messageId"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn a_humane_message_types_then_pauses_then_is_sent() {
    let gw = spawn(humane_config(test_config(), 400)).await;
    gw.link("hu").await;
    let to = "5215512340001";
    let plain = "5215512340002";

    let posted = Instant::now();
    let mid = send(
        &gw,
        "hu",
        json!({"to": to, "text": "hello there", "humane": true}),
    )
    .await;
    let other = send(&gw, "hu", json!({"to": plain, "text": "not humane"})).await;
    gw.wait_message("hu", &mid, "sent").await;
    gw.wait_message("hu", &other, "sent").await;

    let sim = sim(&gw);
    let sent_at = sim.delivered_at(&mid).expect("delivered");
    let states = states_to(&gw, "hu", to);
    let kinds: Vec<ChatState> = states.iter().map(|(s, _)| *s).collect();
    assert_eq!(kinds, [ChatState::Composing, ChatState::Paused]);
    let (composing, paused) = (states[0].1, states[1].1);
    assert!(composing >= posted && paused >= composing && sent_at >= paused);
    // At least 0.8 × 400 ms between "typing…" and the message.
    assert!(
        sent_at.duration_since(composing) >= Duration::from_millis(320),
        "sent {:?} after composing",
        sent_at.duration_since(composing)
    );
    assert!(
        states_to(&gw, "hu", plain).is_empty(),
        "a message without 'humane' does not type"
    );
    assert!(
        sim.delivered_at(&other).unwrap() >= sent_at,
        "order per session kept"
    );
    gw.shutdown().await;
}

#[actix_rt::test]
async fn message_humane_makes_typing_the_default_and_a_message_may_opt_out() {
    let mut config = humane_config(test_config(), 200);
    config.messages.humane = true;
    let gw = spawn(config).await;
    gw.link("hd").await;
    let (a, b) = ("5215512340003", "5215512340004");
    let typed = send(&gw, "hd", json!({"to": a, "text": "hi"})).await;
    let plain = send(&gw, "hd", json!({"to": b, "text": "hi", "humane": false})).await;
    gw.wait_message("hd", &typed, "sent").await;
    gw.wait_message("hd", &plain, "sent").await;
    assert_eq!(states_to(&gw, "hd", a).len(), 2, "composing and paused");
    assert!(states_to(&gw, "hd", b).is_empty());
    gw.shutdown().await;
}

#[actix_rt::test]
async fn a_humane_message_typing_when_the_gateway_stops_is_sent_after_the_restart() {
    let redis = RedisServer::start();
    // Long enough that the stop comes while it types.
    let gw = spawn(humane_config(redis_config(&redis), 5_000)).await;
    gw.link("hr").await;
    let to = "5215512340005";
    let mid = send(&gw, "hr", json!({"to": to, "text": "hi", "humane": true})).await;
    let typing = eventually(PATIENCE, || async { !states_to(&gw, "hr", to).is_empty() }).await;
    assert!(typing, "never showed composing");
    gw.shutdown().await;

    let gw = spawn(humane_config(redis_config(&redis), 300)).await;
    gw.wait_state("hr", "connected").await;
    gw.wait_message("hr", &mid, "sent").await;
    let sent_at = sim(&gw)
        .delivered_at(&mid)
        .expect("sent by the new gateway");
    let states = states_to(&gw, "hr", to);
    assert_eq!(
        states.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [ChatState::Composing, ChatState::Paused],
        "the restarted gateway types again before sending"
    );
    assert!(sent_at.duration_since(states[0].1) >= Duration::from_millis(240));
    assert_eq!(sim(&gw).deliveries(&mid), 1);
    gw.shutdown().await;
}
