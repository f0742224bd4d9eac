//! `Endpoint::peer_snapshots`, the read-only view behind `weft status` (issue 13): one entry per
//! peer with its session, channels by mode, packet counts and path.

use super::sim::{Network, addr};
use std::time::Duration;
use weft::channel::{ChannelCounts, Endpoint, EndpointConfig};
use weft::session::Identity;
use weft::wire::Capabilities;

#[test]
fn each_peer_shows_its_session_channels_by_mode_and_path() {
    let mut net: Network<Endpoint> = Network::new(13);
    let now = net.now();
    let server = net.add_node(
        addr(1),
        Endpoint::new(
            EndpointConfig {
                echo: true,
                ..EndpointConfig::default()
            },
            Identity::from_secret_bytes([1; 32], [1; 32]),
            [1; 32],
            now,
        ),
    );
    let client = net.add_node(
        addr(2),
        Endpoint::new(
            EndpointConfig::default(),
            Identity::from_secret_bytes([2; 32], [2; 32]),
            [2; 32],
            now,
        ),
    );
    let server_id = net.node(server).local_peer_id();
    let client_id = net.node(client).local_peer_id();
    let mut empty = vec![];
    net.node(server).peer_snapshots(net.now(), &mut empty);
    assert!(empty.is_empty(), "{empty:?}");

    let tcp = Capabilities::RESEND.union(Capabilities::ORDERED);
    let mut channels = Vec::new();
    for mode in [Capabilities::NONE, tcp, tcp] {
        let now = net.now();
        channels.push(
            net.node_mut(client)
                .open_channel(now, addr(1), Some(server_id), None, mode)
                .unwrap(),
        );
    }
    net.drive_for(Duration::from_secs(1));
    for _ in 0..20 {
        for &channel in &channels {
            let now = net.now();
            let _ = net.node_mut(client).send(now, channel, b"status");
        }
        net.drive_for(Duration::from_millis(20));
    }
    net.drive_for(Duration::from_millis(500));

    let mut peers = vec![];
    net.node(server).peer_snapshots(net.now(), &mut peers);
    assert_eq!(peers.len(), 1, "{peers:?}");
    let peer = &peers[0];
    assert_eq!(peer.peer, client_id);
    assert_eq!(peer.address, addr(2));
    assert_eq!(peer.session_kind, Some(2), "XX from a bare address");
    assert!(peer.since_handshake.is_some());
    assert_eq!(
        peer.channels,
        ChannelCounts {
            udp: 1,
            reliable: 0,
            ordered: 0,
            tcp: 2
        }
    );
    assert!(peer.packets_received >= 20, "{peer:?}");
    assert!(peer.packets_sent >= 20, "{peer:?}");
    assert!(peer.rtt.is_some_and(|rtt| rtt > Duration::ZERO), "{peer:?}");
    assert!(
        peer.congestion_window.is_some_and(|cwnd| cwnd > 0),
        "{peer:?}"
    );
    assert_eq!(peer.congestion_events, Some(0), "no loss on this link");

    // The client sees the server the same way, from its side.
    net.node(client).peer_snapshots(net.now(), &mut peers);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer, server_id);
    assert_eq!(peers[0].channels.tcp, 2);
}
