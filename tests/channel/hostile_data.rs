//! Hostile peers on the receive side of the data path (PROTOCOL.md §4, §7.4, §7.5): message
//! numbers past any credit, fragment storms, and peers that hold reassembly memory. The
//! attackers are scripted by hand against a real endpoint (kind 0, so the test writes every
//! byte), with explicit `now`.

use super::flood::{allocations, live_bytes};
use super::{answers, plain, plaintext, write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event};
use weft::session::Identity;
use weft::wire::{Capabilities, ChannelId, CloseReason, Flags, Header, Message, Packet, PeerId};

const UDP: u8 = 0;
const TCP: u8 = 7;

fn node(config: EndpointConfig) -> (Endpoint, Instant) {
    let now = Instant::now();
    let identity = Identity::from_secret_bytes([5; 32], [6; 32]);
    (Endpoint::new(config, identity, [7; 32], now), now)
}

/// A scripted peer with its own id and address, and one channel it opened on `node`.
struct Attacker {
    id: PeerId,
    from: SocketAddr,
    channel: ChannelId,
    sequence: u32,
}

impl Attacker {
    /// Opens a channel of `mode` on `node` with CHANNEL_NEW and FINALIZE (§6).
    fn open(node: &mut Endpoint, now: Instant, n: u8, mode: u8) -> Attacker {
        let id = PeerId([0x40 + n; 16]);
        let from: SocketAddr = format!("10.{n}.0.1:4000").parse().unwrap();
        let local = node.local_peer_id();
        let new = Message::ChannelNew {
            c1: 9,
            cookie1: &[1; 16],
        };
        node.handle(now, from, &mut write(plain(id, local), &[new]));
        let ack = answers(node).pop().expect("ACKNOWLEDGE");
        let ack = Packet::parse(&ack).unwrap();
        let Some(Message::ChannelAcknowledge {
            channel, cookie2, ..
        }) = ack.messages().next()
        else {
            panic!("not an ACKNOWLEDGE");
        };
        let finalize = Message::ChannelFinalize {
            channel,
            cookie2,
            capabilities: Capabilities::from_bits(mode).unwrap(),
        };
        node.handle(now, from, &mut write(plain(id, local), &[finalize]));
        answers(node);
        Attacker {
            id,
            from,
            channel,
            sequence: 1000,
        }
    }

    /// Sends one packet on the channel.
    fn send(&mut self, node: &mut Endpoint, now: Instant, messages: &[Message<'_>]) {
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: self.id,
            recipient: node.local_peer_id(),
            channel: self.channel,
            sequence: Some(self.sequence),
        };
        self.sequence += 1;
        node.handle(now, self.from, &mut write(header, messages));
        answers(node);
    }

    /// One byte of message `number` (of `total` bytes) at `offset`.
    fn fragment(
        &mut self,
        node: &mut Endpoint,
        now: Instant,
        number: u64,
        total: u64,
        offset: u64,
    ) {
        let fragment = Message::DataFragment {
            message_number: number,
            total_length: total,
            offset,
            bytes: &[0x5a],
        };
        self.send(node, now, &[fragment]);
    }

    /// Whether `node` still answers this peer's PING on the default channel.
    fn pings(&self, node: &mut Endpoint, now: Instant) -> bool {
        let ping = Message::Ping { token: &[9; 8] };
        node.handle(
            now,
            self.from,
            &mut write(plain(self.id, node.local_peer_id()), &[ping]),
        );
        answers(node).iter().any(|datagram| {
            Packet::parse(datagram).is_ok_and(|p| {
                p.messages()
                    .any(|m| matches!(m, Message::Pong { token } if *token == [9; 8]))
            })
        })
    }
}

fn dropped(node: &Endpoint, reason: &str) -> u64 {
    node.stats()
        .get("weft_messages_dropped_total", Some(("reason", reason)))
}

/// The channel the node opened for an attacker (its responder side).
fn opened(node: &mut Endpoint) -> Vec<ChannelHandle> {
    std::iter::from_fn(|| node.poll_event())
        .filter_map(|e| match e {
            Event::ChannelOpened { channel, .. } => Some(channel),
            _ => None,
        })
        .collect()
}

#[test]
fn a_first_message_numbered_u64_max_is_dropped_and_counted_and_the_node_keeps_answering() {
    let (mut node, now) = node(plaintext());
    let mut attacker = Attacker::open(&mut node, now, 1, UDP);
    let data = Message::Data {
        message_number: u64::MAX,
        payload: b"past every credit",
    };
    attacker.send(&mut node, now, &[data]);
    let fragment = Message::DataFragment {
        message_number: u64::MAX - 1,
        total_length: 10,
        offset: 0,
        bytes: b"12345",
    };
    attacker.send(&mut node, now, &[fragment]);
    assert_eq!(dropped(&node, "past_credit"), 2);
    assert!(attacker.pings(&mut node, now), "the node still answers");
    // Numbers a credit does allow still arrive.
    let data = Message::Data {
        message_number: 3,
        payload: b"in credit",
    };
    attacker.send(&mut node, now, &[data]);
    let delivered = std::iter::from_fn(|| node.poll_event())
        .filter(|e| {
            matches!(
                e,
                Event::Message {
                    message_number: 3,
                    ..
                }
            )
        })
        .count();
    assert_eq!(delivered, 1);
}

#[test]
fn data_past_any_advertised_credit_closes_a_tcp_channel_with_a_protocol_error() {
    let (mut node, now) = node(plaintext());
    let mut attacker = Attacker::open(&mut node, now, 2, TCP);
    let channel = opened(&mut node)[0];
    let data = Message::Data {
        message_number: 0,
        payload: b"fine",
    };
    attacker.send(&mut node, now, &[data]);
    // §4: the initial credit is 64 messages, so number 64 was never allowed.
    let data = Message::Data {
        message_number: 64,
        payload: b"past credit",
    };
    let header = Header {
        flags: Flags::SEQUENCED,
        sender: attacker.id,
        recipient: node.local_peer_id(),
        channel: attacker.channel,
        sequence: Some(attacker.sequence),
    };
    node.handle(now, attacker.from, &mut write(header, &[data]));
    let closes: Vec<CloseReason> = answers(&mut node)
        .iter()
        .filter_map(|d| {
            Packet::parse(d).ok()?.messages().find_map(|m| match m {
                Message::ChannelClose { reason, .. } => Some(reason),
                _ => None,
            })
        })
        .collect();
    assert_eq!(closes, [CloseReason::Protocol], "the peer is told why");
    let closed = std::iter::from_fn(|| node.poll_event()).any(|e| {
        matches!(e, Event::ChannelClosed { channel: c, reason: CloseReason::Protocol, .. } if c == channel)
    });
    assert!(closed);
    assert_eq!(node.channel_count(), 0);
    assert_eq!(
        node.stats()
            .get("weft_channels_closed_total", Some(("reason", "protocol"))),
        1
    );
}

#[test]
fn a_descending_storm_of_one_byte_fragments_is_bounded_in_ranges_heap_and_work() {
    let (mut node, now) = node(plaintext());
    let mut attacker = Attacker::open(&mut node, now, 3, UDP);
    const TOTAL: u64 = 200_000;
    const FRAGMENTS: u64 = 6_000;
    const PER_PACKET: u64 = 100;
    let heap_before = live_bytes();
    let allocations_before = allocations();
    // Every other byte, from the top down: each fragment is a range of its own.
    let mut offset = 2 * FRAGMENTS;
    while offset > 0 {
        let offsets: Vec<u64> = (0..PER_PACKET)
            .map(|i| offset.saturating_sub(2 * (i + 1)))
            .collect();
        let messages: Vec<Message<'_>> = offsets
            .iter()
            .map(|&o| Message::DataFragment {
                message_number: 0,
                total_length: TOTAL,
                offset: o,
                bytes: &[1],
            })
            .collect();
        attacker.send(&mut node, now, &messages);
        offset = offset.saturating_sub(2 * PER_PACKET);
    }
    let heap = live_bytes() - heap_before;
    let allocated = allocations() - allocations_before;
    let ranges = EndpointConfig::default().reliability.max_reassembly_ranges as u64;
    println!("storm: heap {heap} bytes, {allocated} allocations");
    assert_eq!(
        dropped(&node, "fragment_ranges"),
        FRAGMENTS - ranges,
        "fragments past the node's range limit are dropped and counted"
    );
    // The buffer, 64 bytes a range and the message's entry: all charged to the budget.
    let charged = node.reassembly_used() as u64;
    assert!(
        charged >= TOTAL + ranges * 64 && charged <= TOTAL + ranges * 64 + 2048,
        "charged {charged}"
    );
    assert!(
        heap <= charged as i64 + 64 * 1024,
        "heap grew by {heap}, charged {charged}"
    );
    // Work: a refused fragment allocates nothing, so the storm's allocations follow the ranges
    // kept (and the packets answered), not the fragments sent.
    assert!(allocated < 2_000, "{allocated} allocations");
    assert!(attacker.pings(&mut node, now), "the node still answers");
}

/// One peer may fill the node's reassembly memory; fairness is about what happens next.
fn tight_budget() -> EndpointConfig {
    let mut config = plaintext();
    config.reassembly_node_bytes = 1 << 20;
    config.reassembly_peer_bytes = 1 << 20;
    // Enough credit for the messages below from the first packet on.
    config.reliability.initial_window = (64, 4 << 20);
    config
}

#[test]
fn a_peer_trickling_fragments_does_not_lock_a_second_peer_out_of_reassembly() {
    let (mut node, mut now) = node(tight_budget());
    let mut hog = Attacker::open(&mut node, now, 4, UDP);
    // The hog starts five 200 kB messages and never finishes them: the node budget is full.
    for number in 0..6 {
        hog.fragment(&mut node, now, number, 200_000, 0);
    }
    assert_eq!(
        dropped(&node, "reassembly_budget"),
        1,
        "the hog's sixth is refused"
    );
    let _ = opened(&mut node);
    // It trickles: a byte now and then keeps every message making progress.
    for step in 1..4u64 {
        now += Duration::from_secs(2);
        for number in 0..5 {
            hog.fragment(&mut node, now, number, 200_000, step);
        }
        node.handle_timeout(now);
    }
    let mut honest = Attacker::open(&mut node, now, 5, UDP);
    let channel = opened(&mut node)[0];
    let piece = [0x33u8; 1000];
    for offset in (0..100_000u64).step_by(1000) {
        let fragment = Message::DataFragment {
            message_number: 0,
            total_length: 100_000,
            offset,
            bytes: &piece,
        };
        honest.send(&mut node, now, &[fragment]);
    }
    let delivered = std::iter::from_fn(|| node.poll_event()).any(|e| {
        matches!(&e, Event::Message { channel: c, data, .. } if *c == channel && data.len() == 100_000)
    });
    assert!(delivered, "the newcomer's message was reassembled");
    assert!(
        node.stats().get("weft_reassembly_evictions_total", None) >= 1,
        "the hog was evicted to make room"
    );
    assert!(
        node.reassembly_used() <= 1 << 20,
        "the node stays within its budget"
    );
}

#[test]
fn a_message_trickled_past_the_reassembly_age_limit_is_dropped_and_its_memory_freed() {
    let (mut node, mut now) = node(tight_budget());
    let mut trickler = Attacker::open(&mut node, now, 6, UDP);
    trickler.fragment(&mut node, now, 0, 200_000, 0);
    assert!(node.reassembly_used() >= 200_000);
    let max_age = EndpointConfig::default().reliability.reassembly_max_age;
    let mut offset = 1;
    // A byte every 5 s: never idle for the 10 s reassembly timeout.
    while offset * 5 <= max_age.as_secs() + 10 {
        now += Duration::from_secs(5);
        trickler.fragment(&mut node, now, 0, 200_000, offset);
        if node.poll_timeout().is_some_and(|at| at <= now) {
            node.handle_timeout(now);
        }
        offset += 1;
    }
    assert_eq!(node.reassembly_used(), 0, "the stale message was dropped");
    assert!(node.stats().get("weft_reassembly_timeouts_total", None) >= 1);
}
