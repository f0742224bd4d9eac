//! Second round (docs/SECURITY.md, "Second round: the node as a weapon, the overlay's
//! amplifiers"): what an authenticated peer can make a default node send to a third party, and
//! the channel layer's numbers at their u64 edges, against a real `weft node`.
//!
//! A UDP sink on another /24 plays the victim. The peer names the sink's address in every
//! field the overlay takes one from (contacts in FIND_NODE replies, its own signed records)
//! and asks the node for its contacts; a node without a certified id runs no lookup of its
//! own, and answers only on the peer's own channel, so the sink must receive nothing. Lookups
//! of a certified node, where the attack reaches, are shown sans-IO (`tests/overlay/victim.rs`).

use super::services::{DROPPED, OVERLAY, Sender, counted, overlay_barrier, tagged};
use super::{HEAP_BUDGET, Node, loopback, under_attack};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use weft::bench::load::attacker::AttackError;
use weft::overlay::id::{Contact, NodeId};
use weft::overlay::rpc::{Body, ConnectionOpt, Opcode, Reply, ReplyBody, Request};
use weft::session::{Identity, PeerRecord};
use weft::wire::{Ack, AckRanges, Message};

/// How long the sink listens after the node handled everything (its opens would have sent
/// their first INIT at once, the next 500 ms later).
const LISTEN: Duration = Duration::from_millis(1500);

/// Every datagram the sink received until `until`: (count, bytes).
fn drain(sink: &UdpSocket, until: Instant) -> (usize, usize) {
    let (mut count, mut bytes) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        sink.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sink.recv(&mut buf) {
            Ok(n) => (count, bytes) = (count + 1, bytes + n),
            Err(_) => break,
        }
    }
    (count, bytes)
}

/// Overlay requests naming the sink: unasked FIND_NODE replies of contacts at it (each
/// with a record of a fresh key listing it), a certified-id proof that is not one, the
/// attacker's own records listing it, and FIND_NODE and FIND_VALUE questions.
fn naming(sink: SocketAddr, attacker: &Identity) -> Vec<Vec<u8>> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0x51c);
    // Five a reply: with their records, as many as fit one datagram.
    let contacts: Vec<_> = (0..5u8)
        .map(|i| {
            let identity = Identity::generate(&mut rng);
            let record = PeerRecord::sign(&identity, &[sink]);
            let contact = Contact {
                id: NodeId([i; 20]),
                peer: record.peer_id(),
                addr: sink,
            };
            weft::overlay::rpc::NodeInfo {
                contact,
                record: Some(record.to_bytes()),
            }
        })
        .collect();
    let mut frames: Vec<Vec<u8>> = (0..20u32)
        .map(|id| {
            Reply {
                ack: true,
                id,
                op: Opcode::FindNode,
                body: ReplyBody::Nodes(contacts.clone()),
            }
            .encode()
        })
        .collect();
    let request = |id, body| Request {
        op: match body {
            Body::FindNode(_) => Opcode::FindNode,
            Body::FindValue { .. } => Opcode::FindValue,
            _ => Opcode::SetConnectionOpt,
        },
        id,
        body,
    };
    let forged = ConnectionOpt::CertifiedId(NodeId([7; 20]), vec![0x90]);
    frames.push(request(100, Body::SetConnectionOpt(forged)).encode());
    for port in 0..4 {
        let addr = SocketAddr::new(sink.ip(), sink.port().wrapping_add(port));
        let record = PeerRecord::sign(attacker, &[addr, sink]).to_bytes();
        let option = ConnectionOpt::PeerRecord(record);
        frames.push(request(110 + u32::from(port), Body::SetConnectionOpt(option)).encode());
    }
    frames.push(request(120, Body::FindNode(NodeId([7; 20]))).encode());
    let key = b"anything".to_vec();
    frames.push(request(121, Body::FindValue { key }).encode());
    frames.iter().map(|f| tagged(OVERLAY, f)).collect()
}

/// Control messages at their u64 edges on the attacker's channel: ACKs of packets never sent
/// (the largest number, ranges down to zero, the longest delay), credit at both ends,
/// and fragments, numbered from `next`, that end at u64::MAX or claim totals past every
/// budget.
fn edges(next: u64) -> Vec<Vec<Message<'static>>> {
    let ack = |largest, ack_delay_us, first_range| {
        Message::Ack(Ack {
            largest,
            ack_delay_us,
            first_range,
            ranges: AckRanges::EMPTY,
        })
    };
    let fragment =
        |message_number, total_length, offset, bytes: &'static [u8]| Message::DataFragment {
            message_number,
            total_length,
            offset,
            bytes,
        };
    vec![
        vec![ack(u64::MAX, u64::MAX, u64::MAX)],
        // (A first range past zero does not parse: the wire layer refuses it both ways.)
        vec![ack(1 << 40, u64::MAX, 1 << 40)],
        vec![ack(u64::MAX, 0, 0)],
        vec![Message::Window {
            max_message: u64::MAX,
            max_bytes: u64::MAX,
        }],
        vec![fragment(u64::MAX - 1, u64::MAX, u64::MAX - 4, b"abcd")],
        vec![fragment(next, u64::MAX, u64::MAX - 4, b"abcd")],
        vec![fragment(next + 1, u64::MAX, 0, b"abcd")],
        vec![fragment(next + 2, 1 << 40, (1 << 40) - 4, b"abcd")],
        // (A fragment past its total does not parse: the wire layer refuses it both ways.)
        vec![fragment(next + 3, 1 << 24, 0, b"abcd")],
        vec![Message::Window {
            max_message: 0,
            max_bytes: 0,
        }],
        vec![Message::Window {
            max_message: 1 << 40,
            max_bytes: 1 << 50,
        }],
    ]
}

#[test]
fn a_peer_aims_nothing_at_a_third_party_and_edge_numbers_leave_the_node_answering() {
    let mut node = Node::start("weapon", &[]);
    let sink = UdpSocket::bind(SocketAddr::new(loopback(0, 3, 1), 0)).unwrap();
    let victim = sink.local_addr().unwrap();
    under_attack("weapon", &mut node, HEAP_BUDGET, |node| {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0xa77);
        let identity = Identity::generate(&mut rng);
        let frames = naming(victim, &identity);
        let sent: usize = frames.iter().map(Vec::len).sum();
        let mut sender = Sender::open_as(node, identity, 0xa77)?;
        overlay_barrier(&mut sender)?;
        sender.send(&frames)?;
        for messages in edges(sender.next) {
            sender.attacker.send_sealed(sender.channel, &messages)?;
        }
        sender.next += 4;
        overlay_barrier(&mut sender)?;
        let unknown = counted(node, &mut sender, DROPPED, "reason=\"reply_unknown\"", 20);
        let (datagrams, bytes) = drain(&sink, Instant::now() + LISTEN);
        println!(
            "weapon: {} overlay frames ({sent} B) naming {victim}: {datagrams} datagrams \
             ({bytes} B) reached it; {unknown} unasked replies dropped",
            frames.len()
        );
        assert_eq!(
            datagrams, 0,
            "the node sent {bytes} B to an address a peer named"
        );
        assert!(unknown >= 20, "unasked replies were not dropped as such");
        // The edges left the attacker's own channel working too.
        overlay_barrier(&mut sender)?;
        Ok::<(), AttackError>(())
    });
}
