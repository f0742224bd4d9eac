//! The set of free slots of a slab, as a four-level bitmap that finds the lowest in O(1).

/// Bits per word at every level.
const WORD: usize = 64;

/// Free slot indexes below `len`, where `len` is at most `64^4 = 2^24`.
///
/// `levels[0]` has one bit per slot; a bit of `levels[k + 1]` (or of `top`) is set when the word of
/// `levels[k]` below it is not zero. Finding, setting and clearing touch one word per level, so
/// every operation is four word operations, and the lowest free slot is found by following the
/// lowest set bit down from `top` (PROTOCOL.md §8: freed slots are reused lowest index first).
#[derive(Debug, Default)]
pub(super) struct FreeSet {
    levels: [Vec<u64>; 3],
    top: u64,
}

/// The number of words that hold `bits` bits.
fn words(bits: usize) -> usize {
    bits.div_ceil(WORD)
}

impl FreeSet {
    /// An empty set with room for `slots` indexes before any allocation.
    pub(super) fn with_capacity(slots: usize) -> Self {
        let mut set = Self::default();
        set.reserve(slots);
        set
    }

    /// Makes room for indexes below `slots` without touching the allocator later.
    pub(super) fn reserve(&mut self, slots: usize) {
        let mut bits = slots;
        for level in &mut self.levels {
            bits = words(bits);
            level.reserve(bits.saturating_sub(level.len()));
        }
    }

    /// Lets the set hold indexes below `slots`; the new ones start occupied.
    pub(super) fn grow(&mut self, slots: usize) {
        let mut bits = slots;
        for level in &mut self.levels {
            bits = words(bits);
            if level.len() < bits {
                level.resize(bits, 0);
            }
        }
    }

    /// Marks slot `index` free. It must be below the length given to [`grow`](Self::grow).
    pub(super) fn insert(&mut self, index: u32) {
        let mut i = index as usize;
        for level in &mut self.levels {
            let word = &mut level[i / WORD];
            let was = *word;
            *word = was | 1 << (i % WORD);
            if was != 0 {
                // The levels above already know this word has a free slot.
                return;
            }
            i /= WORD;
        }
        self.top |= 1 << i;
    }

    /// Marks slot `index` occupied. It must be below the length given to [`grow`](Self::grow).
    pub(super) fn remove(&mut self, index: u32) {
        let mut i = index as usize;
        for level in &mut self.levels {
            let word = &mut level[i / WORD];
            *word &= !(1 << (i % WORD));
            if *word != 0 {
                return;
            }
            i /= WORD;
        }
        self.top &= !(1 << i);
    }

    /// The lowest free slot, if any.
    pub(super) fn first(&self) -> Option<u32> {
        if self.top == 0 {
            return None;
        }
        let mut i = self.top.trailing_zeros() as usize;
        for level in self.levels.iter().rev() {
            i = i * WORD + level[i].trailing_zeros() as usize;
        }
        // At most 2^24 slots, so the index fits.
        u32::try_from(i).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_set_has_no_first() {
        let mut set = FreeSet::with_capacity(1000);
        set.grow(1000);
        assert_eq!(set.first(), None);
    }

    #[test]
    fn first_is_the_lowest_across_words_and_levels() {
        let slots = 64 * 64 * 64 + 5;
        let mut set = FreeSet::default();
        set.grow(slots);
        let far = (slots - 1) as u32;
        set.insert(far);
        assert_eq!(set.first(), Some(far));
        set.insert(4097);
        set.insert(70);
        assert_eq!(set.first(), Some(70));
        set.insert(3);
        assert_eq!(set.first(), Some(3));
        set.remove(3);
        assert_eq!(set.first(), Some(70));
        set.remove(70);
        assert_eq!(set.first(), Some(4097));
        set.remove(4097);
        assert_eq!(set.first(), Some(far));
        set.remove(far);
        assert_eq!(set.first(), None);
    }

    #[test]
    fn neighbours_in_one_word_keep_the_summary_bit() {
        let mut set = FreeSet::default();
        set.grow(128);
        set.insert(65);
        set.insert(66);
        set.remove(65);
        // The word still has slot 66 free, so the summary must still point at it.
        assert_eq!(set.first(), Some(66));
    }

    #[test]
    fn the_largest_index_fits() {
        let mut set = FreeSet::default();
        set.grow(1 << 24);
        set.insert((1 << 24) - 1);
        assert_eq!(set.first(), Some((1 << 24) - 1));
    }

    #[test]
    fn grow_within_reserve_does_not_reallocate() {
        let mut set = FreeSet::with_capacity(100_000);
        let before: Vec<*const u64> = set.levels.iter().map(|l| l.as_ptr()).collect();
        set.grow(100_000);
        let after: Vec<*const u64> = set.levels.iter().map(|l| l.as_ptr()).collect();
        assert_eq!(before, after);
    }
}
