//! The memory the kernel touches for one ring: the provided-buffer ring and its receive
//! buffers, the send batches with their message headers, and the multishot receive's header.
//! All of it is allocated once, when the backend is made, and never moves or shrinks while a
//! request may use it (the module doc of `uring` says when it may be freed).

// Memory shared with the kernel is raw pointers and layouts by nature.
#![allow(unsafe_code)]

use super::super::sys::{BATCH, CONTROL, SendBatch};
use io_uring::types::BufRingEntry;
use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::mem::{size_of, zeroed};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// Receive buffers in the provided-buffer ring (a power of two, as the ring requires).
///
/// Each holds a whole GRO train (UDP_GRO is on, and a train is up to 64 KiB), so one buffer
/// per message whatever the coalescing. 256 × 68 KiB is 17 MiB of address space per shard, but
/// it is allocated zeroed and the kernel writes only the pages a message covers, so a shard
/// under small datagrams keeps about one page per buffer resident. Fewer buffers run dry
/// (ENOBUFS, counted) under a burst before the loop recycles them.
pub(super) const BUFFERS: u16 = 256;

/// The `io_uring_recvmsg_out` header, the name field and the control field precede the
/// payload in every buffer (the layout of a multishot `RecvMsg`).
const RECV_HEADROOM: usize = 16 + size_of::<libc::sockaddr_storage>() + CONTROL;

/// One receive buffer: the headroom and a whole UDP payload, rounded to pages.
const BUFFER_SIZE: usize = (RECV_HEADROOM + 65_535).next_multiple_of(4096);

/// The provided-buffer ring and the buffers it hands out.
pub(super) struct BufRing {
    /// `BUFFERS` entries, page-aligned as the kernel requires; entry 0's `resv` is the tail.
    pub(super) ring: NonNull<BufRingEntry>,
    /// `BUFFERS * BUFFER_SIZE` bytes.
    pub(super) memory: NonNull<u8>,
    /// The tail as this side counts it, published with [`BufRing::publish`].
    pub(super) tail: u16,
    /// Set when the kernel may still hold a buffer at drop: the memory is then leaked.
    pub(super) leak: bool,
}

// SAFETY: the ring and buffers are plain memory owned by this value alone; the pointers are
// only dereferenced by the thread that owns the value (the backend moves once, into its shard).
unsafe impl Send for BufRing {}

impl BufRing {
    fn ring_layout() -> Layout {
        // A page holds the 256 entries of 16 bytes; page alignment is the kernel's rule.
        Layout::from_size_align(
            usize::from(BUFFERS).saturating_mul(size_of::<BufRingEntry>()),
            4096,
        )
        .expect("constant layout")
    }

    fn memory_layout() -> Layout {
        Layout::from_size_align(usize::from(BUFFERS) * BUFFER_SIZE, 4096).expect("constant layout")
    }

    pub(super) fn new() -> io::Result<BufRing> {
        // SAFETY: both layouts have a non-zero size.
        let ring = NonNull::new(unsafe { alloc_zeroed(Self::ring_layout()) }.cast());
        // SAFETY: as above.
        let memory = NonNull::new(unsafe { alloc_zeroed(Self::memory_layout()) });
        match (ring, memory) {
            (Some(ring), Some(memory)) => Ok(BufRing {
                ring,
                memory,
                tail: 0,
                leak: false,
            }),
            (ring, memory) => {
                if let Some(ring) = ring {
                    // SAFETY: allocated just above with this layout.
                    unsafe { dealloc(ring.as_ptr().cast(), Self::ring_layout()) };
                }
                if let Some(memory) = memory {
                    // SAFETY: as above.
                    unsafe { dealloc(memory.as_ptr(), Self::memory_layout()) };
                }
                Err(io::Error::from_raw_os_error(libc::ENOMEM))
            }
        }
    }

    /// Queues buffer `bid` for the kernel again; visible to it after [`BufRing::publish`].
    pub(super) fn recycle(&mut self, bid: u16) {
        let index = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `index < BUFFERS`, inside the ring allocation. The kernel reads only entries
        // between its head and the published tail; this one is past the tail, so nothing else
        // reads or writes it now. The setters write addr, len and bid, never `resv` (the tail
        // that shares entry 0).
        let entry = unsafe { &mut *self.ring.as_ptr().add(index) };
        // SAFETY: `bid < BUFFERS`, so the buffer lies inside the memory allocation.
        let addr = unsafe { self.memory.as_ptr().add(usize::from(bid) * BUFFER_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the recycled buffers visible to the kernel.
    pub(super) fn publish(&self) {
        // SAFETY: `ring` points at entry 0 of an initialised ring, as `BufRingEntry::tail`
        // requires; the tail is a naturally aligned u16 that the kernel reads and only this
        // side writes, so an atomic view of it is sound.
        let tail = unsafe { &*BufRingEntry::tail(self.ring.as_ptr()).cast::<AtomicU16>() };
        // Release: the entries written by `recycle` are visible before the new tail.
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, which the kernel has handed back in a CQE.
    pub(super) fn buffer(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= BUFFERS || len > BUFFER_SIZE {
            return None;
        }
        // SAFETY: the range lies inside the memory allocation (checked above); the kernel gave
        // this buffer back in a CQE and takes it again only once `recycle` and `publish` hand
        // it over, after the returned slice is dropped (the borrow of `self` ends first).
        Some(unsafe {
            std::slice::from_raw_parts(
                self.memory.as_ptr().add(usize::from(bid) * BUFFER_SIZE),
                len,
            )
        })
    }

    /// [`BufRing::buffer`], writable: the endpoint opens sealed packets in place.
    pub(super) fn buffer_mut(&mut self, bid: u16, len: usize) -> Option<&mut [u8]> {
        if bid >= BUFFERS || len > BUFFER_SIZE {
            return None;
        }
        // SAFETY: as in `buffer`: inside the allocation, and ours until `recycle`; `&mut self`
        // makes the returned slice the only view of it while it lives.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.memory.as_ptr().add(usize::from(bid) * BUFFER_SIZE),
                len,
            )
        })
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            // The kernel may still write into the buffers: never give them back.
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the ring was unregistered (or never
        // registered) and no request holds a buffer (`leak` is false).
        unsafe {
            dealloc(self.ring.as_ptr().cast(), Self::ring_layout());
            dealloc(self.memory.as_ptr(), Self::memory_layout());
        }
    }
}

/// One send batch and the message headers pointing into it, kept until the kernel is done.
pub(super) struct SendSlot {
    pub(super) batch: SendBatch,
    pub(super) headers: Box<[libc::msghdr; BATCH]>,
    pub(super) iovecs: Box<[libc::iovec; BATCH]>,
    pub(super) names: Box<[libc::sockaddr_storage; BATCH]>,
    pub(super) control: Box<[[u8; CONTROL]; BATCH]>,
    /// Datagrams in each submitted message.
    pub(super) datagrams: [usize; BATCH],
    /// Messages submitted whose CQE has not come.
    pub(super) inflight: usize,
}

// SAFETY: the raw pointers inside the headers point into this slot's own boxes and batch; the
// slot moves with its backend, once, before any of them is used.
unsafe impl Send for SendSlot {}

impl SendSlot {
    pub(super) fn new(gso: bool) -> SendSlot {
        // SAFETY: msghdr, iovec and sockaddr_storage are plain data for which all-zero is valid.
        let (headers, iovecs, names) = unsafe { (zeroed(), zeroed(), zeroed()) };
        SendSlot {
            batch: SendBatch::new(gso),
            headers: Box::new(headers),
            iovecs: Box::new(iovecs),
            names: Box::new(names),
            control: Box::new([[0; CONTROL]; BATCH]),
            datagrams: [0; BATCH],
            inflight: 0,
        }
    }
}

/// The multishot receive's `msghdr`; its pointers are null (only the lengths matter).
pub(super) struct RecvHeader(pub(super) Box<libc::msghdr>);

// SAFETY: the header's pointer fields are null and never set; it is plain data.
unsafe impl Send for RecvHeader {}
