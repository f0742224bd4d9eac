//! The responder's side of the three handshake kinds (PROTOCOL.md §5): the INIT it answers, with
//! the identity and replay checks before its own DHs, and for XX the pending state until FINAL.

use super::known::KnownInitiator;
use super::{
    BINDING_LEN, Established, HandshakeError, HandshakeIdentity, HandshakeKind, MAX_HANDSHAKE_LEN,
    PSK_LEN, PSK_LOCATION, Role, TIMESTAMP_LEN, Tai64N, TimestampTable, check_binding, split,
};
use crate::session::dh::StaticKey;
use crate::session::identity::peer_id_of;
use crate::session::noise;
use crate::wire::PeerId;
use rand::{CryptoRng, RngCore};
use std::fmt;

/// What a responder produced from a HANDSHAKE_INIT.
#[derive(Debug)]
pub enum Response {
    /// Kinds 1 and 3: send `len` bytes as HANDSHAKE_RESPONSE; the session is established.
    Complete {
        /// Length of the HANDSHAKE_RESPONSE bytes in the caller's buffer.
        len: usize,
        /// The session's secrets and peer.
        established: Established,
    },
    /// Kind 2: send `len` bytes as HANDSHAKE_RESPONSE and keep `pending` for HANDSHAKE_FINAL.
    Pending {
        /// Length of the HANDSHAKE_RESPONSE bytes in the caller's buffer.
        len: usize,
        /// The state to hold until the FINAL arrives (capped by the caller, PROTOCOL.md §5).
        pending: PendingResponder,
    },
}

/// An XX responder between its message 2 and the initiator's message 3.
pub struct PendingResponder {
    // Boxed: a pending state is held per XX initiator, and keeping it small keeps `Response` small.
    state: Box<snow::HandshakeState>,
}

impl fmt::Debug for PendingResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingResponder").finish_non_exhaustive()
    }
}

impl PendingResponder {
    /// Reads the HANDSHAKE_FINAL from `sender` and completes the session. On an AEAD failure the
    /// state is kept (snow rolls back) so the caller may wait for the genuine FINAL.
    pub fn read_final(
        &mut self,
        sender: PeerId,
        message: &[u8],
    ) -> Result<Established, HandshakeError> {
        if message.len() > MAX_HANDSHAKE_LEN {
            return Err(HandshakeError::Size);
        }
        if self.state.is_handshake_finished() {
            return Err(HandshakeError::Finished);
        }
        let mut payload = [0u8; MAX_HANDSHAKE_LEN];
        let len = self.state.read_message(message, &mut payload)?;
        let ed25519 = check_binding(&payload[..len], self.state.get_remote_static(), sender)?;
        Ok(split(
            &mut self.state,
            HandshakeKind::UnknownResponder,
            Role::Responder,
            sender,
            ed25519,
        ))
    }
}

/// Answers a HANDSHAKE_INIT of `kind` whose packet names `sender`, writing the HANDSHAKE_RESPONSE
/// bytes into `out` (at least [`MAX_HANDSHAKE_LEN`]). mac1 and the cookie are checked before
/// this is called (`super::mac`); `psk_for` names the pre-shared key of a kind-3 initiator.
#[allow(clippy::too_many_arguments)]
pub fn respond<R: RngCore + CryptoRng>(
    local: &HandshakeIdentity,
    kind: HandshakeKind,
    sender: PeerId,
    init: &[u8],
    timestamps: &mut TimestampTable,
    psk_for: impl FnOnce(PeerId) -> Option<[u8; PSK_LEN]>,
    rng: &mut R,
    out: &mut [u8],
) -> Result<Response, HandshakeError> {
    if init.len() > MAX_HANDSHAKE_LEN || out.len() < MAX_HANDSHAKE_LEN {
        return Err(HandshakeError::Size);
    }
    let known = if kind.is_ik() {
        local.known.get(sender)
    } else {
        None
    };
    let hint = StaticKey::new(
        local.x25519_secret,
        local.x25519_public,
        known.map(|k| (k.x25519, k.static_secret)),
    );
    let mut state = noise::builder_with(kind.params(), rng, Some(hint.clone()))
        .local_private_key(&local.x25519_secret)
        .build_responder()?;
    let mut payload = [0u8; MAX_HANDSHAKE_LEN];
    let payload_len = state.read_message(init, &mut payload)?;
    let payload = &payload[..payload_len];
    if !kind.is_ik() {
        // XX message 1 is `e` alone: no static key, so an empty payload.
        if !payload.is_empty() {
            return Err(HandshakeError::Payload);
        }
        let len = state.write_message(&local.binding, out)?;
        return Ok(Response::Pending {
            len,
            pending: PendingResponder {
                state: Box::new(state),
            },
        });
    }
    if payload.len() != BINDING_LEN + TIMESTAMP_LEN {
        return Err(HandshakeError::Payload);
    }
    let mut timestamp = Tai64N([0; TIMESTAMP_LEN]);
    timestamp.0.copy_from_slice(&payload[BINDING_LEN..]);
    // Cheap before expensive: the peer id and the replay table cost no DH or signature check.
    let claimed = payload.get(..32).ok_or(HandshakeError::Payload)?;
    if peer_id_of(claimed.try_into().map_err(|_| HandshakeError::Payload)?) != sender {
        return Err(HandshakeError::PeerIdMismatch);
    }
    let mut ed25519 = [0u8; 32];
    ed25519.copy_from_slice(claimed);
    // PROTOCOL.md §5: a timestamp not greater than the last accepted for this key is a replay.
    if !timestamps.is_fresh(&ed25519, timestamp) {
        return Err(HandshakeError::Replay);
    }
    let remote = state
        .get_remote_static()
        .and_then(|key| <[u8; 32]>::try_from(key.get(..32)?).ok())
        .ok_or(HandshakeError::Payload)?;
    let signature = payload
        .get(32..BINDING_LEN)
        .ok_or(HandshakeError::Payload)?;
    // The peer id matched the key above; the signature is checked unless these exact bytes
    // verified before.
    if !known.is_some_and(|k| k.vouches_for(&ed25519, &remote, signature)) {
        check_binding(&payload[..BINDING_LEN], Some(&remote), sender)?;
    }
    if kind == HandshakeKind::PreSharedKey {
        // PROTOCOL.md §5: an IKpsk2 responder sets the PSK after reading message 1, once it
        // knows who the initiator is.
        let psk = psk_for(sender).ok_or(HandshakeError::UnknownPsk)?;
        state.set_psk(PSK_LOCATION, &psk)?;
    }
    let len = state.write_message(&[], out)?;
    timestamps.accept(&ed25519, timestamp);
    if let Some(static_secret) = hint.secret_with(&remote) {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(signature);
        local.known.insert(KnownInitiator {
            peer: sender,
            ed25519,
            x25519: remote,
            signature: sig,
            static_secret,
        });
    }
    Ok(Response::Complete {
        len,
        established: split(&mut state, kind, Role::Responder, sender, ed25519),
    })
}
