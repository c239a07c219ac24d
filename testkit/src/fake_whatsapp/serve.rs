//! One connection of [`super::FakeWhatsApp`] after the handshake: a new
//! device gets pairing refs, a known account logs in (or is refused), and
//! then the client's nodes are answered while the test's pushes go out.
//! Spawned by the accept loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::marshal::unmarshal_ref;
use whatsapp_rust::wacore_binary::util::unpack;
use whatsapp_rust::wacore_binary::{Node, NodeRef};

use super::link::{accept, now_secs};
use super::pairing::{pair_device, stream_error};
use super::{media, messages, phone_book};
use super::{FakeStats, Fallible, Live, Push, Shared};

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Mutex<Shared>>,
    stats: Arc<FakeStats>,
) {
    let ids = AtomicUsize::new(0);
    while let Ok((tcp, _)) = listener.accept().await {
        let id = ids.fetch_add(1, Ordering::SeqCst);
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, stats) = (Arc::clone(&shared), Arc::clone(&stats));
        tokio::spawn(async move {
            let _ = serve(id, tcp, &shared, &stats).await;
            shared.lock().live.remove(&id);
        });
    }
}

/// One client connection: WebSocket upgrade, handshake, then nodes.
async fn serve(
    id: usize,
    tcp: TcpStream,
    shared: &Mutex<Shared>,
    stats: &FakeStats,
) -> Fallible<()> {
    let (mut link, payload) = accept(tcp).await?;
    let refusal = shared.lock().refusal.clone();
    if let Some(code) = refusal {
        let failure = NodeBuilder::new("failure").attr("reason", code).build();
        link.send(&failure).await?;
        return link.close().await;
    }
    let (push_tx, mut push_rx) = mpsc::unbounded_channel();
    let user = payload.username.map(|u| u.to_string());
    let device = payload.device.unwrap_or_default();
    match &user {
        None => {
            stats.registrations.fetch_add(1, Ordering::SeqCst);
            let refs: Vec<String> = (0..6).map(|i| format!("2@fake-ref-{id}-{i}")).collect();
            let node = pair_device(&refs);
            shared.lock().live.insert(
                id,
                Live {
                    push: push_tx,
                    refs,
                    user: None,
                },
            );
            link.send(&node).await?;
        }
        Some(user) => {
            stats.logins.fetch_add(1, Ordering::SeqCst);
            if shared.lock().revoked.contains(user) {
                stats.logouts_sent.fetch_add(1, Ordering::SeqCst);
                let failure = NodeBuilder::new("failure").attr("reason", "401").build();
                link.send(&failure).await?;
                return link.close().await;
            }
            {
                let mut shared = shared.lock();
                shared.live.insert(
                    id,
                    Live {
                        push: push_tx,
                        refs: Vec::new(),
                        user: Some(user.clone()),
                    },
                );
                let open = shared
                    .live
                    .values()
                    .filter(|l| l.user.as_ref() == Some(user))
                    .count();
                let peak = shared.peak.entry(user.clone()).or_default();
                *peak = (*peak).max(open);
            }
            let success = NodeBuilder::new("success")
                .attr("t", now_secs().to_string())
                .attr("lid", format!("{user}1@lid"))
                .attr("props", "1")
                .build();
            link.send(&success).await?;
            // What the client never acked comes again, as WhatsApp's
            // offline queue does.
            let again: Vec<Node> = {
                let shared = shared.lock();
                let again: Vec<Node> = shared
                    .unacked
                    .iter()
                    .filter(|(to, _, _)| to == user)
                    .map(|(_, _, node)| node.clone())
                    .collect();
                stats.redeliveries.fetch_add(again.len(), Ordering::SeqCst);
                again
            };
            for node in &again {
                link.send(node).await?;
            }
            let offline = NodeBuilder::new("ib")
                .children([NodeBuilder::new("offline").attr("count", "0").build()])
                .build();
            link.send(&offline).await?;
        }
    }

    loop {
        tokio::select! {
            push = push_rx.recv() => match push {
                Some(Push::Node(node)) => link.send(&node).await?,
                Some(Push::Last(node)) => {
                    link.send(&node).await?;
                    return link.close().await;
                }
                None => return link.close().await,
            },
            incoming = link.recv() => {
                let plain = incoming?;
                let data = unpack(&plain).map_err(|e| e.to_string())?;
                let node = unmarshal_ref(&data).map_err(|e| e.to_string())?;
                let account = user.as_deref().map(|u| (u, device));
                if let Some(reply) = answer(shared, &node, account).await? {
                    link.send(&reply).await?;
                }
                if node.tag.as_ref() == "presence" {
                    if let (Some(user), Some(kind)) = (&user, node.get_attr("type")) {
                        let kind = kind.as_str().into_owned();
                        shared.lock().presences.push((user.clone(), kind));
                    }
                }
                if node.get_optional_child_by_tag(&["pair-device-sign"]).is_some() {
                    // Paired: the server restarts the stream, as WhatsApp does.
                    stats.restarts_sent.fetch_add(1, Ordering::SeqCst);
                    link.send(&stream_error("515")).await?;
                    return link.close().await;
                }
            }
        }
    }
}

/// The server's answer to one node from the client, if it has one:
/// messages are routed and acked, IQs answered (the phone book's from the
/// book, app-state sync as up to date, everything else with a bare result).
async fn answer(
    shared: &Mutex<Shared>,
    node: &NodeRef<'_>,
    account: Option<(&str, u32)>,
) -> Fallible<Option<Node>> {
    match node.tag.as_ref() {
        "message" => {
            let Some((user, device)) = account else {
                return Ok(None);
            };
            return Ok(messages::route(shared, node, user, device).await);
        }
        "receipt" => {
            let (id, kind) = (attr(node, "id"), attr(node, "type"));
            let mut shared = shared.lock();
            if kind != "retry" {
                // A delivery (or read) receipt acks the ids it names.
                let mut ids = vec![id.clone()];
                if let Some(list) = node.get_optional_child("list") {
                    ids.extend(list.get_children_by_tag("item").map(|i| attr(i, "id")));
                }
                acked(&mut shared, account, &ids);
            }
            shared.client_receipts.push((id, kind));
            return Ok(None);
        }
        "ack" if attr(node, "class") == "message" => {
            acked(&mut shared.lock(), account, &[attr(node, "id")]);
            return Ok(None);
        }
        "chatstate" => {
            let state = node.children().and_then(|c| c.first()).map(|c| {
                match (c.tag.as_ref(), attr(c, "media").as_str()) {
                    ("composing", "audio") => "recording".to_owned(),
                    (tag, _) => tag.to_owned(),
                }
            });
            if let Some(state) = state {
                shared.lock().chat_states.push((attr(node, "to"), state));
            }
            return Ok(None);
        }
        "iq" => {}
        _ => return Ok(None),
    }
    let kind = attr(node, "type");
    if kind != "get" && kind != "set" {
        return Ok(None);
    }
    let Some(id) = node.get_attr("id").map(|v| v.as_str().into_owned()) else {
        return Ok(None);
    };
    let reply = NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("id", id)
        .attr("type", "result");
    let children = match (attr(node, "xmlns").as_str(), kind.as_str()) {
        ("w:sync:app:state", _) => app_state_up_to_date(node),
        ("w:m", "set") if node.get_optional_child("media_conn").is_some() => {
            vec![media::media_conn(&shared.lock().media_host)]
        }
        ("usync", "get") => shared.lock().book.usync(node),
        ("w:g2", "get") if node.get_optional_child("query").is_some() => {
            let shared = shared.lock();
            match shared.groups.info(node, &shared.book) {
                Some(group) => group,
                None => return Ok(Some(item_not_found(node))),
            }
        }
        ("encrypt", "get") if node.get_optional_child("key").is_some() => {
            phone_book::bundles(shared, node).await?
        }
        ("encrypt", "set") if node.get_optional_child("list").is_some() => {
            if let Some((user, device)) = account {
                shared.lock().book.store_upload(node, user, device)?;
            }
            Vec::new()
        }
        _ => Vec::new(),
    };
    Ok(Some(reply.children(children).build()))
}

/// The client of `account` acked messages `ids`: no redelivery for them.
fn acked(shared: &mut Shared, account: Option<(&str, u32)>, ids: &[String]) {
    if let Some((user, _)) = account {
        shared
            .unacked
            .retain(|(to, id, _)| to != user || !ids.contains(id));
    }
}

/// An IQ error: what WhatsApp answers for a group that does not exist.
fn item_not_found(iq: &NodeRef<'_>) -> Node {
    NodeBuilder::new("iq")
        .attr("from", attr(iq, "to"))
        .attr("id", attr(iq, "id"))
        .attr("type", "error")
        .children([NodeBuilder::new("error")
            .attr("code", "404")
            .attr("text", "item-not-found")
            .build()])
        .build()
}

fn attr(node: &NodeRef<'_>, key: &str) -> String {
    node.get_attr(key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default()
}

/// App-state sync: every asked collection answers 409 "conflict, nothing
/// more", which a client with nothing to push takes as up to date.
fn app_state_up_to_date(node: &NodeRef<'_>) -> Vec<Node> {
    let names: Vec<String> = node
        .get_optional_child_by_tag(&["sync"])
        .and_then(|sync| sync.children())
        .map(|children| {
            children
                .iter()
                .filter_map(|c| c.get_attr("name").map(|n| n.as_str().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let collections = names.into_iter().map(|name| {
        NodeBuilder::new("collection")
            .attr("name", name)
            .attr("type", "error")
            .children([NodeBuilder::new("error")
                .attr("code", "409")
                .attr("text", "conflict")
                .build()])
            .build()
    });
    vec![NodeBuilder::new("sync").children(collections).build()]
}
