//! A sliding window of seen numbers: the replay window on packet sequence numbers (PROTOCOL.md
//! §5) and, one layer up, duplicate suppression on message numbers (§7).
//!
//! Every number here is chosen by a peer, up to `u64::MAX`: arithmetic on it is checked or
//! saturating (clippy's `arithmetic_side_effects` is denied), and the work one call does is
//! bounded by the window's size, never by the number.
#![deny(clippy::arithmetic_side_effects)]

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
    /// The highest number seen; `None` while empty. (Not "one past" it: `u64::MAX` is a number
    /// a peer may send, and one past it does not exist.)
    highest: Option<u64>,
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
            highest: None,
            bits: [0; WORDS],
        }
    }

    fn slot(n: u64) -> (usize, u64) {
        // `SPAN` is a non-zero multiple of 64, so the remainders below never fail and the index
        // is below `64 × WORDS`.
        let index = n.checked_rem(Self::SPAN).unwrap_or(0);
        let word = usize::try_from(index / 64).unwrap_or(0);
        (word, 1u64 << (index % 64))
    }

    /// Classifies `n` without changing the window (check before authenticating, insert after).
    pub fn check(&self, n: u64) -> Seen {
        let Some(highest) = self.highest else {
            return Seen::Fresh;
        };
        if n > highest {
            return Seen::Fresh;
        }
        // `n <= highest`, so the difference cannot wrap.
        if highest.abs_diff(n) >= Self::SPAN {
            return Seen::TooOld;
        }
        let (word, bit) = Self::slot(n);
        if self.bits.get(word).is_some_and(|w| w & bit != 0) {
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
        match self.highest {
            Some(highest) if n <= highest => {}
            highest => {
                // Numbers `highest + 1 ..= n` enter the window; their slots held numbers that now
                // fall out of it. At most `SPAN` of them: a longer jump clears everything.
                let advance = highest.map_or(u64::MAX, |h| n.abs_diff(h));
                if advance >= Self::SPAN {
                    self.bits = [0; WORDS];
                } else {
                    let mut m = n;
                    for _ in 0..advance {
                        let (word, bit) = Self::slot(m);
                        if let Some(w) = self.bits.get_mut(word) {
                            *w &= !bit;
                        }
                        m = m.wrapping_sub(1);
                    }
                }
                self.highest = Some(n);
            }
        }
        let (word, bit) = Self::slot(n);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
        Seen::Fresh
    }

    /// One past the highest number recorded (0 while empty), saturating at `u64::MAX`.
    pub fn top(&self) -> u64 {
        self.highest.map_or(0, |h| h.saturating_add(1))
    }

    /// The highest number recorded.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_number_neither_wraps_nor_spins() {
        let mut window = SlidingWindow::<16>::new();
        assert_eq!(window.insert(u64::MAX), Seen::Fresh);
        assert_eq!(window.insert(u64::MAX), Seen::Duplicate);
        assert_eq!(window.check(u64::MAX - 1), Seen::Fresh);
        assert_eq!(window.check(0), Seen::TooOld);
        assert_eq!(window.top(), u64::MAX);
        let mut window = SlidingWindow::<1>::new();
        assert_eq!(window.insert(u64::MAX - 10), Seen::Fresh);
        assert_eq!(window.insert(u64::MAX), Seen::Fresh);
        assert_eq!(window.check(u64::MAX - 10), Seen::Duplicate);
        assert_eq!(window.check(u64::MAX - 64), Seen::TooOld);
    }

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
