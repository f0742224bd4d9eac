//! Records over wall-clock time, in a small simulated network: a record outlives neither its
//! TTL once its publisher is gone, nor is it lost while the publisher republishes it. The wall
//! clock jumps (each node's `wall_offset`), so a simulated day costs seconds of virtual time.

use super::harness::{joined, sim_config};
use crate::sim::{Network, NodeId as SimId};
use std::time::Duration;
use weft::overlay::kademlia::Event;
use weft::overlay::rpc::Value;

const N: usize = 30;
const HOUR: u64 = 3600;

fn small(seed: u64) -> Network<super::harness::OverlayNode> {
    joined(seed, N, |_| sim_config())
}

fn jump(net: &mut Network<super::harness::OverlayNode>, by: u64) {
    for i in 0..N {
        net.node_mut(SimId(i)).wall_offset += by;
    }
    // One maintenance pass (every 10 s) and the lookups and STOREs it starts.
    net.drive_for(Duration::from_secs(15));
}

fn put(net: &mut Network<super::harness::OverlayNode>, who: usize, key: &[u8]) {
    let now = net.now();
    let wall = net.node(SimId(who)).wall_at(now);
    net.node_mut(SimId(who))
        .dht
        .put(now, wall, key, Value::Str("v".into()), 1);
    net.drive_for(Duration::from_secs(5));
    let stored = net.node(SimId(who)).events.iter().find_map(|e| match e {
        Event::Put { stored, .. } => Some(*stored),
        _ => None,
    });
    assert_eq!(stored, Some(20), "the put reached the k closest");
}

fn found(
    net: &mut Network<super::harness::OverlayNode>,
    who: usize,
    key: &[u8],
    token: u64,
) -> bool {
    let now = net.now();
    net.node_mut(SimId(who)).dht.get(now, key, token);
    net.drive_for(Duration::from_secs(5));
    net.node(SimId(who))
        .events
        .iter()
        .find_map(|e| match e {
            Event::Lookup { token: t, result } if *t == token => Some(result.found.is_some()),
            _ => None,
        })
        .expect("the get finished")
}

/// Records held by the nodes still running (a silent node runs no timers, so keeps what it had).
fn held(net: &Network<super::harness::OverlayNode>) -> usize {
    (0..N)
        .filter(|i| !net.node(SimId(*i)).silent)
        .map(|i| net.node(SimId(i)).dht.records().len())
        .sum()
}

#[test]
fn a_record_whose_publisher_left_expires_after_its_ttl() {
    let mut net = small(1);
    put(&mut net, 3, b"gone");
    assert!(found(&mut net, 9, b"gone", 10));
    net.node_mut(SimId(3)).silent = true;
    // Replicas pass it on hourly, but nobody extends its 48 h.
    jump(&mut net, 47 * HOUR);
    assert!(held(&net) >= 20, "replicas dropped it early");
    assert!(found(&mut net, 9, b"gone", 11));
    jump(&mut net, 2 * HOUR);
    assert_eq!(held(&net), 0, "a record outlived its TTL");
    assert!(!found(&mut net, 9, b"gone", 12));
    let expired: u64 = (0..N)
        .flat_map(|i| {
            net.node(SimId(i))
                .dht
                .stats()
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|e| e.name == "weft_overlay_records_expired_total")
        .map(|e| e.value)
        .sum();
    assert!(expired >= 20);
}

#[test]
fn a_publisher_that_stays_keeps_its_record_alive() {
    let mut net = small(2);
    put(&mut net, 3, b"kept");
    // Past the 22 h republish and then past the first 48 h.
    jump(&mut net, 23 * HOUR);
    jump(&mut net, 30 * HOUR);
    assert!(found(&mut net, 9, b"kept", 20));
}
