//! The sans-IO endpoint: one node's protocol state, fed datagrams and polled for output.
//!
//! A driver calls, in a loop: [`Endpoint::handle`] for each datagram received, then
//! [`Endpoint::handle_timeout`] when the deadline from [`Endpoint::poll_timeout`] has passed,
//! then [`Endpoint::poll_transmit`] until it returns `None` (sending each datagram), and
//! [`Endpoint::poll_event`] until it returns `None`. No socket, clock or thread lives here
//! (STYLE.md 1): `now` is always an argument and randomness comes from a seed the caller owns.

#[cfg(test)]
mod connection_tests;
mod data;
mod establish;
mod flush;
#[cfg(fuzzing)]
mod fuzzing;
mod handshake;
mod heap_report;
mod identities;
#[cfg(test)]
mod identities_tests;
mod index;
mod receive;
mod secure;
mod service;
mod sessions;
mod snapshot;
mod stateless;
mod table;
mod timers;
mod transmit;

pub use heap_report::HeapReport;
pub use identities::LocalIdentity;
pub use service::PeerInfo;
pub use snapshot::{ChannelCounts, PeerSnapshot};

use crate::channel::admission::Admission;
use crate::channel::config::EndpointConfig;
use crate::channel::connection::{
    ChannelAt, Connection, Context, DeliveryGate, Due, Handled, Lane, ReceiveSlots, Sent, Shared,
    TallySlots, Timer, check_cookie2, later, mode_label,
};
use crate::channel::cookie::{CookieSecrets, constant_time_eq};
use crate::channel::deadlines::DeadlineHeap;
use crate::channel::events::{ChannelHandle, Event, OpenError, SendError, Transmit};
use crate::channel::outgoing::Outgoing;
use crate::channel::pool::BufferPool;
use crate::channel::reliability::ReassemblyBudget;
use crate::channel::state::{Channel, PeerSession, Phase, Traffic};
use crate::handle::{Handle, Hashcode, IndexCipher, Slab};
use crate::session::{
    HandshakeIdentity, Identity, InitDecision, InitGate, PeerRecord, Prefix, RotatingSecret,
    SessionTable, SourceRateLimiter, TimestampTable,
};
use crate::stats::{HistogramSlots, StatKind, StatSlot, Stats, catalog};
use crate::wire::{
    Capabilities, ChannelId, CloseReason, DEFAULT_MTU, Flags, Header, Message, Messages, Packet,
    PeerId,
};
use handshake::Pending;
use identities::Identities;
use index::PeerIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DROPPED: &str = "weft_packets_dropped_total";
const STATELESS: &str = "weft_handshake_stateless_answers_total";
const COOKIE_FAILURES: &str = "weft_cookie_failures_total";
const OPENED: &str = "weft_channels_opened_total";
const CLOSED: &str = "weft_channels_closed_total";
const HANDSHAKES: &str = "weft_handshakes_completed_total";
const HANDSHAKE_FAILURES: &str = "weft_handshake_failures_total";
const COOKIES_SENT: &str = "weft_handshake_cookies_sent_total";
const REKEYS: &str = "weft_rekeys_total";
const DH_OPERATIONS: &str = "weft_dh_operations_total";
const SESSIONS_EVICTED: &str = "weft_sessions_evicted_total";
const PENDING_EVICTED: &str = "weft_pending_handshakes_evicted_total";
const HANDSHAKE_REFUSALS: &str = "weft_handshake_refusals_total";

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
/// Timers the router keeps itself: those of the handshake machinery, which lives beside the
/// connections (a handshake in flight has no connection yet). A connection's own timers, its
/// session's among them, are in its [`TimerTable`](crate::channel::connection::TimerTable).
enum TimerKey {
    Handshake(Hashcode),
}

/// The capability sets this node implements: all eight of PROTOCOL.md §7 (the wire layer
/// refuses a byte with other bits set).
fn supported(capabilities: Capabilities) -> bool {
    capabilities.bits() & !0x7 == 0
}

/// Whole received messages by how their bytes reached the application (issue 11 point 2).
const MESSAGE_BUFFERS: &str = "weft_message_buffers_total";

/// The slots of the counters the endpoint touches per packet or per message (PROTOCOL.md §12:
/// an index per count, no search by name).
struct HotStats {
    packets_received: StatSlot,
    received_bytes: StatSlot,
    packets_sent: StatSlot,
    sent_bytes: StatSlot,
    peers: StatSlot,
    channels: StatSlot,
    sessions: StatSlot,
    pending_handshakes: StatSlot,
    /// Whole messages lent from the receive memory and copied into pooled buffers.
    messages_lent: StatSlot,
    messages_copied: StatSlot,
    handshake_duration: HistogramSlots,
    /// What a received packet adds to, lent to the connections (with what the reliability
    /// layer tallies).
    receive: ReceiveSlots,
}

impl HotStats {
    fn register(stats: &mut Stats) -> HotStats {
        let counter = |stats: &mut Stats, name| stats.register(name, None, StatKind::Counter);
        let gauge = |stats: &mut Stats, name| stats.register(name, None, StatKind::Gauge);
        let by_mode = |stats: &mut Stats, name| {
            std::array::from_fn(|bits| {
                let mode = Capabilities::from_bits(bits as u8).map_or("tcp", mode_label);
                stats.register(name, Some(("mode", mode)), StatKind::Counter)
            })
        };
        // Registered in the order the table always had.
        let packets_received = counter(stats, "weft_packets_received_total");
        let received_bytes = counter(stats, "weft_received_bytes_total");
        let packets_sent = counter(stats, "weft_packets_sent_total");
        let sent_bytes = counter(stats, "weft_sent_bytes_total");
        let messages_sent = counter(stats, "weft_messages_sent_total");
        let messages_received = counter(stats, "weft_messages_received_total");
        let peers = gauge(stats, "weft_peers");
        let channels = gauge(stats, "weft_channels");
        let sessions = gauge(stats, "weft_sessions");
        let pending_handshakes = gauge(stats, "weft_pending_handshakes");
        let rtt = stats.register_histogram(&catalog::RTT);
        let congestion_window = stats.register_histogram(&catalog::CONGESTION_WINDOW);
        let handshake_duration = stats.register_histogram(&catalog::HANDSHAKE_DURATION);
        let buffers = |stats: &mut Stats, how| {
            stats.register(MESSAGE_BUFFERS, Some(("how", how)), StatKind::Counter)
        };
        let messages_lent = buffers(stats, "lent");
        let messages_copied = buffers(stats, "copied");
        let tally = TallySlots {
            message_delivery: stats.register_histogram(&catalog::MESSAGE_DELIVERY),
            packets_retransmitted: by_mode(stats, "weft_packets_retransmitted_total"),
            congestion_events: by_mode(stats, "weft_congestion_events_total"),
            acks_sent: ["alone", "piggybacked"].map(|packet| {
                let label = Some(("packet", packet));
                stats.register("weft_acks_sent_total", label, StatKind::Counter)
            }),
        };
        HotStats {
            packets_received,
            received_bytes,
            packets_sent,
            sent_bytes,
            peers,
            channels,
            sessions,
            pending_handshakes,
            messages_lent,
            messages_copied,
            handshake_duration,
            receive: ReceiveSlots {
                messages_received,
                messages_sent,
                rtt,
                congestion_window,
                tally,
            },
        }
    }
}

/// One node's protocol state.
pub struct Endpoint {
    config: EndpointConfig,
    /// `config.reliability`, shared by every channel's reliability state (issue 12: one copy
    /// per endpoint, not one per channel).
    reliability: std::sync::Arc<crate::channel::reliability::ReliabilityConfig>,
    identity: Identity,
    local_id: PeerId,
    rng: StdRng,
    cookies: CookieSecrets,
    /// The connections: one per peer with a session or channel state (every peer with a
    /// session has one; see docs/ARCHITECTURE.md).
    peers: Slab<Connection>,
    /// Connections holding a session: the session table's size (`max_sessions`).
    session_count: usize,
    /// Each connection's next deadline (the minimum of its timer table), by slot: one entry
    /// per connection, moved in place.
    deadlines: DeadlineHeap,
    /// Peer id → its connection's slot in `peers`: the one lookup a datagram costs.
    ids: PeerIndex,
    /// Peers we opened channels to by bare address, before their answer names them.
    // Seeded: addresses are the peers' choice.
    unnamed: HashMap<SocketAddr, Handle>,
    /// The application's channel handles: each entry says where its channel lives (the
    /// connection's slot and its lane there); the channel itself is its connection's.
    channels: Slab<ChannelAt>,
    /// The handshake timers (see [`TimerKey`]).
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    /// The lanes of one connection's channels a timer found due, kept to reuse its memory.
    due: Vec<Lane>,
    outgoing: Outgoing,
    events: VecDeque<Event>,
    stats: Stats,
    hot: HotStats,
    /// Bytes this datagram's unauthenticated answers may still use (3× rule, PROTOCOL.md §5).
    answer_budget: usize,
    /// Datagrams this datagram's stateless answers may still start: one answer datagram per
    /// request datagram, however many requests it packs.
    answers_left: usize,
    /// Stateless answers to the authenticated packet being handled, encoded, sealed together
    /// into one datagram when it is done.
    secure_answers: Vec<u8>,
    /// Where those answers go.
    secure_answer_to: Option<(SocketAddr, PeerId)>,
    /// Peers by how many channels they hold, to find the heaviest when the table is full.
    loads: BTreeSet<(usize, Handle)>,
    /// Peers kept without channels, oldest first: a full peer table gives up one of them.
    idle_peers: VecDeque<Handle>,
    /// When the cookie rotations counted by `cookie_epoch` started.
    epoch_origin: Instant,
    hs_identity: HandshakeIdentity,
    /// The local identities beyond the first (`identities.rs`).
    identities: Identities,
    /// Peer records the application handed us: kind 1 towards these peers.
    // Seeded: ids from records that others signed.
    records: HashMap<PeerId, PeerRecord>,
    gate: InitGate,
    timestamps: TimestampTable,
    index_cipher: IndexCipher,
    pending: Slab<Pending>,
    // Seeded: peer ids are the peers' choice.
    pending_by_peer: HashMap<PeerId, Handle>,
    // Seeded: addresses are the peers' choice.
    pending_by_addr: HashMap<SocketAddr, Handle>,
    pending_xx: usize,
    // Seeded: prefixes of the peers' addresses.
    pending_per_prefix: HashMap<Prefix, usize>,
    /// Fair admission of datagrams when the driver reports overload (issue 10).
    admission: Admission,
    /// Peers our XX to a bare address found, by that address (see [`PeerSession::bare`]).
    // Seeded: addresses are the peers' choice.
    bare_peers: HashMap<SocketAddr, PeerId>,
    /// Sessions per address and prefix, and which one a full table evicts.
    session_table: SessionTable<Handle>,
    /// Handshakes per source address and prefix (charged whether or not a cookie came).
    source_rate: SourceRateLimiter,
    /// Wall-clock time since the Unix epoch, set by the driver (IK INITs carry it as TAI64N).
    unix_time: Duration,
    last_tai: Duration,
    /// The latest `now` any entry point was given (for rekey checks deep in the send path).
    last_now: Instant,
    /// The peer whose authenticated packet is being handled: stateless answers to it go
    /// encrypted.
    secure_peer: Option<PeerId>,
    /// Ciphertext kept aside where it cannot be opened in place: a packet that a displaced
    /// session may have to open after the current one refused it (`handle_encrypted`), and a
    /// START_ENCRYPTION (`open_start_encryption`). Reused, so neither costs an allocation.
    scratch: Vec<u8>,
    /// Reassembly memory of the whole node (PROTOCOL.md §7.5).
    budget: ReassemblyBudget,
    /// Peers that may have packets to build.
    dirty: Vec<Handle>,
    /// The dirty list being worked through, kept to reuse its memory.
    flushing: Vec<Handle>,
    /// The peer of `flushing` whose packets `poll_transmit` builds now.
    flush_at: usize,
    /// Packets that peer has sent in a row.
    flush_run: usize,
    /// The lanes one flush visits, kept to reuse its memory.
    visiting: Vec<Lane>,
    /// Message buffers for delivery and the send queues (PROTOCOL.md §12: no allocation per
    /// message in steady state).
    pool: BufferPool,
    /// The workers' room, which reliable channels' delivery and credit follow (§12).
    delivery: DeliveryGate,
}

impl Endpoint {
    /// Creates an endpoint; `seed` keys its cookie secrets and random choices.
    pub fn new(config: EndpointConfig, identity: Identity, seed: [u8; 32], now: Instant) -> Self {
        let cookie_seed = blake3::derive_key("weft v1 endpoint cookie seed", &seed);
        let rng_seed = blake3::derive_key("weft v1 endpoint rng seed", &seed);
        let handshake_seed = blake3::derive_key("weft v1 endpoint handshake cookie seed", &seed);
        let index_seed = blake3::derive_key("weft v1 endpoint session index key", &seed);
        let slab = |limit: usize| limit.clamp(1, crate::handle::MAX_LIMIT);
        let gate = InitGate::new(
            identity.x25519_public().as_bytes(),
            RotatingSecret::new(handshake_seed, now, config.cookie_rotation),
            config.handshake_load,
        );
        // A session needs a connection: the slab holds `max_peers` connections without one
        // (`insert_peer` counts them) beside `max_sessions` with one.
        let peers = config
            .max_peers
            .max(1)
            .saturating_add(config.max_sessions.max(1));
        let peers = Slab::new(peers.min(crate::handle::MAX_LIMIT)).unwrap_or_else(|_| {
            Slab::new(1 << 20).expect("a slab of 2^20 entries is always allowed")
        });
        let channels = Slab::new(config.max_channels.max(1)).unwrap_or_else(|_| {
            Slab::new(1 << 20).expect("a slab of 2^20 entries is always allowed")
        });
        let hs_identity = HandshakeIdentity::new(&identity);
        let mut stats = Stats::new();
        let hot = HotStats::register(&mut stats);
        let mut endpoint = Endpoint {
            cookies: CookieSecrets::new(cookie_seed, now, config.cookie_rotation),
            outgoing: Outgoing::new(config.max_queued_datagrams.max(1)),
            local_id: identity.peer_id(),
            identity,
            rng: StdRng::from_seed(rng_seed),
            peers,
            session_count: 0,
            ids: PeerIndex::default(),
            unnamed: HashMap::new(),
            channels,
            deadlines: DeadlineHeap::default(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            events: VecDeque::new(),
            stats,
            hot,
            answer_budget: 0,
            answers_left: 0,
            secure_answers: Vec::with_capacity(DEFAULT_MTU),
            secure_answer_to: None,
            loads: BTreeSet::new(),
            idle_peers: VecDeque::new(),
            epoch_origin: now,
            hs_identity,
            identities: Identities::default(),
            records: HashMap::new(),
            gate,
            timestamps: TimestampTable::with_limits(config.max_handshake_timestamps),
            index_cipher: IndexCipher::new(&index_seed),
            pending: Slab::new(slab(
                config
                    .max_pending_handshakes
                    .saturating_add(config.max_pending_xx),
            ))
            .expect("the limit is clamped to what a slab allows"),
            pending_by_peer: HashMap::new(),
            pending_by_addr: HashMap::new(),
            pending_xx: 0,
            pending_per_prefix: HashMap::new(),
            admission: Admission::new(config.admission_window),
            bare_peers: HashMap::new(),
            session_table: SessionTable::new(),
            source_rate: SourceRateLimiter::new(
                blake3::derive_key("weft v1 endpoint source rate key", &seed),
                config.handshake_rate_per_address,
                config.handshake_rate_per_prefix,
            ),
            unix_time: Duration::ZERO,
            last_tai: Duration::ZERO,
            last_now: now,
            secure_peer: None,
            scratch: Vec::with_capacity(crate::channel::outgoing::MAX_DATAGRAM),
            budget: data::node_budget(config.reassembly_node_bytes, config.reassembly_peer_bytes),
            dirty: Vec::new(),
            flushing: Vec::new(),
            flush_at: 0,
            flush_run: 0,
            visiting: Vec::new(),
            pool: BufferPool::new(),
            delivery: DeliveryGate::default(),
            reliability: std::sync::Arc::new(config.reliability.clone()),
            config,
        };
        for record in endpoint.config.peer_records.clone() {
            // The config layer verified them already; a record that fails here is skipped.
            let _ = endpoint.add_peer_record(record);
        }
        endpoint
    }

    /// The driver read one receive batch from the socket at `now`; `full` when it came back as
    /// large as a batch can be; `rxq_overflows` is the kernel's running count of datagrams it
    /// dropped on the socket (SO_RXQ_OVFL). Drops are the overload fair admission
    /// ([`Admission`]) answers; full batches alone are a busy node, not an overloaded one.
    pub fn note_receive_batch(&mut self, now: Instant, full: bool, rxq_overflows: u32) {
        self.admission.note_batch(now, full, rxq_overflows);
    }

    /// Gives a delivered message's buffer back ([`Event::Message`]'s `data`), so the next
    /// delivery or send reuses it instead of allocating. Recycling keeps the hot path free of
    /// allocation; dropping the buffer instead is allowed, it just costs an allocation later.
    pub fn recycle(&mut self, buffer: impl Into<crate::channel::Payload>) {
        self.pool.recycle(buffer.into());
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_id
    }

    /// This node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The endpoint's settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Counters for the metrics exporter.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Hands the endpoint a peer's signed record: handshakes towards that peer use kind 1 (or 3
    /// with a configured PSK). A record that does not verify is refused.
    pub fn add_peer_record(
        &mut self,
        record: PeerRecord,
    ) -> Result<(), crate::session::RecordError> {
        record.verify()?;
        self.records.insert(record.peer_id(), record);
        Ok(())
    }

    /// The signed record held for `peer` (configured, or handed over by [`add_peer_record`]
    /// (Self::add_peer_record)).
    pub fn peer_record(&self, peer: &PeerId) -> Option<&PeerRecord> {
        self.records.get(peer)
    }

    /// Forgets `peer`'s record: later handshakes to it are XX unless a session proved its key
    /// (a driver that hands over records it learned keeps them bounded this way).
    pub fn remove_peer_record(&mut self, peer: &PeerId) -> Option<PeerRecord> {
        self.records.remove(peer)
    }

    /// Tells the endpoint the wall-clock time (since the Unix epoch). A driver calls it each
    /// loop turn: IK INITs carry it as TAI64N (PROTOCOL.md §5); the endpoint reads no clock.
    pub fn set_unix_time(&mut self, seconds: u64, nanos: u32) {
        self.unix_time = Duration::new(seconds, nanos.min(999_999_999));
    }

    /// Starts a new handshake with `peer` now, replacing its session without interrupting its
    /// channels (PROTOCOL.md §5); the endpoint also does this by itself at the rekey threshold.
    pub fn rekey(&mut self, now: Instant, peer: PeerId) -> Result<(), OpenError> {
        self.last_now = now;
        let to = self
            .session_of(&peer)
            .map(|entry| entry.address)
            .ok_or(OpenError::PlaintextRefused)?;
        self.ensure_handshake(now, to, Some(peer))
    }

    /// True if `peer` has an encrypted session this node sends under.
    pub fn has_session_with(&self, peer: PeerId) -> bool {
        self.has_session(peer)
    }

    /// Sessions held (peers with at least one).
    pub fn session_count(&self) -> usize {
        self.session_count
    }

    /// Ed25519 keys whose last IK INIT timestamp is remembered (bounded by
    /// `EndpointConfig::max_handshake_timestamps`).
    pub fn replay_table_len(&self) -> usize {
        self.timestamps.len()
    }

    /// Handshakes in progress (ours waiting for an answer, and XX responders waiting for FINAL).
    pub fn pending_handshake_count(&self) -> usize {
        self.pending.len()
    }

    /// Peers with state.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Channels open or opening.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The full id, peer and mode of a live channel.
    pub fn channel_info(
        &self,
        channel: ChannelHandle,
    ) -> Option<(ChannelId, PeerId, Capabilities)> {
        let at = self.resolve_channel(channel)?;
        let peer = self.peers.get(at.peer)?;
        let state = peer.lanes.get(at.lane)?;
        Some((state.id, peer.id, state.capabilities))
    }

    /// The channel at `at`, in its connection's lanes.
    fn channel(&self, at: ChannelAt) -> Option<&Channel> {
        self.peers.get(at.peer)?.lanes.get(at.lane)
    }

    fn channel_mut(&mut self, at: ChannelAt) -> Option<&mut Channel> {
        self.peers.get_mut(at.peer)?.lanes.get_mut(at.lane)
    }

    /// Where an application's handle points, while it is live (PROTOCOL.md §8).
    fn resolve_channel(&self, channel: ChannelHandle) -> Option<ChannelAt> {
        let handle = self.channels.resolve(channel.0).ok()?;
        let at = *self.channels.get(handle)?;
        // The entry and its channel name each other, or the handle is refused.
        (self.channel(at)?.handle == handle).then_some(at)
    }

    /// The application's handle of the channel at `at`.
    fn channel_handle(&self, at: ChannelAt) -> Option<ChannelHandle> {
        let handle = self.channel(at)?.handle;
        self.channels.hashcode(handle).map(ChannelHandle)
    }

    /// What a connection is lent of the endpoint ([`Context`]): never the router.
    fn connection_context(&self) -> Context {
        Context {
            local_id: self.local_id,
            peer_mask: PeerId::ZERO,
            keep_alive_interval: self.config.keep_alive_interval,
            rekey: self.config.rekey,
            retired_session_grace: self.config.retired_session_grace,
            session_lifetime: self.config.session_lifetime,
            connection_reset_timeout: self.config.connection_reset_timeout,
            keep_alive: self.config.keep_alive,
            echo: self.config.echo,
            allow_plaintext: self.config.allow_plaintext,
            reassembly_peer_bytes: self.config.reassembly_peer_bytes,
        }
    }

    /// The connections, and what one of them (`peer`) is lent of the router's shared pieces to
    /// take a datagram or send on a channel ([`Shared`]): never the router itself.
    fn lend(&mut self, peer: Handle) -> (&mut Slab<Connection>, Shared<'_>) {
        let mut ctx = self.connection_context();
        if let Some(connection) = self.peers.get(peer) {
            // The connection's own identity heads its packets (`identities.rs`).
            (ctx.local_id, ctx.peer_mask) = self.wire_mask(&connection.id);
        }
        // Names the peer in the node's reassembly ledger, for eviction (`evict_reassembly`).
        let budget_key = self
            .peers
            .hashcode(peer)
            .map_or(u64::MAX, |code| u64::from(code.0));
        let shared = Shared {
            ctx,
            stats: &mut self.stats,
            events: &mut self.events,
            pool: &mut self.pool,
            outgoing: &mut self.outgoing,
            room: &mut self.delivery,
            budget: &self.budget,
            reliability: &self.reliability,
            slots: &self.hot.receive,
            handles: &self.channels,
            cookies: &self.cookies,
            node_id: self.local_id,
            scratch: &mut self.scratch,
            budget_key,
        };
        (&mut self.peers, shared)
    }

    /// Runs `work` on the connection in `peer`, lent the router's shared pieces; None when
    /// there is no such connection.
    fn with_connection<R>(
        &mut self,
        peer: Handle,
        work: impl FnOnce(&mut Connection, &mut Shared<'_>) -> R,
    ) -> Option<R> {
        let (peers, mut shared) = self.lend(peer);
        let connection = peers.get_mut(peer)?;
        Some(work(connection, &mut shared))
    }

    /// Acts on what a packet a connection queued came to: the rekey policy looks at the key's
    /// count (§5), an exhausted key asks for a rekey. True when the packet was queued.
    fn after_send(&mut self, peer: PeerId, sent: Sent) -> bool {
        match sent {
            Sent::Queued | Sent::Owed => true,
            Sent::Sealed(sealed) => {
                self.rekey_if_due(peer, sealed.count, sealed.created);
                true
            }
            Sent::Exhausted => {
                let now = self.last_now;
                self.maybe_rekey(now, peer);
                false
            }
            Sent::Nothing | Sent::Failed => false,
        }
    }

    fn drop_packet(&mut self, reason: &'static str) {
        self.stats.add(DROPPED, Some(("reason", reason)), 1);
    }

    fn publish_gauges(&mut self) {
        self.stats.set_at(self.hot.peers, self.peers.len() as u64);
        self.stats
            .set_at(self.hot.channels, self.channels.len() as u64);
        self.stats
            .set_at(self.hot.sessions, self.session_count as u64);
        self.stats
            .set_at(self.hot.pending_handshakes, self.pending.len() as u64);
    }

    // ---------------------------------------------------------------- input

    /// Appends a default-channel message to the packet being built for `to`, or starts one:
    /// several opens or finalizes to one peer leave in one packet (PROTOCOL.md §6).
    pub(super) fn queue_default(
        &mut self,
        to: SocketAddr,
        recipient: PeerId,
        message: &Message<'_>,
    ) {
        if !recipient.is_zero() && self.has_session(recipient) {
            // PROTOCOL.md §5: under kinds 1–3, channel establishment travels only encrypted.
            self.send_secure(to, recipient, ChannelId::DEFAULT, None, &[*message]);
            return;
        }
        if self.awaiting_session(to, recipient) || !self.config.allow_plaintext {
            // Waits for the handshake: establishment sends the opens (`flush_opens`), and the
            // channel's own retry timer covers the rest.
            self.stats
                .add("weft_messages_awaiting_session_total", None, 1);
            return;
        }
        let (sender, recipient) = self.wire_ids(recipient);
        let header = Header {
            flags: Flags::default(),
            sender,
            recipient,
            channel: ChannelId::DEFAULT,
            sequence: None,
        };
        if self.outgoing.open_matches(to, &header) && self.outgoing.push(message) {
            return;
        }
        if !self.outgoing.start(to, &header, DEFAULT_MTU) || !self.outgoing.push(message) {
            self.drop_packet("transmit_queue_full");
        }
    }

    // ---------------------------------------------------------------- output

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------- application API

    /// Queues a PING to `to`; its PONG arrives as [`Event::Pong`] with the same token. `peer` is
    /// the target's peer id when known, else the packet names the all-zero recipient (§3).
    /// Without a session (and unless plaintext is allowed) it starts the right handshake and
    /// waits behind it; a full queue is an error, never a silent drop.
    pub fn ping(
        &mut self,
        now: Instant,
        to: SocketAddr,
        peer: Option<PeerId>,
        token: [u8; 8],
    ) -> Result<(), OpenError> {
        self.last_now = now;
        // A bare address our own XX already reached is that session's peer: one handshake, not
        // one per PING (each would replace the session, PROTOCOL.md §5).
        let peer = peer.filter(|p| !p.is_zero()).or_else(|| self.bare_peer(to));
        if let Some(id) = peer.filter(|&id| self.has_session(id)) {
            self.send_secure(
                to,
                id,
                ChannelId::DEFAULT,
                None,
                &[Message::Ping { token: &token }],
            );
            return Ok(());
        }
        if self.wants_session(peer) {
            self.ensure_handshake(now, to, peer)?;
            return self.queue_ping(to, peer, token);
        }
        self.queue_default(
            to,
            peer.unwrap_or(PeerId::ZERO),
            &Message::Ping { token: &token },
        );
        Ok(())
    }

    /// Sends one application message; returns its message number. A message too large or a
    /// full queue is an error, never a silent drop.
    pub fn send(
        &mut self,
        now: Instant,
        channel: ChannelHandle,
        data: &[u8],
    ) -> Result<u64, SendError> {
        let handle = self
            .resolve_channel(channel)
            .ok_or(SendError::UnknownChannel)?;
        self.last_now = self.last_now.max(now);
        // A channel still opening queues the message; it leaves once the id is complete.
        let number = self.send_message(now, handle, data)?;
        self.flush(now);
        self.outgoing.finish();
        Ok(number)
    }

    /// Closes a channel, telling the peer with CHANNEL_CLOSE.
    pub fn close_channel(&mut self, _now: Instant, channel: ChannelHandle, reason: CloseReason) {
        if let Some(at) = self.resolve_channel(channel) {
            self.close(at, reason, false, true);
        }
    }

    /// Closes a channel: its connection lets go of it ([`Connection::close_lane`], telling
    /// the peer on the channel when `notify_peer` and the channel is confirmed), and the router
    /// settles the node's tables: the handle, the fairness index, the event, the deadline.
    fn close(&mut self, channel: ChannelAt, reason: CloseReason, by_peer: bool, notify_peer: bool) {
        let Some(code) = self.channel_handle(channel) else {
            return;
        };
        if notify_peer
            && let Some(state) = self.channel(channel)
            && matches!(state.phase, Phase::Open { cookie2: Some(_) })
            && let Some(peer) = self.peers.get(channel.peer)
        {
            // An unconfirmed channel may not exist at the responder: a CLOSE on the default
            // channel reaches it either way, without reopening it by cookie.
            let close = Message::ChannelClose {
                channel: state.id,
                reason,
            };
            let (to, recipient) = (peer.address, peer.id);
            self.queue_default(to, recipient, &close);
        }
        let now = self.last_now;
        let removed = self.with_connection(channel.peer, |connection, shared| {
            let removed =
                connection.close_lane(now, channel.lane, (reason, notify_peer), shared)?;
            Some((connection.id, connection.poll_timeout(), removed))
        });
        let Some((peer, deadline, removed)) = removed.flatten() else {
            return;
        };
        self.after_send(peer, removed.sent);
        self.deadlines.set(channel.peer.0, deadline);
        self.channels.remove(removed.handle);
        self.recount(channel.peer);
        let label = close_label(reason);
        self.stats.add(CLOSED, Some(("reason", label)), 1);
        self.events.push_back(if removed.opened {
            Event::ChannelClosed {
                channel: code,
                reason,
                by_peer,
            }
        } else {
            Event::OpenFailed {
                channel: code,
                reason,
            }
        });
        self.forget_peer_if_idle(channel.peer);
    }

    // ---------------------------------------------------------------- timers
}

fn close_label(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Normal => "normal",
        CloseReason::Unsupported => "unsupported",
        CloseReason::Timeout => "timeout",
        CloseReason::Loss => "loss",
        CloseReason::Idle => "idle",
        CloseReason::Shutdown => "shutdown",
        CloseReason::Refused => "refused",
        CloseReason::Protocol => "protocol",
        CloseReason::Unknown(_) => "unknown",
    }
}
