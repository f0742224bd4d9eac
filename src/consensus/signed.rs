//! Signed bodies: every vote, proposal, sighting and reply is Ed25519-signed by a member over
//! a domain tag, the network id and the body's canonical msgpack, so no signature is valid in
//! another network or as another kind of message.

use super::ids::{MemberKey, NetworkId};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// An Ed25519 signature.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "super::bin")] pub [u8; 64]);

/// A body and its signer's signature; who signed is named inside the body.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Signed<T> {
    /// What was signed.
    pub body: T,
    /// The signature over [`signing_bytes`] of the body.
    pub signature: Signature,
}

/// A body that names its signer and the kind of message it is.
pub trait Signable: Serialize {
    /// Domain tag: one per kind of body.
    const DOMAIN: &'static str;
    /// The member that signs it.
    fn signer(&self) -> MemberKey;
}

/// The bytes a signature covers: the domain tag, the network id and the canonical body.
pub fn signing_bytes<T: Signable>(network: &NetworkId, body: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.extend_from_slice(T::DOMAIN.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&network.0);
    // Serializing our own well-formed value into a Vec cannot fail.
    let encoded = rmp_serde::to_vec(body).unwrap_or_default();
    bytes.extend_from_slice(&encoded);
    bytes
}

/// Signs `body` with `key`; the caller makes sure the body names `key` as its signer.
pub fn sign<T: Signable>(key: &SigningKey, network: &NetworkId, body: T) -> Signed<T> {
    let signature = Signature(key.sign(&signing_bytes(network, &body)).to_bytes());
    Signed { body, signature }
}

/// Decompressed signer keys kept per thread, at most: signers are the cluster's members (at
/// most [`super::MAX_MEMBERS`] per list), and decompressing a key is about a third of a
/// verification (the profile in docs/PERFORMANCE.md). A key a peer names that is not cached
/// costs one decompression, as before; past the bound the cache starts over.
const MAX_CACHED_KEYS: usize = 64;

thread_local! {
    static KEYS: std::cell::RefCell<Vec<([u8; 32], VerifyingKey)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The decompressed key of `bytes`, from the cache when it was seen before on this thread.
fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some((_, key)) = keys.iter().find(|(held, _)| held == bytes) {
            return Some(*key);
        }
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.push((*bytes, key));
        Some(key)
    })
}

impl<T: Signable> Signed<T> {
    /// True when the body's signer signed it for `network` (strict Ed25519: no malleable
    /// signatures, no small-order keys).
    pub fn verify(&self, network: &NetworkId) -> bool {
        let Some(key) = verifying_key(&self.body.signer().0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&signing_bytes(network, &self.body), &signature)
            .is_ok()
    }
}

/// The member key of a signing key.
pub fn member_key(key: &SigningKey) -> MemberKey {
    MemberKey(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::schema::Sighting;

    /// The key cache changes no verdict: a cached signer's forged or altered signature is still
    /// refused, and a key that does not decompress is refused every time.
    #[test]
    fn cached_keys_verify_as_fresh_ones() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let network = NetworkId([1; 32]);
        let body = Sighting {
            digest: crate::consensus::ids::RequestDigest([2; 32]),
            source: "192.0.2.1:1".parse().unwrap(),
            member: member_key(&key),
        };
        let signed = sign(&key, &network, body.clone());
        assert!(signed.verify(&network));
        assert!(signed.verify(&network), "again, from the cache");
        assert!(!signed.verify(&NetworkId([3; 32])));
        let mut forged = signed.clone();
        forged.signature.0[0] ^= 1;
        assert!(!forged.verify(&network));
        // Not a point on the curve: y = 2 has no x.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        let mut unknown = signed;
        unknown.body.member = MemberKey(bad);
        assert!(!unknown.verify(&network));
        assert!(!unknown.verify(&network));
    }
}
