//! Sessions under pressure (PROTOCOL.md §5, issue 10 finding 3): identities cost an attacker
//! nothing, so the session table is shared by source. A prefix at its cap is refused while a
//! peer from another prefix completes; a full table evicts the least recently used session of
//! its heaviest prefix, so a newcomer always gets in; and a valid cookie does not let one
//! address start handshakes beyond its rate.

use super::sim::{Network, NodeId};
use std::net::SocketAddr;
use std::time::Duration;
use weft::channel::{Endpoint, EndpointConfig, Event};
use weft::session::TokenRate;
use weft::wire::PeerId;

fn at(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([a, b, c, d], port))
}

const NODE: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    7000,
);

/// `peer` PINGs the node by bare address (XX, as `weft ping ADDR`); true if its PONG came.
fn ping(net: &mut Network<Endpoint>, peer: NodeId, n: u64) -> bool {
    let now = net.now();
    let token = n.to_be_bytes();
    if net.node_mut(peer).ping(now, NODE, None, token).is_err() {
        return false;
    }
    net.drive_for(Duration::from_millis(300));
    std::iter::from_fn(|| net.node_mut(peer).poll_event())
        .any(|event| matches!(event, Event::Pong { token: t, .. } if t == token))
}

fn refusals(net: &Network<Endpoint>, node: NodeId, reason: &str) -> u64 {
    net.node(node)
        .stats()
        .get("weft_handshake_refusals_total", Some(("reason", reason)))
}

fn has(net: &Network<Endpoint>, node: NodeId, peer: NodeId) -> bool {
    let id: PeerId = net.node(peer).local_peer_id();
    net.node(node).has_session_with(id)
}

#[test]
fn a_prefix_at_its_cap_is_refused_while_a_peer_from_another_prefix_completes() {
    let mut net = Network::new(70);
    let node = net.add_endpoint(
        NODE,
        EndpointConfig {
            max_sessions_per_address: 3,
            max_sessions_per_prefix: 4,
            ..EndpointConfig::default()
        },
    );
    // Six fresh identities behind one address (a NAT), then three more in its /24.
    let mut crowd: Vec<NodeId> = (0..6)
        .map(|i| net.add_endpoint(at(198, 51, 100, 7, 1000 + i), EndpointConfig::default()))
        .collect();
    for i in 0..3 {
        crowd.push(net.add_endpoint(at(198, 51, 100, 8 + i, 1000), EndpointConfig::default()));
    }
    let answered: Vec<bool> = crowd
        .iter()
        .enumerate()
        .map(|(i, &peer)| ping(&mut net, peer, i as u64))
        .collect();
    assert_eq!(answered.iter().filter(|&&a| a).count(), 4, "{answered:?}");
    assert_eq!(&answered[..3], &[true; 3], "the first three of the address");
    assert!(refusals(&net, node, "address_limit") >= 3);
    assert!(refusals(&net, node, "prefix_limit") >= 2);
    assert_eq!(net.node(node).session_count(), 4);
    // A peer from another prefix still completes.
    let newcomer = net.add_endpoint(at(203, 0, 113, 9, 1000), EndpointConfig::default());
    assert!(ping(&mut net, newcomer, 99));
    assert!(has(&net, node, newcomer));
    assert_eq!(net.node(node).session_count(), 5);
}

#[test]
fn a_full_table_evicts_the_least_recently_used_session_so_a_new_peer_completes() {
    let mut net = Network::new(71);
    let node = net.add_endpoint(
        NODE,
        EndpointConfig {
            max_sessions: 8,
            ..EndpointConfig::default()
        },
    );
    // Eight peers from eight prefixes fill the table.
    let peers: Vec<NodeId> = (0..8u8)
        .map(|i| net.add_endpoint(at(10, i, 0, 1, 4000), EndpointConfig::default()))
        .collect();
    for (i, &peer) in peers.iter().enumerate() {
        assert!(ping(&mut net, peer, i as u64), "peer {i}");
    }
    assert_eq!(net.node(node).session_count(), 8);
    // All but peer 3 are used again: 3 is the least recently used.
    for (i, &peer) in peers.iter().enumerate() {
        if i != 3 {
            assert!(ping(&mut net, peer, 100 + i as u64));
        }
    }
    let newcomer = net.add_endpoint(at(10, 99, 0, 1, 4000), EndpointConfig::default());
    assert!(
        ping(&mut net, newcomer, 999),
        "a new peer completes at a full table"
    );
    assert!(has(&net, node, newcomer));
    assert!(
        !has(&net, node, peers[3]),
        "the least recently used session went"
    );
    for (i, &peer) in peers.iter().enumerate() {
        assert_eq!(has(&net, node, peer), i != 3, "peer {i}");
    }
    assert_eq!(net.node(node).session_count(), 8);
    assert_eq!(
        net.node(node)
            .stats()
            .get("weft_sessions_evicted_total", None),
        1
    );
}

#[test]
fn a_full_table_evicts_from_its_heaviest_prefix_not_a_light_ones_older_session() {
    let mut net = Network::new(72);
    let node = net.add_endpoint(
        NODE,
        EndpointConfig {
            max_sessions: 6,
            ..EndpointConfig::default()
        },
    );
    // An old, quiet session from a light prefix, then a heavy prefix of five busy ones.
    let light = net.add_endpoint(at(10, 1, 0, 1, 4000), EndpointConfig::default());
    assert!(ping(&mut net, light, 0));
    let heavy: Vec<NodeId> = (0..5u8)
        .map(|i| net.add_endpoint(at(10, 2, 0, 1 + i, 4000), EndpointConfig::default()))
        .collect();
    for (i, &peer) in heavy.iter().enumerate() {
        assert!(ping(&mut net, peer, 1 + i as u64));
    }
    let newcomer = net.add_endpoint(at(10, 3, 0, 1, 4000), EndpointConfig::default());
    assert!(ping(&mut net, newcomer, 99));
    assert!(has(&net, node, light), "the light prefix keeps its session");
    assert!(
        !has(&net, node, heavy[0]),
        "the heavy prefix's least recently used went"
    );
    assert!(has(&net, node, newcomer));
}

#[test]
fn a_valid_cookie_does_not_lift_the_handshake_rate_of_an_address() {
    let mut net = Network::new(73);
    let node = net.add_endpoint(
        NODE,
        EndpointConfig {
            handshake_rate_per_address: TokenRate {
                per_second: 1,
                burst: 5,
            },
            ..EndpointConfig::default()
        },
    );
    // Twenty fresh identities from one address, each fetching its cookie (XX always asks for
    // one) within a few seconds: the burst and the sustained rate get through, no more.
    let crowd: Vec<NodeId> = (0..20)
        .map(|i| net.add_endpoint(at(198, 51, 100, 7, 2000 + i), EndpointConfig::default()))
        .collect();
    let start = net.now();
    let answered = crowd
        .iter()
        .enumerate()
        .filter(|&(i, &peer)| ping(&mut net, peer, i as u64))
        .count();
    let seconds = net.now().duration_since(start).as_secs() as usize;
    assert!(answered <= 5 + seconds + 1, "{answered} in {seconds} s");
    assert!(answered >= 5);
    assert!(refusals(&net, node, "address_rate") > 0);
    assert!(
        net.node(node)
            .stats()
            .get("weft_handshake_cookies_sent_total", None)
            >= 20
    );
    // Another address is not held back.
    let other = net.add_endpoint(at(203, 0, 113, 9, 1000), EndpointConfig::default());
    assert!(ping(&mut net, other, 99));
}

/// A HANDSHAKE_INIT of kind 2 (XX) claiming `sender`, with `cookie` when given.
fn xx_init(sender: weft::wire::PeerId, cookie: Option<&[u8; 16]>) -> Vec<u8> {
    use weft::wire::{ChannelId, Flags, Header, Message, PacketWriter};
    let header = Header {
        flags: Flags::default(),
        sender,
        recipient: PeerId::ZERO,
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let mut buf = vec![0u8; 1200];
    let mut writer = PacketWriter::new(&mut buf, &header).unwrap();
    writer
        .push(&Message::HandshakeInit {
            kind: 2,
            sender_index: 7,
            handshake: &[5; 32],
            mac1: &[0; 16],
            cookie,
        })
        .unwrap();
    let len = writer.try_finish().unwrap();
    buf.truncate(len);
    buf
}

#[test]
fn a_full_pending_table_gives_way_from_its_heaviest_prefix_to_a_newcomer() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use weft::wire::{Message, Packet};
    let mut net = Network::new(74);
    let node = net.add_endpoint(
        NODE,
        EndpointConfig {
            max_pending_xx: 4,
            max_pending_xx_per_prefix: 4,
            ..EndpointConfig::default()
        },
    );
    // One prefix fills the pending table with XX states that will never see a FINAL: each
    // INIT carries the cookie its (claimed) sender fetched at the attacker's own address.
    let attacker = at(198, 51, 100, 7, 9);
    let _sink_node = net.add_endpoint(attacker, EndpointConfig::default());
    let answers: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let sink = answers.clone();
    net.on_deliver(move |_, to, bytes| {
        if *to == attacker {
            sink.borrow_mut().push(bytes.clone());
        }
        true
    });
    for n in 1..=4u8 {
        let claimed = PeerId([n; 16]);
        net.inject(attacker, node, &xx_init(claimed, None));
        net.drive_for(Duration::from_millis(50));
        let cookie = answers
            .borrow()
            .iter()
            .rev()
            .find_map(
                |bytes| match Packet::parse(bytes).ok()?.messages().next()? {
                    Message::HandshakeCookie { cookie, .. } => Some(*cookie),
                    _ => None,
                },
            )
            .expect("a cookie");
        net.inject(attacker, node, &xx_init(claimed, Some(&cookie)));
    }
    assert_eq!(net.node(node).pending_handshake_count(), 4);
    // A newcomer from another prefix completes at once.
    let newcomer = net.add_endpoint(at(203, 0, 113, 9, 1000), EndpointConfig::default());
    assert!(ping(&mut net, newcomer, 1));
    assert_eq!(
        net.node(node)
            .stats()
            .get("weft_pending_handshakes_evicted_total", None),
        1
    );
}
