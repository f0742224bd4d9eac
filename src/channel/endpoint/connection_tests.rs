//! Unit tests of the router and its connections, next to them: the router's one deadline per
//! connection always equals the earliest slot of that connection's timer table (so nothing
//! stale is kept and nothing is lost), routing reaches the sender's connection, and a
//! connection with much to send keeps the turn for at most one GSO train.

#![allow(clippy::arithmetic_side_effects)]

use super::*;
use crate::session::Identity;

/// Endpoints on a lossy loopback: datagram `n` is dropped when `n % drop_every == 0`.
struct Net {
    nodes: Vec<(Endpoint, SocketAddr)>,
    now: Instant,
    buf: Vec<u8>,
    sent: u64,
    drop_every: u64,
}

impl Net {
    fn new(count: u8, drop_every: u64) -> Net {
        let now = Instant::now();
        let nodes = (1..=count)
            .map(|n| {
                let identity = Identity::from_secret_bytes([n; 32], [n.wrapping_add(100); 32]);
                let endpoint = Endpoint::new(EndpointConfig::default(), identity, [n; 32], now);
                (endpoint, SocketAddr::from(([10, 0, 0, n], 1000)))
            })
            .collect();
        Net {
            nodes,
            now,
            buf: vec![0; 2048],
            sent: 0,
            drop_every,
        }
    }

    /// Moves datagrams until none is left, then advances the clock a millisecond and runs
    /// due timers; messages delivered are recycled. Returns the messages delivered.
    fn step(&mut self) -> usize {
        let mut delivered = 0;
        for _ in 0..64 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                let from = self.nodes[i].1;
                while let Some(t) = self.nodes[i].0.poll_transmit(&mut self.buf) {
                    moved = true;
                    self.sent += 1;
                    if self.drop_every > 0 && self.sent.is_multiple_of(self.drop_every) {
                        continue;
                    }
                    let mut datagram = self.buf[..t.len].to_vec();
                    if let Some(to) = self.nodes.iter_mut().find(|n| n.1 == t.destination) {
                        to.0.handle(self.now, from, &mut datagram);
                    }
                }
            }
            if !moved {
                break;
            }
        }
        for (node, _) in &mut self.nodes {
            while let Some(event) = node.poll_event() {
                if let Event::Message { data, .. } = event {
                    delivered += 1;
                    node.recycle(data);
                }
            }
        }
        self.now += Duration::from_millis(1);
        for (node, _) in &mut self.nodes {
            if node.poll_timeout().is_some_and(|at| at <= self.now) {
                node.handle_timeout(self.now);
            }
        }
        delivered
    }

    /// Opens a channel from node `from` to node `to` and runs until it is open.
    fn open(&mut self, from: usize, to: usize, mode: Capabilities) -> ChannelHandle {
        let (now, addr) = (self.now, self.nodes[to].1);
        let channel = self.nodes[from]
            .0
            .open_channel(now, addr, None, None, mode)
            .expect("open");
        for _ in 0..200 {
            self.step();
            if self.nodes[from].0.channel_info(channel).is_some()
                && self.nodes[from]
                    .0
                    .has_session_with(self.nodes[to].0.local_peer_id())
            {
                break;
            }
        }
        channel
    }
}

/// The router's entry for each connection is its table's earliest deadline, and only
/// connections with an armed timer have one.
fn assert_deadlines_agree(endpoint: &Endpoint) {
    let mut armed = 0;
    for (handle, connection) in endpoint.peers.iter() {
        // Each channel's deadline is its entry in the connection's heap, and the earliest
        // of them the data timer.
        let mut earliest = None;
        for (at, &lane) in connection.order.iter().enumerate() {
            let armed = connection
                .lanes
                .get(lane)
                .and_then(|c| c.data.as_ref()?.armed);
            assert_eq!(connection.channel_deadlines.get(at as u32), armed);
            earliest = earliest.into_iter().chain(armed).min();
        }
        assert_eq!(connection.timers.get(Timer::Data), earliest);
        let next = connection.timers.next();
        assert_eq!(
            endpoint.deadlines.get(handle.0),
            next,
            "connection {handle:?}"
        );
        armed += usize::from(next.is_some());
    }
    assert_eq!(endpoint.deadlines.len(), armed);
    // Only the handshake machinery uses the router's own heap; sessions time out in their
    // connections' tables.
    assert!(endpoint.timers.len() <= 4 * endpoint.pending.len() + 8);
}

#[test]
fn each_connection_has_one_router_deadline_its_earliest_timer() {
    let mut net = Net::new(4, 7);
    // Every capability bit: resent, ordered, closed on a loss it cannot repair (TCP-like).
    let reliable = Capabilities::from_bits(7).expect("mode");
    let channels: Vec<ChannelHandle> = (1..4).map(|i| net.open(i, 0, reliable)).collect();
    let (mut accepted, mut delivered) = (0, 0);
    for round in 0..5_000 {
        if round < 300 {
            for (i, &channel) in channels.iter().enumerate() {
                let now = net.now;
                let sent = net.nodes[i + 1].0.send(now, channel, &[round as u8; 600]);
                accepted += usize::from(sent.is_ok());
            }
        } else if delivered == accepted {
            break;
        }
        delivered += net.step();
        for (node, _) in &net.nodes {
            assert_deadlines_agree(node);
        }
    }
    // Loss was recovered by the connections' timers: everything accepted arrived.
    assert!(accepted > 300);
    assert_eq!(delivered, accepted);
    assert_eq!(net.nodes[0].0.peers.len(), 3);
}

#[test]
fn deadlines_agree_after_the_channel_closes_and_the_peer_goes_quiet() {
    let mut net = Net::new(2, 0);
    let channel = net.open(1, 0, Capabilities::from_bits(0).expect("mode"));
    assert_eq!(net.nodes[0].0.peers.len(), 1);
    let now = net.now;
    net.nodes[1]
        .0
        .close_channel(now, channel, CloseReason::Normal);
    // Past the connection reset timeout and two cookie rotations, with nothing heard.
    let quiet =
        net.nodes[0].0.config.connection_reset_timeout + net.nodes[0].0.config.cookie_rotation * 3;
    let until = net.now + quiet;
    while net.now < until {
        net.step();
        net.now += Duration::from_millis(250);
    }
    for (node, _) in &net.nodes {
        assert_deadlines_agree(node);
    }
    assert_eq!(net.nodes[0].0.channel_count(), 0);
    assert!(net.nodes[0].0.deadlines.len() <= net.nodes[0].0.peers.len());
}

#[test]
fn a_datagram_is_routed_to_its_senders_connection() {
    let mut net = Net::new(3, 0);
    let mode = Capabilities::from_bits(3).expect("mode");
    let first = net.open(1, 0, mode);
    net.open(2, 0, mode);
    let server = &net.nodes[0].0;
    let sender = net.nodes[1].0.local_peer_id();
    let routed = server.ids.peer(&sender).copied().expect("a connection");
    assert_eq!(server.peers.get(routed).map(|c| c.id), Some(sender));
    let before = server.peers.get(routed).expect("connection").traffic;
    let now = net.now;
    net.nodes[1].0.send(now, first, b"hello").expect("send");
    net.step();
    let server = &net.nodes[0].0;
    let after = server.peers.get(routed).expect("connection").traffic;
    // The sender's session counts its sealed datagrams; the other connection is untouched.
    let session = server.peers.get(routed).and_then(|c| c.session.as_ref());
    assert!(session.is_some_and(|s| s.traffic.packets_received > 0));
    assert_eq!(before, after, "kind-0 counters stay put under a session");
    let other = net.nodes[2].0.local_peer_id();
    let other = server
        .ids
        .peer(&other)
        .copied()
        .expect("the other connection");
    assert_ne!(other, routed);
}

#[test]
fn a_connection_keeps_the_turn_for_at_most_one_train() {
    let mut net = Net::new(3, 0);
    let mode = Capabilities::from_bits(0).expect("mode");
    let to_one = net.open(0, 1, mode);
    let to_two = net.open(0, 2, mode);
    for _ in 0..20 {
        net.step();
    }
    let now = net.now;
    let server = &mut net.nodes[0].0;
    for _ in 0..400 {
        let _ = server.send(now, to_one, &[1; 1000]);
        let _ = server.send(now, to_two, &[2; 1000]);
    }
    let mut destinations = Vec::new();
    while let Some(t) = server.poll_transmit(&mut net.buf) {
        destinations.push(t.destination);
        if destinations.len() == 600 {
            break;
        }
    }
    let runs: Vec<usize> = destinations
        .chunk_by(|a, b| a == b)
        .map(<[SocketAddr]>::len)
        .collect();
    // Each connection's congestion window ends its turn first here; the train bounds it when
    // the window is wide (tests/channel/hot_path.rs drives that case).
    assert!(runs.len() >= 2, "both connections sent, in turns: {runs:?}");
    assert!(runs.iter().all(|&run| run <= 64), "runs {runs:?}");
}
