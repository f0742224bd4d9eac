//! Peers' signed records in the DHT (issue 15 points 4 and 5): a peer announces its own
//! (SET_CONNECTION_OPT option 5) and the node hands it on in FIND_NODE replies, so the asker
//! can open that contact by IK; a record that is not the sender's, or not the contact's, or
//! forged, is refused and counted, never handed on.

use super::review::corpus;
use super::rpc::{ask, config, dropped, node, request};
use std::net::SocketAddr;
use std::time::Instant;
use weft::overlay::id::{Contact, NodeId};
use weft::overlay::kademlia::{KeyBook, Sender};
use weft::overlay::rpc::{Body, ConnectionOpt, NodeInfo, Opcode, Reply, ReplyBody};
use weft::session::{Identity, PeerRecord};

fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes([n; 32], [n.wrapping_add(100); 32])
}

/// A peer of `identity` at 10.9.0.n, with node id n…
fn peer_of(identity: &Identity, n: u8) -> (Sender, PeerRecord) {
    let addr = SocketAddr::from(([10, 9, 0, n], 7700));
    let sender = Sender {
        peer: identity.peer_id(),
        addr,
        node: Some(NodeId([n; 20])),
    };
    (sender, PeerRecord::sign(identity, &[addr]))
}

fn announce(record: Vec<u8>) -> Vec<u8> {
    request(
        Opcode::SetConnectionOpt,
        5,
        Body::SetConnectionOpt(ConnectionOpt::PeerRecord(record)),
    )
}

fn answer_nodes(reply: Reply) -> Vec<NodeInfo> {
    match reply.body {
        ReplyBody::Nodes(nodes) => nodes,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_announced_record_is_handed_on_and_a_forged_or_borrowed_one_is_refused_and_counted() {
    let now = Instant::now();
    let mut dht = node(1, config());
    let (carol, carol_record) = peer_of(&identity(3), 3);
    let (dave, _) = peer_of(&identity(4), 4);
    // Carol's own record, on Carol's session: ACKed and held.
    let set = announce(carol_record.to_bytes());
    corpus("set-peer-record", &set);
    assert!(ask(&mut dht, now, carol, &set).unwrap().ack);
    // Dave shows Carol's record as his: NACKed (`key_mismatch`).
    assert!(!ask(&mut dht, now, dave, &set).unwrap().ack);
    // Dave's own, with a flipped signature bit: NACKed (`key_forged`); junk: `key_malformed`.
    let mut forged = PeerRecord::sign(&identity(4), &[dave.addr]).to_bytes();
    *forged.last_mut().unwrap() ^= 1;
    assert!(!ask(&mut dht, now, dave, &announce(forged)).unwrap().ack);
    assert!(
        !ask(&mut dht, now, dave, &announce(vec![1; 40]))
            .unwrap()
            .ack
    );
    assert_eq!(
        ["key_mismatch", "key_forged", "key_malformed"].map(|r| dropped(&dht, r)),
        [1, 1, 1]
    );
    assert_eq!(dht.key_book().len(), 1);
    // Carol is in the table (she sent with her id); a FIND_NODE hands her record on.
    let find = request(Opcode::FindNode, 6, Body::FindNode(NodeId([3; 20])));
    let nodes = answer_nodes(ask(&mut dht, now, dave, &find).unwrap());
    let carol_info = nodes
        .iter()
        .find(|n| n.contact.peer == carol.peer)
        .expect("Carol listed");
    assert_eq!(carol_info.record, Some(carol_record.to_bytes()));
    corpus(
        "find-node-ack-keyed",
        &Reply {
            ack: true,
            id: 6,
            op: Opcode::FindNode,
            body: ReplyBody::Nodes(nodes.clone()),
        }
        .encode(),
    );
    // Dave, who announced nothing that held, is listed without one.
    assert!(
        nodes
            .iter()
            .all(|n| n.contact.peer != dave.peer || n.record.is_none())
    );
}

#[test]
fn a_relayed_record_counts_only_for_its_own_contact_and_only_once_its_signature_holds() {
    let now = Instant::now();
    let mut asker = node(1, config());
    let mut replier = node(2, config());
    // The replier holds Carol's record, announced on her session.
    let (carol, carol_record) = peer_of(&identity(3), 3);
    assert!(
        ask(&mut replier, now, carol, &announce(carol_record.to_bytes()))
            .unwrap()
            .ack
    );
    // The asker looks Carol's id up through the replier.
    let via = *replier.own();
    asker.bootstrap(now, &[via]);
    let mut hops = 0;
    while let Some(t) = asker.poll_transmit() {
        hops += 1;
        assert!(hops < 50);
        if t.peer != via.peer {
            continue; // Carol herself: the test answers for her below.
        }
        let who = super::rpc::sender(&asker);
        replier.handle(now, 1_000, who, &t.bytes);
        while let Some(back) = replier.poll_transmit() {
            asker.handle(now, 1_000, super::rpc::sender(&replier), &back.bytes);
        }
    }
    let (held, verified) = asker
        .key_book()
        .get(&carol.peer)
        .expect("learnt from the reply");
    assert_eq!(
        (held, verified),
        (&carol_record, false),
        "checked at first use"
    );
    assert_eq!(
        asker.record_for_open(&carol.peer, 1_000),
        Some(carol_record.clone())
    );
    assert!(asker.key_book().get(&carol.peer).unwrap().1);
    // A reply naming Dave's contact with Carol's record: dropped (`key_mismatch`).
    let dave = Contact {
        id: NodeId([4; 20]),
        peer: identity(4).peer_id(),
        addr: SocketAddr::from(([10, 9, 0, 4], 7700)),
    };
    let reply_nodes = vec![NodeInfo {
        contact: dave,
        record: Some(carol_record.to_bytes()),
    }];
    let mut book = KeyBook::new(8);
    let mut stats = weft::stats::Stats::new();
    let contacts = book.relayed(reply_nodes, &mut stats);
    assert_eq!(contacts, [dave]);
    assert!(book.is_empty());
    assert_eq!(
        stats.get(
            "weft_overlay_dropped_total",
            Some(("reason", "key_mismatch"))
        ),
        1
    );
}

#[test]
fn a_record_whose_x25519_key_the_peers_session_did_not_prove_is_dropped_as_stale() {
    let now = Instant::now();
    let mut dht = node(1, config());
    let carol = identity(3);
    let (from, record) = peer_of(&carol, 3);
    assert!(
        ask(&mut dht, now, from, &announce(record.to_bytes()))
            .unwrap()
            .ack
    );
    // The session proves the same keys: kept.
    let proved = (record.ed25519, record.x25519);
    dht.note_static_keys(&from.peer, &proved);
    assert!(dht.key_book().get(&from.peer).is_some());
    // Another X25519 key (the peer has a new one): the record goes, and no open uses it.
    dht.note_static_keys(&from.peer, &(record.ed25519, [9; 32]));
    assert!(dht.key_book().get(&from.peer).is_none());
    assert_eq!(dht.record_for_open(&from.peer, 1_000), None);
    assert_eq!(dropped(&dht, "key_stale"), 1);
}

/// A check that refuses every proof, counting how often it was asked.
struct Refusing(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl weft::overlay::kademlia::CertificateCheck for Refusing {
    fn certified(&self, _: &NodeId, _: &weft::wire::PeerId) -> bool {
        false
    }

    fn admit(&mut self, _: &NodeId, _: &weft::wire::PeerId, _: &[u8]) -> Result<(), &'static str> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err("bad_certificate")
    }
}

/// Attack on the overlay (docs/SECURITY.md): a connected peer that resends a forged proof of
/// its id, or shows a new record of its own in every frame, costs the node at most 8 signature
/// checks, then is refused and counted (`checks_limit`) until it is forgotten.
#[test]
fn a_peer_buys_at_most_eight_signature_checks_with_proofs_and_records() {
    let checks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut b = node(1, config());
    b.set_certificate_check(Box::new(Refusing(std::sync::Arc::clone(&checks))));
    let attacker = identity(40);
    let (from, _) = peer_of(&attacker, 40);
    for _ in 0..20 {
        assert!(b.admit(&NodeId([40; 20]), &from.peer, b"forged").is_err());
    }
    assert_eq!(checks.load(std::sync::atomic::Ordering::Relaxed), 8);
    assert_eq!(dropped(&b, "checks_limit"), 12);
    // Its records cost nothing more: the budget is spent.
    let now = Instant::now();
    for port in 0..4u16 {
        let record = PeerRecord::sign(&attacker, &[SocketAddr::from(([10, 9, 0, 40], port))]);
        let reply = ask(&mut b, now, from, &announce(record.to_bytes())).unwrap();
        assert!(!reply.ack);
    }
    assert_eq!(dropped(&b, "checks_limit"), 16);
    // Forgotten (its connection gone), it starts again.
    b.forget_peer(&from.peer);
    let record = PeerRecord::sign(&attacker, &[SocketAddr::from(([10, 9, 0, 40], 9))]);
    assert!(
        ask(&mut b, now, from, &announce(record.to_bytes()))
            .unwrap()
            .ack
    );
}
