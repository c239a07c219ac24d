//! One client per device, at the connector itself: a second connection
//! opened on a device's credentials waits until the first has flushed and
//! let go, and the connector's drain (what shutdown awaits) resolves only
//! once every client has. Drives `WhatsAppWeb` directly against FakeWhatsApp.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use wagate_actors::connector::whatsapp::{Presence, WhatsAppConfig, WhatsAppWeb};
use wagate_actors::connector::{Connector, ConnectorEvent, Credentials};
use wagate_actors::ids::SessionId;
use wagate_testkit::FakeWhatsApp;

/// Long enough for a client to open its store, connect and show a QR on a
/// loaded machine.
const CONNECTING: Duration = Duration::from_secs(30);
/// How long the second client is watched for connecting too early: it
/// cannot, so this only bounds the test; a real overlap shows within it.
const OVERLAP_WINDOW: Duration = Duration::from_secs(3);

async fn first_qr(events: &mut mpsc::Receiver<ConnectorEvent>) -> Option<Credentials> {
    let mut credentials = None;
    while let Some(event) = events.recv().await {
        match event {
            ConnectorEvent::CredentialsUpdated(c) => credentials = Some(c),
            ConnectorEvent::Qr { .. } => return credentials,
            _ => {}
        }
    }
    panic!("the connection closed before a QR");
}

#[actix_rt::test]
async fn a_second_client_of_a_device_waits_for_the_first_to_let_go() {
    let server = FakeWhatsApp::start();
    let data = tempfile::tempdir().expect("tempdir");
    let wa = WhatsAppWeb::new(WhatsAppConfig {
        data_dir: data.path().to_owned(),
        url: Some(server.url()),
        version: Some((2, 3000, 1_000_000_000)),
        threads: 2,
        forward_status: false,
        presence: Presence::Unavailable,
    })
    .expect("connector");
    let id = SessionId::parse("device-1").expect("valid id");
    let connections = || server.stats().connections.load(Ordering::SeqCst);

    let mut first = wa.open(&id, None);
    let credentials = tokio::time::timeout(CONNECTING, first_qr(&mut first.events))
        .await
        .expect("the first client shows a QR")
        .expect("a new device's credentials come first");
    assert_eq!(connections(), 1);

    let mut second = wa.open(&id, Some(credentials));
    let early = tokio::time::timeout(OVERLAP_WINDOW, first_qr(&mut second.events)).await;
    assert!(
        early.is_err(),
        "the second client ran while the first held the device"
    );
    assert_eq!(connections(), 1, "WhatsApp saw one client of the device");

    first.control.close();
    tokio::time::timeout(CONNECTING, first_qr(&mut second.events))
        .await
        .expect("the second client starts once the first let go");
    assert_eq!(connections(), 2);

    assert!(
        !wa.drain(Duration::from_millis(50)).await,
        "a running client holds its device"
    );
    second.control.close();
    assert!(
        wa.drain(Duration::from_secs(10)).await,
        "drain resolves once every client flushed and let go"
    );
}
