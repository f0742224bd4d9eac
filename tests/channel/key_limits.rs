//! Key limits as WireGuard's REKEY_AFTER_MESSAGES and REJECT_AFTER_MESSAGES (PROTOCOL.md §5,
//! issue 10): a session is replaced after a configured number of packets; when every rekey is
//! lost, a channel stops sending at the hard limit rather than reuse a nonce, a receiver opens
//! nothing past it, and traffic resumes once a rekey gets through.

use super::sim::{Network, NodeId, addr};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event};
use weft::session::{PeerRecord, RekeyPolicy};
use weft::wire::{Capabilities, Flags, Packet};

fn limits(after_packets: u64, reject_after_packets: u64) -> EndpointConfig {
    EndpointConfig {
        rekey: RekeyPolicy {
            after_packets,
            reject_after_packets,
            ..RekeyPolicy::default()
        },
        ..EndpointConfig::default()
    }
}

struct Link {
    net: Network<Endpoint>,
    a: NodeId,
    b: NodeId,
    channel: ChannelHandle,
    /// (KEY_PHASE, channel, sequence) of every sealed packet `a` sent `b` on the channel.
    sealed: Rc<RefCell<Vec<(bool, u32, u32)>>>,
    /// While set, every plaintext datagram between the two (every handshake) is lost.
    drop_handshakes: Rc<RefCell<bool>>,
}

fn link(a_config: EndpointConfig, b_config: EndpointConfig) -> Link {
    let mut net = Network::new(50);
    let a = net.add_endpoint(addr(1), a_config);
    let b = net.add_endpoint(addr(2), b_config);
    let record = PeerRecord::sign(net.node(b).identity(), &[addr(2)]);
    net.node_mut(a).add_peer_record(record).unwrap();
    let (now, peer) = (net.now(), net.node(b).local_peer_id());
    let channel = net
        .node_mut(a)
        .open_channel(
            now,
            addr(2),
            Some(peer),
            None,
            Capabilities::from_bits(0).unwrap(),
        )
        .unwrap();
    net.drive_for(Duration::from_secs(1));
    let sealed = Rc::new(RefCell::new(Vec::new()));
    let drop_handshakes = Rc::new(RefCell::new(true));
    let (sink, dropping) = (sealed.clone(), drop_handshakes.clone());
    net.on_deliver(move |from, _, bytes| {
        let Ok(packet) = Packet::parse(bytes) else {
            return true;
        };
        let header = packet.header;
        if !header.flags.contains(Flags::ENCRYPTED) {
            return !*dropping.borrow();
        }
        if *from == addr(1) && !header.channel.is_default() {
            let phase = header.flags.contains(Flags::KEY_PHASE);
            sink.borrow_mut()
                .push((phase, header.channel.0, header.sequence.unwrap_or(0)));
        }
        true
    });
    Link {
        net,
        a,
        b,
        channel,
        sealed,
        drop_handshakes,
    }
}

impl Link {
    /// Sends `count` messages from `a`, one per 10 ms; returns how many `b` received.
    fn send(&mut self, count: usize) -> usize {
        let mut received = 0;
        for i in 0..count {
            let now = self.net.now();
            let _ = self
                .net
                .node_mut(self.a)
                .send(now, self.channel, &[i as u8; 50]);
            self.net.drive_for(Duration::from_millis(10));
            received += std::iter::from_fn(|| self.net.node_mut(self.b).poll_event())
                .filter(|event| matches!(event, Event::Message { .. }))
                .count();
        }
        received
    }

    fn stat(&self, node: NodeId, name: &str, label: Option<(&str, &str)>) -> u64 {
        self.net.node(node).stats().get(name, label)
    }
}

#[test]
fn with_every_rekey_lost_a_channel_stops_at_the_hard_limit_and_never_reuses_a_nonce() {
    let mut link = link(limits(20, 50), limits(1000, 1000));
    let received = link.send(200);
    let (a, b) = (link.a, link.b);
    // Rekeys were attempted past the threshold, and every one was lost.
    assert!(
        link.stat(a, "weft_dh_operations_total", None) > 4,
        "no rekey was tried"
    );
    assert_eq!(link.stat(a, "weft_rekeys_total", None), 0);
    let sealed = link.sealed.borrow().clone();
    // One session, so one key: at most the hard limit of packets, no number twice.
    assert!(
        sealed.len() <= 50,
        "{} packets sealed under one key",
        sealed.len()
    );
    let distinct: HashSet<_> = sealed.iter().collect();
    assert_eq!(distinct.len(), sealed.len(), "a nonce was reused");
    assert!(
        (40..=50).contains(&received),
        "{received} messages received"
    );
    // Handshakes get through again: the session is replaced and the channel carries on.
    *link.drop_handshakes.borrow_mut() = false;
    // (The last lost attempt gives up first.)
    link.net.drive_for(Duration::from_secs(5));
    let now = link.net.now();
    let peer = link.net.node(b).local_peer_id();
    link.net.node_mut(a).rekey(now, peer).unwrap();
    link.net.drive_for(Duration::from_secs(1));
    assert!(link.stat(a, "weft_rekeys_total", None) >= 1);
    assert!(link.send(10) >= 5, "traffic resumed under the new session");
}

#[test]
fn a_receiver_opens_nothing_past_the_hard_limit() {
    let mut link = link(limits(1000, 1000), limits(1000, 30));
    let received = link.send(100);
    assert!(
        received <= 30,
        "{received} messages opened under one session"
    );
    assert!(
        link.stat(
            link.b,
            "weft_packets_dropped_total",
            Some(("reason", "key_exhausted"))
        ) > 0
    );
}
