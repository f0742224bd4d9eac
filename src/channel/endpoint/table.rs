//! The channel table's budgets (PROTOCOL.md §6, §12): a channel id is never used twice in a
//! session, with memory that a cap bounds (a session that runs out of ids is replaced), and a
//! full table makes room at the heaviest peer's expense, so a newcomer still gets its share.

use super::*;
use crate::session::KeyPhase;

/// The counter of channel opens refused for lack of room, by reason.
const REFUSED: &str = "weft_channels_refused_total";
/// The counter of channels closed to make room for a lighter peer.
const EVICTED: &str = "weft_channels_evicted_total";

impl Endpoint {
    /// The cookie rotation now in force, counted from the endpoint's start: kind-0 used ids are
    /// kept by it (`UsedIds`).
    pub(super) fn cookie_epoch(&self) -> u64 {
        let rotation = self.config.cookie_rotation.as_nanos().max(1);
        let since = self
            .cookies
            .next_rotation()
            .saturating_duration_since(self.epoch_origin)
            .as_nanos();
        // `rotation` is at least 1, so the division always succeeds.
        u64::try_from(since.checked_div(rotation).unwrap_or(since)).unwrap_or(u64::MAX)
    }

    /// True if `id` may not open with `peer`: it is open, or it was open before — in any
    /// session the peer holds (kinds 1–3), or within two cookie rotations (kind 0). PROTOCOL.md
    /// §6: within one session no channel id is used twice.
    pub(super) fn id_used(&mut self, peer: PeerId, id: ChannelId) -> bool {
        let epoch = self.cookie_epoch();
        if let Some(state) = self
            .ids
            .peer(&peer)
            .copied()
            .and_then(|handle| self.peers.get_mut(handle))
            && (state.channels.contains_key(&id.0) || state.used_ids.contains(epoch, id.0))
        {
            return true;
        }
        let Some(entry) = self.session_of_mut(&peer) else {
            return false;
        };
        for phase in [KeyPhase::Zero, KeyPhase::One] {
            if entry
                .slot
                .phase_session(phase)
                .is_some_and(|session| session.keys.is_retired(id))
                || entry
                    .slot
                    .displaced(phase)
                    .is_some_and(|session| session.keys.is_retired(id))
            {
                return true;
            }
        }
        false
    }

    /// True when `peer` may open no more channels: its session retired as many ids as
    /// [`EndpointConfig::max_closed_channels_per_session`] allows (it must be replaced first,
    /// PROTOCOL.md §6), or, under kind 0, it used that many within two cookie rotations.
    pub(super) fn ids_exhausted(&mut self, peer: PeerId) -> bool {
        let cap = self.config.max_closed_channels_per_session;
        let retired = self
            .session_of(&peer)
            .and_then(|entry| entry.slot.current_ref())
            .map(|session| session.keys.retired_count());
        if let Some(retired) = retired {
            return retired >= cap;
        }
        let epoch = self.cookie_epoch();
        self.ids
            .peer(&peer)
            .copied()
            .and_then(|handle| self.peers.get_mut(handle))
            .is_some_and(|state| state.used_ids.len(epoch) >= cap)
    }

    /// Counts an open refused for `reason`.
    pub(super) fn count_refused(&mut self, reason: &'static str) {
        self.stats.add(REFUSED, Some(("reason", reason)), 1);
    }

    /// An open refused because `peer` ran out of channel ids: PROTOCOL.md §6, "a session that
    /// runs out of ids is replaced by a new one". Under kind 0 the ids expire with the cookie
    /// rotation instead.
    pub(super) fn replace_exhausted(&mut self, now: Instant, peer: PeerId) {
        self.count_refused("ids_exhausted");
        if self.pending_by_peer.contains_key(&peer) {
            return;
        }
        let Some(entry) = self.session_of(&peer) else {
            return;
        };
        // A newer session already waits to take over: its first packet replaces this one.
        if !entry.slot.newest_is_current() {
            return;
        }
        let to = entry.address;
        let _ = self.ensure_handshake(now, to, Some(peer));
    }

    /// Remembers that `id` opened with a kind-0 peer; under a session the keys retire it when
    /// it closes ([`Endpoint::retire_keys`]).
    pub(super) fn note_used(&mut self, peer: Handle, id: ChannelId) {
        let Some(peer_id) = self.peers.get(peer).map(|state| state.id) else {
            return;
        };
        if self.has_session(peer_id) {
            return;
        }
        let epoch = self.cookie_epoch();
        if let Some(state) = self.peers.get_mut(peer) {
            state.used_ids.insert(epoch, id.0);
        }
    }

    /// Drops a closed channel's keys from every session the peer holds and retires its id there
    /// (PROTOCOL.md §6: never used twice in a session), so closed channels cost no keys.
    pub(super) fn retire_keys(&mut self, peer: PeerId, id: ChannelId) {
        let Some(entry) = self.session_of_mut(&peer) else {
            return;
        };
        for phase in [KeyPhase::Zero, KeyPhase::One] {
            if let Some(session) = entry.slot.phase_session(phase) {
                session.keys.remove(id);
            }
            if let Some(session) = entry.slot.displaced(phase) {
                session.keys.remove(id);
            }
        }
    }

    /// Keeps the keys of an open channel whose packet the session opened without an entry
    /// (`ChannelKeys::open` caches only channels the endpoint holds open).
    pub(super) fn admit_keys(&mut self, header: &Header) {
        if let Some(connection) = self
            .ids
            .peer(&header.sender)
            .copied()
            .and_then(|slot| self.peers.get_mut(slot))
        {
            connection.admit_keys(header);
        }
    }

    // ------------------------------------------------------------ fair shares

    /// A peer that never completed a channel holds nothing worth keeping. One that did keeps its
    /// used ids until its timer forgets it (see `peer_timer`), and so does one with a session:
    /// its next open finds it, instead of a new entry and a new timer per open.
    pub(super) fn forget_peer_if_idle(&mut self, peer: Handle) {
        let idle = self
            .peers
            .get(peer)
            .is_some_and(|p| p.is_idle() && p.used_ids.is_empty() && p.session.is_none());
        if idle {
            self.forget_peer(peer);
        } else {
            self.queue_idle(peer);
        }
    }

    pub(super) fn forget_peer(&mut self, peer: Handle) {
        if let Some(mut state) = self.peers.remove(peer) {
            // Its session goes with it (a connection with one is forgotten only when its
            // session table evicts it or the session expired, `forget_session`).
            if let Some(session) = state.session.take() {
                self.session_gone(peer, &session);
            }
            // Its channels go with it, and so do the application's handles to them.
            for (_, channel) in state.lanes.iter() {
                self.channels.remove(channel.handle);
            }
            self.deadlines.set(peer.0, None);
            self.unindex(peer, state.load);
            if self.ids.peer(&state.id) == Some(&peer) {
                self.ids.clear_peer(&state.id);
                self.release_key(&state.id);
            }
            if self.unnamed.get(&state.address) == Some(&peer) {
                self.unnamed.remove(&state.address);
            }
        }
    }

    /// Notes a peer kept without channels (its used ids, or a session's next open, keep it).
    pub(super) fn queue_idle(&mut self, peer: Handle) {
        if let Some(state) = self.peers.get_mut(peer)
            && state.is_idle()
            && !state.idle_queued
        {
            state.idle_queued = true;
            self.idle_peers.push_back(peer);
        }
        // Entries of peers that went active or away are dropped lazily; once they outnumber
        // the peers, one pass keeps each idle peer once, so the queue stays within the table.
        let bound = self.peers.len().saturating_mul(2).saturating_add(64);
        if self.idle_peers.len() > bound {
            let listed = std::mem::take(&mut self.idle_peers);
            for handle in listed {
                let Some(state) = self.peers.get_mut(handle) else {
                    continue;
                };
                if std::mem::take(&mut state.idle_queued) && state.is_idle() {
                    self.idle_peers.push_back(handle);
                }
            }
            for &handle in &self.idle_peers {
                if let Some(state) = self.peers.get_mut(handle) {
                    state.idle_queued = true;
                }
            }
        }
    }

    /// A new peer entry (`for_session`: one made to hold a session, which the session table
    /// bounds); when the `max_peers` entries without a session are taken, the longest-idle peer
    /// without channels or a session gives its entry up, so idle entries never lock a newcomer
    /// out. Its used ids go with it (under kind 0 a replayed FINALIZE could then reopen one of
    /// its closed channels until its cookie expires: a channel, not a breach). A peer with a
    /// session is not given up here: the session table's own eviction decides its fate.
    pub(super) fn insert_peer(
        &mut self,
        peer: Connection,
        for_session: bool,
    ) -> Option<(Handle, crate::handle::Hashcode)> {
        let full = |endpoint: &Endpoint| {
            let without = endpoint.peers.len().saturating_sub(endpoint.session_count);
            endpoint.peers.is_full()
                || (!for_session && without >= endpoint.config.max_peers.max(1))
        };
        if full(self) {
            // Each entry is looked at once: stale ones (the peer went active or away) are dropped.
            while let Some(candidate) = self.idle_peers.pop_front() {
                let Some(state) = self.peers.get_mut(candidate) else {
                    continue;
                };
                let queued = std::mem::take(&mut state.idle_queued);
                if queued && state.is_idle() && state.session.is_none() {
                    self.stats.add("weft_peers_evicted_total", None, 1);
                    self.forget_peer(candidate);
                    break;
                }
            }
        }
        if full(self) {
            self.count_refused("peer_table_full");
            return None;
        }
        match self.peers.insert(peer) {
            Ok(inserted) => Some(inserted),
            Err(_) => {
                self.count_refused("peer_table_full");
                None
            }
        }
    }

    /// Files `peer` again in the fairness index after its channel count changed.
    pub(super) fn recount(&mut self, peer: Handle) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let (old, new) = (state.load, state.load());
        if old == new {
            return;
        }
        state.load = new;
        if old > 0 {
            self.loads.remove(&(old, peer));
        }
        if new > 0 {
            self.loads.insert((new, peer));
        }
    }

    /// Takes a peer that is going away out of the fairness index.
    pub(super) fn unindex(&mut self, peer: Handle, load: usize) {
        if load > 0 {
            self.loads.remove(&(load, peer));
        }
    }

    /// Makes room for one more channel of `newcomer` (None: a peer that holds none yet) when
    /// the node's channel table is full, by closing a channel of the heaviest peer if that peer
    /// holds at least two more than the newcomer: shares converge to equal, and nobody is
    /// served first come, forever. False when the table is full of peers no heavier.
    pub(super) fn make_room(&mut self, newcomer: Option<Handle>) -> bool {
        if !self.channels.is_full() {
            return true;
        }
        let own = newcomer
            .and_then(|peer| self.peers.get(peer))
            .map_or(0, Connection::load);
        let Some(&(load, heaviest)) = self.loads.last() else {
            self.count_refused("table_full");
            return false;
        };
        if load < own.saturating_add(2) || Some(heaviest) == newcomer {
            self.count_refused("table_full");
            return false;
        }
        let victim = self.peers.get(heaviest).and_then(|state| {
            let (lane, _) = state.lanes.iter().next()?;
            Some(ChannelAt {
                peer: heaviest,
                lane,
            })
        });
        let Some(victim) = victim else {
            self.count_refused("table_full");
            return false;
        };
        self.stats.add(EVICTED, None, 1);
        self.close(victim, CloseReason::Refused, false, true);
        !self.channels.is_full()
    }
}
