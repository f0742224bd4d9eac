//! What the endpoint offers the service seam (`crate::service`, PROTOCOL.md §12): a read-only
//! view of a peer for workers that ask about it, and the workers' room, which gates delivery on
//! reliable channels and which their credit follows.

use super::Endpoint;
use crate::channel::state::Channel;
use crate::handle::Handle;
use crate::wire::PeerId;
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

impl Endpoint {
    /// What this endpoint knows of `peer`: its address, session kind and RTT; `None` when it
    /// holds no state for it.
    pub fn peer_info(&self, peer: PeerId) -> Option<PeerInfo> {
        let state = self
            .ids
            .peer(&peer)
            .and_then(|&handle| self.peers.get(handle));
        let session = state.and_then(|p| p.session.as_ref());
        let address = state.map(|p| p.address)?;
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
        for &entry in &resuming {
            if let Some(data) = self.listed(entry).and_then(|c| c.data.as_mut()) {
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
            while let Some(&entry) = turns.get(index) {
                let more = self
                    .channels
                    .get(entry)
                    .copied()
                    .is_some_and(|channel| self.deliver_some(now, channel, 1));
                if more {
                    index = index.saturating_add(1);
                } else {
                    turns.swap_remove(index);
                }
            }
        }
        for &entry in &resuming {
            if let Some(&channel) = self.channels.get(entry) {
                self.touch(channel);
            }
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
        list.retain(|&entry| {
            match self.listed(entry).and_then(|c| c.data.as_mut()) {
                // The flag is cleared on the first sight, so a second entry is dropped.
                Some(data) if data.waiting => {
                    data.waiting = false;
                    true
                }
                _ => false,
            }
        });
        for &entry in &list {
            if let Some(data) = self.listed(entry).and_then(|c| c.data.as_mut()) {
                data.waiting = true;
            }
        }
        self.delivery.waiting = list;
    }

    /// The channel a waiting list names by its entry in the channel table, while that entry
    /// still names it.
    fn listed(&mut self, entry: Handle) -> Option<&mut Channel> {
        let at = *self.channels.get(entry)?;
        let channel = self.peers.get_mut(at.peer)?.lanes.get_mut(at.lane)?;
        (channel.handle == entry).then_some(channel)
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
