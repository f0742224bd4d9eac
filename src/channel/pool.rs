//! Message buffers recycled instead of allocated (PROTOCOL.md §12: no allocation per packet in
//! steady state). Delivered messages take their `Vec<u8>` from the pool (unless they are lent
//! the receive memory itself, `BufferPool::message` and `payload.rs`), the application hands
//! them back with [`Endpoint::recycle`](super::Endpoint::recycle), and the reliability send
//! queue takes its copies from the same pool and returns them once they are resolved.
//!
//! Two free lists: buffers of up to one datagram's worth (any small message), and larger ones
//! (a reassembled or queued bulk message), kept up to [`KEPT_CAPACITY`] each and
//! [`LARGE_POOL_BYTES`] in all. Without the second list every 64 KiB message cost a fresh
//! allocation, which glibc served from pages it had just given back to the kernel: a page fault
//! per 4 KiB on the receiving shard and an unmap on the worker that freed it (issue 12).

use super::Payload;
use bytes::Bytes;

/// Capacity a new buffer gets at least: any message that fits one datagram, so buffers of
/// mixed sizes can stand in for each other without growing.
const MIN_CAPACITY: usize = crate::channel::outgoing::MAX_DATAGRAM;

/// Small buffers kept at most; beyond this a returned buffer is freed.
const POOL_BUFFERS: usize = 1024;

/// Buffers with more capacity than this go to the large list.
pub const POOLED_CAPACITY: usize = 16 * 1024;

/// Buffers with more capacity than this are freed rather than kept, so one huge message does
/// not pin its memory in the pool.
pub const KEPT_CAPACITY: usize = 256 * 1024;

/// Most bytes of capacity the large list keeps: 128 bulk messages of 64 KiB.
pub const LARGE_POOL_BYTES: usize = 8 << 20;

/// Most buffers the large list can hold (each is over [`POOLED_CAPACITY`]); its one allocation.
const LARGE_BUFFERS: usize = LARGE_POOL_BYTES / POOLED_CAPACITY;

/// Whether `inner` lies within `outer`'s memory (what `Bytes::slice_ref` asks; an empty slice
/// is always copied, which costs nothing).
fn contains(outer: &[u8], inner: &[u8]) -> bool {
    let start = outer.as_ptr() as usize;
    let end = start.saturating_add(outer.len());
    let at = inner.as_ptr() as usize;
    !inner.is_empty() && at >= start && at.saturating_add(inner.len()) <= end
}

/// A bounded free list of byte buffers.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
    /// Capacity held in `large`, at most [`LARGE_POOL_BYTES`].
    large_bytes: usize,
    /// The opened datagram being walked, when the backend lends its memory (`payload.rs`):
    /// set by the endpoint for one datagram, cleared after it.
    source: Option<Bytes>,
    /// Messages lent from `source` and copied into pooled buffers, not yet counted.
    lent: u64,
    copied: u64,
}

impl BufferPool {
    /// An empty pool; its free lists are allocated once, on the first buffer each keeps.
    pub fn new() -> BufferPool {
        BufferPool::default()
    }

    /// An empty buffer holding at least `len` bytes of capacity; allocates only when the pool
    /// has no buffer of the size class, or `len` is more than a kept buffer holds.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        if len > POOLED_CAPACITY {
            return self.take_large(len);
        }
        match self.free.pop() {
            Some(mut buf) => {
                buf.reserve(len);
                buf
            }
            None => Vec::with_capacity(len.max(MIN_CAPACITY)),
        }
    }

    fn take_large(&mut self, len: usize) -> Vec<u8> {
        if len > KEPT_CAPACITY {
            // It would not come back (see `give`): growing a pooled buffer to this size would
            // only drain the pool by one, and cost a reallocation besides.
            return Vec::with_capacity(len);
        }
        match self.large.pop() {
            Some(mut buf) => {
                self.large_bytes = self.large_bytes.saturating_sub(buf.capacity());
                // Bulk messages are mostly of one size, so this rarely grows; when it does,
                // the buffer is empty and nothing is copied.
                buf.reserve_exact(len);
                buf
            }
            None => Vec::with_capacity(len),
        }
    }

    /// A whole message's bytes as the receive side keeps them: a piece of the datagram being
    /// walked when the backend lends it, `bytes` lie inside it and the message is `due` (handed
    /// on now, not held behind a gap, where it would pin the slab for as long as the peer
    /// leaves the gap open), else a copy in a pooled buffer. Counted either way
    /// ([`take_counts`](Self::take_counts)).
    pub(crate) fn message(&mut self, bytes: &[u8], due: bool) -> Payload {
        if due
            && let Some(source) = &self.source
            && contains(source, bytes)
        {
            self.lent = self.lent.saturating_add(1);
            return Payload::Lent(source.slice_ref(bytes));
        }
        self.copied = self.copied.saturating_add(1);
        Payload::Pooled(self.copy(bytes))
    }

    /// Lends pieces of `datagram` (opened, frozen) to the messages taken until
    /// [`stop_lending`](Self::stop_lending).
    pub(crate) fn lend_from(&mut self, datagram: Bytes) {
        self.source = Some(datagram);
    }

    /// Copies again: the datagram's walk is over (drops the pool's reference to it).
    pub(crate) fn stop_lending(&mut self) {
        self.source = None;
    }

    /// Messages lent and copied since the last call.
    pub(crate) fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.lent),
            std::mem::take(&mut self.copied),
        )
    }

    /// Takes back a message's bytes: a pooled buffer is kept for reuse, a lent piece is
    /// dropped (its slab goes back to the backend once every piece is).
    pub fn recycle(&mut self, payload: Payload) {
        if let Payload::Pooled(vec) = payload {
            self.give(vec);
        }
    }

    /// A buffer holding a copy of `bytes`.
    pub fn copy(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.take(bytes.len());
        buf.extend_from_slice(bytes);
        buf
    }

    /// Keeps `buf` for reuse, or frees it when its list is full or it is oversized.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity == 0 || capacity > KEPT_CAPACITY {
            return;
        }
        if capacity > POOLED_CAPACITY {
            let bytes = self.large_bytes.saturating_add(capacity);
            if bytes > LARGE_POOL_BYTES || self.large.len() >= LARGE_BUFFERS {
                return;
            }
            if self.large.capacity() == 0 {
                self.large.reserve_exact(LARGE_BUFFERS);
            }
            buf.clear();
            self.large.push(buf);
            self.large_bytes = bytes;
            return;
        }
        if self.free.len() >= POOL_BUFFERS {
            return;
        }
        if self.free.capacity() == 0 {
            // One allocation for the whole free list, so keeping a buffer never allocates.
            self.free.reserve_exact(POOL_BUFFERS);
        }
        buf.clear();
        self.free.push(buf);
    }

    /// Buffers ready for reuse.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.free.len().saturating_add(self.large.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_message_inside_the_lent_datagram_is_cut_from_it_and_anything_else_copied() {
        let mut pool = BufferPool::new();
        let datagram = Bytes::from(b"header|message|rest".to_vec());
        pool.lend_from(datagram.clone());
        let lent = pool.message(&datagram[7..14], true);
        assert!(lent.is_lent());
        assert_eq!(lent.as_ptr(), datagram[7..].as_ptr(), "no copy");
        assert_eq!(lent, b"message");
        let held = pool.message(&datagram[7..14], false);
        assert!(
            !held.is_lent(),
            "held behind a gap: copied, so it pins nothing"
        );
        let elsewhere = b"message".to_vec();
        assert!(
            !pool.message(&elsewhere, true).is_lent(),
            "not in the datagram"
        );
        assert_eq!(pool.take_counts(), (1, 2));
        pool.stop_lending();
        assert!(!pool.message(&datagram[7..14], true).is_lent());
        assert_eq!(pool.take_counts(), (0, 1));
        assert_eq!(lent.into_vec(), b"message", "into_vec copies a lent piece");
    }

    #[test]
    fn buffers_come_back_empty_and_the_pool_is_bounded() {
        let mut pool = BufferPool::new();
        let buf = pool.copy(b"hello");
        let ptr = buf.as_ptr();
        pool.give(buf);
        assert_eq!(pool.len(), 1);
        let again = pool.take(3);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same buffer is reused");
        pool.give(again);
        let big = pool.take(POOLED_CAPACITY + 1);
        assert!(big.capacity() > POOLED_CAPACITY);
        assert_eq!(
            pool.len(),
            1,
            "a buffer too big to keep leaves the pool's alone"
        );
        let _kept = pool.take(3);
        pool.give(Vec::with_capacity(KEPT_CAPACITY + 1));
        pool.give(Vec::new());
        assert_eq!(pool.len(), 0, "oversized and empty buffers are not kept");
        for _ in 0..POOL_BUFFERS + 10 {
            pool.give(Vec::with_capacity(8));
        }
        assert_eq!(pool.len(), POOL_BUFFERS);
    }

    #[test]
    fn bulk_sized_buffers_are_kept_up_to_the_byte_bound_and_reused() {
        let mut pool = BufferPool::new();
        let buf = pool.take(64 * 1024);
        let ptr = buf.as_ptr();
        pool.give(buf);
        assert_eq!(pool.len(), 1, "a 64 KiB buffer is kept");
        let small = pool.take(100);
        assert_ne!(
            small.as_ptr(),
            ptr,
            "a small message does not take a large buffer"
        );
        let again = pool.take(60 * 1024);
        assert_eq!(
            again.as_ptr(),
            ptr,
            "the same buffer serves the next bulk message"
        );
        assert!(again.is_empty() && again.capacity() >= 64 * 1024);
        pool.give(again);
        pool.give(small);
        let _ = pool.take(KEPT_CAPACITY + 1);
        assert_eq!(
            pool.len(),
            2,
            "a message over the cap leaves the kept ones alone"
        );
        let mut pool = BufferPool::new();
        for _ in 0..LARGE_POOL_BYTES / (64 * 1024) + 10 {
            pool.give(Vec::with_capacity(64 * 1024));
        }
        assert_eq!(
            pool.len(),
            LARGE_POOL_BYTES / (64 * 1024),
            "bounded in bytes"
        );
        assert!(pool.large_bytes <= LARGE_POOL_BYTES);
        let taken: Vec<_> = (0..pool.len()).map(|_| pool.take(64 * 1024)).collect();
        assert_eq!(
            pool.large_bytes, 0,
            "taking gives the bytes back to the bound"
        );
        drop(taken);
    }
}
