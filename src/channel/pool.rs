//! Message buffers recycled instead of allocated (PROTOCOL.md §12: no allocation per packet in
//! steady state). Delivered messages take their `Vec<u8>` from the pool, the application hands
//! them back with [`Endpoint::recycle`](super::Endpoint::recycle), and the reliability send
//! queue takes its copies from the same pool and returns them once they are resolved.

/// Capacity a new buffer gets at least: any message that fits one datagram, so buffers of
/// mixed sizes can stand in for each other without growing.
const MIN_CAPACITY: usize = crate::channel::outgoing::MAX_DATAGRAM;

/// Buffers kept at most; beyond this a returned buffer is freed.
const POOL_BUFFERS: usize = 1024;

/// Buffers with more capacity than this are freed rather than kept, so one huge message does not pin its
/// memory in the pool.
pub const POOLED_CAPACITY: usize = 16 * 1024;

/// A bounded free list of byte buffers.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty pool; its free list is allocated once, on the first buffer it keeps.
    pub fn new() -> BufferPool {
        BufferPool { free: Vec::new() }
    }

    /// An empty buffer holding at least `len` bytes of capacity; allocates only when the pool
    /// is empty or `len` is more than a pooled buffer holds.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        if len > POOLED_CAPACITY {
            // It would not come back (see `give`): growing a pooled buffer to this size would
            // only drain the pool by one, and cost a reallocation besides.
            return Vec::with_capacity(len);
        }
        match self.free.pop() {
            Some(mut buf) => {
                buf.reserve(len);
                buf
            }
            None => Vec::with_capacity(len.max(MIN_CAPACITY)),
        }
    }

    /// A buffer holding a copy of `bytes`.
    pub fn copy(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.take(bytes.len());
        buf.extend_from_slice(bytes);
        buf
    }

    /// Keeps `buf` for reuse, or frees it when the pool is full or it is oversized.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > POOLED_CAPACITY {
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
        self.free.len()
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        pool.give(Vec::with_capacity(POOLED_CAPACITY + 1));
        pool.give(Vec::new());
        assert_eq!(pool.len(), 0, "oversized and empty buffers are not kept");
        for _ in 0..POOL_BUFFERS + 10 {
            pool.give(Vec::with_capacity(8));
        }
        assert_eq!(pool.len(), POOL_BUFFERS);
    }
}
