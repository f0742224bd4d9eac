//! The deterministic simulated network for scenario tests (STYLE.md 10): the only one. It
//! drives whole endpoints ([`Network<Endpoint>`]) and bare reliability channels
//! ([`Network<ChannelNode>`], see [`channel_pair`]) alike, with one link model and one clock.
//!
//! Many sans-IO nodes (PROTOCOL.md §1: fed `(now, from, bytes)`, polled for `(to, bytes)` and
//! their next timeout) exchange datagrams over directed links with delay, jitter, loss,
//! duplication, reordering, a bottleneck queue and an MTU, on a virtual clock. Every random
//! choice comes from the network's seed, so a run is exactly reproducible from it: run a scenario
//! under [`for_each_seed`], and a failure names the seed to rerun with `WEFT_SEED=<seed>`.
//!
//! ```ignore
//! let mut net = Network::new(seed);
//! let a = net.add_node(addr(1), node_a);
//! let b = net.add_node(addr(2), node_b);
//! net.set_link(a, b, LinkConfig { loss: 0.1, ..LinkConfig::default() });
//! net.node_mut(a).start(net.now(), addr(2));
//! net.drive();
//! ```
//!
//! Test crates include it with `mod sim;` and each uses a part of it.
#![allow(dead_code)]

mod channel_node;
mod flight;
mod link;
mod rng;
mod seeds;
mod trace;

// Each test crate uses a subset of these re-exports.
#[allow(unused_imports)]
pub(crate) use channel_node::{CHANNEL, ChannelNode};
#[allow(unused_imports)]
pub(crate) use link::{ETHERNET_UDP_MTU, LinkConfig, LinkStats, serialisation_time};
#[allow(unused_imports)]
pub(crate) use rng::SimRng;
#[allow(unused_imports)]
pub(crate) use seeds::{for_each_seed, parse_seeds, run_seeds, seeds};
#[allow(unused_imports)]
pub(crate) use trace::{TraceEvent, TraceKind, digest};

use flight::{InFlight, SendCtx, new_link, send};
use link::Link;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft::channel::reliability::ReliabilityConfig;
use weft::channel::{Endpoint, EndpointConfig, Transmit};
use weft::session::Identity;
use weft::wire::Capabilities;

/// The sans-IO method shape (STYLE.md 2) the simulator drives. Per event it calls `handle` or
/// `handle_timeout`, then `poll_transmit` until `None`, then reads `poll_timeout` again.
pub(crate) trait SimNode {
    /// Feeds one datagram that arrived from `from`; the node may open it in place.
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]);
    /// Runs timers whose deadline is at or before `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// Writes the next datagram into `buf`; its bytes are `buf[..len]`.
    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit>;
    /// The earliest deadline at which `handle_timeout` must run.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The network's time before it collects the node's datagrams, for a node whose
    /// `poll_transmit` has no clock of its own (an [`Endpoint`] keeps the last `now` it was
    /// given, so it ignores this).
    fn clock(&mut self, _now: Instant) {}
}

impl SimNode for Endpoint {
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        Endpoint::handle(self, now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        Endpoint::poll_transmit(self, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
}

/// Lets one network hold different kinds of node as `Box<dyn SimNode>`.
impl<T: SimNode + ?Sized> SimNode for Box<T> {
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        (**self).handle(now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        (**self).poll_transmit(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }

    fn clock(&mut self, now: Instant) {
        (**self).clock(now);
    }
}

/// A node's index in its [`Network`], in the order of `add_node`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NodeId(pub(crate) usize);

/// A distinct test address per index: `10.0.hi.lo:7000`.
pub(crate) fn addr(index: u16) -> SocketAddr {
    let [hi, lo] = index.to_be_bytes();
    SocketAddr::from(([10, 0, hi, lo], 7000))
}

/// The `on_deliver` hook: sees every copy a link is about to deliver, may rewrite its bytes, and
/// returns `false` to drop it.
pub(crate) type DeliverHook = Box<dyn FnMut(&SocketAddr, &SocketAddr, &mut Vec<u8>) -> bool>;

/// The `on_drop` hook: sees every datagram a link refuses (loss, MTU, full queue), as
/// `(from, to, bytes)`.
pub(crate) type DropHook = Box<dyn FnMut(&SocketAddr, &SocketAddr, &[u8])>;

/// Events without going idle after which `drive*` declares a live-lock.
pub(crate) const DEFAULT_STEP_BUDGET: u64 = 10_000_000;

/// Room for any UDP payload, so a node that writes more than the MTU is caught by the link's
/// MTU check rather than by a short buffer.
const TRANSMIT_BUFFER: usize = 65_536;

struct Slot<N> {
    node: N,
    /// The address the node's datagrams come from, and the one that reaches it.
    addr: SocketAddr,
    /// `poll_timeout` as of the last time the network touched the node.
    timeout: Option<Instant>,
    /// Touched through `node_mut`: may have datagrams or a new timeout to collect.
    dirty: bool,
}

/// The simulated network: nodes, links, datagrams in flight and the virtual clock.
pub(crate) struct Network<N: SimNode> {
    seed: u64,
    epoch: Instant,
    now: Instant,
    rng: SimRng,
    nodes: Vec<Slot<N>>,
    // BTreeMaps, not HashMaps: nothing here may depend on a per-process random hash order.
    routes: BTreeMap<SocketAddr, NodeId>,
    default_link: LinkConfig,
    links: BTreeMap<(NodeId, NodeId), Link>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    /// Every node's deadline as `(deadline, index)`, earliest first, so a step costs the
    /// nodes due rather than all of them (10,000-node runs). Entries are not removed when a
    /// node's deadline moves: one whose deadline no longer matches its slot is stale and
    /// skipped when it comes up.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Nodes touched through `node_mut` since the last collection, each once.
    dirty: Vec<usize>,
    next_seq: u64,
    unroutable: u64,
    buf: Vec<u8>,
    hook: Option<DeliverHook>,
    drop_hook: Option<DropHook>,
    trace: Option<Vec<TraceEvent>>,
    step_budget: u64,
    budget_left: u64,
}

impl<N: SimNode> Network<N> {
    /// An empty network whose every random choice follows from `seed`. The real clock is read
    /// once, here, for the epoch; virtual time is the epoch plus the simulated offset.
    pub(crate) fn new(seed: u64) -> Network<N> {
        let epoch = Instant::now();
        Network {
            seed,
            epoch,
            now: epoch,
            rng: SimRng::derive(seed, u64::MAX),
            nodes: Vec::new(),
            routes: BTreeMap::new(),
            default_link: LinkConfig::default(),
            links: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            next_seq: 0,
            unroutable: 0,
            buf: vec![0; TRANSMIT_BUFFER],
            hook: None,
            drop_hook: None,
            trace: None,
            step_budget: DEFAULT_STEP_BUDGET,
            budget_left: DEFAULT_STEP_BUDGET,
        }
    }

    /// The seed this network was built from.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// A generator owned by the scenario (node keys, workloads), derived from the seed and
    /// separate from the links' streams.
    pub(crate) fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// The current virtual time.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// The virtual time at which the network started.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Virtual time elapsed since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// The instant `offset` after the start.
    pub(crate) fn at(&self, offset: Duration) -> Instant {
        self.epoch + offset
    }

    /// Adds a node reachable at `addr`. Panics if another node holds that address.
    pub(crate) fn add_node(&mut self, addr: SocketAddr, node: N) -> NodeId {
        let id = NodeId(self.nodes.len());
        let previous = self.routes.insert(addr, id);
        assert!(previous.is_none(), "address {addr} is already taken");
        self.nodes.push(Slot {
            node,
            addr,
            timeout: None,
            dirty: true,
        });
        self.dirty.push(id.0);
        id
    }

    /// How many nodes there are.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node id, in order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = NodeId> + use<N> {
        (0..self.nodes.len()).map(NodeId)
    }

    /// A node, to inspect.
    pub(crate) fn node(&self, id: NodeId) -> &N {
        &self.nodes[id.0].node
    }

    /// A node, to act on (open a channel, send). Whatever it queues is collected at the next
    /// step, at the current virtual time.
    pub(crate) fn node_mut(&mut self, id: NodeId) -> &mut N {
        let slot = &mut self.nodes[id.0];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(id.0);
        }
        &mut slot.node
    }

    /// The address a node's datagrams come from and reach it at.
    pub(crate) fn addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[id.0].addr
    }

    /// The node holding `addr`, if any.
    pub(crate) fn node_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.routes.get(&addr).copied()
    }

    /// NAT rebinding: from now on the node's datagrams come from `new_addr`, and datagrams sent
    /// to `new_addr` reach it. The old address stops routing, as when a NAT drops the old
    /// mapping; datagrams already in flight to it still arrive.
    pub(crate) fn rewrite_source(&mut self, id: NodeId, new_addr: SocketAddr) {
        let old = self.nodes[id.0].addr;
        if old == new_addr {
            return;
        }
        assert!(
            !self.routes.contains_key(&new_addr),
            "address {new_addr} is already taken"
        );
        self.routes.remove(&old);
        self.routes.insert(new_addr, id);
        self.nodes[id.0].addr = new_addr;
    }

    /// The settings of links without an override.
    pub(crate) fn default_link(&self) -> LinkConfig {
        self.default_link
    }

    /// Changes the settings of every link without an override, effective for datagrams sent
    /// from now on.
    pub(crate) fn set_default_link(&mut self, config: LinkConfig) {
        config.validate();
        self.default_link = config;
    }

    /// Overrides the link from `from` to `to`, effective for datagrams sent from now on;
    /// datagrams in flight keep their fate. Its queue and serialiser carry over, so a capacity
    /// drop mid-run behaves like one.
    pub(crate) fn set_link(&mut self, from: NodeId, to: NodeId, config: LinkConfig) {
        config.validate();
        self.link_mut(from, to).config = Some(config);
    }

    /// [`Network::set_link`] in both directions.
    pub(crate) fn set_path(&mut self, a: NodeId, b: NodeId, config: LinkConfig) {
        self.set_link(a, b, config);
        self.set_link(b, a, config);
    }

    /// Returns the link from `from` to `to` to the default settings.
    pub(crate) fn clear_link(&mut self, from: NodeId, to: NodeId) {
        if let Some(link) = self.links.get_mut(&(from, to)) {
            link.config = None;
        }
    }

    /// The settings in force on the link from `from` to `to`.
    pub(crate) fn link_config(&self, from: NodeId, to: NodeId) -> LinkConfig {
        self.links
            .get(&(from, to))
            .and_then(|link| link.config)
            .unwrap_or(self.default_link)
    }

    /// Counters of the link from `from` to `to`.
    pub(crate) fn link_stats(&self, from: NodeId, to: NodeId) -> LinkStats {
        self.links
            .get(&(from, to))
            .map_or_else(LinkStats::default, |link| link.stats)
    }

    /// Counters of all links together.
    pub(crate) fn total_stats(&self) -> LinkStats {
        let mut total = LinkStats::default();
        for link in self.links.values() {
            total += link.stats;
        }
        total
    }

    /// Datagrams sent to an address no node held.
    pub(crate) fn unroutable(&self) -> u64 {
        self.unroutable
    }

    /// How many datagrams are in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Installs the hook that sees every copy about to be delivered: `(from, to, bytes)`; it may
    /// rewrite the bytes, and returns `false` to drop the copy.
    pub(crate) fn on_deliver(
        &mut self,
        hook: impl FnMut(&SocketAddr, &SocketAddr, &mut Vec<u8>) -> bool + 'static,
    ) {
        self.hook = Some(Box::new(hook));
    }

    /// Installs the hook that sees every datagram a link refuses: `(from, to, bytes)`.
    pub(crate) fn on_drop(&mut self, hook: impl FnMut(&SocketAddr, &SocketAddr, &[u8]) + 'static) {
        self.drop_hook = Some(Box::new(hook));
    }

    /// Removes the `on_deliver` hook.
    pub(crate) fn clear_on_deliver(&mut self) {
        self.hook = None;
    }

    /// Starts recording every datagram's fate (see [`Network::trace`]).
    pub(crate) fn record_trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
    }

    /// The trace recorded so far (empty unless [`Network::record_trace`] was called).
    pub(crate) fn trace(&self) -> &[TraceEvent] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// Takes the trace recorded so far and keeps recording.
    pub(crate) fn take_trace(&mut self) -> Vec<TraceEvent> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Events `drive*` may run without going idle before it declares a live-lock.
    pub(crate) fn set_step_budget(&mut self, events: u64) {
        self.step_budget = events;
        self.budget_left = events;
    }

    /// Puts a datagram straight into a node now, as if it came from `from` (spoofing,
    /// replay): no link, no hook, no counters but the trace.
    pub(crate) fn inject(&mut self, from: SocketAddr, to: NodeId, bytes: &[u8]) {
        let to_addr = self.nodes[to.0].addr;
        self.record(from, to_addr, bytes, TraceKind::Injected);
        // A copy: the node opens in place, and the caller may inject the same bytes again.
        self.nodes[to.0]
            .node
            .handle(self.now, from, &mut bytes.to_vec());
        self.collect(to);
    }

    /// The instant of the next event (a datagram arriving or a node's timer), after collecting
    /// what nodes touched through `node_mut` queued. `None`: the network is idle.
    pub(crate) fn next_event(&mut self) -> Option<Instant> {
        self.settle();
        let arrival = self.in_flight.peek().map(|Reverse(packet)| packet.at);
        let timer = self.next_timer();
        match (arrival, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Advances the clock to the next event and runs everything due then: arrivals in order,
    /// then timers, collecting each node's datagrams right after it ran (so zero-delay links
    /// work within the instant). Returns `false`, without moving the clock, when idle.
    pub(crate) fn step(&mut self) -> bool {
        self.budget_left = self.step_budget;
        self.step_inner()
    }

    /// Steps until nothing is pending. A scenario with periodic timers never goes idle: use
    /// [`Network::drive_for`] there; `drive` panics after the step budget.
    pub(crate) fn drive(&mut self) {
        self.budget_left = self.step_budget;
        while self.step_inner() {}
    }

    /// Runs every event up to and including `deadline`, then sets the clock to `deadline`.
    pub(crate) fn drive_until(&mut self, deadline: Instant) {
        self.budget_left = self.step_budget;
        while self.next_event().is_some_and(|next| next <= deadline) {
            self.step_inner();
        }
        self.now = self.now.max(deadline);
    }

    /// [`Network::drive_until`] `now + duration`.
    pub(crate) fn drive_for(&mut self, duration: Duration) {
        self.drive_until(self.now + duration);
    }

    /// Steps until `done(self)` holds (checked before each step) and returns `true`, or returns
    /// `false` if the network goes idle first.
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        self.budget_left = self.step_budget;
        loop {
            if done(self) {
                return true;
            }
            if !self.step_inner() {
                return done(self);
            }
        }
    }

    fn step_inner(&mut self) -> bool {
        let Some(next) = self.next_event() else {
            return false;
        };
        // A deadline already in the past fires now: virtual time never goes backwards.
        self.now = self.now.max(next);
        self.spend();
        loop {
            let mut ran = false;
            while self
                .in_flight
                .peek()
                .is_some_and(|Reverse(packet)| packet.at <= self.now)
            {
                let Some(Reverse(packet)) = self.in_flight.pop() else {
                    break;
                };
                self.spend();
                self.deliver(packet);
                ran = true;
            }
            // Every node due now, in index order, each once per pass (as a scan of all
            // nodes would): one that stays due runs again in the next pass.
            let mut due = Vec::new();
            while let Some(&Reverse((at, index))) = self.timers.peek() {
                if at > self.now {
                    break;
                }
                self.timers.pop();
                if self.nodes[index].timeout == Some(at) {
                    due.push(index);
                }
            }
            due.sort_unstable();
            due.dedup();
            for index in due {
                let slot = &mut self.nodes[index];
                if slot.timeout.is_some_and(|t| t <= self.now) {
                    // Its heap entry is spent: `collect` pushes whatever deadline comes next,
                    // the same one included.
                    slot.timeout = None;
                    slot.node.handle_timeout(self.now);
                    self.spend();
                    self.collect(NodeId(index));
                    ran = true;
                }
            }
            if !ran {
                return true;
            }
        }
    }

    fn spend(&mut self) {
        if self.budget_left == 0 {
            live_lock(self.step_budget, self.seed, self.elapsed());
        }
        self.budget_left -= 1;
    }

    fn settle(&mut self) {
        for index in std::mem::take(&mut self.dirty) {
            if self.nodes[index].dirty {
                self.collect(NodeId(index));
            }
        }
    }

    /// The earliest live deadline, dropping stale heap entries on the way.
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, index))) = self.timers.peek() {
            if self.nodes[index].timeout == Some(at) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Sends every datagram the node has queued and refreshes its deadline.
    fn collect(&mut self, id: NodeId) {
        let slot = &mut self.nodes[id.0];
        slot.dirty = false;
        slot.node.clock(self.now);
        while let Some(transmit) = slot.node.poll_transmit(&mut self.buf) {
            assert!(
                transmit.len <= self.buf.len(),
                "node {id:?} reported a {}-byte datagram from a {}-byte buffer",
                transmit.len,
                self.buf.len()
            );
            let from = slot.addr;
            let bytes = &self.buf[..transmit.len];
            let to = transmit.destination;
            // A node whose poll_transmit never returns None is a live-lock too. Not
            // `self.spend()`: `slot` and `buf` stay borrowed.
            if self.budget_left == 0 {
                live_lock(self.step_budget, self.seed, self.now - self.epoch);
            }
            self.budget_left -= 1;
            send(
                SendCtx {
                    now: self.now,
                    epoch: self.epoch,
                    seed: self.seed,
                    routes: &self.routes,
                    default_link: &self.default_link,
                    links: &mut self.links,
                    in_flight: &mut self.in_flight,
                    next_seq: &mut self.next_seq,
                    unroutable: &mut self.unroutable,
                    trace: &mut self.trace,
                    drop_hook: &mut self.drop_hook,
                },
                id,
                from,
                to,
                bytes,
            );
        }
        let timeout = slot.node.poll_timeout();
        if timeout != slot.timeout
            && let Some(at) = timeout
        {
            self.timers.push(Reverse((at, id.0)));
        }
        slot.timeout = timeout;
    }

    fn deliver(&mut self, mut packet: InFlight) {
        let (_, to) = packet.link;
        let refused = match self.hook.as_mut() {
            Some(hook) => !hook(&packet.from, &packet.to, &mut packet.bytes),
            None => false,
        };
        if refused {
            self.link_mut(packet.link.0, to).stats.dropped_by_hook += 1;
            self.record(
                packet.from,
                packet.to,
                &packet.bytes,
                TraceKind::DroppedByHook,
            );
            return;
        }
        self.link_mut(packet.link.0, to).stats.delivered += 1;
        self.record(packet.from, packet.to, &packet.bytes, TraceKind::Delivered);
        self.nodes[to.0]
            .node
            .handle(self.now, packet.from, &mut packet.bytes);
        self.collect(to);
    }

    fn link_mut(&mut self, from: NodeId, to: NodeId) -> &mut Link {
        let seed = self.seed;
        self.links
            .entry((from, to))
            .or_insert_with(|| new_link(seed, from, to))
    }

    fn record(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8], kind: TraceKind) {
        let at = self.now - self.epoch;
        if let Some(trace) = self.trace.as_mut() {
            trace.push(TraceEvent {
                at,
                from,
                to,
                len: bytes.len(),
                digest: digest(bytes),
                kind,
            });
        }
    }
}

impl Network<Endpoint> {
    /// Adds a weft endpoint at `addr` whose keys and seed come from the network's generator.
    pub(crate) fn add_endpoint(&mut self, addr: SocketAddr, config: EndpointConfig) -> NodeId {
        let mut ed25519 = [0u8; 32];
        let mut x25519 = [0u8; 32];
        let mut seed = [0u8; 32];
        self.rng.fill(&mut ed25519);
        self.rng.fill(&mut x25519);
        self.rng.fill(&mut seed);
        let identity = Identity::from_secret_bytes(ed25519, x25519);
        let endpoint = Endpoint::new(config, identity, seed, self.now);
        self.add_node(addr, endpoint)
    }
}

/// Two sides of one bare reliability channel, `a` at `addr(1)` and `b` at `addr(2)`, over links
/// with `link`'s settings, their packet numbers starting at random 32-bit values drawn from the
/// network's seed.
pub(crate) fn channel_pair(
    seed: u64,
    capabilities: Capabilities,
    config: &ReliabilityConfig,
    link: LinkConfig,
) -> (Network<ChannelNode>, NodeId, NodeId) {
    let mut net = Network::new(seed);
    net.set_default_link(link);
    let now = net.now();
    let first_a = net.rng().next_u64() & 0xFFFF_FFFF;
    let first_b = net.rng().next_u64() & 0xFFFF_FFFF;
    let node_a = ChannelNode::new(capabilities, config, now, (1, 2), addr(2), first_a);
    let node_b = ChannelNode::new(capabilities, config, now, (2, 1), addr(1), first_b);
    let a = net.add_node(addr(1), node_a);
    let b = net.add_node(addr(2), node_b);
    (net, a, b)
}

impl Network<ChannelNode> {
    /// A channel node, its clock moved to the network's, to act on between events.
    pub(crate) fn channel(&mut self, id: NodeId) -> &mut ChannelNode {
        let now = self.now;
        self.node_mut(id).at(now)
    }
}

fn live_lock(budget: u64, seed: u64, elapsed: Duration) -> ! {
    panic!(
        "simulator live-lock: {budget} events without going idle (seed {seed}, virtual time \
         {elapsed:?}); a node's poll_timeout stays at or before now after handle_timeout, or \
         zero-delay links ping-pong forever, or the scenario has periodic timers (use drive_for)"
    );
}
