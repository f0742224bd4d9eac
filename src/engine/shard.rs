//! One shard: a pinned thread with its own socket, endpoint, buffers and timers (PROTOCOL.md §12:
//! share nothing on the hot path).
//!
//! Each turn: wait on the I/O backend (busy-polling briefly after work before sleeping); receive
//! a batch; hand each datagram to the local endpoint, or, when another shard owns its sender,
//! to that shard's hand-over queue; take in the batches other shards handed over; run due
//! timers; carry out the worker's requests; hand the turn's messages to the worker and tell the
//! endpoint the room left; send what the endpoint queued; publish counters about once a second. The backend
//! (epoll or io_uring, `io.rs`) is the only part that touches the socket.

use super::backend::Incoming;
use super::bare::{Answered, BareOpens, BareRoutes, RouteView};
use super::io::Io;
use super::log_event;
use super::sys::BATCH;
use super::worker::WorkerGate;
use crate::channel::ChannelHandle;
use crate::channel::{Endpoint, Event, Lendable, Payload, later};
use crate::handle::FxHashMap;
use crate::service::{Delivery, Input, OpenFailure, Request, ShardLink};
use crate::stats::Stats;
use crate::wire::{Capabilities, CloseReason};
use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// The longest a shard keeps polling without sleeping after its last piece of work: a burst's
/// next packet, or a worker's answer, usually arrives sooner than a sleep and a wake-up take.
/// How long it spins for the network is learnt below that (`shard/spin.rs`).
const BUSY_POLL: Duration = Duration::from_micros(50);

/// How often a shard copies its counters for the publisher (PROTOCOL.md §12: about once a
/// second, never per packet).
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes one hand-over batch may hold; a datagram that does not fit starts the next batch.
const HANDOVER_BYTES: usize = 64 * 1024;

/// Longest a stopping shard waits for the worker's last replies.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

mod opens;
mod spin;

/// The shard that owns a datagram's sender: `u32::from_be_bytes(pid[..4]) % N`, the same answer
/// the steering program gives (PROTOCOL.md §12). A datagram too short to name a sender stays
/// where it landed; the endpoint drops it as unparseable.
pub fn owner_of(datagram: &[u8], shards: usize) -> Option<usize> {
    let word: [u8; 4] = datagram.get(1..5)?.try_into().ok()?;
    (u32::from_be_bytes(word) as usize).checked_rem(shards.max(1))
}

/// Datagrams one shard passes to another in one queue operation; the buffers go back to the
/// sender for reuse, so hand-over allocates nothing in steady state. A datagram in receive
/// memory the backend lends goes over as it is, a piece of its slab (no copy: the slab stays
/// pinned, within the sending shard's bound, until the other shard is done with it); others
/// are copied into `bytes`.
pub(super) struct Handover {
    from: usize,
    bytes: Vec<u8>,
    items: Vec<(SocketAddr, usize, usize)>,
    lent: Vec<(SocketAddr, BytesMut)>,
}

impl Handover {
    fn new(from: usize) -> Handover {
        Handover {
            from,
            bytes: Vec::with_capacity(HANDOVER_BYTES),
            items: Vec::with_capacity(BATCH),
            lent: Vec::with_capacity(BATCH),
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.items.len().saturating_add(self.lent.len()) < BATCH
            && self.bytes.len().saturating_add(len) <= HANDOVER_BYTES
    }
}

/// What a shard shares with the engine: its published counters.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// The shard's endpoint counters.
    pub endpoint: Stats,
    /// The shard loop's own counters (`weft_shard_*`), published with a `shard` label.
    pub engine: Stats,
    /// The shard's peers, filled only while [`Engine::peers_wanted`](super::Engine::peers_wanted)
    /// is set (an operator's `weft status`), empty otherwise.
    pub peers: Vec<crate::channel::PeerSnapshot>,
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
    /// Whether the snapshots should carry the peers.
    pub(super) peers_wanted: Arc<AtomicBool>,
    /// Every shard meets here on the way out, after its last hand-over and before draining.
    pub(super) exit: Arc<Barrier>,
    /// This shard's end of the worker's queues, when a worker runs.
    pub(super) worker: Option<ShardLink>,
    /// The probes of opens by bare address, which any shard may receive the answer to
    /// (`bare.rs`).
    pub(super) bare_routes: Arc<BareRoutes>,
    /// Opens by bare address whose peer another shard owns, to that shard; bounded.
    pub(super) opens_tx: Arc<[Sender<Request>]>,
    pub(super) opens_rx: Receiver<Request>,
}

/// What the shard knows of an open channel.
#[derive(Copy, Clone, Debug)]
struct ChannelEntry {
    capabilities: Capabilities,
    /// Opened at the worker's request: it always hears when the channel closes.
    by_worker: bool,
}

pub(super) struct Shard {
    parts: ShardParts,
    /// The socket and the way to wait on it.
    io: Io,
    /// Hand-over batches being filled, one per destination shard.
    outbox: Vec<Option<Handover>>,
    stats: Stats,
    stopping: bool,
    /// Open channels, closed with CHANNEL_CLOSE on shutdown; their modes tell the worker gate
    /// which messages are reliable. Looked up once per delivered message; handles are the
    /// node's own (slab codes), so the fast hasher (STYLE.md 16).
    channels: FxHashMap<ChannelHandle, ChannelEntry>,
    /// Opens the worker asked for, by channel, with the worker's token (node-chosen keys).
    opening: FxHashMap<ChannelHandle, u64>,
    /// The worker's queues and their accounting, when a worker runs.
    worker: Option<WorkerGate>,
    /// This shard's copy of the bare-address probes, its own bare-address opens, and the
    /// probes answered in this turn's receive batch.
    routes: RouteView,
    bare: BareOpens,
    answered: Vec<Answered>,
    /// Peers whose records the worker handed over with an open, oldest first (`opens.rs`).
    taught: std::collections::VecDeque<crate::wire::PeerId>,
    /// This turn handed the worker inputs.
    handed: bool,
}

impl Shard {
    pub(super) fn new(mut parts: ShardParts, io: Io) -> io::Result<Shard> {
        let shards = parts.shards;
        let config = parts.endpoint.config();
        let bound = config.max_worker_buffers;
        let returns = (
            config.max_returned_buffers,
            config.max_returned_buffer_bytes,
        );
        let worker = parts
            .worker
            .take()
            .map(|link| WorkerGate::new(link, bound, returns));
        let bare = BareOpens::new(
            parts.endpoint.local_peer_id(),
            config.open_retry,
            config.open_timeout,
        );
        let mut shard = Shard {
            parts,
            io,
            outbox: (0..shards).map(|_| None).collect(),
            stats: Stats::new(),
            stopping: false,
            channels: FxHashMap::default(),
            opening: FxHashMap::default(),
            taught: std::collections::VecDeque::new(),
            worker,
            routes: RouteView::default(),
            bare,
            answered: Vec::new(),
            handed: false,
        };
        shard.report_room(Instant::now());
        Ok(shard)
    }

    /// Runs until the engine's stop flag is set; returns the final counters.
    pub(super) fn run(mut self) -> ShardStats {
        let mut next_snapshot = Instant::now();
        let mut last_work = Instant::now();
        let mut spin = spin::Spin::new(BUSY_POLL);
        // The worker holds messages of this shard it has not answered yet.
        let mut awaiting = false;
        loop {
            let now = Instant::now();
            super::tell_wall_clock(&mut self.parts.endpoint);
            let mut wait = next_snapshot.saturating_duration_since(now);
            for deadline in [
                self.parts.endpoint.poll_timeout(),
                self.bare.next_deadline(),
            ]
            .into_iter()
            .flatten()
            {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            // The worker's answers to what this shard handed it come within microseconds: wait
            // for them spinning; other work only as long as the learnt window (`spin.rs`).
            let for_worker = awaiting && now.saturating_duration_since(last_work) < BUSY_POLL;
            if self.io.busy() || for_worker || spin.spinning(now, last_work) {
                wait = Duration::ZERO;
            }
            // Requests wake a shard only while it sleeps (PROTOCOL.md §12).
            if !wait.is_zero() && self.worker.as_ref().is_some_and(|w| !w.may_sleep()) {
                wait = Duration::ZERO;
            }
            let polled = self.io.wait(wait);
            if let Some(worker) = &self.worker {
                worker.link().awake();
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
            self.handed = false;
            self.take_back_buffers();
            let mut worked = self.receive(now) > 0;
            worked |= self.take_handovers(now);
            if self.parts.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.parts.endpoint.handle_timeout(now);
            }
            // The worker's requests and what telling the endpoint its room releases (WINDOWs)
            // go out in this turn's transmit, not the next one's.
            let mut answered = self.take_requests(now);
            worked |= self.take_moved_opens(now);
            self.poll_bare(now);
            self.dispatch_events(now);
            // Replies the worker made while this turn ran leave in this turn's send batch, not
            // a turn (and a system call) later; what they cause for the worker goes next turn.
            answered |= self.take_requests(now);
            worked |= answered;
            worked |= self.transmit() > 0;
            if worked {
                if !awaiting {
                    spin.worked(now, last_work);
                }
                last_work = now;
            }
            awaiting = self.handed || (awaiting && !answered);
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

    /// Puts the buffers the worker dropped since the last turn in the endpoint's pool, so
    /// this turn's messages are received into them (bounded by the return queue's size).
    fn take_back_buffers(&mut self) {
        if let Some(worker) = &self.worker {
            let endpoint = &mut self.parts.endpoint;
            worker.take_back(|buf| endpoint.recycle(buf));
        }
    }

    /// Takes a batch from the backend; returns the datagrams read.
    fn receive(&mut self, now: Instant) -> usize {
        let Shard {
            parts,
            io,
            outbox,
            routes,
            answered,
            ..
        } = self;
        routes.refresh(&parts.bare_routes);
        let local = parts.endpoint.local_peer_id();
        let datagrams = io.receive(&mut self.stats, |stats, from, datagram| {
            // The answer to a bare-address probe opens on the peer's owner (`bare.rs`); the
            // rest goes to the owner of the sender's peer id.
            if let Some(open) = routes.answer(&parts.bare_routes, local, from, datagram.bytes()) {
                answered.push(open);
                return;
            }
            let owner = owner_of(datagram.bytes(), parts.shards).unwrap_or(parts.index);
            if owner == parts.index {
                datagram.handle(&mut parts.endpoint, now, from);
            } else {
                Self::hand_over(parts, outbox, stats, owner, from, datagram);
            }
        });
        if datagrams > 0 {
            // A batch as large as a batch can be: the socket holds a backlog; the kernel's drop
            // count growing: it overflowed (issue 10, fair admission).
            let overflows = self.io.rxq_overflows();
            self.parts
                .endpoint
                .note_receive_batch(now, datagrams >= BATCH, overflows);
        }
        self.flush_handovers();
        self.open_answered(now);
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
        datagram: Incoming<'_>,
    ) {
        stats.add("weft_shard_handovers_out_total", None, 1);
        let copied = match &datagram {
            Incoming::Copied(bytes) => bytes.len(),
            Incoming::Lent(_) => 0,
        };
        let slot = &mut outbox[owner];
        if slot.as_ref().is_some_and(|b| !b.fits(copied))
            && let Some(full) = slot.take()
        {
            Self::send_handover(parts, stats, owner, full);
        }
        let batch = slot.get_or_insert_with(|| {
            parts
                .recycle_rx
                .try_recv()
                .unwrap_or_else(|_| Handover::new(parts.index))
        });
        match datagram {
            Incoming::Copied(bytes) => {
                let start = batch.bytes.len();
                batch.bytes.extend_from_slice(bytes);
                batch.items.push((from, start, bytes.len()));
            }
            Incoming::Lent(lendable) => {
                let piece = std::mem::take(lendable).into_bytes();
                batch.lent.push((from, piece));
            }
        }
    }

    fn send_handover(parts: &ShardParts, stats: &mut Stats, owner: usize, batch: Handover) {
        let items = batch.items.len().saturating_add(batch.lent.len()) as u64;
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
            let items = batch.items.len().saturating_add(batch.lent.len());
            self.stats
                .add("weft_shard_handovers_in_total", None, items as u64);
            for &(from, start, len) in &batch.items {
                self.parts.endpoint.handle(
                    now,
                    from,
                    &mut batch.bytes[start..start.saturating_add(len)],
                );
            }
            for (from, piece) in batch.lent.drain(..) {
                let mut datagram = Lendable::new(piece);
                self.parts.endpoint.handle_lent(now, from, &mut datagram);
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

    /// Carries out what the worker asked, batch by batch; true when there was anything.
    fn take_requests(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(batch) = self.worker.as_ref().and_then(|w| w.link().try_requests()) {
            any = true;
            self.request_batch(now, batch);
        }
        any
    }

    /// Carries out one batch of requests and gives the buffers back: message data to the
    /// endpoint's pool, the batch to the worker.
    fn request_batch(&mut self, now: Instant, mut batch: Vec<Request>) {
        for request in batch.drain(..) {
            self.request(now, request);
        }
        if let Some(worker) = &self.worker {
            worker.link().recycle_requests(batch);
        }
    }

    fn request(&mut self, now: Instant, request: Request) {
        let endpoint = &mut self.parts.endpoint;
        match request {
            Request::Send { channel, mut data } => {
                // The reply's own buffer (a pooled receive buffer the worker filled) goes into
                // the channel's send queue in place of the empty pooled one, which comes back
                // here for the pool: no copy of the message on its way out. A lent piece of the
                // receive memory is copied into the pooled one (the copy it saved on the way in)
                // and dropped, which lets its slab be received into again.
                let len = data.len();
                let queued = endpoint.send_with(now, channel, len, |empty| match &mut data {
                    Payload::Pooled(vec) => std::mem::swap(empty, vec),
                    Payload::Lent(bytes) => empty.extend_from_slice(bytes),
                });
                if queued.is_err() {
                    self.stats.add("weft_shard_reply_errors_total", None, 1);
                }
                endpoint.recycle(data);
            }
            Request::Open {
                token,
                to,
                peer: None,
                capabilities,
                early,
                ..
            } if self.parts.shards > 1 => {
                // The open waits for the peer's id and may move to another shard: early data
                // does not follow it (name the peer to send some); refused and counted.
                if let Some(data) = early {
                    self.stats.add("weft_shard_reply_errors_total", None, 1);
                    endpoint.recycle(data);
                }
                self.open_bare(now, token, to, capabilities)
            }
            Request::Open {
                token,
                to,
                peer,
                capabilities,
                early,
                record,
            } => {
                if let Some(record) = record {
                    self.teach(*record);
                }
                self.open(now, token, to, peer, capabilities, early)
            }
            Request::Close { channel, reason } => endpoint.close_channel(now, channel, reason),
            Request::PeerInfo { token, peer } => {
                let info = endpoint.peer_info(peer);
                self.notify(Input::PeerInfo {
                    token,
                    shard: self.parts.index,
                    peer,
                    info,
                });
            }
        }
    }

    /// Queues an answer for the worker.
    fn notify(&mut self, input: Input) {
        if let Some(worker) = self.worker.as_mut() {
            worker.notify(input);
        }
    }

    /// On the way out: lets go of the worker's input and carries out its last requests,
    /// waiting until every replier is gone or the grace period ends.
    fn drain_worker(&mut self) {
        let Some(worker) = self.worker.as_mut() else {
            return;
        };
        // Messages still waiting for room will not reach the worker now.
        let endpoint = &mut self.parts.endpoint;
        let dropped = worker.discard(|data| endpoint.recycle(data));
        if dropped > 0 {
            self.stats
                .add("weft_shard_worker_drops_total", None, dropped);
        }
        worker.link_mut().close_input();
        let deadline = later(Instant::now(), SHUTDOWN_GRACE);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(batch) = self
                .worker
                .as_ref()
                .and_then(|w| w.link().requests_within(left))
            else {
                break;
            };
            self.request_batch(Instant::now(), batch);
        }
        if self
            .worker
            .as_ref()
            .is_some_and(|w| !w.link().requests_closed())
        {
            tracing::warn!(
                shard = self.parts.index,
                "the worker did not finish in time"
            );
        }
        self.worker = None;
    }

    /// Tracks channels and hands messages to the worker, all of one turn in one batch, then
    /// tells the endpoint how much room is left (PROTOCOL.md §12: a shard never blocks on a
    /// worker; a full queue refuses and counts, except that what arrives on reliable channels
    /// never meets one, because their credit and delivery follow the room). Telling the room
    /// may deliver what reliable channels kept for it: a second round hands that over too.
    fn dispatch_events(&mut self, now: Instant) {
        for round in 0..2 {
            if let Some(worker) = self.worker.as_mut() {
                worker.settle();
            }
            while let Some(event) = self.parts.endpoint.poll_event() {
                self.dispatch(event);
            }
            self.hand_to_worker();
            if round == 0 {
                self.report_room(now);
            }
        }
    }

    /// Tells the endpoint the room its reliable channels may fill before the next turn.
    fn report_room(&mut self, now: Instant) {
        if let Some(worker) = &self.worker {
            self.parts
                .endpoint
                .set_delivery_capacity(now, Some(worker.free()));
        }
    }

    fn dispatch(&mut self, event: Event) {
        log_event(&event);
        match event {
            Event::ChannelOpened {
                channel,
                peer,
                capabilities,
                ..
            } => {
                let token = self.opening.remove(&channel);
                self.channels.insert(
                    channel,
                    ChannelEntry {
                        capabilities,
                        by_worker: token.is_some(),
                    },
                );
                if let Some(token) = token {
                    self.notify(Input::Opened {
                        token,
                        shard: self.parts.index,
                        channel,
                        peer,
                        capabilities,
                    });
                }
            }
            Event::OpenFailed { channel, reason } => {
                if let Some(token) = self.opening.remove(&channel) {
                    self.notify(Input::OpenFailed {
                        token,
                        shard: self.parts.index,
                        reason: OpenFailure::Failed(reason),
                    });
                }
            }
            Event::ChannelClosed {
                channel,
                reason,
                by_peer,
            } => {
                // A service that answered on a channel a peer opened must learn its handle is
                // stale too, but only while the queue has room: refused answers wait for the
                // next turn, and a peer that opens and closes channels in a loop must not grow
                // that backlog. The worker's own channels always hear (it waits on them).
                let entry = self.channels.remove(&channel);
                let room = self.worker.as_ref().is_some_and(|w| w.queue_room() > 0);
                if entry.is_some_and(|e| e.by_worker || room) {
                    self.notify(Input::Closed {
                        shard: self.parts.index,
                        channel,
                        reason,
                        by_peer,
                    });
                }
            }
            Event::Message {
                channel,
                peer,
                message_number,
                data,
            } => {
                let Some(worker) = self.worker.as_mut() else {
                    self.parts.endpoint.recycle(data);
                    return;
                };
                // The buffer the endpoint received the message into goes on to the worker,
                // counted against `max_worker_buffers` until the worker lets go of it.
                let data = worker.lend(data);
                let capabilities = self
                    .channels
                    .get(&channel)
                    .map_or(Capabilities::NONE, |e| e.capabilities);
                let delivery = Delivery {
                    shard: self.parts.index,
                    peer,
                    authenticated: self.parts.endpoint.has_session_with(peer),
                    channel,
                    capabilities,
                    message_number,
                    data,
                };
                if let Err((reason, delivery)) = worker.offer(delivery) {
                    self.stats.add("weft_shard_worker_drops_total", None, 1);
                    self.stats
                        .add("weft_messages_dropped_total", Some(("reason", reason)), 1);
                    self.parts.endpoint.recycle(delivery.data.into_vec());
                }
            }
            _ => {}
        }
    }

    /// Hands this turn's batch to the worker and counts.
    fn hand_to_worker(&mut self) {
        let Some(worker) = self.worker.as_mut() else {
            return;
        };
        let endpoint = &mut self.parts.endpoint;
        let done = worker.hand_over(|data| endpoint.recycle(data));
        if done.delivered > 0 {
            self.handed = true;
            self.stats.add(
                "weft_shard_worker_deliveries_total",
                None,
                done.delivered as u64,
            );
        }
        if done.dropped > 0 {
            self.stats
                .add("weft_shard_worker_drops_total", None, done.dropped);
            self.stats.add(
                "weft_messages_dropped_total",
                Some(("reason", super::worker::FULL)),
                done.dropped,
            );
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
        // The worker's gauges too: set every turn they cost three searches of the counter
        // table by name, idle busy-poll turns included.
        if let Some(worker) = &self.worker {
            let depth = worker.link().queue_depth();
            let waiting = worker.waiting();
            let held = worker.buffers_held();
            self.stats
                .set("weft_shard_worker_queue_depth", None, depth as u64);
            self.stats
                .set("weft_shard_worker_held", None, waiting as u64);
            self.stats
                .set("weft_shard_worker_buffers_held", None, held as u64);
        }
        if let Ok(mut shared) = self.parts.snapshot.lock() {
            shared.endpoint.clone_from(self.parts.endpoint.stats());
            shared.engine.clone_from(&self.stats);
            // Only on request: a view of every peer is an allocation a second otherwise.
            if self.parts.peers_wanted.load(Ordering::Relaxed) {
                self.parts
                    .endpoint
                    .peer_snapshots(Instant::now(), &mut shared.peers);
            } else if !shared.peers.is_empty() {
                shared.peers = Vec::new();
            }
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
