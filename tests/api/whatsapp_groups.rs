//! Groups and status posts through the real WhatsApp Web client, offline.
//! `FakeWhatsApp` knows the group's members and answers the client's
//! group-info query; what the client sends to `…@g.us` must reach every
//! member's phone the way WhatsApp carries it: its sender key distributed
//! pairwise to each member device (`pkmsg`/`msg`) once, and one `skmsg` per
//! message that every phone decrypts with that key. The other way, a
//! member's group message (distribution + `skmsg`) must reach Laravel once
//! in the group's chat, from the member's phone number (also when WhatsApp
//! names the member by privacy id). Status posts (`status@broadcast`, also
//! sender-key encrypted) are dropped and counted unless `WA_FORWARD_STATUS`.

use serde_json::Value;
use wagate_testkit::{Addressing, EncKind, FakeWhatsApp, PeerMessage, SenderAddress};

use crate::helpers::{eventually, message_items, metric_sample, TestGateway, PATIENCE};
use crate::whatsapp_send::{arrived_once, linked, linked_with, Linked, PEER};

/// A second member with a phone number only.
const MEMBER: &str = "15557770003";
/// A member WhatsApp names by privacy id in the group.
const LID_MEMBER: &str = "15557770004";
const LID_MEMBER_LID: &str = "200000000000004";
const GROUP: &str = "120363000000000001";
const STATUS: &str = "status@broadcast";

/// What phone `phone` decrypted under wire id `mid`.
fn at(server: &FakeWhatsApp, phone: &str, mid: &str) -> Vec<PeerMessage> {
    server
        .peer_messages(phone)
        .into_iter()
        .filter(|m| m.id == mid)
        .collect()
}

/// Posts `text` to `to` and waits for `sent`; returns the message id.
async fn post(gw: &TestGateway, id: &str, to: &str, text: &str) -> String {
    let r = gw.send_text(id, to, text).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let mid = r.json()["messageId"].as_str().expect("an id").to_owned();
    gw.wait_message(id, &mid, "sent").await;
    mid
}

/// Asserts member `phone` read `text` exactly once, as a `skmsg` in
/// `group`, and returns whether a sender key distribution came with it.
fn read_once(server: &FakeWhatsApp, phone: &str, mid: &str, group: &str, text: &str) -> bool {
    let got = at(server, phone, mid);
    let content: Vec<&PeerMessage> = got.iter().filter(|m| m.text.is_some()).collect();
    assert_eq!(
        content.len(),
        1,
        "{phone} reads {text:?} once: {got:?}; undecryptable: {:?}",
        server.undecryptable()
    );
    assert_eq!(
        content[0].enc,
        EncKind::SenderKey,
        "one skmsg for the group"
    );
    assert_eq!(content[0].text.as_deref(), Some(text));
    assert_eq!(content[0].chat.as_deref(), Some(group));
    let keys: Vec<&PeerMessage> = got.iter().filter(|m| m.distribution).collect();
    assert!(keys.len() <= 1, "one distribution at most: {got:?}");
    if let Some(key) = keys.first() {
        assert_eq!(key.chat.as_deref(), Some(group), "the key is for the group");
        assert_ne!(key.enc, EncKind::SenderKey, "the key goes pairwise");
    }
    assert_eq!(
        server
            .stanzas_to(phone)
            .iter()
            .filter(|s| *s == mid)
            .count(),
        1,
        "one stanza reached {phone}"
    );
    !keys.is_empty()
}

/// The member's `send_result`s for `mid` at Laravel, once there.
async fn sent_once(linked: &Linked, mid: &str, to: &str) {
    let laravel = &linked.laravel;
    let mine = |laravel: &wagate_testkit::FakeLaravel| -> Vec<Value> {
        message_items(laravel, "send_result")
            .into_iter()
            .filter(|m| m["messageId"] == mid)
            .collect()
    };
    let reported = laravel
        .wait_for(PATIENCE, |_| !mine(laravel).is_empty())
        .await;
    assert!(reported, "no send_result for {mid}");
    let results = mine(laravel);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["status"], "sent");
    assert_eq!(results[0]["to"], to);
}

/// The gateway writes to a group of two other phones: the first text
/// distributes the sender key to each member device pairwise (a `pkmsg`: no
/// session yet) and goes as one `skmsg` both decrypt; the second reuses the
/// key (no distribution to either member, again one `skmsg`). Laravel hears
/// `sent` once for each.
#[actix_rt::test]
async fn whatsapp_web_group_text_reaches_every_member_once_and_reuses_the_sender_key() {
    let id = "group-send-1";
    let linked = linked(id).await;
    let server = &linked.server;
    server.add_peer(MEMBER, None).expect("the member's keys");
    let group = server.add_group(GROUP, &[&linked.user, PEER, MEMBER], Addressing::Phone);

    let first = post(&linked.gw, id, &group, "hello group").await;
    for phone in [PEER, MEMBER] {
        assert!(
            read_once(server, phone, &first, &group, "hello group"),
            "the first message distributes the key to {phone}"
        );
        let key = at(server, phone, &first)
            .into_iter()
            .find(|m| m.distribution)
            .expect("the key");
        assert_eq!(key.enc, EncKind::PreKey, "no session yet: {key:?}");
    }
    sent_once(&linked, &first, &group).await;

    let second = post(&linked.gw, id, &group, "second, same key").await;
    for phone in [PEER, MEMBER] {
        assert!(
            !read_once(server, phone, &second, &group, "second, same key"),
            "the key is reused: no new distribution to {phone}"
        );
    }
    sent_once(&linked, &second, &group).await;
    assert!(
        server.undecryptable().is_empty(),
        "{:?}",
        server.undecryptable()
    );
    linked.gw.shutdown().await;
}

/// Member `from` writes `text` to the group as `address` says; asserts
/// the key went along as `key` and that Laravel got it once, in the
/// group's chat, from the member's number.
async fn member_writes(
    linked: &Linked,
    id: &str,
    from: &str,
    text: &str,
    address: SenderAddress,
    key: Option<EncKind>,
) {
    let chat = format!("{GROUP}@g.us");
    let (wire, sent_as) = linked
        .server
        .send_group_text(from, &linked.user, &chat, text, address)
        .await
        .expect("the member writes");
    assert_eq!(sent_as, key, "{text:?}: the key went as {sent_as:?}");
    let item = arrived_once(&linked.laravel, id, &wire, text).await;
    assert_eq!(item["chat"], chat.as_str(), "in the group: {item:?}");
    assert_eq!(item["isGroup"], true, "{item:?}");
    assert_eq!(item["from"], from, "the member's number: {item:?}");
    assert_eq!(item["kind"], "text");
}

/// Members write to a group the linked account is in: the first message
/// carries the member's sender key (`pkmsg`), the second only a `skmsg`
/// (the client kept the key); a member named by privacy id (`@lid`, with
/// its number beside it) reaches Laravel as its number. The gateway's
/// reply to the group then decrypts at both members.
#[actix_rt::test]
async fn whatsapp_web_group_messages_reach_laravel_in_their_group_from_the_member() {
    let id = "group-receive-1";
    let linked = linked(id).await;
    let (server, user) = (&linked.server, &linked.user);
    server
        .add_peer(LID_MEMBER, Some(LID_MEMBER_LID))
        .expect("the member's keys");
    let group = server.add_group(GROUP, &[user, PEER, LID_MEMBER], Addressing::Phone);
    let uploaded = eventually(PATIENCE, || async { server.uploaded_prekeys(user) > 0 }).await;
    assert!(uploaded, "the linked device uploaded no prekeys");

    let phone = SenderAddress::Phone;
    member_writes(&linked, id, PEER, "hi all", phone, Some(EncKind::PreKey)).await;
    member_writes(&linked, id, PEER, "again, key kept", phone, None).await;
    let lid = SenderAddress::Lid { with_phone: true };
    member_writes(
        &linked,
        id,
        LID_MEMBER,
        "from my lid",
        lid,
        Some(EncKind::PreKey),
    )
    .await;
    let all = message_items(&linked.laravel, "message");
    assert_eq!(all.len(), 3, "nothing else reached Laravel: {all:?}");
    assert!(
        all.iter().all(|m| !m.to_string().contains("@lid")),
        "no @lid reached Laravel: {all:?}"
    );

    let reply = post(&linked.gw, id, &group, "reply to all").await;
    for phone in [PEER, LID_MEMBER] {
        read_once(server, phone, &reply, &group, "reply to all");
    }
    linked.gw.shutdown().await;
}

/// `PEER` posts `text` as a status; returns its wire id.
async fn post_status(linked: &Linked, text: &str) -> String {
    let (wire, key) = linked
        .server
        .send_group_text(PEER, &linked.user, STATUS, text, SenderAddress::Phone)
        .await
        .expect("the peer posts a status");
    assert_eq!(key, Some(EncKind::PreKey), "the status key goes along");
    wire
}

async fn status_dropped(gw: &TestGateway) -> f64 {
    let text = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    metric_sample(
        &text,
        "wagate_connector_incoming_total{kind=\"status_dropped\"}",
    )
}

/// By default a contact's status post is not a chat message: it is counted
/// and never reaches Laravel, while the contact's direct message after it
/// does (so the status was processed first, not still on its way).
#[actix_rt::test]
async fn whatsapp_web_status_posts_are_dropped_and_counted_by_default() {
    let id = "status-drop-1";
    let linked = linked(id).await;
    let (server, user) = (&linked.server, &linked.user);
    let uploaded = eventually(PATIENCE, || async { server.uploaded_prekeys(user) > 0 }).await;
    assert!(uploaded, "the linked device uploaded no prekeys");

    let status = post_status(&linked, "my status").await;
    let gw = &linked.gw;
    let counted = eventually(PATIENCE, || async { status_dropped(gw).await == 1.0 }).await;
    assert!(counted, "dropped statuses: {}", status_dropped(gw).await);
    let (wire, _) = server
        .send_text(PEER, user, "a direct message")
        .await
        .expect("the peer writes");
    arrived_once(&linked.laravel, id, &wire, "a direct message").await;
    let all = message_items(&linked.laravel, "message");
    assert!(
        all.iter().all(|m| m["id"] != status.as_str()),
        "the status reached Laravel: {all:?}"
    );
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(status_dropped(gw).await, 1.0);
    linked.gw.shutdown().await;
}

/// With `WA_FORWARD_STATUS` the status post reaches Laravel once, in the
/// `status@broadcast` chat, from the poster's number, not as a group.
#[actix_rt::test]
async fn whatsapp_web_status_posts_are_forwarded_when_enabled() {
    let id = "status-forward-1";
    let linked = linked_with(id, |c| c.whatsapp.forward_status = true).await;
    let (server, user) = (&linked.server, &linked.user);
    let uploaded = eventually(PATIENCE, || async { server.uploaded_prekeys(user) > 0 }).await;
    assert!(uploaded, "the linked device uploaded no prekeys");

    let status = post_status(&linked, "forward me").await;
    let item = arrived_once(&linked.laravel, id, &status, "forward me").await;
    assert_eq!(item["chat"], STATUS, "{item:?}");
    assert_eq!(item["from"], PEER, "the poster's number: {item:?}");
    assert_eq!(item["isGroup"], false, "a status is not a group: {item:?}");
    assert_eq!(status_dropped(&linked.gw).await, 0.0);
    linked.gw.shutdown().await;
}
