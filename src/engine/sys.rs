//! The epoll backend's system calls (PROTOCOL.md §12): SO_REUSEPORT sockets, the classic-BPF
//! steering program, and batched `recvmmsg`/`sendmmsg` with UDP GSO and GRO where the kernel
//! has them. mio has none of these, so they go through `libc` on the socket's descriptor.
//!
//! Every buffer is allocated once, when a batch is made; the message headers are rebuilt to
//! point into them on each call, so no raw pointer outlives the call that made it. A control
//! datagram the endpoint lends is sent from its own pooled buffer, which the batch holds until
//! it is emptied and the driver gives it back (`Endpoint::recycle_datagram`).
#![allow(unsafe_code)]

use super::slabs::Slabs;
use crate::channel::LentDatagram;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Datagrams per `recvmmsg`/`sendmmsg` call (PROTOCOL.md §12: batches of 32–64).
pub(crate) const BATCH: usize = 32;

/// One receive slot: a whole UDP payload, so neither a large datagram nor a GRO train is cut.
const RECV_SLOT: usize = 65_535;

/// Capacity of one receive slab (`slabs.rs`): a slot, rounded up to a cache line, plus two
/// lines. When slabs lie back to back at a stride near 64 KiB, every slot starts in the same
/// cache sets (their addresses alike in the low 12 bits), so a batch of datagrams, written by
/// the kernel and then opened in place, would evict itself from the L1 cache; two lines more
/// per slab spreads 32 slots over every set.
const RECV_STRIDE: usize = 65_536 + 128;

/// Room the endpoint gets per datagram it writes (it needs at least 1452 bytes).
pub(crate) const SEND_SLOT: usize = 2048;

/// Control bytes per message: room for SO_RXQ_OVFL's u32 and UDP_GRO's int, or UDP_SEGMENT's u16.
pub(crate) const CONTROL: usize = 64;

/// Most segments the kernel takes in one GSO send (UDP_MAX_SEGMENTS).
const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes in one GSO send: a UDP payload.
const GSO_MAX_BYTES: usize = 65_000;

// Linux values on every architecture this crate builds for (asm-generic/socket.h); libc does not
// export the first for glibc targets.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
pub(crate) const SO_RXQ_OVFL: libc::c_int = 40;
pub(crate) const UDP_SEGMENT: libc::c_int = 103;
pub(crate) const UDP_GRO: libc::c_int = 104;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives across the call and the length passed is its size; the kernel only
    // reads it.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Socket buffer size asked for; the kernel caps it at net.core.rmem_max / wmem_max (see
/// tuning/sysctl.conf). The 208 KiB default overflows under a burst of a few hundred datagrams.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Asks for [`SOCKET_BUFFER`] bytes of receive and send buffer; best effort.
pub(crate) fn grow_buffers(fd: RawFd) {
    let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER);
    let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER);
}

/// A non-blocking UDP socket with SO_REUSEPORT and SO_RXQ_OVFL set, bound to `address`.
pub(crate) fn bind_reuseport(address: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if address.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain system call with constant arguments.
    let fd = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    grow_buffers(fd);
    // Kernel receive-queue drops are reported per datagram; a kernel without it loses a metric.
    let _ = set_int(fd, libc::SOL_SOCKET, SO_RXQ_OVFL, 1);
    let (storage, len) = to_sockaddr(address);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for the socket's family.
    check(unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    Ok(UdpSocket::from(owned))
}

/// The steering program of PROTOCOL.md §12: `ld [1]; mod #N; ret a`.
pub(crate) fn steering_program(shards: u32) -> [libc::sock_filter; 3] {
    // BPF_LD | BPF_W | BPF_ABS (0x00 | 0x00 | 0x20), BPF_ALU | BPF_MOD | BPF_K (0x04 | 0x90 |
    // 0x00), BPF_RET | BPF_A (0x06 | 0x10), from linux/bpf_common.h.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_ALU_MOD_K: u16 = 0x94;
    const BPF_RET_A: u16 = 0x16;
    let op = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    // PROTOCOL.md §12: the kernel hands the program the UDP payload, so offset 1 is the first
    // four bytes of the sender peer id, loaded big-endian.
    [
        op(BPF_LD_W_ABS, 1),
        op(BPF_ALU_MOD_K, shards),
        op(BPF_RET_A, 0),
    ]
}

/// Attaches the steering program to the reuseport group `socket` belongs to.
pub(crate) fn attach_steering(socket: &UdpSocket, shards: u32) -> io::Result<()> {
    let mut filter = steering_program(shards.max(1));
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `program` points at `filter`, both live across the call; the kernel copies them.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&program as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Turns on UDP GRO; false where the kernel refuses it.
pub(crate) fn enable_gro(socket: &UdpSocket) -> bool {
    set_int(socket.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1).is_ok()
}

/// Whether the kernel knows UDP_SEGMENT (the way quinn-udp probes it: setting it to 0).
pub(crate) fn gso_supported(socket: &UdpSocket) -> bool {
    set_int(socket.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT, 0).is_ok()
}

/// CPU time this process has used, user plus system (getrusage), for CPU-per-packet figures.
pub(crate) fn process_cpu_time() -> std::time::Duration {
    // SAFETY: rusage is plain data for which all-zero is valid.
    let mut usage: libc::rusage = unsafe { zeroed() };
    // SAFETY: `usage` is a valid rusage the kernel fills.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return std::time::Duration::ZERO;
    }
    let micros = |t: libc::timeval| {
        (t.tv_sec as u64)
            .saturating_mul(1_000_000)
            .saturating_add(t.tv_usec as u64)
    };
    std::time::Duration::from_micros(micros(usage.ru_utime).saturating_add(micros(usage.ru_stime)))
}

pub(crate) fn to_sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data for which all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match address {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

pub(crate) fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; storage is aligned for it.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// One received message of a batch.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Received {
    /// Its sender.
    pub(crate) from: Option<SocketAddr>,
    /// Bytes received (several datagrams when GRO coalesced them).
    pub(crate) len: usize,
    /// The GRO segment size: the message holds datagrams of this size, the last maybe shorter.
    pub(crate) segment: Option<usize>,
    /// The datagram was larger than the slot and was cut.
    pub(crate) truncated: bool,
}

/// Receive slabs and headers for `recvmmsg`, allocated once (the slabs' bounded spares on first
/// need, `slabs.rs`).
pub(crate) struct RecvBatch {
    pub(crate) slabs: Slabs,
    names: Box<[libc::sockaddr_storage]>,
    control: Box<[[u8; CONTROL]]>,
    received: [Received; BATCH],
    /// Kernel receive-queue drops of this socket so far (SO_RXQ_OVFL), the latest seen.
    pub(crate) rxq_overflows: u32,
}

impl RecvBatch {
    /// Slabs for [`BATCH`] whole datagrams, lending none.
    pub(crate) fn new() -> RecvBatch {
        RecvBatch::lending(0)
    }

    /// Slabs for [`BATCH`] whole datagrams, and up to `spares` more to lend from (`slabs.rs`).
    pub(crate) fn lending(spares: usize) -> RecvBatch {
        // SAFETY: sockaddr_storage is plain data for which all-zero is valid.
        let name: libc::sockaddr_storage = unsafe { zeroed() };
        RecvBatch {
            slabs: Slabs::new(BATCH, RECV_SLOT, RECV_STRIDE, spares),
            names: vec![name; BATCH].into_boxed_slice(),
            control: vec![[0; CONTROL]; BATCH].into_boxed_slice(),
            received: [Received {
                from: None,
                len: 0,
                segment: None,
                truncated: false,
            }; BATCH],
            rxq_overflows: 0,
        }
    }

    /// One `recvmmsg` call; returns how many messages arrived (WouldBlock when none).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.slabs.prepare();
        let mut lens = [0usize; BATCH];
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| {
            let spare = self.slabs.slab_mut(i).spare_capacity_mut();
            lens[i] = spare.len().min(RECV_SLOT);
            libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: lens[i],
            }
        });
        // SAFETY: mmsghdr is plain data for which all-zero is valid.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, header) in headers.iter_mut().enumerate() {
            header.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &mut iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = self.control[i].as_mut_ptr().cast();
            header.msg_hdr.msg_controllen = CONTROL as _;
        }
        // SAFETY: every header points at a name, an iovec (a slab's spare capacity, which no
        // one else refers to) and a control buffer that live until the call returns, with
        // their true sizes; the kernel writes within them.
        let n = check(unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        })? as usize;
        for (i, header) in headers.iter().enumerate().take(n) {
            let mut segment = None;
            // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG macros walk only
            // within msg_controllen, and each payload read is of the size its type defines.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&header.msg_hdr);
                while !cmsg.is_null() {
                    let c = &*cmsg;
                    if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == SO_RXQ_OVFL {
                        self.rxq_overflows =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<u32>());
                    } else if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == UDP_GRO {
                        let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
                        segment = usize::try_from(size).ok().filter(|&s| s > 0);
                    }
                    cmsg = libc::CMSG_NXTHDR(&header.msg_hdr, cmsg);
                }
            }
            let len = (header.msg_len as usize).min(lens[i]);
            // SAFETY: the kernel wrote `msg_len` bytes (at most the iovec's length) at the
            // start of this slab's spare capacity, which the iovec pointed at.
            unsafe { self.slabs.slab_mut(i).set_len(len) };
            self.received[i] = Received {
                from: from_sockaddr(&self.names[i]),
                len,
                segment,
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        Ok(n)
    }

    /// What arrived in slot `i` in the last call.
    pub(crate) fn received(&self, i: usize) -> Received {
        self.received[i]
    }

    /// Message `i` of the last call and its bytes.
    pub(crate) fn message(&self, i: usize) -> (Received, &[u8]) {
        (self.received[i], &self.slabs.slab(i)[..])
    }

    /// Message `i` of the last call with its bytes writable: the endpoint opens a sealed
    /// packet in place (`Endpoint::handle`).
    pub(crate) fn message_mut(&mut self, i: usize) -> (Received, &mut [u8]) {
        (self.received[i], &mut self.slabs.slab_mut(i)[..])
    }
}

/// Datagrams the endpoint wrote, packed back to back so that a run to one destination with one
/// size is a contiguous GSO train; sent with `sendmmsg`. Beside them, control datagrams the
/// endpoint lent ([`LentDatagram`], `Endpoint::poll_transmit_lent`): each is a message of its own
/// whose iovec points at the lent buffer itself, so it is sent without a copy, and the batch
/// keeps it, unmoved on the heap, until it is emptied ([`SendBatch::reset`]), when it waits in
/// [`SendBatch::returned`] for the driver to give it back to the endpoint.
pub(crate) struct SendBatch {
    buf: Box<[u8]>,
    used: usize,
    /// The datagrams in the order written.
    items: Vec<Item>,
    /// Items already sent.
    sent: usize,
    gso: bool,
    /// The lent datagrams of the items (an item's `offset` indexes here).
    lent: Vec<LentDatagram>,
    /// Lent datagrams whose send is over, for the driver to give back.
    returned: Vec<LentDatagram>,
}

/// One datagram of a [`SendBatch`]: `len` bytes to `destination`, from `offset` in the batch's
/// buffer, or from the buffer of lent datagram number `offset` when `lent`.
#[derive(Copy, Clone, Debug)]
struct Item {
    destination: SocketAddr,
    offset: usize,
    len: usize,
    lent: bool,
}

/// One message of a [`SendBatch`]: `count` datagrams of `segment` bytes (the last maybe
/// shorter) to one destination, `len` bytes from `offset`; a GSO train when `count > 1`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Train {
    pub(crate) destination: SocketAddr,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) segment: usize,
    pub(crate) count: usize,
}

/// What one [`SendBatch::flush`] did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Datagrams sent.
    pub(crate) datagrams: usize,
    /// `sendmmsg` calls made.
    pub(crate) calls: usize,
    /// Datagrams dropped because the kernel refused them (no route and the like).
    pub(crate) errors: usize,
    /// True when the socket buffer filled; the rest waits for writability.
    pub(crate) blocked: bool,
    /// Datagrams per successful `sendmmsg` call, counted by [`super::backend::batch_bucket`].
    pub(crate) sizes: [u32; super::backend::BATCH_BUCKETS.len()],
}

impl SendBatch {
    /// Room for [`BATCH`] datagrams; `gso` when the kernel knows UDP_SEGMENT.
    pub(crate) fn new(gso: bool) -> SendBatch {
        SendBatch {
            buf: vec![0; BATCH * SEND_SLOT].into_boxed_slice(),
            used: 0,
            items: Vec::with_capacity(BATCH),
            sent: 0,
            gso,
            lent: Vec::with_capacity(BATCH),
            returned: Vec::with_capacity(BATCH),
        }
    }

    /// True while another datagram fits (written into a slot or lent).
    pub(crate) fn has_room(&self) -> bool {
        self.items.len() < BATCH
    }

    /// Queues a datagram the endpoint lent: sent from its own buffer, no copy. Gives it back
    /// when the batch is full.
    pub(crate) fn push_lent(&mut self, lent: LentDatagram) -> Result<(), LentDatagram> {
        if !self.has_room() {
            return Err(lent);
        }
        self.items.push(Item {
            destination: lent.destination(),
            offset: self.lent.len(),
            len: lent.len(),
            lent: true,
        });
        self.lent.push(lent);
        Ok(())
    }

    /// The lent datagrams whose send is over (the batch was emptied since they were queued),
    /// for the driver to give back to the endpoint (`Endpoint::recycle_datagram`).
    pub(crate) fn returned(&mut self) -> std::vec::Drain<'_, LentDatagram> {
        self.returned.drain(..)
    }

    /// Where the bytes of item `at` start: in the batch's buffer, or the lent buffer itself.
    /// Valid until the batch is next emptied or written.
    pub(crate) fn base_at(&mut self, at: usize) -> *mut u8 {
        let Some(&item) = self.items.get(at) else {
            return std::ptr::null_mut();
        };
        if item.lent {
            return self
                .lent
                .get_mut(item.offset)
                .map_or(std::ptr::null_mut(), LentDatagram::as_mut_ptr);
        }
        self.buf
            .get_mut(item.offset..)
            .map_or(std::ptr::null_mut(), <[u8]>::as_mut_ptr)
    }

    /// The buffer for the next datagram, or None when the batch is full.
    pub(crate) fn slot(&mut self) -> Option<&mut [u8]> {
        if !self.has_room() || self.buf.len().saturating_sub(self.used) < SEND_SLOT {
            return None;
        }
        Some(&mut self.buf[self.used..self.used.saturating_add(SEND_SLOT)])
    }

    /// Records the datagram just written into [`SendBatch::slot`].
    pub(crate) fn push(&mut self, destination: SocketAddr, len: usize) {
        let len = len.min(SEND_SLOT);
        self.items.push(Item {
            destination,
            offset: self.used,
            len,
            lent: false,
        });
        self.used = self.used.saturating_add(len);
    }

    /// True when nothing waits to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.items.len()
    }

    /// Items from `start` that form one message: a GSO train of equal sizes to one destination
    /// (the last may be shorter), or a single datagram.
    fn run_from(&self, start: usize) -> usize {
        let first = self.items[start];
        // A lent datagram is a message of its own: its bytes are not beside the others'.
        if !self.gso || first.lent {
            return 1;
        }
        let (destination, size) = (first.destination, first.len);
        let mut end = start.saturating_add(1);
        let mut bytes = size;
        while end < self.items.len() && end.saturating_sub(start) < GSO_MAX_SEGMENTS {
            let Item {
                destination: d,
                len,
                lent,
                ..
            } = self.items[end];
            if lent || d != destination || len > size || bytes.saturating_add(len) > GSO_MAX_BYTES {
                break;
            }
            end = end.saturating_add(1);
            bytes = bytes.saturating_add(len);
            if len < size {
                break;
            }
        }
        end.saturating_sub(start)
    }

    /// Datagrams queued (sent or not) since the batch was last emptied.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The message that starts at item `start`: a GSO train or a single datagram.
    pub(crate) fn train_at(&self, start: usize) -> Train {
        let count = self.run_from(start);
        let first = self.items[start];
        // A run holds at least one item.
        let last = self.items[start.saturating_add(count).saturating_sub(1)];
        Train {
            destination: first.destination,
            offset: first.offset,
            len: train_len(&first, &last),
            segment: first.len,
            count,
        }
    }

    /// Forgets every queued datagram, sent or not; the lent ones wait in
    /// [`returned`](Self::returned) to be given back.
    pub(crate) fn reset(&mut self) {
        self.items.clear();
        self.used = 0;
        self.sent = 0;
        self.returned.append(&mut self.lent);
    }

    /// Stops building GSO trains (the device refused one).
    pub(crate) fn disable_gso(&mut self) {
        self.gso = false;
    }

    /// Sends what is queued with as few `sendmmsg` calls as the socket allows.
    pub(crate) fn flush(&mut self, fd: RawFd) -> Flushed {
        let mut flushed = Flushed::default();
        while !self.is_empty() {
            // Group the remaining items into messages.
            let mut runs = [(0usize, 0usize); BATCH];
            let mut messages = 0usize;
            let mut at = self.sent;
            while at < self.items.len() {
                let n = self.run_from(at);
                runs[messages] = (at, n);
                messages = messages.saturating_add(1);
                at = at.saturating_add(n);
            }
            let mut names = [to_sockaddr(SocketAddr::from(([0, 0, 0, 0], 0))); BATCH];
            let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            });
            let mut control = [[0u8; CONTROL]; BATCH];
            // SAFETY: mmsghdr is plain data for which all-zero is valid.
            let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            for (m, &(first, n)) in runs.iter().enumerate().take(messages) {
                let item = self.items[first];
                let last = self.items[first.saturating_add(n).saturating_sub(1)];
                let size = item.len;
                names[m] = to_sockaddr(item.destination);
                iovecs[m] = libc::iovec {
                    iov_base: self.base_at(first).cast(),
                    iov_len: train_len(&item, &last),
                };
                let header = &mut headers[m].msg_hdr;
                header.msg_name = (&mut names[m].0 as *mut libc::sockaddr_storage).cast();
                header.msg_namelen = names[m].1;
                header.msg_iov = &mut iovecs[m];
                header.msg_iovlen = 1;
                if n > 1 {
                    header.msg_control = control[m].as_mut_ptr().cast();
                    // SAFETY: CMSG_SPACE is a pure size computation.
                    header.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                    // SAFETY: the control buffer holds CMSG_SPACE(2) <= CONTROL bytes and is
                    // pointed at by the header, so FIRSTHDR is non-null and within it.
                    unsafe {
                        let cmsg = libc::CMSG_FIRSTHDR(header);
                        (*cmsg).cmsg_level = libc::SOL_UDP;
                        (*cmsg).cmsg_type = UDP_SEGMENT;
                        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
                    }
                }
            }
            // SAFETY: each of the first `messages` headers points at a name, an iovec within
            // `buf` or a lent datagram's own buffer (held in `self.lent`, on the heap, until
            // the batch is emptied) and (for trains) a control buffer, all alive and unmoved
            // until the call returns.
            let result =
                unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), messages as libc::c_uint, 0) };
            flushed.calls = flushed.calls.saturating_add(1);
            if result >= 0 {
                let mut datagrams = 0usize;
                for &(_, n) in runs.iter().take(result as usize) {
                    self.sent = self.sent.saturating_add(n);
                    datagrams = datagrams.saturating_add(n);
                }
                flushed.datagrams = flushed.datagrams.saturating_add(datagrams);
                if datagrams > 0 {
                    let size = &mut flushed.sizes[super::backend::batch_bucket(datagrams)];
                    *size = size.saturating_add(1);
                }
                continue;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => {
                    flushed.blocked = true;
                    return flushed;
                }
                io::ErrorKind::Interrupted => {}
                _ if error.raw_os_error() == Some(libc::EIO) && self.gso => {
                    // A device without segmentation offload refuses GSO with EIO (quinn-udp does
                    // the same): fall back to one datagram per message for good.
                    tracing::info!("UDP GSO refused by the device; sending without it");
                    self.gso = false;
                }
                _ => {
                    // The first message was refused (no route, say): it would fail the same way
                    // again, so it is dropped and counted, and the rest go on.
                    let (first, n) = runs[0];
                    let to = self.items[first].destination;
                    tracing::debug!(error = %error, to = %to, "sendmmsg failed");
                    self.sent = self.sent.saturating_add(n);
                    flushed.errors = flushed.errors.saturating_add(n);
                }
            }
        }
        self.reset();
        flushed
    }
}

/// The bytes a message from item `first` to item `last` covers: one datagram when lent (its
/// own buffer), else the run packed back to back in the batch's buffer.
fn train_len(first: &Item, last: &Item) -> usize {
    if first.lent {
        return first.len;
    }
    last.offset
        .saturating_add(last.len)
        .saturating_sub(first.offset)
}

#[cfg(test)]
#[path = "sys_tests.rs"]
mod tests;
