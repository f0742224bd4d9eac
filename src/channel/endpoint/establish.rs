//! Channel establishment (PROTOCOL.md §6): CHANNEL_NEW / ACKNOWLEDGE / FINALIZE and the
//! CHANNEL_COOKIE with early data, with the responder stateless until cookie2 comes back.

use super::*;

impl Endpoint {
    /// PROTOCOL.md §6 steps 3 and 4: FINALIZE or CHANNEL_COOKIE. The responder recomputes
    /// cookie2 and only now allocates. Returns the channel when one is (or already was) open.
    pub(super) fn on_cookie2(
        &mut self,
        now: Instant,
        from: SocketAddr,
        initiator: PeerId,
        id: ChannelId,
        cookie2: &[u8; 16],
        capabilities: Capabilities,
    ) -> Option<ChannelAt> {
        if initiator.is_zero() || id.c1() == 0 || !self.c2_is_ours(initiator, id.c2()) {
            self.stats
                .add(COOKIE_FAILURES, Some(("reason", "mismatch")), 1);
            self.drop_packet("bad_cookie");
            return None;
        }
        let check = self
            .cookies
            .check_cookie2(initiator, self.local_id, id, from, cookie2);
        if check != CookieCheck::Valid {
            self.stats
                .add(COOKIE_FAILURES, Some(("reason", check.reason())), 1);
            self.drop_packet("bad_cookie");
            return None;
        }
        let peer = self.ids.peer(&initiator).copied();
        if let Some(peer) = peer {
            let state = self.peers.get(peer)?;
            if state.address != from {
                self.drop_packet("address_mismatch");
                return None;
            }
            if let Some(&lane) = state.channels.get(&id.0) {
                // A duplicate FINALIZE: the channel is open; confirm again, allocate nothing.
                let channel = ChannelAt { peer, lane };
                self.confirm_channel(channel);
                return Some(channel);
            }
            if state.load() >= self.config.max_channels_per_peer {
                self.count_refused("peer_limit");
                self.refuse(from, initiator, id, CloseReason::Refused);
                return None;
            }
        }
        // PROTOCOL.md §6: an id that was ever open in this session never opens again.
        if self.id_used(initiator, id) {
            self.stats
                .add(COOKIE_FAILURES, Some(("reason", "reused_id")), 1);
            self.drop_packet("reused_channel_id");
            return None;
        }
        if self.ids_exhausted(initiator) {
            self.replace_exhausted(now, initiator);
            self.refuse(from, initiator, id, CloseReason::Refused);
            return None;
        }
        if !supported(capabilities) {
            // Answered statelessly: nothing is allocated for a mode we cannot run.
            self.refuse(from, initiator, id, CloseReason::Unsupported);
            return None;
        }
        // A full table makes room at the heaviest peer's expense, or refuses this one.
        if !self.make_room(peer) {
            self.refuse(from, initiator, id, CloseReason::Refused);
            return None;
        }
        let peer = match peer {
            Some(peer) => peer,
            None => {
                let Some((peer, _)) =
                    self.insert_peer(Connection::new(initiator, from, now), false)
                else {
                    self.refuse(from, initiator, id, CloseReason::Refused);
                    return None;
                };
                self.ids.set_peer(initiator, peer);
                self.arm_first_idle_check(peer, now);
                peer
            }
        };
        let channel = Channel {
            handle: Handle(u32::MAX),
            id,
            capabilities,
            initiator: false,
            phase: Phase::Open { cookie2: None },
            tries: 0,
            retry_at: None,
            give_up_at: now,
            next_sequence: self.rng.r#gen(),
            next_message: 0,
            data: None,
            touched: false,
        };
        let Some((handle, code)) = self.insert_channel(peer, channel) else {
            self.refuse(from, initiator, id, CloseReason::Refused);
            self.forget_peer_if_idle(peer);
            return None;
        };
        if let Some(state) = self.peers.get_mut(peer) {
            state.channels.insert(id.0, handle.lane);
            state.last_heard = now;
            state.last_open = now;
        }
        self.recount(peer);
        self.note_used(peer, id);
        self.stats.add(OPENED, Some(("role", "responder")), 1);
        self.events.push_back(Event::ChannelOpened {
            channel: ChannelHandle(code),
            peer: initiator,
            id,
            capabilities,
            initiator: false,
        });
        self.confirm_channel(handle);
        Some(handle)
    }

    pub(super) fn refuse(
        &mut self,
        from: SocketAddr,
        initiator: PeerId,
        id: ChannelId,
        reason: CloseReason,
    ) {
        let close = Message::ChannelClose {
            channel: id,
            reason,
        };
        if self.stateless_answer(from, initiator, ChannelId::DEFAULT, &close) {
            self.stats
                .add(STATELESS, Some(("message", "channel_close")), 1);
        }
    }

    /// The responder's first packet on a new channel: it carries the initial credit (§4
    /// WINDOW: 64 messages, 256 KiB) and tells the initiator the channel exists.
    pub(super) fn confirm_channel(&mut self, channel: ChannelAt) {
        let Some(state) = self.channel(channel) else {
            return;
        };
        if state.initiator {
            return;
        }
        // The credit is what the receive side really granted (PROTOCOL.md §7.4), not a constant:
        // a smaller configured window would otherwise let the sender overrun it.
        let now = self.last_now;
        self.ensure_data(now, channel);
        let (max_message, max_bytes) = self
            .channel(channel)
            .and_then(|state| state.data.as_ref())
            .map_or((64, 256 * 1024), |data| {
                data.reliability.advertised_window()
            });
        let window = Message::Window {
            max_message,
            max_bytes,
        };
        self.send_on_channel(channel, &[window]);
    }

    pub(super) fn on_acknowledge(
        &mut self,
        now: Instant,
        from: SocketAddr,
        responder: PeerId,
        id: ChannelId,
        cookie1: &[u8; 16],
        cookie2: &[u8; 16],
    ) {
        let named = self.ids.peer(&responder).copied();
        let candidates = [named, self.unnamed.get(&from).copied()];
        let mut found = None;
        for peer in candidates.into_iter().flatten() {
            if let Some(state) = self.peers.get(peer)
                && let Some(&lane) = state.opening.get(&id.c1())
            {
                found = Some(ChannelAt { peer, lane });
                break;
            }
        }
        let Some(found) = found else {
            // A late duplicate after the channel opened, or a stray answer.
            return self.drop_packet("unexpected_acknowledge");
        };
        let (expected, entry) = match self.channel(found).map(|c| (&c.phase, c.handle)) {
            Some((Phase::Opening { cookie1 }, entry)) => (*cookie1, entry),
            _ => return self.drop_packet("unexpected_acknowledge"),
        };
        if !constant_time_eq(&expected, cookie1) {
            self.stats
                .add(COOKIE_FAILURES, Some(("reason", "mismatch")), 1);
            return self.drop_packet("bad_cookie");
        }
        // The responder must pick c2 by the bit-15 rule, or ids of crossing opens could collide.
        // Compared as the wire names them: the connection's identity and the peer's real id.
        let (local, real) = self.wire_ids(responder);
        let responder_high = real > local;
        if id.c2() == 0 || ((id.c2() & 0x8000 != 0) != responder_high) {
            return self.drop_packet("bad_channel_id");
        }
        let peer = self.name_peer(found.peer, responder, from);
        // PROTOCOL.md §6: a responder that hands out an id used before in this session (a
        // replayed ACKNOWLEDGE, or a hostile peer) would make our keys and nonces repeat.
        if self.id_used(responder, id) {
            return self.drop_packet("reused_channel_id");
        }
        // Naming the peer may have moved the channel into another connection's lanes.
        let Some(&channel) = self.channels.get(entry) else {
            return;
        };
        let Some(code) = self.channels.hashcode(entry) else {
            return;
        };
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.opening.remove(&id.c1());
        state.channels.insert(id.0, channel.lane);
        state.last_heard = now;
        state.last_open = now;
        self.note_used(peer, id);
        let (retry, timeout) = (self.config.open_retry, self.config.open_timeout);
        let Some(state) = self.channel_mut(channel) else {
            return;
        };
        state.id = id;
        state.phase = Phase::Open {
            cookie2: Some(*cookie2),
        };
        state.tries = 1;
        state.retry_at = Some(later(now, retry));
        state.give_up_at = later(now, timeout);
        let capabilities = state.capabilities;
        // What the application queued while the id was incomplete may leave now.
        self.touch(channel);
        self.arm_channel(channel, later(now, retry));
        self.stats.add(OPENED, Some(("role", "initiator")), 1);
        self.events.push_back(Event::ChannelOpened {
            channel: ChannelHandle(code),
            peer: responder,
            id,
            capabilities,
            initiator: true,
        });
        self.send_finalize(channel);
    }

    /// Binds a peer opened by bare address to the id its answer carries, merging it into an
    /// existing entry for that id.
    pub(super) fn name_peer(&mut self, peer: Handle, id: PeerId, from: SocketAddr) -> Handle {
        let Some(state) = self.peers.get(peer) else {
            return peer;
        };
        if state.id == id {
            return peer;
        }
        if let Some(&existing) = self.ids.peer(&id) {
            // Move the unnamed peer's opens onto the entry that already carries the id.
            let Some(mut unnamed) = self.peers.remove(peer) else {
                return existing;
            };
            self.deadlines.set(peer.0, None);
            self.unindex(peer, unnamed.load);
            self.unnamed.remove(&unnamed.address);
            for (c1, lane) in unnamed.opening.drain() {
                let Some(channel) = unnamed.lanes.remove(lane) else {
                    continue;
                };
                let (entry, retry_at) = (channel.handle, channel.retry_at);
                let moved = self.peers.get_mut(existing).and_then(|target| {
                    let lane = target.lanes.insert(channel)?;
                    target.opening.insert(c1, lane);
                    Some(lane)
                });
                match moved {
                    // The application's handle follows the channel into its new lanes.
                    Some(lane) => {
                        if let Some(at) = self.channels.get_mut(entry) {
                            *at = ChannelAt {
                                peer: existing,
                                lane,
                            };
                        }
                        // The open's retry moves with it into the other connection's timers.
                        if let Some(at) = retry_at {
                            self.arm_connection(existing, Timer::Open, at);
                        }
                    }
                    None => {
                        self.channels.remove(entry);
                    }
                }
            }
            // Anything else it held (an open that had data state already) goes with it.
            for (_, channel) in unnamed.lanes.iter() {
                self.channels.remove(channel.handle);
            }
            self.recount(existing);
            return existing;
        }
        self.unnamed.remove(&from);
        if let Some(state) = self.peers.get_mut(peer) {
            state.id = id;
        }
        self.ids.set_peer(id, peer);
        peer
    }

    pub(super) fn send_finalize(&mut self, channel: ChannelAt) {
        let Some(state) = self.channel(channel) else {
            return;
        };
        let Phase::Open {
            cookie2: Some(cookie2),
        } = state.phase
        else {
            return;
        };
        let Some(peer) = self.peers.get(channel.peer) else {
            return;
        };
        let finalize = Message::ChannelFinalize {
            channel: state.id,
            cookie2: &cookie2,
            capabilities: state.capabilities,
        };
        let (to, recipient) = (peer.address, peer.id);
        self.queue_default(to, recipient, &finalize);
    }

    pub(super) fn send_channel_new(&mut self, channel: ChannelAt) {
        let Some(state) = self.channel(channel) else {
            return;
        };
        let Phase::Opening { cookie1 } = state.phase else {
            return;
        };
        let Some(peer) = self.peers.get(channel.peer) else {
            return;
        };
        let new = Message::ChannelNew {
            c1: state.id.c1(),
            cookie1: &cookie1,
        };
        let (to, recipient) = (peer.address, peer.id);
        self.queue_default(to, recipient, &new);
    }

    /// Opens a channel to the node at `to` (PROTOCOL.md §6). `peer` is its id when known; `c1`
    /// is this side's half of the channel id, or `None` to let the endpoint pick a free one.
    /// The channel becomes usable at [`Event::ChannelOpened`]; data sent before then leaves as
    /// early data.
    pub fn open_channel(
        &mut self,
        now: Instant,
        to: SocketAddr,
        peer: Option<PeerId>,
        c1: Option<u16>,
        capabilities: Capabilities,
    ) -> Result<ChannelHandle, OpenError> {
        self.last_now = now;
        if !supported(capabilities) {
            return Err(OpenError::Unsupported(capabilities));
        }
        if c1 == Some(0) {
            return Err(OpenError::ZeroChannelId);
        }
        let peer_id = peer.filter(|p| !p.is_zero());
        if self.wants_session(peer_id) {
            // PROTOCOL.md §5: no session yet, so the right handshake starts and the open waits
            // behind it (CHANNEL_NEW travels only encrypted under kinds 1–3).
            self.ensure_handshake(now, to, peer_id)?;
        }
        let existing = match peer_id {
            Some(id) => self.ids.peer(&id).copied(),
            None => self.unnamed.get(&to).copied(),
        };
        let (peer, created) = match existing {
            Some(peer) => (peer, false),
            None => {
                let (peer, _) = self
                    .insert_peer(
                        Connection::new(peer_id.unwrap_or(PeerId::ZERO), to, now),
                        false,
                    )
                    .ok_or(OpenError::LimitReached("peers"))?;
                match peer_id {
                    Some(id) => self.ids.set_peer(id, peer),
                    None => {
                        self.unnamed.insert(to, peer);
                    }
                }
                self.arm_first_idle_check(peer, now);
                (peer, true)
            }
        };
        let result = self.open_on_peer(now, peer, to, c1, capabilities);
        if result.is_err() && created {
            self.forget_peer_if_idle(peer);
        }
        result
    }

    pub(super) fn open_on_peer(
        &mut self,
        now: Instant,
        peer: Handle,
        to: SocketAddr,
        c1: Option<u16>,
        capabilities: Capabilities,
    ) -> Result<ChannelHandle, OpenError> {
        let Some(state) = self.peers.get_mut(peer) else {
            return Err(OpenError::LimitReached("peers"));
        };
        state.address = to;
        // Our opens are matched to their ACKNOWLEDGE by c1 alone, so c1 must be unique among
        // this side's live channels towards the peer.
        let in_use = |state: &Connection, c1: u16| {
            state.opening.contains_key(&c1)
                || state.channels.keys().any(|&id| ChannelId(id).c1() == c1)
        };
        let c1 = match c1 {
            Some(c1) if in_use(state, c1) => return Err(OpenError::ChannelIdInUse(c1)),
            Some(c1) => c1,
            None => {
                let mut pick = None;
                for _ in 0..256 {
                    let candidate: u16 = self.rng.r#gen();
                    if candidate != 0 && !in_use(state, candidate) {
                        pick = Some(candidate);
                        break;
                    }
                }
                pick.ok_or(OpenError::LimitReached("channel ids towards this peer"))?
            }
        };
        if state.load() >= self.config.max_channels_per_peer {
            return Err(OpenError::LimitReached("channels per peer"));
        }
        let peer_id = state.id;
        if !peer_id.is_zero() && self.ids_exhausted(peer_id) {
            self.replace_exhausted(now, peer_id);
            return Err(OpenError::LimitReached("channel ids in this session"));
        }
        if !self.make_room(Some(peer)) {
            return Err(OpenError::LimitReached("channels"));
        }
        let cookie1 = self.cookies.cookie1(self.local_id, peer_id, c1);
        let channel = Channel {
            handle: Handle(u32::MAX),
            id: ChannelId::new(c1, 0),
            capabilities,
            initiator: true,
            phase: Phase::Opening { cookie1 },
            tries: 1,
            retry_at: Some(later(now, self.config.open_retry)),
            give_up_at: later(now, self.config.open_timeout),
            next_sequence: self.rng.r#gen(),
            next_message: 0,
            data: None,
            touched: false,
        };
        let (handle, code) = self
            .insert_channel(peer, channel)
            .ok_or(OpenError::LimitReached("channels"))?;
        if let Some(state) = self.peers.get_mut(peer) {
            state.opening.insert(c1, handle.lane);
        }
        self.recount(peer);
        self.arm_channel(handle, later(now, self.config.open_retry));
        self.send_channel_new(handle);
        Ok(ChannelHandle(code))
    }

    /// Stores a new channel in its connection's lanes and gives it an entry in the channel
    /// table, whose hashcode is the application's handle; None (nothing kept) when the table
    /// is full.
    pub(super) fn insert_channel(
        &mut self,
        peer: Handle,
        channel: Channel,
    ) -> Option<(ChannelAt, Hashcode)> {
        if self.channels.is_full() {
            return None;
        }
        let connection = self.peers.get_mut(peer)?;
        let lane = connection.lanes.insert(channel)?;
        let at = ChannelAt { peer, lane };
        let Ok((handle, code)) = self.channels.insert(at) else {
            connection.lanes.remove(lane);
            return None;
        };
        if let Some(state) = connection.lanes.get_mut(lane) {
            state.handle = handle;
        }
        // A connection its session made has no silence check once its last channels went
        // (`peer_reset`): its first channel since arms one.
        if connection.timers.get(Timer::Idle).is_none() {
            self.arm_first_idle_check(peer, self.last_now);
        }
        Some((at, code))
    }
}
