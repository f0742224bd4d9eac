//! The epoll backend's receive memory, lent to the workers (issue 11 point 2): a message that
//! fits one datagram reaches the worker in the slab the kernel wrote it into, with no copy, and
//! the memory the workers can pin that way is bounded.
//!
//! Each `recvmmsg` slot receives into its own [`BytesMut`] slab (a whole UDP payload, so a GRO
//! train fits). A slot the backend lends from is cut into datagrams with `split_to` (pieces of
//! the same allocation, no copy), which the endpoint opens in place, freezes, and cuts whole
//! DATA messages from (`channel/payload.rs`). Before the next `recvmmsg`, each slot's slab is
//! taken back in place with `try_reclaim` (no allocation) once every piece cut from it is
//! dropped; a slab a piece still pins goes to the pinned list, checked each turn, and a spare
//! slab takes its place.
//!
//! **The bound.** At most `spare_receive_slabs` spares exist beside the batch's slots (made on
//! first need, then reused): each slab is about 64 KiB, so the default of 64 costs up to 4 MiB
//! per shard besides the batch's 2 MiB. A turn lends from at most as many slots as there are
//! slabs left to replace them (a spare free, or one not yet made); the other slots are copied
//! out of as before (the endpoint's `handle`, into pooled buffers), so their slabs are free
//! again at once. So memory stays bounded whatever the workers keep, nothing allocates per
//! packet in steady state, and lending resumes as soon as the workers let go. The workers'
//! count of held buffers (`max_worker_buffers`) counts a lent piece like a pooled buffer, and
//! past it the credit rule holds reliable senders back (PROTOCOL.md §12).
//!
//! Why the endpoint freezes the datagram instead of carving `BytesMut` pieces out of it: the
//! walk reads the messages as slices borrowed from the opened datagram, so nothing can split
//! it mutably until the walk is over; a frozen `Bytes` shares its memory with those slices and
//! cuts a message out with `slice_ref` while they are read.

use bytes::BytesMut;

/// Receive slabs of one batch, with their bounded spares.
pub(crate) struct Slabs {
    /// One slab per `recvmmsg` slot.
    active: Vec<BytesMut>,
    /// Slabs a lent piece still pins, waiting to be taken back.
    pinned: Vec<BytesMut>,
    /// Slabs free to stand in for a pinned one.
    spare: Vec<BytesMut>,
    /// Spares made so far, at most `spares`.
    made: usize,
    spares: usize,
    /// Bytes a slab is made with (more than `room`, see `sys.rs`).
    capacity: usize,
    /// Slots that may still lend this turn.
    budget: usize,
}

impl Slabs {
    /// `slots` slabs of `capacity` bytes (at least `room`, one whole datagram or GRO train),
    /// and up to `spares` more made as pinned slabs need replacing (0: never lend).
    pub(crate) fn new(slots: usize, room: usize, capacity: usize, spares: usize) -> Slabs {
        Slabs {
            active: (0..slots)
                .map(|_| BytesMut::with_capacity(capacity.max(room)))
                .collect(),
            pinned: Vec::with_capacity(spares),
            spare: Vec::with_capacity(spares),
            made: 0,
            spares,
            capacity: capacity.max(room),
            budget: 0,
        }
    }

    /// Before a `recvmmsg`: takes back the slabs whose pieces were all dropped, readies every
    /// slot's slab ([`renew`](Self::renew)), and sets how many slots may lend this turn.
    pub(crate) fn prepare(&mut self) {
        self.reclaim_pinned();
        for slot in 0..self.active.len() {
            self.renew(slot);
        }
        self.set_budget();
    }

    /// Moves the pinned slabs whose pieces were all dropped to the spares.
    pub(crate) fn reclaim_pinned(&mut self) {
        let mut at = 0;
        while at < self.pinned.len() {
            if self.pinned[at].try_reclaim(self.capacity) {
                self.spare.push(self.pinned.swap_remove(at));
            } else {
                at = at.saturating_add(1);
            }
        }
    }

    /// Lets as many slots lend as there are slabs to replace them (a spare free, or one not
    /// yet made).
    pub(crate) fn set_budget(&mut self) {
        self.budget = self
            .spare
            .len()
            .saturating_add(self.spares.saturating_sub(self.made));
    }

    /// Readies `slot`'s slab to be received into again (the caller owns it, the kernel does
    /// not): taken back in place, or, while a lent piece pins it, swapped for a spare.
    pub(crate) fn renew(&mut self, slot: usize) {
        let Some(slab) = self.active.get_mut(slot) else {
            return;
        };
        slab.clear();
        // Its whole capacity: a slab a piece still pins is swapped out even with room left, so
        // a lending slot always costs one replacement, and an unpinned one starts at its
        // beginning again.
        if slab.try_reclaim(self.capacity) {
            return;
        }
        // A turn lends from no more slots than it can replace (`budget`), so one is there; past
        // the bound (which the budget rules out) a slab is made rather than receive into too
        // little room.
        let replacement = self.spare.pop().unwrap_or_else(|| {
            self.made = self.made.saturating_add(1);
            BytesMut::with_capacity(self.capacity)
        });
        let pinned = std::mem::replace(slab, replacement);
        self.pinned.push(pinned);
    }

    /// Whether the next slot may lend its datagrams; counts it against the turn's budget.
    pub(crate) fn may_lend(&mut self) -> bool {
        match self.budget.checked_sub(1) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    /// The slab of `slot`.
    pub(crate) fn slab(&self, slot: usize) -> &BytesMut {
        &self.active[slot]
    }

    /// The slab of `slot`, writable.
    pub(crate) fn slab_mut(&mut self, slot: usize) -> &mut BytesMut {
        &mut self.active[slot]
    }

    /// The bytes received in `slot`, cut off its slab to be lent (the slab keeps the rest).
    pub(crate) fn take(&mut self, slot: usize) -> BytesMut {
        let slab = &mut self.active[slot];
        let len = slab.len();
        slab.split_to(len)
    }

    /// Slabs pinned by lent pieces now.
    #[cfg(test)]
    pub(crate) fn pinned(&self) -> usize {
        self.pinned.len()
    }

    /// Slabs made so far beyond the batch's own.
    #[cfg(test)]
    pub(crate) fn made(&self) -> usize {
        self.made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `slots` has received `len` bytes (as the kernel would write them).
    fn fill(slabs: &mut Slabs, slot: usize, len: usize) {
        let slab = slabs.slab_mut(slot);
        slab.clear();
        slab.resize(len, 7);
    }

    #[test]
    fn a_pinned_slab_is_replaced_by_a_spare_within_the_bound_and_taken_back_when_let_go() {
        let mut slabs = Slabs::new(2, 1000, 1024, 1);
        slabs.prepare();
        let first = slabs.slab(0).as_ptr();
        fill(&mut slabs, 0, 100);
        assert!(slabs.may_lend(), "one spare may be made");
        let kept = slabs.take(0).freeze();
        assert_eq!(kept.as_ptr(), first, "the piece is the slab's memory");
        assert!(
            !slabs.may_lend(),
            "no second slot this turn: one replacement only"
        );
        slabs.prepare();
        assert_eq!((slabs.pinned(), slabs.made()), (1, 1));
        assert_ne!(slabs.slab(0).as_ptr(), first, "a spare stands in");
        assert!(!slabs.may_lend(), "the bound is reached: copy");
        drop(kept);
        slabs.prepare();
        assert_eq!(slabs.pinned(), 0, "taken back in place");
        assert!(slabs.may_lend(), "lending resumes");
        assert_eq!(slabs.made(), 1, "nothing more was made");
    }

    #[test]
    fn a_slab_whose_pieces_are_dropped_at_once_is_received_into_again() {
        let mut slabs = Slabs::new(1, 1000, 1024, 4);
        slabs.prepare();
        let at = slabs.slab(0).as_ptr();
        for _ in 0..10 {
            fill(&mut slabs, 0, 900);
            assert!(slabs.may_lend());
            drop(slabs.take(0));
            slabs.prepare();
            assert_eq!(slabs.slab(0).as_ptr(), at, "the same memory, reclaimed");
        }
        assert_eq!((slabs.pinned(), slabs.made()), (0, 0));
    }
}
