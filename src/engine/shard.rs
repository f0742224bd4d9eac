//! One shard: a pinned thread with its own socket, endpoint, buffers and timers (PROTOCOL.md §12:
//! share nothing on the hot path).
//!
//! Each turn: wait on the I/O backend (busy-polling briefly after work before sleeping); receive
//! a batch; hand each datagram to the local endpoint, or, when another shard owns its sender,
//! to that shard's hand-over queue; take in the batches other shards handed over; run due
//! timers; send what the endpoint queued; publish counters about once a second. The backend
//! (epoll or io_uring, `io.rs`) is the only part that touches the socket.

use super::io::Io;
use super::log_event;
use super::sys::BATCH;
use super::worker::{Delivery, Reply};
use crate::channel::ChannelHandle;
use crate::channel::{Endpoint, Event, Stats};
use crate::wire::CloseReason;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Token, Waker};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

pub(super) const SOCKET: Token = Token(0);
pub(super) const WAKER: Token = Token(1);

/// How long a shard keeps polling without sleeping after its last piece of work: a burst's next
/// packet usually arrives sooner than a sleep and a wake-up take.
const BUSY_POLL: Duration = Duration::from_micros(50);

/// How often a shard copies its counters for the publisher (PROTOCOL.md §12: about once a
/// second, never per packet).
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes one hand-over batch may hold; a datagram that does not fit starts the next batch.
const HANDOVER_BYTES: usize = 64 * 1024;

/// Longest a stopping shard waits for the worker's last replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The shard that owns a datagram's sender: `u32::from_be_bytes(pid[..4]) % N`, the same answer
/// the steering program gives (PROTOCOL.md §12). A datagram too short to name a sender stays
/// where it landed; the endpoint drops it as unparseable.
pub fn owner_of(datagram: &[u8], shards: usize) -> Option<usize> {
    let word: [u8; 4] = datagram.get(1..5)?.try_into().ok()?;
    Some(u32::from_be_bytes(word) as usize % shards.max(1))
}

/// Datagrams one shard passes to another in one queue operation; the buffers go back to the
/// sender for reuse, so hand-over allocates nothing in steady state.
pub(super) struct Handover {
    from: usize,
    bytes: Vec<u8>,
    items: Vec<(SocketAddr, usize, usize)>,
}

impl Handover {
    fn new(from: usize) -> Handover {
        Handover {
            from,
            bytes: Vec::with_capacity(HANDOVER_BYTES),
            items: Vec::with_capacity(BATCH),
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.items.len() < BATCH && self.bytes.len() + len <= HANDOVER_BYTES
    }
}

/// What a shard shares with the engine: its published counters.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// The shard's endpoint counters.
    pub endpoint: Stats,
    /// The shard loop's own counters (`weft_shard_*`), published with a `shard` label.
    pub engine: Stats,
}

/// Everything a shard thread needs, moved into it.
pub(super) struct ShardParts {
    pub(super) index: usize,
    pub(super) shards: usize,
    pub(super) endpoint: Endpoint,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) wakers: Arc<[Waker]>,
    pub(super) handover_tx: Arc<[Sender<Handover>]>,
    pub(super) handover_rx: Receiver<Handover>,
    pub(super) recycle_tx: Arc<[Sender<Handover>]>,
    pub(super) recycle_rx: Receiver<Handover>,
    pub(super) snapshot: Arc<Mutex<ShardStats>>,
    /// Every shard meets here on the way out, after its last hand-over and before draining.
    pub(super) exit: Arc<Barrier>,
    /// The worker's input queue, when a worker runs.
    pub(super) deliver: Option<Sender<Delivery>>,
    /// This shard's queue of worker replies.
    pub(super) replies: Option<Receiver<Reply>>,
}

pub(super) struct Shard {
    parts: ShardParts,
    /// The socket and the way to wait on it.
    io: Io,
    /// Hand-over batches being filled, one per destination shard.
    outbox: Vec<Option<Handover>>,
    stats: Stats,
    stopping: bool,
    /// Open channels, closed with CHANNEL_CLOSE on shutdown.
    channels: HashSet<ChannelHandle>,
}

impl Shard {
    pub(super) fn new(parts: ShardParts, io: Io) -> io::Result<Shard> {
        let shards = parts.shards;
        Ok(Shard {
            parts,
            io,
            outbox: (0..shards).map(|_| None).collect(),
            stats: Stats::new(),
            stopping: false,
            channels: HashSet::new(),
        })
    }

    /// Runs until the engine's stop flag is set; returns the final counters.
    pub(super) fn run(mut self) -> ShardStats {
        let mut next_snapshot = Instant::now();
        let mut last_work = Instant::now();
        loop {
            let now = Instant::now();
            super::tell_wall_clock(&mut self.parts.endpoint);
            let mut wait = next_snapshot.saturating_duration_since(now);
            if let Some(deadline) = self.parts.endpoint.poll_timeout() {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            if self.io.busy() || now.duration_since(last_work) < BUSY_POLL {
                wait = Duration::ZERO;
            }
            match self.io.wait(wait) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(shard = self.parts.index, error = %e, "poll failed");
                    break;
                }
            }
            if self.parts.stop.load(Ordering::Acquire) && !self.stopping {
                self.stopping = true;
            }
            let now = Instant::now();
            let mut worked = self.receive(now) > 0;
            worked |= self.take_handovers(now);
            if self.parts.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.parts.endpoint.handle_timeout(now);
            }
            worked |= self.transmit() > 0;
            worked |= self.take_replies(now);
            self.dispatch_events();
            if worked {
                last_work = now;
            }
            if now >= next_snapshot || self.stopping {
                self.snapshot();
                next_snapshot = now + SNAPSHOT_INTERVAL;
            }
            if self.stopping {
                break;
            }
        }
        // A clean stop: once every shard has stopped reading and handed over what it read, each
        // takes in what it was handed and sends the answers, so no hand-over is lost.
        self.flush_handovers();
        self.parts.exit.wait();
        let now = Instant::now();
        self.take_handovers(now);
        self.dispatch_events();
        // The worker's input closes when every shard has let go of it; then it drains its
        // queue, answers, and drops its replier, which closes this shard's reply queue.
        self.parts.deliver = None;
        if let Some(replies) = self.parts.replies.take() {
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match replies.recv_timeout(left) {
                    Ok(reply) => self.reply(Instant::now(), reply),
                    Err(_) => break,
                }
            }
        }
        self.dispatch_events();
        let now = Instant::now();
        for channel in std::mem::take(&mut self.channels) {
            self.parts
                .endpoint
                .close_channel(now, channel, CloseReason::Shutdown);
        }
        self.dispatch_events();
        self.io.close(&mut self.parts.endpoint, &mut self.stats);
        self.snapshot();
        self.parts
            .snapshot
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Takes a batch from the backend; returns the datagrams read.
    fn receive(&mut self, now: Instant) -> usize {
        let Shard {
            parts, io, outbox, ..
        } = self;
        let datagrams = io.receive(&mut self.stats, |stats, from, datagram| {
            let owner = owner_of(datagram, parts.shards).unwrap_or(parts.index);
            if owner == parts.index {
                parts.endpoint.handle(now, from, datagram);
            } else {
                Self::hand_over(parts, outbox, stats, owner, from, datagram);
            }
        });
        self.flush_handovers();
        datagrams
    }

    /// Queues a datagram whose sender another shard owns (PROTOCOL.md §12: handed over through
    /// a lock-free queue).
    fn hand_over(
        parts: &ShardParts,
        outbox: &mut [Option<Handover>],
        stats: &mut Stats,
        owner: usize,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        stats.add("weft_shard_handovers_out_total", None, 1);
        let slot = &mut outbox[owner];
        if slot.as_ref().is_some_and(|b| !b.fits(datagram.len())) {
            if let Some(full) = slot.take() {
                Self::send_handover(parts, stats, owner, full);
            }
        }
        let batch = slot.get_or_insert_with(|| {
            parts
                .recycle_rx
                .try_recv()
                .unwrap_or_else(|_| Handover::new(parts.index))
        });
        let start = batch.bytes.len();
        batch.bytes.extend_from_slice(datagram);
        batch.items.push((from, start, datagram.len()));
    }

    fn send_handover(parts: &ShardParts, stats: &mut Stats, owner: usize, batch: Handover) {
        let items = batch.items.len() as u64;
        match parts.handover_tx[owner].try_send(batch) {
            Ok(()) => {
                let _ = parts.wakers[owner].wake();
            }
            // A shard never waits on another: a full queue drops the batch and counts it.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                stats.add("weft_shard_handover_drops_total", None, items);
            }
        }
    }

    fn flush_handovers(&mut self) {
        for owner in 0..self.outbox.len() {
            if let Some(batch) = self.outbox[owner].take() {
                Self::send_handover(&self.parts, &mut self.stats, owner, batch);
            }
        }
    }

    /// Feeds datagrams other shards handed over; true when there were any.
    fn take_handovers(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Ok(mut batch) = self.parts.handover_rx.try_recv() {
            any = true;
            self.stats.add(
                "weft_shard_handovers_in_total",
                None,
                batch.items.len() as u64,
            );
            for &(from, start, len) in &batch.items {
                self.parts
                    .endpoint
                    .handle(now, from, &batch.bytes[start..start + len]);
            }
            batch.bytes.clear();
            batch.items.clear();
            // Back to its maker; if that queue is full the batch is simply freed.
            let _ = self.parts.recycle_tx[batch.from].try_send(batch);
        }
        any
    }

    /// Hands what the endpoint queued to the backend; returns datagrams sent or submitted.
    fn transmit(&mut self) -> usize {
        self.io.transmit(&mut self.parts.endpoint, &mut self.stats)
    }

    /// Sends the replies workers queued; true when there were any.
    fn take_replies(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(reply) = self.parts.replies.as_ref().and_then(|r| r.try_recv().ok()) {
            any = true;
            self.reply(now, reply);
        }
        any
    }

    fn reply(&mut self, now: Instant, reply: Reply) {
        if self
            .parts
            .endpoint
            .send(now, reply.channel, &reply.data)
            .is_err()
        {
            self.stats.add("weft_shard_reply_errors_total", None, 1);
        }
    }

    /// Tracks channels and hands messages to the worker; a full queue refuses and counts
    /// (PROTOCOL.md §12: a shard never blocks on a worker).
    fn dispatch_events(&mut self) {
        while let Some(event) = self.parts.endpoint.poll_event() {
            log_event(&event);
            match event {
                Event::ChannelOpened { channel, .. } => {
                    self.channels.insert(channel);
                }
                Event::ChannelClosed { channel, .. } => {
                    self.channels.remove(&channel);
                }
                Event::Message {
                    channel,
                    message_number,
                    data,
                } => {
                    let Some(deliver) = &self.parts.deliver else {
                        continue;
                    };
                    let delivery = Delivery {
                        shard: self.parts.index,
                        channel,
                        message_number,
                        data,
                    };
                    if deliver.try_send(delivery).is_err() {
                        self.stats.add("weft_shard_worker_drops_total", None, 1);
                    } else {
                        self.stats
                            .add("weft_shard_worker_deliveries_total", None, 1);
                    }
                }
                _ => {}
            }
        }
        if let Some(deliver) = &self.parts.deliver {
            self.stats
                .set("weft_shard_worker_queue_depth", None, deliver.len() as u64);
        }
    }

    fn snapshot(&mut self) {
        if let Ok(mut shared) = self.parts.snapshot.lock() {
            shared.endpoint.clone_from(self.parts.endpoint.stats());
            shared.engine.clone_from(&self.stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_the_first_four_sender_bytes_mod_n() {
        let mut datagram = [0u8; 37];
        datagram[1..5].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(owner_of(&datagram, 2), Some(1));
        assert_eq!(owner_of(&datagram, 4), Some(3));
        assert_eq!(owner_of(&datagram, 7), Some(0));
        datagram[1..5].copy_from_slice(&0x0100_0000u32.to_be_bytes());
        // Big-endian: the first byte is the most significant.
        assert_eq!(owner_of(&datagram, 3), Some((0x0100_0000 % 3) as usize));
        assert_eq!(owner_of(&datagram[..4], 2), None);
    }
}
