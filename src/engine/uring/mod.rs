//! The io_uring backend (PROTOCOL.md §12): one ring per shard, a multishot `RecvMsgMulti` over a
//! provided-buffer ring, one `SendMsg` per GSO train, all submitted with one `io_uring_enter`
//! per loop turn.
//!
//! Memory the kernel may touch — the buffer ring, the receive buffers, the receive `msghdr`,
//! the send batches and their headers — is allocated once, when the backend is made, and never
//! moves or shrinks while a request may use it: a send batch is reused only after the CQE of its
//! last message, and [`UringIo::close`] waits for every request to finish before anything is
//! freed (and leaks the memory rather than free it when the kernel does not answer in time).
//! A control datagram the endpoint lends (`Endpoint::poll_transmit_lent`) is sent from its own
//! heap buffer, held by the send batch like the batch's own bytes: given back to the endpoint
//! (`Endpoint::recycle_datagram`) only when the slot is next filled, after its last CQE.
//!
//! Wake-ups: the shard's `mio::Waker` is registered on a mio `Poll` as in the epoll backend; the
//! ring watches that poll's epoll descriptor with a multishot `PollAdd`, so other shards and
//! workers wake either backend the same way.
#![allow(unsafe_code)]

mod control;
mod memory;
mod refused;

pub use refused::UringRefused;

use super::backend::{Incoming, record_receive, record_send_batches};
use super::sys::{self, BATCH, CONTROL, UDP_SEGMENT};
use crate::channel::{Endpoint, Lendable};
use crate::stats::Stats;
use control::{address_from_name, parse_control};
use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use memory::{BUFFERS, BufRing, RecvHeader, SendSlot};
use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Submission queue entries: a turn pushes at most `SEND_BATCHES * BATCH` sends and a few
/// re-arms and cancels.
const SQ_ENTRIES: u32 = 256;

/// Completion queue entries: room for a burst of receives (one per buffer) and every send.
const CQ_ENTRIES: u32 = 1024;

/// Buffer group id of the ring (one group per io_uring, so any constant).
const GROUP: u16 = 0;

/// Send batches that may be in flight at once (each `BATCH` datagrams, 64 KiB); the endpoint
/// keeps what does not fit. A turn may receive a whole buffer ring's worth (256 messages), so the
/// send side takes as many.
const SEND_BATCHES: usize = 8;

/// Completions copied out of the ring at a time.
const COMPLETIONS_AT_ONCE: usize = 64;

/// How long a closing shard waits for the kernel to finish with its buffers.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// CQE tags: the request kind in the high 32 bits, for sends the batch and message below.
const TAG_RECV: u64 = 1 << 32;
const TAG_WAKE: u64 = 2 << 32;
const TAG_SEND: u64 = 3 << 32;
const TAG_CANCEL: u64 = 4 << 32;
const TAG_MASK: u64 = 0xffff_ffff << 32;

/// Why a request finished, from one CQE.
enum Completion {
    Recv {
        result: i32,
        flags: u32,
    },
    Wake {
        more: bool,
    },
    Send {
        slot: usize,
        message: usize,
        result: i32,
    },
    Other,
}

pub(super) struct UringIo {
    ring: IoUring,
    socket: std::net::UdpSocket,
    /// Holds the shard's waker; the ring polls its descriptor.
    poll: mio::Poll,
    events: mio::Events,
    bufs: BufRing,
    /// Only `msg_namelen` and `msg_controllen` matter to a multishot `RecvMsg`; the kernel reads
    /// it when the request is issued, so it stays boxed and untouched.
    recv_msghdr: RecvHeader,
    recv_armed: bool,
    wake_armed: bool,
    sends: Vec<SendSlot>,
    /// The endpoint had more to send than the free slots held.
    send_backlog: bool,
    gso: bool,
    /// The latest SO_RXQ_OVFL count seen.
    rxq_overflows: u32,
    /// The buffer ring is registered with the ring (unregistered before the memory goes).
    registered: bool,
}

/// A shard's ring and registered buffers, made before the shard's socket is handed over so that
/// a refusal leaves the socket to the epoll backend.
pub(super) struct UringSetup {
    ring: IoUring,
    bufs: BufRing,
}

impl UringSetup {
    /// Creates a ring and registers its buffer ring; `fault` makes it fail with that errno, as
    /// seccomp would (the hook behind `EngineConfig::io_fault`).
    pub(super) fn new(fault: Option<i32>, spares: usize) -> Result<UringSetup, UringRefused> {
        let refused = |stage: &'static str| {
            move |e: io::Error| UringRefused {
                stage,
                errno: e.raw_os_error().unwrap_or(libc::EINVAL),
            }
        };
        if let Some(errno) = fault {
            return Err(UringRefused {
                stage: "io_uring_setup",
                errno,
            });
        }
        // COOP_TASKRUN: completions are not pushed with an interrupt while the shard runs; the
        // kernel raises IORING_SQ_TASKRUN instead and the loop's next enter collects them all at
        // once (5.19+; older kernels get a plain ring).
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })
            .map_err(refused("io_uring_setup"))?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            // Waiting with a timeout needs EXT_ARG (5.11); NODROP keeps a CQ overflow lossless.
            return Err(UringRefused {
                stage: "io_uring_setup (features)",
                errno: libc::EOPNOTSUPP,
            });
        }
        let mut bufs = BufRing::new(spares).map_err(refused("buffer allocation"))?;
        // SAFETY: `bufs.ring` is a page-aligned allocation of BUFFERS entries. It lives until
        // `bufs` drops, which comes after the ring (field order in UringSetup and UringIo),
        // after `unregister_buf_ring`, or never (`leak`).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.ring.as_ptr() as u64,
                BUFFERS,
                GROUP,
                0,
            )
        }
        .map_err(refused("register_buf_ring"))?;
        for bid in 0..BUFFERS {
            bufs.recycle(bid);
        }
        bufs.publish();
        Ok(UringSetup { ring, bufs })
    }
}

impl UringIo {
    /// Runs `socket` on a ring made by [`UringSetup::new`]; `poll` holds the shard's waker.
    pub(super) fn new(
        setup: UringSetup,
        poll: mio::Poll,
        socket: std::net::UdpSocket,
        gso: bool,
    ) -> io::Result<UringIo> {
        // The ring, not a blocking call, waits for the socket: with O_NONBLOCK some kernels
        // complete a request with EAGAIN instead of arming a poll for it.
        socket.set_nonblocking(false)?;
        // SAFETY: msghdr is plain data for which all-zero is valid.
        let mut recv_msghdr: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
        recv_msghdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // PROTOCOL.md §12: room for the SO_RXQ_OVFL and UDP_GRO control messages.
        recv_msghdr.msg_controllen = CONTROL as _;
        let recv_msghdr = RecvHeader(recv_msghdr);
        let UringSetup { ring, bufs } = setup;
        Ok(UringIo {
            ring,
            socket,
            poll,
            events: mio::Events::with_capacity(8),
            bufs,
            recv_msghdr,
            recv_armed: false,
            wake_armed: false,
            sends: (0..SEND_BATCHES).map(|_| SendSlot::new(gso)).collect(),
            send_backlog: false,
            gso,
            rxq_overflows: 0,
            registered: true,
        })
    }

    /// Pushes an SQE, submitting first when the queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built in this file points only at memory that outlives its
            // request (module docs): the receive msghdr, the buffer ring, a send slot whose
            // `inflight` count keeps it untouched until the CQE, with the lent datagrams its
            // batch holds (their heap buffers are given back only after the batch is reset,
            // which waits for the slot's last CQE).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Arms the multishot receive and the wake-up poll when they are not running.
    fn arm(&mut self) -> io::Result<()> {
        if !self.recv_armed {
            let entry = opcode::RecvMsgMulti::new(
                Fd(self.socket.as_raw_fd()),
                &*self.recv_msghdr.0 as *const libc::msghdr,
                GROUP,
            )
            .build()
            .user_data(TAG_RECV);
            self.push(&entry)?;
            self.recv_armed = true;
        }
        if !self.wake_armed {
            let entry = opcode::PollAdd::new(Fd(self.poll.as_raw_fd()), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(TAG_WAKE);
            self.push(&entry)?;
            self.wake_armed = true;
        }
        Ok(())
    }

    /// The kernel's running count of drops on the socket, as the last completion saw it.
    pub(super) fn rxq_overflows(&self) -> u32 {
        self.rxq_overflows
    }

    pub(super) fn busy(&mut self) -> bool {
        self.send_backlog || self.ring.submission().taskrun() || !self.ring.completion().is_empty()
    }

    /// The one `io_uring_enter` of a turn: submits what transmit and re-arming pushed and, when
    /// `timeout` is not zero and nothing is complete yet, sleeps for a completion.
    pub(super) fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.arm()?;
        let (pending, kernel_work) = {
            let sq = self.ring.submission();
            (!sq.is_empty(), sq.taskrun() || sq.cq_overflow())
        };
        let ready = !self.ring.completion().is_empty();
        if timeout.is_zero() || ready {
            // While busy-polling, enter only to submit or to collect completions the kernel
            // holds back (COOP_TASKRUN): otherwise no syscall at all.
            if pending || kernel_work {
                self.ring.submit()?;
            }
            return Ok(());
        }
        let ts = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            // ETIME: the timeout passed; EBUSY: the CQ overflowed and is read next.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn classify(cqe: &cqueue::Entry) -> Completion {
        let data = cqe.user_data();
        match data & TAG_MASK {
            TAG_RECV => Completion::Recv {
                result: cqe.result(),
                flags: cqe.flags(),
            },
            TAG_WAKE => Completion::Wake {
                more: cqueue::more(cqe.flags()),
            },
            TAG_SEND => Completion::Send {
                slot: ((data >> 16) & 0xffff) as usize,
                message: (data & 0xffff) as usize,
                result: cqe.result(),
            },
            _ => Completion::Other,
        }
    }

    /// Reads every completion: hands received datagrams to `deliver`, frees send slots, drains
    /// wake-ups; returns the datagrams delivered.
    pub(super) fn receive(
        &mut self,
        stats: &mut Stats,
        deliver: impl FnMut(&mut Stats, SocketAddr, Incoming<'_>),
    ) -> usize {
        // Slabs the workers let go of are spares again; this call lends from no more buffers
        // than it can replace (`slabs.rs`).
        self.bufs.slabs.reclaim_pinned();
        self.bufs.slabs.set_budget();
        let datagrams = self.complete(stats, deliver);
        record_receive(stats, datagrams, self.rxq_overflows);
        datagrams
    }

    /// Reads every completion without counting receive batches (see [`UringIo::receive`]).
    fn complete(
        &mut self,
        stats: &mut Stats,
        mut deliver: impl FnMut(&mut Stats, SocketAddr, Incoming<'_>),
    ) -> usize {
        let mut datagrams = 0usize;
        let mut recycled = false;
        let mut woken = false;
        let mut scratch = [const { MaybeUninit::<cqueue::Entry>::uninit() }; COMPLETIONS_AT_ONCE];
        loop {
            // Copied out in one go: one head update per chunk, not per completion.
            let cqes = self.ring.completion().fill(&mut scratch);
            if cqes.is_empty() {
                break;
            }
            for cqe in cqes.iter() {
                match Self::classify(cqe) {
                    Completion::Recv { result, flags } => {
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            if result > 0 {
                                let delivered =
                                    self.deliver_buffer(bid, result as usize, stats, &mut deliver);
                                datagrams = datagrams.saturating_add(delivered);
                            }
                            self.bufs.recycle(bid);
                            recycled = true;
                        }
                        if result == -libc::ENOBUFS {
                            // Every buffer was in use: the datagrams wait in the socket queue and
                            // the receive is armed again once buffers are back.
                            stats.add("weft_shard_recv_nobufs_total", None, 1);
                        } else if result < 0 && result != -libc::ECANCELED {
                            stats.add("weft_shard_socket_errors_total", Some(("op", "recv")), 1);
                            tracing::debug!(error = %io::Error::from_raw_os_error(result.saturating_neg()), "io_uring recvmsg failed");
                        }
                        if !cqueue::more(flags) {
                            self.recv_armed = false;
                            stats.add("weft_shard_recv_rearms_total", None, 1);
                        }
                    }
                    Completion::Wake { more } => {
                        woken = true;
                        if !more {
                            self.wake_armed = false;
                        }
                    }
                    Completion::Send {
                        slot,
                        message,
                        result,
                    } => self.send_done(slot, message, result, stats),
                    Completion::Other => {}
                }
            }
        }
        if recycled {
            self.bufs.publish();
        }
        if woken {
            // Empty the epoll ready list, once per turn however many wake-ups came, so the next
            // wake-up is a new edge; the waker's events need nothing else (the loop looks at its
            // queues every turn).
            let _ = self.poll.poll(&mut self.events, Some(Duration::ZERO));
        }
        datagrams
    }

    /// Parses one multishot `RecvMsg` buffer and delivers its datagrams: cut from its slab to
    /// be lent when the slabs' bound allows (`slabs.rs`), else in place, copied out of.
    fn deliver_buffer(
        &mut self,
        bid: u16,
        len: usize,
        stats: &mut Stats,
        deliver: &mut impl FnMut(&mut Stats, SocketAddr, Incoming<'_>),
    ) -> usize {
        let (from, segment, start, end) = {
            let Some(slab) = self.bufs.filled(bid, len) else {
                return 0;
            };
            let buffer: &[u8] = slab;
            let Ok(out) = io_uring::types::RecvMsgOut::parse(buffer, &self.recv_msghdr.0) else {
                stats.add("weft_shard_socket_errors_total", Some(("op", "recv")), 1);
                return 0;
            };
            let control = parse_control(out.control_data());
            if let Some(overflows) = control.rxq_overflows {
                self.rxq_overflows = overflows;
            }
            if out.is_payload_truncated() {
                stats.add("weft_shard_truncated_total", None, 1);
                return 0;
            }
            let Some(from) = address_from_name(out.name_data()) else {
                return 0;
            };
            let bytes = out.payload_data();
            // Where the payload lies in the buffer, to hand it over writable below.
            let start = (bytes.as_ptr() as usize).wrapping_sub(buffer.as_ptr() as usize);
            let segment = control.segment.unwrap_or(bytes.len()).max(1);
            let end = start.checked_add(bytes.len());
            match end.filter(|&end| start <= end && end <= buffer.len()) {
                Some(end) => (from, segment, start, end),
                None => return 0,
            }
        };
        let mut datagrams = 0usize;
        if self.bufs.slabs.may_lend() {
            let mut train = self.bufs.slabs.take(usize::from(bid));
            let _headroom = train.split_to(start);
            train.truncate(end.saturating_sub(start));
            // A GRO train holds several datagrams of `segment` bytes, the last maybe shorter.
            while !train.is_empty() {
                let piece = train.split_to(segment.min(train.len()));
                let mut datagram = Lendable::new(piece);
                datagrams = datagrams.saturating_add(1);
                deliver(stats, from, Incoming::Lent(&mut datagram));
            }
            return datagrams;
        }
        let slab = self.bufs.slabs.slab_mut(usize::from(bid));
        let Some(bytes) = slab.get_mut(start..end) else {
            return 0;
        };
        for datagram in bytes.chunks_mut(segment) {
            datagrams = datagrams.saturating_add(1);
            deliver(stats, from, Incoming::Copied(datagram));
        }
        datagrams
    }

    fn send_done(&mut self, slot: usize, message: usize, result: i32, stats: &mut Stats) {
        let Some(send) = self.sends.get_mut(slot) else {
            return;
        };
        let datagrams = send.datagrams.get(message).copied().unwrap_or(0);
        if result >= 0 {
            stats.add("weft_shard_datagrams_sent_total", None, datagrams as u64);
        } else {
            if result == -libc::EIO && self.gso {
                // A device without segmentation offload refuses GSO with EIO (as in sys.rs).
                tracing::info!("UDP GSO refused by the device; sending without it");
                self.gso = false;
                for other in &mut self.sends {
                    other.batch.disable_gso();
                }
            }
            stats.add(
                "weft_shard_socket_errors_total",
                Some(("op", "send")),
                datagrams as u64,
            );
        }
        let send = &mut self.sends[slot];
        send.inflight = send.inflight.saturating_sub(1);
        if send.inflight == 0 {
            send.batch.reset();
        }
    }

    /// Fills free send slots from the endpoint and pushes one `SendMsg` per train; the next
    /// [`UringIo::wait`] submits them all at once. Returns the datagrams pushed.
    pub(super) fn transmit(&mut self, endpoint: &mut Endpoint, stats: &mut Stats) -> usize {
        let mut pushed = 0usize;
        let mut sizes = [0u32; super::backend::BATCH_BUCKETS.len()];
        // Set when the endpoint ran out before the free slots did.
        let mut drained = false;
        // Every slot whose sends all completed gives its lent datagrams back first, whether or
        // not it is filled this turn, so the endpoint's pool stays warm.
        for slot in self.sends.iter_mut().filter(|slot| slot.inflight == 0) {
            slot.batch.reset();
            for lent in slot.batch.returned() {
                endpoint.recycle_datagram(lent);
            }
        }
        for index in 0..self.sends.len() {
            if self.sends[index].inflight > 0 {
                continue;
            }
            let slot = &mut self.sends[index];
            slot.batch.reset();
            while slot.batch.has_room() {
                // Queued control datagrams are lent, sent from the endpoint's own buffers,
                // which the batch holds until the slot's completions are in.
                if let Some(lent) = endpoint.poll_transmit_lent() {
                    if let Err(lent) = slot.batch.push_lent(lent) {
                        endpoint.recycle_datagram(lent);
                        break;
                    }
                    continue;
                }
                let Some(buf) = slot.batch.slot() else {
                    break;
                };
                match endpoint.poll_transmit(buf) {
                    Some(transmit) => slot.batch.push(transmit.destination, transmit.len),
                    None => break,
                }
            }
            let queued = slot.batch.len();
            let full = slot.batch.slot().is_none();
            if queued == 0 {
                drained = true;
                break;
            }
            if let Err(e) = self.submit_slot(index) {
                tracing::warn!(error = %e, "io_uring send submission failed");
                stats.add(
                    "weft_shard_socket_errors_total",
                    Some(("op", "send")),
                    queued as u64,
                );
                if self.sends[index].inflight == 0 {
                    self.sends[index].batch.reset();
                }
                drained = true;
                break;
            }
            pushed = pushed.saturating_add(queued);
            let size = &mut sizes[super::backend::batch_bucket(queued)];
            *size = size.saturating_add(1);
            if !full {
                drained = true;
                break;
            }
        }
        // No slot left free while the endpoint may hold more: it waits for a send CQE, and
        // the loop must not sleep meanwhile.
        self.send_backlog = !drained;
        record_send_batches(stats, &sizes);
        pushed
    }

    /// Builds the headers of slot `index` and pushes one `SendMsg` per train.
    fn submit_slot(&mut self, index: usize) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let mut entries = [const { None }; BATCH];
        let messages = {
            let slot = &mut self.sends[index];
            let items = slot.batch.len();
            let mut at = 0;
            let mut message = 0;
            while at < items {
                let train = slot.batch.train_at(at);
                // The slot's buffer, or a lent datagram's own: both stay put until the slot's
                // completions are in (the batch is reset only then).
                let base = slot.batch.base_at(at);
                at = at.saturating_add(train.count);
                let (name, name_len) = sys::to_sockaddr(train.destination);
                slot.names[message] = name;
                slot.iovecs[message] = libc::iovec {
                    iov_base: base.cast(),
                    iov_len: train.len,
                };
                // SAFETY: msghdr is plain data for which all-zero is valid.
                let mut header: libc::msghdr = unsafe { zeroed() };
                header.msg_name = (&mut slot.names[message] as *mut libc::sockaddr_storage).cast();
                header.msg_namelen = name_len;
                header.msg_iov = &mut slot.iovecs[message];
                header.msg_iovlen = 1;
                if train.count > 1 {
                    let control = &mut slot.control[message];
                    header.msg_control = control.as_mut_ptr().cast();
                    // SAFETY: CMSG_SPACE is a pure size computation.
                    header.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                    // SAFETY: the control buffer holds CMSG_SPACE(2) <= CONTROL bytes and the
                    // header points at it, so FIRSTHDR is non-null and inside it.
                    unsafe {
                        let cmsg = libc::CMSG_FIRSTHDR(&header);
                        (*cmsg).cmsg_level = libc::SOL_UDP;
                        (*cmsg).cmsg_type = UDP_SEGMENT;
                        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                        std::ptr::write_unaligned(
                            libc::CMSG_DATA(cmsg).cast::<u16>(),
                            train.segment as u16,
                        );
                    }
                }
                slot.headers[message] = header;
                slot.datagrams[message] = train.count;
                entries[message] = Some(
                    opcode::SendMsg::new(Fd(fd), &slot.headers[message] as *const libc::msghdr)
                        .build()
                        .user_data(TAG_SEND | ((index as u64) << 16) | message as u64),
                );
                message = message.saturating_add(1);
            }
            slot.inflight = message;
            message
        };
        for (pushed, entry) in entries.iter().take(messages).flatten().enumerate() {
            if let Err(e) = self.push(entry) {
                // Only the entries already queued will complete; the slot stays busy until
                // they have.
                self.sends[index].inflight = pushed;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends what is left, cancels the receive and the wake-up poll, and waits (bounded) until
    /// the kernel has finished every request, so the buffers can be freed.
    pub(super) fn close(&mut self, endpoint: &mut Endpoint, stats: &mut Stats) {
        self.transmit(endpoint, stats);
        let cancels = [TAG_RECV, TAG_WAKE]
            .map(|tag| opcode::AsyncCancel::new(tag).build().user_data(TAG_CANCEL));
        for (entry, armed) in cancels.iter().zip([self.recv_armed, self.wake_armed]) {
            if armed && self.push(entry).is_err() {
                break;
            }
        }
        let deadline = crate::channel::later(Instant::now(), CLOSE_GRACE);
        while !self.idle() && Instant::now() < deadline {
            let ts = Timespec::from(Duration::from_millis(10));
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            // Datagrams still arriving during the stop are read and dropped, uncounted.
            self.complete(stats, |_, _, _| {});
        }
        if self.idle() {
            if self.registered && self.ring.submitter().unregister_buf_ring(GROUP).is_ok() {
                self.registered = false;
            }
        } else {
            tracing::warn!("io_uring requests still in flight at shutdown; leaking their buffers");
        }
    }

    /// No request is in flight.
    fn idle(&self) -> bool {
        !self.recv_armed && !self.wake_armed && self.sends.iter().all(|s| s.inflight == 0)
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        if !self.idle() {
            // `close` did not run or timed out: the kernel may still write to the receive
            // buffers or read the send slots, so none of that memory may be freed.
            self.bufs.leak = true;
            for slot in std::mem::take(&mut self.sends) {
                std::mem::forget(slot);
            }
            // SAFETY: msghdr is plain data for which all-zero is valid.
            let empty = Box::new(unsafe { zeroed::<libc::msghdr>() });
            std::mem::forget(std::mem::replace(&mut self.recv_msghdr.0, empty));
            return;
        }
        if self.registered {
            let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        }
        // Nothing is in flight, so the buffers may go (fields drop after this body: the ring
        // first, then the buffers).
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests;
