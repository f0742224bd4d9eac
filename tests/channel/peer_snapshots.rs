//! `Endpoint::peer_snapshots`, the read-only view behind `weft status` (issue 13): one entry per
//! peer with its session, channels by mode, packet counts and path.

use super::sim::{Network, NodeId, addr};
use std::time::Duration;
use weft::channel::{ChannelCounts, ChannelHandle, Endpoint, EndpointConfig, PeerSnapshot};
use weft::session::{Identity, RekeyPolicy};
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
    // Whole datagrams: at least a sealed header and tag each.
    assert!(
        peer.bytes_received >= peer.packets_received * 57,
        "{peer:?}"
    );
    assert!(peer.bytes_sent >= peer.packets_sent * 57, "{peer:?}");
    let age = peer.session_age.expect("a session has an age");
    assert!(age >= peer.since_handshake.unwrap(), "{peer:?}");
    assert!(age >= Duration::from_secs(1), "{peer:?}");
    // The peer's share of the node's totals, which also count handshakes.
    let stats = net.node(server).stats();
    assert!(peer.packets_received < stats.get("weft_packets_received_total", None));
    assert!(peer.bytes_received < stats.get("weft_received_bytes_total", None));
    assert!(peer.packets_sent < stats.get("weft_packets_sent_total", None));
    assert!(peer.bytes_sent < stats.get("weft_sent_bytes_total", None));
    assert!(peer.rtt.is_some_and(|rtt| rtt > Duration::ZERO), "{peer:?}");
    assert!(
        peer.congestion_window.is_some_and(|cwnd| cwnd > 0),
        "{peer:?}"
    );
    assert_eq!(peer.congestion_events, Some(0), "no loss on this link");

    // The client sees the server the same way, from its side; on a link that loses nothing,
    // what one side counts sent the other counts received, to the byte.
    let server_view = peers[0].clone();
    net.node(client).peer_snapshots(net.now(), &mut peers);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer, server_id);
    assert_eq!(peers[0].channels.tcp, 2);
    assert_same_traffic(&server_view, &peers[0]);
}

/// `a` and `b` are two ends' views of each other after a lossless exchange.
fn assert_same_traffic(a: &PeerSnapshot, b: &PeerSnapshot) {
    assert_eq!(
        (a.packets_received, a.bytes_received),
        (b.packets_sent, b.bytes_sent),
        "{a:?}\n{b:?}"
    );
    assert_eq!(
        (a.packets_sent, a.bytes_sent),
        (b.packets_received, b.bytes_received),
        "{a:?}\n{b:?}"
    );
}

/// Runs until no datagram is on the wire, so both ends have counted the same ones.
fn settle(net: &mut Network<Endpoint>) {
    assert!(net.run_until(|net| net.in_flight() == 0));
}

fn snapshot(net: &Network<Endpoint>, node: NodeId) -> PeerSnapshot {
    let mut peers = vec![];
    net.node(node).peer_snapshots(net.now(), &mut peers);
    assert_eq!(peers.len(), 1, "{peers:?}");
    peers.remove(0)
}

/// Sends `rounds` messages each way on `channel`'s pair, 20 ms apart.
fn exchange(net: &mut Network<Endpoint>, from: NodeId, channel: ChannelHandle, rounds: usize) {
    for _ in 0..rounds {
        let now = net.now();
        net.node_mut(from).send(now, channel, b"traffic").unwrap();
        net.drive_for(Duration::from_millis(20));
    }
}

/// An echoing server at `addr(1)` with `config`, a client at `addr(2)` with the same but no echo,
/// and an open unreliable channel from the client to the server.
fn echo_pair(
    net: &mut Network<Endpoint>,
    config: EndpointConfig,
) -> (NodeId, NodeId, ChannelHandle) {
    let server = net.add_endpoint(addr(1), config.clone());
    let client = net.add_endpoint(
        addr(2),
        EndpointConfig {
            echo: false,
            ..config
        },
    );
    let server_id = net.node(server).local_peer_id();
    let now = net.now();
    let channel = net
        .node_mut(client)
        .open_channel(now, addr(1), Some(server_id), None, Capabilities::NONE)
        .unwrap();
    net.drive_for(Duration::from_secs(1));
    (server, client, channel)
}

#[test]
fn a_rekey_starts_the_last_handshake_again_but_keeps_the_age_and_the_counts() {
    let mut net: Network<Endpoint> = Network::new(14);
    let config = EndpointConfig {
        echo: true,
        rekey: RekeyPolicy {
            after: Duration::from_secs(3),
            ..RekeyPolicy::default()
        },
        ..EndpointConfig::default()
    };
    let (server, client, channel) = echo_pair(&mut net, config);
    exchange(&mut net, client, channel, 10);
    let before = snapshot(&net, server);
    assert!(before.packets_received >= 10, "{before:?}");
    assert_eq!(net.node(server).stats().get("weft_rekeys_total", None), 0);

    // Past the rekey: the new keys count on, as does the session's age.
    net.drive_for(Duration::from_secs(3));
    exchange(&mut net, client, channel, 10);
    settle(&mut net);
    let after = snapshot(&net, server);
    let rekeys = net.node(server).stats().get("weft_rekeys_total", None)
        + net.node(client).stats().get("weft_rekeys_total", None);
    assert!(rekeys >= 1, "no rekey happened");
    let age = after.session_age.unwrap();
    let since = after.since_handshake.unwrap();
    assert!(age >= Duration::from_secs(4), "{after:?}");
    assert!(since + Duration::from_secs(1) < age, "{after:?}");
    assert!(
        after.packets_received >= before.packets_received + 10,
        "{after:?}"
    );
    assert!(after.bytes_sent > before.bytes_sent, "{after:?}");
    assert_same_traffic(&after, &snapshot(&net, client));
}

#[test]
fn a_plaintext_peer_counts_its_datagrams_on_its_channel_state() {
    let mut net: Network<Endpoint> = Network::new(15);
    let config = EndpointConfig {
        echo: true,
        allow_plaintext: true,
        ..EndpointConfig::default()
    };
    let (server, client, channel) = echo_pair(&mut net, config);
    exchange(&mut net, client, channel, 20);
    settle(&mut net);
    let (at_server, at_client) = (snapshot(&net, server), snapshot(&net, client));
    let both = format!("{at_server:?}\n{at_client:?}");
    assert_eq!(at_server.session_kind, None);
    assert_eq!(at_server.session_age, None);
    assert!(at_server.packets_received >= 20, "{at_server:?}");
    assert!(at_server.packets_sent >= 20, "{at_server:?}");
    assert!(at_server.bytes_received >= at_server.packets_received * 37);
    // The server's state starts at the channel's FINALIZE: CHANNEL_NEW and its stateless
    // answer count only at the client. The rest each side counted alike.
    assert!(
        at_server.packets_received <= at_client.packets_sent,
        "{both}"
    );
    assert!(
        at_server.packets_received + 2 >= at_client.packets_sent,
        "{both}"
    );
    assert!(
        at_server.packets_sent <= at_client.packets_received,
        "{both}"
    );
    assert!(
        at_server.packets_sent + 2 >= at_client.packets_received,
        "{both}"
    );
}
