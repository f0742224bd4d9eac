//! The endpoint's settings, with the defaults PROTOCOL.md gives. Below the router, so a
//! connection reads the part it needs without importing the endpoint.

use crate::channel::reliability::ReliabilityConfig;
use crate::session::{LoadPolicy, PeerRecord, RekeyPolicy, TokenRate};
use crate::wire::PeerId;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

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
    /// Most control datagrams waiting for the driver (data packets are built when it asks).
    pub max_queued_datagrams: usize,
    /// Most of the shard's receive buffers its workers may hold at once: delivered messages
    /// queued for them or taken and not yet let go (`crate::service::Received`). Enforced by the
    /// engine's shard: past it, reliable channels' credit holds their senders and unreliable
    /// messages are dropped (`weft_messages_dropped_total{reason="worker_buffers_held"}`). A
    /// buffer is at least one datagram (~1.5 KiB), so the default bounds them at ~6 MB.
    pub max_worker_buffers: usize,
    /// Most receive buffers the workers have dropped that wait to go back to the shard's pool
    /// at once (issue 12: the next message reuses warm memory instead of faulting in fresh
    /// pages); past it a dropped buffer is freed. The queue is allocated once per shard, about
    /// 32 bytes a slot. Zero: dropped buffers are always freed.
    pub max_returned_buffers: usize,
    /// Most bytes of capacity those returned buffers hold at once, per shard; a buffer over
    /// `crate::channel::pool::KEPT_CAPACITY` is never returned.
    pub max_returned_buffer_bytes: usize,
    /// Receive slabs (~64 KiB each) the epoll backend keeps beside its batch's 32 to lend from
    /// (issue 11 point 2): a message that is the whole of one sealed DATA reaches the worker in
    /// the slab the kernel wrote it into, which it pins until every message lent from it is
    /// dropped. Past this many pinned slabs, messages are copied into pooled buffers instead
    /// (`weft_message_buffers_total{how}`). The default costs up to 4 MiB per shard. Zero:
    /// never lend.
    pub spare_receive_slabs: usize,
    /// Most bytes of early data buffered per channel while its id is incomplete.
    pub max_early_bytes: usize,
    /// Most channel ids a session may close before it must be replaced (under kind 0: that a
    /// peer may open within two cookie rotations). PROTOCOL.md §6 never uses an id twice in a
    /// session, so closed ids are remembered, about 10 bytes each: 1024 bounds that at ~10 KiB
    /// per session and costs an application that churns channels one rekey per thousand.
    pub max_closed_channels_per_session: usize,
    /// Pre-shared keys by peer: a peer listed here is reached with handshake kind 3 (§5).
    // Seeded (std RandomState): looked up by ids that peers claim.
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
    /// Most local identities the endpoint holds: the one it is made with and those the
    /// application adds with [`Endpoint::add_identity`](crate::channel::Endpoint::add_identity)
    /// (a load harness simulating many peers from one endpoint). 1 for a node: nothing from the
    /// network ever adds one.
    pub max_identities: usize,
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
    /// with [`Endpoint::set_keep_alive`](crate::channel::Endpoint::set_keep_alive).
    pub keep_alive: bool,
    /// How long a channel with keep-alive stays silent before it sends a PING (§7.7: 15 s).
    pub keep_alive_interval: Duration,
    /// Reassembly memory for big messages over all peers (PROTOCOL.md §7.5).
    pub reassembly_node_bytes: usize,
    /// Reassembly memory for big messages per peer.
    pub reassembly_peer_bytes: usize,
    /// Datagrams per window of fair admission under overload
    /// ([`Admission`](crate::channel::admission::Admission)); 0 turns it off. 4096: 128 receive
    /// batches, a few milliseconds of a busy shard, so a flood is cut within a few windows; its
    /// table holds at most that many prefixes (~150 KiB). Only kernel drops on the shard's
    /// socket count as overload, so a node that keeps up, however busy, is never throttled.
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
            .field("max_worker_buffers", &self.max_worker_buffers)
            .field("max_returned_buffers", &self.max_returned_buffers)
            .field("spare_receive_slabs", &self.spare_receive_slabs)
            .field("max_returned_buffer_bytes", &self.max_returned_buffer_bytes)
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
            max_worker_buffers: 4096,
            max_returned_buffers: 1024,
            max_returned_buffer_bytes: 8 << 20,
            spare_receive_slabs: 64,
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
            max_identities: 1,
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
