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
#[derive(Clone, Debug, PartialEq)]
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

/// The same window as [`SlidingWindow`], holding its bitmap only while it needs one (issue 12:
/// an idle peer's replay windows were most of its keys' memory). Inline it keeps the highest
/// number, the 64 numbers below it bit by bit, and one flag for all the older numbers within the
/// span: every one seen, or none. That is exact for packets that arrive in order or reordered
/// by less than 64; the first packet that breaks it (older than 64 and fresh, or a jump that
/// leaves seen and unseen numbers behind) moves the window into a boxed [`SlidingWindow`],
/// which then answers alone. [`compact`](Self::compact), called when the channel idles, folds
/// it back when its older numbers are alike again. The answers are [`SlidingWindow`]'s in
/// every state (its width is a security parameter, PROTOCOL.md §5): only the storage changes.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactWindow<const WORDS: usize> {
    /// The highest number seen; `None` while empty (and while `full` holds the window).
    highest: Option<u64>,
    /// Bit `d`: `highest - d` was seen.
    recent: u64,
    /// Every number at least 64 below `highest` and within the span was seen (true) or none
    /// was (false); either while no such number exists.
    older_seen: bool,
    /// The whole window, while its older numbers are not all alike.
    full: Option<Box<SlidingWindow<WORDS>>>,
}

impl<const WORDS: usize> Default for CompactWindow<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> CompactWindow<WORDS> {
    /// How many numbers behind the highest one the window remembers.
    pub const SPAN: u64 = SlidingWindow::<WORDS>::SPAN;

    /// An empty window.
    pub const fn new() -> Self {
        CompactWindow {
            highest: None,
            recent: 0,
            older_seen: false,
            full: None,
        }
    }

    /// True while the window holds a boxed bitmap.
    pub fn is_expanded(&self) -> bool {
        self.full.is_some()
    }

    /// Classifies `n` without changing the window, as [`SlidingWindow::check`].
    pub fn check(&self, n: u64) -> Seen {
        if let Some(full) = &self.full {
            return full.check(n);
        }
        let Some(highest) = self.highest else {
            return Seen::Fresh;
        };
        if n > highest {
            return Seen::Fresh;
        }
        let back = highest.abs_diff(n);
        if back >= Self::SPAN {
            return Seen::TooOld;
        }
        let seen = match u32::try_from(back) {
            Ok(back) if back < 64 => self.recent.wrapping_shr(back) & 1 == 1,
            _ => self.older_seen,
        };
        if seen { Seen::Duplicate } else { Seen::Fresh }
    }

    /// Records `n`; returns what [`check`](Self::check) would have said before.
    pub fn insert(&mut self, n: u64) -> Seen {
        let seen = self.check(n);
        if seen != Seen::Fresh {
            return seen;
        }
        if let Some(full) = self.full.as_mut() {
            return full.insert(n);
        }
        let Some(highest) = self.highest else {
            self.highest = Some(n);
            self.recent = 1;
            self.older_seen = false;
            return Seen::Fresh;
        };
        if n <= highest {
            // Fresh and within the span: within the recent bits, or an unseen older number,
            // which the flag cannot record alone.
            match u32::try_from(highest.abs_diff(n)) {
                Ok(back) if back < 64 => self.recent |= 1u64.wrapping_shl(back),
                _ => {
                    self.expand().insert(n);
                }
            }
            return Seen::Fresh;
        }
        let advance = n.abs_diff(highest);
        match self.older_after(highest, advance) {
            Some(older_seen) => {
                self.older_seen = older_seen;
                self.recent = match u32::try_from(advance) {
                    Ok(advance) if advance < 64 => self.recent.wrapping_shl(advance),
                    _ => 0,
                } | 1;
                self.highest = Some(n);
            }
            None => {
                self.expand().insert(n);
            }
        }
        Seen::Fresh
    }

    /// What the older numbers' flag becomes when the highest number moves from `highest` up by
    /// `advance`, or None when they would no longer be alike. At most 64 steps, whatever the
    /// numbers.
    fn older_after(&self, highest: u64, advance: u64) -> Option<bool> {
        let (mut seen, mut unseen) = (false, false);
        // Older numbers that stay within the span: the nearest is 64 below `highest`.
        if highest >= 64 && advance < Self::SPAN.saturating_sub(64) {
            seen |= self.older_seen;
            unseen |= !self.older_seen;
        }
        // Numbers never seen between the two that land 64 or more below `n`.
        if advance > 64 && Self::SPAN > 64 {
            unseen = true;
        }
        // Recent bits that leave the recent 64 but stay within the span.
        let first = 64u64.saturating_sub(advance);
        for back in first..64 {
            if back > highest || back.saturating_add(advance) >= Self::SPAN {
                continue;
            }
            let bit = u32::try_from(back).map_or(0, |back| self.recent.wrapping_shr(back) & 1);
            seen |= bit == 1;
            unseen |= bit == 0;
        }
        match (seen, unseen) {
            (true, true) => None,
            (true, false) => Some(true),
            (false, true) => Some(false),
            (false, false) => Some(self.older_seen),
        }
    }

    /// Moves the window into a boxed bitmap that says the same of every number.
    fn expand(&mut self) -> &mut SlidingWindow<WORDS> {
        let (highest, recent, older_seen) = (self.highest, self.recent, self.older_seen);
        self.highest = None;
        self.full.get_or_insert_with(|| {
            let mut full = Box::new(SlidingWindow::new());
            if let Some(highest) = highest {
                // Oldest first, so the bitmap's highest ends at `highest` (always seen).
                let span = Self::SPAN.saturating_sub(1).min(highest);
                for back in (0..=span).rev() {
                    let seen = match u32::try_from(back) {
                        Ok(back) if back < 64 => recent.wrapping_shr(back) & 1 == 1,
                        _ => older_seen,
                    };
                    if seen {
                        full.insert(highest.saturating_sub(back));
                    }
                }
            }
            full
        })
    }

    /// Frees the boxed bitmap when the older numbers are alike again (a channel that idles):
    /// the answers stay the same. At most one pass over the span.
    pub fn compact(&mut self) {
        let Some(full) = self.full.as_deref() else {
            return;
        };
        let Some(highest) = full.highest() else {
            *self = Self::new();
            return;
        };
        let mut recent = 0u64;
        let (mut seen, mut unseen) = (false, false);
        let span = Self::SPAN.saturating_sub(1).min(highest);
        for back in 0..=span {
            let bit = full.check(highest.saturating_sub(back)) == Seen::Duplicate;
            match u32::try_from(back) {
                Ok(back) if back < 64 => recent |= u64::from(bit).wrapping_shl(back),
                _ => {
                    seen |= bit;
                    unseen |= !bit;
                    if seen && unseen {
                        return;
                    }
                }
            }
        }
        *self = CompactWindow {
            highest: Some(highest),
            recent,
            older_seen: seen,
            full: None,
        };
    }

    /// One past the highest number recorded (0 while empty), saturating at `u64::MAX`.
    pub fn top(&self) -> u64 {
        self.highest().map_or(0, |h| h.saturating_add(1))
    }

    /// The highest number recorded.
    pub fn highest(&self) -> Option<u64> {
        match &self.full {
            Some(full) => full.highest(),
            None => self.highest,
        }
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

    /// Runs both windows on the same numbers (near the top, behind it, far ahead, at the
    /// edges of the span), compacting now and then, and compares every answer.
    fn compare_with_sliding<const WORDS: usize>(seed: u64, start: u64) {
        let mut compact = CompactWindow::<WORDS>::new();
        let mut model = SlidingWindow::<WORDS>::new();
        let span = SlidingWindow::<WORDS>::SPAN;
        let mut x = seed;
        let mut expanded = 0;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let top = model.highest().unwrap_or(start);
            let r = x >> 33;
            let n = match r % 16 {
                0 => top.saturating_sub(r % (span + 8)),
                1 => top.saturating_sub(64 + r % 8),
                2 => top.saturating_add(60 + r % 10),
                3 => top.saturating_add(span - 4 + r % 8),
                4 => top.saturating_sub(r % 70),
                _ => top.saturating_add(1 + r % 2),
            };
            assert_eq!(compact.check(n), model.check(n), "check {n} at step {step}");
            assert_eq!(
                compact.insert(n),
                model.insert(n),
                "insert {n} at step {step}"
            );
            expanded += usize::from(compact.is_expanded());
            if step % 97 == 0 {
                compact.compact();
            }
            for back in [0, 1, 63, 64, 65, span - 1, span] {
                let m = top.saturating_sub(back);
                assert_eq!(compact.check(m), model.check(m), "{m} at step {step}");
            }
        }
        if WORDS > 1 {
            assert!(expanded > 0, "the run exercised the boxed form");
        }
    }

    #[test]
    fn the_compact_window_answers_as_the_sliding_window() {
        for seed in 1..6 {
            compare_with_sliding::<32>(seed, 0);
            compare_with_sliding::<2>(seed, 1000);
            compare_with_sliding::<1>(seed, 0);
        }
        compare_with_sliding::<32>(7, u64::MAX - 50_000);
    }

    #[test]
    fn in_order_numbers_keep_the_compact_window_inline() {
        let mut window = CompactWindow::<32>::new();
        for n in 0..10_000 {
            assert_eq!(window.insert(n), Seen::Fresh);
            assert!(!window.is_expanded());
        }
        // Reordered by less than 64: still inline.
        for n in [10_010, 10_005, 10_000, 10_009] {
            assert_eq!(window.insert(n), Seen::Fresh);
        }
        assert!(!window.is_expanded());
        assert_eq!(window.insert(10_005), Seen::Duplicate);
        assert_eq!(window.check(9_000), Seen::Duplicate);
        assert_eq!(window.check(10_010 - 2048), Seen::TooOld);
        // A gap that leaves the recent 64 expands it; once the gap leaves the span and the
        // channel idles, it folds back.
        for n in 10_011..10_200 {
            window.insert(n);
        }
        assert!(window.is_expanded());
        assert_eq!(window.check(10_001), Seen::Fresh);
        for n in 10_200..13_000 {
            window.insert(n);
        }
        window.compact();
        assert!(!window.is_expanded());
        assert_eq!(window.check(12_000), Seen::Duplicate);
        assert_eq!(window.check(13_000), Seen::Fresh);
    }

    #[test]
    fn the_compact_window_at_the_largest_number() {
        let mut window = CompactWindow::<32>::new();
        assert_eq!(window.insert(u64::MAX - 100), Seen::Fresh);
        assert_eq!(window.insert(u64::MAX), Seen::Fresh);
        assert_eq!(window.insert(u64::MAX), Seen::Duplicate);
        assert_eq!(window.check(u64::MAX - 100), Seen::Duplicate);
        assert_eq!(window.check(u64::MAX - 99), Seen::Fresh);
        assert_eq!(window.check(0), Seen::TooOld);
        window.compact();
        assert_eq!(window.check(u64::MAX - 100), Seen::Duplicate);
        assert_eq!(window.highest(), Some(u64::MAX));
    }
}
