//! Per-peer and per-channel state, allocated only after a cookie or a handshake has validated the
//! peer's address (PROTOCOL.md §3, §6).

use crate::channel::reliability::{ChannelReliability, ChannelStats, PathState, ReassemblyBudget};
use crate::handle::{FxHashMap, Handle};
use crate::session::SessionSlot;
use crate::wire::{Capabilities, ChannelId, PeerId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A peer this node has channel state with.
pub(crate) struct Peer {
    /// ZERO until the peer's first answer names it (a kind-0 open to a bare address).
    pub(crate) id: PeerId,
    pub(crate) address: SocketAddr,
    pub(crate) last_heard: Instant,
    /// When the last channel with this peer opened.
    pub(crate) last_open: Instant,
    /// Established or half-established channels by full id.
    // Seeded (std RandomState): the peer picks half of every id (c1 or c2).
    pub(crate) channels: HashMap<u32, Handle>,
    /// Our own opens still waiting for CHANNEL_ACKNOWLEDGE, by c1.
    // Fx: c1 here is an id this node picked for its own open.
    pub(crate) opening: FxHashMap<u16, Handle>,
    /// Channel ids a kind-0 peer opened lately: PROTOCOL.md §6 forbids reuse, so a replayed
    /// FINALIZE cannot reopen a closed channel. Under a session the session's keys remember
    /// closed ids instead (`ChannelKeys::is_retired`), for the session's whole life.
    pub(crate) used_ids: UsedIds,
    /// Whether the peer waits in the endpoint's list of peers with packets to build.
    pub(crate) dirty: bool,
    /// Whether the peer waits in the endpoint's queue of idle peers.
    pub(crate) idle_queued: bool,
    /// The channel count under which the endpoint's fairness index holds the peer (0: not
    /// indexed).
    pub(crate) load: usize,
    /// Congestion control, pacing, RTT and MTU shared by the peer's channels (§7.3); made with
    /// the first channel that carries data.
    pub(crate) path: Option<PathState>,
    /// The peer's share of the node's reassembly memory (§7.5).
    pub(crate) budget: Option<ReassemblyBudget>,
    /// The peer's channels with data state, in the order they take turns.
    pub(crate) order: Vec<Handle>,
    /// Channels touched since the last flush (a packet, a send, a timer): only these are
    /// visited, so a packet costs the same whatever number of channels its sender holds.
    pub(crate) touched: Vec<Handle>,
    /// Whether the next flush must offer every channel a turn: the path's window opened (an
    /// ACK or a loss freed room), or the last flush stopped at a full transmit queue.
    pub(crate) rescan: bool,
    /// The congestion window's free room after the last flush, to notice it opening.
    pub(crate) room: u64,
    /// Kind-0 traffic with the peer (a peer with a session counts on its [`PeerSession`]).
    pub(crate) traffic: Traffic,
}

impl Peer {
    pub(crate) fn new(id: PeerId, address: SocketAddr, now: Instant) -> Peer {
        Peer {
            id,
            address,
            last_heard: now,
            last_open: now,
            channels: HashMap::new(),
            opening: FxHashMap::default(),
            used_ids: UsedIds::default(),
            dirty: false,
            idle_queued: false,
            load: 0,
            path: None,
            budget: None,
            order: Vec::new(),
            touched: Vec::new(),
            rescan: false,
            room: 0,
            traffic: Traffic::default(),
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.channels.is_empty() && self.opening.is_empty()
    }

    /// Channels open or opening with this peer: what it holds of the node's channel table.
    pub(crate) fn load(&self) -> usize {
        self.channels.len().saturating_add(self.opening.len())
    }
}

/// A kind-0 peer's used channel ids, kept by cookie rotation. A cookie2 is accepted for two
/// rotations (PROTOCOL.md §6), so an id opened before the previous rotation can no longer be
/// replayed open and is forgotten: memory follows the peer's recent opens, which the endpoint
/// caps, not its history. Boxed and made on the first insert, and freed once both rotations are
/// empty: a peer under a session never inserts, so it pays a null pointer, not two sets.
#[derive(Default)]
pub(crate) struct UsedIds(Option<Box<UsedIdSets>>);

#[derive(Default)]
struct UsedIdSets {
    // Seeded (std RandomState): the peer picked these ids.
    current: HashSet<u32>,
    // Seeded, as `current`.
    previous: HashSet<u32>,
    /// The cookie rotation `current` belongs to.
    epoch: u64,
}

impl UsedIdSets {
    fn roll(&mut self, epoch: u64) {
        if epoch == self.epoch {
            return;
        }
        if epoch == self.epoch.saturating_add(1) {
            self.previous = std::mem::take(&mut self.current);
        } else {
            self.previous = HashSet::new();
            self.current = HashSet::new();
        }
        self.epoch = epoch;
    }

    fn is_empty(&self) -> bool {
        self.current.is_empty() && self.previous.is_empty()
    }
}

impl UsedIds {
    /// The sets rolled to `epoch`, or None when no id is remembered then (freeing them).
    fn at(&mut self, epoch: u64) -> Option<&mut UsedIdSets> {
        let sets = self.0.as_mut()?;
        sets.roll(epoch);
        if sets.is_empty() {
            self.0 = None;
        }
        self.0.as_deref_mut()
    }

    /// True if `id` was opened in this rotation or the one before.
    pub(crate) fn contains(&mut self, epoch: u64, id: u32) -> bool {
        self.at(epoch)
            .is_some_and(|sets| sets.current.contains(&id) || sets.previous.contains(&id))
    }

    pub(crate) fn insert(&mut self, epoch: u64, id: u32) {
        let sets = self.0.get_or_insert_with(Box::default);
        sets.roll(epoch);
        sets.current.insert(id);
    }

    /// Ids remembered now.
    pub(crate) fn len(&mut self, epoch: u64) -> usize {
        self.at(epoch).map_or(0, |sets| {
            sets.current.len().saturating_add(sets.previous.len())
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|sets| sets.is_empty())
    }
}

/// Where a channel is in its life.
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    /// Initiator: CHANNEL_NEW sent, waiting for CHANNEL_ACKNOWLEDGE.
    Opening { cookie1: [u8; 16] },
    /// Both halves of the id are known. The initiator keeps `cookie2` until the responder's first
    /// packet on the channel confirms it, so it can head packets with CHANNEL_COOKIE or retry
    /// FINALIZE.
    Open { cookie2: Option<[u8; 16]> },
}

/// One channel.
pub(crate) struct Channel {
    pub(crate) peer: Handle,
    pub(crate) id: ChannelId,
    pub(crate) capabilities: Capabilities,
    pub(crate) initiator: bool,
    pub(crate) phase: Phase,
    /// Handshake retries so far (CHANNEL_NEW, then FINALIZE).
    pub(crate) tries: u32,
    /// When the current handshake step is retried; None once confirmed.
    pub(crate) retry_at: Option<Instant>,
    /// When the half-open handshake gives up.
    pub(crate) give_up_at: Instant,
    pub(crate) next_sequence: u32,
    pub(crate) next_message: u64,
    /// The reliability state (PROTOCOL.md §7), made on first use.
    pub(crate) data: Option<Box<ChannelData>>,
    /// Application data sent before the id was complete; it leaves as early data.
    pub(crate) early: VecDeque<Vec<u8>>,
    pub(crate) early_bytes: usize,
    /// Whether the channel waits in its peer's `touched` list.
    pub(crate) touched: bool,
}

impl Channel {
    /// True once the initiator has heard from the responder on the channel (always true for the
    /// responder).
    pub(crate) fn confirmed(&self) -> bool {
        matches!(self.phase, Phase::Open { cookie2: None })
    }
}

/// A peer's encrypted sessions (PROTOCOL.md §5). Kept apart from [`Peer`]: a session outlives
/// the peer's channels (it stays cached for its lifetime, §7.7).
pub(crate) struct PeerSession {
    pub(crate) peer: PeerId,
    /// Where the peer's handshake came from; answers go there.
    pub(crate) address: SocketAddr,
    pub(crate) slot: SessionSlot,
    /// When a RESET last made us start a handshake (PROTOCOL.md §4: at most one per 5 s).
    pub(crate) last_reset_handshake: Option<Instant>,
    /// The bare address our own XX found this peer at, so later PINGs and opens to that address
    /// reuse the session instead of starting a handshake each (one entry per session).
    pub(crate) bare: Option<SocketAddr>,
    /// When a packet last authenticated under one of its sessions (or it was installed): the
    /// session table's recency (PROTOCOL.md §5, least recently used first out).
    pub(crate) last_used: Instant,
    /// When the entry was made: the first handshake with the peer since the node last held no
    /// session with it. Rekeys and replacements by the same key keep it (`weft status`'s age).
    pub(crate) established: Instant,
    /// Sealed datagrams each way under the peer's sessions, rekeys included.
    pub(crate) traffic: Traffic,
}

/// Datagrams and bytes exchanged with one peer, for `weft status` (issue 13): four counters on
/// the peer's entry, counted beside the node's totals, so a peer costs 32 bytes more, not a map.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) packets_received: u64,
    pub(crate) bytes_received: u64,
    pub(crate) packets_sent: u64,
    pub(crate) bytes_sent: u64,
}

impl Traffic {
    /// A datagram of `len` bytes from the peer was accepted.
    pub(crate) fn received(&mut self, len: usize) {
        self.packets_received = self.packets_received.saturating_add(1);
        self.bytes_received = self.bytes_received.saturating_add(len as u64);
    }

    /// A datagram of `len` bytes to the peer left for the driver.
    pub(crate) fn sent(&mut self, len: usize) {
        self.packets_sent = self.packets_sent.saturating_add(1);
        self.bytes_sent = self.bytes_sent.saturating_add(len as u64);
    }
}

/// The data-path state of one channel.
#[derive(Debug)]
pub(crate) struct ChannelData {
    pub(crate) reliability: ChannelReliability,
    /// The next packet number (u64; its low 32 bits are the wire sequence number, §3).
    pub(crate) next_pn: u64,
    /// The deadline of the channel's data timer in the endpoint's timers.
    pub(crate) armed: Option<Instant>,
    /// When the channel last sent a packet (keep-alive, §7.7).
    pub(crate) last_sent: Instant,
    /// The application does not take messages now: they stay buffered and the credit does not
    /// grow, so the peer is held to what it was granted (§7.4).
    pub(crate) paused: bool,
    /// Listed in the endpoint's delivery gate, waiting for the workers' room (`service.rs`).
    pub(crate) waiting: bool,
    pub(crate) keep_alive: bool,
    pub(crate) reported: ChannelStats,
    pub(crate) last_rtt: Duration,
    /// Where the channel stands in its peer's `order`, so closing it costs no search.
    pub(crate) order_at: usize,
}
