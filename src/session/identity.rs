//! A node's long-term keys (PROTOCOL.md §2): an Ed25519 identity and an X25519 static key.

use crate::wire::PeerId;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};

/// A node's identity key pair and its static key-exchange key pair.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    x25519: StaticSecret,
    peer_id: PeerId,
}

/// The peer id that belongs to an Ed25519 public key: BLAKE3(pk)[..16] (PROTOCOL.md §2).
pub fn peer_id_of(ed25519_public: &[u8; 32]) -> PeerId {
    let digest = blake3::hash(ed25519_public);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.as_bytes()[..16]);
    PeerId(id)
}

impl Identity {
    /// Draws fresh keys from a cryptographic RNG (the caller owns the randomness, STYLE.md 1).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Identity {
        let mut ed = [0u8; 32];
        let mut x = [0u8; 32];
        rng.fill_bytes(&mut ed);
        rng.fill_bytes(&mut x);
        Identity::from_secret_bytes(ed, x)
    }

    /// Rebuilds an identity from the two 32-byte secrets stored in the data directory.
    pub fn from_secret_bytes(ed25519_secret: [u8; 32], x25519_secret: [u8; 32]) -> Identity {
        let signing = SigningKey::from_bytes(&ed25519_secret);
        let peer_id = peer_id_of(signing.verifying_key().as_bytes());
        Identity {
            signing,
            x25519: StaticSecret::from(x25519_secret),
            peer_id,
        }
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The Ed25519 public key.
    pub fn ed25519_public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The X25519 static public key.
    pub fn x25519_public(&self) -> PublicKey {
        PublicKey::from(&self.x25519)
    }

    /// The Ed25519 secret, for writing to the data directory.
    pub fn ed25519_secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The X25519 secret, for writing to the data directory.
    pub fn x25519_secret_bytes(&self) -> [u8; 32] {
        self.x25519.to_bytes()
    }

    /// The signing key, for the session layer's handshake payloads.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The X25519 static secret, for the session layer's key exchange.
    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, even in debug logs.
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_round_trip_through_their_bytes() {
        let original = Identity::generate(&mut rand::rngs::OsRng);
        let restored = Identity::from_secret_bytes(
            original.ed25519_secret_bytes(),
            original.x25519_secret_bytes(),
        );
        assert_eq!(original.peer_id(), restored.peer_id());
        assert_eq!(original.x25519_public(), restored.x25519_public());
    }

    #[test]
    fn peer_id_is_the_blake3_prefix_of_the_public_key() {
        let identity = Identity::from_secret_bytes([7; 32], [9; 32]);
        let expected = blake3::hash(identity.ed25519_public().as_bytes());
        assert_eq!(identity.peer_id().0[..], expected.as_bytes()[..16]);
    }
}
