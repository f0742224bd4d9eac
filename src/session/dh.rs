//! The one place where the node performs an X25519 Diffie-Hellman (PROTOCOL.md §5, seed 004:
//! shared secrets are costly). Every DH, including the ones snow performs inside a handshake,
//! runs through [`x25519`], which counts it, so a test can assert that a flood of INITs cost
//! the node no DH at all.
//!
//! snow is handed a [`CountingX25519`] through the session layer's resolver, so the count is exact
//! rather than inferred. For reference, the DHs each handshake message performs (Noise tokens;
//! `e` and `s` alone cost none):
//!
//! | kind | message | tokens | DHs (writer and reader alike) |
//! |---|---|---|---|
//! | 1 IK, 3 IKpsk2 | 1 (INIT) | e, es, s, ss | 2 |
//! | 1 IK, 3 IKpsk2 | 2 (RESPONSE) | e, ee, se (, psk) | 2 |
//! | 2 XX | 1 (INIT) | e | 0 |
//! | 2 XX | 2 (RESPONSE) | e, ee, s, es | 2 |
//! | 2 XX | 3 (FINAL) | s, se | 1 |
//!
//! So a full IK or IKpsk2 handshake costs each side 4 DHs and an XX handshake 3; an IK
//! responder answering an initiator it answered before pays 3, its `ss` being remembered
//! (`handshake/known.rs`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use x25519_dalek::{PublicKey, StaticSecret};

static TOTAL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_THIS_THREAD: Cell<u64> = const { Cell::new(0) };
}

/// How many X25519 DHs this process has performed.
pub fn count() -> u64 {
    TOTAL.load(Ordering::Relaxed)
}

/// How many X25519 DHs the calling thread has performed: exact even while other threads (other
/// tests, other shards) do handshakes of their own, because snow runs on the caller's thread.
pub fn count_on_this_thread() -> u64 {
    ON_THIS_THREAD.with(Cell::get)
}

/// Why a DH produced no usable secret.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the peer's X25519 key is of low order (the shared secret is all zero)")]
pub struct LowOrderPoint;

/// Performs and counts one X25519 DH. A low-order public key, which would make the secret
/// independent of our key, is refused (the DH is still counted: its cost was paid).
pub fn x25519(secret: &StaticSecret, public: &[u8; 32]) -> Result<[u8; 32], LowOrderPoint> {
    TOTAL.fetch_add(1, Ordering::Relaxed);
    ON_THIS_THREAD.with(|c| c.set(c.get().saturating_add(1)));
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if shared.was_contributory() {
        Ok(*shared.as_bytes())
    } else {
        Err(LowOrderPoint)
    }
}

/// What a handshake knows of the node's own static key beforehand (issue 12: the IK responder
/// near its DHs): its public half, so snow's `set` costs no base-point multiplication, and
/// perhaps the static-static secret with one peer's static key from an earlier handshake, which
/// is fixed for the key pair (WireGuard keeps it per peer too). The DH with a peer's static key
/// that is performed is recorded, for the caller to remember.
pub(crate) struct StaticKey {
    secret: [u8; 32],
    public: [u8; 32],
    /// (peer's static key, our shared secret with it).
    known: Option<([u8; 32], [u8; 32])>,
    /// The last DH our static key performed: (their key, the secret).
    performed: Mutex<Option<([u8; 32], [u8; 32])>>,
}

impl StaticKey {
    pub(crate) fn new(
        secret: [u8; 32],
        public: [u8; 32],
        known: Option<([u8; 32], [u8; 32])>,
    ) -> Arc<StaticKey> {
        Arc::new(StaticKey {
            secret,
            public,
            known,
            performed: Mutex::new(None),
        })
    }

    /// Our secret with `their` static key, when this handshake computed or knew it.
    pub(crate) fn secret_with(&self, their: &[u8; 32]) -> Option<[u8; 32]> {
        let performed = *self.performed.lock().ok()?;
        performed
            .into_iter()
            .chain(self.known)
            .find(|(key, _)| key == their)
            .map(|(_, secret)| secret)
    }
}

/// Equality of two secrets in time independent of where they differ.
fn secrets_equal(a: &[u8], b: &[u8; 32]) -> bool {
    a.len() == 32 && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// snow's view of X25519, routed through [`x25519`].
pub(crate) struct CountingX25519 {
    secret: StaticSecret,
    secret_bytes: [u8; 32],
    public: [u8; 32],
    /// The node's static key as known beforehand; `is_static` once `set` was given it.
    hint: Option<Arc<StaticKey>>,
    is_static: bool,
}

impl CountingX25519 {
    /// A key object that recognises the node's static key from `hint`.
    pub(crate) fn with_hint(hint: Option<Arc<StaticKey>>) -> CountingX25519 {
        CountingX25519 {
            hint,
            ..CountingX25519::default()
        }
    }
}

impl Default for CountingX25519 {
    /// An unset key: snow sets or generates one before it reads the public half or uses it, so
    /// no base-point multiplication is spent on a placeholder (two per handshake before).
    fn default() -> Self {
        CountingX25519 {
            secret: StaticSecret::from([0u8; 32]),
            secret_bytes: [0; 32],
            public: [0; 32],
            hint: None,
            is_static: false,
        }
    }
}

impl snow::types::Dh for CountingX25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        let mut bytes = [0u8; 32];
        // snow passes exactly priv_len() bytes; a shorter slice would leave zeros, never panic.
        let n = privkey.len().min(32);
        bytes[..n].copy_from_slice(&privkey[..n]);
        self.secret = StaticSecret::from(bytes);
        self.secret_bytes = self.secret.to_bytes();
        let known = self
            .hint
            .as_ref()
            .filter(|hint| secrets_equal(&hint.secret, &bytes));
        self.is_static = known.is_some();
        self.public = match known {
            Some(hint) => hint.public,
            None => *PublicKey::from(&self.secret).as_bytes(),
        };
    }

    fn generate(&mut self, rng: &mut dyn snow::types::Random) {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        self.set(&bytes);
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.secret_bytes
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow hands over its whole key buffer (MAXDHLEN bytes); the key is its first 32.
        let public: [u8; 32] = pubkey
            .get(..32)
            .and_then(|key| key.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let hint = self.hint.as_ref().filter(|_| self.is_static);
        let known = hint
            .and_then(|hint| hint.known)
            .filter(|(key, _)| *key == public);
        let shared = match known {
            // Computed (and found contributory) by an earlier handshake with this key pair.
            Some((_, shared)) => shared,
            None => {
                let shared = x25519(&self.secret, &public).map_err(|_| snow::Error::Dh)?;
                if let Some(mut performed) = hint.and_then(|hint| hint.performed.lock().ok()) {
                    *performed = Some((public, shared));
                }
                shared
            }
        };
        let out = out.get_mut(..32).ok_or(snow::Error::Dh)?;
        out.copy_from_slice(&shared);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dh_is_counted_on_its_thread_and_globally() {
        let a = StaticSecret::from([1u8; 32]);
        let b = StaticSecret::from([2u8; 32]);
        let before_thread = count_on_this_thread();
        let before_total = count();
        let ab = x25519(&a, PublicKey::from(&b).as_bytes()).unwrap();
        let ba = x25519(&b, PublicKey::from(&a).as_bytes()).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(count_on_this_thread() - before_thread, 2);
        assert!(count() - before_total >= 2);
    }

    #[test]
    fn a_low_order_point_is_refused() {
        let a = StaticSecret::from([1u8; 32]);
        assert_eq!(x25519(&a, &[0u8; 32]), Err(LowOrderPoint));
    }
}
