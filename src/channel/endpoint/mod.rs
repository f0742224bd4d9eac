//! The sans-IO endpoint: one node's protocol state, fed datagrams and polled for output.
//!
//! A driver calls, in a loop: [`Endpoint::handle`] for each datagram received, then
//! [`Endpoint::handle_timeout`] when the deadline from [`Endpoint::poll_timeout`] has passed,
//! then [`Endpoint::poll_transmit`] until it returns `None` (sending each datagram), and
//! [`Endpoint::poll_event`] until it returns `None`. No socket, clock or thread lives here
//! (STYLE.md 1): `now` is always an argument and randomness comes from a seed the caller owns.

mod establish;

use crate::channel::cookie::{CookieCheck, CookieSecrets, constant_time_eq};
use crate::channel::outgoing::Outgoing;
use crate::channel::state::{Channel, MessageWindow, Peer, Phase};
use crate::channel::stats::Stats;
use crate::handle::{Handle, Hashcode, Slab};
use crate::session::Identity;
use crate::session::window::Seen;
use crate::wire::{
    Capabilities, ChannelId, CloseReason, DEFAULT_MTU, Flags, Header, Message, Packet, PeerId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DROPPED: &str = "weft_packets_dropped_total";
const STATELESS: &str = "weft_handshake_stateless_answers_total";
const COOKIE_FAILURES: &str = "weft_cookie_failures_total";
const OPENED: &str = "weft_channels_opened_total";
const CLOSED: &str = "weft_channels_closed_total";

/// Settings of an endpoint.
#[derive(Clone, Debug)]
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
    /// Most channels at once, over all peers.
    pub max_channels: usize,
    /// Most channels one peer may hold.
    pub max_channels_per_peer: usize,
    /// Most datagrams waiting for the driver.
    pub max_queued_datagrams: usize,
    /// Most bytes of early data buffered per channel while its id is incomplete.
    pub max_early_bytes: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            allow_plaintext: true,
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
    /// An application message arrived.
    Message {
        /// The channel it came on.
        channel: ChannelHandle,
        /// Its message number on that channel.
        message_number: u64,
        /// Its bytes.
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
}

/// The capability sets this node implements (more arrive with the reliability layer).
fn supported(capabilities: Capabilities) -> bool {
    capabilities.bits() == 0
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
    /// Bytes this datagram's unauthenticated answers may still use (3× rule, PROTOCOL.md §5).
    answer_budget: usize,
}

impl Endpoint {
    /// Creates an endpoint; `seed` keys its cookie secrets and random choices.
    pub fn new(config: EndpointConfig, identity: Identity, seed: [u8; 32], now: Instant) -> Self {
        let cookie_seed = blake3::derive_key("weft v1 endpoint cookie seed", &seed);
        let rng_seed = blake3::derive_key("weft v1 endpoint rng seed", &seed);
        let peers = Slab::new(config.max_peers.max(1)).unwrap_or_else(|_| {
            Slab::new(1 << 20).expect("a slab of 2^20 entries is always allowed")
        });
        let channels = Slab::new(config.max_channels.max(1)).unwrap_or_else(|_| {
            Slab::new(1 << 20).expect("a slab of 2^20 entries is always allowed")
        });
        Endpoint {
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
            stats: Stats::new(),
            answer_budget: 0,
            config,
        }
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
        self.stats.set("weft_peers", None, self.peers.len() as u64);
        self.stats
            .set("weft_channels", None, self.channels.len() as u64);
    }

    // ---------------------------------------------------------------- input

    /// Feeds one received datagram.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.add("weft_packets_received_total", None, 1);
        self.stats
            .add("weft_received_bytes_total", None, datagram.len() as u64);
        self.cookies.advance(now);
        // PROTOCOL.md §5: an unvalidated address gets at most 3× what it sent.
        self.answer_budget = datagram.len().saturating_mul(3);
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
            // Sessions arrive with their own issue; until then no encrypted packet can match one.
            return self.drop_packet("no_session");
        }
        if !self.config.allow_plaintext {
            // PROTOCOL.md §3: a node that refuses plaintext drops kind-0 packets silently.
            return self.drop_packet("plaintext_refused");
        }
        if header.channel.is_default() {
            self.handle_default(now, from, &packet);
        } else {
            self.handle_channel_packet(now, from, &packet);
        }
        self.outgoing.finish();
        self.publish_gauges();
    }

    fn handle_default(&mut self, now: Instant, from: SocketAddr, packet: &Packet<'_>) {
        let sender = packet.header.sender;
        let known = self.peer_index.get(&sender).copied();
        if let Some(peer) = known {
            if let Some(state) = self.peers.get_mut(peer) {
                if state.address == from {
                    state.last_heard = now;
                }
            }
        }
        for message in packet.messages() {
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
                    // Handshake kinds 1–3 arrive with the sessions layer.
                    self.drop_packet("handshake_unsupported");
                    return;
                }
                // The wire layer already rejected everything else on the default channel.
                _ => {}
            }
        }
    }

    fn handle_channel_packet(&mut self, now: Instant, from: SocketAddr, packet: &Packet<'_>) {
        let header = packet.header;
        let mut messages = packet.messages().peekable();
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
        let Some(code) = self.channels.hashcode(channel) else {
            return;
        };
        let handle = ChannelHandle(code);
        // Any packet from the responder on the channel confirms it to the initiator.
        if let Some(state) = self.channels.get_mut(channel) {
            if state.initiator && !state.confirmed() {
                state.phase = Phase::Open { cookie2: None };
                state.retry_at = None;
            }
        }
        for message in messages {
            match message {
                Message::Data {
                    message_number,
                    payload,
                } => self.on_data(channel, handle, message_number, payload),
                Message::Ping { token } => {
                    self.answer_ping(from, header.sender, header.channel, *token)
                }
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
                Message::ChannelCookie { .. } => self.confirm_channel(channel),
                Message::DataFragment { .. } => self.drop_packet("fragment_unsupported"),
                // Acknowledgements and credit drive the reliable modes (their own issue); the
                // unreliable mode has nothing to do with them.
                Message::Ack(_) | Message::Window { .. } | Message::PmtuProbe { .. } => {}
                _ => {}
            }
        }
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
        let needed = message.encoded_len();
        let header = Header {
            flags: Flags::default(),
            sender: self.local_id,
            recipient,
            channel,
            sequence: None,
        };
        if !self.outgoing.open_matches(to, &header) || needed > self.outgoing.remaining() {
            if crate::wire::HEADER_LEN + needed > self.answer_budget {
                self.drop_packet("amplification_limit");
                return false;
            }
            if !self.outgoing.start(to, &header, DEFAULT_MTU) {
                self.drop_packet("transmit_queue_full");
                return false;
            }
            self.answer_budget -= crate::wire::HEADER_LEN;
        }
        if needed > self.answer_budget {
            self.drop_packet("amplification_limit");
            return false;
        }
        if self.outgoing.push(message) {
            self.answer_budget -= needed;
            true
        } else {
            false
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
        if !channel.is_default() {
            // On an open channel the PONG rides the channel's own sequenced packets.
            if let Some(handle) = self.channel_of(sender, channel) {
                let pong = Message::Pong { token: &token };
                self.send_on_channel(handle, &[pong]);
            }
            return;
        }
        self.outgoing.finish();
        let pong = Message::Pong { token: &token };
        if self.stateless_answer(from, sender, ChannelId::DEFAULT, &pong) {
            self.stats.add(STATELESS, Some(("message", "pong")), 1);
        }
    }

    fn channel_of(&self, peer: PeerId, channel: ChannelId) -> Option<Handle> {
        let peer = self.peers.get(*self.peer_index.get(&peer)?)?;
        peer.channels.get(&channel.0).copied()
    }

    fn on_data(
        &mut self,
        channel: Handle,
        handle: ChannelHandle,
        message_number: u64,
        payload: &[u8],
    ) {
        let Some(state) = self.channels.get_mut(channel) else {
            return;
        };
        // PROTOCOL.md §7: duplicate suppression works on message numbers.
        match state.received.insert(message_number) {
            Seen::Fresh => {}
            Seen::Duplicate => return self.drop_packet("duplicate_message"),
            Seen::TooOld => return self.drop_packet("stale_message"),
        }
        self.stats.add("weft_messages_received_total", None, 1);
        if self.config.echo {
            // PROTOCOL.md §6: the echo service answers under the node's own message number.
            let _ = self.send_data(channel, payload);
            return;
        }
        self.events.push_back(Event::Message {
            channel: handle,
            message_number,
            data: payload.to_vec(),
        });
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
            sequence: Some(state.next_sequence),
        };
        let to = peer.address;
        state.next_sequence = state.next_sequence.wrapping_add(1);
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

    /// Largest DATA payload a single packet of this channel carries.
    fn max_payload(&self, channel: Handle) -> usize {
        let head = match self.channels.get(channel).map(|c| (&c.phase, c.initiator)) {
            Some((Phase::Open { cookie2: Some(_) }, true)) => 18,
            _ => 0,
        };
        // header + type + length varint (2) + message number varint (up to 10)
        DEFAULT_MTU - crate::wire::SEQUENCED_HEADER_LEN - head - 1 - 2 - 10
    }

    fn send_data(&mut self, channel: Handle, payload: &[u8]) -> Result<u64, SendError> {
        let max = self.max_payload(channel);
        if payload.len() > max {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        if self.outgoing.is_full() {
            self.drop_packet("transmit_queue_full");
            return Err(SendError::QueueFull);
        }
        let Some(state) = self.channels.get_mut(channel) else {
            return Err(SendError::UnknownChannel);
        };
        let message_number = state.next_message;
        state.next_message += 1;
        let data = Message::Data {
            message_number,
            payload,
        };
        if self.send_on_channel(channel, &[data]) {
            self.stats.add("weft_messages_sent_total", None, 1);
            Ok(message_number)
        } else {
            Err(SendError::QueueFull)
        }
    }

    fn flush_early(&mut self, channel: Handle) {
        loop {
            let Some(state) = self.channels.get_mut(channel) else {
                return;
            };
            let Some(data) = state.early.pop_front() else {
                return;
            };
            state.early_bytes -= data.len();
            let _ = self.send_data(channel, &data);
        }
    }

    /// Writes the next datagram to send into `buf` (at least 1452 bytes).
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (destination, len) = self.outgoing.pop(buf)?;
        self.stats.add("weft_packets_sent_total", None, 1);
        self.stats.add("weft_sent_bytes_total", None, len as u64);
        Some(Transmit { destination, len })
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------- application API

    /// Queues a PING to `to`; its PONG arrives as [`Event::Pong`] with the same token. `peer` is
    /// the target's peer id when known, else the packet names the all-zero recipient (§3).
    pub fn ping(&mut self, _now: Instant, to: SocketAddr, peer: Option<PeerId>, token: [u8; 8]) {
        self.queue_default(
            to,
            peer.unwrap_or(PeerId::ZERO),
            &Message::Ping { token: &token },
        );
    }

    /// Sends one application message; returns its message number. A message too large or a
    /// full queue is an error, never a silent drop.
    pub fn send(
        &mut self,
        _now: Instant,
        channel: ChannelHandle,
        data: &[u8],
    ) -> Result<u64, SendError> {
        let handle = self
            .channels
            .resolve(channel.0)
            .map_err(|_| SendError::UnknownChannel)?;
        let max = self.max_payload(handle) - 18;
        let budget = self.config.max_early_bytes;
        let state = self
            .channels
            .get_mut(handle)
            .ok_or(SendError::UnknownChannel)?;
        if let Phase::Opening { .. } = state.phase {
            if data.len() > max {
                return Err(SendError::TooLarge {
                    len: data.len(),
                    max,
                });
            }
            if state.early_bytes + data.len() > budget || state.early.len() >= 64 {
                return Err(SendError::QueueFull);
            }
            state.early_bytes += data.len();
            state.early.push_back(data.to_vec());
            // Its message number is the next one; early data leaves in order once the id is known.
            return Ok(state.next_message + state.early.len() as u64 - 1);
        }
        self.send_data(handle, data)
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
        let Some(state) = self.channels.remove(channel) else {
            return;
        };
        let opened = matches!(state.phase, Phase::Open { .. });
        if let Some(peer) = self.peers.get_mut(state.peer) {
            if opened {
                peer.channels.remove(&state.id.0);
            } else {
                peer.opening.remove(&state.id.c1());
            }
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
    /// used ids until its timer forgets it (see `peer_timer`).
    fn forget_peer_if_idle(&mut self, peer: Handle) {
        let idle = self
            .peers
            .get(peer)
            .is_some_and(|p| p.is_idle() && p.used_ids.is_empty());
        if idle {
            self.forget_peer(peer);
        }
    }

    fn forget_peer(&mut self, peer: Handle) {
        if let Some(state) = self.peers.remove(peer) {
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
        self.cookies.advance(now);
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match key {
                TimerKey::Channel(code) => self.channel_timer(now, code),
                TimerKey::Peer(code) => self.peer_timer(now, code),
            }
        }
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
        let wait = retry * (1u32 << state.tries.min(16));
        state.tries += 1;
        state.retry_at = Some(now + wait);
        let opening = matches!(state.phase, Phase::Opening { .. });
        self.arm(now + wait, TimerKey::Channel(code));
        if opening {
            self.send_channel_new(channel);
        } else {
            self.send_finalize(channel);
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
        let deadline = state.last_heard + timeout;
        if deadline > now {
            self.arm(deadline, TimerKey::Peer(code));
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
        let keep_until = state.last_open + self.config.cookie_rotation * 2;
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
        CloseReason::Unknown(_) => "unknown",
    }
}
