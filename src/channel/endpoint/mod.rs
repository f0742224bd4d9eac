//! The sans-IO endpoint: one node's protocol state, fed datagrams and polled for output.
//!
//! A driver calls, in a loop: [`Endpoint::handle`] for each datagram received, then
//! [`Endpoint::handle_timeout`] when the deadline from [`Endpoint::poll_timeout`] has passed,
//! then [`Endpoint::poll_transmit`] until it returns `None` (sending each datagram), and
//! [`Endpoint::poll_event`] until it returns `None`. No socket, clock or thread lives here
//! (STYLE.md 1): `now` is always an argument and randomness comes from a seed the caller owns.

mod data;
mod establish;
#[cfg(fuzzing)]
mod fuzzing;
mod handshake;
mod secure;
mod service;
mod snapshot;
mod table;

pub(crate) use data::ChannelData;
pub use service::PeerInfo;
pub use snapshot::{ChannelCounts, PeerSnapshot};

use crate::channel::admission::Admission;
use crate::channel::cookie::{CookieCheck, CookieSecrets, constant_time_eq};
use crate::channel::outgoing::Outgoing;
use crate::channel::pool::BufferPool;
use crate::channel::reliability::{ReassemblyBudget, ReliabilityConfig};
use crate::channel::state::{Channel, Peer, PeerSession, Phase};
use crate::handle::{Handle, Hashcode, IndexCipher, Slab};
use crate::session::{
    HandshakeIdentity, Identity, InitDecision, InitGate, LoadPolicy, PeerRecord, Prefix,
    RekeyPolicy, RotatingSecret, SessionTable, SourceRateLimiter, TimestampTable, TokenRate,
};
use crate::stats::{HistogramSlots, StatKind, StatSlot, Stats, catalog};
use crate::wire::{
    Capabilities, ChannelId, CloseReason, DEFAULT_MTU, Flags, Header, Message, Messages, Packet,
    PeerId,
};
use handshake::Pending;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt;
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

/// Settings of an endpoint.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Accept kind-0 (plaintext) peers (PROTOCOL.md §5).
    pub allow_plaintext: bool,
    /// Send every DATA message back on its channel (PROTOCOL.md §6, echo service).
    pub echo: bool,
    /// How often the cookie secret rotates (PROTOCOL.md §6: 120 s).
    pub cookie_rotation: Duration,
    /// How long a half-open channel handshake may take in all (PROTOCOL.md §6: 3 s).
    pub open_timeout: Duration,
    /// How many times a handshake step is sent before giving up (PROTOCOL.md §6: 3).
    pub open_tries: u32,
    /// Wait before the first retry; it doubles with each retry.
    pub open_retry: Duration,
    /// A peer silent this long loses its channels (PROTOCOL.md §7.7: 60 s).
    pub connection_reset_timeout: Duration,
    /// Most peers with state at once.
    pub max_peers: usize,
    /// Most channels at once, over all peers. An open channel costs the node about 3 KiB
    /// (tests/channel/hostile.rs measures it), so the default bounds the table at ~620 MB;
    /// when it is full, the peer holding the most gives one up to a newcomer.
    pub max_channels: usize,
    /// Most channels one peer may hold: at ~3 KiB each, 3 MB per peer at the default.
    pub max_channels_per_peer: usize,
    /// Most datagrams waiting for the driver.
    pub max_queued_datagrams: usize,
    /// Most bytes of early data buffered per channel while its id is incomplete.
    pub max_early_bytes: usize,
    /// Most channel ids a session may close before it must be replaced (under kind 0: that a
    /// peer may open within two cookie rotations). PROTOCOL.md §6 never uses an id twice in a
    /// session, so closed ids are remembered, about 10 bytes each: 1024 bounds that at ~10 KiB
    /// per session and costs an application that churns channels one rekey per thousand.
    pub max_closed_channels_per_session: usize,
    /// Pre-shared keys by peer: a peer listed here is reached with handshake kind 3 (§5).
    pub psks: HashMap<PeerId, [u8; 32]>,
    /// When an INIT without a valid cookie is answered with HANDSHAKE_COOKIE (§5: above a
    /// rate of handshakes per second, or always). Kind-2 INITs always need a cookie.
    pub handshake_load: LoadPolicy,
    /// When a session is replaced by a new handshake (§5: 2^31 packets or 15 minutes).
    pub rekey: RekeyPolicy,
    /// How long an idle peer's session stays cached (§5: 15 minutes).
    pub session_lifetime: Duration,
    /// How long a replaced session still opens packets that were in flight at the switch.
    pub retired_session_grace: Duration,
    /// Most XX responder states held between RESPONSE and FINAL (§5: capped per shard).
    pub max_pending_xx: usize,
    /// Most XX responder states per /24 (IPv4) or /48 (IPv6).
    pub max_pending_xx_per_prefix: usize,
    /// Most sessions held at once. At the bound a new session evicts the least recently used
    /// session of the prefix holding the most (PROTOCOL.md §5: least recently used first out;
    /// the heaviest prefix gives way so a newcomer from a light one still gets in).
    pub max_sessions: usize,
    /// Most sessions from one IP address. 1024: a carrier-grade NAT puts hundreds of
    /// subscribers behind one address, and each may run a node that talks to us; a single host
    /// needs a handful. One address still cannot take more than 1% of the default table.
    pub max_sessions_per_address: usize,
    /// Most sessions from one /24 (IPv4) or /64 (IPv6). 4096: four carrier-grade NAT
    /// addresses' worth, while one attacker's /24 holds at most 4% of the default table, so
    /// filling it takes at least 25 prefixes (and the table then evicts from the heaviest).
    pub max_sessions_per_prefix: usize,
    /// Handshakes one address may start: every INIT about to cost Diffie-Hellman is charged,
    /// valid cookie or not. 20/s with a burst of 64: rekeys every 15 minutes make 1000 peers
    /// behind one NAT address about 1.1 handshakes/s, so this leaves them 18× headroom (and a
    /// NAT that restarts gets everyone back within a minute), while one address can make the
    /// shard spend at most 20 handshakes' DH per second.
    pub handshake_rate_per_address: TokenRate,
    /// Handshakes one /24 (IPv4) or /64 (IPv6) may start, like the per-address rate. 100/s with
    /// a burst of 256: five busy NAT addresses' worth, and the same as the whole-node rate above
    /// which cookies are demanded (`handshake_load`), so one prefix cannot outspend it.
    pub handshake_rate_per_prefix: TokenRate,
    /// Ed25519 keys whose last IK INIT timestamp is remembered (PROTOCOL.md §5 replay check).
    /// 65,536 (about 6.5 MiB): new keys must complete more than 109 IK handshakes a second,
    /// through the per-source rates, to fill it within `handshake_timestamp_window`; when it is
    /// full of younger entries, IK INITs from keys it does not hold are refused (XX still works).
    pub max_handshake_timestamps: usize,
    /// How old a remembered IK timestamp must be before a full table may forget it; a key it
    /// forgot is then held to a floor, so a recorded INIT stays refused (see
    /// [`TimestampTable`]). 10 minutes: far beyond honest clock skew between synchronised
    /// hosts, and the only peers ever refused for it lag our clock by more than that while the
    /// table is under pressure.
    pub handshake_timestamp_window: Duration,
    /// Most handshakes this node initiates at once.
    pub max_pending_handshakes: usize,
    /// Most PINGs queued behind one handshake.
    pub max_queued_pings: usize,
    /// Signed records of known peers (from the config file or an address book): sessions to
    /// them are IK (PROTOCOL.md §5). Records that do not verify are skipped.
    pub peer_records: Vec<PeerRecord>,
    /// The reliability layer's settings: retry budget, hold timeout, largest message, send
    /// queue, windows (PROTOCOL.md §7).
    pub reliability: ReliabilityConfig,
    /// Whether new channels send a keep-alive PING when idle (PROTOCOL.md §7.7); per channel
    /// with [`Endpoint::set_keep_alive`].
    pub keep_alive: bool,
    /// How long a channel with keep-alive stays silent before it sends a PING (§7.7: 15 s).
    pub keep_alive_interval: Duration,
    /// Reassembly memory for big messages over all peers (PROTOCOL.md §7.5).
    pub reassembly_node_bytes: usize,
    /// Reassembly memory for big messages per peer.
    pub reassembly_peer_bytes: usize,
    /// Datagrams per window of fair admission under overload ([`Admission`]); 0 turns it off.
    /// 4096: 128 receive batches, a few milliseconds of a busy shard, so a flood is cut within
    /// a few windows; its table then holds at most 4096 prefixes (~150 KiB, allocated at the
    /// first full batch).
    pub admission_window: u32,
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pre-shared keys are secrets: only their peers are shown.
        let psk_peers: Vec<&PeerId> = self.psks.keys().collect();
        f.debug_struct("EndpointConfig")
            .field("allow_plaintext", &self.allow_plaintext)
            .field("echo", &self.echo)
            .field("cookie_rotation", &self.cookie_rotation)
            .field("open_timeout", &self.open_timeout)
            .field("open_tries", &self.open_tries)
            .field("open_retry", &self.open_retry)
            .field("connection_reset_timeout", &self.connection_reset_timeout)
            .field("max_peers", &self.max_peers)
            .field("max_channels", &self.max_channels)
            .field("max_channels_per_peer", &self.max_channels_per_peer)
            .field("max_queued_datagrams", &self.max_queued_datagrams)
            .field("max_early_bytes", &self.max_early_bytes)
            .field(
                "max_closed_channels_per_session",
                &self.max_closed_channels_per_session,
            )
            .field("psk_peers", &psk_peers)
            .field("handshake_load", &self.handshake_load)
            .field("rekey", &self.rekey)
            .field("session_lifetime", &self.session_lifetime)
            .field("retired_session_grace", &self.retired_session_grace)
            .field("max_pending_xx", &self.max_pending_xx)
            .field("max_pending_xx_per_prefix", &self.max_pending_xx_per_prefix)
            .field("max_sessions", &self.max_sessions)
            .field("max_sessions_per_address", &self.max_sessions_per_address)
            .field("max_sessions_per_prefix", &self.max_sessions_per_prefix)
            .field(
                "handshake_rate_per_address",
                &self.handshake_rate_per_address,
            )
            .field("handshake_rate_per_prefix", &self.handshake_rate_per_prefix)
            .field("max_handshake_timestamps", &self.max_handshake_timestamps)
            .field(
                "handshake_timestamp_window",
                &self.handshake_timestamp_window,
            )
            .field("max_pending_handshakes", &self.max_pending_handshakes)
            .field("max_queued_pings", &self.max_queued_pings)
            .field("admission_window", &self.admission_window)
            .field("peer_records", &self.peer_records.len())
            .finish()
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            allow_plaintext: false,
            echo: false,
            cookie_rotation: Duration::from_secs(120),
            open_timeout: Duration::from_secs(3),
            open_tries: 3,
            open_retry: Duration::from_millis(500),
            connection_reset_timeout: Duration::from_secs(60),
            max_peers: 100_000,
            max_channels: 200_000,
            max_channels_per_peer: 1024,
            max_queued_datagrams: 4096,
            max_early_bytes: 256 * 1024,
            max_closed_channels_per_session: 1024,
            psks: HashMap::new(),
            handshake_load: LoadPolicy::default(),
            rekey: RekeyPolicy::default(),
            session_lifetime: Duration::from_secs(15 * 60),
            retired_session_grace: Duration::from_secs(5),
            max_pending_xx: 4096,
            max_pending_xx_per_prefix: 64,
            max_sessions: 100_000,
            max_sessions_per_address: 1024,
            max_sessions_per_prefix: 4096,
            handshake_rate_per_address: TokenRate {
                per_second: 20,
                burst: 64,
            },
            handshake_rate_per_prefix: TokenRate {
                per_second: 100,
                burst: 256,
            },
            max_handshake_timestamps: crate::session::handshake::DEFAULT_TIMESTAMP_LIMIT,
            handshake_timestamp_window: Duration::from_secs(600),
            max_pending_handshakes: 4096,
            max_queued_pings: 16,
            peer_records: Vec::new(),
            reliability: ReliabilityConfig::default(),
            keep_alive: false,
            keep_alive_interval: Duration::from_secs(15),
            reassembly_node_bytes: 64 << 20,
            reassembly_peer_bytes: 8 << 20,
            admission_window: 4096,
        }
    }
}

/// A datagram the driver must send: its bytes are the first `len` bytes of the buffer passed to
/// [`Endpoint::poll_transmit`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the caller's buffer it fills.
    pub len: usize,
}

/// Names a channel across time; a handle that outlived its channel is refused, never
/// redirected to the slot's next tenant (PROTOCOL.md §8).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelHandle(pub Hashcode);

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed: the peer's packets are encrypted from now on (PROTOCOL.md §5).
    SessionEstablished {
        /// The peer, proven by the handshake.
        peer: PeerId,
        /// Where its handshake came from.
        from: SocketAddr,
        /// The handshake kind (1 IK, 2 XX, 3 IKpsk2).
        kind: u8,
        /// True on the side that sent the INIT.
        initiator: bool,
    },
    /// A handshake we started gave up; opens waiting for it fail by their own timeout, and
    /// PINGs queued behind it are not sent.
    SessionFailed {
        /// The peer, when it was known.
        peer: Option<PeerId>,
        /// Where the handshake went.
        address: SocketAddr,
        /// Why, as a metric label (`timeout`, `peer_id_mismatch`, …).
        reason: &'static str,
    },
    /// A PONG answered one of our PINGs.
    Pong {
        /// The peer that answered.
        peer: PeerId,
        /// Where the answer came from.
        from: SocketAddr,
        /// The token of the PING it answers.
        token: [u8; 8],
    },
    /// A channel's id is complete: for the initiator on CHANNEL_ACKNOWLEDGE, for the responder
    /// on FINALIZE or a verifying CHANNEL_COOKIE.
    ChannelOpened {
        /// The channel.
        channel: ChannelHandle,
        /// The peer at the other end.
        peer: PeerId,
        /// The full id, c1 ‖ c2.
        id: ChannelId,
        /// The reliability mode.
        capabilities: Capabilities,
        /// True on the side that opened it.
        initiator: bool,
    },
    /// An open we started failed before the channel existed.
    OpenFailed {
        /// The channel handle `open_channel` returned.
        channel: ChannelHandle,
        /// Why.
        reason: CloseReason,
    },
    /// A channel closed; its handle is now stale.
    ChannelClosed {
        /// The channel.
        channel: ChannelHandle,
        /// Why.
        reason: CloseReason,
        /// True when the peer closed it.
        by_peer: bool,
    },
    /// An ordered channel gave up waiting for messages `first..=last` (PROTOCOL.md §7: the
    /// hold timeout of Streaming 1 and 2); they will never be delivered.
    Skipped {
        /// The channel.
        channel: ChannelHandle,
        /// First message number skipped.
        first: u64,
        /// Last message number skipped.
        last: u64,
    },
    /// Part of a big message arrived (PROTOCOL.md §7.5).
    Progress {
        /// The channel.
        channel: ChannelHandle,
        /// The message's number.
        message_number: u64,
        /// Bytes received so far.
        received: u64,
        /// The message's total length.
        total: u64,
    },
    /// An application message arrived.
    Message {
        /// The channel it came on.
        channel: ChannelHandle,
        /// The peer that sent it (PROTOCOL.md §12: a worker answers by it).
        peer: PeerId,
        /// Its message number on that channel.
        message_number: u64,
        /// Its bytes, in a buffer from the endpoint's pool: give it back with
        /// [`Endpoint::recycle`] to keep the hot path allocation-free; dropping it is allowed,
        /// it just costs an allocation later.
        data: Vec<u8>,
    },
}

/// Why `open_channel` refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// `c1` must not be 0: 0 is the default channel.
    ZeroChannelId,
    /// This node already has an open or opening channel with this `c1` towards the peer.
    ChannelIdInUse(u16),
    /// The mode is not implemented by this node yet.
    Unsupported(Capabilities),
    /// Plaintext is off and no session kind is available.
    PlaintextRefused,
    /// A peer, channel or id limit is reached.
    LimitReached(&'static str),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::ZeroChannelId => write!(f, "c1 must not be 0 (0 is the default channel)"),
            OpenError::ChannelIdInUse(c1) => write!(
                f,
                "c1 {c1:#06x} is already in use towards this peer; pick another or pass None"
            ),
            OpenError::Unsupported(caps) => write!(
                f,
                "channel mode {:#05b} is not implemented by this node",
                caps.bits()
            ),
            OpenError::PlaintextRefused => {
                write!(
                    f,
                    "plaintext is not allowed and no encrypted session exists"
                )
            }
            OpenError::LimitReached(what) => write!(f, "limit reached: {what}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Why `send` refused; nothing is ever dropped silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The channel is closed or the handle is stale.
    UnknownChannel,
    /// The message is larger than this channel can carry.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The largest this channel accepts.
        max: usize,
    },
    /// The channel's send buffer is full; try again after the queue drains.
    QueueFull,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownChannel => write!(f, "the channel is closed or unknown"),
            SendError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds this channel's limit of {max}"
                )
            }
            SendError::QueueFull => write!(f, "the channel's send queue is full"),
        }
    }
}

impl std::error::Error for SendError {}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Channel(Hashcode),
    Peer(Hashcode),
    Handshake(Hashcode),
    Session(Hashcode),
    Data(Hashcode),
}

/// The capability sets this node implements: all eight of PROTOCOL.md §7 (the wire layer
/// refuses a byte with other bits set).
fn supported(capabilities: Capabilities) -> bool {
    capabilities.bits() & !0x7 == 0
}

/// `at + wait` for a deadline. Where the sum does not fit the clock (a configured wait of years),
/// the deadline is a century away instead, which never fires, where `Instant`'s `+` would panic.
pub(crate) fn later(at: Instant, wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(3_155_760_000);
    at.checked_add(wait)
        .or_else(|| at.checked_add(CENTURY))
        .unwrap_or(at)
}

/// Most PONGs one packet on a channel gets (9 bytes each, well within one datagram).
const MAX_CHANNEL_PONGS: usize = 64;

/// The slots of the counters the endpoint touches per packet or per message (PROTOCOL.md §12:
/// an index per count, no search by name).
struct HotStats {
    packets_received: StatSlot,
    received_bytes: StatSlot,
    packets_sent: StatSlot,
    sent_bytes: StatSlot,
    messages_sent: StatSlot,
    messages_received: StatSlot,
    peers: StatSlot,
    channels: StatSlot,
    sessions: StatSlot,
    pending_handshakes: StatSlot,
    rtt: HistogramSlots,
    congestion_window: HistogramSlots,
    handshake_duration: HistogramSlots,
    message_delivery: HistogramSlots,
    /// By capability bits (the channel's mode).
    packets_retransmitted: [StatSlot; 8],
    congestion_events: [StatSlot; 8],
}

impl HotStats {
    fn register(stats: &mut Stats) -> HotStats {
        let counter = |stats: &mut Stats, name| stats.register(name, None, StatKind::Counter);
        let gauge = |stats: &mut Stats, name| stats.register(name, None, StatKind::Gauge);
        let by_mode = |stats: &mut Stats, name| {
            std::array::from_fn(|bits| {
                let mode = Capabilities::from_bits(bits as u8).map_or("tcp", data::mode_label);
                stats.register(name, Some(("mode", mode)), StatKind::Counter)
            })
        };
        HotStats {
            packets_received: counter(stats, "weft_packets_received_total"),
            received_bytes: counter(stats, "weft_received_bytes_total"),
            packets_sent: counter(stats, "weft_packets_sent_total"),
            sent_bytes: counter(stats, "weft_sent_bytes_total"),
            messages_sent: counter(stats, "weft_messages_sent_total"),
            messages_received: counter(stats, "weft_messages_received_total"),
            peers: gauge(stats, "weft_peers"),
            channels: gauge(stats, "weft_channels"),
            sessions: gauge(stats, "weft_sessions"),
            pending_handshakes: gauge(stats, "weft_pending_handshakes"),
            rtt: stats.register_histogram(&catalog::RTT),
            congestion_window: stats.register_histogram(&catalog::CONGESTION_WINDOW),
            handshake_duration: stats.register_histogram(&catalog::HANDSHAKE_DURATION),
            message_delivery: stats.register_histogram(&catalog::MESSAGE_DELIVERY),
            packets_retransmitted: by_mode(stats, "weft_packets_retransmitted_total"),
            congestion_events: by_mode(stats, "weft_congestion_events_total"),
        }
    }
}

/// One node's protocol state.
pub struct Endpoint {
    config: EndpointConfig,
    identity: Identity,
    local_id: PeerId,
    rng: StdRng,
    cookies: CookieSecrets,
    peers: Slab<Peer>,
    peer_index: HashMap<PeerId, Handle>,
    /// Peers we opened channels to by bare address, before their answer names them.
    unnamed: HashMap<SocketAddr, Handle>,
    channels: Slab<Channel>,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
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
    /// Peer records the application handed us: kind 1 towards these peers.
    records: HashMap<PeerId, PeerRecord>,
    gate: InitGate,
    timestamps: TimestampTable,
    index_cipher: IndexCipher,
    pending: Slab<Pending>,
    pending_by_peer: HashMap<PeerId, Handle>,
    pending_by_addr: HashMap<SocketAddr, Handle>,
    pending_xx: usize,
    pending_per_prefix: HashMap<Prefix, usize>,
    /// Fair admission of datagrams when the driver reports overload (issue 10).
    admission: Admission,
    sessions: Slab<PeerSession>,
    session_index: HashMap<PeerId, Handle>,
    /// Peers our XX to a bare address found, by that address (see [`PeerSession::bare`]).
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
    receive_buf: Vec<u8>,
    /// Reassembly memory of the whole node (PROTOCOL.md §7.5).
    budget: ReassemblyBudget,
    /// Peers that may have packets to build.
    dirty: Vec<Handle>,
    /// The dirty list being worked through, kept to reuse its memory.
    flushing: Vec<Handle>,
    /// The channels one flush visits, kept to reuse its memory.
    visiting: Vec<Handle>,
    /// Message buffers for delivery and the send queues (PROTOCOL.md §12: no allocation per
    /// message in steady state).
    pool: BufferPool,
    /// The workers' room, which reliable channels' delivery and credit follow (§12).
    delivery: service::DeliveryGate,
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
        let peers = Slab::new(config.max_peers.max(1)).unwrap_or_else(|_| {
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
            peer_index: HashMap::new(),
            unnamed: HashMap::new(),
            channels,
            timers: BinaryHeap::new(),
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
            sessions: Slab::new(slab(config.max_sessions))
                .expect("the limit is clamped to what a slab allows"),
            session_index: HashMap::new(),
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
            receive_buf: Vec::with_capacity(crate::channel::outgoing::MAX_DATAGRAM),
            budget: data::node_budget(config.reassembly_node_bytes, config.reassembly_peer_bytes),
            dirty: Vec::new(),
            flushing: Vec::new(),
            visiting: Vec::new(),
            pool: BufferPool::new(),
            delivery: service::DeliveryGate::default(),
            config,
        };
        for record in endpoint.config.peer_records.clone() {
            // The config layer verified them already; a record that fails here is skipped.
            let _ = endpoint.add_peer_record(record);
        }
        endpoint
    }

    /// The driver read one receive batch from the socket; `full` when it came back as large as
    /// a batch can be, the sign of a backlog that fair admission ([`Admission`]) answers.
    pub fn note_receive_batch(&mut self, full: bool) {
        self.admission.note_batch(full);
    }

    /// Gives a delivered message's buffer back ([`Event::Message`]'s `data`), so the next
    /// delivery or send reuses it instead of allocating. Recycling keeps the hot path free of
    /// allocation; dropping the buffer instead is allowed, it just costs an allocation later.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.pool.give(buffer);
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
            .session_index
            .get(&peer)
            .and_then(|&h| self.sessions.get(h))
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
        self.sessions.len()
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
        let state = self.channels.get_by_code(channel.0).ok()?;
        let peer = self.peers.get(state.peer)?;
        Some((state.id, peer.id, state.capabilities))
    }

    fn drop_packet(&mut self, reason: &'static str) {
        self.stats.add(DROPPED, Some(("reason", reason)), 1);
    }

    fn publish_gauges(&mut self) {
        self.stats.set_at(self.hot.peers, self.peers.len() as u64);
        self.stats
            .set_at(self.hot.channels, self.channels.len() as u64);
        self.stats
            .set_at(self.hot.sessions, self.sessions.len() as u64);
        self.stats
            .set_at(self.hot.pending_handshakes, self.pending.len() as u64);
    }

    // ---------------------------------------------------------------- input

    /// Feeds one received datagram.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.last_now = now;
        self.stats.add_at(self.hot.packets_received, 1);
        self.stats
            .add_at(self.hot.received_bytes, datagram.len() as u64);
        self.cookies.advance(now);
        self.last_now = self.last_now.max(now);
        // PROTOCOL.md §5: an unvalidated address gets at most 3× what it sent.
        self.answer_budget = datagram.len().saturating_mul(3);
        self.answers_left = 1;
        // Nothing this node sends is larger than its largest MTU (§7.6), so nothing larger
        // is a packet of ours to parse: it would only pack more work into one datagram.
        let largest = usize::from(self.config.reliability.max_mtu).max(DEFAULT_MTU);
        if datagram.len() > largest {
            return self.drop_packet("oversize");
        }
        // Before any parsing or crypto: a prefix past its share of an overloaded shard.
        if !self.admission.admit(from.ip()) {
            return self.drop_packet("shard_busy");
        }
        let packet = match Packet::parse(datagram) {
            Ok(packet) => packet,
            Err(error) => return self.drop_packet(error.kind.reason()),
        };
        let header = packet.header;
        if header.sender == self.local_id {
            return self.drop_packet("own_peer_id");
        }
        // PROTOCOL.md §3: drop packets not addressed to us; the wire layer already limited an
        // all-zero recipient to the shapes where it is allowed.
        if header.recipient != self.local_id && !header.recipient.is_zero() {
            return self.drop_packet("wrong_recipient");
        }
        if header.flags.contains(Flags::ENCRYPTED) {
            self.handle_encrypted(now, from, &packet, datagram.len());
        } else if packet
            .messages()
            .next()
            .is_some_and(|m| m.kind().is_handshake() || matches!(m, Message::Reset { .. }))
        {
            self.handle_handshake(now, from, datagram, &packet);
        } else if self.has_session(header.sender) {
            // PROTOCOL.md §3: once a peer is encrypted, its plaintext is dropped (no downgrade).
            self.drop_packet("plaintext_after_session");
        } else if !self.config.allow_plaintext {
            // PROTOCOL.md §3: a node that refuses plaintext drops kind-0 packets silently.
            self.drop_packet("plaintext_refused");
        } else if header.channel.is_default() {
            self.handle_default(now, from, &header, packet.messages(), false);
        } else {
            self.handle_channel_packet(now, from, &header, packet.messages(), false);
        }
        self.send_secure_answers();
        if let Some(&peer) = self.peer_index.get(&header.sender) {
            self.mark_dirty(peer);
        }
        self.flush(now);
        self.outgoing.finish();
        self.publish_gauges();
    }

    fn handle_default(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &Header,
        messages: Messages<'_>,
        secure: bool,
    ) {
        let sender = header.sender;
        let known = self.peer_index.get(&sender).copied();
        if let Some(peer) = known {
            if let Some(state) = self.peers.get_mut(peer) {
                if state.address == from {
                    state.last_heard = now;
                }
            }
        }
        for message in messages {
            match message {
                Message::Ping { token } => {
                    self.answer_ping(from, sender, ChannelId::DEFAULT, *token)
                }
                Message::Pong { token } => self.events.push_back(Event::Pong {
                    peer: sender,
                    from,
                    token: *token,
                }),
                Message::ChannelNew { c1, cookie1 } => {
                    self.answer_channel_new(from, sender, c1, cookie1)
                }
                Message::ChannelAcknowledge {
                    channel,
                    cookie1,
                    cookie2,
                } => self.on_acknowledge(now, from, sender, channel, cookie1, cookie2),
                Message::ChannelFinalize {
                    channel,
                    cookie2,
                    capabilities,
                } => {
                    self.on_cookie2(now, from, sender, channel, cookie2, capabilities);
                }
                Message::ChannelClose { channel, reason } => {
                    self.on_peer_close(from, sender, channel, reason)
                }
                Message::Reset { .. } => self.drop_packet("reset_without_session"),
                Message::PmtuProbe { .. } => {}
                Message::HandshakeInit { .. }
                | Message::HandshakeResponse { .. }
                | Message::HandshakeCookie { .. }
                | Message::HandshakeFinal { .. }
                | Message::StartEncryption { .. } => {
                    // Handshake messages travel in plaintext and first in their packet; inside
                    // a ciphertext, or behind channel messages, they are out of place.
                    let reason = if secure {
                        "handshake_in_ciphertext"
                    } else {
                        "handshake_misplaced"
                    };
                    self.drop_packet(reason);
                    return;
                }
                // The wire layer already rejected everything else on the default channel.
                _ => {}
            }
        }
    }

    fn handle_channel_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &Header,
        messages: Messages<'_>,
        secure: bool,
    ) {
        let header = *header;
        // The data path reads the same messages again (DATA, ACK, WINDOW, fragments).
        let all = messages.clone();
        let mut messages = messages.peekable();
        let existing = self
            .peer_index
            .get(&header.sender)
            .and_then(|&peer| self.peers.get(peer).map(|p| (peer, p)))
            .and_then(|(peer, p)| {
                p.channels
                    .get(&header.channel.0)
                    .map(|&c| (peer, c, p.address))
            });
        let channel = match existing {
            Some((_, _, address)) if address != from => {
                // Path validation needs an authenticated session (PROTOCOL.md §5); a kind-0
                // peer cannot move.
                return self.drop_packet("address_mismatch");
            }
            Some((peer, channel, _)) => {
                if let Some(state) = self.peers.get_mut(peer) {
                    state.last_heard = now;
                }
                channel
            }
            None => {
                // PROTOCOL.md §6: a packet on an unknown channel must begin with a verifying
                // CHANNEL_COOKIE; it is dropped, not buffered.
                let Some(Message::ChannelCookie {
                    cookie2,
                    capabilities,
                }) = messages.peek().cloned()
                else {
                    // An authenticated peer sending data on a channel we do not hold missed our
                    // CHANNEL_CLOSE in an earlier session (this one did not retire the id, see
                    // `handle_encrypted`): tell it, or its resends fill the window its channels
                    // share. Made-up ids without data get nothing (finding 4).
                    let data = |m: Message<'_>| {
                        matches!(m, Message::Data { .. } | Message::DataFragment { .. })
                    };
                    let session = self
                        .session_index
                        .get(&header.sender)
                        .and_then(|&h| self.sessions.get(h));
                    if let Some(to) = session
                        .map(|entry| entry.address)
                        .filter(|_| secure && all.clone().any(data))
                    {
                        let (channel, reason) = (header.channel, CloseReason::Normal);
                        self.queue_default(
                            to,
                            header.sender,
                            &Message::ChannelClose { channel, reason },
                        );
                    }
                    return self.drop_packet("unknown_channel");
                };
                messages.next();
                match self.on_cookie2(
                    now,
                    from,
                    header.sender,
                    header.channel,
                    cookie2,
                    capabilities,
                ) {
                    Some(channel) => channel,
                    None => return,
                }
            }
        };
        if secure {
            // The session opened this packet without caching keys for the channel; now that
            // the channel is known open, they are kept, and this packet cannot come again.
            self.admit_keys(&header);
        }
        // Any packet from the responder on the channel confirms it to the initiator.
        if let Some(state) = self.channels.get_mut(channel) {
            if state.initiator && !state.confirmed() {
                state.phase = Phase::Open { cookie2: None };
                state.retry_at = None;
            }
        }
        // One answer per request datagram: its PINGs share one PONG packet (as many as fit
        // comfortably; the rest are dropped and counted), and CHANNEL_COOKIEs confirm once.
        let mut pongs = [[0u8; 8]; MAX_CHANNEL_PONGS];
        let mut pong_count = 0;
        let mut confirm = false;
        for message in messages {
            match message {
                // docs/RELIABILITY.md: PING token 0 is the reliability layer's probe (PTO); the
                // ACK it elicits is the answer.
                Message::Ping { token } if *token == [0; 8] => {}
                Message::Ping { token } if pong_count < MAX_CHANNEL_PONGS => {
                    pongs[pong_count] = *token;
                    pong_count = pong_count.saturating_add(1);
                }
                Message::Ping { .. } => self.drop_packet("answer_limit"),
                Message::Pong { token } if *token == data::KEEP_ALIVE_TOKEN => {}
                Message::Pong { token } => self.events.push_back(Event::Pong {
                    peer: header.sender,
                    from,
                    token: *token,
                }),
                Message::ChannelClose {
                    channel: id,
                    reason,
                } if id == header.channel => {
                    self.close(channel, reason, true, false);
                    return;
                }
                Message::ChannelClose { .. } => self.drop_packet("close_for_other_channel"),
                // A duplicate CHANNEL_COOKIE: the responder's confirmation was lost, resend it.
                Message::ChannelCookie { .. } => confirm = true,
                _ => {}
            }
        }
        if confirm {
            self.confirm_channel(channel);
        }
        if pong_count > 0 {
            let pongs: [Message<'_>; MAX_CHANNEL_PONGS] =
                std::array::from_fn(|index| Message::Pong {
                    token: &pongs[index],
                });
            self.send_on_channel(channel, &pongs[..pong_count]);
        }
        let Some(sequence) = header.sequence else {
            return;
        };
        // A CHANNEL_COOKIE that opened the channel heads the packet; the data path skips it.
        self.on_channel_packet(now, channel, sequence, all);
        self.touch(channel);
    }

    /// Room in the packet being built, or a new packet to `to`; counts against the 3× budget
    /// when `unvalidated`.
    fn stateless_answer(
        &mut self,
        to: SocketAddr,
        recipient: PeerId,
        channel: ChannelId,
        message: &Message<'_>,
    ) -> bool {
        if self.secure_peer == Some(recipient) && self.has_session(recipient) {
            // An answer to an authenticated packet goes sealed, and its address is validated;
            // all answers to one packet share one sealed datagram.
            return self.queue_secure_answer(to, recipient, message);
        }
        let needed = message.encoded_len();
        let header = Header {
            flags: Flags::default(),
            sender: self.local_id,
            recipient,
            channel,
            sequence: None,
        };
        if !self.outgoing.open_matches(to, &header) || needed > self.outgoing.remaining() {
            // Point 4 of the hostile-peer rules: one answer datagram per request datagram.
            if self.answers_left == 0 {
                self.drop_packet("answer_limit");
                return false;
            }
            if crate::wire::HEADER_LEN.saturating_add(needed) > self.answer_budget {
                self.drop_packet("amplification_limit");
                return false;
            }
            if !self.outgoing.start(to, &header, DEFAULT_MTU) {
                self.drop_packet("transmit_queue_full");
                return false;
            }
            // Both were checked above: there is an answer left and budget for the header.
            self.answers_left = self.answers_left.saturating_sub(1);
            self.answer_budget = self.answer_budget.saturating_sub(crate::wire::HEADER_LEN);
        }
        if needed > self.answer_budget {
            self.drop_packet("amplification_limit");
            return false;
        }
        if self.outgoing.push(message) {
            self.answer_budget = self.answer_budget.saturating_sub(needed);
            true
        } else {
            false
        }
    }

    /// Adds an answer to the authenticated packet being handled to the one sealed datagram that
    /// carries them all; an answer that does not fit is dropped and counted.
    fn queue_secure_answer(
        &mut self,
        to: SocketAddr,
        recipient: PeerId,
        message: &Message<'_>,
    ) -> bool {
        let room = DEFAULT_MTU - crate::wire::SEQUENCED_HEADER_LEN - crate::wire::TAG_LEN;
        let used = self.secure_answers.len();
        let needed = message.encoded_len();
        let other = self
            .secure_answer_to
            .is_some_and(|target| target != (to, recipient));
        if other || used.saturating_add(needed) > room {
            self.drop_packet("answer_limit");
            return false;
        }
        self.secure_answers.resize(used.saturating_add(needed), 0);
        match message.emit(&mut self.secure_answers[used..]) {
            Ok(written) => {
                self.secure_answers.truncate(used.saturating_add(written));
                self.secure_answer_to = Some((to, recipient));
                true
            }
            Err(_) => {
                self.secure_answers.truncate(used);
                false
            }
        }
    }

    /// Seals the answers gathered by [`queue_secure_answer`](Self::queue_secure_answer) into
    /// one datagram on the default channel (PROTOCOL.md §5).
    fn send_secure_answers(&mut self) {
        let Some((to, peer)) = self.secure_answer_to.take() else {
            return;
        };
        let answers = std::mem::take(&mut self.secure_answers);
        let local = self.local_id;
        let sealed = self
            .session_index
            .get(&peer)
            .copied()
            .and_then(|handle| self.sessions.get_mut(handle))
            .and_then(|entry| {
                let phase = entry.slot.sending_phase();
                let session = entry.slot.current()?;
                let created = session.created_at();
                let crypto = session.keys.channel(ChannelId::DEFAULT);
                let sequence = u32::try_from(crypto.next_sequence()).ok()?;
                let header =
                    secure::secure_header(phase, local, peer, ChannelId::DEFAULT, sequence);
                let sent = secure::seal_packet(
                    &mut self.outgoing,
                    crypto,
                    to,
                    &header,
                    DEFAULT_MTU,
                    |region| {
                        region.get_mut(..answers.len())?.copy_from_slice(&answers);
                        Some(answers.len())
                    },
                );
                Some((sent, crypto.packets_sent(), created))
            });
        self.secure_answers = answers;
        self.secure_answers.clear();
        match sealed {
            Some((true, count, created)) => self.rekey_if_due(peer, count, created),
            Some((false, _, _)) => self.drop_packet("transmit_queue_full"),
            None => {}
        }
    }

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
        let header = Header {
            flags: Flags::default(),
            sender: self.local_id,
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

    fn answer_ping(
        &mut self,
        from: SocketAddr,
        sender: PeerId,
        channel: ChannelId,
        token: [u8; 8],
    ) {
        // On an open channel PONGs ride the channel's own packets (`handle_channel_packet`).
        let pong = Message::Pong { token: &token };
        if self.stateless_answer(from, sender, channel, &pong) {
            self.stats.add(STATELESS, Some(("message", "pong")), 1);
        }
    }

    fn channel_of(&self, peer: PeerId, channel: ChannelId) -> Option<Handle> {
        let peer = self.peers.get(*self.peer_index.get(&peer)?)?;
        peer.channels.get(&channel.0).copied()
    }

    fn on_peer_close(
        &mut self,
        from: SocketAddr,
        sender: PeerId,
        id: ChannelId,
        reason: CloseReason,
    ) {
        let Some(&peer) = self.peer_index.get(&sender) else {
            return self.drop_packet("unknown_channel");
        };
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        if state.address != from {
            return self.drop_packet("address_mismatch");
        }
        if let Some(&channel) = state.channels.get(&id.0) {
            self.close(channel, reason, true, false);
        } else if let Some(&channel) = state.opening.get(&id.c1()) {
            // The responder refused our open (e.g. `unsupported`).
            self.close(channel, reason, true, false);
        } else {
            self.drop_packet("unknown_channel");
        }
    }

    // ---------------------------------------------------------------- output

    /// Writes a packet on `channel` holding `messages`, headed by CHANNEL_COOKIE while the
    /// initiator is unconfirmed (PROTOCOL.md §6 step 4). Returns false when it could not be
    /// queued.
    fn send_on_channel(&mut self, channel: Handle, messages: &[Message<'_>]) -> bool {
        let secure = self
            .channels
            .get(channel)
            .and_then(|state| self.peers.get(state.peer))
            .is_some_and(|peer| self.has_session(peer.id));
        let Some(state) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(peer) = self.peers.get(state.peer) else {
            return false;
        };
        if secure {
            let (to, recipient, id) = (peer.address, peer.id, state.id);
            let head = match state.phase {
                Phase::Open {
                    cookie2: Some(cookie2),
                } if state.initiator => Some((cookie2, state.capabilities)),
                _ => None,
            };
            return match head {
                Some((cookie2, capabilities)) => self.send_secure(
                    to,
                    recipient,
                    id,
                    Some(&Message::ChannelCookie {
                        cookie2: &cookie2,
                        capabilities,
                    }),
                    messages,
                ),
                None => self.send_secure(to, recipient, id, None, messages),
            };
        }
        if !self.config.allow_plaintext {
            self.drop_packet("no_session");
            return false;
        }
        // PROTOCOL.md §3: one packet-number space per channel and direction, shared with the
        // data path, so a number is never reused.
        let Some(sequence) = self.take_sequence(self.last_now, channel) else {
            return false;
        };
        let Some(state) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(peer) = self.peers.get(state.peer) else {
            return false;
        };
        let header = Header {
            flags: Flags::SEQUENCED,
            sender: self.local_id,
            recipient: peer.id,
            channel: state.id,
            sequence: Some(sequence),
        };
        let to = peer.address;
        let head = match state.phase {
            Phase::Open {
                cookie2: Some(cookie2),
            } if state.initiator => Some((cookie2, state.capabilities)),
            _ => None,
        };
        if !self.outgoing.start(to, &header, DEFAULT_MTU) {
            self.drop_packet("transmit_queue_full");
            return false;
        }
        if let Some((cookie2, capabilities)) = head {
            self.outgoing.push(&Message::ChannelCookie {
                cookie2: &cookie2,
                capabilities,
            });
        }
        for message in messages {
            if !self.outgoing.push(message) {
                self.outgoing.abandon();
                return false;
            }
        }
        self.outgoing.finish();
        true
    }

    fn send_data(&mut self, channel: Handle, payload: &[u8]) -> Result<u64, SendError> {
        self.send_message(self.last_now, channel, payload)
    }

    fn flush_early(&mut self, channel: Handle) {
        loop {
            let Some(state) = self.channels.get_mut(channel) else {
                return;
            };
            let Some(data) = state.early.pop_front() else {
                return;
            };
            state.early_bytes = state.early_bytes.saturating_sub(data.len());
            let _ = self.send_data(channel, &data);
        }
    }

    /// Writes the next datagram to send into `buf` (at least 1452 bytes).
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if !self.dirty.is_empty() {
            self.flush(self.last_now);
        }
        let (destination, len) = self.outgoing.pop(buf)?;
        self.stats.add_at(self.hot.packets_sent, 1);
        self.stats.add_at(self.hot.sent_bytes, len as u64);
        Some(Transmit { destination, len })
    }

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
            .channels
            .resolve(channel.0)
            .map_err(|_| SendError::UnknownChannel)?;
        self.last_now = self.last_now.max(now);
        // A channel still opening queues the message; it leaves once the id is complete.
        let number = self.send_message(now, handle, data)?;
        self.flush(now);
        self.outgoing.finish();
        Ok(number)
    }

    /// Closes a channel, telling the peer with CHANNEL_CLOSE.
    pub fn close_channel(&mut self, _now: Instant, channel: ChannelHandle, reason: CloseReason) {
        if let Ok(handle) = self.channels.resolve(channel.0) {
            self.close(handle, reason, false, true);
        }
    }

    fn close(&mut self, channel: Handle, reason: CloseReason, by_peer: bool, notify_peer: bool) {
        let Some(code) = self.channels.hashcode(channel) else {
            return;
        };
        if notify_peer {
            if let Some(state) = self.channels.get(channel) {
                let close = Message::ChannelClose {
                    channel: state.id,
                    reason,
                };
                match state.phase {
                    // An unconfirmed channel may not exist at the responder: a CLOSE on the
                    // default channel reaches it either way, without reopening it by cookie.
                    Phase::Open { cookie2: Some(_) } => {
                        if let Some(peer) = self.peers.get(state.peer) {
                            let (to, recipient) = (peer.address, peer.id);
                            self.queue_default(to, recipient, &close);
                        }
                    }
                    Phase::Open { cookie2: None } => {
                        self.send_on_channel(channel, &[close]);
                    }
                    Phase::Opening { .. } => {}
                }
            }
        }
        self.detach_data(channel);
        let Some(state) = self.channels.remove(channel) else {
            return;
        };
        let opened = matches!(state.phase, Phase::Open { .. });
        let mut peer_id = None;
        if let Some(peer) = self.peers.get_mut(state.peer) {
            if opened {
                peer.channels.remove(&state.id.0);
                peer_id = Some(peer.id);
            } else {
                peer.opening.remove(&state.id.c1());
            }
        }
        self.recount(state.peer);
        if let Some(peer_id) = peer_id {
            self.retire_keys(peer_id, state.id);
        }
        let label = close_label(reason);
        self.stats.add(CLOSED, Some(("reason", label)), 1);
        let channel = ChannelHandle(code);
        self.events.push_back(if opened {
            Event::ChannelClosed {
                channel,
                reason,
                by_peer,
            }
        } else {
            Event::OpenFailed { channel, reason }
        });
        self.forget_peer_if_idle(state.peer);
    }

    /// A peer that never completed a channel holds nothing worth keeping. One that did keeps its
    /// used ids until its timer forgets it (see `peer_timer`), and so does one with a session:
    /// its next open finds it, instead of a new entry and a new timer per open.
    fn forget_peer_if_idle(&mut self, peer: Handle) {
        let idle = self.peers.get(peer).is_some_and(|p| {
            p.is_idle() && p.used_ids.is_empty() && !self.session_index.contains_key(&p.id)
        });
        if idle {
            self.forget_peer(peer);
        } else {
            self.queue_idle(peer);
        }
    }

    fn forget_peer(&mut self, peer: Handle) {
        if let Some(state) = self.peers.remove(peer) {
            self.unindex(peer, state.load);
            if self.peer_index.get(&state.id) == Some(&peer) {
                self.peer_index.remove(&state.id);
            }
            if self.unnamed.get(&state.address) == Some(&peer) {
                self.unnamed.remove(&state.address);
            }
        }
    }

    // ---------------------------------------------------------------- timers

    fn arm(&mut self, at: Instant, key: TimerKey) {
        self.timers.push(Reverse((at, key)));
    }

    /// The earliest deadline at which [`Endpoint::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs timers whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.cookies.advance(now);
        self.last_now = self.last_now.max(now);
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match key {
                TimerKey::Channel(code) => self.channel_timer(now, code),
                TimerKey::Peer(code) => self.peer_timer(now, code),
                TimerKey::Handshake(code) => self.handshake_timer(now, code),
                TimerKey::Session(code) => self.session_timer(now, code),
                TimerKey::Data(code) => self.data_timer(now, at, code),
            }
        }
        self.flush(now);
        self.outgoing.finish();
        self.publish_gauges();
    }

    fn channel_timer(&mut self, now: Instant, code: Hashcode) {
        // A timer for a channel that is gone is stale: the hashcode says so (PROTOCOL.md §8).
        let Ok(channel) = self.channels.resolve(code) else {
            return;
        };
        let tries = self.config.open_tries;
        let retry = self.config.open_retry;
        let Some(state) = self.channels.get_mut(channel) else {
            return;
        };
        let Some(retry_at) = state.retry_at else {
            return;
        };
        if retry_at > now {
            return;
        }
        if state.tries >= tries {
            if now >= state.give_up_at {
                self.close(channel, CloseReason::Timeout, false, true);
            } else {
                let at = state.give_up_at;
                state.retry_at = Some(at);
                self.arm(at, TimerKey::Channel(code));
            }
            return;
        }
        // Backoff: each retry waits twice as long as the one before.
        let wait = retry.saturating_mul(1u32 << state.tries.min(16));
        state.tries = state.tries.saturating_add(1);
        state.retry_at = Some(later(now, wait));
        let opening = matches!(state.phase, Phase::Opening { .. });
        self.arm(later(now, wait), TimerKey::Channel(code));
        if opening {
            self.send_channel_new(channel);
        } else {
            self.send_finalize(channel);
        }
    }

    fn shed_session_keys(&mut self, peer: PeerId) {
        if let Some(entry) = self
            .session_index
            .get(&peer)
            .and_then(|&handle| self.sessions.get_mut(handle))
        {
            entry.slot.shed_keys();
        }
    }

    fn peer_timer(&mut self, now: Instant, code: Hashcode) {
        let Ok(peer) = self.peers.resolve(code) else {
            return;
        };
        let timeout = self.config.connection_reset_timeout;
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        let deadline = later(state.last_heard, timeout);
        if deadline > now {
            // PROTOCOL.md §12 (memory per idle peer): a peer silent for a keep-alive interval
            // gives up its expanded channel keys, re-expanded by its next packet. This timer
            // already exists per peer, so nothing scans the peers per packet.
            let idle_at = later(state.last_heard, self.config.keep_alive_interval);
            if idle_at <= now {
                let id = state.id;
                self.shed_session_keys(id);
                self.arm(deadline, TimerKey::Peer(code));
            } else {
                self.arm(idle_at.min(deadline), TimerKey::Peer(code));
            }
            return;
        }
        // PROTOCOL.md §7.7: a peer silent for the connection reset timeout loses its channels;
        // under kind 0 that forgets it entirely.
        let channels: Vec<Handle> = state
            .channels
            .values()
            .chain(state.opening.values())
            .copied()
            .collect();
        for channel in channels {
            self.close(channel, CloseReason::Idle, false, false);
        }
        // The used ids must outlive every cookie2 that could still reopen one of them: a cookie2
        // stays valid for two rotations after it was made (PROTOCOL.md §6).
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        let keep_until = later(
            state.last_open,
            self.config.cookie_rotation.saturating_mul(2),
        );
        if keep_until > now {
            self.arm(keep_until, TimerKey::Peer(code));
        } else {
            self.forget_peer(peer);
        }
    }
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
