//! Session handshakes driven by the endpoint (PROTOCOL.md §5): which kind to start, the
//! HANDSHAKE_INIT / COOKIE / RESPONSE / FINAL exchange, START_ENCRYPTION, crossing INITs. The
//! sessions they leave behind (install, rekey, RESET) are in `sessions.rs`, the sealed paths in
//! `secure.rs`, the retry timer in `timers.rs`. Choices where the spec is silent are in
//! `docs/SESSIONS.md`.

use super::*;
use crate::session::mac::{MAC_LEN, Mac1Key, constant_time_eq as mac_eq, init_echo};
use crate::session::{
    HandshakeError, HandshakeKind, Initiator, KeyPhase, Response, Tai64N, dh,
    handshake::MAX_HANDSHAKE_LEN,
};
use crate::wire::PacketWriter;

/// PROTOCOL.md §4: a RESET triggers at most one new handshake per peer per 5 s.
pub(super) const RESET_HANDSHAKE_INTERVAL: Duration = Duration::from_secs(5);
/// Most channel opens that ride in one START_ENCRYPTION or flush packet.
pub(super) const OPENS_PER_PACKET: usize = 32;

/// An initiator waiting for its answer.
pub(super) struct InitiatorState {
    pub(super) initiator: Initiator,
    pub(super) kind: HandshakeKind,
    pub(super) to: SocketAddr,
    /// The responder's id; None for an XX to a bare address.
    pub(super) peer: Option<PeerId>,
    /// The responder's X25519 key for mac1 (kinds 1 and 3).
    pub(super) mac1: Option<Mac1Key>,
    pub(super) tries: u32,
    /// When the first INIT went out: the handshake's duration runs from here, retries included.
    pub(super) started: Instant,
    pub(super) give_up_at: Instant,
    pub(super) cookie: Option<[u8; MAC_LEN]>,
    /// BLAKE3 of the body of the INIT last sent: a HANDSHAKE_COOKIE must echo it.
    pub(super) echo: [u8; MAC_LEN],
    /// PINGs waiting for the session (bounded by `EndpointConfig::max_queued_pings`).
    pub(super) pings: Vec<[u8; 8]>,
}

/// An XX responder between its RESPONSE and the initiator's FINAL.
pub(super) struct ResponderState {
    pub(super) pending: crate::session::PendingResponder,
    pub(super) from: SocketAddr,
    pub(super) peer: PeerId,
    pub(super) expires: Instant,
    pub(super) prefix: crate::session::Prefix,
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

pub(super) fn kind_label(kind: HandshakeKind) -> &'static str {
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

    pub(super) fn handshake_failed(&mut self, reason: &'static str) {
        self.drop_packet(reason);
        self.stats
            .add(HANDSHAKE_FAILURES, Some(("reason", reason)), 1);
    }

    /// A handshake refused by a limit of the node (not by a failed check): dropped, and counted
    /// as a refusal by its reason.
    pub(super) fn refuse_handshake(&mut self, reason: &'static str) {
        self.handshake_failed(reason);
        self.stats
            .add(HANDSHAKE_REFUSALS, Some(("reason", reason)), 1);
    }

    pub(super) fn source_caps(&self) -> crate::session::SourceCaps {
        crate::session::SourceCaps {
            per_address: self.config.max_sessions_per_address,
            per_prefix: self.config.max_sessions_per_prefix,
        }
    }

    /// The next TAI64N for an IK INIT, strictly increasing even if the wall clock is not.
    pub(super) fn next_tai(&mut self) -> Tai64N {
        let candidate = self
            .unix_time
            .max(self.last_tai.saturating_add(Duration::from_nanos(1)));
        self.last_tai = candidate;
        Tai64N::from_unix(candidate)
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
        // A peer's key names the identity of the connection (`identities.rs`); records and
        // PSKs are the peer's, by its real id.
        let (local, real) = match peer {
            Some(key) => {
                let identity = self.identity_of(&key);
                (
                    self.handshake_identity(identity).clone(),
                    Some(self.wire_ids(key).1),
                )
            }
            None => (self.hs_identity.clone(), None),
        };
        let tai = self.next_tai();
        let proven = peer.and_then(|p| {
            let session = self.session_of(&p)?.slot.current_ref()?;
            Some((
                session.kind(),
                *session.peer_ed25519(),
                *session.peer_x25519(),
            ))
        });
        let record = real.and_then(|p| self.records.get(&p)).cloned();
        let psk = real.and_then(|p| self.config.psks.get(&p)).copied();
        let before = dh::count_on_this_thread();
        let started = match (real, psk, &record, proven) {
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
    pub(super) fn send_init(&mut self, handle: Handle) {
        let Some(code) = self.pending.hashcode(handle) else {
            return;
        };
        let index = code.to_wire(&self.index_cipher);
        let Some(Pending::Initiator(state)) = self.pending.get(handle) else {
            return;
        };
        let (sender, recipient) = match state.peer {
            Some(key) => self.wire_ids(key),
            None => (self.local_id, PeerId::ZERO),
        };
        let header = Header {
            flags: Flags::default(),
            sender,
            recipient,
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

    pub(super) fn remove_pending(&mut self, handle: Handle) -> Option<Pending> {
        let pending = self.pending.remove(handle)?;
        match &pending {
            Pending::Initiator(state) => {
                if let Some(peer) = state.peer {
                    if self.pending_by_peer.get(&peer) == Some(&handle) {
                        self.pending_by_peer.remove(&peer);
                    }
                    self.release_key(&peer);
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

    // ------------------------------------------------------------ plaintext handshake packets

    /// A plaintext packet whose first message belongs to a handshake (or is a RESET): the only
    /// plaintext a node accepts from a peer with a session, or at all without `allow_plaintext`.
    /// `header` is the packet's, its sender the connection's key (`identities.rs`).
    pub(super) fn handle_handshake(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        packet: &Packet<'_>,
        header: &Header,
    ) {
        let header = *header;
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
                    if header.sender != packet.header.sender {
                        // Only the first identity answers handshakes (`identities.rs`).
                        return self.drop_packet("wrong_recipient");
                    }
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
    pub(super) fn on_init(
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
        if self.session_slot(&sender).is_none()
            && let Err(refusal) = self.session_table.admits(from.ip(), self.source_caps())
        {
            return self.refuse_handshake(refusal.label());
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
                    .peers
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

    pub(super) fn on_handshake_cookie(
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

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        header: &Header,
        (sender_index, receiver_index, handshake): (u32, u32, &[u8]),
        sealed: Option<&[u8]>,
    ) {
        // The handshake proves the peer's real id; the connection is named by its key.
        let real = self.wire_ids(header.sender).1;
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
            .read_response(real, handshake, &mut final_out);
        self.count_dh(before);
        let done = match result {
            Ok(done) => done,
            Err(error) => {
                self.handshake_failed(failure_label(&error, kind));
                // A response that failed its AEAD leaves the initiator waiting (it may be forged);
                // one that authenticated but failed the identity checks ends the handshake.
                if !matches!(error, HandshakeError::Noise(_))
                    && let Some(Pending::Initiator(state)) = self.remove_pending(handle)
                {
                    self.events.push_back(Event::SessionFailed {
                        peer: state.peer,
                        address: state.to,
                        reason: failure_label(&error, kind),
                    });
                }
                return;
            }
        };
        let Some(Pending::Initiator(state)) = self.remove_pending(handle) else {
            return;
        };
        let mut established = done.established;
        established.peer_id = header.sender;
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
                .filter_map(|&h| match self.channel(h).map(|c| (&c.phase, c.id)) {
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
    pub(super) fn on_final(
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

    /// Counts an initiated handshake's duration, from its first INIT to its session.
    fn observe_handshake(&mut self, now: Instant, started: Instant) {
        let took = now.saturating_duration_since(started).as_micros();
        let us = u64::try_from(took).unwrap_or(u64::MAX);
        self.stats.observe(&self.hot.handshake_duration, us);
    }
}
