//! A keyed permutation of 32-bit ids, so session indexes on the wire cannot be guessed
//! (PROTOCOL.md §5, cheap before expensive).

use std::fmt;

/// Context string of the key derivation, so this key is never the same as any other made from
/// the same secret.
const CONTEXT: &[u8] = b"weft v1 session index permutation";

/// Feistel rounds. Four rounds of a pseudo-random function already make a strong pseudo-random
/// permutation in theory, but over 16-bit halves that bound only holds for a few hundred
/// queries; eight rounds (as FF3-1 uses) push the generic attacks far beyond what a peer can
/// observe of its own session indexes, at the cost of eight short SipHash calls per id (ids are
/// converted once per handshake or RPC, not per data packet).
const ROUNDS: u32 = 8;

/// A keyed bijection on `u32`: a balanced Feistel network over two 16-bit halves.
///
/// The hashcodes a slab hands out are predictable (lowest slot, next generation); what travels
/// on the wire is `encrypt(hashcode)`, which a peer cannot predict without the secret, and
/// `decrypt` gives the hashcode back. Ids stay local to the node that made them, so the secret
/// never leaves it; the caller draws it from its own random source at start-up.
#[derive(Clone)]
pub struct IndexCipher {
    /// SipHash-2-4 key of the round function.
    k0: u64,
    k1: u64,
}

impl IndexCipher {
    /// A permutation keyed by `secret`.
    pub fn new(secret: &[u8; 32]) -> Self {
        // okm = BLAKE3 keyed_hash(secret, CONTEXT); the round function's key is okm[0..16].
        let okm = blake3::keyed_hash(secret, CONTEXT);
        let okm = okm.as_bytes();
        let mut k0 = [0; 8];
        let mut k1 = [0; 8];
        k0.copy_from_slice(&okm[..8]);
        k1.copy_from_slice(&okm[8..16]);
        Self {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    /// The image of `x`.
    pub fn encrypt(&self, x: u32) -> u32 {
        let (mut left, mut right) = ((x >> 16) as u16, x as u16);
        for round in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(round, right));
        }
        u32::from(left) << 16 | u32::from(right)
    }

    /// The `x` whose image is `y`: the inverse of [`encrypt`](Self::encrypt).
    pub fn decrypt(&self, y: u32) -> u32 {
        let (mut left, mut right) = ((y >> 16) as u16, y as u16);
        for round in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(round, left), left);
        }
        u32::from(left) << 16 | u32::from(right)
    }

    /// The round function: a keyed PRF of the round number and one half.
    fn round(&self, round: u32, half: u16) -> u16 {
        // The round number in the message makes every round a different function.
        let message = u64::from(round) << 16 | u64::from(half);
        siphash24(self.k0, self.k1, message) as u16
    }
}

impl fmt::Debug for IndexCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("IndexCipher").finish_non_exhaustive()
    }
}

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of the 8-byte message `message.to_le_bytes()`.
fn siphash24(k0: u64, k1: u64, message: u64) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    // One full message block, two compression rounds.
    v[3] ^= message;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= message;
    // The final block holds only the message length (8) in its top byte.
    let last = 8u64 << 56;
    v[3] ^= last;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= last;
    // Four finalisation rounds.
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vector() {
        // SipHash-2-4 paper, appendix A: key 00..0f, message 00..07 (the vectors.h row for
        // an 8-byte message).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(siphash24(k0, k1, m), 0x93f5_f579_9a93_2462);
    }

    #[test]
    #[allow(deprecated)]
    fn siphash_matches_std_on_other_inputs() {
        use std::hash::{Hasher, SipHasher};
        for (k0, k1, m) in [(1, 2, 3), (u64::MAX, 0, 0x1234_5678), (7, 7, u64::MAX)] {
            let mut std = SipHasher::new_with_keys(k0, k1);
            std.write(&u64::to_le_bytes(m));
            assert_eq!(siphash24(k0, k1, m), std.finish());
        }
    }

    #[test]
    fn decrypt_inverts_encrypt() {
        let c = IndexCipher::new(&[9; 32]);
        for x in [0, 1, 0xffff, 0x1_0000, 0xdead_beef, u32::MAX] {
            assert_eq!(c.decrypt(c.encrypt(x)), x);
            assert_eq!(c.encrypt(c.decrypt(x)), x);
        }
    }

    #[test]
    fn a_block_of_inputs_maps_to_distinct_outputs() {
        let c = IndexCipher::new(&[3; 32]);
        let mut out: Vec<u32> = (0..1 << 16).map(|x| c.encrypt(x)).collect();
        out.sort_unstable();
        out.dedup();
        assert_eq!(out.len(), 1 << 16);
    }

    #[test]
    fn consecutive_ids_do_not_stay_consecutive() {
        let c = IndexCipher::new(&[5; 32]);
        let near = (0..1000u32)
            .filter(|&x| c.encrypt(x + 1).abs_diff(c.encrypt(x)) < 1 << 16)
            .count();
        // A random permutation puts a successor that close about 1000 / 32768 times.
        assert!(near < 10, "{near} of 1000 successors stayed near");
    }

    #[test]
    fn the_secret_changes_the_permutation() {
        let a = IndexCipher::new(&[1; 32]);
        let b = IndexCipher::new(&[2; 32]);
        let same = (0..1000).filter(|&x| a.encrypt(x) == b.encrypt(x)).count();
        assert!(same < 3, "{same} of 1000 images agree");
    }

    #[test]
    fn the_key_derivation_is_pinned() {
        // Pins CONTEXT and the derivation: a change here reorders every wire index.
        let c = IndexCipher::new(&[0; 32]);
        let okm = blake3::keyed_hash(&[0; 32], b"weft v1 session index permutation");
        assert_eq!(c.k0.to_le_bytes(), okm.as_bytes()[..8]);
        assert_eq!(c.k1.to_le_bytes(), okm.as_bytes()[8..16]);
    }

    #[test]
    fn debug_hides_the_key() {
        let c = IndexCipher::new(&[0; 32]);
        let shown = format!("{c:?}");
        assert!(!shown.contains(&c.k0.to_string()));
        assert_eq!(shown, "IndexCipher { .. }");
    }
}
