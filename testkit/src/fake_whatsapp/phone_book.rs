//! The accounts [`super::FakeWhatsApp`] knows and what it answers about
//! them before a send: usync queries (device lists, "is this number on
//! WhatsApp", phone number ↔ LID), prekey bundle fetches (`encrypt` get) and
//! the client's own prekey uploads (`encrypt` set), which it keeps so a peer
//! can later open a session to the client's device. Peers are other people's
//! phones (device 0 only); a linked account's phone is in the book too, so
//! the client's copies for its own devices have somewhere to go.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use whatsapp_rust::wacore::iq::prekeys::{
    OneTimePreKeyNode, PreKeyBundleUserNode, SignedPreKeyNode,
};
use whatsapp_rust::wacore::protocol::ProtocolNode;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Jid, Node, NodeRef};

use parking_lot::Mutex;

use super::signal::{SignalDevice, UploadedKeys};
use super::{Fallible, Shared};

/// One-time prekeys each fake phone starts with.
const PEER_PREKEYS: u32 = 20;

/// A phone WhatsApp knows: its number, its privacy id, its device 0.
pub(super) struct Account {
    pub phone: String,
    pub lid: Option<String>,
    pub device: tokio::sync::Mutex<SignalDevice>,
}

#[derive(Default)]
pub(super) struct PhoneBook {
    accounts: Vec<Arc<Account>>,
    /// What each linked account's companion device uploaded, by phone number.
    uploads: HashMap<String, UploadedKeys>,
}

/// `user` of a JID string: `155…:1@s.whatsapp.net` → (`155…`, 1, server).
pub(super) fn split_jid(jid: &str) -> (&str, u32, &str) {
    let (user_device, server) = jid.split_once('@').unwrap_or((jid, ""));
    match user_device.split_once(':') {
        Some((user, device)) => (user, device.parse().unwrap_or(0), server),
        None => (user_device, 0, server),
    }
}

impl PhoneBook {
    pub fn add(&mut self, phone: &str, lid: Option<&str>) -> Fallible<Arc<Account>> {
        if let Some(known) = self.find(phone) {
            return Ok(known);
        }
        let account = Arc::new(Account {
            phone: phone.to_owned(),
            lid: lid.map(str::to_owned),
            device: tokio::sync::Mutex::new(SignalDevice::generate(PEER_PREKEYS)?),
        });
        self.accounts.push(Arc::clone(&account));
        Ok(account)
    }

    /// The account with this phone number or LID user.
    pub fn find(&self, user: &str) -> Option<Arc<Account>> {
        self.accounts
            .iter()
            .find(|a| a.phone == user || a.lid.as_deref() == Some(user))
            .cloned()
    }

    pub fn upload(&self, phone: &str) -> Option<&UploadedKeys> {
        self.uploads.get(phone)
    }

    pub fn uploads(&mut self, phone: &str) -> Option<&mut UploadedKeys> {
        self.uploads.get_mut(phone)
    }

    pub fn uploaded_prekeys(&self, phone: &str) -> usize {
        self.uploads.get(phone).map_or(0, |u| u.one_time.len())
    }

    /// usync: each asked protocol answered per user from the book.
    pub fn usync(&self, iq: &NodeRef<'_>) -> Vec<Node> {
        let Some(usync) = iq.get_optional_child("usync") else {
            return Vec::new();
        };
        let protocols: Vec<String> = usync
            .get_optional_child("query")
            .and_then(|q| q.children())
            .map(|c| c.iter().map(|p| p.tag.to_string()).collect())
            .unwrap_or_default();
        let users = usync
            .get_optional_child("list")
            .map(|list| {
                list.get_children_by_tag("user")
                    .map(|u| self.usync_user(u, &protocols))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        vec![NodeBuilder::new("usync")
            .attr("sid", attr(usync, "sid"))
            .attr("mode", "query")
            .attr("context", attr(usync, "context"))
            .children([NodeBuilder::new("list").children(users).build()])
            .build()]
    }

    fn usync_user(&self, user: &NodeRef<'_>, protocols: &[String]) -> Node {
        // Asked by JID, or by phone number in `<contact>+155…</contact>`.
        let asked = user
            .get_attr("jid")
            .map(|j| j.as_str().into_owned())
            .or_else(|| {
                // The client sends the number as the node's bytes.
                let contact = user.get_optional_child("contact")?;
                let phone = match contact.content_str() {
                    Some(s) => s.to_owned(),
                    None => String::from_utf8(contact.content_bytes()?.to_vec()).ok()?,
                };
                Some(format!("{}@s.whatsapp.net", phone.trim_start_matches('+')))
            })
            .unwrap_or_default();
        let (name, _, server) = split_jid(&asked);
        let account = self.find(name);
        let mut answers = Vec::new();
        for protocol in protocols {
            match protocol.as_str() {
                "devices" => {
                    let devices = account
                        .iter()
                        .map(|_| NodeBuilder::new("device").attr("id", "0").build());
                    answers.push(
                        NodeBuilder::new("devices")
                            .children([NodeBuilder::new("device-list").children(devices).build()])
                            .build(),
                    );
                }
                "contact" => {
                    let kind = if account.is_some() { "in" } else { "out" };
                    answers.push(NodeBuilder::new("contact").attr("type", kind).build());
                }
                "lid" => {
                    let mut lid = NodeBuilder::new("lid");
                    if let Some(l) = account.as_ref().and_then(|a| a.lid.as_ref()) {
                        lid = lid.attr("val", format!("{l}@lid"));
                    }
                    answers.push(lid.build());
                }
                _ => {}
            }
        }
        NodeBuilder::new("user")
            .attr("jid", format!("{name}@{server}"))
            .children(answers)
            .build()
    }

    /// `<registration/><type/><identity/><list><key/>…</list><skey/>`.
    pub fn store_upload(&mut self, iq: &NodeRef<'_>, user: &str, device: u32) -> Fallible<()> {
        let bytes = |tag: &str| -> Fallible<Vec<u8>> {
            iq.get_optional_child(tag)
                .and_then(|n| n.content_bytes())
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("prekey upload without <{tag}>"))
        };
        let registration: [u8; 4] = bytes("registration")?
            .try_into()
            .map_err(|_| "registration id is not 4 bytes")?;
        let identity: [u8; 32] = bytes("identity")?
            .try_into()
            .map_err(|_| "identity is not 32 bytes")?;
        let skey = iq.get_optional_child("skey").ok_or("no <skey>")?;
        let signed = SignedPreKeyNode::try_from_node_ref(skey).map_err(|e| e.to_string())?;
        let mut one_time = VecDeque::new();
        if let Some(list) = iq.get_optional_child("list") {
            for key in list.get_children_by_tag("key") {
                let key = OneTimePreKeyNode::try_from_node_ref(key).map_err(|e| e.to_string())?;
                let public: [u8; 32] = key
                    .public_bytes
                    .try_into()
                    .map_err(|_| "prekey is not 32 bytes")?;
                one_time.push_back((key.id, public));
            }
        }
        let entry = self.uploads.entry(user.to_owned());
        let keys = entry.or_insert_with(|| UploadedKeys {
            device,
            registration_id: 0,
            identity,
            signed_id: 0,
            signed_public: [0; 32],
            signed_signature: Vec::new(),
            one_time: VecDeque::new(),
        });
        keys.device = device;
        keys.registration_id = u32::from_be_bytes(registration);
        keys.identity = identity;
        keys.signed_id = signed.id;
        keys.signed_public = signed
            .public_bytes
            .try_into()
            .map_err(|_| "signed prekey is not 32 bytes")?;
        keys.signed_signature = signed.signature;
        keys.one_time.extend(one_time);
        Ok(())
    }
}

fn attr(node: &NodeRef<'_>, key: &str) -> String {
    node.get_attr(key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default()
}

/// Prekey bundles for the asked devices (device 0 of accounts in the book);
/// an unknown device is answered with an `<error>` in its place. Each
/// bundle hands out one of the device's one-time prekeys.
pub(super) async fn bundles(book: &Mutex<Shared>, iq: &NodeRef<'_>) -> Fallible<Vec<Node>> {
    let asked: Vec<(String, Option<Arc<Account>>)> = {
        let shared = book.lock();
        iq.get_optional_child("key")
            .map(|k| {
                k.get_children_by_tag("user")
                    .filter_map(|u| u.get_attr("jid").map(|j| j.as_str().into_owned()))
                    .map(|jid| {
                        let (name, device, _) = split_jid(&jid);
                        let account = shared.book.find(name).filter(|_| device == 0);
                        (jid, account)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut users = Vec::with_capacity(asked.len());
    for (jid, account) in asked {
        let Some(account) = account else {
            users.push(
                NodeBuilder::new("user")
                    .attr("jid", jid)
                    .children([NodeBuilder::new("error").attr("code", "404").build()])
                    .build(),
            );
            continue;
        };
        let parsed: Jid = jid.parse().map_err(|e| format!("{jid}: {e:?}"))?;
        let bundle = account.device.lock().await.issue_bundle(0)?;
        let node = PreKeyBundleUserNode::from_bundle(parsed, &bundle, None)
            .map_err(|e| e.to_string())?
            .into_node();
        users.push(node);
    }
    Ok(vec![NodeBuilder::new("list").children(users).build()])
}
