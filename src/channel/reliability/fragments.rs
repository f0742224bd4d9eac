//! The byte ranges of one message under reassembly (PROTOCOL.md §7.5). Offsets and lengths come
//! from the peer, so the set is a B-tree keyed by range start: a fragment costs O(log n) whatever
//! the order fragments come in, never a shift of every range held (a vector of ranges made a
//! storm of descending 1-byte fragments cost the square of their count), and the number of
//! ranges one message may hold is a limit the node chooses.

use std::collections::BTreeMap;
use std::ops::Range;

/// Heap bytes one range costs, charged to the reassembly budget: a B-tree leaf of `(u64, u64)`
/// pairs is 192 bytes for 5 to 11 entries, about 40 bytes an entry at its emptiest, plus the
/// internal nodes above it. Rounded up, so the charge is never below the real cost.
pub(crate) const RANGE_COST: usize = 64;

/// Why a fragment was not recorded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct TooManyRanges;

/// Sorted, disjoint, non-adjacent half-open byte ranges of one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FragmentRanges {
    /// Start → end of each range.
    ranges: BTreeMap<u64, u64>,
    /// Bytes covered, kept as ranges come in so that progress never walks the ranges.
    covered: u64,
}

impl FragmentRanges {
    pub(crate) fn new() -> Self {
        FragmentRanges::default()
    }

    /// How many disjoint ranges the set holds.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Bytes covered.
    pub(crate) fn covered(&self) -> u64 {
        self.covered
    }

    /// The range that ends at or after `start` and begins at or before it (it touches a range
    /// starting at `start`), if any.
    fn touching_below(&self, start: u64) -> Option<(u64, u64)> {
        let (&s, &e) = self.ranges.range(..=start).next_back()?;
        (e >= start).then_some((s, e))
    }

    /// The highest range, when `range` starts inside it or right at its end: the in-order
    /// fragment, recorded by growing that range in place (one B-tree step, not a removal and
    /// an insertion).
    fn extends_last(&self, range: &Range<u64>) -> Option<(u64, u64)> {
        let (&s, &e) = self.ranges.last_key_value()?;
        (s <= range.start && range.start <= e).then_some((s, e))
    }

    /// Whether recording `range` would add a range rather than grow or merge existing ones.
    pub(crate) fn adds_range(&self, range: &Range<u64>) -> bool {
        if range.is_empty() {
            return false;
        }
        if self.extends_last(range).is_some() {
            return false;
        }
        self.touching_below(range.start).is_none()
            && self.ranges.range(range.start..=range.end).next().is_none()
    }

    /// Adds `range`, unless it would take the set past `max_ranges` ranges; returns how many of
    /// its bytes were new. O(log n) plus one removal per range it absorbs, each of which was
    /// paid for by the insertion that made it.
    pub(crate) fn insert(
        &mut self,
        range: Range<u64>,
        max_ranges: usize,
    ) -> Result<u64, TooManyRanges> {
        if range.is_empty() {
            return Ok(0);
        }
        if let Some((_, e)) = self.extends_last(&range) {
            // Nothing lies above the highest range: the new bytes are those past its end.
            let new = range.end.saturating_sub(e);
            if let Some(mut last) = self.ranges.last_entry().filter(|_| new > 0) {
                *last.get_mut() = range.end;
                self.covered = self.covered.saturating_add(new);
            }
            return Ok(new);
        }
        if self.adds_range(&range) && self.ranges.len() >= max_ranges {
            return Err(TooManyRanges);
        }
        let mut start = range.start;
        let mut end = range.end;
        let mut overlap: u64 = 0;
        if let Some((s, e)) = self.touching_below(range.start) {
            overlap = overlap.saturating_add(e.min(range.end).saturating_sub(range.start));
            self.ranges.remove(&s);
            start = s;
            end = end.max(e);
        }
        // Ranges starting inside (or right at the end of) the new one merge into it.
        while let Some((&s, &e)) = self.ranges.range(start..=end).next() {
            overlap = overlap.saturating_add(e.min(range.end).saturating_sub(s.max(range.start)));
            self.ranges.remove(&s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
        let new = range
            .end
            .saturating_sub(range.start)
            .saturating_sub(overlap);
        self.covered = self.covered.saturating_add(new);
        Ok(new)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn insert_merges_counts_new_and_refuses_past_the_limit() {
        let mut set = FragmentRanges::new();
        assert_eq!(set.insert(10..20, 2), Ok(10));
        assert_eq!(set.insert(30..40, 2), Ok(10));
        assert_eq!(set.insert(50..60, 2), Err(TooManyRanges));
        assert_eq!(set.insert(20..30, 2), Ok(10), "adjacent ranges merge");
        assert_eq!(set.len(), 1);
        assert_eq!(set.insert(5..45, 2), Ok(10));
        assert_eq!(set.covered(), 40);
        assert_eq!(set.insert(12..14, 2), Ok(0));
    }

    #[test]
    fn matches_a_set_model() {
        let mut set = FragmentRanges::new();
        let mut model = BTreeSet::new();
        let mut x: u64 = 7;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = (x >> 40) % 400;
            let len = (x >> 20) % 12;
            let new = (start..start + len).filter(|n| !model.contains(n)).count() as u64;
            match set.insert(start..start + len, 40) {
                Ok(n) => {
                    assert_eq!(n, new);
                    model.extend(start..start + len);
                }
                Err(TooManyRanges) => assert_eq!(set.len(), 40),
            }
            assert!(set.len() <= 40);
            assert_eq!(set.covered(), model.len() as u64);
        }
    }

    #[test]
    fn in_order_fragments_grow_the_highest_range_in_place() {
        // The fast path: fragments at, inside or overlapping the top of the highest range,
        // with a gap now and then that opens a new one.
        let mut set = FragmentRanges::new();
        let mut model = BTreeSet::new();
        let mut at = 0u64;
        for step in 0..500u64 {
            let len = 1 + step % 9;
            let start = match step % 6 {
                0 => at + 3,
                1 => at.saturating_sub(2),
                2 => at.saturating_sub(len),
                _ => at,
            };
            let new = (start..start + len).filter(|n| !model.contains(n)).count() as u64;
            assert_eq!(set.insert(start..start + len, 1024), Ok(new), "step {step}");
            model.extend(start..start + len);
            at = at.max(start + len);
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for &n in &model {
                match runs.last_mut() {
                    Some(last) if last.1 == n => last.1 = n + 1,
                    _ => runs.push((n, n + 1)),
                }
            }
            let held: Vec<(u64, u64)> = set.ranges.iter().map(|(&s, &e)| (s, e)).collect();
            assert_eq!(held, runs, "step {step}");
            assert_eq!(set.covered(), model.len() as u64);
        }
    }

    #[test]
    fn a_descending_storm_of_one_byte_fragments_stops_at_the_limit() {
        let mut set = FragmentRanges::new();
        let mut refused = 0;
        for i in (0..100_000u64).rev() {
            if set.insert(2 * i..2 * i + 1, 1024).is_err() {
                refused += 1;
            }
        }
        assert_eq!(set.len(), 1024);
        assert_eq!(refused, 100_000 - 1024);
    }
}
