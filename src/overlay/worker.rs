//! The overlay as a service on the node's worker (`service::host`): carries the sans-IO
//! [`Dht`] over one reliable channel per peer (PROTOCOL.md §10: SCTP mode, RESEND without
//! ORDERED, so independent RPCs do not block each other).
//!
//! - **Channels.** A frame for a peer with no channel opens one by peer id and address; frames
//!   wait for it (at most [`OverlayConfig::max_queued`] per peer). A channel a peer opened is
//!   used for our frames to it too. A channel unused for [`OverlayConfig::idle`] is closed; the
//!   endpoint keeps the session, so the next open is one round trip. The first frame rides the
//!   open as early data ([`Context::open_with`]): it leaves with the CHANNEL_COOKIE as soon as
//!   the peer's ACKNOWLEDGE completes the channel id, not after `Opened` reached us.
//! - **Node ids.** Each side of a channel that is not a client sends its node id once: its
//!   certified id with the proof (SET_CONNECTION_OPT option 4, [`ConnectionOpt::CertifiedId`]),
//!   which the DHT's `CertificateCheck` admits or refuses; only a peer whose id checked out is
//!   passed to the DHT with an id, so only such peers enter the routing table and a client
//!   stays out. The node's own id comes from the check once the consensus service certified
//!   it (PROTOCOL.md §11): until then the node is a client. Where the driver vouches for ids
//!   (`accept_provisional`: the simulator, tests) an id is provisional, option 3: the one the
//!   peer's key implies ([`provisional_id`]).
//! - **Addresses.** A contact needs the peer's address, which a delivery does not carry: the
//!   first messages of a peer that opened a channel to us wait (bounded) for the shard's answer
//!   to a peer-info question, which also gives the channel's RTT to the DHT's timeouts.
//! - **Hostile input.** Frames past the frame bound are dropped before parsing; every bound
//!   (peers, frames waiting, opens in flight, application requests) refuses and counts
//!   (`weft_overlay_dropped_total{reason}`).

use super::api::{DhtCommand, GetOutcome, PutOutcome};

mod durable;
mod ids;
mod keys;
use ids::Announced;
mod join;
mod report;
#[cfg(test)]
mod tests;
use super::id::{Contact, NodeId, provisional_id};
use super::kademlia::{Dht, KademliaConfig, Sender as From, Transmit};
use super::rpc::Value;
use crate::channel::ChannelHandle;
use crate::service::host::{Command, Context, HostError, Service, ServiceTag, body};
use crate::service::{Delivery, Input, OpenFailure};
use crate::stats::HistogramSlots;
use crate::wire::{CloseReason, PeerId};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// A node to join through: its address and, when known, its peer id. The peer id saves a round
/// trip: an open by bare address first PINGs the address from shard 0 to learn the peer
/// (ENGINE.md, "Opens by bare address"), and, with several shards, can race another shard's IK
/// open to the same peer (ENGINE.md's limits there), which the peer id avoids.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its peer id, when known (`PEER@ADDR`, or a `peers` record that lists the address).
    pub peer: Option<PeerId>,
}

impl std::str::FromStr for Bootstrap {
    type Err = String;
    /// `ADDR` or `PEER@ADDR`, PEER the 32 hex digits `weft id` and the ready line print.
    fn from_str(text: &str) -> Result<Bootstrap, String> {
        let (peer, addr) = match text.split_once('@') {
            Some((peer, addr)) => (
                Some(PeerId::from_hex(peer).ok_or_else(|| {
                    format!("\"{peer}\" is not a peer id (32 hex digits, as `weft id` prints)")
                })?),
                addr,
            ),
            None => (None, text),
        };
        let addr = addr.parse().map_err(|_| {
            format!("\"{addr}\" is not a socket address like 192.0.2.1:7700 (or PEER@ADDR)")
        })?;
        Ok(Bootstrap { addr, peer })
    }
}

/// How the overlay service runs.
#[derive(Clone, Debug)]
pub struct OverlayConfig {
    /// The DHT's settings (`client` for client mode).
    pub kademlia: KademliaConfig,
    /// Nodes to join through (`weft node --bootstrap`).
    pub bootstrap: Vec<Bootstrap>,
    /// Whether peers' provisional ids are accepted into the routing table (where the driver
    /// vouches for ids). False on a node: only ids its network certified enter, the node's own
    /// from the `CertificateCheck` once issued, and bootstrap nodes count once their proof came.
    pub accept_provisional: bool,
    /// A channel unused this long is closed (its session stays cached).
    pub idle: Duration,
    /// Most peers with channels, frames waiting or questions open.
    pub max_peers: usize,
    /// Most frames waiting per peer for its channel or its address.
    pub max_queued: usize,
    /// Most channel opens in flight.
    pub max_opening: usize,
    /// Most application requests waiting for their answer.
    pub max_requests: usize,
}

impl Default for OverlayConfig {
    fn default() -> OverlayConfig {
        OverlayConfig {
            kademlia: KademliaConfig::default(),
            bootstrap: Vec::new(),
            accept_provisional: true,
            idle: Duration::from_secs(60),
            max_peers: 4096,
            max_queued: 64,
            max_opening: 256,
            max_requests: 1024,
        }
    }
}

/// Where the DHT's journaled changes are committed before the frames that depend on them (a
/// STORE's ACK) go out: persistence plugs in here (`node::services` opens
/// `overlay::persist::OverlayStore` in the data directory). The service calls
/// [`sync`](Self::sync) once per batch of inputs ([`Service::end_batch`]), not once per
/// message: one fsync covers every STORE of the batch.
pub trait DhtStore: Send {
    /// Commits what the DHT journaled since the last call and releases the replies that waited
    /// for it; `Ok(true)` when something was written, `Err` names why it could not.
    fn sync(&mut self, dht: &mut Dht) -> Result<bool, String>;

    /// Records held for others on disk, as of the last commit (`weft status`, the
    /// `weft_overlay_store_records` gauge); `None` when the store cannot tell.
    fn records(&self) -> Option<u64> {
        None
    }
}

/// Most messages held for their senders' addresses over all peers: each holds a receive buffer
/// of its shard until the shard answers (within its next loop).
const MAX_HELD: usize = 1024;

/// The token of our node-id announcements; application tokens start at 1.
const ANNOUNCE: u64 = 0;
/// How often the counters are copied into the host's table (it publishes every 500 ms).
const SYNC_EVERY: Duration = Duration::from_millis(250);
/// First wait before trying the bootstrap nodes again when none answered; doubles to a minute.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(2);
const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(60);
/// How often a node without its certified id looks whether the consensus service issued it.
const CERTIFY_POLL: Duration = Duration::from_millis(250);
/// The counter every refusal of this module goes to, by reason.
const DROPPED: &str = "weft_overlay_dropped_total";
/// The largest frame sent as early data with the open of its channel (one packet's worth: the
/// DHT's requests fit; a large STORE waits for the channel).
const MAX_EARLY_FRAME: usize = 1024;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Link {
    None,
    Opening,
    Open {
        shard: usize,
        channel: ChannelHandle,
    },
}

struct Peer {
    addr: Option<SocketAddr>,
    /// Its node id, once it announced one that checked out.
    node: Option<NodeId>,
    link: Link,
    last_used: Instant,
    /// Frames for it, waiting for the channel.
    outbox: Vec<Vec<u8>>,
    /// Its messages, waiting for its address.
    held: Vec<Delivery>,
    asked_info: bool,
    announced: bool,
}

impl Peer {
    fn new(now: Instant) -> Peer {
        Peer {
            addr: None,
            node: None,
            link: Link::None,
            last_used: now,
            outbox: Vec::new(),
            held: Vec::new(),
            asked_info: false,
            announced: false,
        }
    }
}

enum Token {
    Open(PeerId, SocketAddr),
    Bootstrap(SocketAddr),
    Info(PeerId),
}

enum Waiting {
    Put(Sender<PutOutcome>),
    Get(Sender<GetOutcome>),
}

struct Joining {
    waiting: usize,
    contacts: Vec<Contact>,
    next_try: Option<Instant>,
    backoff: Duration,
}

/// The overlay service: the DHT and its channels (see the module doc).
pub struct OverlayService {
    dht: Dht,
    config: OverlayConfig,
    provisional: bool,
    peers: HashMap<PeerId, Peer>,
    channels: HashMap<(usize, ChannelHandle), PeerId>,
    tokens: HashMap<u64, Token>,
    opening: usize,
    requests: HashMap<u64, Waiting>,
    next_request: u64,
    bootstrap: Joining,
    next_idle_check: Instant,
    last_sync: Option<Instant>,
    histograms: Option<(HistogramSlots, HistogramSlots)>,
    /// The store's commit latency histogram, registered on the first commit.
    commit_slots: Option<HistogramSlots>,
    store: Option<Box<dyn DhtStore>>,
    /// Messages held for their senders' addresses, over all peers.
    held: usize,
    /// The DHT's self-initiated connections (ℓ): kept open, and reported when they close.
    links: HashMap<PeerId, NodeId>,
    /// Bootstrap peers whose channel opened, waiting for their certified id.
    awaiting: HashMap<PeerId, SocketAddr>,
    /// Addresses with an open in flight: one at a time each, whatever ids peers list there.
    dialling: HashSet<SocketAddr>,
    /// When to look for the node's own certified id again; `None` once it has it (or where
    /// the driver vouches).
    certify_at: Option<Instant>,
}

/// Seconds since the Unix epoch, for record expiry and republishing (and for reading records
/// back from a store at start).
pub fn wall() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl OverlayService {
    /// The service of a node whose sessions prove `peer`, with its provisional node id; every
    /// random choice of the DHT follows from `seed`.
    pub fn new(config: OverlayConfig, peer: PeerId, addr: SocketAddr, seed: [u8; 32]) -> Self {
        let own = Contact {
            id: provisional_id(&peer),
            peer,
            addr,
        };
        let dht = Dht::new(config.kademlia.clone(), own, seed);
        let now = Instant::now();
        OverlayService {
            dht,
            provisional: true,
            peers: HashMap::new(),
            channels: HashMap::new(),
            tokens: HashMap::new(),
            opening: 0,
            requests: HashMap::new(),
            next_request: ANNOUNCE,
            bootstrap: Joining {
                waiting: 0,
                contacts: Vec::new(),
                // Runs on the host's first pass.
                next_try: (!config.bootstrap.is_empty()).then_some(now),
                backoff: BOOTSTRAP_RETRY,
            },
            next_idle_check: now,
            last_sync: None,
            histograms: None,
            commit_slots: None,
            store: None,
            held: 0,
            links: HashMap::new(),
            awaiting: HashMap::new(),
            dialling: HashSet::new(),
            // A configured client never shows an id, so it need not look for one.
            certify_at: (!config.accept_provisional && !config.kademlia.client).then_some(now),
            config,
        }
    }

    /// The service with `store` committing the DHT's changes once per batch of inputs, before
    /// the STORE ACKs of the batch go out. Restore the DHT from the store first
    /// ([`dht_mut`](Self::dht_mut); after setting its certificate check, so only certified
    /// contacts return to the table) and turn its journal on (`Dht::enable_journal`): without
    /// the journal nothing is committed and no ACK waits. The DHT is kept, not replaced.
    pub fn with_store(mut self, store: Box<dyn DhtStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The service with `check` deciding which node ids are certified (and the node's own):
    /// the node's network (`node::trust`). Call after [`OverlayService::with_store`], which
    /// replaces the DHT.
    pub fn with_certificate_check(
        mut self,
        check: Box<dyn super::kademlia::CertificateCheck>,
    ) -> Self {
        self.dht.set_certificate_check(check);
        self
    }

    /// The DHT, for tests and reports.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// The DHT, to restore what a store read back before the service runs.
    pub fn dht_mut(&mut self) -> &mut Dht {
        &mut self.dht
    }

    fn count(cx: &mut Context<'_>, reason: &'static str) {
        cx.stats().add(DROPPED, Some(("reason", reason)), 1);
    }

    fn client(&self) -> bool {
        self.config.kademlia.client
    }

    /// Whether `peer` has an entry or there is room for one (counted when there is not).
    fn room(&self, peer: &PeerId, cx: &mut Context<'_>) -> bool {
        let room = self.peers.contains_key(peer) || self.peers.len() < self.config.max_peers;
        if !room {
            Self::count(cx, "peers_full");
        }
        room
    }

    /// Forgets a peer and its channel, closing the channel with `reason` if it is open.
    fn forget(&mut self, peer: PeerId, close: Option<CloseReason>, cx: &mut Context<'_>) {
        let Some(entry) = self.peers.remove(&peer) else {
            return;
        };
        self.held = self.held.saturating_sub(entry.held.len());
        // Its negotiated options and the checks it cost go with it: kept, they would fill the
        // DHT's `max_peer_options` with peers long gone and refuse every newcomer's.
        self.dht.forget_peer(&peer);
        if let Some(node) = self.links.remove(&peer) {
            self.dht.link_closed(&node);
        }
        if let Link::Open { shard, channel } = entry.link {
            self.channels.remove(&(shard, channel));
            if let Some(reason) = close {
                let _ = cx.close(shard, channel, reason);
            }
        }
        self.channels.retain(|_, p| *p != peer);
    }

    fn transmit(&mut self, now: Instant, t: Transmit, cx: &mut Context<'_>) {
        self.reach(now, t.peer, t.addr, Some(t.bytes), cx);
    }

    /// Sends `bytes` to `peer` on its channel, or opens one (the bytes waiting for it); false
    /// when there is no channel and none could be opened.
    fn reach(
        &mut self,
        now: Instant,
        peer: PeerId,
        addr: SocketAddr,
        bytes: Option<Vec<u8>>,
        cx: &mut Context<'_>,
    ) -> bool {
        let max_queued = self.config.max_queued;
        let can_open = self.opening < self.config.max_opening;
        if !self.room(&peer, cx) {
            return false;
        }
        let entry = self.peers.entry(peer).or_insert_with(|| Peer::new(now));
        entry.addr.get_or_insert(addr);
        entry.last_used = now;
        match (entry.link, bytes) {
            (Link::Open { shard, channel }, Some(bytes)) => {
                if cx.send(shard, channel, &bytes).is_err() {
                    Self::count(cx, "send_refused");
                }
                true
            }
            (Link::Open { .. } | Link::Opening, None) => true,
            (Link::Opening, Some(bytes)) => {
                if entry.outbox.len() < max_queued {
                    entry.outbox.push(bytes);
                } else {
                    Self::count(cx, "queue_full");
                }
                true
            }
            (Link::None, _) if !can_open => {
                Self::count(cx, "opens_full");
                false
            }
            // Replies name any address under any number of ids: a third party's must not get
            // an open's INITs once per id at a time (docs/SECURITY.md, "Second round").
            (Link::None, _) if self.dialling.contains(&addr) => {
                Self::count(cx, "address_opening");
                false
            }
            (Link::None, bytes) => {
                // The first frame rides the open as early data (it leaves with the packet that
                // completes the channel); a large one (a STORE) waits for the channel instead.
                let (early, later) = match bytes {
                    Some(b) if b.len() <= MAX_EARLY_FRAME => (Some(b), None),
                    other => (None, other),
                };
                let opened = self.open_contact(peer, addr, early.as_deref(), cx);
                self.opened(peer, addr, opened, later, cx)
            }
        }
    }

    /// Books an open [`reach`](Self::reach) asked for; `later` waits for the channel.
    fn opened(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        opened: Result<u64, HostError>,
        later: Option<Vec<u8>>,
        cx: &mut Context<'_>,
    ) -> bool {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return false;
        };
        match opened {
            Ok(token) => {
                entry.link = Link::Opening;
                entry.outbox.extend(later);
                self.tokens.insert(token, Token::Open(peer, addr));
                self.dialling.insert(addr);
                self.opening = self.opening.saturating_add(1);
                true
            }
            Err(_) => {
                Self::count(cx, "open_refused");
                false
            }
        }
    }

    /// Keeps a self-initiated connection to `contact` (one of the DHT's ℓ links); one that
    /// cannot be opened, or closes, is reported so the DHT asks for another.
    pub(super) fn connect(&mut self, now: Instant, contact: Contact, cx: &mut Context<'_>) {
        self.links.insert(contact.peer, contact.id);
        if !self.reach(now, contact.peer, contact.addr, None, cx) {
            self.links.remove(&contact.peer);
            self.dht.link_closed(&contact.id);
        }
    }

    /// A channel to `peer` is open: frames waiting for it go out, and our id after them.
    fn attach(
        &mut self,
        now: Instant,
        peer: PeerId,
        addr: SocketAddr,
        shard: usize,
        channel: ChannelHandle,
        cx: &mut Context<'_>,
    ) {
        if !self.room(&peer, cx) {
            let _ = cx.close(shard, channel, CloseReason::Refused);
            return;
        }
        let entry = self.peers.entry(peer).or_insert_with(|| Peer::new(now));
        entry.addr.get_or_insert(addr);
        entry.last_used = now;
        if !matches!(entry.link, Link::Open { .. }) {
            entry.link = Link::Open { shard, channel };
        }
        let Link::Open { shard, channel } = entry.link else {
            return;
        };
        for frame in std::mem::take(&mut entry.outbox) {
            if cx.send(shard, channel, &frame).is_err() {
                Self::count(cx, "send_refused");
            }
        }
        self.channels.insert((shard, channel), peer);
        self.announce(now, peer);
    }

    /// Sends what the DHT wants sent and answers what finished.
    fn flush(&mut self, now: Instant, cx: &mut Context<'_>) {
        loop {
            if let Some(t) = self.dht.poll_transmit() {
                self.transmit(now, t, cx);
            } else if let Some(event) = self.dht.poll_event() {
                self.on_event(now, event, cx);
            } else {
                break;
            }
        }
        if self
            .last_sync
            .is_none_or(|at| now.saturating_duration_since(at) >= SYNC_EVERY)
        {
            self.last_sync = Some(now);
            self.sync_stats(cx);
        }
    }

    fn deliver(&mut self, now: Instant, delivery: Delivery) {
        let peer = delivery.peer;
        let Some(entry) = self.peers.get(&peer) else {
            return;
        };
        let Some(addr) = entry.addr else {
            return;
        };
        let from = From {
            peer,
            addr,
            node: entry.node,
        };
        self.dht.handle(now, wall(), from, body(&delivery));
    }

    fn close_idle(&mut self, now: Instant, cx: &mut Context<'_>) {
        let idle = self.config.idle;
        let stale: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(peer, p)| {
                matches!(p.link, Link::Open { .. })
                    && p.outbox.is_empty()
                    && !self.links.contains_key(peer)
                    && now.saturating_duration_since(p.last_used) >= idle
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in stale {
            self.forget(peer, Some(CloseReason::Idle), cx);
            // A bootstrap peer that never showed an id: joining tries again without it.
            self.bootstrap_id(now, peer, None);
        }
        self.next_idle_check = now
            .checked_add(
                idle.checked_div(4)
                    .unwrap_or(idle)
                    .max(Duration::from_millis(100)),
            )
            .unwrap_or(now);
    }

    fn fresh_token(&mut self) -> u64 {
        self.next_request = self.next_request.wrapping_add(1).max(1);
        self.next_request
    }
}

impl Service for OverlayService {
    fn tag(&self) -> ServiceTag {
        ServiceTag::OVERLAY
    }

    fn name(&self) -> &'static str {
        "overlay"
    }

    fn on_message(&mut self, now: Instant, delivery: Delivery, cx: &mut Context<'_>) {
        let frame = body(&delivery);
        if frame.len() > self.config.kademlia.frame.value.max_bytes {
            Self::count(cx, "too_large");
            return;
        }
        let announced = if Self::may_announce(frame) {
            self.announced_id(&delivery.peer, frame)
        } else {
            Announced::Nothing
        };
        let announced = match announced {
            Announced::Nothing => None,
            Announced::Id(id) => {
                self.bootstrap_id(now, delivery.peer, Some(id));
                Some(id)
            }
            Announced::Refused => {
                self.bootstrap_id(now, delivery.peer, None);
                None
            }
        };
        let (peer, shard, channel) = (delivery.peer, delivery.shard, delivery.channel);
        let max_queued = self.config.max_queued;
        if !self.room(&peer, cx) {
            return;
        }
        let entry = self.peers.entry(peer).or_insert_with(|| Peer::new(now));
        entry.last_used = now;
        if announced.is_some() {
            entry.node = announced;
        }
        let adopt = !matches!(entry.link, Link::Open { .. });
        if adopt {
            entry.link = Link::Open { shard, channel };
        }
        if entry.addr.is_none() {
            // The address comes with the shard's answer; the messages wait for it.
            if entry.held.len() >= max_queued || self.held >= MAX_HELD {
                Self::count(cx, "queue_full");
                return;
            }
            entry.held.push(delivery);
            self.held = self.held.saturating_add(1);
            if !entry.asked_info {
                entry.asked_info = true;
                match cx.peer_info(peer) {
                    Ok(token) => {
                        self.tokens.insert(token, Token::Info(peer));
                    }
                    Err(_) => {
                        Self::count(cx, "info_refused");
                        self.forget(peer, None, cx);
                    }
                }
            }
            self.channels.insert((shard, channel), peer);
            return;
        }
        self.channels.insert((shard, channel), peer);
        if adopt {
            let addr = entry.addr;
            if let Some(addr) = addr {
                self.attach(now, peer, addr, shard, channel, cx);
            }
        }
        self.deliver(now, delivery);
        self.flush(now, cx);
    }

    fn on_input(&mut self, now: Instant, input: Input, cx: &mut Context<'_>) {
        match input {
            Input::Message(delivery) => {
                self.on_message(now, delivery, cx);
                return;
            }
            Input::Opened {
                token,
                shard,
                channel,
                peer,
                ..
            } => match self.tokens.remove(&token) {
                Some(Token::Open(asked, to)) => {
                    self.opening = self.opening.saturating_sub(1);
                    self.dialling.remove(&to);
                    match self.peers.get(&asked).and_then(|p| p.addr) {
                        Some(addr) if asked == peer => {
                            self.attach(now, peer, addr, shard, channel, cx);
                            // The handshake measured the path: its RTT times the first
                            // requests, before any RPC has.
                            if let Ok(token) = cx.peer_info(peer) {
                                self.tokens.insert(token, Token::Info(peer));
                            }
                        }
                        _ => {
                            Self::count(cx, "open_mismatch");
                            let _ = cx.close(shard, channel, CloseReason::Refused);
                        }
                    }
                }
                Some(Token::Bootstrap(addr)) => {
                    let own = self.dht.own().peer;
                    let contact = (peer != own).then(|| Contact {
                        id: provisional_id(&peer),
                        peer,
                        addr,
                    });
                    if contact.is_some() {
                        if let Some(entry) = self.peers.get_mut(&peer) {
                            entry.addr = Some(addr);
                        }
                        self.attach(now, peer, addr, shard, channel, cx);
                    }
                    match contact {
                        // Where ids are certified, the peer counts once its proof came.
                        Some(_) if !self.config.accept_provisional => {
                            let known = self.peers.get(&peer).and_then(|p| p.node);
                            self.awaiting.insert(peer, addr);
                            if known.is_some() {
                                self.bootstrap_id(now, peer, known);
                            } else {
                                self.ask_for_id(now, peer, addr);
                            }
                        }
                        contact => self.bootstrap_answered(now, contact),
                    }
                }
                _ => {
                    let _ = cx.close(shard, channel, CloseReason::Refused);
                }
            },
            Input::OpenFailed { token, reason, .. } => match self.tokens.remove(&token) {
                Some(Token::Open(peer, to)) => {
                    self.opening = self.opening.saturating_sub(1);
                    self.dialling.remove(&to);
                    if let Some(entry) = self.peers.get(&peer)
                        && entry.link == Link::Opening
                    {
                        // Its requests time out in the DHT, which marks the contact failed.
                        self.forget(peer, None, cx);
                    }
                }
                Some(Token::Bootstrap(addr)) => {
                    let why = match reason {
                        OpenFailure::Refused(error) => error.to_string(),
                        OpenFailure::Failed(reason) => format!("{reason:?}"),
                    };
                    tracing::warn!(%addr, %why, "overlay: bootstrap node did not answer");
                    self.bootstrap_answered(now, None);
                }
                _ => {}
            },
            Input::Closed { shard, channel, .. } => {
                if let Some(peer) = self.channels.remove(&(shard, channel))
                    && self
                        .peers
                        .get(&peer)
                        .is_some_and(|p| p.link == Link::Open { shard, channel })
                {
                    self.forget(peer, None, cx);
                    self.bootstrap_id(now, peer, None);
                }
            }
            Input::PeerInfo {
                token, peer, info, ..
            } => {
                let Some(Token::Info(asked)) = self.tokens.remove(&token) else {
                    return;
                };
                let info = info.filter(|_| asked == peer);
                let Some(entry) = self.peers.get_mut(&asked) else {
                    return;
                };
                let Some(info) = info else {
                    Self::count(cx, "no_peer_info");
                    self.forget(asked, None, cx);
                    return;
                };
                entry.addr = Some(info.address);
                let node = entry.node.unwrap_or_else(|| provisional_id(&peer));
                if let Some(keys) = &info.static_keys {
                    self.dht.note_static_keys(&peer, keys);
                }
                if let Some(rtt) = info.rtt {
                    self.dht.note_rtt(&node, rtt);
                }
                let held = std::mem::take(&mut entry.held);
                self.held = self.held.saturating_sub(held.len());
                if let Link::Open { shard, channel } = entry.link {
                    self.attach(now, peer, info.address, shard, channel, cx);
                }
                for delivery in held {
                    self.deliver(now, delivery);
                }
            }
        }
        self.flush(now, cx);
    }

    fn on_command(&mut self, now: Instant, command: Command, cx: &mut Context<'_>) {
        let Ok(command) = command.downcast::<DhtCommand>() else {
            return;
        };
        let full = self.requests.len() >= self.config.max_requests;
        match *command {
            DhtCommand::Put { key, value, reply } => {
                if full {
                    Self::count(cx, "requests_full");
                    let _ = reply.send(PutOutcome {
                        stored: 0,
                        depth: 0,
                        elapsed: Duration::ZERO,
                    });
                    return;
                }
                let token = self.fresh_token();
                self.requests.insert(token, Waiting::Put(reply));
                self.dht.put(now, wall(), &key, Value::Bin(value), token);
            }
            DhtCommand::Get { key, reply } => {
                if full {
                    Self::count(cx, "requests_full");
                    let _ = reply.send(GetOutcome {
                        value: None,
                        depth: 0,
                        elapsed: Duration::ZERO,
                    });
                    return;
                }
                let token = self.fresh_token();
                self.requests.insert(token, Waiting::Get(reply));
                self.dht.get(now, &key, token);
            }
            DhtCommand::Register { name, handler } => self.dht.register_custom(&name, handler),
            DhtCommand::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
        self.flush(now, cx);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.dht.poll_timeout(),
            Some(self.next_idle_check),
            self.bootstrap.next_try,
            self.certify_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_>) {
        if self.certify_at.is_some_and(|at| at <= now) {
            self.check_own_id(now);
        }
        if self.bootstrap.next_try.is_some_and(|at| at <= now) {
            self.start_bootstrap(now, cx);
        }
        if self.dht.poll_timeout().is_some_and(|at| at <= now) {
            self.dht.handle_timeout(now, wall());
        }
        if self.next_idle_check <= now {
            self.close_idle(now, cx);
        }
        self.flush(now, cx);
    }

    fn end_batch(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.commit(now, cx);
    }
}
