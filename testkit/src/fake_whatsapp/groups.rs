//! Groups and status posts in [`super::FakeWhatsApp`]. The server knows each
//! group's members (phone numbers) and addressing mode and answers the
//! client's group-info query (`w:g2`) with them, which is what the client
//! needs before it sends to `…@g.us`: its sender key then goes to every
//! member's device pairwise, and one `skmsg` follows (routed by `messages`).
//! The other way, a member's phone writes to a group or posts a status
//! (`status@broadcast`): its sender key distribution goes pairwise to the
//! linked device the first time, the text as a `skmsg`. Called by `serve`
//! (the query) and by the test through `FakeWhatsApp`.

use parking_lot::Mutex;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Node, NodeRef};
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;

use super::link::now_secs;
use super::messages::{seal_for_device, SenderAddress};
use super::phone_book::{split_jid, PhoneBook};
use super::signal::EncKind;
use super::{Fallible, Shared};

/// How a group names its members on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// Members by phone number (`…@s.whatsapp.net`).
    Phone,
    /// Members by privacy id (`…@lid`), each with its `phone_number`.
    Lid,
}

impl Addressing {
    fn wire(self) -> &'static str {
        match self {
            Addressing::Phone => "pn",
            Addressing::Lid => "lid",
        }
    }
}

struct Group {
    /// The user part of the group's JID.
    id: String,
    /// The members' phone numbers.
    members: Vec<String>,
    addressing: Addressing,
}

/// The groups the server knows.
#[derive(Default)]
pub(super) struct Groups(Vec<Group>);

impl Groups {
    pub fn add(&mut self, id: &str, members: &[&str], addressing: Addressing) {
        self.0.retain(|g| g.id != id);
        self.0.push(Group {
            id: id.to_owned(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            addressing,
        });
    }

    /// The members' phone numbers of group `id` (its JID's user part).
    pub fn members(&self, id: &str) -> Option<Vec<String>> {
        self.find(id).map(|g| g.members.clone())
    }

    fn find(&self, id: &str) -> Option<&Group> {
        self.0.iter().find(|g| g.id == id)
    }

    /// The answer to a group-info query (`<iq xmlns="w:g2" to="…@g.us">`):
    /// the `<group>` with its members, or `None` for an unknown group.
    pub fn info(&self, iq: &NodeRef<'_>, book: &PhoneBook) -> Option<Vec<Node>> {
        let to = iq.get_attr("to")?.as_str().into_owned();
        let (id, _, _) = split_jid(&to);
        let group = self.find(id)?;
        let participants = group.members.iter().map(|phone| {
            let pn = format!("{phone}@s.whatsapp.net");
            let lid = book.find(phone).and_then(|a| a.lid.clone());
            let node = match (group.addressing, lid) {
                (Addressing::Lid, Some(lid)) => NodeBuilder::new("participant")
                    .attr("jid", format!("{lid}@lid"))
                    .attr("phone_number", pn),
                _ => NodeBuilder::new("participant").attr("jid", pn),
            };
            node.build()
        });
        Some(vec![NodeBuilder::new("group")
            .attr("id", group.id.clone())
            .attr("subject", format!("Group {}", group.id))
            .attr("addressing_mode", group.addressing.wire())
            .attr("creation", now_secs().to_string())
            .children(participants)
            .build()])
    }
}

/// Phone `from` writes `text` to `chat` (a group's JID or
/// `status@broadcast`) for account `to`: its sender key distribution
/// pairwise the first time (returned: `pkmsg` or `msg`), then the text as
/// a `skmsg`, in one `<message>` as WhatsApp delivers it.
pub(super) async fn seal_group_text(
    shared: &Mutex<Shared>,
    from: &str,
    to: &str,
    chat: &str,
    text: &str,
    id: &str,
    address: SenderAddress,
) -> Fallible<(Option<EncKind>, Node)> {
    let peer = shared
        .lock()
        .book
        .find(from)
        .ok_or_else(|| format!("{from} is not in the phone book"))?;
    let distribution = peer
        .device
        .lock()
        .await
        .sender_keys
        .distribution_for(chat, from, to)
        .await?;
    let mut children = Vec::with_capacity(2);
    let mut sent_as = None;
    if let Some(key) = distribution {
        let carrier = wa::Message {
            sender_key_distribution_message: MessageField::some(
                wa::message::SenderKeyDistributionMessage {
                    group_id: Some(chat.to_owned()),
                    axolotl_sender_key_distribution_message: Some(key),
                },
            ),
            ..Default::default()
        };
        let (_, kind, ciphertext) = seal_for_device(shared, from, to, &carrier).await?;
        children.push(enc(kind, ciphertext));
        sent_as = Some(kind);
    }
    let message = wa::Message {
        conversation: Some(text.to_owned()),
        ..Default::default()
    };
    let sealed = peer
        .device
        .lock()
        .await
        .sender_keys
        .encrypt(chat, from, &message)
        .await?;
    children.push(enc(EncKind::SenderKey, sealed));
    let pn = format!("{from}@s.whatsapp.net");
    let mut node = NodeBuilder::new("message").attr("from", chat.to_owned());
    node = match address {
        SenderAddress::Phone => node.attr("participant", pn),
        SenderAddress::Lid { with_phone } => {
            let lid = peer
                .lid
                .as_ref()
                .ok_or_else(|| format!("{from} has no privacy id"))?;
            node = node.attr("participant", format!("{lid}@lid"));
            if chat.ends_with("@g.us") {
                node = node.attr("addressing_mode", "lid");
            }
            if with_phone {
                node = node.attr("participant_pn", pn);
            }
            node
        }
    };
    let node = node
        .attr("id", id.to_owned())
        .attr("type", "text")
        .attr("t", now_secs().to_string())
        .attr("notify", format!("Peer {from}"))
        .children(children)
        .build();
    Ok((sent_as, node))
}

fn enc(kind: EncKind, ciphertext: Vec<u8>) -> Node {
    NodeBuilder::new("enc")
        .attr("v", "2")
        .attr("type", kind.wire())
        .bytes(ciphertext)
        .build()
}
