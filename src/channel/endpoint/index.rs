//! The router's one map from a peer id to its connection, which holds everything the node keeps
//! for that peer: its sessions and its channels. [`PeerIndex::route`] looks up a datagram's
//! sender once and keeps the answer, so every later question about that sender while the
//! datagram is handled (its session, its channels, the answers and packets built for it) is a
//! comparison of ids, not another hash.

use crate::handle::Handle;
use crate::wire::PeerId;
use std::collections::HashMap;

/// Peer id → the slot of its connection in `Endpoint::peers`.
#[derive(Default)]
pub(super) struct PeerIndex {
    // Seeded (std RandomState): the header's sender id is whatever the peer claims.
    map: HashMap<PeerId, Handle>,
    /// The sender of the datagram being handled and its slot: kept equal to the map's entry
    /// by every change below, so it is never stale.
    routed: Option<(PeerId, Option<Handle>)>,
}

impl PeerIndex {
    /// Looks `id` up, the one lookup of a datagram, and keeps the answer for the questions
    /// that follow (and for the next datagrams of the same sender).
    pub(super) fn route(&mut self, id: PeerId) {
        // The kept answer follows every change, so a sender that sent the previous datagram
        // too (a stream's every packet) is answered without hashing its id again.
        if self.routed.is_some_and(|(routed, _)| routed == id) {
            return;
        }
        let slot = self.map.get(&id).copied();
        self.routed = Some((id, slot));
    }

    /// The peer's connection.
    pub(super) fn peer(&self, id: &PeerId) -> Option<&Handle> {
        match &self.routed {
            Some((routed, slot)) if routed == id => slot.as_ref(),
            _ => self.map.get(id),
        }
    }

    pub(super) fn set_peer(&mut self, id: PeerId, peer: Handle) {
        self.map.insert(id, peer);
        self.follow(id, Some(peer));
    }

    pub(super) fn clear_peer(&mut self, id: &PeerId) {
        self.map.remove(id);
        self.follow(*id, None);
    }

    /// Keeps the routed copy equal to the map when `id` is the routed sender.
    fn follow(&mut self, id: PeerId, slot: Option<Handle>) {
        if let Some((routed, kept)) = self.routed.as_mut()
            && *routed == id
        {
            *kept = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routed_sender_follows_every_change() {
        let mut index = PeerIndex::default();
        let (id, other) = (PeerId([3; 16]), PeerId([4; 16]));
        index.set_peer(other, Handle(9));
        index.route(id);
        assert_eq!(index.peer(&id), None);
        index.set_peer(id, Handle(1));
        assert_eq!(index.peer(&id), Some(&Handle(1)));
        // Another id is answered from the map.
        assert_eq!(index.peer(&other), Some(&Handle(9)));
        index.clear_peer(&id);
        assert_eq!(index.peer(&id), None);
        assert!(!index.map.contains_key(&id));
        index.set_peer(id, Handle(1));
        index.route(other);
        assert_eq!(index.peer(&other), Some(&Handle(9)));
        assert_eq!(index.peer(&id), Some(&Handle(1)));
    }

    #[test]
    fn routing_the_same_sender_again_keeps_an_answer_that_followed_every_change() {
        let mut index = PeerIndex::default();
        let id = PeerId([3; 16]);
        index.route(id);
        index.set_peer(id, Handle(1));
        // The second datagram of the sender is answered from the kept copy, without a lookup.
        index.route(id);
        assert_eq!(index.peer(&id), Some(&Handle(1)));
        index.clear_peer(&id);
        index.route(id);
        assert_eq!(index.peer(&id), None);
        assert!(index.map.is_empty());
        // A change made while another sender was routed is in the map, and routing finds it.
        index.route(PeerId([4; 16]));
        index.set_peer(id, Handle(2));
        index.route(id);
        assert_eq!(index.peer(&id), Some(&Handle(2)));
    }
}
