//! Deadlines keyed by slot, updated in place: the router's, one per connection (keyed by its
//! slab slot), and each connection's, one per channel with data state (keyed by its place in
//! the connection's turn order).
//!
//! An indexed binary min-heap: each slot's position is kept, so moving a connection's deadline
//! earlier or later, or taking it out, fixes the heap where the entry stands instead of pushing
//! another one and leaving the old one to expire. The heap thus holds at most one entry per
//! connection and never grows in steady state (a heap with lazy deletion grows by the stale
//! entries it carries, and its doublings are allocations on the packet path). Its memory is
//! two vectors, as long as the connection table's high-water mark, made during warm-up.

use std::time::Instant;

/// Next deadlines by slot.
#[derive(Debug, Default)]
pub(crate) struct DeadlineHeap {
    /// (deadline, slot), a min-heap on the deadline.
    heap: Vec<(Instant, u32)>,
    /// Slot → its position in `heap`, plus one (0: the slot has no deadline).
    positions: Vec<u32>,
}

impl DeadlineHeap {
    /// The earliest deadline and its slot.
    pub(crate) fn peek(&self) -> Option<(Instant, u32)> {
        self.heap.first().copied()
    }

    /// Slots with a deadline.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The deadline of `slot`, if it has one.
    pub(crate) fn get(&self, slot: u32) -> Option<Instant> {
        let at = self.position(slot)?;
        self.heap.get(at).map(|&(deadline, _)| deadline)
    }

    /// Gives the memory back when no slot has a deadline (a quiet connection's channels):
    /// the next deadline makes it again, once per quiet spell, not per packet.
    pub(crate) fn release_if_empty(&mut self) {
        if self.heap.is_empty() {
            self.heap = Vec::new();
            self.positions = Vec::new();
        }
    }

    /// Takes every deadline out, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.positions.fill(0);
    }

    /// Sets the deadline of `slot` (None takes it out), in place.
    pub(crate) fn set(&mut self, slot: u32, deadline: Option<Instant>) {
        match (self.position(slot), deadline) {
            (None, None) => {}
            (Some(at), None) => self.remove_at(at),
            (Some(at), Some(deadline)) => {
                if let Some(entry) = self.heap.get_mut(at) {
                    entry.0 = deadline;
                }
                let at = self.sift_up(at);
                self.sift_down(at);
            }
            (None, Some(deadline)) => {
                let Ok(index) = usize::try_from(slot) else {
                    return;
                };
                if self.positions.len() <= index {
                    if self.positions.is_empty() {
                        // A connection's heap mostly holds one channel: the first room made
                        // is exact, not the four entries a growing vector starts with.
                        self.positions.reserve_exact(index.saturating_add(1));
                    }
                    self.positions.resize(index.saturating_add(1), 0);
                }
                if self.heap.is_empty() && self.heap.capacity() == 0 {
                    self.heap.reserve_exact(1);
                }
                let at = self.heap.len();
                self.heap.push((deadline, slot));
                self.place(at);
                self.sift_up(at);
            }
        }
    }

    fn position(&self, slot: u32) -> Option<usize> {
        let stored = *self.positions.get(usize::try_from(slot).ok()?)?;
        usize::try_from(stored.checked_sub(1)?).ok()
    }

    /// Records where the entry at `at` stands.
    fn place(&mut self, at: usize) {
        let Some(&(_, slot)) = self.heap.get(at) else {
            return;
        };
        let stored = u32::try_from(at.saturating_add(1)).unwrap_or(u32::MAX);
        if let Some(position) = usize::try_from(slot)
            .ok()
            .and_then(|index| self.positions.get_mut(index))
        {
            *position = stored;
        }
    }

    fn remove_at(&mut self, at: usize) {
        let Some(last) = self.heap.len().checked_sub(1) else {
            return;
        };
        self.heap.swap(at, last);
        if let Some((_, slot)) = self.heap.pop()
            && let Some(position) = usize::try_from(slot)
                .ok()
                .and_then(|index| self.positions.get_mut(index))
        {
            *position = 0;
        }
        if at < self.heap.len() {
            self.place(at);
            let at = self.sift_up(at);
            self.sift_down(at);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.place(a);
        self.place(b);
    }

    fn deadline(&self, at: usize) -> Option<Instant> {
        self.heap.get(at).map(|&(deadline, _)| deadline)
    }

    /// Moves the entry at `at` up while it is earlier than its parent; returns where it ends.
    fn sift_up(&mut self, mut at: usize) -> usize {
        while let Some(parent) = at.checked_sub(1).map(|i| i / 2) {
            if self.deadline(at) >= self.deadline(parent) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
        at
    }

    /// Moves the entry at `at` down while a child is earlier; returns where it ends.
    fn sift_down(&mut self, mut at: usize) -> usize {
        loop {
            let left = at.saturating_mul(2).saturating_add(1);
            let right = left.saturating_add(1);
            let mut earliest = at;
            for child in [left, right] {
                if child < self.heap.len() && self.deadline(child) < self.deadline(earliest) {
                    earliest = child;
                }
            }
            if earliest == at {
                return at;
            }
            self.swap(at, earliest);
            at = earliest;
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn moving_a_deadline_keeps_one_entry_per_slot() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut heap = DeadlineHeap::default();
        heap.set(3, Some(at(30)));
        heap.set(1, Some(at(10)));
        heap.set(2, Some(at(20)));
        assert_eq!(heap.peek(), Some((at(10), 1)));
        // Later, then earlier again: still three entries, in order.
        heap.set(1, Some(at(40)));
        assert_eq!(heap.peek(), Some((at(20), 2)));
        heap.set(3, Some(at(5)));
        assert_eq!(heap.peek(), Some((at(5), 3)));
        assert_eq!(heap.len(), 3);
        heap.set(3, None);
        heap.set(3, None);
        assert_eq!(heap.len(), 2);
        assert_eq!(heap.get(1), Some(at(40)));
        assert_eq!(heap.get(3), None);
        assert_eq!(heap.peek(), Some((at(20), 2)));
    }

    #[test]
    fn rearming_in_steady_state_allocates_no_more_room() {
        let t0 = Instant::now();
        let mut heap = DeadlineHeap::default();
        for slot in 0..64u32 {
            heap.set(slot, Some(t0 + Duration::from_millis(u64::from(slot))));
        }
        let capacity = (heap.heap.capacity(), heap.positions.capacity());
        // Each connection's deadline moves many times, as on the data path.
        for round in 0..10_000u64 {
            let slot = (round % 64) as u32;
            heap.set(slot, Some(t0 + Duration::from_millis(round * 7 % 1_000)));
        }
        assert_eq!(heap.len(), 64);
        assert_eq!((heap.heap.capacity(), heap.positions.capacity()), capacity);
    }

    proptest! {
        #[test]
        fn the_heap_agrees_with_a_map(ops in proptest::collection::vec((0u32..32, proptest::option::of(0u64..1_000)), 0..300)) {
            let t0 = Instant::now();
            let mut heap = DeadlineHeap::default();
            let mut model: BTreeMap<u32, Instant> = BTreeMap::new();
            for (slot, ms) in ops {
                let deadline = ms.map(|ms| t0 + Duration::from_millis(ms));
                heap.set(slot, deadline);
                match deadline {
                    Some(d) => { model.insert(slot, d); }
                    None => { model.remove(&slot); }
                }
                prop_assert_eq!(heap.len(), model.len());
                let earliest = model.values().min().copied();
                prop_assert_eq!(heap.peek().map(|(d, _)| d), earliest);
                if let Some((d, slot)) = heap.peek() {
                    prop_assert_eq!(model.get(&slot), Some(&d));
                }
                for (&slot, &d) in &model {
                    prop_assert_eq!(heap.get(slot), Some(d));
                }
            }
        }
    }
}
