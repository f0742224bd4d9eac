//! The IK replay-timestamp table (PROTOCOL.md §5) is bounded: a full table forgets only
//! entries older than its window, and what it forgot cannot be replayed (issue 10, finding 10).

use super::sim::{Network, NodeId, addr};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use weft::channel::{Endpoint, EndpointConfig, Event};
use weft::session::PeerRecord;

const START: u64 = 1_800_000_000;

fn set_clock(net: &mut Network<Endpoint>, nodes: &[NodeId], seconds: u64) {
    for &node in nodes {
        net.node_mut(node).set_unix_time(seconds, 0);
    }
}

fn ponged(net: &mut Network<Endpoint>, peer: NodeId, to: NodeId, n: u8) -> bool {
    let (now, at, id) = (net.now(), net.addr(to), net.node(to).local_peer_id());
    net.node_mut(peer)
        .ping(now, at, Some(id), [n; 8])
        .expect("ping");
    net.drive_for(Duration::from_millis(300));
    std::iter::from_fn(|| net.node_mut(peer).poll_event())
        .any(|event| matches!(event, Event::Pong { token, .. } if token == [n; 8]))
}

fn replays(net: &Network<Endpoint>, node: NodeId) -> u64 {
    net.node(node).stats().get(
        "weft_packets_dropped_total",
        Some(("reason", "handshake_replay")),
    )
}

#[test]
fn a_full_replay_table_forgets_only_old_keys_and_a_forgotten_init_stays_refused() {
    let mut net = Network::new(80);
    let node = net.add_endpoint(
        addr(1),
        EndpointConfig {
            max_handshake_timestamps: 4,
            handshake_timestamp_window: Duration::from_secs(60),
            ..EndpointConfig::default()
        },
    );
    let record = PeerRecord::sign(net.node(node).identity(), &[addr(1)]);
    let peers: Vec<NodeId> = (0..6)
        .map(|i| net.add_endpoint(addr(10 + i), EndpointConfig::default()))
        .collect();
    for &peer in &peers {
        net.node_mut(peer).add_peer_record(record.clone()).unwrap();
    }
    let everyone: Vec<NodeId> = std::iter::once(node).chain(peers.iter().copied()).collect();
    // Capture the first IK INIT peer 0 sends, to replay it later.
    let recorded: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();
    let sink = recorded.clone();
    net.on_deliver(move |from, to, bytes| {
        if *from == addr(10) && *to == addr(1) && sink.borrow().is_none() {
            *sink.borrow_mut() = Some(bytes.clone());
        }
        true
    });
    set_clock(&mut net, &everyone, START);
    for (i, &peer) in peers[..4].iter().enumerate() {
        assert!(ponged(&mut net, peer, node, i as u8), "peer {i}");
    }
    assert_eq!(net.node(node).replay_table_len(), 4);
    // Full of entries younger than the window: a fifth key is refused, not let in unrecorded.
    let before = replays(&net, node);
    assert!(!ponged(&mut net, peers[4], node, 4));
    assert!(replays(&net, node) > before);
    assert_eq!(net.node(node).replay_table_len(), 4);
    // Two minutes on, the oldest entries may go: the fifth and sixth keys get in, the table
    // stays at its bound.
    set_clock(&mut net, &everyone, START + 120);
    net.drive_for(Duration::from_secs(5));
    assert!(ponged(&mut net, peers[4], node, 14));
    assert!(ponged(&mut net, peers[5], node, 15));
    assert_eq!(net.node(node).replay_table_len(), 4);
    // Peer 0's entry was forgotten; its recorded INIT is still refused.
    let sessions_before = net
        .node(node)
        .stats()
        .get("weft_handshakes_completed_total", Some(("kind", "ik")));
    let before = replays(&net, node);
    let init = recorded.borrow().clone().expect("an INIT was recorded");
    net.inject(addr(10), node, &init);
    assert_eq!(replays(&net, node), before + 1);
    assert_eq!(
        net.node(node)
            .stats()
            .get("weft_handshakes_completed_total", Some(("kind", "ik"))),
        sessions_before
    );
}
