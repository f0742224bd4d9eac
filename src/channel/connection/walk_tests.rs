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
    assert_eq!(c.confirm(t0, lane, &mut shared), Sent::Queued);
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
    // The confirmation carries the credit this side granted.
    let queued = router.queued();
    assert!(queued.iter().any(|m| m.starts_with("Window")), "{queued:?}");
}

#[test]
fn a_ping_on_a_channel_queues_a_pong_on_it() {
    let t0 = Instant::now();
    let mut router = Router::new(t0);
    let (mut c, lane) = responder(t0);
    let from = c.address;
    let token = [5u8; 8];
    let mut datagram = plaintext(CHANNEL, 3, &[Message::Ping { token: &token }]);
    let handled = c.handle(t0, from, &mut datagram, &mut router.shared());
    let Handled::Walked { walked, .. } = handled else {
        panic!("not walked: {handled:?}");
    };
    assert_eq!(
        walked.sent,
        Sent::Nothing,
        "a plaintext PONG needs no rekey"
    );
    let pong = format!("{:?}", Message::Pong { token: &token });
    assert_eq!(router.queued(), [pong]);
    // It took the channel's next number: the data path never reuses it (PROTOCOL.md §3).
    let next = c
        .lanes
        .get(lane)
        .and_then(|ch| ch.data.as_ref())
        .map(|d| d.next_pn);
    assert_eq!(next, Some(42));
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
