//! Receive buffers lent to the workers, counted (issue 11 point 2): a message that is the whole
//! of one sealed DATA reaches the worker in the receive slab the kernel wrote it into
//! ([`Payload::Lent`], `engine/slabs.rs`), any other in the pooled buffer the reliability
//! layer copied it into, never copied again; and each shard knows how many of its buffers the
//! worker side holds (a slab piece counts like a pooled buffer), so that a configured bound
//! (`max_worker_buffers`) holds senders back before memory grows.
//!
//! A buffer counts from the moment the shard lends it ([`Received`], inside a [`Delivery`]) until
//! the worker lets go of it: [`Received::into_vec`] (a reply that sends it back) or dropping it.
//! Counting on drop means a worker that keeps, drops or forwards buffers cannot lose track of
//! them; the only cost is one atomic add and one subtract per message.
//!
//! A buffer the worker drops goes back to the shard that lent it (issue 12): through a bounded
//! lock-free queue ([`Ledger::keep_returns`] sets its bounds, in buffers and bytes, and the
//! largest buffer it takes), which the shard drains into its endpoint's pool each turn. So the
//! next message is received into memory that is still mapped and warm, instead of pages glibc
//! gave back to the kernel when the worker freed the last one. Past the bounds a buffer is
//! freed, as before; a buffer a worker takes out with [`Received::into_vec`] is its own. A
//! dropped slab piece needs no way back: dropping it unpins its slab, which the backend takes
//! back in place.
//!
//! [`Delivery`]: super::Delivery

use crate::channel::Payload;
use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// One shard's count of buffers lent to the worker side.
pub(crate) struct Ledger {
    held: AtomicUsize,
    /// Set by the shard while the bound holds its reliable channels back: the next buffer let
    /// go wakes it, so they resume without waiting for a packet.
    starved: AtomicBool,
    wakers: Arc<[Waker]>,
    index: usize,
    /// Where dropped buffers go back to the shard, once it has set the bounds.
    returns: OnceLock<Returns>,
}

/// The bounded way back of dropped buffers to their shard.
struct Returns {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    /// Capacity of the buffers in the queue, at most `max_bytes`.
    bytes: AtomicUsize,
    max_bytes: usize,
    /// Buffers with more capacity than this are freed, not returned.
    max_capacity: usize,
}

impl Ledger {
    pub(crate) fn new(wakers: Arc<[Waker]>, index: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            held: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            wakers,
            index,
            returns: OnceLock::new(),
        })
    }

    /// Has dropped buffers come back to the shard: at most `buffers` of them and `bytes` of
    /// capacity wait at once, none over `max_capacity`. Set once, by the shard, before it lends
    /// anything; until then (and with `buffers` zero) dropped buffers are freed.
    pub(crate) fn keep_returns(&self, buffers: usize, bytes: usize, max_capacity: usize) {
        if buffers == 0 {
            return;
        }
        // A bounded channel's array flavour: a lock-free ring allocated once, here.
        let (tx, rx) = crossbeam_channel::bounded(buffers);
        let _ = self.returns.set(Returns {
            tx,
            rx,
            bytes: AtomicUsize::new(0),
            max_bytes: bytes,
            max_capacity,
        });
    }

    /// A buffer a worker dropped, to reuse; `None` when none waits.
    pub(crate) fn take_returned(&self) -> Option<Vec<u8>> {
        let returns = self.returns.get()?;
        let buf = returns.rx.try_recv().ok()?;
        returns.bytes.fetch_sub(buf.capacity(), Ordering::AcqRel);
        Some(buf)
    }

    /// Buffers waiting to be taken back.
    #[cfg(test)]
    fn returned(&self) -> usize {
        self.returns.get().map_or(0, |r| r.rx.len())
    }

    /// Queues a dropped buffer for its shard, or frees it past the bounds.
    fn give_back(&self, buf: Vec<u8>) {
        let Some(returns) = self.returns.get() else {
            return;
        };
        let capacity = buf.capacity();
        if capacity == 0 || capacity > returns.max_capacity {
            return;
        }
        // Charged before it is queued, so the bound holds with many workers returning at once.
        let before = returns.bytes.fetch_add(capacity, Ordering::AcqRel);
        if before.saturating_add(capacity) > returns.max_bytes || returns.tx.try_send(buf).is_err()
        {
            returns.bytes.fetch_sub(capacity, Ordering::AcqRel);
        }
    }

    /// Buffers lent and not yet let go.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Asks the worker side to wake the shard when it lets go of a buffer.
    pub(crate) fn set_starved(&self, starved: bool) {
        self.starved.store(starved, Ordering::SeqCst);
    }

    /// Lends `bytes` to the worker side.
    pub(crate) fn lend(self: &Arc<Ledger>, bytes: Payload) -> Received {
        self.held.fetch_add(1, Ordering::AcqRel);
        Received {
            bytes,
            hold: Some(Hold(Arc::clone(self))),
        }
    }

    fn release(&self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
        if self.starved.swap(false, Ordering::SeqCst)
            && let Some(waker) = self.wakers.get(self.index)
        {
            let _ = waker.wake();
        }
    }
}

/// The claim a lent buffer holds on its shard's count.
struct Hold(Arc<Ledger>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Clone for Hold {
    fn clone(&self) -> Hold {
        self.0.held.fetch_add(1, Ordering::AcqRel);
        Hold(Arc::clone(&self.0))
    }
}

/// A message's bytes as the worker receives them: the receive-side buffer itself (a pooled
/// buffer, or for a message that was the whole of one DATA, a piece of the receive slab the
/// datagram arrived in: [`Payload`]), counted against its shard's bound while the worker holds
/// it. Reads like a `[u8]`; [`into_payload`](Self::into_payload) (to send it back as a reply,
/// which costs no copy of a pooled buffer and one copy into the shard's pool of a lent piece),
/// [`into_vec`](Self::into_vec) (to keep the bytes; copies a lent piece) or dropping it lets go
/// of it; dropped, a pooled buffer goes back to the shard that lent it for the next message,
/// and a lent piece lets its slab be received into again. A clone is a second buffer and counts
/// as one.
#[derive(Clone, Default)]
pub struct Received {
    bytes: Payload,
    hold: Option<Hold>,
}

impl Received {
    /// Takes the bytes out and lets go of the buffer's place in the count.
    pub fn into_payload(mut self) -> Payload {
        // The worker keeps the buffer: it is no longer the shard's to take back.
        drop(self.hold.take());
        std::mem::take(&mut self.bytes)
    }

    /// Takes the bytes out as a `Vec` (a lent piece is copied) and lets go of the buffer's
    /// place in the count.
    pub fn into_vec(self) -> Vec<u8> {
        self.into_payload().into_vec()
    }

    /// True when the bytes are the receive memory itself, lent without a copy.
    pub fn is_lent(&self) -> bool {
        self.bytes.is_lent()
    }

    /// The bytes writable, as a `Vec` (a lent piece is copied into one first).
    pub fn to_mut(&mut self) -> &mut Vec<u8> {
        self.bytes.to_mut()
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            // Queued before the count falls, so a shard woken by the fall finds it. A lent
            // piece is simply dropped: its slab is the backend's to take back.
            if let Payload::Pooled(vec) = std::mem::take(&mut self.bytes) {
                hold.0.give_back(vec);
            }
        }
    }
}

/// Bytes that no shard lent (a worker's own, or a test's): counted nowhere.
impl From<Vec<u8>> for Received {
    fn from(bytes: Vec<u8>) -> Received {
        Received {
            bytes: Payload::Pooled(bytes),
            hold: None,
        }
    }
}

impl From<Received> for Vec<u8> {
    fn from(received: Received) -> Vec<u8> {
        received.into_vec()
    }
}

impl From<Received> for Payload {
    fn from(received: Received) -> Payload {
        received.into_payload()
    }
}

impl Deref for Received {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for Received {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq for Received {
    fn eq(&self, other: &Received) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Received {}

impl PartialEq<Vec<u8>> for Received {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.bytes == *other
    }
}

impl PartialEq<[u8]> for Received {
    fn eq(&self, other: &[u8]) -> bool {
        self.bytes == *other
    }
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.bytes.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Poll, Token};
    use std::time::Duration;

    #[test]
    fn a_buffer_counts_until_it_is_let_go_or_dropped_and_wakes_a_starved_shard() {
        let mut poll = Poll::new().unwrap();
        let wakers: Arc<[Waker]> = vec![Waker::new(poll.registry(), Token(1)).unwrap()].into();
        let ledger = Ledger::new(wakers, 0);
        let a = ledger.lend(vec![1, 2, 3].into());
        let b = ledger.lend(vec![4].into());
        let c = b.clone();
        assert_eq!(ledger.held(), 3, "a clone is a second buffer");
        assert_eq!(&a[..], [1, 2, 3]);
        assert_eq!(a.into_vec(), [1, 2, 3]);
        assert_eq!(ledger.held(), 2, "sent back");
        drop(b);
        assert_eq!(ledger.held(), 1, "dropped");
        let mut events = mio::Events::with_capacity(4);
        ledger.set_starved(true);
        drop(c);
        assert_eq!(ledger.held(), 0);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the starved shard was woken");
        let own = Received::from(vec![9]);
        drop(own);
        assert_eq!(ledger.held(), 0, "bytes no shard lent count nowhere");
    }

    #[test]
    fn dropped_buffers_go_back_within_the_bounds_and_the_excess_is_freed() {
        let mut poll = Poll::new().unwrap();
        let wakers: Arc<[Waker]> = vec![Waker::new(poll.registry(), Token(1)).unwrap()].into();
        let ledger = Ledger::new(Arc::clone(&wakers), 0);
        drop(ledger.lend(Vec::<u8>::with_capacity(64).into()));
        assert_eq!(ledger.returned(), 0, "no bounds set: freed, as before");
        ledger.keep_returns(3, 10_000, 4096);
        let a = ledger.lend(Vec::<u8>::with_capacity(4096).into());
        let at = a.as_ptr();
        drop(a);
        assert_eq!((ledger.returned(), ledger.held()), (1, 0));
        let back = ledger.take_returned().unwrap();
        assert_eq!(
            (back.as_ptr(), back.capacity()),
            (at, 4096),
            "the same buffer"
        );
        assert!(ledger.take_returned().is_none());
        drop(ledger.lend(Vec::<u8>::with_capacity(4097).into()));
        assert_eq!(ledger.returned(), 0, "over the largest kept: freed");
        // A flood of returns: the byte bound (two of 4096 fit in 10,000) then the count.
        let lent: Vec<Received> = (0..10)
            .map(|_| ledger.lend(Vec::<u8>::with_capacity(4096).into()))
            .collect();
        assert_eq!(ledger.held(), 10);
        drop(lent);
        assert_eq!((ledger.returned(), ledger.held()), (2, 0));
        let small: Vec<Received> = (0..10)
            .map(|_| ledger.lend(Vec::<u8>::with_capacity(16).into()))
            .collect();
        drop(small);
        assert_eq!(ledger.returned(), 3, "three buffers at most");
        while ledger.take_returned().is_some() {}
        let c = ledger.lend(Vec::<u8>::with_capacity(64).into());
        ledger.set_starved(true);
        drop(c);
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            !events.is_empty(),
            "a returned buffer still wakes a starved shard"
        );
        assert!(ledger.take_returned().is_some(), "and it finds the buffer");
    }
}
