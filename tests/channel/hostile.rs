//! Hostile peers against the channel tables and the stateless answers (issue 10, findings 4, 5
//! and 7): made-up channel ids, open/close churn, PING datagrams that ask for thousands of
//! answers, oversize datagrams, and a heavy peer that filled the node's channel table. Each
//! test measures the server's own heap (the counting allocator, around its calls only) or its
//! counters, never time.

use super::flood::live_bytes;
use crate::sim::{Network, addr};
use rand::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::{ChannelHandle, Endpoint, EndpointConfig, Event, OpenError};
use weft::session::handshake::MAX_HANDSHAKE_LEN;
use weft::session::{
    ChannelCrypto, HandshakeIdentity, Identity, Initiator, Mac1Key, PeerRecord, Tai64N,
};
use weft::wire::{
    Capabilities, ChannelId, CloseReason, Flags, Header, Message, Packet, PacketWriter, PeerId,
};

fn udp_mode() -> Capabilities {
    Capabilities::from_bits(0).unwrap()
}

fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes([n; 32], [n.wrapping_add(100); 32])
}

fn dropped(endpoint: &Endpoint, reason: &str) -> u64 {
    endpoint
        .stats()
        .get("weft_packets_dropped_total", Some(("reason", reason)))
}

/// Every datagram the endpoint has queued.
fn drain(endpoint: &mut Endpoint) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    std::iter::from_fn(|| {
        endpoint
            .poll_transmit(&mut buf)
            .map(|t| buf[..t.len].to_vec())
    })
    .collect()
}

/// An authenticated peer that holds its session's secrets, so it can seal whatever it likes:
/// what an attacker who completed a handshake can do.
struct Attacker {
    id: PeerId,
    server: PeerId,
    send_secret: [u8; 32],
    receive_secret: [u8; 32],
}

impl Attacker {
    /// Completes an IK handshake with `server` by hand.
    fn connect(
        server: &mut Endpoint,
        server_addr: SocketAddr,
        from: SocketAddr,
        now: Instant,
    ) -> Self {
        let me = identity(66);
        let record = PeerRecord::sign(server.identity(), &[server_addr]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut init = Initiator::known_responder(
            &HandshakeIdentity::new(&me),
            &record,
            Tai64N::from_unix(Duration::from_secs(2_000_000_000)),
            &mut rng,
        )
        .unwrap();
        let header = Header {
            flags: Flags::default(),
            sender: me.peer_id(),
            recipient: record.peer_id(),
            channel: ChannelId::DEFAULT,
            sequence: None,
        };
        let mut packet = vec![0u8; 1200];
        let mut writer = PacketWriter::new(&mut packet, &header).unwrap();
        writer
            .push(&Message::HandshakeInit {
                kind: 1,
                sender_index: 0x0102_0304,
                handshake: init.init(),
                mac1: &[0; 16],
                cookie: None,
            })
            .unwrap();
        let len = writer.try_finish().unwrap();
        packet.truncate(len);
        let at = len - 1 - 16;
        let mac = Mac1Key::new(&record.x25519).compute(&packet[..at]);
        packet[at..at + 16].copy_from_slice(&mac);
        server.handle(now, from, &mut packet.to_vec());
        let answers = drain(server);
        let response = answers
            .iter()
            .find_map(|datagram| {
                let packet = Packet::parse(datagram).ok()?;
                match packet.messages().next()? {
                    Message::HandshakeResponse { handshake, .. } => Some(handshake.to_vec()),
                    _ => None,
                }
            })
            .expect("the server answers the INIT");
        let mut final_out = [0u8; MAX_HANDSHAKE_LEN];
        let done = init
            .read_response(record.peer_id(), &response, &mut final_out)
            .unwrap();
        Attacker {
            id: me.peer_id(),
            server: record.peer_id(),
            send_secret: *done.established.send_secret(),
            receive_secret: *done.established.receive_secret(),
        }
    }

    /// The first packet on `channel` (sequence number 0) with `messages`, sealed under the
    /// session (PROTOCOL.md §5).
    fn sealed(&self, channel: ChannelId, messages: &[Message<'_>]) -> Vec<u8> {
        let header = Header {
            flags: Flags::ENCRYPTED | Flags::SEQUENCED,
            sender: self.id,
            recipient: self.server,
            channel,
            sequence: Some(0),
        };
        let mut packet = vec![0u8; 1500];
        let header_len = header.emit(&mut packet).unwrap();
        let mut end = header_len;
        for message in messages {
            end += message.emit(&mut packet[end..]).unwrap();
        }
        let mut crypto = ChannelCrypto::new(&self.send_secret, &self.receive_secret, channel);
        let mut tag = [0u8; 16];
        let (head, payload) = packet.split_at_mut(header_len);
        let sequence = crypto.seal(head, &mut payload[..end - header_len], &mut tag);
        assert_eq!(sequence, 0);
        packet[end..end + 16].copy_from_slice(&tag);
        packet.truncate(end + 16);
        packet
    }
}

#[test]
fn sealed_pings_on_twenty_thousand_made_up_channel_ids_leave_the_heap_where_it_was() {
    let now = Instant::now();
    let server_addr = SocketAddr::from(([10, 0, 0, 1], 1000));
    let from = SocketAddr::from(([10, 0, 0, 2], 2000));
    let mut server = Endpoint::new(EndpointConfig::default(), identity(1), [1; 32], now);
    let attacker = Attacker::connect(&mut server, server_addr, from, now);
    // The session is in use: a sealed PING on the default channel is answered.
    let ping = attacker.sealed(ChannelId::DEFAULT, &[Message::Ping { token: &[1; 8] }]);
    server.handle(now, from, &mut ping.to_vec());
    assert_eq!(drain(&mut server).len(), 1, "the PONG");
    let before = live_bytes();
    for n in 0..20_000u32 {
        let id = ChannelId::new(1 + (n >> 8) as u16, 1 + (n & 0xff) as u16);
        let packet = attacker.sealed(id, &[Message::Ping { token: &[2; 8] }]);
        server.handle(now, from, &mut packet.to_vec());
        while server.poll_event().is_some() {}
        assert!(drain(&mut server).is_empty(), "no channel, no answer");
    }
    let grown = live_bytes() - before;
    // The packets themselves were built in this loop too, and freed; what stays is the
    // server's. Main kept a key-cache entry per made-up id (6.8 MB for 20,000).
    assert!(
        grown < 16 * 1024,
        "the server's heap grew by {grown} bytes for packets on channels that do not exist"
    );
    assert_eq!(dropped(&server, "unknown_channel"), 20_000);
}

#[test]
fn a_sealed_packet_is_opened_inside_the_buffer_it_arrived_in() {
    let now = Instant::now();
    let server_addr = SocketAddr::from(([10, 0, 0, 1], 1000));
    let from = SocketAddr::from(([10, 0, 0, 2], 2000));
    let mut server = Endpoint::new(EndpointConfig::default(), identity(1), [1; 32], now);
    let attacker = Attacker::connect(&mut server, server_addr, from, now);
    let ping = Message::Ping { token: &[6; 8] };
    let sealed = attacker.sealed(ChannelId::DEFAULT, &[ping]);
    let mut buffer = sealed.clone();
    server.handle(now, from, &mut buffer);
    assert_eq!(drain(&mut server).len(), 1, "the PONG");
    // The payload was decrypted where it lay (STYLE.md 17): the PING is there in plaintext.
    let header_len = Packet::parse(&sealed).unwrap().header_bytes().len();
    let mut plain = [0u8; 9];
    let len = ping.emit(&mut plain).unwrap();
    assert_eq!(&buffer[header_len..header_len + len], &plain[..len]);
    // Handed in again, the ciphertext and the opened bytes alike are replays of number 0:
    // neither is answered.
    server.handle(now, from, &mut sealed.clone());
    server.handle(now, from, &mut buffer);
    assert!(drain(&mut server).is_empty());
    assert_eq!(dropped(&server, "replay"), 2);
}

#[test]
fn a_sealed_datagram_of_pings_gets_exactly_one_sealed_answer_datagram() {
    let now = Instant::now();
    let server_addr = SocketAddr::from(([10, 0, 0, 1], 1000));
    let from = SocketAddr::from(([10, 0, 0, 2], 2000));
    let mut server = Endpoint::new(EndpointConfig::default(), identity(1), [1; 32], now);
    let attacker = Attacker::connect(&mut server, server_addr, from, now);
    let tokens: Vec<[u8; 8]> = (0..100u64).map(u64::to_be_bytes).collect();
    let pings: Vec<Message<'_>> = tokens.iter().map(|token| Message::Ping { token }).collect();
    server.handle(now, from, &mut attacker.sealed(ChannelId::DEFAULT, &pings));
    let answers = drain(&mut server);
    assert_eq!(
        answers.len(),
        1,
        "one request datagram, one answer datagram"
    );
    assert_eq!(
        server.stats().get(
            "weft_handshake_stateless_answers_total",
            Some(("message", "pong"))
        ),
        100
    );
}

/// Two endpoints wired back to back, the server's heap counted around its calls only.
struct Pair {
    client: Endpoint,
    server: Endpoint,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    now: Instant,
    server_heap: i64,
    client_events: Vec<Event>,
}

impl Pair {
    fn new(config: EndpointConfig, with_record: bool) -> Pair {
        let now = Instant::now();
        let server_addr = SocketAddr::from(([10, 0, 0, 1], 1000));
        let client_addr = SocketAddr::from(([10, 0, 0, 2], 2000));
        let server = Endpoint::new(config.clone(), identity(1), [1; 32], now);
        let mut client = Endpoint::new(config, identity(2), [2; 32], now);
        if with_record {
            client
                .add_peer_record(PeerRecord::sign(server.identity(), &[server_addr]))
                .unwrap();
        }
        Pair {
            client,
            server,
            client_addr,
            server_addr,
            now,
            server_heap: 0,
            client_events: Vec::new(),
        }
    }

    fn server_call<R>(&mut self, f: impl FnOnce(&mut Endpoint) -> R) -> R {
        let before = live_bytes();
        let result = f(&mut self.server);
        self.server_heap += live_bytes() - before;
        result
    }

    /// One millisecond: datagrams both ways until quiet, due timers, events.
    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        let now = self.now;
        let mut buf = vec![0u8; 2048];
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit(&mut buf) {
                let (from, mut datagram) = (self.client_addr, buf[..t.len].to_vec());
                self.server_call(|s| s.handle(now, from, &mut datagram));
                moved = true;
            }
            while let Some(t) = self.server_call(|s| s.poll_transmit(&mut buf)) {
                self.client.handle(now, self.server_addr, &mut buf[..t.len]);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server_call(|s| s.handle_timeout(now));
        }
        while let Some(event) = self.client.poll_event() {
            self.client_events.push(event);
        }
        while self.server_call(Endpoint::poll_event).is_some() {}
    }

    /// Opens a channel from the client and drives until it opened (Some) or failed (None).
    fn open(&mut self) -> Option<ChannelHandle> {
        let peer = self.server.local_peer_id();
        for _ in 0..200 {
            let now = self.now;
            match self
                .client
                .open_channel(now, self.server_addr, Some(peer), None, udp_mode())
            {
                Ok(channel) => {
                    for _ in 0..200 {
                        self.step();
                        for event in self.client_events.drain(..) {
                            match event {
                                Event::ChannelOpened { channel: c, .. } if c == channel => {
                                    return Some(channel);
                                }
                                Event::OpenFailed { channel: c, .. } if c == channel => {
                                    return None;
                                }
                                _ => {}
                            }
                        }
                    }
                    return None;
                }
                // The session ran out of ids: its replacement is under way.
                Err(OpenError::LimitReached(_)) => self.step(),
                Err(other) => panic!("open: {other}"),
            }
        }
        None
    }
}

/// Opens and closes channels from the client in a loop; returns the server's heap growth over
/// a thousand cycles after a warm-up of two hundred.
fn churn(pair: &mut Pair) -> i64 {
    let mut cycles = 0;
    let mut baseline = None;
    for attempt in 0..3_000 {
        if let Some(channel) = pair.open() {
            let now = pair.now;
            pair.client.close_channel(now, channel, CloseReason::Normal);
            for _ in 0..3 {
                pair.step();
            }
            cycles += 1;
        }
        if cycles == 200 && baseline.is_none() {
            baseline = Some(pair.server_heap);
        }
        if cycles == 1_200 {
            break;
        }
        assert!(attempt < 2_999, "only {cycles} open/close cycles completed");
    }
    assert_eq!(pair.server.channel_count(), 0);
    pair.server_heap - baseline.expect("warmed up")
}

fn refused_for_ids(endpoint: &Endpoint) -> u64 {
    endpoint.stats().get(
        "weft_channels_refused_total",
        Some(("reason", "ids_exhausted")),
    )
}

#[test]
fn a_peer_that_opens_and_closes_channels_in_a_loop_holds_bounded_id_state() {
    let config = EndpointConfig {
        max_closed_channels_per_session: 32,
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(config, true);
    let grown = churn(&mut pair);
    // Main kept every closed channel's keys and id for the session's life: ~400 bytes each.
    assert!(
        grown < 16 * 1024,
        "a thousand open/close cycles grew the server's heap by {grown} bytes"
    );
    // The cap was reached again and again, and each time the session was replaced.
    let rekeys = pair.client.stats().get("weft_rekeys_total", None)
        + pair.server.stats().get("weft_rekeys_total", None);
    assert!(rekeys >= 30, "{rekeys} rekeys");
    assert!(refused_for_ids(&pair.client) + refused_for_ids(&pair.server) > 0);
}

#[test]
fn a_plaintext_peer_that_opens_and_closes_channels_in_a_loop_holds_bounded_id_state() {
    let config = EndpointConfig {
        allow_plaintext: true,
        max_closed_channels_per_session: 32,
        cookie_rotation: Duration::from_millis(200),
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(config, false);
    let grown = churn(&mut pair);
    assert!(
        grown < 4 * 1024,
        "a thousand open/close cycles grew the server's heap by {grown} bytes"
    );
}

/// A plaintext default-channel packet from a made-up peer holding `messages`.
fn plaintext_packet(
    sender: PeerId,
    recipient: PeerId,
    messages: &[Message<'_>],
    size: usize,
) -> Vec<u8> {
    let header = Header {
        flags: Flags::default(),
        sender,
        recipient,
        channel: ChannelId::DEFAULT,
        sequence: None,
    };
    let mut packet = vec![0u8; size];
    let mut end = header.emit(&mut packet).unwrap();
    for message in messages {
        end += message.emit(&mut packet[end..]).unwrap();
    }
    // The rest is PADDING (PROTOCOL.md §4): zero bytes.
    packet
}

fn plaintext_server() -> (Endpoint, Instant) {
    let now = Instant::now();
    let config = EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    };
    (Endpoint::new(config, identity(1), [1; 32], now), now)
}

#[test]
fn a_plaintext_datagram_of_pings_gets_exactly_one_answer_datagram() {
    let (mut server, now) = plaintext_server();
    let sender = PeerId([9; 16]);
    let tokens: Vec<[u8; 8]> = (0..140u64).map(u64::to_be_bytes).collect();
    let pings: Vec<Message<'_>> = tokens.iter().map(|token| Message::Ping { token }).collect();
    let request = plaintext_packet(sender, server.local_peer_id(), &pings, 37 + 9 * 140);
    let from = SocketAddr::from(([10, 0, 0, 9], 9000));
    server.handle(now, from, &mut request.to_vec());
    let answers = drain(&mut server);
    assert_eq!(
        answers.len(),
        1,
        "one request datagram, one answer datagram"
    );
    assert!(answers[0].len() <= 3 * request.len());
    let packet = Packet::parse(&answers[0]).unwrap();
    let pongs = packet
        .messages()
        .filter(|m| matches!(m, Message::Pong { .. }))
        .count();
    // As many PONGs as one datagram holds; the rest are dropped and counted.
    assert!(pongs > 100, "{pongs} PONGs");
    assert_eq!(dropped(&server, "answer_limit"), 140 - pongs as u64);
}

#[test]
fn a_datagram_larger_than_the_largest_mtu_is_dropped_and_counted() {
    let (mut server, now) = plaintext_server();
    let largest = usize::from(server.config().reliability.max_mtu);
    let request = plaintext_packet(
        PeerId([9; 16]),
        server.local_peer_id(),
        &[Message::Ping { token: &[1; 8] }],
        largest + 1,
    );
    let from = SocketAddr::from(([10, 0, 0, 9], 9000));
    server.handle(now, from, &mut request.to_vec());
    assert!(drain(&mut server).is_empty());
    assert_eq!(dropped(&server, "oversize"), 1);
    // One byte less is an ordinary packet, and its PING is answered.
    server.handle(now, from, &mut request[..largest].to_vec());
    assert_eq!(drain(&mut server).len(), 1);
}

#[test]
fn a_newcomer_gets_a_channel_when_a_heavy_peer_filled_the_table() {
    let mut net = Network::new(1);
    let plaintext = EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    };
    let small = EndpointConfig {
        max_channels: 8,
        max_channels_per_peer: 8,
        ..plaintext.clone()
    };
    let server = net.add_endpoint(addr(1), small);
    let heavy = net.add_endpoint(addr(2), plaintext.clone());
    let newcomer = net.add_endpoint(addr(3), plaintext);
    let server_id = net.node(server).local_peer_id();
    let now = net.now();
    for _ in 0..8 {
        net.node_mut(heavy)
            .open_channel(now, addr(1), Some(server_id), None, udp_mode())
            .unwrap();
    }
    net.drive_for(Duration::from_secs(1));
    assert_eq!(
        net.node(server).channel_count(),
        8,
        "the heavy peer filled the table"
    );
    let now = net.now();
    let channel = net
        .node_mut(newcomer)
        .open_channel(now, addr(1), Some(server_id), None, udp_mode())
        .unwrap();
    net.drive_for(Duration::from_secs(1));
    let events: Vec<Event> = std::iter::from_fn(|| net.node_mut(newcomer).poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelOpened { channel: c, .. } if *c == channel)),
        "the newcomer's open failed: {events:?}"
    );
    // ...and it stays open: the server did not refuse its FINALIZE.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ChannelClosed { channel: c, .. } if *c == channel)),
        "the server refused the newcomer: {events:?}"
    );
    assert_eq!(net.node(newcomer).channel_count(), 1);
    let heavy_events: Vec<Event> =
        std::iter::from_fn(|| net.node_mut(heavy).poll_event()).collect();
    let evicted = heavy_events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::ChannelClosed {
                    reason: CloseReason::Refused,
                    by_peer: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(evicted, 1, "{heavy_events:?}");
    assert_eq!(net.node(server).channel_count(), 8);
    assert_eq!(
        net.node(server)
            .stats()
            .get("weft_channels_evicted_total", None),
        1
    );
}

/// The server bytes one open UDP-mode channel costs, measured: the figure plus about 10 %. The
/// channel limits (`max_channels`, `max_channels_per_peer`) are counts; this is what makes them
/// a memory budget (3 MB per peer and 620 MB per node at the defaults).
const MAX_BYTES_PER_CHANNEL: i64 = 3_400;

#[test]
fn an_open_channel_costs_the_server_a_bounded_heap() {
    let mut pair = Pair::new(EndpointConfig::default(), true);
    pair.open().expect("the first channel opens");
    let before = pair.server_heap;
    for _ in 0..500 {
        pair.open().expect("opens");
    }
    for _ in 0..100 {
        pair.step();
    }
    assert_eq!(pair.server.channel_count(), 501);
    let per_channel = (pair.server_heap - before) / 500;
    assert!(
        per_channel <= MAX_BYTES_PER_CHANNEL,
        "an open channel costs the server {per_channel} bytes (bound {MAX_BYTES_PER_CHANNEL})"
    );
}

#[test]
fn a_datagram_of_pings_on_an_open_channel_gets_one_packet_of_bounded_pongs() {
    let config = EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(config, false);
    let channel = pair.open().expect("opens");
    for _ in 0..100 {
        pair.step();
    }
    let (id, _, _) = pair.client.channel_info(channel).unwrap();
    let header = Header {
        flags: Flags::SEQUENCED,
        sender: pair.client.local_peer_id(),
        recipient: pair.server.local_peer_id(),
        channel: id,
        sequence: Some(1_000),
    };
    let tokens: Vec<[u8; 8]> = (1..=50u64).map(u64::to_be_bytes).collect();
    let mut packet = vec![0u8; 1200];
    let mut end = header.emit(&mut packet).unwrap();
    for token in &tokens {
        end += Message::Ping { token }.emit(&mut packet[end..]).unwrap();
    }
    packet.truncate(end);
    let now = pair.now;
    pair.server
        .handle(now, pair.client_addr, &mut packet.to_vec());
    let answers = drain(&mut pair.server);
    let pongs: Vec<usize> = answers
        .iter()
        .map(|datagram| {
            Packet::parse(datagram)
                .unwrap()
                .messages()
                .filter(|m| matches!(m, Message::Pong { .. }))
                .count()
        })
        .filter(|&n| n > 0)
        .collect();
    // The PONGs a channel owes are bounded (`owed.rs`): the first sixteen in one packet, with
    // the data path's own ACK, and the rest dropped and counted.
    assert_eq!(pongs, vec![16]);
    assert_eq!(answers.len(), 1, "{} answer datagrams", answers.len());
    let limited = pair.server.stats().get(
        "weft_packets_dropped_total",
        Some(("reason", "answer_limit")),
    );
    assert_eq!(limited, 50 - 16);
}

#[test]
fn idle_peers_filling_the_peer_table_do_not_lock_a_newcomer_out() {
    let mut net = Network::new(2);
    let plaintext = EndpointConfig {
        allow_plaintext: true,
        ..EndpointConfig::default()
    };
    let server = net.add_endpoint(
        addr(1),
        EndpointConfig {
            max_peers: 4,
            ..plaintext.clone()
        },
    );
    let server_id = net.node(server).local_peer_id();
    // Four peers open a channel and close it: each stays behind as an idle entry (its used
    // ids must outlive its cookies).
    for index in 2..6 {
        let client = net.add_endpoint(addr(index), plaintext.clone());
        let now = net.now();
        let channel = net
            .node_mut(client)
            .open_channel(now, addr(1), Some(server_id), None, udp_mode())
            .unwrap();
        net.drive_for(Duration::from_millis(500));
        let now = net.now();
        net.node_mut(client)
            .close_channel(now, channel, CloseReason::Normal);
        net.drive_for(Duration::from_millis(500));
    }
    assert_eq!(net.node(server).peer_count(), 4);
    assert_eq!(net.node(server).channel_count(), 0);
    let newcomer = net.add_endpoint(addr(9), plaintext);
    let now = net.now();
    let channel = net
        .node_mut(newcomer)
        .open_channel(now, addr(1), Some(server_id), None, udp_mode())
        .unwrap();
    net.drive_for(Duration::from_secs(1));
    let events: Vec<Event> = std::iter::from_fn(|| net.node_mut(newcomer).poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelOpened { channel: c, .. } if *c == channel))
            && !events
                .iter()
                .any(|e| matches!(e, Event::ChannelClosed { channel: c, .. } if *c == channel)),
        "the newcomer was locked out: {events:?}"
    );
    assert_eq!(net.node(server).channel_count(), 1);
    assert_eq!(
        net.node(server)
            .stats()
            .get("weft_peers_evicted_total", None),
        1
    );
}
