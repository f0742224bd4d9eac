//! The initiator's side of the three handshake kinds (PROTOCOL.md §5): INIT, the response it
//! reads, and for XX the FINAL it writes.

use super::{
    BINDING_LEN, Established, HandshakeError, HandshakeIdentity, HandshakeKind, MAX_HANDSHAKE_LEN,
    PSK_LEN, PSK_LOCATION, Role, TIMESTAMP_LEN, Tai64N, check_binding, split,
};
use crate::session::noise;
use crate::session::record::PeerRecord;
use crate::wire::PeerId;
use rand::{CryptoRng, RngCore};
use std::fmt;

/// The initiator's side of one handshake. It keeps its INIT bytes: snow cannot emit a message
/// twice, and a HANDSHAKE_COOKIE asks for the same INIT again (PROTOCOL.md §5).
pub struct Initiator {
    kind: HandshakeKind,
    state: Option<snow::HandshakeState>,
    init: [u8; MAX_HANDSHAKE_LEN],
    init_len: usize,
    /// For kinds 1 and 3, the responder as its signed record names it.
    responder: Option<(PeerId, [u8; 32])>,
    binding: [u8; BINDING_LEN],
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What an initiator produced from a HANDSHAKE_RESPONSE.
#[derive(Debug)]
pub struct InitiatorDone {
    /// The session's secrets and peer.
    pub established: Established,
    /// For kind 2, the length of the HANDSHAKE_FINAL bytes written to the caller's buffer (0 for
    /// kinds 1 and 3, which end with the response).
    pub final_len: usize,
}

impl Initiator {
    /// Kind 1: starts an IK handshake with the responder of `record`, which must verify.
    pub fn known_responder<R: RngCore + CryptoRng>(
        local: &HandshakeIdentity,
        record: &PeerRecord,
        now: Tai64N,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        Self::start_ik(HandshakeKind::KnownResponder, local, record, None, now, rng)
    }

    /// Kind 3: starts an IKpsk2 handshake with the responder of `record` under `psk`.
    pub fn pre_shared_key<R: RngCore + CryptoRng>(
        local: &HandshakeIdentity,
        record: &PeerRecord,
        psk: &[u8; PSK_LEN],
        now: Tai64N,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        Self::start_ik(
            HandshakeKind::PreSharedKey,
            local,
            record,
            Some(psk),
            now,
            rng,
        )
    }

    /// Kind 1 or 3 towards a peer whose X25519 key an earlier handshake proved (a rekey of a
    /// session whose peer record this node never held, e.g. on the responder's side). `psk` is
    /// required for kind 3 and ignored for kind 1.
    pub fn proven_static<R: RngCore + CryptoRng>(
        kind: HandshakeKind,
        local: &HandshakeIdentity,
        peer: (PeerId, [u8; 32], [u8; 32]),
        psk: Option<&[u8; PSK_LEN]>,
        now: Tai64N,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        if !kind.is_ik() || (kind == HandshakeKind::PreSharedKey && psk.is_none()) {
            return Err(HandshakeError::UnknownPsk);
        }
        let psk = if kind == HandshakeKind::PreSharedKey {
            psk
        } else {
            None
        };
        Self::start_ik_to(kind, local, peer, psk, now, rng)
    }

    fn start_ik<R: RngCore + CryptoRng>(
        kind: HandshakeKind,
        local: &HandshakeIdentity,
        record: &PeerRecord,
        psk: Option<&[u8; PSK_LEN]>,
        now: Tai64N,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        // PROTOCOL.md §5: for kinds 1 and 3 the responder's x25519 key is the one in its signed
        // record, so the record must verify before its key is trusted.
        record.verify().map_err(|_| HandshakeError::BadRecord)?;
        let peer = (record.peer_id(), record.ed25519, record.x25519);
        Self::start_ik_to(kind, local, peer, psk, now, rng)
    }

    fn start_ik_to<R: RngCore + CryptoRng>(
        kind: HandshakeKind,
        local: &HandshakeIdentity,
        (peer_id, peer_ed25519, peer_x25519): (PeerId, [u8; 32], [u8; 32]),
        psk: Option<&[u8; PSK_LEN]>,
        now: Tai64N,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        let mut builder = noise::builder(kind.params(), rng)
            .local_private_key(&local.x25519_secret)
            .remote_public_key(&peer_x25519);
        if let Some(psk) = psk {
            builder = builder.psk(PSK_LOCATION as u8, psk);
        }
        let mut state = builder.build_initiator()?;
        // PROTOCOL.md §5: IK's INIT payload is the binding followed by a TAI64N timestamp.
        let mut payload = [0u8; BINDING_LEN + TIMESTAMP_LEN];
        payload[..BINDING_LEN].copy_from_slice(&local.binding);
        payload[BINDING_LEN..].copy_from_slice(&now.0);
        let mut init = [0u8; MAX_HANDSHAKE_LEN];
        let init_len = state.write_message(&payload, &mut init)?;
        Ok(Initiator {
            kind,
            state: Some(state),
            init,
            init_len,
            responder: Some((peer_id, peer_ed25519)),
            binding: local.binding,
        })
    }

    /// Kind 2: starts an XX handshake with a peer known only by address.
    pub fn unknown_responder<R: RngCore + CryptoRng>(
        local: &HandshakeIdentity,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        let kind = HandshakeKind::UnknownResponder;
        let mut state = noise::builder(kind.params(), rng)
            .local_private_key(&local.x25519_secret)
            .build_initiator()?;
        let mut init = [0u8; MAX_HANDSHAKE_LEN];
        let init_len = state.write_message(&[], &mut init)?;
        Ok(Initiator {
            kind,
            state: Some(state),
            init,
            init_len,
            responder: None,
            binding: local.binding,
        })
    }

    /// The handshake kind.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// The INIT's handshake bytes, the same on every (re)send.
    pub fn init(&self) -> &[u8] {
        &self.init[..self.init_len]
    }

    /// Reads the HANDSHAKE_RESPONSE from `sender` (the packet's sender peer id). For kind 2 it
    /// writes the HANDSHAKE_FINAL bytes into `final_out` (at least [`MAX_HANDSHAKE_LEN`]).
    ///
    /// A response that fails its AEAD leaves the initiator waiting (snow rolls back), so a forged
    /// response cannot kill a pending handshake; one that authenticates but fails the identity
    /// checks ends it ([`HandshakeError::Finished`] afterwards).
    pub fn read_response(
        &mut self,
        sender: PeerId,
        response: &[u8],
        final_out: &mut [u8],
    ) -> Result<InitiatorDone, HandshakeError> {
        if response.len() > MAX_HANDSHAKE_LEN || final_out.len() < MAX_HANDSHAKE_LEN {
            return Err(HandshakeError::Size);
        }
        if let Some((peer_id, _)) = self.responder {
            // Cheap before expensive: a response from the wrong peer costs no DH.
            if peer_id != sender {
                return Err(HandshakeError::PeerIdMismatch);
            }
        }
        let state = self.state.as_mut().ok_or(HandshakeError::Finished)?;
        let mut payload = [0u8; MAX_HANDSHAKE_LEN];
        let payload_len = state.read_message(response, &mut payload)?;
        let mut state = self.state.take().ok_or(HandshakeError::Finished)?;
        match self.responder {
            Some((peer_id, ed25519)) => {
                // PROTOCOL.md §5: "other handshake messages have an empty payload".
                if payload_len != 0 {
                    return Err(HandshakeError::Payload);
                }
                Ok(InitiatorDone {
                    established: split(&mut state, self.kind, Role::Initiator, peer_id, ed25519),
                    final_len: 0,
                })
            }
            None => {
                let ed25519 =
                    check_binding(&payload[..payload_len], state.get_remote_static(), sender)?;
                let final_len = state.write_message(&self.binding, final_out)?;
                Ok(InitiatorDone {
                    established: split(&mut state, self.kind, Role::Initiator, sender, ed25519),
                    final_len,
                })
            }
        }
    }
}
