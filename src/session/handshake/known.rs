//! What an IK responder remembers of initiators it completed handshakes with (issue 12: the
//! responder near its DHs): the binding it verified and the static-static secret, both fixed for
//! the key pair, so a peer's next handshake costs neither the Ed25519 verification nor the `ss`
//! DH. Only exact bytes that verified before are taken as verified again, and the secret is used
//! only with the very static key it was computed with, so nothing is weakened.
//!
//! A fixed table of slots chosen by the peer id: its memory is the node's, whatever peers do.
//! An attacker with identities of its own can only evict entries, and an evicted peer pays
//! today's full price once.

use crate::wire::PeerId;
use std::sync::{Arc, Mutex};

/// Slots in the table (each 177 bytes: about 11 KB, made at the first IK answered).
const SLOTS: usize = 64;

/// One initiator's verified binding and our static-static secret with it.
#[derive(Copy, Clone)]
pub(super) struct KnownInitiator {
    pub(super) peer: PeerId,
    pub(super) ed25519: [u8; 32],
    pub(super) x25519: [u8; 32],
    pub(super) signature: [u8; 64],
    pub(super) static_secret: [u8; 32],
}

impl KnownInitiator {
    /// True when `ed25519`, `x25519` and `signature` are exactly what verified before.
    pub(super) fn vouches_for(&self, ed25519: &[u8], x25519: &[u8], signature: &[u8]) -> bool {
        self.ed25519 == ed25519 && self.x25519 == x25519 && self.signature == signature
    }
}

/// The table; clones of a handshake identity share it (they share the secret key too).
#[derive(Clone, Default)]
pub(super) struct KnownInitiators(Arc<Mutex<Vec<Option<KnownInitiator>>>>);

impl KnownInitiators {
    fn slot(peer: PeerId) -> usize {
        usize::from(peer.0[0]) % SLOTS
    }

    /// The entry for `peer`, if its slot holds it.
    pub(super) fn get(&self, peer: PeerId) -> Option<KnownInitiator> {
        let table = self.0.lock().ok()?;
        table
            .get(Self::slot(peer))
            .copied()
            .flatten()
            .filter(|known| known.peer == peer)
    }

    /// Files `known` in its peer's slot, replacing whoever held it.
    pub(super) fn insert(&self, known: KnownInitiator) {
        let Ok(mut table) = self.0.lock() else {
            return;
        };
        if table.is_empty() {
            table.resize(SLOTS, None);
        }
        if let Some(slot) = table.get_mut(Self::slot(known.peer)) {
            *slot = Some(known);
        }
    }
}
