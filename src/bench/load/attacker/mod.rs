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

mod handshake;
mod honest;

use crate::session::keys::PacketKey;
use crate::session::mac::{MAC_LEN, Mac1Key, init_echo};
use crate::session::{
    Established, HandshakeError, HandshakeIdentity, HandshakeKind, Identity, KeyPhase,
    PendingResponder,
};
use crate::wire::{ChannelId, Flags, Header, Message, PeerId, TAG_LEN, WireError, parse_payload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

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
