//! The sessions a handshake leaves behind (PROTOCOL.md §5): installing one, binding the peer's
//! channels to it, the session table's bounds and eviction, rekeys, RESET, and the opens and
//! PINGs that waited for it.

use super::*;
use crate::session::{HandshakeKind, KeyPhase};
use handshake::{OPENS_PER_PACKET, RESET_HANDSHAKE_INTERVAL, kind_label};

/// `peer`'s sessions, borrowing only the index and the connections: for the sealing paths,
/// which hold a session while they write into the endpoint's transmit queue.
pub(super) fn session_in<'a>(
    ids: &PeerIndex,
    peers: &'a mut Slab<Connection>,
    peer: &PeerId,
) -> Option<&'a mut PeerSession> {
    peers.get_mut(*ids.peer(peer)?)?.session.as_mut()
}

impl Endpoint {
    /// The slot of `peer`'s connection while it holds a session: the session table's name for
    /// it.
    pub(super) fn session_slot(&self, peer: &PeerId) -> Option<Handle> {
        let slot = *self.ids.peer(peer)?;
        self.peers.get(slot)?.session.as_ref().map(|_| slot)
    }

    /// `peer`'s sessions, kept in its connection.
    pub(super) fn session_of(&self, peer: &PeerId) -> Option<&PeerSession> {
        self.peers.get(*self.ids.peer(peer)?)?.session.as_ref()
    }

    pub(super) fn session_of_mut(&mut self, peer: &PeerId) -> Option<&mut PeerSession> {
        session_in(&self.ids, &mut self.peers, peer)
    }

    /// True if `peer` has a session we send under.
    pub(super) fn has_session(&self, peer: PeerId) -> bool {
        self.session_of(&peer)
            .is_some_and(|s| s.slot.current_ref().is_some())
    }

    /// True while a handshake towards `peer` (or to the bare address `to`) is under way, so
    /// channel messages wait for it instead of leaving in plaintext.
    pub(super) fn awaiting_session(&self, to: SocketAddr, peer: PeerId) -> bool {
        if !peer.is_zero() && self.pending_by_peer.contains_key(&peer) {
            return true;
        }
        peer.is_zero() && self.pending_by_addr.contains_key(&to)
    }

    /// True if opening a channel to `peer` needs an encrypted session first.
    pub(super) fn wants_session(&self, peer: Option<PeerId>) -> bool {
        if let Some(peer) = peer {
            if self.has_session(peer) {
                return false;
            }
            if self.records.contains_key(&peer) || self.config.psks.contains_key(&peer) {
                return true;
            }
        }
        !self.config.allow_plaintext
    }

    /// Ends our own pending handshake to `peer` now that one of the peer's completed (PROTOCOL.md
    /// §5, crossing INITs); returns the PINGs that were queued behind it, or `None` when none
    /// of ours was pending.
    pub(super) fn take_crossing(&mut self, peer: PeerId) -> Option<Vec<[u8; 8]>> {
        let ours = *self.pending_by_peer.get(&peer)?;
        match self.remove_pending(ours)? {
            Pending::Initiator(state) => Some(state.pings),
            Pending::Responder(_) => Some(Vec::new()),
        }
    }

    pub(super) fn on_reset(&mut self, now: Instant, from: SocketAddr, sender: PeerId) {
        let Some(entry) = self.session_of_mut(&sender) else {
            return self.drop_packet("reset_without_session");
        };
        // PROTOCOL.md §4: RESET deletes nothing and triggers at most one new handshake per peer
        // per 5 s.
        let recent = entry
            .last_reset_handshake
            .is_some_and(|at| now.saturating_duration_since(at) < RESET_HANDSHAKE_INTERVAL);
        if entry.address != from || recent {
            return self.drop_packet("reset_ignored");
        }
        entry.last_reset_handshake = Some(now);
        let to = entry.address;
        let _ = self.ensure_handshake(now, to, Some(sender));
    }

    /// Installs a completed handshake in the peer's connection, made for it when the peer has
    /// none (every peer with a session has a connection); returns the connection's slot and
    /// the session's phase. `told` is the phase the peer chose, when the peer installed first
    /// (PROTOCOL.md §5: the completing packet's KEY_PHASE); `None` when we install first and
    /// choose.
    pub(super) fn install_session(
        &mut self,
        now: Instant,
        from: SocketAddr,
        established: &crate::session::Established,
        told: Option<KeyPhase>,
    ) -> Option<(Handle, KeyPhase)> {
        let peer = established.peer_id;
        let held = self.session_slot(&peer);
        let first = held.is_none();
        let handle = match held {
            Some(handle) => handle,
            None => {
                // Source caps hold back what others start; a session we asked for is ours.
                let theirs = established.role == crate::session::Role::Responder;
                if let (true, Err(refusal)) = (
                    theirs,
                    self.session_table.admits(from.ip(), self.source_caps()),
                ) {
                    self.refuse_handshake(refusal.label());
                    return None;
                }
                if self.session_count >= self.config.max_sessions.max(1) {
                    // PROTOCOL.md §5: least recently used first out, from the heaviest prefix.
                    self.evict_session();
                }
                let handle = match self.ids.peer(&peer).copied() {
                    Some(handle) => handle,
                    None => {
                        let made = self.insert_peer(Connection::new(peer, from, now), true);
                        let Some((handle, _)) = made else {
                            self.refuse_handshake("session_limit");
                            return None;
                        };
                        self.ids.set_peer(peer, handle);
                        // Its silence sheds the session's expanded keys, as a channel's would.
                        self.arm_first_idle_check(handle, now);
                        handle
                    }
                };
                let connection = self.peers.get_mut(handle)?;
                connection.session = Some(PeerSession {
                    peer,
                    address: from,
                    slot: crate::session::SessionSlot::new(),
                    last_reset_handshake: None,
                    bare: None,
                    last_used: now,
                    established: now,
                    traffic: Traffic::default(),
                });
                self.session_count = self.session_count.saturating_add(1);
                self.session_table.insert(handle, from.ip(), now);
                self.arm_connection(handle, Timer::Session, later(now, self.config.rekey.after));
                handle
            }
        };
        if self.session_table.address(handle) != Some(from.ip()) {
            self.session_table.insert(handle, from.ip(), now);
        }
        let entry = self.peers.get_mut(handle)?.session.as_mut()?;
        entry.last_used = now;
        let replacing = entry.slot.current_ref().is_some();
        let installed = match told {
            Some(phase) => entry.slot.install_as(established, now, phase),
            None => entry.slot.install(established, now),
        };
        match installed {
            Ok(phase) => {
                entry.address = from;
                if replacing {
                    self.stats.add(REKEYS, None, 1);
                }
                self.bind_channels_to_session(peer, from, first);
                Some((handle, phase))
            }
            Err(_) => {
                // PROTOCOL.md §5: only the same Ed25519 key, of a kind no lower, replaces.
                self.handshake_failed("replace_refused");
                None
            }
        }
    }

    /// Files `peer` as the node our XX to the bare address `at` reached (see
    /// [`PeerSession::bare`]); the peer's earlier bare address, if any, is forgotten, so the
    /// map never holds more entries than there are sessions.
    pub(super) fn remember_bare(&mut self, peer: PeerId, at: SocketAddr) {
        let Some(entry) = self.session_of_mut(&peer) else {
            return;
        };
        if let Some(old) = entry.bare.replace(at)
            && self.bare_peers.get(&old) == Some(&peer)
        {
            self.bare_peers.remove(&old);
        }
        if let Some(previous) = self.bare_peers.insert(at, peer)
            && previous != peer
            && let Some(other) = self.session_of_mut(&previous)
        {
            other.bare = None;
        }
    }

    /// The peer whose session our XX to the bare address `to` made, while that session lives.
    pub(super) fn bare_peer(&self, to: SocketAddr) -> Option<PeerId> {
        self.bare_peers
            .get(&to)
            .copied()
            .filter(|&peer| self.has_session(peer))
    }

    /// Makes room in a full table of pending XX responders for a newcomer whose prefix holds
    /// `theirs` of them: the prefix holding the most gives up its state closest to expiring,
    /// if it holds more than the newcomer's (a shared table is fair: a light prefix still gets
    /// in, a heavy one pays for its own growth). False when no prefix is heavier. Runs only
    /// when the table is full, over at most `max_pending_xx` entries, a bound the node chose.
    pub(super) fn evict_pending_xx(&mut self, theirs: usize) -> bool {
        let Some((&heaviest, &count)) = self
            .pending_per_prefix
            .iter()
            .max_by_key(|&(prefix, count)| (*count, std::cmp::Reverse(*prefix)))
        else {
            return false;
        };
        if count <= theirs.saturating_add(1) {
            return false;
        }
        let victim = self
            .pending
            .iter()
            .filter_map(|(handle, pending)| match pending {
                Pending::Responder(state) if state.prefix == heaviest => {
                    Some((state.expires, handle))
                }
                _ => None,
            })
            .min();
        let Some((_, handle)) = victim else {
            return false;
        };
        self.remove_pending(handle);
        self.stats.add(PENDING_EVICTED, None, 1);
        true
    }

    /// A session now speaks for `peer` (issue 10: with `allow_plaintext`, a plaintext peer can
    /// neither use nor disturb a peer id that has, or later gets, an authenticated session).
    /// Channels that opened before the peer's first session were never authenticated — anyone
    /// could have claimed the id in plaintext — so they are closed, not handed to it; and the
    /// peer's channel state answers where the authenticated handshake came from, not wherever a
    /// plaintext packet claiming the id did. Our own opens still waiting for the session stay.
    pub(super) fn bind_channels_to_session(&mut self, peer: PeerId, from: SocketAddr, first: bool) {
        let Some(&state) = self.ids.peer(&peer) else {
            return;
        };
        if first {
            let unauthenticated: Vec<ChannelAt> = self
                .peers
                .get(state)
                .map(|p| {
                    p.channels
                        .values()
                        .map(|&lane| ChannelAt { peer: state, lane })
                        .collect()
                })
                .unwrap_or_default();
            for channel in unauthenticated {
                self.close(channel, CloseReason::Refused, false, false);
            }
        }
        if let Some(state) = self.peers.get_mut(state) {
            state.address = from;
        }
    }

    /// Makes room in a full session table: the least recently used session of the heaviest
    /// prefix goes, with the channels that ran under it (they must not carry on without a
    /// session, least of all in plaintext).
    pub(super) fn evict_session(&mut self) {
        let peers = &self.peers;
        let Some(victim) = self.session_table.victim(|handle| {
            let entry = peers.get(handle)?.session.as_ref()?;
            Some(entry.last_used)
        }) else {
            return;
        };
        let channels: Vec<ChannelAt> = self
            .peers
            .get(victim)
            .map(|p| {
                p.lanes
                    .iter()
                    .map(|(lane, _)| ChannelAt { peer: victim, lane })
                    .collect()
            })
            .unwrap_or_default();
        for channel in channels {
            self.close(channel, CloseReason::Refused, false, false);
        }
        self.forget_session(victim);
        self.stats.add(SESSIONS_EVICTED, None, 1);
    }

    /// Drops the sessions of the connection at `handle` and everything filed under them; the
    /// connection goes too unless its channels or used ids keep it.
    pub(super) fn forget_session(&mut self, handle: Handle) {
        let Some(connection) = self.peers.get_mut(handle) else {
            self.session_table.remove(handle);
            return;
        };
        let Some(entry) = connection.session.take() else {
            return;
        };
        connection.timers.set(Timer::Session, None);
        self.deadlines.set(handle.0, connection.poll_timeout());
        self.session_gone(handle, &entry);
        self.forget_peer_if_idle(handle);
    }

    /// Unfiles a session taken out of the connection at `handle`.
    pub(super) fn session_gone(&mut self, handle: Handle, entry: &PeerSession) {
        self.session_table.remove(handle);
        self.session_count = self.session_count.saturating_sub(1);
        if let Some(at) = entry.bare
            && self.bare_peers.get(&at) == Some(&entry.peer)
        {
            self.bare_peers.remove(&at);
        }
    }

    pub(super) fn session_established(
        &mut self,
        now: Instant,
        from: SocketAddr,
        peer: PeerId,
        kind: HandshakeKind,
        initiator: bool,
    ) {
        let _ = now;
        self.stats
            .add(HANDSHAKES, Some(("kind", kind_label(kind))), 1);
        self.events.push_back(Event::SessionEstablished {
            peer,
            from,
            kind: kind.code(),
            initiator,
        });
    }

    /// Our own channels to `peer` still waiting for CHANNEL_ACKNOWLEDGE.
    pub(super) fn opening_channels(&self, peer: PeerId) -> Vec<ChannelAt> {
        let Some(&handle) = self.ids.peer(&peer) else {
            return Vec::new();
        };
        let Some(state) = self.peers.get(handle) else {
            return Vec::new();
        };
        let mut opens: Vec<ChannelAt> = state
            .opening
            .values()
            .map(|&lane| ChannelAt { peer: handle, lane })
            .collect();
        opens.sort_unstable();
        opens
    }

    /// Sends what waited for the session: channel opens (after the first `skip`, which rode in
    /// START_ENCRYPTION) and PINGs. Each open's retry clock restarts now.
    pub(super) fn flush_opens(
        &mut self,
        now: Instant,
        peer: PeerId,
        skip: usize,
        pings: &[[u8; 8]],
    ) {
        let opens = self.opening_channels(peer);
        let retry = self.config.open_retry;
        let timeout = self.config.open_timeout;
        for &h in &opens {
            if let Some(state) = self.channel_mut(h) {
                state.tries = 1;
                state.retry_at = Some(later(now, retry));
                state.give_up_at = later(now, timeout);
            }
            self.arm_channel(h, later(now, retry));
        }
        let to = match self.session_of(&peer) {
            Some(entry) => entry.address,
            None => return,
        };
        for chunk in opens
            .get(skip.min(opens.len())..)
            .unwrap_or_default()
            .chunks(OPENS_PER_PACKET)
        {
            let cookies: Vec<(u16, [u8; 16])> = chunk
                .iter()
                .filter_map(|&h| match self.channel(h).map(|c| (&c.phase, c.id)) {
                    Some((Phase::Opening { cookie1 }, id)) => Some((id.c1(), *cookie1)),
                    _ => None,
                })
                .collect();
            let messages: Vec<Message<'_>> = cookies
                .iter()
                .map(|(c1, cookie1)| Message::ChannelNew { c1: *c1, cookie1 })
                .collect();
            if !messages.is_empty() {
                self.send_secure(to, peer, ChannelId::DEFAULT, None, &messages);
            }
        }
        for token in pings {
            self.send_secure(
                to,
                peer,
                ChannelId::DEFAULT,
                None,
                &[Message::Ping { token }],
            );
        }
    }

    /// Starts a rekey once the session we send under reached its threshold (PROTOCOL.md §5),
    /// unless a newer session already waits or a handshake is under way.
    pub(super) fn maybe_rekey(&mut self, now: Instant, peer: PeerId) {
        if self.pending_by_peer.contains_key(&peer) {
            return;
        }
        let Some(entry) = self.session_of(&peer) else {
            return;
        };
        if !entry.slot.newest_is_current() {
            return;
        }
        let due = entry
            .slot
            .current_ref()
            .is_some_and(|s| s.needs_rekey(now, &self.config.rekey));
        if due {
            let to = entry.address;
            let _ = self.ensure_handshake(now, to, Some(peer));
        }
    }
}
