//! Contacts and chat actions through the real WhatsApp Web client, offline,
//! against the fake WhatsApp: typing shows up on the wire as the server's
//! `<chatstate>` stanzas (`composing`, `composing media="audio"`, `paused`),
//! a read request as a `<receipt type="read">` for the message id, and the
//! contacts check as the client's usync `contact` query, answered from the
//! fake's phone book. (Until the fake read the number from the query's
//! bytes, its answer named no JID, the client dropped it, and every check,
//! and every first send to a number, waited out the 10 s query timeout.)

use serde_json::json;

use crate::helpers::{eventually, PATIENCE};
use crate::whatsapp_send::{linked, PEER};

#[actix_rt::test]
async fn whatsapp_web_typing_read_and_contacts_check_reach_the_server() {
    let id = "chats-1";
    let linked = linked(id).await;
    let (gw, server) = (&linked.gw, &linked.server);

    for state in ["composing", "recording", "paused"] {
        let r = gw
            .post(
                &format!("/sessions/{id}/chats/{PEER}/typing"),
                json!({ "state": state }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let shown = eventually(PATIENCE, || async {
        server.chat_states_to(PEER).len() >= 3
    })
    .await;
    assert!(shown, "{:?}", server.chat_states_to(PEER));
    assert_eq!(
        server.chat_states_to(PEER),
        ["composing", "recording", "paused"]
    );

    let read = "3EB0C0FFEE0000000001";
    let r = gw
        .post(
            &format!("/sessions/{id}/chats/{PEER}/read"),
            json!({ "messageIds": [read] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let receipted = eventually(PATIENCE, || async {
        server.client_receipts(read).contains(&"read".to_owned())
    })
    .await;
    assert!(receipted, "{:?}", server.client_receipts(read));

    // The contacts check: the client's usync `contact` query, answered from
    // the fake's phone book.
    let absent = "15550009999";
    let started = std::time::Instant::now();
    let r = gw
        .post(
            &format!("/sessions/{id}/contacts/check"),
            json!({ "phones": [format!("+{PEER}"), absent] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["results"],
        json!([
            {"phone": format!("+{PEER}"), "onWhatsApp": true, "jid": format!("{PEER}@s.whatsapp.net")},
            {"phone": absent, "onWhatsApp": false, "jid": null},
        ]),
        "answered in {:?}",
        started.elapsed()
    );

    linked.gw.shutdown().await;
}
