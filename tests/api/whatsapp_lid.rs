//! Senders WhatsApp addresses by privacy id (`…@lid`), through the real
//! WhatsApp Web client, offline. WhatsApp puts the sender's phone number
//! beside a LID-addressed direct message (`sender_pn`) when it has it, and a
//! client that learned the mapping (from such a message, or from a usync
//! `lid` answer) must apply it to later messages that carry only the LID.
//! Laravel must always get the phone number: `@lid` senders are the most
//! frequent complaint of other gateways' users.

use wagate_testkit::{EncKind, SenderAddress};

use crate::helpers::{eventually, message_items, PATIENCE};
use crate::whatsapp_send::{arrived_once, linked, Linked};

/// A phone on WhatsApp that writes from its privacy id.
const LID_PEER: &str = "15557770002";
const LID_PEER_LID: &str = "200000000000002";

/// `LID_PEER` writes `text` addressed as `address`; asserts it went as
/// `kind` and reached Laravel once, from and in the chat of its number.
async fn lid_peer_writes(
    linked: &Linked,
    id: &str,
    text: &str,
    address: SenderAddress,
    kind: EncKind,
) {
    let Linked {
        laravel,
        server,
        user,
        ..
    } = linked;
    let (wire, sent_as) = server
        .send_text_as(LID_PEER, user, text, address)
        .await
        .expect("the peer writes");
    assert_eq!(sent_as, kind, "{text:?} went as {sent_as:?}");
    let item = arrived_once(laravel, id, &wire, text).await;
    assert_eq!(
        item["from"], LID_PEER,
        "the phone number, not the LID: {item:?}"
    );
    assert_eq!(
        item["chat"], LID_PEER,
        "answer at the phone number: {item:?}"
    );
}

/// The first LID-addressed message carries `sender_pn`; the second only the
/// LID (still a `pkmsg`: the peer has had no answer yet), and the client
/// resolves it from the mapping it learned. The answer to the number then
/// decrypts at the peer's phone.
#[actix_rt::test]
async fn whatsapp_web_lid_sender_reaches_laravel_as_its_phone_number() {
    let id = "lid-1";
    let linked = linked(id).await;
    linked
        .server
        .add_peer(LID_PEER, Some(LID_PEER_LID))
        .expect("the peer's keys");
    let (server, user) = (&linked.server, &linked.user);
    let uploaded = eventually(PATIENCE, || async { server.uploaded_prekeys(user) > 0 }).await;
    assert!(uploaded, "the linked device uploaded no prekeys");

    lid_peer_writes(
        &linked,
        id,
        "hi, from my privacy id",
        SenderAddress::Lid { with_phone: true },
        EncKind::PreKey,
    )
    .await;
    lid_peer_writes(
        &linked,
        id,
        "again, LID only",
        SenderAddress::Lid { with_phone: false },
        EncKind::PreKey,
    )
    .await;
    let all = message_items(&linked.laravel, "message");
    assert!(
        all.iter().all(|m| !m.to_string().contains("@lid")),
        "no @lid reached Laravel: {all:?}"
    );
    // The answer goes to the number and decrypts at the peer's phone.
    let r = linked.gw.send_text(id, LID_PEER, "answer").await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let mid = r.json()["messageId"].as_str().expect("an id").to_owned();
    linked.gw.wait_message(id, &mid, "sent").await;
    let got: Vec<_> = server
        .peer_messages(LID_PEER)
        .into_iter()
        .filter(|m| m.id == mid)
        .collect();
    assert_eq!(got.len(), 1, "undecryptable: {:?}", server.undecryptable());
    assert_eq!(got[0].text.as_deref(), Some("answer"));
    linked.gw.shutdown().await;
}
