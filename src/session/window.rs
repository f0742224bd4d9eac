//! A sliding window of seen numbers: the replay window on packet sequence numbers (PROTOCOL.md
//! §5) and, one layer up, duplicate suppression on message numbers (§7).

/// What the window says about a number.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never seen and inside (or ahead of) the window.
    Fresh,
    /// Already seen.
    Duplicate,
    /// So far behind the newest number that the window no longer remembers it.
    TooOld,
}

/// Remembers the last `64 × WORDS` numbers relative to the highest seen. Fixed size: no
/// allocation, whatever the input.
#[derive(Clone, Debug)]
pub struct SlidingWindow<const WORDS: usize> {
    /// One past the highest number seen; 0 while empty.
    top: u64,
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for SlidingWindow<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> SlidingWindow<WORDS> {
    /// How many numbers behind the highest one the window remembers.
    pub const SPAN: u64 = 64 * WORDS as u64;

    /// An empty window.
    pub const fn new() -> Self {
        SlidingWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }

    fn slot(n: u64) -> (usize, u64) {
        let index = (n % Self::SPAN) as usize;
        (index / 64, 1u64 << (index % 64))
    }

    /// Classifies `n` without changing the window (check before authenticating, insert after).
    pub fn check(&self, n: u64) -> Seen {
        if n >= self.top {
            return Seen::Fresh;
        }
        if self.top - n > Self::SPAN {
            return Seen::TooOld;
        }
        let (word, bit) = Self::slot(n);
        if self.bits[word] & bit != 0 {
            Seen::Duplicate
        } else {
            Seen::Fresh
        }
    }

    /// Records `n`; returns what [`check`](Self::check) would have said before.
    pub fn insert(&mut self, n: u64) -> Seen {
        let seen = self.check(n);
        if seen != Seen::Fresh {
            return seen;
        }
        if n >= self.top {
            let advance = n + 1 - self.top;
            if advance >= Self::SPAN {
                self.bits = [0; WORDS];
            } else {
                // Clear the slots that now fall out of the window, one per number advanced.
                for m in self.top..=n {
                    let (word, bit) = Self::slot(m);
                    self.bits[word] &= !bit;
                }
            }
            self.top = n + 1;
        }
        let (word, bit) = Self::slot(n);
        self.bits[word] |= bit;
        Seen::Fresh
    }

    /// One past the highest number recorded.
    pub fn top(&self) -> u64 {
        self.top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_old_numbers_are_recognised() {
        let mut window = SlidingWindow::<2>::new();
        assert_eq!(window.insert(5), Seen::Fresh);
        assert_eq!(window.insert(5), Seen::Duplicate);
        assert_eq!(window.insert(3), Seen::Fresh);
        assert_eq!(window.insert(200), Seen::Fresh);
        assert_eq!(window.check(3), Seen::TooOld);
        assert_eq!(window.check(199), Seen::Fresh);
        assert_eq!(window.insert(199), Seen::Fresh);
        assert_eq!(window.check(199), Seen::Duplicate);
        assert_eq!(window.check(200 - 127), Seen::Fresh);
    }

    #[test]
    fn matches_a_set_model() {
        use std::collections::BTreeSet;
        let mut window = SlidingWindow::<1>::new();
        let mut model = BTreeSet::new();
        let mut x: u64 = 1;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let top: u64 = model.iter().next_back().map_or(0, |t| t + 1);
            let n = (top + 8).saturating_sub((x >> 33) % 90);
            let expected = if top > n && top - n > 64 {
                Seen::TooOld
            } else if model.contains(&n) {
                Seen::Duplicate
            } else {
                Seen::Fresh
            };
            assert_eq!(window.insert(n), expected, "n = {n}, top = {top}");
            if expected == Seen::Fresh {
                model.insert(n);
            }
        }
    }
}
