//! The memory the kernel touches for one ring: the provided-buffer ring and its receive
//! buffers, the send batches with their message headers, and the multishot receive's header.
//! All of it is allocated once, when the backend is made (the receive slabs' bounded spares on
//! first need, `slabs.rs`), and never moves or shrinks while a request may use it (the module
//! doc of `uring` says when it may be freed).

// Memory shared with the kernel is raw pointers and layouts by nature.
#![allow(unsafe_code)]

use super::super::slabs::Slabs;
use super::super::sys::{BATCH, CONTROL, SendBatch};
use bytes::BytesMut;
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
/// the kernel writes only the pages a message covers, so a shard under small datagrams keeps
/// about one page per buffer resident. Fewer buffers run dry (ENOBUFS, counted) under a burst
/// before the loop recycles them.
pub(super) const BUFFERS: u16 = 256;

/// The `io_uring_recvmsg_out` header, the name field and the control field precede the
/// payload in every buffer (the layout of a multishot `RecvMsg`).
const RECV_HEADROOM: usize = 16 + size_of::<libc::sockaddr_storage>() + CONTROL;

/// One receive buffer: the headroom and a whole UDP payload, rounded to pages.
const BUFFER_SIZE: usize = (RECV_HEADROOM + 65_535).next_multiple_of(4096);

/// The provided-buffer ring and the buffers it hands out: one [`Slabs`] slab per buffer id,
/// lent like the epoll backend's (`slabs.rs`): a buffer whose datagrams a lent piece pins is
/// given back to the kernel as a spare slab's memory under the same id.
pub(super) struct BufRing {
    /// `BUFFERS` entries, page-aligned as the kernel requires; entry 0's `resv` is the tail.
    pub(super) ring: NonNull<BufRingEntry>,
    /// One slab per buffer id; the kernel may write into a slab's spare capacity from the
    /// [`recycle`](BufRing::recycle) that hands it over until the CQE that gives it back.
    pub(super) slabs: Slabs,
    /// The tail as this side counts it, published with [`BufRing::publish`].
    pub(super) tail: u16,
    /// Set when the kernel may still hold a buffer at drop: the memory is then leaked.
    pub(super) leak: bool,
}

// SAFETY: the ring is plain memory owned by this value alone, and the slabs are owned
// `BytesMut`s; the ring pointer is only dereferenced by the thread that owns the value (the
// backend moves once, into its shard).
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

    /// The ring and its buffers, lending from up to `spares` more slabs (0: never lend).
    pub(super) fn new(spares: usize) -> io::Result<BufRing> {
        // SAFETY: the layout has a non-zero size.
        let ring = NonNull::new(unsafe { alloc_zeroed(Self::ring_layout()) }.cast());
        let Some(ring) = ring else {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        };
        Ok(BufRing {
            ring,
            slabs: Slabs::new(usize::from(BUFFERS), BUFFER_SIZE, BUFFER_SIZE, spares),
            tail: 0,
            leak: false,
        })
    }

    /// Queues buffer `bid` for the kernel again (its slab taken back, or a spare in place of a
    /// pinned one); visible to it after [`BufRing::publish`].
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid >= BUFFERS {
            return;
        }
        self.slabs.renew(usize::from(bid));
        let spare = self.slabs.slab_mut(usize::from(bid)).spare_capacity_mut();
        let (addr, len) = (spare.as_mut_ptr(), spare.len().min(BUFFER_SIZE));
        let index = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `index < BUFFERS`, inside the ring allocation. The kernel reads only entries
        // between its head and the published tail; this one is past the tail, so nothing else
        // reads or writes it now. The setters write addr, len and bid, never `resv` (the tail
        // that shares entry 0).
        let entry = unsafe { &mut *self.ring.as_ptr().add(index) };
        // The slab's spare capacity: no piece of the slab refers to it (renewed above), and the
        // slab is not touched again until the CQE that gives `bid` back.
        entry.set_addr(addr as u64);
        entry.set_len(len as u32);
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

    /// Takes buffer `bid`, which the kernel has handed back in a CQE holding `len` bytes: its
    /// slab, holding them. Until [`recycle`](Self::recycle) it is this side's alone.
    pub(super) fn filled(&mut self, bid: u16, len: usize) -> Option<&mut BytesMut> {
        if bid >= BUFFERS || len > BUFFER_SIZE {
            return None;
        }
        let slab = self.slabs.slab_mut(usize::from(bid));
        if len > slab.capacity() {
            return None;
        }
        // SAFETY: the kernel wrote `len` bytes (at most the entry's length, the slab's spare
        // capacity, checked above) at the address `recycle` gave it, the start of this slab's
        // spare capacity, which was empty; the CQE hands them back.
        unsafe { slab.set_len(len) };
        Some(slab)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            // The kernel may still write into the buffers: never give them back.
            std::mem::forget(std::mem::replace(&mut self.slabs, Slabs::new(0, 0, 0, 0)));
            return;
        }
        // SAFETY: allocated in `new` with this layout; the ring was unregistered (or never
        // registered) and no request holds a buffer (`leak` is false).
        unsafe { dealloc(self.ring.as_ptr().cast(), Self::ring_layout()) };
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
