//! The overlay on the deterministic simulator (tests/sim): each node a [`Dht`] behind a
//! cost-free stand-in for its session (issue 15 point 6 allows it at this scale). A datagram is
//! one RPC frame after a 37-byte header that plays the part of what the session and the peer's
//! certified record prove: a flag (1 when the sender has a node id, 0 for a client), the node
//! id and the peer id.
//!
//! Sessions cost what their handshake costs in round trips: a node keeps the peers it has a
//! session with, and a frame for a peer without one waits while `handshake_rtts` round trips of
//! handshake datagrams (flag 2 out, 3 back) go first; IK to a known record is one round trip,
//! the first request riding the handshake's final packet (PROTOCOL.md §5, §6). Clearing every
//! node's sessions makes the next lookups cold.

use crate::sim::{LinkConfig, Network, NodeId as SimId, SimNode, SimRng, addr};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::Transmit;
use weft::overlay::id::{Contact, NodeId};
use weft::overlay::kademlia::{Dht, Event, KademliaConfig, Sender};
use weft::wire::PeerId;

const HEADER: usize = 1 + 20 + 16;
const FRAME_CLIENT: u8 = 0;
const FRAME_NODE: u8 = 1;
const HANDSHAKE_OUT: u8 = 2;
const HANDSHAKE_BACK: u8 = 3;

/// A handshake that did not come back in this long is started again with the next frame.
const HANDSHAKE_RETRY: Duration = Duration::from_secs(1);

/// A wall clock for virtual time: the Unix time the network starts at.
pub(crate) const WALL_START: u64 = 1_800_000_000;

/// Frames waiting for a handshake to a peer.
struct Handshake {
    started: Instant,
    frames: Vec<Vec<u8>>,
}

/// One simulated overlay node.
pub(crate) struct OverlayNode {
    pub(crate) dht: Dht,
    /// Drops everything and sends nothing (a node that went silent).
    pub(crate) silent: bool,
    /// Events the node raised, oldest first.
    pub(crate) events: Vec<Event>,
    /// Added to the virtual wall clock, so a test can jump a day without simulating it.
    pub(crate) wall_offset: u64,
    /// Round trips a first contact costs before its first frame goes (0: sessions are free).
    pub(crate) handshake_rtts: u8,
    /// Peers (by address) this node holds a session with.
    pub(crate) sessions: BTreeSet<SocketAddr>,
    /// Frames sent, and handshakes started, for the share of cold contacts.
    pub(crate) frames_sent: u64,
    pub(crate) handshakes: u64,
    waiting: BTreeMap<SocketAddr, Handshake>,
    ready: VecDeque<(SocketAddr, u8, Vec<u8>)>,
    now: Instant,
    epoch: Instant,
}

impl OverlayNode {
    fn wall(&self, now: Instant) -> u64 {
        WALL_START + now.saturating_duration_since(self.epoch).as_secs() + self.wall_offset
    }

    /// Wall time at `now`.
    pub(crate) fn wall_at(&self, now: Instant) -> u64 {
        self.wall(now)
    }

    /// Forgets every session, so the next contacts are cold.
    pub(crate) fn forget_sessions(&mut self) {
        self.sessions.clear();
        self.waiting.clear();
    }

    fn drain(&mut self) {
        while let Some(event) = self.dht.poll_event() {
            self.events.push(event);
        }
    }

    fn frame_flag(&self) -> u8 {
        if self.dht.advertised_id().is_some() {
            FRAME_NODE
        } else {
            FRAME_CLIENT
        }
    }

    /// Moves what the DHT sends into `ready`, behind a handshake where there is no session.
    fn pull(&mut self) {
        while let Some(transmit) = self.dht.poll_transmit() {
            self.frames_sent += 1;
            let to = transmit.addr;
            if self.handshake_rtts == 0 || self.sessions.contains(&to) {
                let flag = self.frame_flag();
                self.ready.push_back((to, flag, transmit.bytes));
                continue;
            }
            let now = self.now;
            let fresh = self
                .waiting
                .get(&to)
                .is_some_and(|h| now.saturating_duration_since(h.started) < HANDSHAKE_RETRY);
            if fresh {
                if let Some(h) = self.waiting.get_mut(&to) {
                    h.frames.push(transmit.bytes);
                }
                continue;
            }
            self.handshakes += 1;
            let frames = vec![transmit.bytes];
            self.waiting.insert(
                to,
                Handshake {
                    started: now,
                    frames,
                },
            );
            self.ready
                .push_back((to, HANDSHAKE_OUT, vec![self.handshake_rtts - 1]));
        }
    }
}

impl SimNode for OverlayNode {
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        self.now = now;
        if self.silent || datagram.len() < HEADER {
            return;
        }
        let (head, frame) = datagram.split_at(HEADER);
        match head[0] {
            HANDSHAKE_OUT => {
                self.sessions.insert(from);
                self.ready.push_back((from, HANDSHAKE_BACK, frame.to_vec()));
                return;
            }
            HANDSHAKE_BACK => {
                let left = frame.first().copied().unwrap_or(0);
                if left > 0 {
                    self.ready.push_back((from, HANDSHAKE_OUT, vec![left - 1]));
                    return;
                }
                self.sessions.insert(from);
                if let Some(h) = self.waiting.remove(&from) {
                    let flag = self.frame_flag();
                    for bytes in h.frames {
                        self.ready.push_back((from, flag, bytes));
                    }
                }
                return;
            }
            _ => {}
        }
        // A frame comes only over a session the sender holds, so this side holds it too.
        self.sessions.insert(from);
        let node = (head[0] == FRAME_NODE).then(|| NodeId(head[1..21].try_into().unwrap()));
        let peer = PeerId(head[21..37].try_into().unwrap());
        let sender = Sender {
            peer,
            addr: from,
            node,
        };
        let wall = self.wall(now);
        self.dht.handle(now, wall, sender, frame);
        self.drain();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.silent {
            return;
        }
        let wall = self.wall(now);
        self.dht.handle_timeout(now, wall);
        self.drain();
    }

    fn clock(&mut self, now: Instant) {
        self.now = now;
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.silent {
            while self.dht.poll_transmit().is_some() {}
            self.ready.clear();
            return None;
        }
        self.pull();
        let (to, flag, bytes) = self.ready.pop_front()?;
        let len = HEADER + bytes.len();
        buf[0] = flag;
        match self.dht.advertised_id() {
            Some(id) if flag == FRAME_NODE => buf[1..21].copy_from_slice(&id.0),
            _ => buf[1..21].fill(0),
        }
        buf[21..37].copy_from_slice(&self.dht.own().peer.0);
        buf[HEADER..len].copy_from_slice(&bytes);
        Some(Transmit {
            destination: to,
            len,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.silent {
            None
        } else {
            self.dht.poll_timeout()
        }
    }
}

/// The contact of simulated node `index` under `seed`: a random node id, a peer id from it.
pub(crate) fn contact(seed: u64, index: usize) -> Contact {
    let mut rng = SimRng::derive(seed, 0x0be7_1a70 ^ index as u64);
    let mut id = [0u8; 20];
    rng.fill(&mut id);
    let hash = blake3::hash(&id);
    let mut peer = [0u8; 16];
    peer.copy_from_slice(&hash.as_bytes()[..16]);
    Contact {
        id: NodeId(id),
        peer: PeerId(peer),
        addr: addr(index as u16 + 1),
    }
}

/// The link: one-way latency 10–100 ms, drawn once per path (so a path's RTT is
/// 20–200 ms, median 110 ms), 1 % loss, room for any frame (the channel layer below fragments;
/// here a frame is one datagram).
pub(crate) fn lossy_link() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(90),
        loss: 0.01,
        mtu: 65_507,
        jitter_per_link: true,
        ..LinkConfig::default()
    }
}

/// A clean link: 20 ms one way, no loss, room for any frame (the maintenance and record tests
/// measure time-driven behaviour, not recovery from loss).
pub(crate) fn clean_link() -> LinkConfig {
    LinkConfig {
        mtu: 65_507,
        ..LinkConfig::with_delay(Duration::from_millis(20))
    }
}

/// A network of `n` nodes on [`clean_link`], every one joined by [`join_all`] (one every
/// 50 ms, then 5 s to settle).
pub(crate) fn joined(
    seed: u64,
    n: usize,
    config: impl Fn(usize) -> KademliaConfig,
) -> Network<OverlayNode> {
    let mut net = network(seed, n, clean_link(), config);
    join_all(
        &mut net,
        seed,
        Duration::from_millis(50),
        Duration::from_secs(5),
    );
    net
}

/// Settings for simulated nodes: the /24 cap off (every address shares 10.0.x), bucket
/// refresh off unless a test turns it on (it would only add lookups to these short runs).
pub(crate) fn sim_config() -> KademliaConfig {
    KademliaConfig {
        per_subnet_cap: None,
        refresh: None,
        ..KademliaConfig::default()
    }
}

/// A network of `n` nodes (not yet joined) with `config`; node `i`'s contact is
/// [`contact`]`(seed, i)`.
pub(crate) fn network(
    seed: u64,
    n: usize,
    link: LinkConfig,
    config: impl Fn(usize) -> KademliaConfig,
) -> Network<OverlayNode> {
    let mut net = Network::new(seed);
    net.set_default_link(link);
    let epoch = net.epoch();
    for i in 0..n {
        let own = contact(seed, i);
        let mut dht_seed = [0u8; 32];
        SimRng::derive(seed, 0x0d47_5eed ^ i as u64).fill(&mut dht_seed);
        let node = OverlayNode {
            dht: Dht::new(config(i), own, dht_seed),
            silent: false,
            events: Vec::new(),
            wall_offset: 0,
            handshake_rtts: 0,
            sessions: BTreeSet::new(),
            frames_sent: 0,
            handshakes: 0,
            waiting: BTreeMap::new(),
            ready: VecDeque::new(),
            now: epoch,
            epoch,
        };
        net.add_node(own.addr, node);
    }
    net
}

/// Joins every node: node 0 starts alone, node `i` bootstraps from a random earlier node,
/// one every `spacing`; then the network settles for `settle`.
pub(crate) fn join_all(
    net: &mut Network<OverlayNode>,
    seed: u64,
    spacing: Duration,
    settle: Duration,
) {
    let n = net.len();
    join_first(net, seed, n, spacing, settle);
}

/// [`join_all`] for the first `n` nodes only; the rest stay unjoined (and idle) for later.
pub(crate) fn join_first(
    net: &mut Network<OverlayNode>,
    seed: u64,
    n: usize,
    spacing: Duration,
    settle: Duration,
) {
    let mut rng = SimRng::derive(seed, 0x7014);
    for i in 1..n {
        let via = (rng.next_u64() % i as u64) as usize;
        let via = contact(seed, via);
        let now = net.now();
        net.node_mut(SimId(i)).dht.bootstrap(now, &[via]);
        net.drive_for(spacing);
    }
    net.drive_for(settle);
}
