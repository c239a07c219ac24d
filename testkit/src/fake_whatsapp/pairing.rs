//! What the fake phone and server send around linking: the `<pair-device>`
//! refs a new device turns into QR codes, the phone-signed `<pair-success>`
//! a scan produces, and stream errors. Called by `serve` and
//! [`super::FakeWhatsApp`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use whatsapp_rust::wacore::libsignal::protocol::IdentityKeyPair;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::waproto::buffa::Message as _;
use whatsapp_rust::waproto::whatsapp as wa;

use super::link::now_secs;
use super::Fallible;

pub(super) fn pair_device(refs: &[String]) -> Node {
    NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("type", "set")
        .attr("id", "pair-device-1")
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-device")
            .children(
                refs.iter()
                    .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()),
            )
            .build()])
        .build()
}

pub(super) fn stream_error(code: &str) -> Node {
    NodeBuilder::new("stream:error").attr("code", code).build()
}

/// What a phone sends to link a device: the device identity signed by the
/// account key (the phone's identity) and MACed with the QR's secret (`ADVSignedDeviceIdentityHMAC`).
pub(super) fn pair_success(
    user: &str,
    account: &IdentityKeyPair,
    device_identity: &[u8; 32],
    adv_secret: &[u8; 32],
) -> Fallible<Node> {
    let mut rng = rand10::rng();
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(1),
        timestamp: Some(now_secs()),
        key_index: Some(1),
        ..Default::default()
    }
    .encode_to_vec();
    let mut signed = Vec::with_capacity(2 + details.len() + 32);
    signed.extend_from_slice(&[6, 0]);
    signed.extend_from_slice(&details);
    signed.extend_from_slice(device_identity);
    let signature = account
        .private_key()
        .calculate_signature(&signed, &mut rng)
        .map_err(|e| e.to_string())?;
    let identity = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key().public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        ..Default::default()
    }
    .encode_to_vec();
    let mut mac = Hmac::<Sha256>::new_from_slice(adv_secret).map_err(|e| e.to_string())?;
    mac.update(&identity);
    let container = wa::ADVSignedDeviceIdentityHMAC {
        details: Some(identity),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        ..Default::default()
    }
    .encode_to_vec();
    Ok(NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("type", "set")
        .attr("id", "pair-success-1")
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity").bytes(container).build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
                NodeBuilder::new("device")
                    .attr("jid", format!("{user}:1@s.whatsapp.net"))
                    .attr("lid", format!("{user}1:1@lid"))
                    .build(),
                NodeBuilder::new("biz").attr("name", "Fake Shop").build(),
            ])
            .build()])
        .build())
}
