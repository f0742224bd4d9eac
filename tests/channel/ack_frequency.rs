//! ACK frequency (PROTOCOL.md §7.1, issue 12): a receiver acknowledges after its configured
//! number of ack-eliciting packets, at once on a gap, and writes at most one ACK alone per
//! channel per receive batch (the datagrams handed to `handle` between two `poll_transmit`s).
//! Exact packets between two plaintext endpoints, so every ACK can be read.

use std::time::{Duration, Instant};
use weft::channel::reliability::ReliabilityConfig;
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig};
use weft::session::Identity;
use weft::wire::{Capabilities, Message, Packet};

const A: ([u8; 4], u16) = ([10, 0, 0, 1], 1000);
const B: ([u8; 4], u16) = ([10, 0, 0, 2], 2000);

struct Pair {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    channel: ChannelHandle,
}

fn config(threshold: u32) -> EndpointConfig {
    EndpointConfig {
        allow_plaintext: true,
        reliability: ReliabilityConfig {
            ack_eliciting_threshold: threshold,
            // No path MTU probes: every packet `a` sends is then one message.
            max_mtu: 1200,
            ..ReliabilityConfig::default()
        },
        ..EndpointConfig::default()
    }
}

fn drain(node: &mut Endpoint) -> Vec<Vec<u8>> {
    let mut buf = vec![0; 2048];
    std::iter::from_fn(|| node.poll_transmit(&mut buf).map(|t| buf[..t.len].to_vec())).collect()
}

impl Pair {
    /// `b` acknowledges after `threshold` ack-eliciting packets; a TCP-mode channel from `a` is
    /// open and every packet of its opening answered.
    fn new(threshold: u32) -> Pair {
        let now = Instant::now();
        let a = Endpoint::new(
            config(2),
            Identity::from_secret_bytes([1; 32], [2; 32]),
            [3; 32],
            now,
        );
        let mut a = a;
        let b = Endpoint::new(
            config(threshold),
            Identity::from_secret_bytes([4; 32], [5; 32]),
            [6; 32],
            now,
        );
        let tcp = Capabilities::RESEND.union(Capabilities::ORDERED);
        let channel = a
            .open_channel(now, B.into(), Some(b.local_peer_id()), None, tcp)
            .expect("open");
        let mut pair = Pair { channel, a, b, now };
        // Datagram by datagram until both sides are quiet and every delayed ACK has left.
        for _ in 0..20 {
            pair.exchange();
            pair.now += Duration::from_millis(30);
            pair.a.handle_timeout(pair.now);
            pair.b.handle_timeout(pair.now);
        }
        pair.exchange();
        assert_eq!(pair.b.channel_count(), 1);
        pair
    }

    /// Delivers every datagram each side sends, one at a time, until neither sends.
    fn exchange(&mut self) {
        for _ in 0..100 {
            let from_a = drain(&mut self.a);
            let from_b = drain(&mut self.b);
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for mut datagram in from_a {
                self.b.handle(self.now, A.into(), &mut datagram);
            }
            for mut datagram in from_b {
                self.a.handle(self.now, B.into(), &mut datagram);
            }
        }
        panic!("the endpoints never went quiet");
    }

    /// `count` packets of data from `a`, one message each, as `a` sends them; small ones, so
    /// that the initial congestion window holds them all.
    fn data_packets(&mut self, count: usize) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        for i in 0..count {
            self.a
                .send(self.now, self.channel, &[i as u8; 400])
                .expect("send");
            packets.extend(drain(&mut self.a));
        }
        assert_eq!(packets.len(), count, "one packet per message");
        packets
    }

    fn acks_sent(&self, packet: &str) -> u64 {
        self.b
            .stats()
            .get("weft_acks_sent_total", Some(("packet", packet)))
    }
}

/// The packet number of a data packet (its sequence number: small numbers need no decoding).
fn number(packet: &[u8]) -> u64 {
    let sequence = Packet::parse(packet).expect("a packet").header.sequence;
    u64::from(sequence.expect("a sequenced packet"))
}

/// The ACK ranges of each packet that carries one, inclusive `(low, high)`, highest first.
fn ack_ranges(packets: &[Vec<u8>]) -> Vec<Vec<(u64, u64)>> {
    packets
        .iter()
        .filter_map(|bytes| {
            let packet = Packet::parse(bytes).expect("a packet");
            packet.messages().find_map(|m| match m {
                Message::Ack(ack) => Some(ack.iter().collect()),
                _ => None,
            })
        })
        .collect()
}

#[test]
fn one_ack_alone_answers_a_whole_receive_batch() {
    let mut pair = Pair::new(2);
    let before = (pair.acks_sent("alone"), pair.acks_sent("piggybacked"));
    let packets = pair.data_packets(8);
    let first = number(&packets[0]);
    for mut datagram in packets {
        pair.b.handle(pair.now, A.into(), &mut datagram);
    }
    let answers = drain(&mut pair.b);
    assert_eq!(answers.len(), 1, "one packet for a batch of 8");
    let ranges = ack_ranges(&answers);
    assert_eq!(ranges.len(), 1, "and it is an ACK");
    let (low, high) = ranges[0][0];
    assert!(
        low <= first && high == first + 7,
        "of every packet: {ranges:?}"
    );
    assert_eq!(pair.acks_sent("alone"), before.0 + 1);
    assert_eq!(pair.acks_sent("piggybacked"), before.1);
    // The timer armed for the held ACK finds nothing left to send.
    pair.b.handle_timeout(pair.now);
    assert!(drain(&mut pair.b).is_empty());
}

#[test]
fn a_held_ack_also_leaves_with_the_next_timer_run() {
    // A driver that runs due timers before it transmits (the engine's shard does) sends the
    // held ACK from `handle_timeout`: its deadline has passed.
    let mut pair = Pair::new(2);
    for mut datagram in pair.data_packets(4) {
        pair.b.handle(pair.now, A.into(), &mut datagram);
    }
    assert!(pair.b.poll_timeout().is_some_and(|t| t <= pair.now));
    pair.b.handle_timeout(pair.now);
    let answers = drain(&mut pair.b);
    assert_eq!(ack_ranges(&answers).len(), 1, "{} packets", answers.len());
}

#[test]
fn the_threshold_decides_when_each_datagram_is_its_own_batch() {
    for (threshold, expected) in [(1, 12), (2, 6), (4, 3), (12, 1)] {
        let mut pair = Pair::new(threshold);
        let before = pair.acks_sent("alone");
        let mut acks = 0;
        for mut datagram in pair.data_packets(12) {
            pair.b.handle(pair.now, A.into(), &mut datagram);
            acks += ack_ranges(&drain(&mut pair.b)).len();
        }
        assert_eq!(acks, expected, "threshold {threshold}");
        assert_eq!(pair.acks_sent("alone") - before, expected as u64);
        // Below the threshold the ACK waits for max_ack_delay (25 ms), no longer.
        pair.data_packets(1).iter_mut().for_each(|datagram| {
            pair.b.handle(pair.now, A.into(), datagram);
        });
        let waited = ack_ranges(&drain(&mut pair.b)).len();
        assert_eq!(waited, usize::from(threshold == 1), "threshold {threshold}");
        if threshold > 1 {
            pair.now += Duration::from_millis(24);
            pair.b.handle_timeout(pair.now);
            assert!(ack_ranges(&drain(&mut pair.b)).is_empty(), "before 25 ms");
            pair.now += Duration::from_millis(1);
            pair.b.handle_timeout(pair.now);
            assert_eq!(ack_ranges(&drain(&mut pair.b)).len(), 1, "at 25 ms");
        }
    }
}

#[test]
fn a_gap_is_acknowledged_at_once_and_a_batch_with_one_still_gets_one_ack() {
    // A threshold no datagram-at-a-time flow reaches: only the gap can make the ACK due.
    let mut pair = Pair::new(100);
    let mut packets = pair.data_packets(6);
    let first = number(&packets[0]);
    pair.b.handle(pair.now, A.into(), &mut packets[0]);
    assert!(
        ack_ranges(&drain(&mut pair.b)).is_empty(),
        "in order: delayed"
    );
    // Packet 1 is lost; 2 reveals the gap.
    pair.b.handle(pair.now, A.into(), &mut packets[2]);
    let ranges = ack_ranges(&drain(&mut pair.b));
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    assert_eq!(ranges[0][0], (first + 2, first + 2));
    assert_eq!(ranges[0][1].1, first, "{ranges:?}");
    // A batch holding the late packet and the next ones: one ACK, every range.
    for datagram in &mut packets[3..] {
        pair.b.handle(pair.now, A.into(), datagram);
    }
    pair.b.handle(pair.now, A.into(), &mut packets[1]);
    let answers = drain(&mut pair.b);
    assert_eq!(answers.len(), 1);
    let ranges = ack_ranges(&answers);
    let (low, high) = ranges[0][0];
    assert!(low <= first && high == first + 5, "{ranges:?}");
}
