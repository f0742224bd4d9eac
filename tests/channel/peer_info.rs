//! `Endpoint::peer_info`: what a worker learns about a peer through the service seam (its
//! address, session kind and RTT), answered from the endpoint that owns the peer.

use super::sim::{Network, addr};
use super::{events, plaintext};
use std::time::Duration;
use weft::channel::{Endpoint, Event};
use weft::wire::{Capabilities, PeerId};

#[test]
fn peer_info_tells_a_known_peers_address_session_kind_and_rtt() {
    let mut net: Network<Endpoint> = Network::new(11);
    let a = net.add_endpoint(addr(1), plaintext());
    let b = net.add_endpoint(addr(2), plaintext());
    let (to, b_id, a_id) = (
        net.addr(b),
        net.node(b).local_peer_id(),
        net.node(a).local_peer_id(),
    );
    assert_eq!(net.node(b).peer_info(a_id), None, "nothing known yet");
    let now = net.now();
    let channel = net
        .node_mut(a)
        .open_channel(
            now,
            to,
            Some(b_id),
            None,
            Capabilities::from_bits(7).unwrap(),
        )
        .unwrap();
    net.drive_for(Duration::from_millis(200));
    for i in 0..10u8 {
        let now = net.now();
        net.node_mut(a).send(now, channel, &[i]).unwrap();
        net.drive_for(Duration::from_millis(50));
    }
    assert_eq!(
        events(&mut net, b)
            .iter()
            .filter(|e| matches!(e, Event::Message { peer, .. } if *peer == a_id))
            .count(),
        10,
        "every message names its sender"
    );
    let info = net.node(a).peer_info(b_id).expect("a knows b");
    assert_eq!(info.peer, b_id);
    assert_eq!(info.address, to);
    assert_eq!(info.session_kind, None, "kind 0: no session");
    assert!(info.rtt.is_some(), "acknowledged data measured the path");
    let seen_by_b = net.node(b).peer_info(a_id).expect("b knows a");
    assert_eq!(seen_by_b.address, net.addr(a));
    assert_eq!(net.node(a).peer_info(PeerId([9; 16])), None);
}
