//! Session replacement keeps both sides on one KEY_PHASE (PROTOCOL.md §5): `weft ping ADDR`'s
//! XX from a bare address is answered every time under one handshake, and rekeys that follow
//! each other with no traffic between them (each replacing a session the other side never
//! confirmed) leave both sides filing the newest session under the same phase.

use super::sim::{Network, NodeId, addr};
use std::time::Duration;
use weft::channel::{Endpoint, EndpointConfig, Event};
use weft::session::PeerRecord;
use weft::wire::PeerId;

fn pongs(net: &mut Network<Endpoint>, node: NodeId) -> Vec<[u8; 8]> {
    std::iter::from_fn(|| net.node_mut(node).poll_event())
        .filter_map(|event| match event {
            Event::Pong { token, .. } => Some(token),
            _ => None,
        })
        .collect()
}

fn handshakes(net: &Network<Endpoint>, node: NodeId) -> u64 {
    ["ik", "xx", "ikpsk2"]
        .iter()
        .map(|kind| {
            net.node(node)
                .stats()
                .get("weft_handshakes_completed_total", Some(("kind", kind)))
        })
        .sum()
}

/// Sends one PING from `a` to `b` (by address, or by id) and drives a second; true if its PONG
/// came back.
fn ping(net: &mut Network<Endpoint>, a: NodeId, b: NodeId, peer: Option<PeerId>, n: u8) -> bool {
    let (now, to) = (net.now(), net.addr(b));
    let token = [n; 8];
    net.node_mut(a).ping(now, to, peer, token).expect("ping");
    net.drive_for(Duration::from_secs(1));
    pongs(net, a).contains(&token)
}

#[test]
fn xx_pings_from_a_bare_address_are_all_answered_under_one_handshake() {
    let mut net = Network::new(90);
    let a = net.add_endpoint(addr(1), EndpointConfig::default());
    let b = net.add_endpoint(addr(2), EndpointConfig::default());
    let answered = (0..20u8).filter(|&n| ping(&mut net, a, b, None, n)).count();
    assert_eq!(answered, 20, "20 sent, {answered} received");
    assert_eq!(handshakes(&net, b), 1);
    assert_eq!(net.node(b).stats().get("weft_rekeys_total", None), 0);
}

/// `a` opens a session to `b` (IK when `b`'s record is given to `a`, else XX), then rekeys
/// `rekeys` times back to back, each completing before the next but with no packet under the
/// new session in between; afterwards PINGs in both directions must still be answered.
fn back_to_back_rekeys(seed: u64, ik: bool, rekeys: usize) {
    let mut net = Network::new(seed);
    let a = net.add_endpoint(addr(1), EndpointConfig::default());
    let b = net.add_endpoint(addr(2), EndpointConfig::default());
    let pb = net.node(b).local_peer_id();
    let pa = net.node(a).local_peer_id();
    if ik {
        let record = PeerRecord::sign(net.node(b).identity(), &[net.addr(b)]);
        net.node_mut(a).add_peer_record(record).unwrap();
    }
    assert!(ping(&mut net, a, b, Some(pb), 0), "first session");
    for _ in 0..rekeys {
        let now = net.now();
        net.node_mut(a).rekey(now, pb).expect("rekey");
        net.drive_for(Duration::from_secs(1));
    }
    assert_eq!(handshakes(&net, b), 1 + rekeys as u64);
    for n in 1..4 {
        assert!(
            ping(&mut net, a, b, Some(pb), n),
            "a→b ping {n} after {rekeys} rekeys"
        );
        assert!(ping(&mut net, b, a, Some(pa), n + 10), "b→a ping {n}");
    }
}

#[test]
fn ik_rekeys_back_to_back_without_traffic_keep_both_sides_on_one_phase() {
    for rekeys in 1..=4 {
        back_to_back_rekeys(91, true, rekeys);
    }
}

#[test]
fn xx_rekeys_back_to_back_without_traffic_keep_both_sides_on_one_phase() {
    for rekeys in 1..=4 {
        back_to_back_rekeys(92, false, rekeys);
    }
}
