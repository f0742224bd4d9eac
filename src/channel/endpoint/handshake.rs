//! Session handshakes driven by the endpoint (PROTOCOL.md §5): which kind to start, the
//! HANDSHAKE_INIT / COOKIE / RESPONSE / FINAL exchange, START_ENCRYPTION, crossing INITs, rekeys,
//! RESET; the sealed paths are in `secure.rs`. Choices where the spec is silent are in
//! `docs/SESSIONS.md`.

use super::*;
use crate::session::mac::{MAC_LEN, Mac1Key, constant_time_eq as mac_eq, init_echo};
use crate::session::{
    HandshakeError, HandshakeKind, Initiator, KeyPhase, Response, Tai64N, dh,
    handshake::MAX_HANDSHAKE_LEN,
};
use crate::wire::PacketWriter;

/// PROTOCOL.md §4: a RESET triggers at most one new handshake per peer per 5 s.
const RESET_HANDSHAKE_INTERVAL: Duration = Duration::from_secs(5);
/// Most channel opens that ride in one START_ENCRYPTION or flush packet.
const OPENS_PER_PACKET: usize = 32;

/// An initiator waiting for its answer.
pub(super) struct InitiatorState {
    initiator: Initiator,
    kind: HandshakeKind,
    to: SocketAddr,
    /// The responder's id; None for an XX to a bare address.
    peer: Option<PeerId>,
    /// The responder's X25519 key for mac1 (kinds 1 and 3).
    mac1: Option<Mac1Key>,
    tries: u32,
    /// When the first INIT went out: the handshake's duration runs from here, retries included.
    started: Instant,
    give_up_at: Instant,
    cookie: Option<[u8; MAC_LEN]>,
    /// BLAKE3 of the body of the INIT last sent: a HANDSHAKE_COOKIE must echo it.
    echo: [u8; MAC_LEN],
    /// PINGs waiting for the session (bounded by `EndpointConfig::max_queued_pings`).
    pings: Vec<[u8; 8]>,
}

/// An XX responder between its RESPONSE and the initiator's FINAL.
pub(super) struct ResponderState {
    pending: crate::session::PendingResponder,
    from: SocketAddr,
    peer: PeerId,
    expires: Instant,
    prefix: crate::session::Prefix,
}

/// A handshake in progress; its slab hashcode, permuted, is its session index on the wire.
pub(super) enum Pending {
    Initiator(Box<InitiatorState>),
    Responder(Box<ResponderState>),
}

fn varint_len(v: usize) -> usize {
    let mut len = 1usize;
    let mut v = v >> 7;
    while v > 0 {
        len = len.saturating_add(1);
        v >>= 7;
    }
    len
}

/// Length of a HANDSHAKE_INIT body (PROTOCOL.md §4): kind, index, length + handshake, mac1,
/// cookie length + cookie.
fn init_body_len(handshake: usize, cookie: bool) -> usize {
    [
        1,
        4,
        varint_len(handshake),
        handshake,
        MAC_LEN,
        1,
        if cookie { MAC_LEN } else { 0 },
    ]
    .into_iter()
    .fold(0, usize::saturating_add)
}

fn kind_label(kind: HandshakeKind) -> &'static str {
    match kind {
        HandshakeKind::KnownResponder => "ik",
        HandshakeKind::UnknownResponder => "xx",
        HandshakeKind::PreSharedKey => "ikpsk2",
    }
}

/// The drop reason of a failed handshake message: each failure has its own label.
fn failure_label(error: &HandshakeError, kind: HandshakeKind) -> &'static str {
    match error {
        // IKpsk2 mixes the PSK into the RESPONSE: a response that fails its AEAD under a kind-3
        // handshake is a PSK mismatch (or a forgery, which mac1/cookies make no cheaper).
        HandshakeError::Noise(_) if kind == HandshakeKind::PreSharedKey => "psk_mismatch",
        HandshakeError::Noise(_) => "handshake_authentication",
        HandshakeError::Size => "handshake_size",
        HandshakeError::Payload => "handshake_payload",
        HandshakeError::PeerIdMismatch => "peer_id_mismatch",
        HandshakeError::BadSignature => "bad_signature",
        HandshakeError::BadRecord => "bad_record",
        HandshakeError::Replay => "handshake_replay",
        HandshakeError::UnknownPsk => "unknown_psk",
        HandshakeError::Finished => "handshake_finished",
    }
}

impl Endpoint {
    // ------------------------------------------------------------ bookkeeping

    pub(super) fn count_dh(&mut self, before: u64) {
        let spent = dh::count_on_this_thread().saturating_sub(before);
        if spent > 0 {
            self.stats.add(DH_OPERATIONS, None, spent);
        }
    }

    fn handshake_failed(&mut self, reason: &'static str) {
        self.drop_packet(reason);
        self.stats
            .add(HANDSHAKE_FAILURES, Some(("reason", reason)), 1);
    }

    /// A handshake refused by a limit of the node (not by a failed check): dropped, and counted
    /// as a refusal by its reason.
    fn refuse_handshake(&mut self, reason: &'static str) {
        self.handshake_failed(reason);
        self.stats
            .add(HANDSHAKE_REFUSALS, Some(("reason", reason)), 1);
    }

    fn source_caps(&self) -> crate::session::SourceCaps {
        crate::session::SourceCaps {
            per_address: self.config.max_sessions_per_address,
            per_prefix: self.config.max_sessions_per_prefix,
        }
    }

    /// The next TAI64N for an IK INIT, strictly increasing even if the wall clock is not.
    fn next_tai(&mut self) -> Tai64N {
        let candidate = self
            .unix_time
            .max(self.last_tai.saturating_add(Duration::from_nanos(1)));
        self.last_tai = candidate;
        Tai64N::from_unix(candidate)
    }

    /// True if `peer` has a session we send under.
    pub(super) fn has_session(&self, peer: PeerId) -> bool {
        self.session_index
            .get(&peer)
            .and_then(|&h| self.sessions.get(h))
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

    // ------------------------------------------------------------ starting

    /// Starts the right handshake towards `peer` at `to` unless one is under way (PROTOCOL.md
    /// §5): kind 3 with a configured PSK, kind 1 with a known record (or a key an earlier
    /// session proved), else kind 2.
    pub(super) fn ensure_handshake(
        &mut self,
        now: Instant,
        to: SocketAddr,
        peer: Option<PeerId>,
    ) -> Result<(), OpenError> {
        if let Some(peer) = peer {
            if self.pending_by_peer.contains_key(&peer) {
                return Ok(());
            }
        } else if self.pending_by_addr.contains_key(&to) {
            return Ok(());
        }
        let local = self.hs_identity.clone();
        let tai = self.next_tai();
        let proven = peer.and_then(|p| {
            let h = *self.session_index.get(&p)?;
            let session = self.sessions.get(h)?.slot.current_ref()?;
            Some((
                session.kind(),
                *session.peer_ed25519(),
                *session.peer_x25519(),
            ))
        });
        let record = peer.and_then(|p| self.records.get(&p)).cloned();
        let psk = peer.and_then(|p| self.config.psks.get(&p)).copied();
        let before = dh::count_on_this_thread();
        let started = match (peer, psk, &record, proven) {
            (Some(_), Some(psk), Some(record), _) => {
                Initiator::pre_shared_key(&local, record, &psk, tai, &mut self.rng)
                    .map(|i| (i, Some(record.x25519)))
            }
            (Some(p), Some(psk), None, Some((_, ed, x))) => Initiator::proven_static(
                HandshakeKind::PreSharedKey,
                &local,
                (p, ed, x),
                Some(&psk),
                tai,
                &mut self.rng,
            )
            .map(|i| (i, Some(x))),
            // A kind-2 session may only be replaced by kind 2 or 3 (§5: a kind no lower).
            (Some(_), None, _, Some((HandshakeKind::UnknownResponder, _, _))) => {
                Initiator::unknown_responder(&local, &mut self.rng).map(|i| (i, None))
            }
            (Some(_), None, Some(record), _) => {
                Initiator::known_responder(&local, record, tai, &mut self.rng)
                    .map(|i| (i, Some(record.x25519)))
            }
            (Some(p), None, None, Some((kind, ed, x))) => {
                Initiator::proven_static(kind, &local, (p, ed, x), None, tai, &mut self.rng)
                    .map(|i| (i, Some(x)))
            }
            _ => Initiator::unknown_responder(&local, &mut self.rng).map(|i| (i, None)),
        };
        self.count_dh(before);
        let (initiator, x25519) = started.map_err(|_| OpenError::PlaintextRefused)?;
        let state = InitiatorState {
            kind: initiator.kind(),
            initiator,
            to,
            peer,
            mac1: x25519.map(|x| Mac1Key::new(&x)),
            tries: 1,
            started: now,
            give_up_at: later(now, self.config.open_timeout),
            cookie: None,
            echo: [0; MAC_LEN],
            pings: Vec::new(),
        };
        let (handle, code) = self
            .pending
            .insert(Pending::Initiator(Box::new(state)))
            .map_err(|_| OpenError::LimitReached("pending handshakes"))?;
        match peer {
            Some(peer) => self.pending_by_peer.insert(peer, handle),
            None => self.pending_by_addr.insert(to, handle),
        };
        self.arm(
            later(now, self.config.open_retry),
            TimerKey::Handshake(code),
        );
        self.send_init(handle);
        Ok(())
    }

    /// Sends (or resends, with the cookie once one came) the pending INIT.
    fn send_init(&mut self, handle: Handle) {
        let Some(code) = self.pending.hashcode(handle) else {
            return;
        };
        let index = code.to_wire(&self.index_cipher);
        let local = self.local_id;
        let Some(Pending::Initiator(state)) = self.pending.get(handle) else {
            return;
        };
        let header = Header {
            flags: Flags::default(),
            sender: local,
            recipient: state.peer.unwrap_or(PeerId::ZERO),
            channel: ChannelId::DEFAULT,
            sequence: None,
        };
        let kind = state.kind;
        let init = state.initiator.init();
        let cookie = state.cookie;
        let mac1 = state.mac1.as_ref();
        let mut echo = [0u8; MAC_LEN];
        let sent = self.outgoing.with_buffer(state.to, |buf| {
            let mut writer = PacketWriter::new(&mut buf[..DEFAULT_MTU], &header).ok()?;
            writer
                .push(&Message::HandshakeInit {
                    kind: kind.code(),
                    sender_index: index,
                    handshake: init,
                    mac1: &[0; MAC_LEN],
                    cookie: cookie.as_ref(),
                })
                .ok()?;
            let len = writer.try_finish().ok()?;
            let cookie_len = if cookie.is_some() { MAC_LEN } else { 0 };
            let at = len
                .checked_sub(1)?
                .checked_sub(cookie_len)?
                .checked_sub(MAC_LEN)?;
            if let Some(key) = mac1 {
                // PROTOCOL.md §5: mac1 covers packet[0 .. mac1], the header and the INIT fields
                // before it.
                let mac = key.compute(&buf[..at]);
                buf.get_mut(at..)?.get_mut(..MAC_LEN)?.copy_from_slice(&mac);
            }
            let body_at = len.checked_sub(init_body_len(init.len(), cookie.is_some()))?;
            echo = init_echo(buf.get(body_at..len)?);
            Some(len)
        });
        if let Some(Pending::Initiator(state)) = self.pending.get_mut(handle) {
            state.echo = echo;
        }
        if !sent {
            self.drop_packet("transmit_queue_full");
        }
    }

    /// Queues a PING behind the handshake to its peer (PROTOCOL.md §5: opens and pings wait for
    /// the session).
    pub(super) fn queue_ping(
        &mut self,
        to: SocketAddr,
        peer: Option<PeerId>,
        token: [u8; 8],
    ) -> Result<(), OpenError> {
        let handle = match peer {
            Some(peer) => self.pending_by_peer.get(&peer),
            None => self.pending_by_addr.get(&to),
        };
        let limit = self.config.max_queued_pings;
        match handle.copied().and_then(|h| self.pending.get_mut(h)) {
            Some(Pending::Initiator(state)) if state.pings.len() < limit => {
                state.pings.push(token);
                Ok(())
            }
            Some(_) => Err(OpenError::LimitReached("pings queued behind a handshake")),
            None => Err(OpenError::PlaintextRefused),
        }
    }

    fn remove_pending(&mut self, handle: Handle) -> Option<Pending> {
        let pending = self.pending.remove(handle)?;
        match &pending {
            Pending::Initiator(state) => {
                if let Some(peer) = state.peer {
                    if self.pending_by_peer.get(&peer) == Some(&handle) {
                        self.pending_by_peer.remove(&peer);
                    }
                } else if self.pending_by_addr.get(&state.to) == Some(&handle) {
                    self.pending_by_addr.remove(&state.to);
                }
            }
            Pending::Responder(state) => {
                self.pending_xx = self.pending_xx.saturating_sub(1);
                if let Some(count) = self.pending_per_prefix.get_mut(&state.prefix) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.pending_per_prefix.remove(&state.prefix);
                    }
                }
            }
        }
        Some(pending)
    }

    pub(super) fn handshake_timer(&mut self, now: Instant, code: Hashcode) {
        let Ok(handle) = self.pending.resolve(code) else {
            return;
        };
        let tries = self.config.open_tries;
        let retry = self.config.open_retry;
        match self.pending.get_mut(handle) {
            Some(Pending::Responder(state)) => {
                if now >= state.expires {
                    self.remove_pending(handle);
                    self.stats
                        .add(HANDSHAKE_FAILURES, Some(("reason", "final_timeout")), 1);
                } else {
                    let at = state.expires;
                    self.arm(at, TimerKey::Handshake(code));
                }
            }
            Some(Pending::Initiator(state)) => {
                if state.tries >= tries {
                    if now < state.give_up_at {
                        let at = state.give_up_at;
                        self.arm(at, TimerKey::Handshake(code));
                        return;
                    }
                    let (peer, to) = (state.peer, state.to);
                    self.remove_pending(handle);
                    self.stats
                        .add(HANDSHAKE_FAILURES, Some(("reason", "timeout")), 1);
                    self.events.push_back(Event::SessionFailed {
                        peer,
                        address: to,
                        reason: "timeout",
                    });
                    return;
                }
                // Backoff as for channel opens; a retry is a fresh INIT (new ephemeral key and
                // timestamp: the responder may have accepted the first one's timestamp).
                let wait = retry.saturating_mul(1u32 << state.tries.min(16));
                state.tries = state.tries.saturating_add(1);
                state.give_up_at = state.give_up_at.max(later(now, wait));
                let (peer, to, pings, cookie, tries_done) = (
                    state.peer,
                    state.to,
                    std::mem::take(&mut state.pings),
                    state.cookie,
                    state.tries,
                );
                self.remove_pending(handle);
                if self.ensure_handshake(now, to, peer).is_err() {
                    self.events.push_back(Event::SessionFailed {
                        peer,
                        address: to,
                        reason: "limit",
                    });
                    return;
                }
                let fresh = match peer {
                    Some(peer) => self.pending_by_peer.get(&peer),
                    None => self.pending_by_addr.get(&to),
                }
                .copied();
                if let Some(Pending::Initiator(state)) = fresh.and_then(|h| self.pending.get_mut(h))
                {
                    state.pings = pings;
                    state.tries = tries_done;
                    if cookie.is_some() && state.cookie.is_none() {
                        state.cookie = cookie;
                    }
                }
                if cookie.is_some() {
                    // The fresh INIT went out without the cookie; send it again with it.
                    if let Some(h) = fresh {
                        self.send_init(h);
                    }
                }
            }
            None => {}
        }
    }

    // ------------------------------------------------------------ plaintext handshake packets

    /// A plaintext packet whose first message belongs to a handshake (or is a RESET): the only
    /// plaintext a node accepts from a peer with a session, or at all without `allow_plaintext`.
    pub(super) fn handle_handshake(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        packet: &Packet<'_>,
    ) {
        let header = packet.header;
        let mut messages = packet.messages().peekable();
        while let Some(message) = messages.next() {
            match message {
                Message::HandshakeInit {
                    kind,
                    sender_index,
                    handshake,
                    mac1,
                    cookie,
                } => {
                    let Some(kind) = HandshakeKind::from_code(kind) else {
                        return self.drop_packet("bad_handshake_kind");
                    };
                    self.on_init(
                        now,
                        from,
                        datagram,
                        &header,
                        (kind, sender_index, handshake, mac1, cookie),
                    );
                    // Whatever follows an INIT is not for a peer without a session.
                    return;
                }
                Message::HandshakeCookie {
                    receiver_index,
                    cookie,
                    echo,
                } => self.on_handshake_cookie(from, receiver_index, cookie, echo),
                Message::HandshakeResponse {
                    sender_index,
                    receiver_index,
                    handshake,
                } => {
                    let sealed = match messages.peek() {
                        Some(Message::StartEncryption { ciphertext }) => Some(*ciphertext),
                        _ => None,
                    };
                    self.on_response(
                        now,
                        from,
                        datagram,
                        &header,
                        (sender_index, receiver_index, handshake),
                        sealed,
                    );
                    return;
                }
                Message::HandshakeFinal {
                    sender_index: _,
                    receiver_index,
                    handshake,
                } => {
                    let sealed = match messages.peek() {
                        Some(Message::StartEncryption { ciphertext }) => Some(*ciphertext),
                        _ => None,
                    };
                    self.on_final(
                        now,
                        from,
                        datagram,
                        &header,
                        receiver_index,
                        handshake,
                        sealed,
                    );
                    return;
                }
                Message::Reset { .. } => self.on_reset(now, from, header.sender),
                _ => {
                    // Channel messages after a handshake message in plaintext: refused under
                    // sessions (§5: channel establishment travels only encrypted).
                    if !self.config.allow_plaintext || self.has_session(header.sender) {
                        self.drop_packet("plaintext_refused");
                        return;
                    }
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn on_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        header: &Header,
        (kind, sender_index, handshake, mac1, cookie): (
            HandshakeKind,
            u32,
            &[u8],
            &[u8; MAC_LEN],
            Option<&[u8; MAC_LEN]>,
        ),
    ) {
        let sender = header.sender;
        // HANDSHAKE_INIT is the first message: its body starts after the type byte and length.
        let body_len = init_body_len(handshake.len(), cookie.is_some());
        let body_start = [header.len(), 1, varint_len(body_len)]
            .into_iter()
            .fold(0, usize::saturating_add);
        let mac1_at = [
            body_start,
            1,
            4,
            varint_len(handshake.len()),
            handshake.len(),
        ]
        .into_iter()
        .fold(0, usize::saturating_add);
        let (Some(covered), Some(body)) = (
            datagram.get(..mac1_at),
            datagram.get(body_start..body_start.saturating_add(body_len)),
        ) else {
            return self.drop_packet("malformed_init");
        };
        // PROTOCOL.md §5: mac1 first, before any other work; then cookie and load.
        match self
            .gate
            .check(now, from, sender, kind.is_ik(), covered, mac1, cookie)
        {
            InitDecision::Drop => return self.handshake_failed("bad_mac1"),
            InitDecision::SendCookie(value) => {
                let echo = init_echo(body);
                let answer = Message::HandshakeCookie {
                    receiver_index: sender_index,
                    cookie: &value,
                    echo: &echo,
                };
                self.outgoing.finish();
                if self.stateless_answer(from, sender, ChannelId::DEFAULT, &answer) {
                    self.stats.add(COOKIES_SENT, None, 1);
                    self.stats
                        .add(STATELESS, Some(("message", "handshake_cookie")), 1);
                }
                return;
            }
            InitDecision::Proceed => {}
        }
        // PROTOCOL.md §5: crossing INITs, the one from the lower peer id wins. Dropping the
        // losing INIT changes nothing; cancelling our own pending handshake waits until the
        // winning INIT is authenticated (an IK INIT below, once its static key and timestamp
        // verified); an XX INIT never cancels ours, its sender being proven only by its FINAL:
        // whichever handshake completes first resolves the crossing (`resolve_crossing`).
        if self.pending_by_peer.contains_key(&sender)
            && crate::session::crossing_winner(self.local_id, sender) == self.local_id
        {
            return self.drop_packet("crossing_init_lost");
        }
        // A new peer must fit its source's share of the session table; every handshake about to
        // cost DH is charged to its source's rate, a valid cookie or not (issue 10: a cookie
        // proves an address, it does not make its handshakes free).
        if !self.session_index.contains_key(&sender) {
            if let Err(refusal) = self.session_table.admits(from.ip(), self.source_caps()) {
                return self.refuse_handshake(refusal.label());
            }
        }
        if let Err(refusal) = self.source_rate.charge(from.ip(), now) {
            return self.refuse_handshake(refusal.label());
        }
        if kind == HandshakeKind::UnknownResponder {
            // PROTOCOL.md §5: pending XX states are capped per endpoint and per /24 (/64).
            let prefix = crate::session::prefix_of(from.ip());
            let per_prefix = self.pending_per_prefix.get(&prefix).copied().unwrap_or(0);
            if per_prefix >= self.config.max_pending_xx_per_prefix {
                return self.refuse_handshake("pending_prefix_limit");
            }
            if self.pending_xx >= self.config.max_pending_xx && !self.evict_pending_xx(per_prefix) {
                return self.refuse_handshake("pending_limit");
            }
        }
        if kind.is_ik() {
            // A full replay table forgets only entries older than the window (see
            // `TimestampTable`).
            let cutoff = self
                .unix_time
                .saturating_sub(self.config.handshake_timestamp_window);
            self.timestamps.prune(Tai64N::from_unix(cutoff));
        }
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let before = dh::count_on_this_thread();
        let psks = &self.config.psks;
        let result = crate::session::respond(
            &self.hs_identity,
            kind,
            sender,
            handshake,
            &mut self.timestamps,
            |peer| psks.get(&peer).copied(),
            &mut self.rng,
            &mut out,
        );
        self.count_dh(before);
        match result {
            Err(error) => self.handshake_failed(failure_label(&error, kind)),
            Ok(Response::Pending { len, pending }) => {
                let prefix = crate::session::prefix_of(from.ip());
                let state = ResponderState {
                    pending,
                    from,
                    peer: sender,
                    expires: later(now, self.config.open_timeout),
                    prefix,
                };
                let Ok((_, code)) = self.pending.insert(Pending::Responder(Box::new(state))) else {
                    return self.refuse_handshake("pending_limit");
                };
                self.pending_xx = self.pending_xx.saturating_add(1);
                let per_prefix = self.pending_per_prefix.entry(prefix).or_insert(0);
                *per_prefix = per_prefix.saturating_add(1);
                self.arm(
                    later(now, self.config.open_timeout),
                    TimerKey::Handshake(code),
                );
                let answer = Message::HandshakeResponse {
                    sender_index: code.to_wire(&self.index_cipher),
                    receiver_index: sender_index,
                    handshake: &out[..len],
                };
                self.outgoing.finish();
                self.stateless_answer(from, sender, ChannelId::DEFAULT, &answer);
            }
            Ok(Response::Complete { len, established }) => {
                let Some((handle, phase)) = self.install_session(now, from, &established, None)
                else {
                    return;
                };
                // Authenticated: a crossing handshake of ours to this peer gives way, and its
                // queued PINGs ride in our RESPONSE.
                let inherited = self.take_crossing(sender).unwrap_or_default();
                let index = self
                    .sessions
                    .hashcode(handle)
                    .map_or(0, |c| c.to_wire(&self.index_cipher));
                let response = Message::HandshakeResponse {
                    sender_index: index,
                    receiver_index: sender_index,
                    handshake: &out[..len],
                };
                let pings: Vec<Message<'_>> = inherited
                    .iter()
                    .map(|token| Message::Ping { token })
                    .collect();
                self.send_completing(from, sender, phase, &response, &pings);
                self.session_established(now, from, sender, kind, false);
            }
        }
    }

    fn on_handshake_cookie(
        &mut self,
        from: SocketAddr,
        receiver_index: u32,
        cookie: &[u8; MAC_LEN],
        echo: &[u8; MAC_LEN],
    ) {
        let code = Hashcode::from_wire(receiver_index, &self.index_cipher);
        let Ok(handle) = self.pending.resolve(code) else {
            return self.drop_packet("unknown_session_index");
        };
        let Some(Pending::Initiator(state)) = self.pending.get_mut(handle) else {
            return self.drop_packet("unknown_session_index");
        };
        // PROTOCOL.md §5: accept a cookie only if it names our pending index and echoes our INIT.
        if state.to != from || !mac_eq(&state.echo, echo) {
            return self.drop_packet("bad_cookie_echo");
        }
        if state.cookie.as_ref() == Some(cookie) {
            // Already retried with this cookie (a duplicate answer).
            return self.drop_packet("duplicate_cookie");
        }
        state.cookie = Some(*cookie);
        self.send_init(handle);
    }

    fn on_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        header: &Header,
        (sender_index, receiver_index, handshake): (u32, u32, &[u8]),
        sealed: Option<&[u8]>,
    ) {
        let code = Hashcode::from_wire(receiver_index, &self.index_cipher);
        let Ok(handle) = self.pending.resolve(code) else {
            return self.drop_packet("unknown_session_index");
        };
        let Some(Pending::Initiator(state)) = self.pending.get_mut(handle) else {
            return self.drop_packet("unknown_session_index");
        };
        if state.to != from {
            return self.drop_packet("address_mismatch");
        }
        if state.peer.is_some_and(|p| p != header.sender) {
            // We asked for one peer and another answers: refused before any DH.
            return self.handshake_failed("peer_id_mismatch");
        }
        let kind = state.kind;
        let mut final_out = [0u8; MAX_HANDSHAKE_LEN];
        let before = dh::count_on_this_thread();
        let result = state
            .initiator
            .read_response(header.sender, handshake, &mut final_out);
        self.count_dh(before);
        let done = match result {
            Ok(done) => done,
            Err(error) => {
                self.handshake_failed(failure_label(&error, kind));
                // A response that failed its AEAD leaves the initiator waiting (it may be forged);
                // one that authenticated but failed the identity checks ends the handshake.
                if !matches!(error, HandshakeError::Noise(_)) {
                    if let Some(Pending::Initiator(state)) = self.remove_pending(handle) {
                        self.events.push_back(Event::SessionFailed {
                            peer: state.peer,
                            address: state.to,
                            reason: failure_label(&error, kind),
                        });
                    }
                }
                return;
            }
        };
        let Some(Pending::Initiator(state)) = self.remove_pending(handle) else {
            return;
        };
        let established = done.established;
        let peer = established.peer_id;
        // IK: the responder installed first and named the phase in its completing packet; XX:
        // we install first (our FINAL completes it) and choose.
        let told = (kind != HandshakeKind::UnknownResponder)
            .then(|| KeyPhase::from_flag(header.flags.contains(Flags::KEY_PHASE)));
        let Some((_, phase)) = self.install_session(now, from, &established, told) else {
            return;
        };
        if state.peer.is_none() {
            // An XX to a bare address: its answer names the peer; bind the channel state to it.
            if let Some(&unnamed) = self.unnamed.get(&from) {
                self.name_peer(unnamed, peer, from);
            }
            self.remember_bare(peer, from);
        }
        if kind == HandshakeKind::UnknownResponder {
            // PROTOCOL.md §5: START_ENCRYPTION follows HANDSHAKE_FINAL, and the first channel
            // opens ride in it (same round trip).
            let opens = self.opening_channels(peer);
            let cookies: Vec<(u16, [u8; 16])> = opens
                .iter()
                .take(OPENS_PER_PACKET)
                .filter_map(|&h| match self.channels.get(h).map(|c| (&c.phase, c.id)) {
                    Some((Phase::Opening { cookie1 }, id)) => Some((id.c1(), *cookie1)),
                    _ => None,
                })
                .collect();
            let mut riders: Vec<Message<'_>> = cookies
                .iter()
                .map(|(c1, cookie1)| Message::ChannelNew { c1: *c1, cookie1 })
                .collect();
            riders.extend(state.pings.iter().map(|token| Message::Ping { token }));
            let index = code.to_wire(&self.index_cipher);
            let fin = Message::HandshakeFinal {
                sender_index: index,
                receiver_index: sender_index,
                handshake: &final_out[..done.final_len],
            };
            self.send_completing(from, peer, phase, &fin, &riders);
            self.observe_handshake(now, state.started);
            self.session_established(now, from, peer, kind, true);
            self.flush_opens(now, peer, OPENS_PER_PACKET, &[]);
            return;
        }
        if let Some(sealed) = sealed {
            self.open_start_encryption(now, from, datagram, header, phase, sealed);
        }
        self.observe_handshake(now, state.started);
        self.session_established(now, from, peer, kind, true);
        self.flush_opens(now, peer, 0, &state.pings);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_final(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        header: &Header,
        receiver_index: u32,
        handshake: &[u8],
        sealed: Option<&[u8]>,
    ) {
        let code = Hashcode::from_wire(receiver_index, &self.index_cipher);
        let Ok(handle) = self.pending.resolve(code) else {
            return self.drop_packet("unknown_session_index");
        };
        let Some(Pending::Responder(state)) = self.pending.get_mut(handle) else {
            return self.drop_packet("unknown_session_index");
        };
        if state.from != from || state.peer != header.sender {
            return self.drop_packet("address_mismatch");
        }
        let before = dh::count_on_this_thread();
        let result = state.pending.read_final(header.sender, handshake);
        self.count_dh(before);
        let established = match result {
            Ok(established) => established,
            Err(error) => {
                self.handshake_failed(failure_label(&error, HandshakeKind::UnknownResponder));
                if !matches!(error, HandshakeError::Noise(_)) {
                    self.remove_pending(handle);
                }
                return;
            }
        };
        self.remove_pending(handle);
        let peer = established.peer_id;
        // The initiator installed first and named the phase in its FINAL's packet.
        let told = KeyPhase::from_flag(header.flags.contains(Flags::KEY_PHASE));
        let Some((_, phase)) = self.install_session(now, from, &established, Some(told)) else {
            return;
        };
        self.session_established(now, from, peer, HandshakeKind::UnknownResponder, false);
        if let Some(sealed) = sealed {
            self.open_start_encryption(now, from, datagram, header, phase, sealed);
        }
        // The peer's XX completed first: ours to it, if any, is no longer needed; what waited
        // for it leaves under the new session.
        if let Some(pings) = self.take_crossing(peer) {
            self.flush_opens(now, peer, 0, &pings);
        }
    }

    /// Ends our own pending handshake to `peer` now that one of the peer's completed (PROTOCOL.md
    /// §5, crossing INITs); returns the PINGs that were queued behind it, or `None` when none
    /// of ours was pending.
    fn take_crossing(&mut self, peer: PeerId) -> Option<Vec<[u8; 8]>> {
        let ours = *self.pending_by_peer.get(&peer)?;
        match self.remove_pending(ours)? {
            Pending::Initiator(state) => Some(state.pings),
            Pending::Responder(_) => Some(Vec::new()),
        }
    }

    fn on_reset(&mut self, now: Instant, from: SocketAddr, sender: PeerId) {
        let Some(&handle) = self.session_index.get(&sender) else {
            return self.drop_packet("reset_without_session");
        };
        let Some(entry) = self.sessions.get_mut(handle) else {
            return;
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

    // ------------------------------------------------------------ sessions

    /// Installs a completed handshake in the peer's slot; returns its slab handle and phase.
    /// `told` is the phase the peer chose, when the peer installed first (PROTOCOL.md §5: the
    /// completing packet's KEY_PHASE); `None` when we install first and choose.
    fn install_session(
        &mut self,
        now: Instant,
        from: SocketAddr,
        established: &crate::session::Established,
        told: Option<KeyPhase>,
    ) -> Option<(Handle, KeyPhase)> {
        let peer = established.peer_id;
        let first = !self.session_index.contains_key(&peer);
        let handle = match self.session_index.get(&peer) {
            Some(&handle) => handle,
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
                if self.sessions.len() >= self.config.max_sessions.max(1) {
                    // PROTOCOL.md §5: least recently used first out, from the heaviest prefix.
                    self.evict_session();
                }
                let entry = PeerSession {
                    peer,
                    address: from,
                    slot: crate::session::SessionSlot::new(),
                    last_reset_handshake: None,
                    bare: None,
                    last_used: now,
                };
                let Ok((handle, code)) = self.sessions.insert(entry) else {
                    self.refuse_handshake("session_limit");
                    return None;
                };
                self.session_index.insert(peer, handle);
                self.session_table.insert(handle, from.ip(), now);
                self.arm(later(now, self.config.rekey.after), TimerKey::Session(code));
                handle
            }
        };
        if self.session_table.address(handle) != Some(from.ip()) {
            self.session_table.insert(handle, from.ip(), now);
        }
        let entry = self.sessions.get_mut(handle)?;
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
    fn remember_bare(&mut self, peer: PeerId, at: SocketAddr) {
        let Some(entry) = self
            .session_index
            .get(&peer)
            .and_then(|&h| self.sessions.get_mut(h))
        else {
            return;
        };
        if let Some(old) = entry.bare.replace(at) {
            if self.bare_peers.get(&old) == Some(&peer) {
                self.bare_peers.remove(&old);
            }
        }
        if let Some(previous) = self.bare_peers.insert(at, peer) {
            if previous != peer {
                if let Some(other) = self
                    .session_index
                    .get(&previous)
                    .and_then(|&h| self.sessions.get_mut(h))
                {
                    other.bare = None;
                }
            }
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
    fn evict_pending_xx(&mut self, theirs: usize) -> bool {
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
    fn bind_channels_to_session(&mut self, peer: PeerId, from: SocketAddr, first: bool) {
        let Some(&state) = self.peer_index.get(&peer) else {
            return;
        };
        if first {
            let unauthenticated: Vec<Handle> = self
                .peers
                .get(state)
                .map(|p| p.channels.values().copied().collect())
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
    fn evict_session(&mut self) {
        let sessions = &self.sessions;
        let Some(victim) = self
            .session_table
            .victim(|handle| sessions.get(handle).map(|entry| entry.last_used))
        else {
            return;
        };
        let Some(peer) = self.sessions.get(victim).map(|entry| entry.peer) else {
            return;
        };
        if let Some(&state) = self.peer_index.get(&peer) {
            let channels: Vec<Handle> = self
                .peers
                .get(state)
                .map(|p| {
                    p.channels
                        .values()
                        .chain(p.opening.values())
                        .copied()
                        .collect()
                })
                .unwrap_or_default();
            for channel in channels {
                self.close(channel, CloseReason::Refused, false, false);
            }
        }
        self.forget_session(victim);
        self.stats.add(SESSIONS_EVICTED, None, 1);
    }

    /// Drops a peer's sessions and everything filed under them.
    pub(super) fn forget_session(&mut self, handle: Handle) {
        self.session_table.remove(handle);
        let Some(entry) = self.sessions.remove(handle) else {
            return;
        };
        if self.session_index.get(&entry.peer) == Some(&handle) {
            self.session_index.remove(&entry.peer);
        }
        if let Some(at) = entry.bare {
            if self.bare_peers.get(&at) == Some(&entry.peer) {
                self.bare_peers.remove(&at);
            }
        }
    }

    /// Counts an initiated handshake's duration, from its first INIT to its session.
    fn observe_handshake(&mut self, now: Instant, started: Instant) {
        let took = now.saturating_duration_since(started).as_micros();
        let us = u64::try_from(took).unwrap_or(u64::MAX);
        self.stats.observe(&self.hot.handshake_duration, us);
    }

    fn session_established(
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
    fn opening_channels(&self, peer: PeerId) -> Vec<Handle> {
        let Some(state) = self.peer_index.get(&peer).and_then(|&p| self.peers.get(p)) else {
            return Vec::new();
        };
        let mut opens: Vec<Handle> = state.opening.values().copied().collect();
        opens.sort_unstable();
        opens
    }

    /// Sends what waited for the session: channel opens (after the first `skip`, which rode in
    /// START_ENCRYPTION) and PINGs. Each open's retry clock restarts now.
    fn flush_opens(&mut self, now: Instant, peer: PeerId, skip: usize, pings: &[[u8; 8]]) {
        let opens = self.opening_channels(peer);
        let retry = self.config.open_retry;
        let timeout = self.config.open_timeout;
        for &h in &opens {
            if let Some(state) = self.channels.get_mut(h) {
                state.tries = 1;
                state.retry_at = Some(later(now, retry));
                state.give_up_at = later(now, timeout);
            }
            if let Some(code) = self.channels.hashcode(h) {
                self.arm(later(now, retry), TimerKey::Channel(code));
            }
        }
        let to = match self
            .session_index
            .get(&peer)
            .and_then(|&h| self.sessions.get(h))
        {
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
                .filter_map(|&h| match self.channels.get(h).map(|c| (&c.phase, c.id)) {
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

    pub(super) fn session_timer(&mut self, now: Instant, code: Hashcode) {
        let Ok(handle) = self.sessions.resolve(code) else {
            return;
        };
        let Some(entry) = self.sessions.get(handle) else {
            return;
        };
        let peer = entry.peer;
        let to = entry.address;
        let Some(session) = entry.slot.current_ref() else {
            return;
        };
        let created = session.created_at();
        let rekey_at = session.rekey_deadline(&self.config.rekey);
        let expires = later(created, self.config.session_lifetime);
        let busy = self
            .peer_index
            .get(&peer)
            .and_then(|&p| self.peers.get(p))
            .is_some_and(|p| !p.is_idle());
        if now >= rekey_at && busy {
            // PROTOCOL.md §5: replaced by a new handshake without interrupting channels.
            let _ = self.ensure_handshake(now, to, Some(peer));
            self.arm(later(now, self.config.rekey.after), TimerKey::Session(code));
        } else if now >= expires && !busy {
            // Cached for its lifetime only (§5); an idle peer's session is then forgotten.
            self.forget_session(handle);
        } else {
            let next = if busy { rekey_at } else { expires };
            self.arm(
                next.max(later(now, Duration::from_millis(1))),
                TimerKey::Session(code),
            );
        }
    }

    /// Starts a rekey once the session we send under reached its threshold (PROTOCOL.md §5),
    /// unless a newer session already waits or a handshake is under way.
    pub(super) fn maybe_rekey(&mut self, now: Instant, peer: PeerId) {
        if self.pending_by_peer.contains_key(&peer) {
            return;
        }
        let Some(entry) = self
            .session_index
            .get(&peer)
            .and_then(|&h| self.sessions.get(h))
        else {
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
