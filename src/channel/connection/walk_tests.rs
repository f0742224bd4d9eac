//! The connection taking whole datagrams with no router (issue 11 point 1): a sealed packet in
//! and a delivery out, a new channel from a CHANNEL_COOKIE, a PING answered, a close, an
//! address that does not match — each on the pieces a router lends ([`Shared`]), no
//! `Endpoint` anywhere.

use super::sealed::tests::{sealed_packets, with_session};
use super::transmit::tests::{CHANNEL, LOCAL, REMOTE, channel, connection, ctx, open, with};
use super::*;
use crate::channel::cookie::CookieSecrets;
use crate::channel::events::Event;
use crate::channel::outgoing::Outgoing;
use crate::channel::pool::BufferPool;
use crate::channel::reliability::{ReassemblyBudget, ReliabilityConfig};
use crate::handle::{Handle, Slab};
use crate::session::Role;
use crate::stats::{StatKind, Stats, catalog};
use crate::wire::{
    Capabilities, ChannelId, CloseReason, Flags, Header, Message, Packet, PacketWriter,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a router would lend, owned here.
struct Router {
    stats: Stats,
    events: VecDeque<Event>,
    pool: BufferPool,
    outgoing: Outgoing,
    room: DeliveryGate,
    budget: ReassemblyBudget,
    reliability: Arc<ReliabilityConfig>,
    slots: ReceiveSlots,
    handles: Slab<ChannelAt>,
    cookies: CookieSecrets,
    scratch: Vec<u8>,
}

impl Router {
    fn new(now: Instant) -> Router {
        let mut stats = Stats::new();
        let counter = |stats: &mut Stats, name| stats.register(name, None, StatKind::Counter);
        let by_mode = |stats: &mut Stats, name| {
            std::array::from_fn(|_| stats.register(name, None, StatKind::Counter))
        };
        let slots = ReceiveSlots {
            messages_received: counter(&mut stats, "weft_messages_received_total"),
            messages_sent: counter(&mut stats, "weft_messages_sent_total"),
            rtt: stats.register_histogram(&catalog::RTT),
            congestion_window: stats.register_histogram(&catalog::CONGESTION_WINDOW),
            tally: TallySlots {
                message_delivery: stats.register_histogram(&catalog::MESSAGE_DELIVERY),
                packets_retransmitted: by_mode(&mut stats, "weft_packets_retransmitted_total"),
                congestion_events: by_mode(&mut stats, "weft_congestion_events_total"),
                acks_sent: [(); 2].map(|_| counter(&mut stats, "weft_acks_sent_total")),
            },
        };
        let mut handles = Slab::new(16).expect("a small slab");
        // The test channels' handle entry (`channel()` names entry 0).
        handles
            .insert(ChannelAt {
                peer: Handle(0),
                lane: 0,
            })
            .expect("room");
        Router {
            stats,
            events: VecDeque::new(),
            pool: BufferPool::new(),
            outgoing: Outgoing::new(64),
            room: DeliveryGate::default(),
            budget: ReassemblyBudget::new(1 << 20, 1 << 20),
            reliability: Arc::new(ReliabilityConfig::default()),
            slots,
            handles,
            cookies: CookieSecrets::new([3; 32], now, Duration::from_secs(120)),
            scratch: Vec::new(),
        }
    }

    fn shared(&mut self) -> Shared<'_> {
        Shared {
            ctx: ctx(),
            stats: &mut self.stats,
            events: &mut self.events,
            pool: &mut self.pool,
            outgoing: &mut self.outgoing,
            room: &mut self.room,
            budget: &self.budget,
            reliability: &self.reliability,
            slots: &self.slots,
            handles: &self.handles,
            cookies: &self.cookies,
            node_id: LOCAL,
            scratch: &mut self.scratch,
            budget_key: 1,
        }
    }

    fn dropped(&self, reason: &'static str) -> u64 {
        self.stats
            .get("weft_packets_dropped_total", Some(("reason", reason)))
    }

    /// The messages of each packet the connection writes into the driver's buffer now
    /// ([`Connection::poll_transmit`]), one list per packet; `sealed` says whether each was.
    fn transmit(&mut self, c: &mut Connection, now: Instant) -> (Vec<Vec<String>>, Vec<bool>) {
        let mut visit = Vec::new();
        c.channels_to_visit(&mut visit);
        // A buffer that held other bytes: nothing in it is cleared first.
        let mut buf = [0xAAu8; 2048];
        let (mut packets, mut sealed) = (Vec::new(), Vec::new());
        for _ in 0..8 {
            let lent = (&mut self.stats, &self.slots.tally);
            let Some(written) = c.poll_transmit(now, &ctx(), &visit, &mut buf, lent) else {
                break;
            };
            sealed.push(written.sealed.is_some());
            let packet = Packet::parse(&buf[..written.len]).expect("a valid packet");
            if packet.header.is_encrypted() {
                packets.push(Vec::new());
                continue;
            }
            packets.push(packet.messages().map(|m| format!("{m:?}")).collect());
        }
        (packets, sealed)
    }

    /// The messages of every datagram the connection queued, by type name.
    fn queued(&mut self) -> Vec<String> {
        let mut buf = [0u8; 2048];
        let mut seen = Vec::new();
        while let Some((_, len)) = self.outgoing.pop(&mut buf) {
            let packet = Packet::parse(&buf[..len]).expect("a valid packet");
            seen.extend(packet.messages().map(|m| format!("{m:?}")));
        }
        seen
    }
}

/// A plaintext packet from the peer (REMOTE) to this node on `id`.
fn plaintext(id: ChannelId, sequence: u32, messages: &[Message<'_>]) -> Vec<u8> {
    let header = Header {
        flags: Flags::SEQUENCED,
        sender: REMOTE,
        recipient: LOCAL,
        channel: id,
        sequence: Some(sequence),
    };
    let mut buf = vec![0u8; 1452];
    let mut writer = PacketWriter::new(&mut buf, &header).expect("a header");
    for message in messages {
        writer.push(message).expect("room");
    }
    let len = writer.finish();
    buf.truncate(len);
    buf
}

/// A connection holding one open channel (CHANNEL) as responder, known by its id.
fn responder(now: Instant) -> (Connection, Lane) {
    let mut c = connection(now);
    let lane = with(&mut c, channel(now, open(), false));
    c.channels.insert(CHANNEL.0, lane);
    c.order.push(lane);
    (c, lane)
}

#[test]
fn a_sealed_packet_in_is_a_delivery_out() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let (mut b, lane) = responder(t0);
    with_session(&mut b, Role::Responder, t0);
    let from = b.address;
    let t1 = t0 + Duration::from_millis(20);
    for bytes in sealed_packets(t0) {
        let mut datagram = bytes.clone();
        let handled = b.handle(t1, from, &mut datagram, &mut router.shared());
        assert!(
            matches!(handled, Handled::Walked { lane: l, walked, .. }
                if l == lane && walked == Walked::default()),
            "{handled:?}"
        );
    }
    let delivered: Vec<_> = router
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Message {
                peer,
                message_number,
                data,
                ..
            } => Some((*peer, *message_number, data.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [(REMOTE, 0, b"hello".to_vec())]);
    assert_eq!(b.last_heard, t1);
    assert_eq!(router.stats.get_at(router.slots.messages_received), 1);
    // The channel waits for the next flush, where its ACK is written.
    assert_eq!(b.touched, [lane]);
}

#[test]
fn a_new_channel_is_established_from_its_channel_cookie_and_walked() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let mut c = connection(t0);
    let from = c.address;
    // This node (LOCAL) is below REMOTE, so c2 has bit 15 clear (PROTOCOL.md §6).
    let id = ChannelId::new(5, 0x0042);
    let capabilities = Capabilities::RESEND | Capabilities::ORDERED;
    let cookie2 = router.cookies.cookie2(REMOTE, LOCAL, id, from);
    let early = Message::Data {
        message_number: 0,
        payload: b"early",
    };
    let cookie = Message::ChannelCookie {
        cookie2: &cookie2,
        capabilities,
    };
    // A forged cookie is refused and counted, and allocates nothing.
    let forged_cookie = [0u8; 16];
    let forged = Message::ChannelCookie {
        cookie2: &forged_cookie,
        capabilities,
    };
    let mut datagram = plaintext(id, 9, &[forged, early]);
    let handled = c.handle(t0, from, &mut datagram, &mut router.shared());
    assert!(
        matches!(handled, Handled::Dropped { reset: false }),
        "{handled:?}"
    );
    assert_eq!(router.dropped("bad_cookie"), 1);
    assert_eq!(c.lanes.iter().count(), 0);
    // The genuine one verifies here; the router allocates, and the connection walks the rest.
    let mut datagram = plaintext(id, 9, &[cookie, early]);
    let handled = c.handle(t0, from, &mut datagram, &mut router.shared());
    let Handled::Establish {
        header,
        capabilities: asked,
        rest,
        ..
    } = handled
    else {
        panic!("not established: {handled:?}");
    };
    assert_eq!((header.channel, asked), (id, capabilities));
    let mut new = channel(t0, open(), false);
    (new.id, new.data) = (id, None);
    let lane = with(&mut c, new);
    c.channels.insert(id.0, lane);
    let mut shared = router.shared();
    assert_eq!(c.confirm(t0, lane, &mut shared), Sent::Owed);
    let walked = c.walk(t0, (from, &header), lane, rest, true, &mut shared);
    assert_eq!(walked, Walked::default());
    assert!(c.has_data(lane));
    let data: Vec<_> = router
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(data, [b"early".to_vec()]);
    // The confirmation is owed, not queued: it heads the channel's next packet, written in
    // the driver's buffer, with the credit this side granted then.
    assert!(router.queued().is_empty());
    let (packets, _) = router.transmit(&mut c, t0);
    let first = packets.first().expect("a packet");
    assert!(first[0].starts_with("Window"), "{packets:?}");
}

#[test]
fn a_ping_on_a_busy_channel_is_answered_inside_its_next_data_packet() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let (mut c, lane) = responder(t0);
    let from = c.address;
    // The channel has a message to send: the PONG rides in the packet that carries it.
    super::transmit::tests::queue(&mut c, lane, t0, &mut router.pool, b"busy");
    let token = [5u8; 8];
    let mut datagram = plaintext(CHANNEL, 3, &[Message::Ping { token: &token }]);
    let handled = c.handle(t0, from, &mut datagram, &mut router.shared());
    let Handled::Walked { walked, .. } = handled else {
        panic!("not walked: {handled:?}");
    };
    assert_eq!(
        walked.sent,
        Sent::Owed,
        "the router lists the peer for a flush"
    );
    // Nothing waits in the control queue, and no number is taken until the packet is written.
    assert_eq!(router.outgoing.len(), 0);
    let next = |c: &Connection| {
        c.lanes
            .get(lane)
            .and_then(|ch| ch.data.as_ref())
            .map(|d| d.next_pn)
    };
    assert_eq!(next(&c), Some(41));
    assert_eq!(c.touched, [lane]);
    let (packets, _) = router.transmit(&mut c, t0);
    let pong = format!("{:?}", Message::Pong { token: &token });
    let first = packets.first().expect("a packet");
    assert_eq!(first[0], pong, "{packets:?}");
    assert!(first.iter().any(|m| m.starts_with("Data")), "{packets:?}");
    assert!(packets.iter().flatten().filter(|m| **m == pong).count() == 1);
    // The packet took the channel's next number when it was written (PROTOCOL.md §3).
    assert_eq!(next(&c), Some(41 + packets.len() as u64));
    assert_eq!(router.outgoing.len(), 0);
}

#[test]
fn an_idle_channels_pong_is_a_packet_of_its_own_sealed_in_the_drivers_buffer() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let (mut c, lane) = responder(t0);
    let owed = c.owe(t0, lane, &mut router.shared(), |owed| {
        assert!(owed.owe_pong([8; 8]));
    });
    assert_eq!(owed, Sent::Owed);
    let (packets, sealed) = router.transmit(&mut c, t0);
    let pong = format!("{:?}", Message::Pong { token: &[8; 8] });
    // One packet, headed by the PONG (the data path may add its first WINDOW), no DATA.
    assert_eq!((packets.len(), sealed), (1, vec![false]));
    assert_eq!(packets[0][0], pong);
    assert!(!packets[0].iter().any(|m| m.starts_with("Data")));
    // Under a session the same answer is sealed in place, under the number taken then.
    with_session(&mut c, Role::Responder, t0);
    let owed = c.owe(t0, lane, &mut router.shared(), |owed| {
        assert!(owed.owe_pong([9; 8]));
    });
    assert_eq!(owed, Sent::Owed);
    let (packets, sealed) = router.transmit(&mut c, t0);
    assert_eq!((packets.len(), sealed), (1, vec![true]));
    assert_eq!(router.outgoing.len(), 0);
}

#[test]
fn a_flood_of_pings_owes_at_most_the_bound_and_the_rest_is_counted() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let (mut c, lane) = responder(t0);
    let from = c.address;
    let tokens: Vec<[u8; 8]> = (1..=60u64).map(u64::to_be_bytes).collect();
    let pings: Vec<Message<'_>> = tokens.iter().map(|token| Message::Ping { token }).collect();
    let owed = |c: &Connection| {
        c.lanes
            .get(lane)
            .and_then(|ch| ch.data.as_ref())
            .map_or(0, |d| d.owed_pongs.count())
    };
    for round in 0..3u32 {
        for n in 0..10u32 {
            let mut datagram = plaintext(CHANNEL, 3 + 100 * round + n, &pings);
            c.handle(t0, from, &mut datagram, &mut router.shared());
            assert_eq!(owed(&c), crate::channel::owed::OWED_PONGS);
        }
        let refused = (u64::from(round) + 1) * (600 - crate::channel::owed::OWED_PONGS as u64);
        assert_eq!(router.dropped("answer_limit"), refused);
        // One packet answers what is owed, and the channel owes nothing after it.
        let (packets, _) = router.transmit(&mut c, t0);
        let pongs = packets.iter().flatten().filter(|m| m.starts_with("Pong"));
        assert_eq!(pongs.count(), crate::channel::owed::OWED_PONGS);
        assert_eq!(owed(&c), 0);
        assert_eq!(router.outgoing.len(), 0);
    }
}

#[test]
fn a_close_from_the_peer_takes_the_channel_away() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let (mut c, lane) = responder(t0);
    let from = c.address;
    let close = Message::ChannelClose {
        channel: CHANNEL,
        reason: CloseReason::Normal,
    };
    let ping = Message::Ping { token: &[6; 8] };
    let mut datagram = plaintext(CHANNEL, 3, &[close, ping]);
    let handled = c.handle(t0, from, &mut datagram, &mut router.shared());
    let Handled::Walked { walked, .. } = handled else {
        panic!("not walked: {handled:?}");
    };
    let by_peer = Closing {
        reason: CloseReason::Normal,
        by_peer: true,
    };
    assert_eq!(walked.close, Some(by_peer));
    // The walk stopped at the close: the PING behind it gets nothing.
    assert!(router.queued().is_empty());
    let removed = c.close_lane(t0, lane, (CloseReason::Normal, false), &mut router.shared());
    assert!(matches!(
        removed,
        Some(close::Removed {
            opened: true,
            sent: Sent::Nothing,
            ..
        })
    ));
    assert!(c.lanes.get(lane).is_none());
    assert!(c.channels.is_empty() && c.order.is_empty());
    // The next packet on it finds no channel, and no cookie to open one.
    let mut datagram = plaintext(CHANNEL, 4, &[ping]);
    let handled = c.handle(t0, from, &mut datagram, &mut router.shared());
    assert!(
        matches!(handled, Handled::Dropped { reset: false }),
        "{handled:?}"
    );
    assert_eq!(router.dropped("unknown_channel"), 1);
}

#[test]
fn a_packet_from_another_address_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let (mut c, lane) = responder(t0);
    let elsewhere: SocketAddr = "10.9.9.9:4000".parse().expect("address");
    let mut datagram = plaintext(CHANNEL, 3, &[Message::Ping { token: &[7; 8] }]);
    let t1 = t0 + Duration::from_secs(1);
    let handled = c.handle(t1, elsewhere, &mut datagram, &mut router.shared());
    assert!(
        matches!(handled, Handled::Dropped { reset: false }),
        "{handled:?}"
    );
    assert_eq!(router.dropped("address_mismatch"), 1);
    assert!(router.queued().is_empty());
    // Nothing of the connection moved: not its silence, not the channel's numbers.
    assert_eq!(c.last_heard, t0);
    let next = c
        .lanes
        .get(lane)
        .and_then(|ch| ch.data.as_ref())
        .map(|d| d.next_pn);
    assert_eq!(next, Some(41));
}
