//! A fast hasher for maps keyed by ids this node made (handles, its own channel halves): one
//! multiply and rotate per word, the scheme of rustc's FxHash. It is not keyed, so a key a peer
//! picks could be chosen to collide; such maps take std's per-process seeded `RandomState`
//! instead (STYLE.md 16).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The multiplier of FxHash (from the golden ratio): spreads low-entropy ids over the word.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// FxHash: cheap, deterministic, for keys the node chose.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Builds [`FxHasher`]s; every map using it hashes alike (no per-process seed).
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A map keyed by ids this node made.
pub type FxHashMap<K, V> = HashMap<K, V, FxBuildHasher>;

/// A set of ids this node made.
pub type FxHashSet<K> = HashSet<K, FxBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn equal_keys_hash_alike_and_neighbours_apart() {
        let build = FxBuildHasher::default();
        assert_eq!(build.hash_one(7u32), build.hash_one(7u32));
        assert_ne!(build.hash_one(7u32), build.hash_one(8u32));
        assert_ne!(build.hash_one([1u8; 9]), build.hash_one([1u8; 8]));
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map: FxHashMap<u16, u32> = FxHashMap::default();
        for key in 0..1000u16 {
            map.insert(key, u32::from(key) * 2);
        }
        assert!((0..1000u16).all(|key| map.get(&key) == Some(&(u32::from(key) * 2))));
        assert_eq!(map.get(&1000), None);
    }
}
