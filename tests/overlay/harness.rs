//! The overlay on the deterministic simulator (tests/sim): each node a [`Dht`] behind a
//! cost-free stand-in for its session (issue 15 point 6 allows it at this scale). A datagram is
//! one RPC frame after a 37-byte header that plays the part of what the session and the peer's
//! certified record prove: a flag (1 when the sender has a node id, 0 for a client), the node
//! id and the peer id.

use crate::sim::{LinkConfig, Network, NodeId as SimId, SimNode, SimRng, addr};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::Transmit;
use weft::overlay::id::{Contact, NodeId};
use weft::overlay::kademlia::{Dht, Event, KademliaConfig, Sender};
use weft::wire::PeerId;

const HEADER: usize = 1 + 20 + 16;

/// A wall clock for virtual time: the Unix time the network starts at.
pub(crate) const WALL_START: u64 = 1_800_000_000;

/// One simulated overlay node.
pub(crate) struct OverlayNode {
    pub(crate) dht: Dht,
    /// Drops everything and sends nothing (a node that went silent).
    pub(crate) silent: bool,
    /// Events the node raised, oldest first.
    pub(crate) events: Vec<Event>,
    /// Added to the virtual wall clock, so a test can jump a day without simulating it.
    pub(crate) wall_offset: u64,
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

    fn drain(&mut self) {
        while let Some(event) = self.dht.poll_event() {
            self.events.push(event);
        }
    }
}

impl SimNode for OverlayNode {
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        if self.silent || datagram.len() < HEADER {
            return;
        }
        let (head, frame) = datagram.split_at(HEADER);
        let node = (head[0] == 1).then(|| NodeId(head[1..21].try_into().unwrap()));
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
        if self.silent {
            return;
        }
        let wall = self.wall(now);
        self.dht.handle_timeout(now, wall);
        self.drain();
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.silent {
            while self.dht.poll_transmit().is_some() {}
            return None;
        }
        let transmit = self.dht.poll_transmit()?;
        let len = HEADER + transmit.bytes.len();
        match self.dht.advertised_id() {
            Some(id) => {
                buf[0] = 1;
                buf[1..21].copy_from_slice(&id.0);
            }
            None => buf[..21].fill(0),
        }
        buf[21..37].copy_from_slice(&self.dht.own().peer.0);
        buf[HEADER..len].copy_from_slice(&transmit.bytes);
        Some(Transmit {
            destination: transmit.addr,
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

/// The link: one-way latency 10–100 ms (drawn per datagram), 1 % loss, room for any
/// frame (the channel layer below fragments; here a frame is one datagram).
pub(crate) fn lossy_link() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(90),
        loss: 0.01,
        mtu: 65_507,
        ..LinkConfig::default()
    }
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
    let mut rng = SimRng::derive(seed, 0x7014);
    let n = net.len();
    for i in 1..n {
        let via = (rng.next_u64() % i as u64) as usize;
        let via = contact(seed, via);
        let now = net.now();
        net.node_mut(SimId(i)).dht.bootstrap(now, &[via]);
        net.drive_for(spacing);
    }
    net.drive_for(settle);
}
