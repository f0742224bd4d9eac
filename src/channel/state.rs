//! Per-peer and per-channel state, allocated only after a cookie or a handshake has validated the
//! peer's address (PROTOCOL.md §3, §6).

use crate::channel::owed::{Owed, OwedFlags, OwedPongs, owes_nothing};
use crate::channel::reliability::{ChannelReliability, ChannelStats};
use crate::handle::Handle;
use crate::session::SessionSlot;
use crate::wire::{Capabilities, ChannelId, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// Its entry in the endpoint's channel table: the application's handle is that entry's
    /// hashcode, and the entry says where the channel lives
    /// ([`ChannelAt`](crate::channel::connection::ChannelAt)).
    pub(crate) handle: Handle,
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

/// A peer's encrypted sessions (PROTOCOL.md §5). Kept apart from the peer's [`Connection`](crate::channel::connection::Connection): a session outlives
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
    /// The counters as last added to the endpoint's statistics.
    pub(crate) reported: Reported,
    pub(crate) last_rtt: Duration,
    /// Where the channel stands in its connection's `order`, so closing it costs no search.
    pub(crate) order_at: usize,
    /// The PONG tokens the channel owes its peer (`owed.rs`).
    pub(crate) owed_pongs: OwedPongs,
    /// The rest the channel owes (its confirmation, keep-alives): a byte beside the flags
    /// above. Both are written into its next packet when the driver asks for one.
    pub(crate) owed_flags: OwedFlags,
}

impl ChannelData {
    /// What the channel owes its peer, lent to add to it or write it.
    pub(crate) fn owed(&mut self) -> Owed<'_> {
        Owed::new(&mut self.owed_pongs, &mut self.owed_flags)
    }

    /// True when the channel owes its peer something.
    pub(crate) fn owes(&self) -> bool {
        !owes_nothing(&self.owed_pongs, self.owed_flags)
    }
}

/// What a channel's counters stood at when the endpoint last added them to its statistics:
/// boxed on the first loss or drop counted, so a healthy channel, whose loss and drop counters
/// stay zero, holds a null pointer rather than 120 bytes (issue 12).
#[derive(Debug, Default)]
pub(crate) struct Reported(Option<Box<ChannelStats>>);

impl Reported {
    /// Records `now` and returns what was recorded before, or None when nothing the endpoint
    /// adds per channel changed (the usual packet: the caller then has nothing to add). The
    /// counters the endpoint does not add per channel (packets sent, duplicates, protocol
    /// errors) read as zero.
    pub(crate) fn replace(&mut self, mut now: ChannelStats) -> Option<ChannelStats> {
        now.packets_sent = 0;
        now.duplicates = 0;
        now.protocol_errors = 0;
        let before = self.0.as_deref().copied().unwrap_or_default();
        if now == before {
            return None;
        }
        **self.0.get_or_insert_with(Box::default) = now;
        Some(before)
    }
}
