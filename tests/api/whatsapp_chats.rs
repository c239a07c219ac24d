//! Contacts and chat actions through the real WhatsApp Web client, offline,
//! against the fake WhatsApp: typing shows up on the wire as the server's
//! `<chatstate>` stanzas (`composing`, `composing media="audio"`, `paused`),
//! and a read request as a `<receipt type="read">` for the message id. (The
//! contacts check is not covered here: the fake does not answer the crate's
//! `is_on_whatsapp` usync query yet, so the check answers `null` after its
//! 10 s timeout.)

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

    linked.gw.shutdown().await;
}
