//! The slab: a dense vector of slots, each with a generation.

use std::iter::{Enumerate, FusedIterator};
use std::slice;

use super::free::FreeSet;
use super::{Handle, Hashcode, LimitError, SlabError};

/// The largest limit a [`Slab`] takes: 2^24 slots, which leaves 8 bits of generation.
pub const MAX_LIMIT: usize = 1 << 24;

/// Slots added at once when a slab outgrows its capacity and nothing was reserved.
const MIN_GROWTH: usize = 4;

#[derive(Debug)]
struct Slot<T> {
    /// The generation of the slot's current (or, when empty, next) tenant.
    generation: u32,
    value: Option<T>,
}

/// A shard-local store of same-sized objects named by [`Handle`] and [`Hashcode`]
/// (PROTOCOL.md §8).
///
/// Inserting reuses the lowest free slot, so the slab stays dense; it refuses with
/// [`SlabError::Full`] at its limit rather than growing without bound. Nothing allocates once
/// [`capacity`](Self::capacity) covers the live objects, and no id, however bad, makes a method
/// panic.
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: FreeSet,
    len: usize,
    limit: usize,
    index_bits: u32,
}

impl<T> Slab<T> {
    /// An empty slab that holds at most `limit` objects and allocates as it fills.
    pub fn new(limit: usize) -> Result<Self, LimitError> {
        Self::with_capacity(0, limit)
    }

    /// An empty slab that holds at most `limit` objects, with room for `capacity` of them
    /// allocated up front (`capacity` above `limit` counts as `limit`).
    pub fn with_capacity(capacity: usize, limit: usize) -> Result<Self, LimitError> {
        if limit == 0 || limit > MAX_LIMIT {
            return Err(LimitError(limit));
        }
        let capacity = capacity.min(limit);
        // The fewest bits that hold every index below the limit; the generation gets the rest.
        let index_bits = (usize::BITS - (limit - 1).leading_zeros()).max(1);
        Ok(Self {
            slots: Vec::with_capacity(capacity),
            free: FreeSet::with_capacity(capacity),
            len: 0,
            limit,
            index_bits,
        })
    }

    /// Stores `value` in the lowest free slot and returns the slot's handle and the object's
    /// hashcode; at the limit the value is dropped and the answer is [`SlabError::Full`].
    pub fn insert(&mut self, value: T) -> Result<(Handle, Hashcode), SlabError> {
        if self.len >= self.limit {
            return Err(SlabError::Full);
        }
        // PROTOCOL.md §8: freed slots are reused lowest index first, so the slab stays dense.
        let index = match self.free.first() {
            Some(index) => {
                self.free.remove(index);
                self.slots[index as usize].value = Some(value);
                index
            }
            None => {
                // Every slot is taken and there are fewer than the limit: append one.
                let index = self.slots.len();
                if index == self.slots.capacity() {
                    // Grow by an eighth, never past the limit: a table of many large slots
                    // (connections, sessions) then holds at most 12.5 % empty room where
                    // doubling held up to half (issue 12). Still geometric, so inserts stay
                    // amortised O(1); a large block grows in place (mremap), not by copying.
                    let more = (index / 8).max(MIN_GROWTH).min(self.limit - index);
                    self.slots.reserve_exact(more);
                    self.free.reserve(index + more);
                }
                self.slots.push(Slot {
                    generation: 0,
                    value: Some(value),
                });
                self.free.grow(self.slots.len());
                // Below the limit, which is at most 2^24.
                index as u32
            }
        };
        self.len += 1;
        let generation = self.slots[index as usize].generation;
        Ok((Handle(index), self.hashcode_of(index, generation)))
    }

    /// The object in slot `handle`, if the slot is occupied.
    pub fn get(&self, handle: Handle) -> Option<&T> {
        self.slots.get(handle.0 as usize)?.value.as_ref()
    }

    /// The object in slot `handle`, mutably, if the slot is occupied.
    pub fn get_mut(&mut self, handle: Handle) -> Option<&mut T> {
        self.slots.get_mut(handle.0 as usize)?.value.as_mut()
    }

    /// Whether slot `handle` is occupied.
    pub fn contains(&self, handle: Handle) -> bool {
        self.get(handle).is_some()
    }

    /// Takes the object out of slot `handle`; every hashcode of it turns stale.
    pub fn remove(&mut self, handle: Handle) -> Option<T> {
        let mask = self.generation_mask();
        let slot = self.slots.get_mut(handle.0 as usize)?;
        let value = slot.value.take()?;
        // PROTOCOL.md §8: the generation moves on, so a hashcode of the removed object fails
        // as Stale instead of reaching the next tenant (until the generation wraps).
        slot.generation = slot.generation.wrapping_add(1) & mask;
        self.free.insert(handle.0);
        self.len -= 1;
        Some(value)
    }

    /// The hashcode of the object now in slot `handle`, if the slot is occupied.
    pub fn hashcode(&self, handle: Handle) -> Option<Hashcode> {
        let slot = self.slots.get(handle.0 as usize)?;
        slot.value
            .as_ref()
            .map(|_| self.hashcode_of(handle.0, slot.generation))
    }

    /// The handle of the object that `code` names, if it is still there.
    pub fn resolve(&self, code: Hashcode) -> Result<Handle, SlabError> {
        let (index, generation) = self.split(code);
        let slot = self
            .slots
            .get(index as usize)
            .ok_or(SlabError::OutOfRange)?;
        match slot.value {
            Some(_) if slot.generation == generation => Ok(Handle(index)),
            _ => Err(SlabError::Stale),
        }
    }

    /// The object that `code` names.
    pub fn get_by_code(&self, code: Hashcode) -> Result<&T, SlabError> {
        let (index, generation) = self.split(code);
        let slot = self
            .slots
            .get(index as usize)
            .ok_or(SlabError::OutOfRange)?;
        match &slot.value {
            Some(value) if slot.generation == generation => Ok(value),
            _ => Err(SlabError::Stale),
        }
    }

    /// The object that `code` names, mutably.
    pub fn get_mut_by_code(&mut self, code: Hashcode) -> Result<&mut T, SlabError> {
        let (index, generation) = self.split(code);
        let slot = self
            .slots
            .get_mut(index as usize)
            .ok_or(SlabError::OutOfRange)?;
        match &mut slot.value {
            Some(value) if slot.generation == generation => Ok(value),
            _ => Err(SlabError::Stale),
        }
    }

    /// Takes out the object that `code` names; its hashcodes turn stale.
    pub fn remove_by_code(&mut self, code: Hashcode) -> Result<T, SlabError> {
        let handle = self.resolve(code)?;
        self.remove(handle).ok_or(SlabError::Stale)
    }

    /// The number of objects in the slab.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slab holds no object.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether an insert would be refused with [`SlabError::Full`].
    pub fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// The number of objects the slab holds before it next allocates (never above the limit).
    pub fn capacity(&self) -> usize {
        self.slots.capacity().min(self.limit)
    }

    /// The most objects the slab holds at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many low bits of a hashcode hold the slot index; the generation has the rest.
    pub fn index_bits(&self) -> u32 {
        self.index_bits
    }

    /// The objects with their handles, lowest handle first.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            slots: self.slots.iter().enumerate(),
            left: self.len,
        }
    }

    /// The objects, mutably, with their handles, lowest handle first.
    pub fn iter_mut(&mut self) -> IterMut<'_, T> {
        IterMut {
            slots: self.slots.iter_mut().enumerate(),
            left: self.len,
        }
    }

    fn generation_mask(&self) -> u32 {
        u32::MAX >> self.index_bits
    }

    fn hashcode_of(&self, index: u32, generation: u32) -> Hashcode {
        Hashcode(generation << self.index_bits | index)
    }

    fn split(&self, code: Hashcode) -> (u32, u32) {
        let index_mask = (1 << self.index_bits) - 1;
        (code.0 & index_mask, code.0 >> self.index_bits)
    }
}

impl<'a, T> IntoIterator for &'a Slab<T> {
    type Item = (Handle, &'a T);
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Slab<T> {
    type Item = (Handle, &'a mut T);
    type IntoIter = IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// The objects of a [`Slab`] with their handles; see [`Slab::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    slots: Enumerate<slice::Iter<'a, Slot<T>>>,
    left: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (Handle, &'a T);

    fn next(&mut self) -> Option<Self::Item> {
        // Stop at the last object rather than walk the free slots behind it.
        if self.left == 0 {
            return None;
        }
        let (index, value) = self
            .slots
            .find_map(|(i, slot)| Some((i, slot.value.as_ref()?)))?;
        self.left -= 1;
        Some((Handle(index as u32), value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}
impl<T> FusedIterator for Iter<'_, T> {}

/// The objects of a [`Slab`], mutably, with their handles; see [`Slab::iter_mut`].
#[derive(Debug)]
pub struct IterMut<'a, T> {
    slots: Enumerate<slice::IterMut<'a, Slot<T>>>,
    left: usize,
}

impl<'a, T> Iterator for IterMut<'a, T> {
    type Item = (Handle, &'a mut T);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let (index, value) = self
            .slots
            .find_map(|(i, slot)| Some((i, slot.value.as_mut()?)))?;
        self.left -= 1;
        Some((Handle(index as u32), value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for IterMut<'_, T> {}
impl<T> FusedIterator for IterMut<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn slab(limit: usize) -> Slab<&'static str> {
        Slab::new(limit).expect("limit in range")
    }

    mod construction {
        use super::*;

        #[test]
        fn limits_outside_the_range_are_refused() {
            assert_eq!(Slab::<u8>::new(0).unwrap_err(), LimitError(0));
            assert_eq!(
                Slab::<u8>::new(MAX_LIMIT + 1).unwrap_err(),
                LimitError(MAX_LIMIT + 1)
            );
            assert!(Slab::<u8>::new(MAX_LIMIT).is_ok());
        }

        #[test]
        fn index_bits_are_the_fewest_that_hold_the_limit() {
            let bits = |limit| slab(limit).index_bits();
            assert_eq!(bits(1), 1);
            assert_eq!(bits(2), 1);
            assert_eq!(bits(3), 2);
            assert_eq!(bits(1 << 16), 16);
            assert_eq!(bits((1 << 16) + 1), 17);
            assert_eq!(bits(MAX_LIMIT), 24);
        }

        #[test]
        fn capacity_is_reserved_but_capped_by_the_limit() {
            let s: Slab<u64> = Slab::with_capacity(1000, 10).unwrap();
            assert_eq!(s.capacity(), 10);
            let s: Slab<u64> = Slab::with_capacity(1000, 5000).unwrap();
            assert!(s.capacity() >= 1000);
            assert!(s.is_empty());
        }
    }

    mod filling {
        use super::*;

        #[test]
        fn inserts_take_consecutive_slots() {
            let mut s = slab(8);
            let (a, _) = s.insert("a").unwrap();
            let (b, _) = s.insert("b").unwrap();
            assert_eq!((a, b), (Handle(0), Handle(1)));
            assert_eq!(s.get(a), Some(&"a"));
            assert_eq!(s.len(), 2);
        }

        #[test]
        fn the_lowest_free_slot_is_reused_first() {
            let mut s = slab(8);
            for v in ["0", "1", "2", "3", "4"] {
                s.insert(v).unwrap();
            }
            s.remove(Handle(3)).unwrap();
            s.remove(Handle(1)).unwrap();
            s.remove(Handle(4)).unwrap();
            assert_eq!(s.insert("x").unwrap().0, Handle(1));
            assert_eq!(s.insert("y").unwrap().0, Handle(3));
            assert_eq!(s.insert("z").unwrap().0, Handle(4));
            assert_eq!(s.insert("w").unwrap().0, Handle(5));
        }

        #[test]
        fn full_at_the_limit_and_free_again_after_a_remove() {
            let mut s = slab(3);
            for v in ["a", "b", "c"] {
                s.insert(v).unwrap();
            }
            assert!(s.is_full());
            assert_eq!(s.insert("d"), Err(SlabError::Full));
            assert_eq!(s.len(), 3);
            s.remove(Handle(1)).unwrap();
            assert_eq!(s.insert("e").unwrap().0, Handle(1));
        }

        #[test]
        fn growth_stops_at_the_limit() {
            let mut s: Slab<u32> = Slab::new(100).unwrap();
            for v in 0..100 {
                s.insert(v).unwrap();
            }
            assert_eq!(s.capacity(), 100);
            assert_eq!(s.slots.capacity(), 100);
        }

        #[test]
        fn no_allocation_within_the_reserved_capacity() {
            let mut s: Slab<u32> = Slab::with_capacity(1000, 4000).unwrap();
            let before = s.slots.as_ptr();
            for v in 0..1000 {
                s.insert(v).unwrap();
            }
            for h in (0..1000).step_by(3) {
                s.remove(Handle(h)).unwrap();
            }
            while s.len() < 1000 {
                s.insert(7).unwrap();
            }
            assert_eq!(s.slots.as_ptr(), before);
        }
    }

    mod hashcodes {
        use super::*;

        #[test]
        fn a_hashcode_reaches_its_object() {
            let mut s = slab(8);
            let (h, code) = s.insert("a").unwrap();
            assert_eq!(s.get_by_code(code), Ok(&"a"));
            assert_eq!(s.resolve(code), Ok(h));
            assert_eq!(s.hashcode(h), Some(code));
            *s.get_mut_by_code(code).unwrap() = "b";
            assert_eq!(s.get(h), Some(&"b"));
        }

        #[test]
        fn a_hashcode_is_generation_above_index() {
            let mut s = slab(16);
            s.insert("a").unwrap();
            let (h, first) = s.insert("b").unwrap();
            assert_eq!(first, Hashcode(1));
            s.remove(h).unwrap();
            let (_, second) = s.insert("c").unwrap();
            assert_eq!(second, Hashcode(1 << 4 | 1));
        }

        #[test]
        fn a_stale_hashcode_never_reaches_the_new_tenant() {
            let mut s = slab(8);
            let (h, old) = s.insert("old").unwrap();
            assert_eq!(s.remove_by_code(old), Ok("old"));
            assert_eq!(s.get_by_code(old), Err(SlabError::Stale));
            let (h2, new) = s.insert("new").unwrap();
            assert_eq!(h2, h);
            assert_ne!(new, old);
            assert_eq!(s.get_by_code(old), Err(SlabError::Stale));
            assert_eq!(s.get_mut_by_code(old), Err(SlabError::Stale));
            assert_eq!(s.remove_by_code(old), Err(SlabError::Stale));
            assert_eq!(s.resolve(old), Err(SlabError::Stale));
            assert_eq!(s.get_by_code(new), Ok(&"new"));
        }

        #[test]
        fn a_hashcode_beyond_the_slots_is_out_of_range() {
            let mut s = slab(8);
            s.insert("a").unwrap();
            assert_eq!(s.get_by_code(Hashcode(1)), Err(SlabError::OutOfRange));
            assert_eq!(s.get_by_code(Hashcode(7)), Err(SlabError::OutOfRange));
            assert_eq!(s.remove_by_code(Hashcode(5)), Err(SlabError::OutOfRange));
        }

        #[test]
        fn a_removed_object_by_handle_leaves_its_hashcode_stale() {
            let mut s = slab(8);
            let (h, code) = s.insert("a").unwrap();
            s.remove(h).unwrap();
            assert_eq!(s.get_by_code(code), Err(SlabError::Stale));
            assert_eq!(s.hashcode(h), None);
        }

        #[test]
        fn the_generation_wraps_after_two_to_the_generation_bits_reuses() {
            // The documented trade-off: 2^24 slots leave 8 bits, so the 256th reuse of a slot
            // brings an old hashcode back to life.
            let mut s: Slab<u32> = Slab::new(MAX_LIMIT).unwrap();
            let (h, first) = s.insert(0).unwrap();
            for reuse in 1..256 {
                s.remove(h).unwrap();
                let (_, code) = s.insert(reuse).unwrap();
                assert_ne!(code, first);
                assert_eq!(s.get_by_code(first), Err(SlabError::Stale));
            }
            s.remove(h).unwrap();
            let (_, code) = s.insert(256).unwrap();
            assert_eq!(code, first);
        }

        #[test]
        fn arbitrary_ids_never_panic() {
            let mut s = slab(5);
            s.insert("a").unwrap();
            for id in [0, 1, 2, 7, 8, 1 << 20, u32::MAX - 1, u32::MAX] {
                let _ = s.get(Handle(id));
                let _ = s.get_mut(Handle(id));
                let _ = s.hashcode(Handle(id));
                let _ = s.get_by_code(Hashcode(id));
                let _ = s.get_mut_by_code(Hashcode(id));
                let _ = s.resolve(Hashcode(id));
            }
            assert_eq!(s.remove(Handle(u32::MAX)), None);
            assert_eq!(
                s.remove_by_code(Hashcode(u32::MAX)),
                Err(SlabError::OutOfRange)
            );
            assert_eq!(s.len(), 1);
        }
    }

    mod iteration {
        use super::*;

        #[test]
        fn iter_yields_live_objects_in_handle_order() {
            let mut s = slab(8);
            for v in ["a", "b", "c", "d"] {
                s.insert(v).unwrap();
            }
            s.remove(Handle(1)).unwrap();
            s.remove(Handle(3)).unwrap();
            let seen: Vec<_> = s.iter().collect();
            assert_eq!(seen, [(Handle(0), &"a"), (Handle(2), &"c")]);
            assert_eq!(s.iter().len(), 2);
        }

        #[test]
        fn iter_mut_changes_every_object() {
            let mut s: Slab<u32> = Slab::new(8).unwrap();
            for v in 0..4 {
                s.insert(v).unwrap();
            }
            s.remove(Handle(0)).unwrap();
            for (_, v) in &mut s {
                *v += 10;
            }
            let seen: Vec<_> = s.iter().map(|(h, v)| (h.0, *v)).collect();
            assert_eq!(seen, [(1, 11), (2, 12), (3, 13)]);
        }
    }
}
