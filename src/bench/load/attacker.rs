//! A scripted attacker: a raw-UDP client that speaks weft from outside a node, for the
//! hostile-peer suite (`tests/hostile.rs`), the endpoint fuzzer and `weft bench`.
//!
//! It completes real handshakes with the crate's public session API (XX from a bare address, IK
//! from a peer record), opens channels the way PROTOCOL.md §6 says (NEW / ACKNOWLEDGE / FINALIZE
//! or CHANNEL_COOKIE), and from then on seals *whatever* it is told to under the channel keys:
//! any message numbers, fragments, channel ids, PINGs, even byte strings that are not a valid
//! message sequence. It also writes plaintext (kind-0) packets and spoofed or unauthenticated
//! handshake packets. Nothing here checks that what it sends is sensible; that is the point.
//!
//! An honest peer is the same client used politely ([`Attacker::ping`]), so a test measures
//! what an attack costs the peers that did nothing wrong with the same code that attacks.
//!
//! Every receive has a deadline: a node that stops answering makes a call return
//! [`AttackError::Timeout`], never hang.

use crate::session::handshake::MAX_HANDSHAKE_LEN;
use crate::session::keys::PacketKey;
use crate::session::mac::{MAC_LEN, Mac1Key, init_echo};
use crate::session::{
    Established, HandshakeError, HandshakeIdentity, HandshakeKind, Identity, Initiator, KeyPhase,
    PeerRecord, PendingResponder, Response, Tai64N, TimestampTable, respond,
};
use crate::wire::{
    Capabilities, ChannelId, CloseReason, Flags, Header, Message, PeerId, TAG_LEN, WireError,
    parse_payload,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest datagram the attacker sends or receives (a UDP payload's ceiling).
pub const MAX_DATAGRAM: usize = 65_507;

/// Why an attacker's step did not complete.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The node did not answer in time.
    #[error("no answer in time: {0}")]
    Timeout(&'static str),
    /// The node's handshake message did not verify.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A message could not be written (too big, bad field).
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    /// The step needs a session and there is none.
    #[error("no session with the node")]
    NoSession,
    /// The node refused what was asked (it closed the channel, for instance).
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// The keys of a completed handshake, as the attacker holds them.
#[derive(Debug)]
pub struct AttackSession {
    kind: HandshakeKind,
    phase: KeyPhase,
    send_secret: [u8; 32],
    receive_secret: [u8; 32],
    /// The next sequence number per channel, sending.
    next: HashMap<u32, u64>,
}

impl AttackSession {
    fn new(established: &Established, phase: KeyPhase) -> AttackSession {
        AttackSession {
            kind: established.kind,
            phase,
            send_secret: *established.send_secret(),
            receive_secret: *established.receive_secret(),
            next: HashMap::new(),
        }
    }

    /// The handshake kind that made this session.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// The KEY_PHASE its packets carry.
    pub fn phase(&self) -> KeyPhase {
        self.phase
    }

    /// The direction secret this side seals with (PROTOCOL.md §5), for a fuzzer or a test that
    /// seals elsewhere.
    pub fn send_secret(&self) -> &[u8; 32] {
        &self.send_secret
    }

    /// The direction secret the node seals with.
    pub fn receive_secret(&self) -> &[u8; 32] {
        &self.receive_secret
    }
}

/// A packet the node sent, opened when it was sealed under the attacker's session.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its header.
    pub header: Header,
    /// The plaintext messages (the payload of a plaintext packet, or the opened ciphertext).
    pub payload: Vec<u8>,
    /// Whether it came sealed (and authenticated).
    pub sealed: bool,
    /// The datagram's length on the wire.
    pub wire_len: usize,
}

impl Received {
    /// Its messages; none if they do not parse.
    pub fn messages(&self) -> Vec<Message<'_>> {
        match parse_payload(&self.header, &self.payload) {
            Ok(messages) => messages.collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// An XX responder state: the node started a handshake towards the attacker (a rekey, or an
/// answer to a RESET) and the attacker answered it.
#[derive(Debug)]
pub struct RespondedXx {
    pending: PendingResponder,
    /// The node's session index (the INIT's sender index).
    pub node_index: u32,
    /// The attacker's session index in the RESPONSE.
    pub our_index: u32,
}

/// One scripted client on its own UDP socket.
#[derive(Debug)]
pub struct Attacker {
    socket: UdpSocket,
    node: SocketAddr,
    identity: Identity,
    handshake_identity: HandshakeIdentity,
    node_peer: PeerId,
    session: Option<AttackSession>,
    rng: StdRng,
    buf: Vec<u8>,
}

impl Attacker {
    /// A client bound to `bind` (any port) talking to the node at `node`, with a fresh identity
    /// drawn from `seed`. On Linux every 127.0.0.0/8 address is loopback, so a test picks its
    /// "source addresses" and /24 prefixes there.
    pub fn new(bind: IpAddr, node: SocketAddr, seed: u64) -> io::Result<Attacker> {
        let mut rng = StdRng::seed_from_u64(seed);
        let identity = Identity::generate(&mut rng);
        Attacker::with_identity(bind, node, identity, rng.r#gen())
    }

    /// A client with a given identity (a test that needs a peer id below or above the node's
    /// draws identities until one fits).
    pub fn with_identity(
        bind: IpAddr,
        node: SocketAddr,
        identity: Identity,
        seed: u64,
    ) -> io::Result<Attacker> {
        let socket = UdpSocket::bind(SocketAddr::new(bind, 0))?;
        Ok(Attacker {
            socket,
            node,
            handshake_identity: HandshakeIdentity::new(&identity),
            identity,
            node_peer: PeerId::ZERO,
            session: None,
            rng: StdRng::seed_from_u64(seed),
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    /// The attacker's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// The node's peer id, once a handshake named it (or [`Attacker::set_node_peer`] did).
    pub fn node_peer(&self) -> PeerId {
        self.node_peer
    }

    /// Names the node without a handshake (for plaintext attacks and forged packets).
    pub fn set_node_peer(&mut self, peer: PeerId) {
        self.node_peer = peer;
    }

    /// The node's address.
    pub fn node(&self) -> SocketAddr {
        self.node
    }

    /// The socket's own address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The session, once a handshake completed.
    pub fn session(&self) -> Option<&AttackSession> {
        self.session.as_ref()
    }

    /// A random 8-byte token (PING tokens, cookie1 values).
    pub fn token(&mut self) -> [u8; 8] {
        self.rng.r#gen()
    }

    // ------------------------------------------------------------------ raw I/O

    /// Sends one datagram as it is.
    pub fn send_raw(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, self.node).map(|_| ())
    }

    /// The next datagram from the node, or `None` once `deadline` passed.
    pub fn recv_raw(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, from)) if from == self.node => {
                    return Ok(Some(self.buf[..len].to_vec()));
                }
                Ok(_) => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Counts the datagrams that arrive from the node until `deadline` (answer counting for
    /// amplification checks).
    pub fn count_datagrams(&mut self, deadline: Instant) -> io::Result<(usize, usize)> {
        let (mut count, mut bytes) = (0, 0);
        while let Some(datagram) = self.recv_raw(deadline)? {
            count += 1;
            bytes += datagram.len();
        }
        Ok((count, bytes))
    }

    /// The next packet from the node, opened if it is sealed under our session; packets that
    /// do not parse or open are skipped.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Option<Received>> {
        while let Some(datagram) = self.recv_raw(deadline)? {
            if let Some(received) = self.open(&datagram) {
                return Ok(Some(received));
            }
        }
        Ok(None)
    }

    /// Opens a datagram: its header, and its payload in plaintext (decrypted when ENCRYPTED and
    /// it authenticates under our session). `None` if it does not parse or authenticate.
    pub fn open(&self, datagram: &[u8]) -> Option<Received> {
        let (header, header_len) = Header::parse(datagram).ok()?;
        let body = datagram.get(header_len..)?;
        if !header.is_encrypted() {
            return Some(Received {
                header,
                payload: body.to_vec(),
                sealed: false,
                wire_len: datagram.len(),
            });
        }
        let session = self.session.as_ref()?;
        let sequence = header.sequence?;
        let key = PacketKey::for_channel(&session.receive_secret, header.channel);
        let mut payload = body.to_vec();
        let len = key
            .open_in_place(
                u64::from(sequence),
                datagram.get(..header_len)?,
                &mut payload,
            )
            .ok()?;
        payload.truncate(len);
        Some(Received {
            header,
            payload,
            sealed: true,
            wire_len: datagram.len(),
        })
    }

    // ------------------------------------------------------------------ building packets

    /// A plaintext packet from us (or from `sender`, spoofed) with `messages` written as they
    /// are: no placement rule is checked, so it may be one the node must refuse.
    pub fn plain_packet(
        &self,
        sender: Option<PeerId>,
        recipient: PeerId,
        channel: ChannelId,
        sequence: Option<u32>,
        messages: &[Message<'_>],
    ) -> Result<Vec<u8>, AttackError> {
        let header = Header {
            flags: Flags::EMPTY,
            sender: sender.unwrap_or_else(|| self.peer_id()),
            recipient,
            channel,
            sequence,
        };
        let mut out = vec![0u8; MAX_DATAGRAM];
        let mut at = header.emit(&mut out)?;
        for message in messages {
            at += message.emit(&mut out[at..])?;
        }
        out.truncate(at);
        Ok(out)
    }

    /// A packet sealed under our session on `channel` with wire sequence number `sequence`,
    /// whose plaintext is `plaintext` as it is (any bytes: a message sequence or garbage).
    pub fn seal_bytes(
        &self,
        channel: ChannelId,
        sequence: u32,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, AttackError> {
        let session = self.session.as_ref().ok_or(AttackError::NoSession)?;
        let mut flags = Flags::ENCRYPTED | Flags::SEQUENCED;
        if session.phase.flag() {
            flags = flags | Flags::KEY_PHASE;
        }
        let header = Header {
            flags,
            sender: self.peer_id(),
            recipient: self.node_peer,
            channel,
            sequence: Some(sequence),
        };
        let mut out = vec![0u8; header.len() + plaintext.len() + TAG_LEN];
        let header_len = header.emit(&mut out)?;
        let (head, rest) = out.split_at_mut(header_len);
        let (payload, tag) = rest.split_at_mut(plaintext.len());
        payload.copy_from_slice(plaintext);
        let key = PacketKey::for_channel(&session.send_secret, channel);
        let mut sealed_tag = [0u8; TAG_LEN];
        key.seal_in_place(u64::from(sequence), head, payload, &mut sealed_tag);
        tag.copy_from_slice(&sealed_tag);
        Ok(out)
    }

    /// `messages` written one after another (no placement rule checked), the plaintext of a
    /// sealed packet.
    pub fn encode(messages: &[Message<'_>]) -> Result<Vec<u8>, AttackError> {
        let len = messages.iter().map(Message::encoded_len).sum();
        let mut out = vec![0u8; len];
        let mut at = 0;
        for message in messages {
            at += message.emit(&mut out[at..])?;
        }
        Ok(out)
    }

    /// `messages` sealed on `channel` under the next sequence number we have not used there.
    pub fn seal(
        &mut self,
        channel: ChannelId,
        messages: &[Message<'_>],
    ) -> Result<Vec<u8>, AttackError> {
        let plaintext = Self::encode(messages)?;
        let sequence = self.take_sequence(channel)?;
        self.seal_bytes(channel, sequence, &plaintext)
    }

    /// Seals and sends `messages` on `channel` (see [`Attacker::seal`]).
    pub fn send_sealed(
        &mut self,
        channel: ChannelId,
        messages: &[Message<'_>],
    ) -> Result<(), AttackError> {
        let datagram = self.seal(channel, messages)?;
        self.send_raw(&datagram)?;
        Ok(())
    }

    /// The next unused sequence number on `channel` (sequence numbers are u32 on the wire).
    pub fn take_sequence(&mut self, channel: ChannelId) -> Result<u32, AttackError> {
        let session = self.session.as_mut().ok_or(AttackError::NoSession)?;
        let next = session.next.entry(channel.0).or_insert(0);
        let sequence = u32::try_from(*next).map_err(|_| AttackError::Refused("sequence space"))?;
        *next += 1;
        Ok(sequence)
    }

    /// A HANDSHAKE_INIT packet as PROTOCOL.md §4–§5 lay it out, with `sender` in the header
    /// (spoofable), mac1 under `mac1` (zero without), and `cookie` when answering a
    /// HANDSHAKE_COOKIE. Returns the datagram and the echo a genuine cookie would carry.
    #[allow(clippy::too_many_arguments)]
    pub fn init_packet(
        sender: PeerId,
        recipient: PeerId,
        kind: HandshakeKind,
        sender_index: u32,
        handshake: &[u8],
        mac1: Option<&Mac1Key>,
        cookie: Option<&[u8; MAC_LEN]>,
    ) -> Result<(Vec<u8>, [u8; MAC_LEN]), AttackError> {
        let header = Header {
            flags: Flags::EMPTY,
            sender,
            recipient,
            channel: ChannelId::DEFAULT,
            sequence: None,
        };
        let init = Message::HandshakeInit {
            kind: kind.code(),
            sender_index,
            handshake,
            mac1: &[0; MAC_LEN],
            cookie,
        };
        let mut out = vec![0u8; header.len() + init.encoded_len()];
        let at = header.emit(&mut out)?;
        let len = at + init.emit(&mut out[at..])?;
        let cookie_len = if cookie.is_some() { MAC_LEN } else { 0 };
        let mac_at = len - 1 - cookie_len - MAC_LEN;
        if let Some(key) = mac1 {
            // PROTOCOL.md §5: mac1 covers packet[0 .. mac1].
            let mac = key.compute(&out[..mac_at]);
            out[mac_at..mac_at + MAC_LEN].copy_from_slice(&mac);
        }
        // The INIT's body: everything after its type byte and length varint.
        let body_len = init.encoded_len() - 1 - varint_len(init_body_len(handshake, cookie));
        let echo = init_echo(&out[len - body_len..len]);
        Ok((out, echo))
    }

    // ------------------------------------------------------------------ handshakes

    /// Completes an XX handshake (kind 2) from a bare address: INIT, the node's
    /// HANDSHAKE_COOKIE answered once, RESPONSE, then FINAL with START_ENCRYPTION carrying a PING
    /// whose PONG confirms the session.
    pub fn handshake_xx(&mut self, timeout: Duration) -> Result<(), AttackError> {
        let deadline = Instant::now() + timeout;
        let mut initiator = Initiator::unknown_responder(&self.handshake_identity, &mut self.rng)?;
        let index: u32 = self.rng.r#gen();
        let (answer, sender) =
            self.exchange_init(&initiator, PeerId::ZERO, None, index, deadline)?;
        let Some(Message::HandshakeResponse {
            sender_index: node_index,
            receiver_index,
            handshake,
        }) = answer.messages().first().copied()
        else {
            return Err(AttackError::Refused("expected HANDSHAKE_RESPONSE"));
        };
        if receiver_index != index {
            return Err(AttackError::Refused("response names another handshake"));
        }
        let mut final_bytes = [0u8; MAX_HANDSHAKE_LEN];
        let done = initiator.read_response(sender, handshake, &mut final_bytes)?;
        self.node_peer = sender;
        self.session = Some(AttackSession::new(&done.established, KeyPhase::Zero));
        // PROTOCOL.md §5: FINAL, then START_ENCRYPTION under the new keys at default-channel
        // sequence 0, its associated data every byte before the ciphertext.
        let token = self.token();
        let fin = Message::HandshakeFinal {
            sender_index: index,
            receiver_index: node_index,
            handshake: &final_bytes[..done.final_len],
        };
        let datagram = self.completing_packet(&fin, &[Message::Ping { token: &token }])?;
        self.send_raw(&datagram)?;
        self.await_pong(token, deadline)?;
        Ok(())
    }

    /// Completes an IK handshake (kind 1) with the node of `record`: INIT with mac1 and a fresh
    /// timestamp, RESPONSE with START_ENCRYPTION, then a PING whose PONG confirms the session.
    pub fn handshake_ik(
        &mut self,
        record: &PeerRecord,
        timeout: Duration,
    ) -> Result<(), AttackError> {
        let deadline = Instant::now() + timeout;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut initiator = Initiator::known_responder(
            &self.handshake_identity,
            record,
            Tai64N::from_unix(now),
            &mut self.rng,
        )?;
        let node = record.peer_id();
        let mac1 = Mac1Key::new(&record.x25519);
        let index: u32 = self.rng.r#gen();
        let (answer, sender) =
            self.exchange_init(&initiator, node, Some(&mac1), index, deadline)?;
        let Some(Message::HandshakeResponse {
            receiver_index,
            handshake,
            ..
        }) = answer.messages().first().copied()
        else {
            return Err(AttackError::Refused("expected HANDSHAKE_RESPONSE"));
        };
        if receiver_index != index {
            return Err(AttackError::Refused("response names another handshake"));
        }
        let mut unused = [0u8; MAX_HANDSHAKE_LEN];
        let done = initiator.read_response(sender, handshake, &mut unused)?;
        self.node_peer = sender;
        // Each direction counts its default-channel sequence numbers on its own: ours start
        // at 0 although the node's START_ENCRYPTION part used its own 0.
        self.session = Some(AttackSession::new(&done.established, KeyPhase::Zero));
        self.ping_until(deadline).map(|_| ())
    }

    /// Sends the INIT and answers one HANDSHAKE_COOKIE; returns the node's handshake answer
    /// and its sender.
    fn exchange_init(
        &mut self,
        initiator: &Initiator,
        recipient: PeerId,
        mac1: Option<&Mac1Key>,
        index: u32,
        deadline: Instant,
    ) -> Result<(Received, PeerId), AttackError> {
        let mut cookie: Option<[u8; MAC_LEN]> = None;
        for _ in 0..3 {
            let (datagram, echo) = Self::init_packet(
                self.peer_id(),
                recipient,
                initiator.kind(),
                index,
                initiator.init(),
                mac1,
                cookie.as_ref(),
            )?;
            self.send_raw(&datagram)?;
            let cookie_value = loop {
                let Some(received) = self.recv(deadline)? else {
                    return Err(AttackError::Timeout("handshake answer"));
                };
                let answer = match received.messages().first() {
                    Some(Message::HandshakeCookie {
                        receiver_index,
                        cookie: value,
                        echo: echoed,
                    }) if *receiver_index == index && **echoed == echo => Some(Some(**value)),
                    Some(Message::HandshakeResponse { receiver_index, .. })
                        if *receiver_index == index =>
                    {
                        Some(None)
                    }
                    _ => None,
                };
                match answer {
                    Some(Some(value)) => break value,
                    Some(None) => {
                        let sender = received.header.sender;
                        return Ok((received, sender));
                    }
                    None => continue,
                }
            };
            cookie = Some(cookie_value);
        }
        Err(AttackError::Refused("cookie after cookie"))
    }

    /// Builds the packet that completes a handshake: `first`, START_ENCRYPTION, and `riders`
    /// sealed under the new session's default-channel key (PROTOCOL.md §5).
    fn completing_packet(
        &mut self,
        first: &Message<'_>,
        riders: &[Message<'_>],
    ) -> Result<Vec<u8>, AttackError> {
        let sequence = self.take_sequence(ChannelId::DEFAULT)?;
        let session = self.session.as_ref().ok_or(AttackError::NoSession)?;
        let mut flags = Flags::SEQUENCED;
        if session.phase.flag() {
            flags = flags | Flags::KEY_PHASE;
        }
        let header = Header {
            flags,
            sender: self.peer_id(),
            recipient: self.node_peer,
            channel: ChannelId::DEFAULT,
            sequence: Some(sequence),
        };
        let plaintext = Self::encode(riders)?;
        let mut out = vec![0u8; header.len() + first.encoded_len() + 1 + plaintext.len() + TAG_LEN];
        let mut at = header.emit(&mut out)?;
        at += first.emit(&mut out[at..])?;
        out[at] = 0x01; // START_ENCRYPTION
        at += 1;
        let (ad, rest) = out.split_at_mut(at);
        let (payload, tag) = rest.split_at_mut(plaintext.len());
        payload.copy_from_slice(&plaintext);
        let key = PacketKey::for_channel(&session.send_secret, ChannelId::DEFAULT);
        let mut sealed_tag = [0u8; TAG_LEN];
        key.seal_in_place(u64::from(sequence), ad, payload, &mut sealed_tag);
        tag.copy_from_slice(&sealed_tag);
        Ok(out)
    }

    /// Sends a forged XX INIT whose header claims `claimed` as its sender (a peer the attacker
    /// cannot prove to be), answering the node's HANDSHAKE_COOKIE once, as an off-path host
    /// that receives at its own address would. Returns whether the node answered the INIT with
    /// a HANDSHAKE_RESPONSE (it acted on it).
    pub fn forge_xx_init(
        &mut self,
        claimed: PeerId,
        timeout: Duration,
    ) -> Result<bool, AttackError> {
        let deadline = Instant::now() + timeout;
        let initiator = Initiator::unknown_responder(&self.handshake_identity, &mut self.rng)?;
        let index: u32 = self.rng.r#gen();
        let mut cookie: Option<[u8; MAC_LEN]> = None;
        for _ in 0..2 {
            let (datagram, echo) = Self::init_packet(
                claimed,
                self.node_peer,
                HandshakeKind::UnknownResponder,
                index,
                initiator.init(),
                None,
                cookie.as_ref(),
            )?;
            self.send_raw(&datagram)?;
            let mut next_cookie = None;
            while let Some(received) = self.recv(deadline)? {
                match received.messages().first() {
                    Some(Message::HandshakeCookie {
                        receiver_index,
                        cookie: value,
                        echo: echoed,
                    }) if *receiver_index == index && **echoed == echo => {
                        next_cookie = Some(**value);
                        break;
                    }
                    Some(Message::HandshakeResponse { receiver_index, .. })
                        if *receiver_index == index =>
                    {
                        return Ok(true);
                    }
                    _ => {}
                }
            }
            match next_cookie {
                Some(value) => cookie = Some(value),
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Answers an XX INIT the node sent us (it rekeys, or answers our RESET) with a
    /// HANDSHAKE_RESPONSE, as an honest responder does.
    pub fn answer_xx_init(&mut self, init: &Received) -> Result<RespondedXx, AttackError> {
        let Some(Message::HandshakeInit {
            kind,
            sender_index,
            handshake,
            ..
        }) = init.messages().first().copied()
        else {
            return Err(AttackError::Refused("not a HANDSHAKE_INIT"));
        };
        if HandshakeKind::from_code(kind) != Some(HandshakeKind::UnknownResponder) {
            return Err(AttackError::Refused("not an XX INIT"));
        }
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let mut timestamps = TimestampTable::new();
        let response = respond(
            &self.handshake_identity,
            HandshakeKind::UnknownResponder,
            init.header.sender,
            handshake,
            &mut timestamps,
            |_| None,
            &mut self.rng,
            &mut out,
        )?;
        let Response::Pending { len, pending } = response else {
            return Err(AttackError::Refused("XX completes in three messages"));
        };
        let our_index: u32 = self.rng.r#gen();
        let answer = Message::HandshakeResponse {
            sender_index: our_index,
            receiver_index: sender_index,
            handshake: &out[..len],
        };
        let datagram = self.plain_packet(
            None,
            init.header.sender,
            ChannelId::DEFAULT,
            None,
            &[answer],
        )?;
        self.send_raw(&datagram)?;
        Ok(RespondedXx {
            pending,
            node_index: sender_index,
            our_index,
        })
    }

    /// Waits for the node's HANDSHAKE_FINAL to `responded` and installs the new session (the
    /// other KEY_PHASE). Returns [`AttackError::Timeout`] if the node never finishes.
    pub fn finish_xx_responder(
        &mut self,
        mut responded: RespondedXx,
        deadline: Instant,
    ) -> Result<(), AttackError> {
        while let Some(received) = self.recv(deadline)? {
            if received.sealed {
                continue;
            }
            let Some(Message::HandshakeFinal {
                receiver_index,
                handshake,
                ..
            }) = received.messages().first().copied()
            else {
                continue;
            };
            if receiver_index != responded.our_index {
                continue;
            }
            let established = responded
                .pending
                .read_final(received.header.sender, handshake)?;
            let phase = self
                .session
                .as_ref()
                .map_or(KeyPhase::Zero, |s| s.phase.flipped());
            self.session = Some(AttackSession::new(&established, phase));
            return Ok(());
        }
        Err(AttackError::Timeout("HANDSHAKE_FINAL"))
    }

    // ------------------------------------------------------------------ honest behaviour

    /// One sealed PING on the default channel; returns the round-trip time of its PONG.
    pub fn ping(&mut self, timeout: Duration) -> Result<Duration, AttackError> {
        self.ping_until(Instant::now() + timeout)
    }

    fn ping_until(&mut self, deadline: Instant) -> Result<Duration, AttackError> {
        let token = self.token();
        let started = Instant::now();
        self.send_sealed(ChannelId::DEFAULT, &[Message::Ping { token: &token }])?;
        self.await_pong(token, deadline)?;
        Ok(started.elapsed())
    }

    fn await_pong(&mut self, token: [u8; 8], deadline: Instant) -> Result<(), AttackError> {
        while let Some(received) = self.recv(deadline)? {
            if !received.sealed {
                continue;
            }
            let answered = received
                .messages()
                .iter()
                .any(|m| matches!(m, Message::Pong { token: t } if **t == token));
            if answered {
                return Ok(());
            }
        }
        Err(AttackError::Timeout("PONG"))
    }

    /// Opens a channel with NEW / ACKNOWLEDGE / FINALIZE (PROTOCOL.md §6), sealed on the default
    /// channel; returns its id. `c1` is ours to pick (any value but 0).
    pub fn open_channel(
        &mut self,
        c1: u16,
        capabilities: Capabilities,
        timeout: Duration,
    ) -> Result<ChannelId, AttackError> {
        let (id, cookie2) = self.new_and_acknowledge(c1, timeout)?;
        self.send_sealed(
            ChannelId::DEFAULT,
            &[Message::ChannelFinalize {
                channel: id,
                cookie2: &cookie2,
                capabilities,
            }],
        )?;
        Ok(id)
    }

    /// Opens a channel with NEW / ACKNOWLEDGE and then a CHANNEL_COOKIE heading the channel's
    /// first packet, followed by `early` (PROTOCOL.md §6 step 4); returns its id.
    pub fn open_channel_with_cookie(
        &mut self,
        c1: u16,
        capabilities: Capabilities,
        early: &[Message<'_>],
        timeout: Duration,
    ) -> Result<ChannelId, AttackError> {
        let (id, cookie2) = self.new_and_acknowledge(c1, timeout)?;
        let mut messages = vec![Message::ChannelCookie {
            cookie2: &cookie2,
            capabilities,
        }];
        messages.extend_from_slice(early);
        self.send_sealed(id, &messages)?;
        Ok(id)
    }

    /// CHANNEL_NEW and the node's CHANNEL_ACKNOWLEDGE: the channel id and cookie2.
    fn new_and_acknowledge(
        &mut self,
        c1: u16,
        timeout: Duration,
    ) -> Result<(ChannelId, [u8; MAC_LEN]), AttackError> {
        let deadline = Instant::now() + timeout;
        let cookie1: [u8; MAC_LEN] = self.rng.r#gen();
        self.send_sealed(
            ChannelId::DEFAULT,
            &[Message::ChannelNew {
                c1,
                cookie1: &cookie1,
            }],
        )?;
        while let Some(received) = self.recv(deadline)? {
            for message in received.messages() {
                if let Message::ChannelAcknowledge {
                    channel,
                    cookie1: echoed,
                    cookie2,
                } = message
                {
                    if channel.c1() == c1 && *echoed == cookie1 {
                        return Ok((channel, *cookie2));
                    }
                }
            }
        }
        Err(AttackError::Timeout("CHANNEL_ACKNOWLEDGE"))
    }

    /// Closes a channel with a sealed CHANNEL_CLOSE on the default channel.
    pub fn close_channel(&mut self, id: ChannelId) -> Result<(), AttackError> {
        self.send_sealed(
            ChannelId::DEFAULT,
            &[Message::ChannelClose {
                channel: id,
                reason: CloseReason::Normal,
            }],
        )
    }

    /// A plaintext RESET to the node: "I hold no session for this packet" (PROTOCOL.md §4). The
    /// node answers with a new handshake towards us, at most one per 5 s.
    pub fn send_reset(&self) -> Result<(), AttackError> {
        let datagram = self.plain_packet(
            None,
            self.node_peer,
            ChannelId::DEFAULT,
            None,
            &[Message::Reset { reason: 0 }],
        )?;
        self.send_raw(&datagram)?;
        Ok(())
    }

    /// Waits for a HANDSHAKE_INIT from the node (after [`Attacker::send_reset`]).
    pub fn await_init(&mut self, deadline: Instant) -> Result<Received, AttackError> {
        while let Some(received) = self.recv(deadline)? {
            if !received.sealed
                && matches!(
                    received.messages().first(),
                    Some(Message::HandshakeInit { .. })
                )
            {
                return Ok(received);
            }
        }
        Err(AttackError::Timeout("HANDSHAKE_INIT"))
    }
}

fn varint_len(v: usize) -> usize {
    let mut len = 1;
    let mut v = v >> 7;
    while v > 0 {
        len += 1;
        v >>= 7;
    }
    len
}

/// The length of a HANDSHAKE_INIT body (PROTOCOL.md §4).
fn init_body_len(handshake: &[u8], cookie: Option<&[u8; MAC_LEN]>) -> usize {
    1 + 4
        + varint_len(handshake.len())
        + handshake.len()
        + MAC_LEN
        + 1
        + if cookie.is_some() { MAC_LEN } else { 0 }
}
