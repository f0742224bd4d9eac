//! What the endpoint offers the service seam (`crate::service`, PROTOCOL.md §12): a read-only
//! view of a peer for workers that ask about it, and the workers' room, which gates delivery on
//! reliable channels and which their credit follows.

use super::Endpoint;
use crate::channel::reliability::fair_share;
use crate::handle::Handle;
use crate::wire::PeerId;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a worker may learn about a peer (answered by the shard that owns it).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// Where its packets come from and ours go.
    pub address: SocketAddr,
    /// The handshake kind of its current session (1 IK, 2 XX, 3 IKpsk2), `None` for a kind-0
    /// peer.
    pub session_kind: Option<u8>,
    /// The smoothed round-trip time of its path, once a sample was taken.
    pub rtt: Option<Duration>,
    /// The Ed25519 and X25519 keys its current session proved (`None` for a kind-0 peer):
    /// what an IK handshake to it needs besides the binding signature, so a worker can tell
    /// whether a signed peer record it holds is the one the peer uses now.
    pub static_keys: Option<([u8; 32], [u8; 32])>,
}

/// The workers' room as the endpoint keeps it: reliable channels deliver only while there is
/// room, and those that met none wait in `waiting` until the engine reports more.
#[derive(Debug, Default)]
pub(super) struct DeliveryGate {
    /// Messages of reliable channels the workers take before the next report; `None`: no bound.
    free: Option<u64>,
    /// Reliable channels with data state, among which the room is shared.
    pub(super) reliable: u64,
    /// Reliable channels that met a full room (flagged in their `ChannelData`): they have
    /// messages to deliver, or a peer waiting for credit that only room can give.
    pub(super) waiting: VecDeque<Handle>,
    /// The list being resumed, kept to reuse its memory.
    resuming: Vec<Handle>,
    /// The round-robin turns of one resume, kept to reuse its memory.
    turns: Vec<Handle>,
}

impl DeliveryGate {
    /// True when the workers take no more reliable messages now.
    pub(super) fn is_full(&self) -> bool {
        self.free == Some(0)
    }

    /// Notes one reliable message handed to the application.
    pub(super) fn took_one(&mut self) {
        self.free = self.free.map(|free| free.saturating_sub(1));
    }

    /// A reliable channel's cap on new credit now.
    pub(super) fn credit_cap(&self) -> Option<u64> {
        fair_share(self.free, self.reliable)
    }
}

impl Endpoint {
    /// What this endpoint knows of `peer`: its address, session kind and RTT; `None` when it
    /// holds no state for it.
    pub fn peer_info(&self, peer: PeerId) -> Option<PeerInfo> {
        let state = self
            .ids
            .peer(&peer)
            .and_then(|&handle| self.peers.get(handle));
        let session = self
            .ids
            .session(&peer)
            .and_then(|&handle| self.sessions.get(handle));
        let address = state
            .map(|p| p.address)
            .or_else(|| session.map(|s| s.address))?;
        let current = session.and_then(|s| s.slot.current_ref());
        let session_kind = current.map(|s| s.kind().code());
        let static_keys = current.map(|s| (*s.peer_ed25519(), *s.peer_x25519()));
        let rtt = state
            .and_then(|p| p.path.as_ref())
            .map(|path| path.rtt())
            .filter(|rtt| rtt.has_sample())
            .map(|rtt| rtt.smoothed());
        Some(PeerInfo {
            peer,
            address,
            session_kind,
            rtt,
            static_keys,
        })
    }

    /// Tells the endpoint how many more messages of reliable channels the application (the
    /// workers' queue) takes now; `None` (the default) means no bound. PROTOCOL.md §12: what
    /// arrives on reliable channels never meets a full queue, because their credit follows
    /// its capacity: a reliable channel delivers only while there is room, keeps the rest
    /// within the credit it granted, and grants new credit only up to its fair share of the
    /// room. A driver calls this once a loop turn, before feeding datagrams.
    ///
    /// When room comes back, the channels that met none resume first come, first served, as
    /// many as there are messages of room (so a turn's work follows the room, not how many
    /// channels wait); they take turns, one message each, so the first cannot take it all,
    /// then each is revisited so its credit grows again. Those that find no room go to the
    /// back of the line.
    pub fn set_delivery_capacity(&mut self, now: Instant, free: Option<usize>) {
        let room = free.unwrap_or(usize::MAX);
        self.delivery.free = free.map(|n| u64::try_from(n).unwrap_or(u64::MAX));
        if room == 0 || self.delivery.waiting.is_empty() {
            return;
        }
        let mut resuming = std::mem::take(&mut self.delivery.resuming);
        resuming.clear();
        let take = room.min(self.delivery.waiting.len());
        resuming.extend(self.delivery.waiting.drain(..take));
        for &channel in &resuming {
            if let Some(data) = self.channels.get_mut(channel).and_then(|c| c.data.as_mut()) {
                data.waiting = false;
            }
        }
        let mut turns = std::mem::take(&mut self.delivery.turns);
        turns.clear();
        turns.extend_from_slice(&resuming);
        // Each pass delivers a message per channel left or drops the channel (nothing more to
        // give, or the room ran out, which lists it as waiting again), so this ends.
        while !turns.is_empty() {
            let mut index = 0;
            while let Some(&channel) = turns.get(index) {
                if self.deliver_some(now, channel, 1) {
                    index = index.saturating_add(1);
                } else {
                    turns.swap_remove(index);
                }
            }
        }
        for &channel in &resuming {
            self.touch(channel);
        }
        self.delivery.turns = turns;
        self.delivery.resuming = resuming;
        self.flush(now);
        self.outgoing.finish();
    }

    /// Lists a channel (just flagged) as waiting for room. A listed channel that closes stays
    /// listed until the next resume, and its slot's next tenant may be listed again: past twice
    /// the reliable channels, the list is compacted (each live, flagged channel once), so a peer
    /// opening and closing channels while the workers are stuck cannot grow it.
    pub(super) fn wait_for_room(&mut self, channel: Handle) {
        self.delivery.waiting.push_back(channel);
        let bound = usize::try_from(self.delivery.reliable)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .max(16);
        if self.delivery.waiting.len() <= bound {
            return;
        }
        let mut list = std::mem::take(&mut self.delivery.waiting);
        list.retain(|&channel| {
            match self.channels.get_mut(channel).and_then(|c| c.data.as_mut()) {
                // The flag is cleared on the first sight, so a second entry is dropped.
                Some(data) if data.waiting => {
                    data.waiting = false;
                    true
                }
                _ => false,
            }
        });
        for &channel in &list {
            if let Some(data) = self.channels.get_mut(channel).and_then(|c| c.data.as_mut()) {
                data.waiting = true;
            }
        }
        self.delivery.waiting = list;
    }

    /// Reliable channels listed as waiting for the workers' room (bounded by twice the
    /// reliable channels, at least 16).
    pub fn channels_waiting_for_room(&self) -> usize {
        self.delivery.waiting.len()
    }

    /// The workers' room left before the next [`set_delivery_capacity`](Self::set_delivery_capacity)
    /// (`None`: no bound).
    pub fn delivery_capacity(&self) -> Option<usize> {
        self.delivery
            .free
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}
