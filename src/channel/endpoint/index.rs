//! The router's one map from a peer id to what the node holds for it: its channel state and its
//! session. [`PeerIndex::route`] looks up a datagram's sender once and keeps the answer, so every
//! later question about that sender while the datagram is handled (its session, its channels,
//! the answers and packets built for it) is a comparison of ids, not another hash.

use crate::handle::Handle;
use crate::wire::PeerId;
use std::collections::HashMap;

/// What the node holds for one peer id: slots in the endpoint's peer and session slabs.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Slots {
    /// The peer's channel state (`Endpoint::peers`).
    pub(super) peer: Option<Handle>,
    /// The peer's sessions (`Endpoint::sessions`).
    pub(super) session: Option<Handle>,
}

/// Peer id → [`Slots`]; an id with neither slot has no entry.
#[derive(Default)]
pub(super) struct PeerIndex {
    // Seeded (std RandomState): the header's sender id is whatever the peer claims.
    map: HashMap<PeerId, Slots>,
    /// The sender of the datagram being handled and its slots: kept equal to the map's entry
    /// by every change below, so it is never stale.
    routed: Option<(PeerId, Slots)>,
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
        let slots = self.map.get(&id).copied().unwrap_or_default();
        self.routed = Some((id, slots));
    }

    fn slots(&self, id: &PeerId) -> Option<&Slots> {
        match &self.routed {
            Some((routed, slots)) if routed == id => Some(slots),
            _ => self.map.get(id),
        }
    }

    /// The peer's channel state.
    pub(super) fn peer(&self, id: &PeerId) -> Option<&Handle> {
        self.slots(id)?.peer.as_ref()
    }

    /// The peer's sessions.
    pub(super) fn session(&self, id: &PeerId) -> Option<&Handle> {
        self.slots(id)?.session.as_ref()
    }

    pub(super) fn set_peer(&mut self, id: PeerId, peer: Handle) {
        self.change(id, |slots| slots.peer = Some(peer));
    }

    pub(super) fn set_session(&mut self, id: PeerId, session: Handle) {
        self.change(id, |slots| slots.session = Some(session));
    }

    pub(super) fn clear_peer(&mut self, id: &PeerId) {
        self.change(*id, |slots| slots.peer = None);
    }

    pub(super) fn clear_session(&mut self, id: &PeerId) {
        self.change(*id, |slots| slots.session = None);
    }

    /// Applies `what` to the entry of `id` (made if missing, dropped once empty) and to the
    /// routed copy when `id` is the routed sender.
    fn change(&mut self, id: PeerId, what: impl FnOnce(&mut Slots)) {
        let slots = match self.map.get_mut(&id) {
            Some(slots) => {
                what(slots);
                *slots
            }
            None => {
                // Only a set makes an entry: clearing what is not there inserts nothing.
                let mut slots = Slots::default();
                what(&mut slots);
                if slots != Slots::default() {
                    self.map.insert(id, slots);
                }
                slots
            }
        };
        if slots == Slots::default() {
            self.map.remove(&id);
        }
        if let Some((routed, kept)) = self.routed.as_mut()
            && *routed == id
        {
            *kept = slots;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_keeps_its_entry_while_either_slot_is_held() {
        let mut index = PeerIndex::default();
        let id = PeerId([3; 16]);
        index.set_peer(id, Handle(1));
        index.set_session(id, Handle(2));
        assert_eq!(index.peer(&id), Some(&Handle(1)));
        assert_eq!(index.session(&id), Some(&Handle(2)));
        index.clear_peer(&id);
        assert_eq!(index.peer(&id), None);
        assert_eq!(index.session(&id), Some(&Handle(2)));
        index.clear_session(&id);
        assert!(index.map.is_empty());
        assert_eq!(index.session(&id), None);
        // Clearing what is not there leaves no entry behind.
        index.clear_peer(&id);
        assert!(index.map.is_empty());
    }

    #[test]
    fn the_routed_sender_follows_every_change() {
        let mut index = PeerIndex::default();
        let (id, other) = (PeerId([3; 16]), PeerId([4; 16]));
        index.set_peer(other, Handle(9));
        index.route(id);
        assert_eq!(index.peer(&id), None);
        index.set_peer(id, Handle(1));
        index.set_session(id, Handle(2));
        assert_eq!(index.peer(&id), Some(&Handle(1)));
        assert_eq!(index.session(&id), Some(&Handle(2)));
        // Another id is answered from the map.
        assert_eq!(index.peer(&other), Some(&Handle(9)));
        index.clear_session(&id);
        assert_eq!(index.session(&id), None);
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
        index.set_session(id, Handle(2));
        index.route(id);
        assert_eq!(index.session(&id), Some(&Handle(2)));
    }
}
