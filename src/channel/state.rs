//! Per-peer and per-channel state, allocated only after a cookie or a handshake has validated the
//! peer's address (PROTOCOL.md §3, §6).

use crate::handle::Handle;
use crate::session::window::SlidingWindow;
use crate::wire::{Capabilities, ChannelId, PeerId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

/// Message numbers remembered for duplicate suppression: 2048 behind the newest.
pub(crate) type MessageWindow = SlidingWindow<32>;

/// A peer this node has channel state with.
pub(crate) struct Peer {
    /// ZERO until the peer's first answer names it (a kind-0 open to a bare address).
    pub(crate) id: PeerId,
    pub(crate) address: SocketAddr,
    pub(crate) last_heard: Instant,
    /// When the last channel with this peer opened.
    pub(crate) last_open: Instant,
    /// Established or half-established channels by full id.
    pub(crate) channels: HashMap<u32, Handle>,
    /// Our own opens still waiting for CHANNEL_ACKNOWLEDGE, by c1.
    pub(crate) opening: HashMap<u16, Handle>,
    /// Every channel id ever open with this peer in this session: PROTOCOL.md §6 forbids reuse,
    /// so a replayed FINALIZE cannot reopen a closed channel.
    pub(crate) used_ids: HashSet<u32>,
}

impl Peer {
    pub(crate) fn new(id: PeerId, address: SocketAddr, now: Instant) -> Peer {
        Peer {
            id,
            address,
            last_heard: now,
            last_open: now,
            channels: HashMap::new(),
            opening: HashMap::new(),
            used_ids: HashSet::new(),
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.channels.is_empty() && self.opening.is_empty()
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
    pub(crate) received: MessageWindow,
    /// Application data sent before the id was complete; it leaves as early data.
    pub(crate) early: VecDeque<Vec<u8>>,
    pub(crate) early_bytes: usize,
}

impl Channel {
    /// True once the initiator has heard from the responder on the channel (always true for the
    /// responder).
    pub(crate) fn confirmed(&self) -> bool {
        matches!(self.phase, Phase::Open { cookie2: None })
    }
}
