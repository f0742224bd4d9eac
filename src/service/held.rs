//! Receive buffers lent to the workers, counted (issue 11 point 2): a message that fits one
//! datagram reaches the worker in the pooled buffer the reliability layer took it into, never
//! copied again, and each shard knows how many of its buffers the worker side holds, so that a
//! configured bound (`max_worker_buffers`) holds senders back before memory grows.
//!
//! A buffer counts from the moment the shard lends it ([`Received`], inside a [`Delivery`]) until
//! the worker lets go of it: [`Received::into_vec`] (a reply that sends it back) or dropping it.
//! Counting on drop means a worker that keeps, drops or forwards buffers cannot lose track of
//! them; the only cost is one atomic add and one subtract per message.
//!
//! [`Delivery`]: super::Delivery

use mio::Waker;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One shard's count of buffers lent to the worker side.
pub(crate) struct Ledger {
    held: AtomicUsize,
    /// Set by the shard while the bound holds its reliable channels back: the next buffer let
    /// go wakes it, so they resume without waiting for a packet.
    starved: AtomicBool,
    wakers: Arc<[Waker]>,
    index: usize,
}

impl Ledger {
    pub(crate) fn new(wakers: Arc<[Waker]>, index: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            held: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            wakers,
            index,
        })
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
    pub(crate) fn lend(self: &Arc<Ledger>, bytes: Vec<u8>) -> Received {
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

/// A message's bytes as the worker receives them: the receive-side buffer itself, counted
/// against its shard's bound while the worker holds it. Reads and writes like a `Vec<u8>`;
/// [`into_vec`](Self::into_vec) (to send it back as a reply, which returns it to the shard's
/// pool) or dropping it lets go of it. A clone is a second buffer and counts as one.
#[derive(Clone, Default)]
pub struct Received {
    bytes: Vec<u8>,
    hold: Option<Hold>,
}

impl Received {
    /// Takes the bytes out and lets go of the buffer's place in the count.
    pub fn into_vec(self) -> Vec<u8> {
        let Received { bytes, hold } = self;
        drop(hold);
        bytes
    }
}

/// Bytes that no shard lent (a worker's own, or a test's): counted nowhere.
impl From<Vec<u8>> for Received {
    fn from(bytes: Vec<u8>) -> Received {
        Received { bytes, hold: None }
    }
}

impl From<Received> for Vec<u8> {
    fn from(received: Received) -> Vec<u8> {
        received.into_vec()
    }
}

impl Deref for Received {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl DerefMut for Received {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
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
        &self.bytes == other
    }
}

impl PartialEq<[u8]> for Received {
    fn eq(&self, other: &[u8]) -> bool {
        self.bytes == other
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
        let a = ledger.lend(vec![1, 2, 3]);
        let b = ledger.lend(vec![4]);
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
}
