//! A tiny seeded generator (SplitMix64) so a simulated run is exactly reproducible from its seed
//! without a new dependency. Not for cryptography: it only decides the network's fate.

/// SplitMix64: one 64-bit word of state, every seed (zero included) gives a full-period stream.
#[derive(Clone, Debug)]
pub(crate) struct SimRng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function; also a good 64-bit mixer for deriving sub-seeds.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimRng {
    /// A generator whose whole output is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> SimRng {
        SimRng { state: seed }
    }

    /// A generator for one named sub-stream of `seed`, independent of the other sub-streams, so
    /// that drawing on one link does not shift the draws of another.
    pub(crate) fn derive(seed: u64, stream: u64) -> SimRng {
        SimRng::new(mix64(seed ^ mix64(stream.wrapping_add(GOLDEN_GAMMA))))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`. Certain outcomes (`p <= 0`, `p >= 1`) draw nothing, so a
    /// lossless link leaves the stream where it was.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.next_f64() < p
        }
    }

    /// Uniform in `[0, n)`; `n` must not be 0. The multiply-shift bias is below 2^-64 · n,
    /// irrelevant for choosing delays.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SimRng::below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Fills `buf` with random bytes (keys and seeds for simulated nodes).
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
