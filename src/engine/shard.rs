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
use super::worker::{Reply, ShardWorker};
use crate::channel::ChannelHandle;
use crate::channel::{Endpoint, Event, later};
use crate::stats::Stats;
use crate::wire::{Capabilities, CloseReason};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

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
    (u32::from_be_bytes(word) as usize).checked_rem(shards.max(1))
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
        self.items.len() < BATCH && self.bytes.len().saturating_add(len) <= HANDOVER_BYTES
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
    /// This shard's end of the worker's queues, when a worker runs.
    pub(super) worker: Option<ShardWorker>,
}

pub(super) struct Shard {
    parts: ShardParts,
    /// The socket and the way to wait on it.
    io: Io,
    /// Hand-over batches being filled, one per destination shard.
    outbox: Vec<Option<Handover>>,
    stats: Stats,
    stopping: bool,
    /// Open channels, closed with CHANNEL_CLOSE on shutdown, and whether each is reliable
    /// (RESEND): their messages wait for a full worker queue instead of being dropped.
    channels: HashMap<ChannelHandle, bool>,
    /// Reliable channels are paused while the worker's queue is backed up (PROTOCOL.md §12:
    /// their credit follows the queue's capacity).
    worker_paused: bool,
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
            channels: HashMap::new(),
            worker_paused: false,
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
            // Replies wake a shard only while it sleeps (PROTOCOL.md §12).
            if !wait.is_zero() && self.parts.worker.as_ref().is_some_and(|w| !w.may_sleep()) {
                wait = Duration::ZERO;
            }
            let polled = self.io.wait(wait);
            if let Some(worker) = &self.parts.worker {
                worker.awake();
            }
            match polled {
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
            self.dispatch_events(now);
            if worked {
                last_work = now;
            }
            if now >= next_snapshot || self.stopping {
                self.snapshot();
                next_snapshot = later(now, SNAPSHOT_INTERVAL);
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
        self.dispatch_events(now);
        // The worker's input closes when every shard has let go of it; then it drains its
        // queue, answers, and drops its replier, which closes this shard's reply queue.
        self.drain_worker();
        self.dispatch_events(Instant::now());
        let now = Instant::now();
        for channel in std::mem::take(&mut self.channels).into_keys() {
            self.parts
                .endpoint
                .close_channel(now, channel, CloseReason::Shutdown);
        }
        self.dispatch_events(Instant::now());
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
                self.parts.endpoint.handle(
                    now,
                    from,
                    &mut batch.bytes[start..start.saturating_add(len)],
                );
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

    /// Sends the replies workers queued, batch by batch; true when there were any.
    fn take_replies(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(batch) = self
            .parts
            .worker
            .as_ref()
            .and_then(ShardWorker::try_replies)
        {
            any = true;
            self.reply_batch(now, batch);
        }
        any
    }

    /// Sends one batch of replies and gives their buffers back: the data to the endpoint's
    /// pool, the batch to the workers.
    fn reply_batch(&mut self, now: Instant, mut batch: Vec<Reply>) {
        for reply in batch.drain(..) {
            self.reply(now, reply);
        }
        if let Some(worker) = &self.parts.worker {
            worker.recycle_replies(batch);
        }
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
        self.parts.endpoint.recycle(reply.data);
    }

    /// On the way out: lets go of the worker's input and sends its last replies, waiting until
    /// every replier is gone or the grace period ends.
    fn drain_worker(&mut self) {
        let Some(worker) = self.parts.worker.as_mut() else {
            return;
        };
        // Messages still held for a full queue will not reach the worker now.
        let held = worker.held() as u64;
        if held > 0 {
            self.stats.add("weft_shard_worker_drops_total", None, held);
        }
        worker.close_input();
        let deadline = later(Instant::now(), SHUTDOWN_GRACE);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(batch) = self
                .parts
                .worker
                .as_ref()
                .and_then(|w| w.replies_within(left))
            else {
                break;
            };
            self.reply_batch(Instant::now(), batch);
        }
        if self
            .parts
            .worker
            .as_ref()
            .is_some_and(|w| !w.replies_closed())
        {
            tracing::warn!(
                shard = self.parts.index,
                "the worker did not finish in time"
            );
        }
        self.parts.worker = None;
    }

    /// Tracks channels and hands messages to the worker, all of one turn in one batch; a full
    /// queue refuses and counts (PROTOCOL.md §12: a shard never blocks on a worker), except
    /// that reliable channels' messages wait and those channels pause.
    fn dispatch_events(&mut self, now: Instant) {
        while let Some(event) = self.parts.endpoint.poll_event() {
            log_event(&event);
            match event {
                Event::ChannelOpened {
                    channel,
                    capabilities,
                    ..
                } => {
                    let reliable = capabilities.contains(Capabilities::RESEND);
                    self.channels.insert(channel, reliable);
                    if reliable && self.worker_paused {
                        self.parts.endpoint.set_receive_paused(now, channel, true);
                    }
                }
                Event::ChannelClosed { channel, .. } => {
                    self.channels.remove(&channel);
                }
                Event::Message {
                    channel,
                    message_number,
                    data,
                } => match self.parts.worker.as_mut() {
                    Some(worker) => worker.deliver(channel, message_number, data),
                    None => self.parts.endpoint.recycle(data),
                },
                _ => {}
            }
        }
        let Some(worker) = self.parts.worker.as_mut() else {
            return;
        };
        let endpoint = &mut self.parts.endpoint;
        let channels = &self.channels;
        let mut refused = 0u64;
        let delivered = worker.hand_over(
            |delivery| channels.get(&delivery.channel) == Some(&true),
            |data| {
                refused = refused.saturating_add(1);
                endpoint.recycle(data);
            },
        );
        let depth = worker.queue_depth();
        let (held, capacity) = (worker.held(), worker.capacity());
        if delivered > 0 {
            self.stats
                .add("weft_shard_worker_deliveries_total", None, delivered as u64);
        }
        if refused > 0 {
            self.stats
                .add("weft_shard_worker_drops_total", None, refused);
        }
        self.stats
            .set("weft_shard_worker_queue_depth", None, depth as u64);
        self.stats.set("weft_shard_worker_held", None, held as u64);
        // PROTOCOL.md §12: what arrives on reliable channels never meets a full queue. Their
        // credit stops growing while the queue is three-quarters full or messages are held,
        // and grows again once it has drained to a quarter (hysteresis: pausing touches every
        // channel).
        let pressed = held > 0 || depth >= capacity.saturating_sub(capacity / 4);
        let relieved = held == 0 && depth <= capacity / 4;
        if pressed != self.worker_paused && (pressed || relieved) {
            self.worker_paused = pressed;
            if pressed {
                self.stats.add("weft_shard_worker_pauses_total", None, 1);
            }
            for (&channel, _) in self.channels.iter().filter(|(_, reliable)| **reliable) {
                self.parts
                    .endpoint
                    .set_receive_paused(now, channel, pressed);
            }
        }
    }

    fn snapshot(&mut self) {
        // Sampled once a snapshot, like every gauge here: how far behind this shard is on what
        // the others handed it.
        self.stats.set(
            "weft_shard_handover_queue_depth",
            None,
            self.parts.handover_rx.len() as u64,
        );
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
