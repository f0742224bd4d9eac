//! A channel one end closed while its CHANNEL_CLOSE was lost (or, in the endpoint fuzzer, a close
//! the other end never sent): the end that still holds it keeps retransmitting on an id the
//! closer retired, and those unacknowledged packets fill the congestion window its channels share
//! (PROTOCOL.md §7.3), so a fresh channel's messages from it never leave. The closer answers a
//! packet on a retired id with CHANNEL_CLOSE, and both ends recover (fuzz corpus
//! `endpoint/forged-close-then-reopened-id-drops-replies-as-replay`).

use super::sim::{Network, NodeId, addr};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event};
use weft::wire::{Capabilities, ChannelId, CloseReason, Packet};

fn reliable() -> Capabilities {
    Capabilities::RESEND.union(Capabilities::ORDERED)
}

/// Opens a reliable channel from `a` to `b`; returns a's handle, b's handle and the id.
fn open(
    net: &mut Network<Endpoint>,
    a: NodeId,
    b: NodeId,
) -> (ChannelHandle, ChannelHandle, ChannelId) {
    let (now, to, peer) = (net.now(), net.addr(b), net.node(b).local_peer_id());
    let mine = net
        .node_mut(a)
        .open_channel(now, to, Some(peer), None, reliable())
        .expect("open");
    net.drive_for(Duration::from_secs(1));
    let (theirs, id) = std::iter::from_fn(|| net.node_mut(b).poll_event())
        .find_map(|event| match event {
            Event::ChannelOpened {
                channel,
                id,
                initiator: false,
                ..
            } => Some((channel, id)),
            _ => None,
        })
        .expect("the responder saw the channel open");
    (mine, theirs, id)
}

fn received(net: &mut Network<Endpoint>, node: NodeId, on: ChannelHandle) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| net.node_mut(node).poll_event())
        .filter_map(|event| match event {
            Event::Message { channel, data, .. } if channel == on => Some(data.into_vec()),
            _ => None,
        })
        .collect()
}

/// `a` closes a channel while its datagrams to `b` are lost; with `rekey`, a new session
/// replaces the one that retired the id before `b`'s resends on the old channel get through (b→a
/// packets on it are held back until then). Then `b` sends on a fresh channel: it must arrive,
/// and `b` must have let go of the old one.
fn lost_close_then_fresh_channel(rekey: bool) {
    let mut net = Network::new(110);
    let a = net.add_endpoint(addr(1), EndpointConfig::default());
    let b = net.add_endpoint(addr(2), EndpointConfig::default());
    let (old_a, old_b, old_id) = open(&mut net, a, b);
    let cut = Rc::new(Cell::new(true));
    let hold_old = Rc::new(Cell::new(rekey));
    let (cut_hook, hold_hook) = (cut.clone(), hold_old.clone());
    net.on_deliver(move |from, to, bytes| {
        let on_old = Packet::parse(bytes).is_ok_and(|p| p.header.channel == old_id);
        let a_to_b = *from == addr(1) && *to == addr(2);
        !(cut_hook.get() && a_to_b || hold_hook.get() && !a_to_b && on_old)
    });
    // From here a's datagrams to b are lost: b's data is never acknowledged, and a's close of
    // the channel never arrives.
    let now = net.now();
    net.node_mut(b)
        .send(now, old_b, &vec![7; 64 << 10])
        .expect("send");
    net.drive_for(Duration::from_millis(200));
    let now = net.now();
    net.node_mut(a)
        .close_channel(now, old_a, CloseReason::Normal);
    net.drive_for(Duration::from_secs(1));
    cut.set(false);
    if rekey {
        let (now, pb) = (net.now(), net.node(b).local_peer_id());
        net.node_mut(a).rekey(now, pb).expect("rekey");
        net.drive_for(Duration::from_secs(1));
        // Past the retired session's grace: a PING under the new session lets it go.
        net.drive_for(Duration::from_secs(6));
        let (now, to) = (net.now(), net.addr(b));
        net.node_mut(a)
            .ping(now, to, Some(pb), [1; 8])
            .expect("ping");
        net.drive_for(Duration::from_secs(1));
        hold_old.set(false);
    }
    // b still holds the old channel and resends on it.
    let (new_a, new_b, _) = open(&mut net, a, b);
    let now = net.now();
    net.node_mut(b)
        .send(now, new_b, b"on the fresh channel")
        .expect("send");
    net.drive_for(Duration::from_secs(10));
    assert_eq!(
        received(&mut net, a, new_a),
        vec![b"on the fresh channel".to_vec()],
        "b's message on the fresh channel did not arrive"
    );
    assert_eq!(
        net.node(b).channel_count(),
        1,
        "b still holds the channel a closed"
    );
    // Under the session that retired the id its packets fail before the tag; under a later one
    // they authenticate on a channel a does not hold.
    let reason = if rekey {
        "unknown_channel"
    } else {
        "closed_channel"
    };
    let dropped = net
        .node(a)
        .stats()
        .get("weft_packets_dropped_total", Some(("reason", reason)));
    assert!(dropped > 0, "no packet on the old channel reached a");
}

#[test]
fn a_peer_that_missed_a_close_is_told_again_and_its_fresh_channel_is_not_starved() {
    lost_close_then_fresh_channel(false);
}

#[test]
fn a_peer_that_missed_a_close_before_a_rekey_is_told_again_and_its_fresh_channel_is_not_starved() {
    lost_close_then_fresh_channel(true);
}
