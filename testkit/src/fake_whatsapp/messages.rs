//! Messages through [`super::FakeWhatsApp`]: a `<message>` the client sends
//! is routed, `<enc>` by `<enc>`, to the phones in the book, which decrypt
//! it (what they read is kept for the test), and the server acks it — or
//! nacks it with 404 when the recipient is not on WhatsApp, or keeps the ack
//! back while the test holds acks. The other way, a phone encrypts a text to
//! a linked account's device from the prekeys the client uploaded (from its
//! phone number or from its privacy id, `@lid`) and the server delivers it on
//! that account's connection; a phone's delivery and read receipts go the
//! same way. A `<message>` to a group goes to every member's phone: the
//! pairwise copies carry the sender's key, the one `skmsg` is decrypted
//! with it. Called by `serve` and by the test through `FakeWhatsApp`.

use std::sync::Arc;

use parking_lot::Mutex;
use whatsapp_rust::wacore::libsignal::protocol::{DeviceId, ProtocolAddress};
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Node, NodeRef};
use whatsapp_rust::waproto::whatsapp as wa;

use super::link::now_secs;
use super::media::{self, PeerMedia};
use super::phone_book::{split_jid, Account};
use super::signal::EncKind;
use super::{Fallible, Shared};

/// A message a fake phone received and decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMessage {
    /// The stanza id on the wire.
    pub id: String,
    /// The sending account's phone number.
    pub from: String,
    /// The phone number of the phone that decrypted it.
    pub to: String,
    /// `pkmsg` (the first, opening a session) or `msg`.
    pub enc: EncKind,
    /// The text, for a text message (for a copy to the sender's own phone:
    /// the text inside its `DeviceSentMessage`).
    pub text: Option<String>,
    /// Whether this was the sender's own phone's copy.
    pub own_copy: bool,
    /// The group (or `status@broadcast`) a `skmsg` was for, or the one a
    /// distribution carried a sender key for; `None` for a direct message.
    pub chat: Option<String>,
    /// Whether this pairwise message carried a sender key distribution.
    pub distribution: bool,
    /// The media it carried, fetched from the media host and decrypted.
    pub media: Option<PeerMedia>,
}

/// One `<enc>` of a stanza and the device JID it is for.
struct Enc {
    target: String,
    kind: Option<EncKind>,
    ciphertext: Vec<u8>,
}

fn attr(node: &NodeRef<'_>, key: &str) -> String {
    node.get_attr(key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default()
}

fn encs(message: &NodeRef<'_>, to: &str) -> Vec<Enc> {
    let one = |target: String, enc: &NodeRef<'_>| Enc {
        target,
        kind: EncKind::parse(&attr(enc, "type")),
        ciphertext: enc.content_bytes().unwrap_or_default().to_vec(),
    };
    let mut found = Vec::new();
    if let Some(participants) = message.get_optional_child("participants") {
        for to in participants.get_children_by_tag("to") {
            for enc in to.get_children_by_tag("enc") {
                found.push(one(attr(to, "jid"), enc));
            }
        }
    }
    for enc in message.get_children_by_tag("enc") {
        found.push(one(to.to_owned(), enc));
    }
    found
}

/// The text a message carries, looking inside a copy for the sender's own
/// devices.
fn text_of(message: &wa::Message) -> Option<String> {
    if let Some(sent) = message.device_sent_message.as_option() {
        return sent.message.as_option().and_then(text_of);
    }
    message.conversation.clone().or_else(|| {
        message
            .extended_text_message
            .as_option()
            .and_then(|t| t.text.clone())
    })
}

/// How a phone addresses what it sends to a linked account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderAddress {
    /// `from="{phone}@s.whatsapp.net"`.
    Phone,
    /// `from="{lid}@lid"`, with `sender_pn="{phone}@s.whatsapp.net"` when
    /// `with_phone` (WhatsApp adds it to a LID-addressed direct message the
    /// first time; later ones rely on the mapping the client learned).
    Lid { with_phone: bool },
}

/// A phone's receipt for messages a linked account sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerReceipt {
    /// No `type`: the phone has the message.
    Delivered,
    /// `type="read"`: the blue ticks.
    Read,
}

/// Routes a `<message>` from account `sender`'s device `device` to the
/// phones it names (for a group: every member's phone) and returns the
/// server's `<ack>` for it (none while acks are held back).
pub(super) async fn route(
    shared: &Mutex<Shared>,
    message: &NodeRef<'_>,
    sender: &str,
    device: u32,
) -> Option<Node> {
    let id = attr(message, "id");
    let to = attr(message, "to");
    let (recipient, _, server) = split_jid(&to);
    let (members, withhold) = {
        let mut shared = shared.lock();
        let members = if server == "g.us" {
            shared.groups.members(recipient)
        } else {
            shared.book.find(recipient).map(|a| vec![a.phone.clone()])
        };
        for phone in members.iter().flatten() {
            shared.stanzas.push((id.clone(), phone.clone()));
        }
        (members, shared.withhold_acks)
    };
    let ack = NodeBuilder::new("ack")
        .attr("class", "message")
        .attr("id", id.clone())
        .attr("from", to.clone())
        .attr("t", now_secs().to_string());
    let Some(members) = members else {
        return Some(ack.attr("error", "404").build());
    };
    let chat = (server == "g.us").then(|| to.clone());
    let from = Sender {
        address: ProtocolAddress::new(sender, DeviceId::from(device)),
        user: sender,
        device,
    };
    // Acked even when a phone cannot decrypt its copy, as WhatsApp (which
    // cannot read them) does; the test reads `undecryptable`.
    for enc in encs(message, &to) {
        let outcomes = match enc.kind {
            Some(EncKind::SenderKey) => {
                let group = chat.as_deref().unwrap_or(&to);
                open_group(shared, &from, &enc, &id, group, &members).await
            }
            Some(kind) => vec![open_pairwise(shared, &from, &enc, kind, &id).await],
            None => vec![Err("an <enc> of an unknown type".to_owned())],
        };
        let mut shared = shared.lock();
        for outcome in outcomes {
            match outcome {
                Ok(received) => shared.inbox.push(received),
                Err(e) => shared
                    .undecryptable
                    .push(format!("{id} for {}: {e}", enc.target)),
            }
        }
    }
    // Held back: the send stays in flight at the client until it gives up.
    (!withhold).then(|| ack.build())
}

/// The sending device of a routed message.
struct Sender<'a> {
    address: ProtocolAddress,
    user: &'a str,
    device: u32,
}

/// A pairwise `pkmsg`/`msg` for one phone: decrypted, and a sender key
/// distribution inside it kept for the group it names.
async fn open_pairwise(
    shared: &Mutex<Shared>,
    from: &Sender<'_>,
    enc: &Enc,
    kind: EncKind,
    id: &str,
) -> Fallible<PeerMessage> {
    let (name, target_device, _) = split_jid(&enc.target);
    let (account, blobs) = {
        let shared = shared.lock();
        (shared.book.find(name), shared.blobs.clone())
    };
    let account = account
        .filter(|_| target_device == 0)
        .ok_or("no such device on WhatsApp")?;
    let mut phone = account.device.lock().await;
    let m = phone.decrypt(&from.address, kind, &enc.ciphertext).await?;
    let mut chat = None;
    if let Some(skdm) = m.sender_key_distribution_message.as_option() {
        let group = skdm.group_id.clone().unwrap_or_default();
        let key = skdm
            .axolotl_sender_key_distribution_message
            .as_deref()
            .ok_or("a sender key distribution without its key")?;
        phone
            .sender_keys
            .accept(&group, from.user, from.device, key)
            .await?;
        chat = Some(group);
    }
    Ok(PeerMessage {
        id: id.to_owned(),
        from: from.user.to_owned(),
        to: account.phone.clone(),
        enc: kind,
        text: text_of(&m),
        own_copy: account.phone == from.user,
        distribution: chat.is_some(),
        chat,
        media: media::open(&m, &blobs),
    })
}

/// A `skmsg` to `group`: every member's phone decrypts it with the sender
/// key the sender distributed to it earlier.
async fn open_group(
    shared: &Mutex<Shared>,
    from: &Sender<'_>,
    enc: &Enc,
    id: &str,
    group: &str,
    members: &[String],
) -> Vec<Fallible<PeerMessage>> {
    let mut outcomes = Vec::with_capacity(members.len());
    let blobs = shared.lock().blobs.clone();
    for member in members {
        let Some(account) = shared.lock().book.find(member) else {
            outcomes.push(Err(format!("group member {member} is not on WhatsApp")));
            continue;
        };
        let decrypted = account
            .device
            .lock()
            .await
            .sender_keys
            .decrypt(group, from.user, from.device, &enc.ciphertext)
            .await;
        outcomes.push(decrypted.map(|m| PeerMessage {
            id: id.to_owned(),
            from: from.user.to_owned(),
            to: account.phone.clone(),
            enc: EncKind::SenderKey,
            text: text_of(&m),
            own_copy: account.phone == from.user,
            chat: Some(group.to_owned()),
            distribution: false,
            media: media::open(&m, &blobs),
        }));
    }
    outcomes
}

/// Phone `from` writes `text` to account `to`'s linked device: a `<message>`
/// encrypted from the prekeys that device uploaded (`pkmsg` the first time),
/// addressed from the phone's number or its privacy id.
pub(super) async fn seal_text(
    shared: &Mutex<Shared>,
    from: &str,
    to: &str,
    text: &str,
    id: &str,
    sender: SenderAddress,
) -> Fallible<(EncKind, Node)> {
    let message = wa::Message {
        conversation: Some(text.to_owned()),
        ..Default::default()
    };
    seal(shared, from, to, &message, id, sender).await
}

/// As [`seal_text`], for any message (a `media` stanza when it carries
/// media).
pub(super) async fn seal(
    shared: &Mutex<Shared>,
    from: &str,
    to: &str,
    message: &wa::Message,
    id: &str,
    sender: SenderAddress,
) -> Fallible<(EncKind, Node)> {
    let (peer, kind, ciphertext) = seal_for_device(shared, from, to, message).await?;
    let phone_jid = format!("{from}@s.whatsapp.net");
    let mut node = NodeBuilder::new("message");
    node = match sender {
        SenderAddress::Phone => node.attr("from", phone_jid),
        SenderAddress::Lid { with_phone } => {
            let lid = peer
                .lid
                .as_ref()
                .ok_or_else(|| format!("{from} has no privacy id"))?;
            node = node.attr("from", format!("{lid}@lid"));
            if with_phone {
                node = node.attr("sender_pn", phone_jid);
            }
            node
        }
    };
    let node = node
        .attr("id", id.to_owned())
        .attr(
            "type",
            if media::carries(message) {
                "media"
            } else {
                "text"
            },
        )
        .attr("t", now_secs().to_string())
        .attr("notify", format!("Peer {from}"))
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", kind.wire())
            .bytes(ciphertext)
            .build()])
        .build();
    Ok((kind, node))
}

/// Phone `from` encrypts `message` to account `to`'s linked device (from
/// the prekeys it uploaded when there is no session yet). Returns the phone.
pub(super) async fn seal_for_device(
    shared: &Mutex<Shared>,
    from: &str,
    to: &str,
    message: &wa::Message,
) -> Fallible<(Arc<Account>, EncKind, Vec<u8>)> {
    let (peer, device) = {
        let shared = shared.lock();
        let peer = shared
            .book
            .find(from)
            .ok_or_else(|| format!("{from} is not in the phone book"))?;
        let device = shared
            .book
            .upload(to)
            .map(|u| u.device)
            .ok_or_else(|| format!("{to} has no device that uploaded prekeys"))?;
        (peer, device)
    };
    let address = ProtocolAddress::new(to, DeviceId::from(device));
    let (kind, ciphertext) = peer
        .device
        .lock()
        .await
        .encrypt(&address, message, || {
            shared
                .lock()
                .book
                .uploads(to)
                .ok_or_else(|| format!("{to} uploaded no prekeys"))?
                .take_bundle(device)
        })
        .await?;
    Ok((peer, kind, ciphertext))
}

/// Phone `from`'s receipt for `ids` (messages account `to` sent it): one
/// `<receipt>` naming the first id, the others in its `<list>`.
pub(super) fn receipt(from: &str, ids: &[String], kind: PeerReceipt) -> Fallible<Node> {
    let (first, rest) = ids.split_first().ok_or("a receipt names a message")?;
    let mut node = NodeBuilder::new("receipt")
        .attr("from", format!("{from}@s.whatsapp.net"))
        .attr("id", first.clone())
        .attr("t", now_secs().to_string());
    if kind == PeerReceipt::Read {
        node = node.attr("type", "read");
    }
    if !rest.is_empty() {
        let items = rest
            .iter()
            .map(|id| NodeBuilder::new("item").attr("id", id.clone()).build());
        node = node.children([NodeBuilder::new("list").children(items).build()]);
    }
    Ok(node.build())
}
