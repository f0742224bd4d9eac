//! What the endpoint counts for the metrics layer: RTT, congestion window, handshake duration and
//! message delivery latency as histograms over paths (src/stats/catalog.rs), loss and
//! retransmissions by channel mode.

use super::sim::{Network, addr};
use super::{echo_config, events, lossy};
use std::time::Duration;
use weft::channel::{EndpointConfig, Event};
use weft::stats::Stats;
use weft::stats::catalog::{self, Histogram};
use weft::wire::Capabilities;

/// Observations in a histogram's buckets, after checking every bucket is registered.
fn observed(stats: &Stats, histogram: &Histogram) -> u64 {
    histogram
        .bounds
        .iter()
        .map(|&(_, le)| {
            let slot = stats
                .iter()
                .find(|e| e.name == histogram.bucket && e.label == Some(("le", le)));
            slot.unwrap_or_else(|| panic!("{} le={le} not registered", histogram.bucket))
                .value
        })
        .sum()
}

#[test]
fn rtt_window_handshake_and_loss_are_counted_for_export() {
    let mut net = Network::new(7);
    let config = EndpointConfig::default();
    let client = net.add_endpoint(addr(1), config);
    let server = net.add_endpoint(
        addr(2),
        EndpointConfig {
            allow_plaintext: false,
            ..echo_config()
        },
    );
    net.set_default_link(lossy(0.1));
    let (to, peer, now) = (
        net.addr(server),
        net.node(server).local_peer_id(),
        net.now(),
    );
    // RESEND | ORDERED: TCP-like, so lost packets are declared lost and resent.
    let tcp = Capabilities::from_bits(3).unwrap();
    let channel = net
        .node_mut(client)
        .open_channel(now, to, Some(peer), None, tcp)
        .unwrap();
    net.drive_for(Duration::from_secs(2));
    for round in 0..10 {
        let now = net.now();
        for _ in 0..20 {
            let _ = net.node_mut(client).send(now, channel, &[round; 600]);
        }
        net.drive_for(Duration::from_millis(500));
    }
    net.drive_for(Duration::from_secs(5));
    let received = events(&mut net, client)
        .into_iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert!(received > 0, "nothing echoed");

    let stats = net.node(client).stats();
    let samples = observed(stats, &catalog::RTT);
    assert!(samples > 0, "no RTT sample");
    // The sum is in microseconds: a 40 ms round trip (two 20 ms links) is tens of thousands.
    let sum = stats.get(catalog::RTT.sum, None);
    assert!(sum / samples >= 20_000, "mean RTT {} µs", sum / samples);
    // The window beside every RTT sample, and never an empty one.
    assert_eq!(observed(stats, &catalog::CONGESTION_WINDOW), samples);
    assert!(stats.get(catalog::CONGESTION_WINDOW.sum, None) > 0);
    // Messages acknowledged, each at least a round trip after it was first sent.
    let delivered = observed(stats, &catalog::MESSAGE_DELIVERY);
    assert!(delivered > 0, "no delivery latency");
    assert!(stats.get(catalog::MESSAGE_DELIVERY.sum, None) / delivered >= 40_000);
    // One handshake initiated, one duration of at least a round trip.
    assert_eq!(observed(stats, &catalog::HANDSHAKE_DURATION), 1);
    assert!(stats.get(catalog::HANDSHAKE_DURATION.sum, None) >= 40_000);
    // Loss by mode, never unlabelled.
    let lost: u64 = stats
        .iter()
        .filter(|e| e.name == "weft_packets_lost_total")
        .map(|e| {
            let (key, mode) = e.label.expect("loss without a mode label");
            assert_eq!(key, "mode");
            assert!(catalog::MODES.contains(&mode), "{mode}");
            e.value
        })
        .sum();
    assert!(lost > 0, "10% loss and nothing declared lost");
    let by_mode = |name: &str| -> u64 {
        catalog::MODES
            .iter()
            .map(|&mode| stats.get(name, Some(("mode", mode))))
            .sum()
    };
    assert!(by_mode("weft_packets_retransmitted_total") > 0);
    assert!(by_mode("weft_retransmitted_bytes_total") > 0);
    assert!(by_mode("weft_congestion_events_total") > 0);
    assert_eq!(stats.get("weft_congestion_events_total", None), 0);
}
