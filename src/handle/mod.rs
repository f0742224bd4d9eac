//! Handles and hashcodes (PROTOCOL.md §8).
//!
//! A shard keeps its peers, channels, sessions and pending requests in [`Slab`]s: dense vectors
//! of same-sized slots. A [`Handle`] is a slot's index, good for as long as the caller knows the
//! object is alive (within one event, or as a back-pointer the owner clears on removal). A
//! [`Hashcode`] names an object across time: it carries the slot's generation, so one that
//! outlived its object fails with [`SlabError::Stale`] instead of reaching the slot's new tenant.
//! Session indexes in handshakes and RPC request ids are hashcodes; on the wire they travel
//! through an [`IndexCipher`] so they cannot be guessed (PROTOCOL.md §5).
//!
//! # Layout of a hashcode
//!
//! `hashcode = generation << index_bits | index`, where `index_bits` is the fewest bits that
//! hold every index below the slab's limit (at least 1) and the generation takes the other
//! `32 - index_bits`. The trade-off: a generation wraps after `2^(32 - index_bits)` reuses of one
//! slot, and a hashcode that old names the slot's tenant again. Because free slots are reused
//! lowest index first, the low slots see the most reuse, so keep the limit tight: a limit of
//! 2^16 leaves 65 536 reuses of a slot before a wrap, the largest limit, [`MAX_LIMIT`] = 2^24,
//! only 256.

mod cipher;
mod free;
mod fx;
mod slab;

pub use cipher::IndexCipher;
pub use fx::{FxBuildHasher, FxHashMap, FxHashSet, FxHasher};
pub use slab::{Iter, IterMut, MAX_LIMIT, Slab};

use std::fmt;

/// The index of a slot in a [`Slab`]: small, dense, and reused once the slot is freed.
///
/// A handle does not notice that its object was removed and the slot refilled; use a
/// [`Hashcode`] to name an object across time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u32);

/// A 32-bit id of one object in a [`Slab`]: its slot index and that slot's generation.
///
/// The layout is in the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hashcode(pub u32);

impl Hashcode {
    /// The value that stands for this hashcode on the wire under `cipher` (PROTOCOL.md §5).
    pub fn to_wire(self, cipher: &IndexCipher) -> u32 {
        cipher.encrypt(self.0)
    }

    /// The hashcode that `wire` stands for under `cipher`; it still has to be checked against
    /// the slab, since any 32-bit value decrypts to some hashcode.
    pub fn from_wire(wire: u32, cipher: &IndexCipher) -> Self {
        Self(cipher.decrypt(wire))
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Hashcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Why a [`Slab`] refused an insert or a hashcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    /// The slab holds as many objects as its limit allows.
    #[error("slab is full: it holds as many objects as its limit allows")]
    Full,
    /// The hashcode names a slot whose object was removed; the slot is empty or has a new tenant.
    #[error("stale hashcode: the object it named was removed")]
    Stale,
    /// The hashcode names a slot this slab never handed out.
    #[error("hashcode out of range: it names a slot this slab never handed out")]
    OutOfRange,
}

/// A slab limit outside `1..=MAX_LIMIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("slab limit {0} is outside 1..={MAX_LIMIT}")]
pub struct LimitError(pub usize);
