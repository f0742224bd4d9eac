//! Keeping tables full and fresh (issue 15 point 4), in the simulator: bucket refresh finds
//! contacts that went silent although nobody looks anything up, the node info cache refills a
//! bucket that lost its contacts, and a node keeps ℓ self-initiated connections, replacing one
//! that closes.

use super::harness::{OverlayNode, sim_config};
use crate::sim::{Network, NodeId as SimId};
use std::time::Duration;
use weft::overlay::kademlia::{Event, KademliaConfig};
use weft::overlay::rpc::{Body, Opcode};

const N: usize = 60;

fn joined(seed: u64, config: impl Fn(usize) -> KademliaConfig) -> Network<OverlayNode> {
    super::harness::joined(seed, N, config)
}

fn counter(net: &Network<OverlayNode>, who: usize, name: &str) -> u64 {
    net.node(SimId(who))
        .dht
        .stats()
        .iter()
        .filter(|e| e.name == name)
        .map(|e| e.value)
        .sum()
}

/// How many of `who`'s contacts are silent nodes.
fn silent_contacts(net: &Network<OverlayNode>, who: usize) -> usize {
    (0..N)
        .filter(|i| net.node(SimId(*i)).silent)
        .filter(|i| {
            let id = net.node(SimId(*i)).dht.own().id;
            net.node(SimId(who)).dht.table().get(&id).is_some()
        })
        .count()
}

/// Silences every third node but node 0 and lets `idle` pass with no lookup started.
fn silence_and_idle(refresh: Option<Duration>, idle: Duration) -> (usize, usize, u64) {
    let mut net = joined(1, |_| KademliaConfig {
        refresh,
        ..sim_config()
    });
    for i in (3..N).step_by(3) {
        net.node_mut(SimId(i)).silent = true;
    }
    let before = silent_contacts(&net, 0);
    net.drive_for(idle);
    let refreshes = counter(&net, 0, "weft_overlay_refreshes_total");
    (before, silent_contacts(&net, 0), refreshes)
}

#[test]
fn bucket_refresh_finds_silent_contacts_without_lookups() {
    let idle = Duration::from_secs(11 * 60);
    let (before, without, none) = silence_and_idle(None, idle);
    assert!(before > 0, "node 0 knew some of the nodes that went silent");
    assert_eq!(none, 0);
    assert_eq!(without, before, "without refresh, nothing notices");
    let (before, with, refreshes) = silence_and_idle(Some(Duration::from_secs(300)), idle);
    assert!(
        refreshes > 0,
        "buckets with no lookup for 5 min were refreshed"
    );
    assert!(
        with < before,
        "refresh found silent contacts: {with} of {before} left"
    );
}

#[test]
fn the_node_info_cache_refills_a_bucket_that_lost_its_contacts() {
    // Small buckets (k = 4), so most nodes a lookup meets are not held but cached; one missed
    // request evicts; no refresh, so after joining nothing but the cache refills a bucket.
    let config = |_| KademliaConfig {
        k: 4,
        max_failures: 1,
        ..sim_config()
    };
    let mut net = joined(2, config);
    // The last node to join: its join lookup met many nodes.
    const W: usize = N - 1;
    net.drive_for(Duration::from_secs(15));
    let index_of =
        |net: &Network<OverlayNode>, id| (0..N).find(|i| net.node(SimId(*i)).dht.own().id == id);
    let table = net.node(SimId(W)).dht.table();
    assert_eq!(
        table.fill()[0],
        4,
        "the farthest bucket (half the id space) is full"
    );
    // Every node of that bucket node W holds or has heard from goes silent.
    let heard: Vec<_> = table
        .bucket(0)
        .into_iter()
        .chain(table.replacements(0).iter().copied())
        .collect();
    for contact in &heard {
        let i = index_of(&net, contact.id).unwrap();
        net.node_mut(SimId(i)).silent = true;
    }
    let cached = net.node(SimId(W)).dht.cache().len();
    assert!(cached > 0, "node W learned contacts it does not hold");
    // Node 0 pings its bucket until every silent contact has missed a ping and left.
    for round in 0.. {
        let silent: Vec<_> = net
            .node(SimId(W))
            .dht
            .table()
            .bucket(0)
            .into_iter()
            .filter(|c| heard.contains(c))
            .collect();
        if silent.is_empty() {
            break;
        }
        assert!(round < 10, "the silent contacts leave");
        for contact in silent {
            let now = net.now();
            net.node_mut(SimId(W))
                .dht
                .request(now, &contact, Opcode::Ping, Body::Ping, 9);
        }
        net.drive_for(Duration::from_secs(3));
    }
    net.drive_for(Duration::from_secs(30));
    let dht = &net.node(SimId(W)).dht;
    let bucket = dht.table().bucket(0);
    assert!(!bucket.is_empty(), "the bucket was refilled");
    for contact in &bucket {
        let i = index_of(&net, contact.id).unwrap();
        assert!(!net.node(SimId(i)).silent, "only live nodes came back");
    }
    assert!(counter(&net, W, "weft_overlay_cache_refills_total") > 0);
}

#[test]
fn a_node_keeps_ell_links_and_replaces_one_that_closes() {
    let mut net = joined(3, |_| KademliaConfig {
        ell: 3,
        ..sim_config()
    });
    // The first maintenance pass (10 s after a node's first input) asks for links.
    net.drive_for(Duration::from_secs(15));
    let connects = |net: &Network<OverlayNode>| -> Vec<_> {
        net.node(SimId(0))
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Connect { contact } => Some(*contact),
                _ => None,
            })
            .collect()
    };
    let first = connects(&net);
    assert_eq!(first.len(), 3, "ℓ connections asked for, no more");
    let dht = &net.node(SimId(0)).dht;
    assert_eq!(dht.links().len(), 3);
    // Spread over the id space: the first is from the farthest bucket.
    assert_eq!(dht.table().bucket_of(&first[0].id), Some(0));
    let closed = first[1].id;
    net.node_mut(SimId(0)).dht.link_closed(&closed);
    net.drive_for(Duration::from_secs(11));
    let now = connects(&net);
    assert_eq!(now.len(), 4, "one more asked for in its place");
    let dht = &net.node(SimId(0)).dht;
    assert_eq!(dht.links().len(), 3);
    assert!(!dht.links().contains(&closed));
    assert!(!first.iter().any(|c| c.id == now[3].id), "a new contact");
}
