//! The three key-exchange handshake kinds (PROTOCOL.md §5) driven through snow, with weft's
//! identity binding, TAI64N replay defence and raw direction secrets as output.
//!
//! Sans-IO: the caller passes the packet's claimed sender peer id, the handshake bytes, the
//! wall-clock time as a [`Tai64N`] and an RNG, and gets bytes to send and, at the end, an
//! [`Established`]. Message framing (HANDSHAKE_INIT and friends) is the wire layer's business.
//!
//! **Replay of an IK INIT.** The TAI64N timestamp travels inside IK's first message, encrypted
//! under keys that need the `es` and `ss` DHs, so no responder can read it before paying those two
//! DHs (one, `es`, for an initiator it answered before: `ss` is remembered, `known.rs`). boringtun does the same (it decrypts the initiation, then compares the timestamp with the
//! peer's last one). What we add: the timestamp is compared, and the signature verified, *before*
//! the responder writes its message (whose `ee` and `se` DHs it therefore never performs for a
//! replay), and the table only records a timestamp once the response has been produced. What
//! bounds the two DHs of a replay flood is mac1 and the cookie under load (`super::mac`).

mod initiator;
mod known;
mod responder;
mod timestamp;

pub use initiator::{Initiator, InitiatorDone};
pub use responder::{PendingResponder, Response, respond};
pub use timestamp::{DEFAULT_TIMESTAMP_LIMIT, Tai64N, TimestampTable};

use super::identity::{Identity, peer_id_of};
use crate::wire::PeerId;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use snow::params::NoiseParams;
use std::fmt;

/// Largest handshake message weft produces or accepts (the biggest, IK's INIT, is 204 bytes).
pub const MAX_HANDSHAKE_LEN: usize = 256;
/// Length of the static-key binding payload: Ed25519 pk ‖ signature.
pub const BINDING_LEN: usize = 96;
/// Length of a TAI64N timestamp.
pub const TIMESTAMP_LEN: usize = 12;
/// Length of a pre-shared key.
pub const PSK_LEN: usize = 32;
/// What the Ed25519 key signs to bind an X25519 static key (PROTOCOL.md §5).
const STATIC_KEY_CONTEXT: &[u8] = b"weft v1 static key";
/// Where IKpsk2 mixes the PSK in (end of message 2).
const PSK_LOCATION: usize = 2;

/// The handshake kinds that exchange keys, with their code on the wire (PROTOCOL.md §5).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum HandshakeKind {
    /// Kind 1: `Noise_IK_25519_AESGCM_BLAKE2s`, the initiator holds the responder's record.
    KnownResponder = 1,
    /// Kind 2: `Noise_XX_25519_AESGCM_BLAKE2s`, bootstrapping from a bare address.
    UnknownResponder = 2,
    /// Kind 3: `Noise_IKpsk2_25519_AESGCM_BLAKE2s`, peers that configured a shared key.
    PreSharedKey = 3,
}

impl HandshakeKind {
    /// The kind with wire code `code`, if it is one of 1–3.
    pub fn from_code(code: u8) -> Option<HandshakeKind> {
        match code {
            1 => Some(HandshakeKind::KnownResponder),
            2 => Some(HandshakeKind::UnknownResponder),
            3 => Some(HandshakeKind::PreSharedKey),
            _ => None,
        }
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The Noise protocol name.
    pub fn noise_name(self) -> &'static str {
        match self {
            HandshakeKind::KnownResponder => "Noise_IK_25519_AESGCM_BLAKE2s",
            HandshakeKind::UnknownResponder => "Noise_XX_25519_AESGCM_BLAKE2s",
            HandshakeKind::PreSharedKey => "Noise_IKpsk2_25519_AESGCM_BLAKE2s",
        }
    }

    /// True for the IK kinds (1, 3), whose INIT carries a timestamp and needs mac1.
    pub fn is_ik(self) -> bool {
        self != HandshakeKind::UnknownResponder
    }

    fn params(self) -> NoiseParams {
        // The three names are constants that snow parses; a failure is a bug caught by tests.
        self.noise_name()
            .parse()
            .unwrap_or_else(|_| unreachable!("snow parses {}", self.noise_name()))
    }
}

/// Why a handshake failed. Every variant is a silent drop on the wire, counted by its reason.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// snow refused a message (bad tag, wrong length, wrong key, PSK mismatch…).
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// A message is longer than [`MAX_HANDSHAKE_LEN`] or the output buffer is too small.
    #[error("handshake message or buffer has the wrong size")]
    Size,
    /// The payload is not the binding (and timestamp) this message must carry.
    #[error("handshake payload is malformed")]
    Payload,
    /// BLAKE3(ed25519 pk)[..16] is not the packet's sender peer id.
    #[error("the handshake's key does not belong to the claimed peer id")]
    PeerIdMismatch,
    /// The Ed25519 key is invalid or `verify_strict` refused the static-key signature.
    #[error("the static key signature does not verify")]
    BadSignature,
    /// The responder's peer record does not verify.
    #[error("the responder's peer record does not verify")]
    BadRecord,
    /// The INIT's timestamp is not newer than the last one accepted for that key.
    #[error("replayed or stale handshake initiation")]
    Replay,
    /// A kind-3 INIT from a peer for which no pre-shared key is configured.
    #[error("no pre-shared key for this peer")]
    UnknownPsk,
    /// The handshake already ended (completed, or failed after its state was spent).
    #[error("the handshake is over")]
    Finished,
}

impl HandshakeError {
    /// A snake_case metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Noise(_) => "noise",
            HandshakeError::Size => "size",
            HandshakeError::Payload => "payload",
            HandshakeError::PeerIdMismatch => "peer_id_mismatch",
            HandshakeError::BadSignature => "bad_signature",
            HandshakeError::BadRecord => "bad_record",
            HandshakeError::Replay => "replay",
            HandshakeError::UnknownPsk => "unknown_psk",
            HandshakeError::Finished => "finished",
        }
    }
}

/// Which side of a handshake this node played.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sent the INIT.
    Initiator,
    /// Answered it.
    Responder,
}

/// A completed handshake: the two direction secrets and the proven peer.
#[derive(Clone, PartialEq, Eq)]
pub struct Established {
    /// The kind that produced it.
    pub kind: HandshakeKind,
    /// Our side.
    pub role: Role,
    /// The peer's id, proven by the handshake.
    pub peer_id: PeerId,
    /// The peer's Ed25519 key.
    pub peer_ed25519: [u8; 32],
    /// The peer's X25519 static key, as the handshake authenticated it (a later IK rekey
    /// addresses it without needing the peer's record).
    pub peer_x25519: [u8; 32],
    /// The Split's first key: protects what the initiator sends.
    pub initiator_to_responder: [u8; 32],
    /// The Split's second key: protects what the responder sends.
    pub responder_to_initiator: [u8; 32],
}

impl Established {
    /// The secret of the direction we send in.
    pub fn send_secret(&self) -> &[u8; 32] {
        match self.role {
            Role::Initiator => &self.initiator_to_responder,
            Role::Responder => &self.responder_to_initiator,
        }
    }

    /// The secret of the direction we receive in.
    pub fn receive_secret(&self) -> &[u8; 32] {
        match self.role {
            Role::Initiator => &self.responder_to_initiator,
            Role::Responder => &self.initiator_to_responder,
        }
    }
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secrets.
        f.debug_struct("Established")
            .field("kind", &self.kind)
            .field("role", &self.role)
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

/// A node's handshake keys, with its static-key binding signed once at start-up (an Ed25519
/// signature per handshake would cost more than a DH).
#[derive(Clone)]
pub struct HandshakeIdentity {
    x25519_secret: [u8; 32],
    x25519_public: [u8; 32],
    binding: [u8; BINDING_LEN],
    /// IK initiators this node answered before (see `known.rs`).
    known: known::KnownInitiators,
}

impl HandshakeIdentity {
    /// Signs the binding of `identity`'s X25519 key to its Ed25519 key (PROTOCOL.md §5).
    pub fn new(identity: &Identity) -> HandshakeIdentity {
        let x25519 = identity.x25519_public().to_bytes();
        let mut signed = [0u8; STATIC_KEY_CONTEXT.len() + 32];
        signed[..STATIC_KEY_CONTEXT.len()].copy_from_slice(STATIC_KEY_CONTEXT);
        signed[STATIC_KEY_CONTEXT.len()..].copy_from_slice(&x25519);
        let signature = identity.signing_key().sign(&signed);
        let mut binding = [0u8; BINDING_LEN];
        binding[..32].copy_from_slice(identity.ed25519_public().as_bytes());
        binding[32..].copy_from_slice(&signature.to_bytes());
        HandshakeIdentity {
            x25519_secret: identity.x25519_secret_bytes(),
            x25519_public: x25519,
            binding,
            known: known::KnownInitiators::default(),
        }
    }
}

impl fmt::Debug for HandshakeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeIdentity").finish_non_exhaustive()
    }
}

/// Checks a static-key binding payload against the static key snow authenticated and the claimed
/// sender (PROTOCOL.md §5, identity binding); returns the proven Ed25519 key.
fn check_binding(
    binding: &[u8],
    remote_static: Option<&[u8]>,
    sender: PeerId,
) -> Result<[u8; 32], HandshakeError> {
    let binding: &[u8; BINDING_LEN] = binding.try_into().map_err(|_| HandshakeError::Payload)?;
    let remote_static = remote_static.ok_or(HandshakeError::Payload)?;
    let mut ed25519 = [0u8; 32];
    ed25519.copy_from_slice(&binding[..32]);
    // PROTOCOL.md §5: BLAKE3(ed25519 pk)[..16] must equal the packet's sender peer id.
    if peer_id_of(&ed25519) != sender {
        return Err(HandshakeError::PeerIdMismatch);
    }
    let key = VerifyingKey::from_bytes(&ed25519).map_err(|_| HandshakeError::BadSignature)?;
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&binding[32..]);
    let mut signed = [0u8; STATIC_KEY_CONTEXT.len() + 32];
    signed[..STATIC_KEY_CONTEXT.len()].copy_from_slice(STATIC_KEY_CONTEXT);
    signed[STATIC_KEY_CONTEXT.len()..]
        .copy_from_slice(remote_static.get(..32).ok_or(HandshakeError::Payload)?);
    // PROTOCOL.md §5: verify_strict must accept the signature over "weft v1 static key" ‖ x25519.
    key.verify_strict(&signed, &Signature::from_bytes(&signature))
        .map_err(|_| HandshakeError::BadSignature)?;
    Ok(ed25519)
}

/// The session a finished handshake yields: snow's raw split as the two direction secrets.
fn split(
    state: &mut snow::HandshakeState,
    kind: HandshakeKind,
    role: Role,
    peer_id: PeerId,
    peer_ed25519: [u8; 32],
) -> Established {
    // PROTOCOL.md §5: the Split's two raw keys are the direction secrets, initiator→responder first.
    let (initiator_to_responder, responder_to_initiator) = state.dangerously_get_raw_split();
    let mut peer_x25519 = [0u8; 32];
    if let Some(remote) = state.get_remote_static().and_then(|r| r.get(..32)) {
        peer_x25519.copy_from_slice(remote);
    }
    Established {
        kind,
        role,
        peer_id,
        peer_ed25519,
        peer_x25519,
        initiator_to_responder,
        responder_to_initiator,
    }
}

/// How many DHs each side performs in a full handshake of `kind` (see [`super::dh`]).
pub fn dh_per_side(kind: HandshakeKind) -> u64 {
    match kind {
        HandshakeKind::KnownResponder | HandshakeKind::PreSharedKey => 4,
        HandshakeKind::UnknownResponder => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::dh;
    use crate::session::keys::channel_key;
    use crate::session::record::PeerRecord;
    use crate::wire::ChannelId;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::time::Duration;

    struct Node {
        identity: Identity,
        local: HandshakeIdentity,
        record: PeerRecord,
    }

    fn node(seed: u8) -> Node {
        let identity = Identity::from_secret_bytes([seed; 32], [seed.wrapping_add(100); 32]);
        let local = HandshakeIdentity::new(&identity);
        let record = PeerRecord::sign(&identity, &["127.0.0.1:1".parse().unwrap()]);
        Node {
            identity,
            local,
            record,
        }
    }

    fn at(seconds: u64) -> Tai64N {
        Tai64N::from_unix(Duration::from_secs(seconds))
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    fn no_psk(_: PeerId) -> Option<[u8; PSK_LEN]> {
        None
    }

    /// Runs an IK-family handshake; returns (initiator's, responder's) results.
    fn ik(
        kind: HandshakeKind,
        a: &Node,
        b: &Node,
        timestamps: &mut TimestampTable,
        now: Tai64N,
        initiator_psk: [u8; 32],
        responder_psk: Option<[u8; 32]>,
    ) -> Result<(Established, Established), HandshakeError> {
        let mut rng = rng();
        let mut initiator = match kind {
            HandshakeKind::KnownResponder => {
                Initiator::known_responder(&a.local, &b.record, now, &mut rng)?
            }
            _ => Initiator::pre_shared_key(&a.local, &b.record, &initiator_psk, now, &mut rng)?,
        };
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let response = respond(
            &b.local,
            kind,
            a.identity.peer_id(),
            initiator.init(),
            timestamps,
            |_| responder_psk,
            &mut rng,
            &mut out,
        )?;
        let Response::Complete { len, established } = response else {
            panic!("IK completes in one round trip");
        };
        let mut fin = [0u8; MAX_HANDSHAKE_LEN];
        let done = initiator.read_response(b.identity.peer_id(), &out[..len], &mut fin)?;
        assert_eq!(done.final_len, 0);
        Ok((done.established, established))
    }

    fn assert_matching(i: &Established, r: &Established, a: &Node, b: &Node) {
        assert_eq!(i.initiator_to_responder, r.initiator_to_responder);
        assert_eq!(i.responder_to_initiator, r.responder_to_initiator);
        assert_ne!(i.initiator_to_responder, i.responder_to_initiator);
        assert_eq!(i.send_secret(), r.receive_secret());
        assert_eq!(i.peer_id, b.identity.peer_id());
        assert_eq!(r.peer_id, a.identity.peer_id());
        assert_eq!(&i.peer_ed25519, b.identity.ed25519_public().as_bytes());
        assert_eq!(&r.peer_ed25519, a.identity.ed25519_public().as_bytes());
        let channel = ChannelId::new(4, 5);
        assert_eq!(
            channel_key(i.send_secret(), channel),
            channel_key(r.receive_secret(), channel)
        );
    }

    #[test]
    fn ik_handshake_yields_matching_secrets_and_costs_four_dh_per_side() {
        let (a, b) = (node(1), node(2));
        let before = dh::count_on_this_thread();
        let (i, r) = ik(
            HandshakeKind::KnownResponder,
            &a,
            &b,
            &mut TimestampTable::new(),
            at(1000),
            [0; 32],
            None,
        )
        .unwrap();
        assert_eq!(dh::count_on_this_thread() - before, 2 * dh_per_side(i.kind));
        assert_eq!(i.kind, HandshakeKind::KnownResponder);
        assert_eq!((i.role, r.role), (Role::Initiator, Role::Responder));
        assert_matching(&i, &r, &a, &b);
    }

    #[test]
    fn a_known_initiators_next_ik_costs_the_responder_three_dh_and_still_matches() {
        let (a, b) = (node(1), node(2));
        let mut table = TimestampTable::new();
        let kind = HandshakeKind::KnownResponder;
        ik(kind, &a, &b, &mut table, at(1000), [0; 32], None).unwrap();
        let before = dh::count_on_this_thread();
        let (i, r) = ik(kind, &a, &b, &mut table, at(1001), [0; 32], None).unwrap();
        // The initiator pays its 4; the responder remembered `ss` with this key pair.
        assert_eq!(
            dh::count_on_this_thread() - before,
            2 * dh_per_side(kind) - 1
        );
        assert_matching(&i, &r, &a, &b);
    }

    #[test]
    fn a_remembered_initiator_with_another_signature_is_verified_and_refused() {
        let (a, b) = (node(1), node(2));
        let mut table = TimestampTable::new();
        let kind = HandshakeKind::KnownResponder;
        ik(kind, &a, &b, &mut table, at(1000), [0; 32], None).unwrap();
        // The same keys, a signature that never verified: the table vouches for exact bytes.
        let mut forged = node(1);
        forged.local.binding[BINDING_LEN - 1] ^= 1;
        let result = ik(kind, &forged, &b, &mut table, at(1001), [0; 32], None);
        assert!(
            matches!(result, Err(HandshakeError::BadSignature)),
            "{result:?}"
        );
        // The genuine initiator still gets its shortcut afterwards.
        let before = dh::count_on_this_thread();
        ik(kind, &a, &b, &mut table, at(1002), [0; 32], None).unwrap();
        assert_eq!(
            dh::count_on_this_thread() - before,
            2 * dh_per_side(kind) - 1
        );
    }

    #[test]
    fn ikpsk2_handshake_with_the_same_key_succeeds_and_with_another_fails() {
        let (a, b) = (node(1), node(2));
        let psk = [9u8; 32];
        let (i, r) = ik(
            HandshakeKind::PreSharedKey,
            &a,
            &b,
            &mut TimestampTable::new(),
            at(1000),
            psk,
            Some(psk),
        )
        .unwrap();
        assert_matching(&i, &r, &a, &b);
        let mismatch = ik(
            HandshakeKind::PreSharedKey,
            &a,
            &b,
            &mut TimestampTable::new(),
            at(1000),
            psk,
            Some([8u8; 32]),
        );
        assert!(matches!(mismatch, Err(HandshakeError::Noise(_))));
        let unknown = ik(
            HandshakeKind::PreSharedKey,
            &a,
            &b,
            &mut TimestampTable::new(),
            at(1000),
            psk,
            None,
        );
        assert!(matches!(unknown, Err(HandshakeError::UnknownPsk)));
    }

    #[test]
    fn xx_handshake_yields_matching_secrets_and_costs_three_dh_per_side() {
        let (a, b) = (node(1), node(2));
        let mut rng = rng();
        let before = dh::count_on_this_thread();
        let mut initiator = Initiator::unknown_responder(&a.local, &mut rng).unwrap();
        assert_eq!(dh::count_on_this_thread(), before, "XX's INIT costs no DH");
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let response = respond(
            &b.local,
            HandshakeKind::UnknownResponder,
            a.identity.peer_id(),
            initiator.init(),
            &mut TimestampTable::new(),
            no_psk,
            &mut rng,
            &mut out,
        )
        .unwrap();
        let Response::Pending { len, mut pending } = response else {
            panic!("XX needs a third message");
        };
        let mut fin = [0u8; MAX_HANDSHAKE_LEN];
        let done = initiator
            .read_response(b.identity.peer_id(), &out[..len], &mut fin)
            .unwrap();
        let r = pending
            .read_final(a.identity.peer_id(), &fin[..done.final_len])
            .unwrap();
        assert_eq!(dh::count_on_this_thread() - before, 6);
        assert_matching(&done.established, &r, &a, &b);
    }

    #[test]
    fn an_initiator_lying_about_its_peer_id_fails() {
        let (a, b, c) = (node(1), node(2), node(3));
        let mut rng = rng();
        let initiator = Initiator::known_responder(&a.local, &b.record, at(5), &mut rng).unwrap();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let result = respond(
            &b.local,
            HandshakeKind::KnownResponder,
            c.identity.peer_id(),
            initiator.init(),
            &mut TimestampTable::new(),
            no_psk,
            &mut rng,
            &mut out,
        );
        assert!(matches!(result, Err(HandshakeError::PeerIdMismatch)));
    }

    #[test]
    fn an_xx_responder_lying_about_its_peer_id_fails() {
        let (a, b, c) = (node(1), node(2), node(3));
        let mut rng = rng();
        let mut initiator = Initiator::unknown_responder(&a.local, &mut rng).unwrap();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let Response::Pending { len, .. } = respond(
            &b.local,
            HandshakeKind::UnknownResponder,
            a.identity.peer_id(),
            initiator.init(),
            &mut TimestampTable::new(),
            no_psk,
            &mut rng,
            &mut out,
        )
        .unwrap() else {
            panic!("XX is pending after message 2");
        };
        let mut fin = [0u8; MAX_HANDSHAKE_LEN];
        let result = initiator.read_response(c.identity.peer_id(), &out[..len], &mut fin);
        assert!(matches!(result, Err(HandshakeError::PeerIdMismatch)));
    }

    #[test]
    fn a_signature_over_another_static_key_fails() {
        let (a, b) = (node(1), node(2));
        // a's Ed25519 key signs a binding, but a's handshake uses another X25519 key.
        let mut forged = HandshakeIdentity::new(&a.identity);
        forged.x25519_secret = [77; 32];
        let mut rng = rng();
        let initiator = Initiator::known_responder(&forged, &b.record, at(5), &mut rng).unwrap();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let result = respond(
            &b.local,
            HandshakeKind::KnownResponder,
            a.identity.peer_id(),
            initiator.init(),
            &mut TimestampTable::new(),
            no_psk,
            &mut rng,
            &mut out,
        );
        assert!(matches!(result, Err(HandshakeError::BadSignature)));
    }

    #[test]
    fn a_wrong_responder_static_key_fails() {
        let (a, b, c) = (node(1), node(2), node(3));
        let mut rng = rng();
        // a believes b's record; c answers the INIT (its static key is not b's).
        let initiator = Initiator::known_responder(&a.local, &b.record, at(5), &mut rng).unwrap();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let result = respond(
            &c.local,
            HandshakeKind::KnownResponder,
            a.identity.peer_id(),
            initiator.init(),
            &mut TimestampTable::new(),
            no_psk,
            &mut rng,
            &mut out,
        );
        assert!(matches!(result, Err(HandshakeError::Noise(_))));
        // A record whose x25519 key was swapped no longer verifies, so it is refused up front.
        let mut swapped = b.record.clone();
        swapped.x25519 = c.record.x25519;
        let refused = Initiator::known_responder(&a.local, &swapped, at(5), &mut rng);
        assert!(matches!(refused, Err(HandshakeError::BadRecord)));
    }

    #[test]
    fn a_response_from_another_key_fails_and_a_forged_one_does_not_end_the_handshake() {
        let (a, b, c) = (node(1), node(2), node(3));
        let mut rng = rng();
        let mut initiator =
            Initiator::known_responder(&a.local, &b.record, at(5), &mut rng).unwrap();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let Response::Complete { len, .. } = respond(
            &b.local,
            HandshakeKind::KnownResponder,
            a.identity.peer_id(),
            initiator.init(),
            &mut TimestampTable::new(),
            no_psk,
            &mut rng,
            &mut out,
        )
        .unwrap() else {
            panic!("IK completes");
        };
        let mut fin = [0u8; MAX_HANDSHAKE_LEN];
        let wrong_sender = initiator.read_response(c.identity.peer_id(), &out[..len], &mut fin);
        assert!(matches!(wrong_sender, Err(HandshakeError::PeerIdMismatch)));
        let mut forged = out;
        forged[len - 1] ^= 1;
        let forged = initiator.read_response(b.identity.peer_id(), &forged[..len], &mut fin);
        assert!(matches!(forged, Err(HandshakeError::Noise(_))));
        assert!(
            initiator
                .read_response(b.identity.peer_id(), &out[..len], &mut fin)
                .is_ok()
        );
        assert!(matches!(
            initiator.read_response(b.identity.peer_id(), &out[..len], &mut fin),
            Err(HandshakeError::Finished)
        ));
    }

    #[test]
    fn a_replayed_init_is_refused_before_the_response_dh() {
        let (a, b) = (node(1), node(2));
        let mut rng0 = rng();
        let mut timestamps = TimestampTable::new();
        let initiator = Initiator::known_responder(&a.local, &b.record, at(50), &mut rng0).unwrap();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let mut answer = |init: &[u8], timestamps: &mut TimestampTable| {
            respond(
                &b.local,
                HandshakeKind::KnownResponder,
                a.identity.peer_id(),
                init,
                timestamps,
                no_psk,
                &mut rng(),
                &mut out,
            )
        };
        assert!(answer(initiator.init(), &mut timestamps).is_ok());
        let before = dh::count_on_this_thread();
        let replay = answer(initiator.init(), &mut timestamps);
        assert!(matches!(replay, Err(HandshakeError::Replay)));
        // Reading the INIT costs es (ss is remembered from the first answer, `known.rs`); the
        // response's ee and se are never computed.
        assert_eq!(dh::count_on_this_thread() - before, 1);
        // An older timestamp is refused too; a newer one is accepted.
        let older = Initiator::known_responder(&a.local, &b.record, at(49), &mut rng0).unwrap();
        assert!(matches!(
            answer(older.init(), &mut timestamps),
            Err(HandshakeError::Replay)
        ));
        let newer = Initiator::known_responder(&a.local, &b.record, at(51), &mut rng0).unwrap();
        assert!(answer(newer.init(), &mut timestamps).is_ok());
    }

    #[test]
    fn garbage_of_any_length_is_an_error_not_a_panic() {
        let b = node(2);
        let mut rng = rng();
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        for kind in [
            HandshakeKind::KnownResponder,
            HandshakeKind::UnknownResponder,
            HandshakeKind::PreSharedKey,
        ] {
            for len in [0, 1, 31, 32, 33, 80, 204, 256, 257, 4000] {
                let garbage = vec![0xA5u8; len];
                let result = respond(
                    &b.local,
                    kind,
                    PeerId([1; 16]),
                    &garbage,
                    &mut TimestampTable::new(),
                    no_psk,
                    &mut rng,
                    &mut out,
                );
                // XX's first message is a bare ephemeral key: 32 bytes of anything is valid.
                if !(kind == HandshakeKind::UnknownResponder && len == 32) {
                    assert!(result.is_err(), "{kind:?} accepted {len} bytes");
                }
            }
        }
    }

    #[test]
    fn the_init_is_kept_for_a_cookie_retry() {
        let (a, b) = (node(1), node(2));
        let initiator = Initiator::known_responder(&a.local, &b.record, at(5), &mut rng()).unwrap();
        let first = initiator.init().to_vec();
        assert_eq!(initiator.init(), &first[..]);
        assert_eq!(first.len(), 32 + 48 + BINDING_LEN + TIMESTAMP_LEN + 16);
    }

    #[test]
    fn kinds_round_trip_their_codes_and_names_parse() {
        for code in 0..=255u8 {
            if let Some(kind) = HandshakeKind::from_code(code) {
                assert_eq!(kind.code(), code);
                let _ = kind.params();
            } else {
                assert!(!(1..=3).contains(&code));
            }
        }
    }

    #[test]
    fn both_sides_of_a_handshake_open_each_others_packets_on_every_channel() {
        use crate::session::keys::ChannelKeys;
        let (a, b) = (node(1), node(2));
        let (i, r) = ik(
            HandshakeKind::KnownResponder,
            &a,
            &b,
            &mut TimestampTable::new(),
            at(9),
            [0; 32],
            None,
        )
        .unwrap();
        let mut ours = ChannelKeys::new(*i.send_secret(), *i.receive_secret());
        let mut theirs = ChannelKeys::new(*r.send_secret(), *r.receive_secret());
        let header = [1u8; 41];
        let send = |from: &mut ChannelKeys, to: &mut ChannelKeys, channel: ChannelId| {
            let mut packet = [0x5au8; 40];
            let mut tag = [0u8; 16];
            let seq = from
                .channel(channel)
                .seal(&header, &mut packet[..24], &mut tag);
            packet[24..].copy_from_slice(&tag);
            let len = to.channel(channel).open(seq, &header, &mut packet).unwrap();
            assert_eq!(&packet[..len], &[0x5au8; 24]);
        };
        for channel in [ChannelId::DEFAULT, ChannelId::new(7, 9)] {
            send(&mut ours, &mut theirs, channel);
            send(&mut theirs, &mut ours, channel);
        }
    }
}
