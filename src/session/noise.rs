//! The crypto snow is given (PROTOCOL.md §5): X25519 through the counted [`super::dh`], AES-GCM
//! from ring, BLAKE2s from snow's own default resolver, and randomness drawn from the caller's
//! RNG (STYLE.md 1: protocol logic never reads OS randomness itself).

use super::dh::{CountingX25519, StaticKey};
use rand::{CryptoRng, RngCore, SeedableRng, rngs::StdRng};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use std::sync::Arc;

/// The prologue every handshake mixes in (PROTOCOL.md §5).
pub(crate) const PROLOGUE: &[u8] = b"weft v1";

/// A seeded CSPRNG for the ephemeral keys of one handshake.
struct HandshakeRng(StdRng);

impl RngCore for HandshakeRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for HandshakeRng {}
impl Random for HandshakeRng {}

/// The resolver of one handshake: it hands snow a fresh RNG seeded by the caller.
struct WeftResolver {
    seed: [u8; 32],
    /// The node's static key as known beforehand, handed to every key object snow makes.
    hint: Option<Arc<StaticKey>>,
}

impl CryptoResolver for WeftResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(HandshakeRng(StdRng::from_seed(self.seed))))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(CountingX25519::with_hint(self.hint.clone()))),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        // PROTOCOL.md §5: ring's AES-GCM is several times faster than RustCrypto's here.
        RingResolver.resolve_cipher(choice)
    }
}

/// A snow builder for `pattern` with weft's prologue and resolver, seeded from `rng`.
pub(crate) fn builder<'a, R: RngCore + CryptoRng>(
    params: NoiseParams,
    rng: &mut R,
) -> snow::Builder<'a> {
    builder_with(params, rng, None)
}

/// [`builder`] whose key objects know the node's static key (`hint`) beforehand.
pub(crate) fn builder_with<'a, R: RngCore + CryptoRng>(
    params: NoiseParams,
    rng: &mut R,
    hint: Option<Arc<StaticKey>>,
) -> snow::Builder<'a> {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    snow::Builder::with_resolver(params, Box::new(WeftResolver { seed, hint })).prologue(PROLOGUE)
}
