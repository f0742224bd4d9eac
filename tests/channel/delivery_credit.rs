//! The credit rule of PROTOCOL.md §12 at the endpoint: a reliable channel delivers only within
//! the room the driver reports for its workers ([`Endpoint::set_delivery_capacity`]), keeps the
//! rest within the credit it granted, and grants new credit only up to its share of the room.

use super::sim::{Network, addr};
use super::{events, plaintext};
use std::time::Duration;
use weft::channel::{ChannelHandle, Endpoint, Event};
use weft::wire::{Capabilities, PeerId};

fn tcp() -> Capabilities {
    Capabilities::from_bits(7).unwrap()
}

/// The messages delivered to `node`, by channel, taking them (as a worker queue would).
fn delivered(net: &mut Network<Endpoint>, node: super::sim::NodeId) -> Vec<(ChannelHandle, u8)> {
    events(net, node)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { channel, data, .. } => Some((channel, data[0])),
            _ => None,
        })
        .collect()
}

#[test]
fn a_reliable_channel_delivers_within_the_workers_room_and_its_credit_follows_it() {
    let mut net = Network::new(7);
    let a = net.add_endpoint(addr(1), plaintext());
    let b = net.add_endpoint(addr(2), plaintext());
    let (to, peer) = (net.addr(b), net.node(b).local_peer_id());
    let now = net.now();
    let sent = net
        .node_mut(a)
        .open_channel(now, to, Some(peer), None, tcp())
        .unwrap();
    net.drive_for(Duration::from_millis(200));
    let received = events(&mut net, b)
        .into_iter()
        .find_map(|e| match e {
            Event::ChannelOpened { channel, .. } => Some(channel),
            _ => None,
        })
        .expect("b saw the channel open");
    // b's workers take four messages now.
    let now = net.now();
    net.node_mut(b).set_delivery_capacity(now, Some(4));
    for i in 0..200u8 {
        let now = net.now();
        net.node_mut(a).send(now, sent, &[i; 10]).unwrap();
    }
    net.drive_for(Duration::from_secs(2));
    let got = delivered(&mut net, b);
    assert_eq!(got.len(), 4, "four messages fit the room");
    assert_eq!(net.node(b).delivery_capacity(), Some(0));
    // The rest wait within the credit granted before the room was known (§4's initial 64),
    // and no more credit was granted: the room has none.
    let (buffered, _) = net.node(b).receive_buffered(received).unwrap();
    assert_eq!(buffered, 60, "the initial credit's worth waits");
    assert_eq!(net.node(b).advertised_window(received).unwrap().0, 64);

    // Room for ten: ten more, then credit for a share of what is left (none).
    let now = net.now();
    net.node_mut(b).set_delivery_capacity(now, Some(10));
    let got = delivered(&mut net, b);
    let numbers: Vec<u8> = got.iter().map(|&(_, n)| n).collect();
    assert_eq!(
        numbers,
        (4..14).collect::<Vec<_>>(),
        "in order, ten of them"
    );
    net.drive_for(Duration::from_secs(1));
    assert!(delivered(&mut net, b).is_empty());

    // Plenty of room: the channel's credit grows by its share and everything arrives.
    let mut all = numbers;
    for _ in 0..50 {
        let now = net.now();
        net.node_mut(b).set_delivery_capacity(now, Some(1000));
        net.drive_for(Duration::from_millis(100));
        all.extend(delivered(&mut net, b).iter().map(|&(_, n)| n));
        if all.len() == 196 {
            break;
        }
    }
    assert_eq!(all, (4..200).collect::<Vec<_>>(), "every message, in order");
}

#[test]
fn channels_waiting_for_room_take_turns_when_it_comes() {
    let mut net = Network::new(8);
    let a = net.add_endpoint(addr(1), plaintext());
    let c = net.add_endpoint(addr(3), plaintext());
    let b = net.add_endpoint(addr(2), plaintext());
    let (to, peer) = (net.addr(b), net.node(b).local_peer_id());
    let now = net.now();
    net.node_mut(b).set_delivery_capacity(now, Some(0));
    let from_a = net
        .node_mut(a)
        .open_channel(now, to, Some(peer), None, tcp())
        .unwrap();
    let from_c = net
        .node_mut(c)
        .open_channel(now, to, Some(peer), None, tcp())
        .unwrap();
    net.drive_for(Duration::from_millis(200));
    let mut peers = Vec::new();
    for i in 0..20u8 {
        let now = net.now();
        net.node_mut(a).send(now, from_a, &[i]).unwrap();
        net.node_mut(c).send(now, from_c, &[100 + i]).unwrap();
    }
    net.drive_for(Duration::from_secs(1));
    assert!(
        delivered(&mut net, b).is_empty(),
        "no room, nothing delivered"
    );
    // Room for four: both senders' channels get two each, whoever came first.
    let now = net.now();
    net.node_mut(b).set_delivery_capacity(now, Some(4));
    for event in events(&mut net, b) {
        if let Event::Message { peer, data, .. } = event {
            peers.push((peer, data[0]));
        }
    }
    let (pa, pc): (PeerId, PeerId) = (net.node(a).local_peer_id(), net.node(c).local_peer_id());
    let from = |p: PeerId| peers.iter().filter(|(q, _)| *q == p).count();
    assert_eq!((from(pa), from(pc)), (2, 2), "{peers:?}");
}

#[test]
fn a_peer_cycling_channels_while_the_workers_are_stuck_cannot_grow_the_waiting_list() {
    let mut net = Network::new(9);
    let a = net.add_endpoint(addr(1), plaintext());
    let b = net.add_endpoint(addr(2), plaintext());
    let (to, peer) = (net.addr(b), net.node(b).local_peer_id());
    let now = net.now();
    net.node_mut(b).set_delivery_capacity(now, Some(0));
    let mut most = 0;
    for i in 0..100u8 {
        let now = net.now();
        let channel = net
            .node_mut(a)
            .open_channel(now, to, Some(peer), None, tcp())
            .unwrap();
        net.node_mut(a).send(now, channel, &[i]).unwrap();
        net.drive_for(Duration::from_millis(100));
        let now = net.now();
        net.node_mut(a)
            .close_channel(now, channel, weft::wire::CloseReason::Normal);
        net.drive_for(Duration::from_millis(100));
        events(&mut net, b);
        most = most.max(net.node(b).channels_waiting_for_room());
        assert!(
            net.node(b).channels_waiting_for_room() <= 16,
            "{} listed after {i} cycles",
            net.node(b).channels_waiting_for_room()
        );
    }
    assert!(
        most > 8,
        "each cycle's channel waited for room ({most} at most)"
    );
    assert!(
        delivered(&mut net, b).is_empty(),
        "no room, nothing delivered"
    );
}

#[test]
fn a_resume_visits_as_many_waiting_channels_as_there_is_room_first_come_first_served() {
    let mut net = Network::new(10);
    let a = net.add_endpoint(addr(1), plaintext());
    let b = net.add_endpoint(addr(2), plaintext());
    let (to, peer) = (net.addr(b), net.node(b).local_peer_id());
    let now = net.now();
    net.node_mut(b).set_delivery_capacity(now, Some(0));
    let channels: Vec<ChannelHandle> = (0..10)
        .map(|_| {
            net.node_mut(a)
                .open_channel(now, to, Some(peer), None, tcp())
                .unwrap()
        })
        .collect();
    net.drive_for(Duration::from_millis(200));
    for (i, &channel) in channels.iter().enumerate() {
        let now = net.now();
        net.node_mut(a).send(now, channel, &[i as u8; 2]).unwrap();
        // One at a time, so b meets them in this order.
        net.drive_for(Duration::from_millis(50));
    }
    events(&mut net, b);
    assert_eq!(net.node(b).channels_waiting_for_room(), 10);
    let mut seen = Vec::new();
    for round in 0..4 {
        let now = net.now();
        net.node_mut(b).set_delivery_capacity(now, Some(3));
        let mut got: Vec<u8> = delivered(&mut net, b).iter().map(|&(_, n)| n).collect();
        assert_eq!(got.len(), 3.min(10 - 3 * round), "round {round}: {got:?}");
        // Within a round the turns may go in any order; the rounds go first come first.
        got.sort_unstable();
        seen.extend(got);
    }
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u8>>(),
        "first come, first served"
    );
}
