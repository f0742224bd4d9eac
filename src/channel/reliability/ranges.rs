//! A small set of half-open `u64` ranges, kept sorted and merged: packet numbers received, byte
//! ranges of a message still to send or acknowledged. A vector: inserting shifts what lies
//! above, so it holds only sets the node keeps small (its own chunks, a bounded count of
//! received packet ranges); reassembly of a peer's fragments uses `fragments.rs` instead.

use std::ops::Range;

/// Sorted, disjoint, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    pub(crate) fn new() -> Self {
        RangeSet { ranges: Vec::new() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many disjoint ranges the set holds.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    pub(crate) fn clear(&mut self) {
        self.ranges.clear();
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.ranges.shrink_to_fit();
    }

    /// Adds `range`; returns how many of its numbers were new.
    pub(crate) fn insert(&mut self, range: Range<u64>) -> u64 {
        if range.is_empty() {
            return 0;
        }
        if self.ranges.capacity() == 0 {
            // Most sets hold one range (an idle channel's received packets): room for one.
            self.ranges.reserve_exact(1);
        }
        // The common cases, without a search or a splice: the next packet number received, the
        // next chunk acknowledged, the next fragment's bytes. A range at or past the end of the
        // highest one extends it or goes after it.
        match self.ranges.last_mut() {
            None => {
                self.ranges.push(range.clone());
                return range.end.saturating_sub(range.start);
            }
            Some(last) if range.start > last.end => {
                self.ranges.push(range.clone());
                return range.end.saturating_sub(range.start);
            }
            Some(last) if range.start >= last.start => {
                let covered = last.end.min(range.end).saturating_sub(range.start);
                last.end = last.end.max(range.end);
                return range
                    .end
                    .saturating_sub(range.start)
                    .saturating_sub(covered);
            }
            Some(_) => {}
        }
        // First range that ends at or after `range.start` (it may touch or overlap).
        let first = self.ranges.partition_point(|r| r.end < range.start);
        let mut start = range.start;
        let mut end = range.end;
        let mut last = first;
        let mut covered: u64 = 0;
        while let Some(r) = self.ranges.get(last).filter(|r| r.start <= end) {
            covered = covered.saturating_add(
                r.end
                    .min(range.end)
                    .saturating_sub(r.start.max(range.start)),
            );
            start = start.min(r.start);
            end = end.max(r.end);
            last = last.saturating_add(1);
        }
        self.ranges.splice(first..last, std::iter::once(start..end));
        range
            .end
            .saturating_sub(range.start)
            .saturating_sub(covered)
    }

    /// Removes `range`.
    pub(crate) fn remove(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let first = self.ranges.partition_point(|r| r.end <= range.start);
        // The common case, in place: the range cuts into one held range and leaves at most
        // one side of it (the next chunk sent off the front of a message's unsent bytes).
        let next_clear = self
            .ranges
            .get(first.saturating_add(1))
            .is_none_or(|next| next.start >= range.end);
        if let Some(r) = self
            .ranges
            .get_mut(first)
            .filter(|r| next_clear && r.start < range.end)
        {
            let head = r.start..range.start;
            let tail = range.end..r.end;
            match (head.is_empty(), tail.is_empty()) {
                (true, true) => {
                    self.ranges.remove(first);
                }
                (true, false) => *r = tail,
                (false, true) => *r = head,
                (false, false) => {
                    *r = head;
                    self.ranges.insert(first.saturating_add(1), tail);
                }
            }
            return;
        }
        let mut last = first;
        while self.ranges.get(last).is_some_and(|r| r.start < range.end) {
            last = last.saturating_add(1);
        }
        let (Some(low), Some(high)) = (
            self.ranges.get(first),
            last.checked_sub(1).and_then(|i| self.ranges.get(i)),
        ) else {
            return;
        };
        if first == last {
            return;
        }
        let head = low.start..range.start;
        let tail = range.end..high.end;
        let keep = [head, tail].into_iter().filter(|r| !r.is_empty());
        self.ranges.splice(first..last, keep);
    }

    /// Whether every number of `range` is in the set.
    pub(crate) fn contains_range(&self, range: &Range<u64>) -> bool {
        if range.is_empty() {
            return true;
        }
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        self.ranges
            .get(i)
            .is_some_and(|r| r.start <= range.start && r.end >= range.end)
    }

    /// Whether `n` is in the set.
    pub(crate) fn contains(&self, n: u64) -> bool {
        n.checked_add(1)
            .is_some_and(|end| self.contains_range(&(n..end)))
    }

    /// The lowest range.
    pub(crate) fn first(&self) -> Option<Range<u64>> {
        self.ranges.first().cloned()
    }

    /// Drops the lowest range.
    pub(crate) fn pop_first(&mut self) -> Option<Range<u64>> {
        if self.ranges.is_empty() {
            None
        } else {
            Some(self.ranges.remove(0))
        }
    }

    /// Ranges from highest to lowest.
    pub(crate) fn iter_rev(&self) -> impl Iterator<Item = Range<u64>> + Clone + '_ {
        self.ranges.iter().rev().cloned()
    }

    /// Ranges from lowest to highest.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().cloned()
    }

    /// How many numbers the set holds.
    pub(crate) fn count(&self) -> u64 {
        self.ranges.iter().fold(0u64, |sum, r| {
            sum.saturating_add(r.end.saturating_sub(r.start))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn insert_merges_and_counts_new() {
        let mut set = RangeSet::new();
        assert_eq!(set.insert(10..20), 10);
        assert_eq!(set.insert(30..40), 10);
        assert_eq!(set.insert(15..35), 10);
        assert_eq!(set.len(), 1);
        assert_eq!(set.first(), Some(10..40));
        assert_eq!(set.insert(40..41), 1, "adjacent ranges merge");
        assert_eq!(set.len(), 1);
        set.remove(20..25);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![10..20, 25..41]);
        assert!(set.contains_range(&(25..41)));
        assert!(!set.contains_range(&(19..26)));
        assert!(!set.contains(22));
    }

    #[test]
    fn matches_a_set_model() {
        let mut set = RangeSet::new();
        let mut model = BTreeSet::new();
        let mut x: u64 = 7;
        for _ in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = (x >> 40) % 200;
            let len = (x >> 20) % 12;
            if (x >> 10).is_multiple_of(3) {
                set.remove(start..start + len);
                for n in start..start + len {
                    model.remove(&n);
                }
            } else {
                let new = (start..start + len).filter(|n| !model.contains(n)).count() as u64;
                assert_eq!(set.insert(start..start + len), new);
                model.extend(start..start + len);
            }
            assert_eq!(set.count(), model.len() as u64);
            for n in start.saturating_sub(2)..start + len + 2 {
                assert_eq!(set.contains(n), model.contains(&n));
            }
            assert_eq!(set.iter().collect::<Vec<_>>(), runs(&model));
        }
    }

    /// The model's numbers as sorted, disjoint, non-adjacent ranges: the one form a set holds.
    fn runs(model: &BTreeSet<u64>) -> Vec<Range<u64>> {
        let mut runs: Vec<Range<u64>> = Vec::new();
        for &n in model {
            match runs.last_mut() {
                Some(last) if last.end == n => last.end = n.saturating_add(1),
                _ => runs.push(n..n.saturating_add(1)),
            }
        }
        runs
    }

    #[test]
    fn in_order_inserts_and_front_removals_keep_the_canonical_form() {
        // The fast paths: packet numbers and chunks in order, with gaps, duplicates and
        // overlaps at the top; bytes sent off the front, the middle and the back.
        let mut set = RangeSet::new();
        let mut model = BTreeSet::new();
        let mut at = 0u64;
        for step in 0..400u64 {
            let len = 1 + step % 5;
            let start = match step % 7 {
                0 => at + 2,
                1 => at.saturating_sub(3),
                _ => at,
            };
            let new = (start..start + len).filter(|n| !model.contains(n)).count() as u64;
            assert_eq!(set.insert(start..start + len), new, "step {step}");
            model.extend(start..start + len);
            at = at.max(start + len);
            if step % 3 == 0 {
                let first = set.first().expect("not empty");
                let cut = first.start + step % 4..first.start + step % 4 + 2;
                set.remove(cut.clone());
                for n in cut {
                    model.remove(&n);
                }
            }
            assert_eq!(set.iter().collect::<Vec<_>>(), runs(&model), "step {step}");
        }
    }
}
