//! The eight channel modes of PROTOCOL.md §7 end to end through the endpoint, in the
//! deterministic simulator across seeds (`WEFT_SEEDS=N` for more).

mod sim;

use sim::{LinkConfig, Network, NodeId, addr, for_each_seed};
use std::time::Duration;
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event};
use weft::wire::{Capabilities, CloseReason};

const TCP: u8 = 7;
const SCTP: u8 = 5;

fn events(net: &mut Network<Endpoint>, node: NodeId) -> Vec<Event> {
    std::iter::from_fn(|| net.node_mut(node).poll_event()).collect()
}

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss,
        duplicate: 0.02,
        reorder: 0.05,
        ..LinkConfig::default()
    }
}

/// Two endpoints and one open channel of `mode` from the first to the second.
fn pair(
    seed: u64,
    mode: u8,
    config: EndpointConfig,
) -> (Network<Endpoint>, NodeId, NodeId, ChannelHandle) {
    let mut net = Network::new(seed);
    let a = net.add_endpoint(addr(1), config.clone());
    let b = net.add_endpoint(addr(2), config);
    let peer = net.node(b).local_peer_id();
    let now = net.now();
    let channel = net
        .node_mut(a)
        .open_channel(
            now,
            addr(2),
            Some(peer),
            None,
            Capabilities::from_bits(mode).unwrap(),
        )
        .unwrap();
    net.drive_for(Duration::from_millis(500));
    let _ = events(&mut net, b);
    let _ = events(&mut net, a);
    (net, a, b, channel)
}

/// Sends `count` numbered messages and returns what arrived, in delivery order.
fn transfer(
    net: &mut Network<Endpoint>,
    a: NodeId,
    b: NodeId,
    channel: ChannelHandle,
    count: u32,
) -> (Vec<u32>, Vec<Event>) {
    for i in 0..count {
        let now = net.now();
        net.node_mut(a)
            .send(now, channel, &i.to_be_bytes())
            .unwrap();
        net.drive_for(Duration::from_millis(2));
    }
    net.drive_for(Duration::from_secs(20));
    let all = events(net, b);
    let got = all
        .iter()
        .filter_map(|e| match e {
            Event::Message { data, .. } => Some(u32::from_be_bytes(data[..4].try_into().unwrap())),
            _ => None,
        })
        .collect();
    (got, all)
}

#[test]
fn reliable_modes_deliver_everything_at_every_loss_rate() {
    for loss in [0.0, 0.01, 0.1, 0.3] {
        for mode in [1u8, 3, SCTP, TCP] {
            for_each_seed(|seed| {
                let (mut net, a, b, channel) = pair(seed, mode, EndpointConfig::default());
                net.set_default_link(lossy(loss));
                let (got, all) = transfer(&mut net, a, b, channel, 60);
                let closed = all.iter().any(|e| matches!(e, Event::ChannelClosed { .. }));
                assert!(!closed, "seed {seed} mode {mode} loss {loss}: closed");
                let mut sorted = got.clone();
                sorted.sort_unstable();
                if mode == TCP || mode == SCTP {
                    assert_eq!(
                        sorted,
                        (0..60).collect::<Vec<_>>(),
                        "seed {seed} mode {mode} loss {loss}"
                    );
                }
                if mode == TCP {
                    // PROTOCOL.md §7: TCP mode delivers the exact sequence.
                    assert_eq!(got, sorted, "seed {seed}: out of order");
                }
                sorted.dedup();
                assert_eq!(
                    sorted.len(),
                    got.len(),
                    "seed {seed} mode {mode}: a duplicate"
                );
            });
        }
    }
}

#[test]
fn ordered_unreliable_modes_deliver_in_order_and_skip_gaps() {
    for_each_seed(|seed| {
        let (mut net, a, b, channel) = pair(seed, 2, EndpointConfig::default());
        net.set_default_link(lossy(0.1));
        let (got, all) = transfer(&mut net, a, b, channel, 60);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "seed {seed}: {got:?}");
        let skipped: u64 = all
            .iter()
            .map(|e| match e {
                Event::Skipped { first, last, .. } => last - first + 1,
                _ => 0,
            })
            .sum();
        assert!(got.len() as u64 + skipped <= 60, "seed {seed}");
    });
}

#[test]
fn a_black_hole_closes_x_y_sctp_and_tcp_channels_with_loss() {
    for mode in [4u8, 6, SCTP, TCP] {
        for_each_seed(|seed| {
            let (mut net, a, _b, channel) = pair(seed, mode, EndpointConfig::default());
            net.set_default_link(LinkConfig::black_hole());
            for i in 0..20u32 {
                let now = net.now();
                let _ = net.node_mut(a).send(now, channel, &i.to_be_bytes());
                net.drive_for(Duration::from_millis(5));
            }
            net.drive_for(Duration::from_secs(30));
            let closed = events(&mut net, a).into_iter().any(|e| {
                matches!(e, Event::ChannelClosed { channel: c, reason: CloseReason::Loss | CloseReason::Idle, .. } if c == channel)
            });
            assert!(closed, "seed {seed} mode {mode}: still open");
        });
    }
}

#[test]
fn keep_alive_holds_an_idle_channel_open_and_without_it_the_reset_timeout_closes_it() {
    for keep_alive in [true, false] {
        let config = EndpointConfig {
            keep_alive,
            ..EndpointConfig::default()
        };
        let (mut net, a, _b, channel) = pair(3, TCP, config);
        net.drive_for(Duration::from_secs(300));
        let closed = events(&mut net, a)
            .into_iter()
            .any(|e| matches!(e, Event::ChannelClosed { channel: c, .. } if c == channel));
        assert_eq!(closed, !keep_alive, "keep_alive {keep_alive}");
    }
}

#[test]
fn a_two_mib_message_crosses_a_lossy_link_in_tcp_mode() {
    let (mut net, a, b, channel) = pair(5, TCP, EndpointConfig::default());
    net.set_default_link(lossy(0.1));
    let message: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    let now = net.now();
    net.node_mut(a).send(now, channel, &message).unwrap();
    net.drive_for(Duration::from_secs(60));
    let all = events(&mut net, b);
    assert!(all.iter().any(|e| matches!(e, Event::Progress { .. })));
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::Message { data, .. } if *data == message))
    );
}

#[test]
fn a_too_large_message_is_an_error() {
    let (mut net, a, _b, channel) = pair(1, TCP, EndpointConfig::default());
    let now = net.now();
    let big = vec![0u8; (2 << 20) + 1];
    assert!(net.node_mut(a).send(now, channel, &big).is_err());
}
