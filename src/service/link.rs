//! The queues between the shards and one worker: [`Deliveries`] (every shard to the worker),
//! [`Replier`] (the worker to each shard) and [`ShardLink`], a shard's end of both.
//!
//! Packets are never handed across cores one at a time: a shard hands the worker every input
//! of one loop turn as one batch, and a worker's requests gather per shard and go over as one
//! batch, waking the shard only when it sleeps. Capacities count messages, not batches.

use super::held::Ledger;
use super::queue::{BATCH, BatchQueue, Refusal};
use super::{Input, ReplyError, Request, owner_of_peer};
use crate::channel::{ChannelHandle, Payload};
use crate::session::PeerRecord;
use crate::wire::{Capabilities, CloseReason, PeerId};
use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, Sender, TryRecvError};
use mio::Waker;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

/// What one shard shares with the worker besides the queues.
struct ShardSignals {
    /// Inputs of this shard the worker has taken, ever: the shard learns from it how much of
    /// the queue it still holds.
    taken: AtomicU64,
    /// Set by the shard while it blocks in poll: only then does a batch wake it.
    sleeping: AtomicBool,
    /// Set by the shard when its share of the queue is full: the worker's next take from it
    /// wakes it, so reliable channels waiting for room resume without waiting for a packet.
    starved: AtomicBool,
}

/// Wakes `shard` if it sleeps. The fence orders the caller's queue write before reading the
/// flag, against the shard's flag write before its last look at the queue.
fn wake_if_sleeping(signals: &ShardSignals, waker: Option<&Waker>) {
    fence(Ordering::SeqCst);
    if signals.sleeping.load(Ordering::SeqCst)
        && let Some(waker) = waker
    {
        let _ = waker.wake();
    }
}

/// What [`Deliveries::recv_or`] woke for.
#[derive(Debug)]
pub enum Woken<T> {
    /// A batch of inputs.
    Inputs(Vec<Input>),
    /// A value from the other queue.
    Other(T),
    /// Every sender of the other queue is gone.
    OtherClosed,
    /// The deadline passed.
    Timeout,
    /// Every shard has stopped and nothing is left.
    Stopped,
}

/// What a value (or the close) of the other queue of [`Deliveries::recv_or`] wakes for.
fn woken_by_other<T>(value: Result<T, RecvError>) -> Woken<T> {
    match value {
        Ok(value) => Woken::Other(value),
        Err(_) => Woken::OtherClosed,
    }
}

/// The worker's input: batches from every shard. It ends once every shard has stopped and the
/// queue is drained.
pub struct Deliveries {
    queue: Arc<BatchQueue<Input>>,
    rx: Receiver<Vec<Input>>,
    signals: Arc<[ShardSignals]>,
    wakers: Arc<[Waker]>,
}

impl Deliveries {
    /// Notes a batch taken: its shard learns it has room again (and wakes if it waits for it).
    fn taken(&self, batch: &[Input]) {
        self.queue.taken(batch);
        let Some(shard) = batch.first().map(Input::shard) else {
            return;
        };
        if let Some(signals) = self.signals.get(shard) {
            signals
                .taken
                .fetch_add(batch.len() as u64, Ordering::SeqCst);
            if signals.starved.swap(false, Ordering::SeqCst) {
                wake_if_sleeping(signals, self.wakers.get(shard));
            }
        }
    }

    /// The next batch (all from one shard, in arrival order), waiting for one; `None` once
    /// every shard has stopped and nothing is left.
    pub fn recv(&self) -> Option<Vec<Input>> {
        let batch = self.rx.recv().ok()?;
        self.taken(&batch);
        Some(batch)
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`; `Err(true)` once every shard has
    /// stopped and nothing is left, `Err(false)` on a timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<Input>, bool> {
        match self.rx.recv_timeout(timeout) {
            Ok(batch) => {
                self.taken(&batch);
                Ok(batch)
            }
            Err(RecvTimeoutError::Timeout) => Err(false),
            Err(RecvTimeoutError::Disconnected) => Err(true),
        }
    }

    /// Waits for whichever comes first: a batch of inputs, a value on `other` (only while
    /// `other_open`), or `deadline`. Lets a worker serve its inputs and another queue (an
    /// application's commands) from one thread without polling. The deadline is a timeout of
    /// the `select` itself, not a timer channel (`crossbeam_channel::at` allocates one per
    /// call, and an idle worker waits here once a turn).
    pub fn recv_or<T>(
        &self,
        other: &Receiver<T>,
        other_open: bool,
        deadline: Option<Instant>,
    ) -> Woken<T> {
        let never = crossbeam_channel::never();
        let other = if other_open { other } else { &never };
        match deadline {
            Some(deadline) => crossbeam_channel::select! {
                recv(self.rx) -> batch => self.woken_by_inputs(batch),
                recv(other) -> value => woken_by_other(value),
                default(deadline.saturating_duration_since(Instant::now())) => Woken::Timeout,
            },
            None => crossbeam_channel::select! {
                recv(self.rx) -> batch => self.woken_by_inputs(batch),
                recv(other) -> value => woken_by_other(value),
            },
        }
    }

    fn woken_by_inputs<T>(&self, batch: Result<Vec<Input>, RecvError>) -> Woken<T> {
        match batch {
            Ok(batch) => {
                self.taken(&batch);
                Woken::Inputs(batch)
            }
            Err(_) => Woken::Stopped,
        }
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&self) -> Option<Vec<Input>> {
        let batch = self.rx.try_recv().ok()?;
        self.taken(&batch);
        Some(batch)
    }

    /// Every batch until the shards stop.
    pub fn iter(&self) -> impl Iterator<Item = Vec<Input>> + '_ {
        std::iter::from_fn(|| self.recv())
    }

    /// Gives an emptied (or partly emptied) batch back to the shards to fill again, so the
    /// hand-over allocates nothing; inputs still in it are dropped.
    pub fn recycle(&self, batch: Vec<Input>) {
        self.queue.give_back(batch);
    }

    /// Inputs queued and not yet taken.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no input waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most inputs the queue holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}

/// One shard's request queue, as a worker sees it.
struct RequestLane {
    queue: Arc<BatchQueue<Request>>,
    tx: Sender<Vec<Request>>,
}

/// What a worker asks of the shards, gathered into one batch per shard; one per worker thread
/// (cloning gives a replier with nothing pending). [`queue`](Self::queue) gathers a message
/// and [`flush`](Self::flush) hands the batches over; every other request goes at once, with
/// what was gathered for its shard before it. Dropping a replier flushes it. The shards'
/// request queues close when every `Replier` is dropped, which is how a worker says it has
/// finished.
pub struct Replier {
    lanes: Arc<[RequestLane]>,
    signals: Arc<[ShardSignals]>,
    wakers: Arc<[Waker]>,
    pending: Vec<Vec<Request>>,
}

impl Clone for Replier {
    fn clone(&self) -> Self {
        Replier {
            lanes: Arc::clone(&self.lanes),
            signals: Arc::clone(&self.signals),
            wakers: Arc::clone(&self.wakers),
            pending: (0..self.lanes.len()).map(|_| Vec::new()).collect(),
        }
    }
}

impl Replier {
    /// How many shards there are.
    pub fn shards(&self) -> usize {
        self.lanes.len()
    }

    /// Adds a request to `shard`'s pending batch (taking a recycled one when it has none);
    /// returns how many requests the batch now holds.
    fn gather(&mut self, shard: usize, request: Request) -> Result<usize, ReplyError> {
        let lane = self.lanes.get(shard).ok_or(ReplyError::Stopped)?;
        let batch = self.pending.get_mut(shard).ok_or(ReplyError::Stopped)?;
        if batch.capacity() == 0 {
            *batch = lane.queue.empty_batch();
        }
        batch.push(request);
        Ok(batch.len())
    }

    /// Adds a message for `channel` on `shard` to that shard's batch; a full batch is handed
    /// over at once. Never blocks. `Err(Full)` reports that an automatic hand-over was refused
    /// and those messages dropped.
    pub fn queue(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        data: impl Into<Payload>,
    ) -> Result<(), ReplyError> {
        let data = data.into();
        if self.gather(shard, Request::Send { channel, data })? >= BATCH {
            return match self.flush_shard(shard) {
                0 => Ok(()),
                _ => Err(ReplyError::Full),
            };
        }
        Ok(())
    }

    /// Hands every gathered batch to its shard, one queue operation and at most one wake-up
    /// per shard; returns how many requests were refused (full queue or stopped shard) and
    /// dropped.
    pub fn flush(&mut self) -> usize {
        (0..self.pending.len())
            .map(|shard| self.flush_shard(shard))
            .sum()
    }

    /// Queues one message on `shard` and hands it over at once, with anything gathered for
    /// that shard before it; never blocks.
    pub fn send(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        data: impl Into<Payload>,
    ) -> Result<(), ReplyError> {
        let data = data.into();
        self.request(shard, Request::Send { channel, data })
    }

    /// Asks for a channel to the node at `to` (its peer id when known) in mode `capabilities`:
    /// the answer comes as [`Input::Opened`] or [`Input::OpenFailed`] with `token`. The shard
    /// that owns `peer` opens it; an open by bare address goes to shard 0, which learns the
    /// peer (with several shards by a PING first, then hands the open to the peer's owner
    /// shard: name the peer when you know it, to save that round trip).
    pub fn open(
        &mut self,
        token: u64,
        to: SocketAddr,
        peer: Option<PeerId>,
        capabilities: Capabilities,
    ) -> Result<(), ReplyError> {
        self.open_with(token, to, peer, capabilities, None)
    }

    /// [`open`](Self::open), with a first message that rides the open as early data: the
    /// shard queues it on the new channel at once, so it leaves with the CHANNEL_COOKIE that
    /// completes the channel (PROTOCOL.md §6 step 4) instead of after the worker heard of it.
    /// A message longer than the endpoint's `max_early_bytes` is refused by the shard (counted
    /// in `weft_shard_reply_errors_total`); the open goes ahead without it.
    pub fn open_with(
        &mut self,
        token: u64,
        to: SocketAddr,
        peer: Option<PeerId>,
        capabilities: Capabilities,
        early: Option<Vec<u8>>,
    ) -> Result<(), ReplyError> {
        let shard = peer.map_or(0, |peer| owner_of_peer(peer, self.shards()));
        self.request(
            shard,
            Request::Open {
                token,
                to,
                peer,
                capabilities,
                early,
                record: None,
            },
        )
    }

    /// [`open_with`](Self::open_with) to the peer of a signed `record` the worker holds: the
    /// shard that owns it hands the record to its endpoint first, so the handshake is IK
    /// (PROTOCOL.md §5 kind 1) rather than XX, one round trip fewer. The shard verifies it;
    /// one that does not verify is counted and the open goes on as XX.
    pub fn open_known(
        &mut self,
        token: u64,
        to: SocketAddr,
        record: PeerRecord,
        capabilities: Capabilities,
        early: Option<Vec<u8>>,
    ) -> Result<(), ReplyError> {
        let peer = record.peer_id();
        self.request(
            owner_of_peer(peer, self.shards()),
            Request::Open {
                token,
                to,
                peer: Some(peer),
                capabilities,
                early,
                record: Some(Box::new(record)),
            },
        )
    }

    /// Closes a channel, telling the peer why.
    pub fn close(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        reason: CloseReason,
    ) -> Result<(), ReplyError> {
        self.request(shard, Request::Close { channel, reason })
    }

    /// Asks the shard that owns `peer` what it knows of it (address, session kind, RTT); the
    /// answer comes as [`Input::PeerInfo`] with `token`.
    pub fn peer_info(&mut self, token: u64, peer: PeerId) -> Result<(), ReplyError> {
        let shard = owner_of_peer(peer, self.shards());
        self.request(shard, Request::PeerInfo { token, peer })
    }

    fn request(&mut self, shard: usize, request: Request) -> Result<(), ReplyError> {
        self.gather(shard, request)?;
        match self.hand_over(shard) {
            (_, None) => Ok(()),
            (_, Some(Refusal::Full)) => Err(ReplyError::Full),
            (_, Some(Refusal::Gone)) => Err(ReplyError::Stopped),
        }
    }

    fn flush_shard(&mut self, shard: usize) -> usize {
        self.hand_over(shard).0
    }

    /// Hands `shard`'s gathered batch over; returns how many requests were refused and why.
    fn hand_over(&mut self, shard: usize) -> (usize, Option<Refusal>) {
        let (Some(lane), Some(batch)) = (self.lanes.get(shard), self.pending.get_mut(shard)) else {
            return (0, None);
        };
        let wanted = batch.len();
        if wanted == 0 {
            return (0, None);
        }
        let result = lane.queue.push(batch, &lane.tx);
        let refused = batch.len();
        batch.clear();
        if refused < wanted {
            // PROTOCOL.md §12: a busy-polling shard finds the batch without a wake-up (a system
            // call).
            if let Some(signals) = self.signals.get(shard) {
                wake_if_sleeping(signals, self.wakers.get(shard));
            }
        }
        (refused, result.err())
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What a worker gets from the engine: its input queue and the way back. The input closes once
/// every shard has stopped.
pub struct WorkerLink {
    /// Inputs from every shard, in batches.
    pub deliveries: Deliveries,
    /// Requests to the shards.
    pub replier: Replier,
}

/// A shard's end of the worker's queues (the engine's side of the seam).
pub(crate) struct ShardLink {
    index: usize,
    /// None once the shard lets go of the worker's input (on the way out).
    deliver: Option<Sender<Vec<Input>>>,
    deliver_queue: Arc<BatchQueue<Input>>,
    signals: Arc<[ShardSignals]>,
    requests: Receiver<Vec<Request>>,
    request_queue: Arc<BatchQueue<Request>>,
    /// This shard's share of the input queue, in inputs.
    share: usize,
    /// This shard's buffers the worker side holds.
    ledger: Arc<Ledger>,
}

/// Builds the queues between `shards` shards and one worker, each holding at most `capacity`
/// inputs per direction (the request queues: per shard). Each shard may fill its share of the
/// input queue, `capacity / shards`.
pub(crate) fn worker_queues(
    shards: usize,
    capacity: usize,
    wakers: Arc<[Waker]>,
) -> (WorkerLink, Vec<ShardLink>) {
    let shards = shards.max(1);
    let (deliver_queue, deliver_tx, deliver_rx) = BatchQueue::<Input>::new(capacity);
    let share = deliver_queue
        .capacity()
        .checked_div(shards)
        .unwrap_or(1)
        .max(1);
    let signals: Arc<[ShardSignals]> = (0..shards)
        .map(|_| ShardSignals {
            taken: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            starved: AtomicBool::new(false),
        })
        .collect::<Vec<_>>()
        .into();
    let mut lanes = Vec::with_capacity(shards);
    let mut ends = Vec::with_capacity(shards);
    for index in 0..shards {
        let (request_queue, request_tx, request_rx) = BatchQueue::<Request>::new(capacity);
        lanes.push(RequestLane {
            queue: Arc::clone(&request_queue),
            tx: request_tx,
        });
        ends.push(ShardLink {
            index,
            deliver: Some(deliver_tx.clone()),
            deliver_queue: Arc::clone(&deliver_queue),
            signals: Arc::clone(&signals),
            requests: request_rx,
            request_queue,
            share,
            ledger: Ledger::new(Arc::clone(&wakers), index),
        });
    }
    let link = WorkerLink {
        deliveries: Deliveries {
            rx: deliver_rx,
            queue: deliver_queue,
            signals: Arc::clone(&signals),
            wakers: Arc::clone(&wakers),
        },
        replier: Replier {
            pending: (0..shards).map(|_| Vec::new()).collect(),
            lanes: lanes.into(),
            signals,
            wakers,
        },
    };
    (link, ends)
}

impl ShardLink {
    /// The inputs this shard may have in the worker's queue at once.
    pub(crate) fn share(&self) -> usize {
        self.share
    }

    /// The count of this shard's buffers the worker side holds.
    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// An empty batch to fill, reused when one came back.
    pub(crate) fn empty_batch(&self) -> Vec<Input> {
        self.deliver_queue.empty_batch()
    }

    /// Hands as much of `batch` to the worker as the queue takes, in one queue operation; what
    /// did not fit stays in `batch`, in order. False when the worker's input is closed (then
    /// nothing was taken).
    pub(crate) fn push(&self, batch: &mut Vec<Input>) -> bool {
        match &self.deliver {
            Some(sender) => {
                let _ = self.deliver_queue.push(batch, sender);
                true
            }
            None => false,
        }
    }

    /// Inputs of this shard the worker has taken, ever.
    pub(crate) fn taken(&self) -> u64 {
        self.signals
            .get(self.index)
            .map_or(0, |s| s.taken.load(Ordering::SeqCst))
    }

    /// Asks the worker to wake this shard at its next take: the shard's share is full. Before
    /// blocking the shard must then look at [`taken`](Self::taken) once more (a take between
    /// its last look and this call wakes nobody).
    pub(crate) fn set_starved(&self, starved: bool) {
        if let Some(signals) = self.signals.get(self.index) {
            signals.starved.store(starved, Ordering::SeqCst);
        }
    }

    /// Inputs waiting in the worker's queue, from every shard.
    pub(crate) fn queue_depth(&self) -> usize {
        self.deliver_queue.len()
    }

    /// Lets go of the worker's input: once every shard has, the worker's queue closes.
    pub(crate) fn close_input(&mut self) {
        self.deliver = None;
    }

    /// The next batch of requests, if one waits.
    pub(crate) fn try_requests(&self) -> Option<Vec<Request>> {
        let batch = self.requests.try_recv().ok()?;
        self.request_queue.taken(&batch);
        Some(batch)
    }

    /// The next batch of requests, waiting up to `timeout`; `None` on a timeout or once every
    /// replier is gone.
    pub(crate) fn requests_within(&self, timeout: Duration) -> Option<Vec<Request>> {
        let batch = self.requests.recv_timeout(timeout).ok()?;
        self.request_queue.taken(&batch);
        Some(batch)
    }

    /// True once every replier is gone and no request waits.
    pub(crate) fn requests_closed(&self) -> bool {
        matches!(self.requests.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Gives an emptied request batch back to the workers.
    pub(crate) fn recycle_requests(&self, batch: Vec<Request>) {
        self.request_queue.give_back(batch);
    }

    /// Called before the shard blocks: from now on requests wake it. Returns false when a
    /// request batch already waits, so the shard must not block.
    pub(crate) fn may_sleep(&self) -> bool {
        let Some(signals) = self.signals.get(self.index) else {
            return true;
        };
        signals.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.requests.is_empty() {
            return true;
        }
        signals.sleeping.store(false, Ordering::Relaxed);
        false
    }

    /// Called when the shard wakes: it polls again, so requests need not wake it.
    pub(crate) fn awake(&self) {
        if let Some(signals) = self.signals.get(self.index) {
            signals.sleeping.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelHandle;
    use crate::handle::Hashcode;
    use crate::service::Delivery;
    use mio::{Poll, Token};

    fn channel(n: u32) -> ChannelHandle {
        ChannelHandle(Hashcode(n))
    }

    fn message(shard: usize, number: u64) -> Input {
        Input::Message(Delivery {
            shard,
            peer: PeerId([1; 16]),
            authenticated: true,
            channel: channel(7),
            capabilities: Capabilities::NONE,
            message_number: number,
            data: vec![number as u8].into(),
        })
    }

    fn queues(shards: usize, capacity: usize) -> (Vec<Poll>, WorkerLink, Vec<ShardLink>) {
        let polls: Vec<Poll> = (0..shards).map(|_| Poll::new().unwrap()).collect();
        let wakers: Arc<[Waker]> = polls
            .iter()
            .map(|poll| Waker::new(poll.registry(), Token(1)).unwrap())
            .collect::<Vec<_>>()
            .into();
        let (link, ends) = worker_queues(shards, capacity, wakers);
        (polls, link, ends)
    }

    fn sent(request: &Request) -> Vec<u8> {
        match request {
            Request::Send { data, .. } => data.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_turn_goes_over_as_one_batch_and_the_taker_is_told() {
        let (_poll, link, ends) = queues(2, 4);
        assert_eq!(ends[1].share(), 2, "each shard may fill its share");
        let mut batch = ends[1].empty_batch();
        batch.extend((0..5).map(|n| message(1, n)));
        assert!(ends[1].push(&mut batch));
        assert_eq!(batch.len(), 1, "the tail waits, in order");
        assert_eq!(link.deliveries.len(), 4);
        let taken = link.deliveries.try_recv().expect("one batch");
        assert!(link.deliveries.try_recv().is_none(), "one queue operation");
        assert_eq!(taken.len(), 4);
        assert_eq!((ends[1].taken(), ends[0].taken()), (4, 0));
        link.deliveries.recycle(taken);
    }

    #[test]
    fn requests_travel_per_shard_in_batches_and_a_full_lane_refuses() {
        let (_poll, mut link, ends) = queues(2, 2);
        link.replier.queue(0, channel(1), vec![1]).unwrap();
        link.replier.queue(1, channel(2), vec![2]).unwrap();
        link.replier.queue(0, channel(1), vec![3]).unwrap();
        assert!(
            ends[0].try_requests().is_none(),
            "nothing leaves before the flush"
        );
        assert_eq!(link.replier.flush(), 0);
        let batch = ends[0].try_requests().expect("shard 0's batch");
        assert_eq!(batch.iter().map(sent).collect::<Vec<_>>(), [[1], [3]]);
        assert!(ends[0].try_requests().is_none(), "one batch per flush");
        assert_eq!(ends[1].try_requests().map(|b| b.len()), Some(1));
        // Shard 0's lane holds two requests: a third is refused until it takes some.
        link.replier.send(0, channel(1), vec![4]).unwrap();
        link.replier
            .close(0, channel(1), CloseReason::Normal)
            .unwrap();
        assert_eq!(
            link.replier.send(0, channel(1), vec![6]),
            Err(ReplyError::Full)
        );
        assert_eq!(
            link.replier.send(5, channel(1), vec![6]),
            Err(ReplyError::Stopped)
        );
        assert_eq!(ends[0].try_requests().map(|b| b.len()), Some(1));
        assert_eq!(ends[0].try_requests().map(|b| b.len()), Some(1));
        // Questions about a peer go to the shard that owns it.
        let peer = PeerId([0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        link.replier.peer_info(9, peer).unwrap();
        assert!(ends[0].try_requests().is_none());
        assert_eq!(
            ends[1].try_requests().unwrap(),
            vec![Request::PeerInfo { token: 9, peer }]
        );
    }

    #[test]
    fn a_sleeping_shard_is_woken_and_a_busy_one_is_not() {
        let (mut polls, mut link, ends) = queues(1, 8);
        let poll = &mut polls[0];
        let mut events = mio::Events::with_capacity(4);
        // Busy: no wake-up arrives.
        link.replier.send(0, channel(1), vec![1]).unwrap();
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty(), "a busy-polling shard is not woken");
        // A waiting batch keeps the shard from sleeping.
        assert!(!ends[0].may_sleep());
        assert!(ends[0].try_requests().is_some());
        assert!(ends[0].may_sleep());
        link.replier.send(0, channel(1), vec![2]).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "a sleeping shard is woken");
        ends[0].awake();
    }

    #[test]
    fn a_starved_sleeping_shard_is_woken_by_the_workers_take() {
        let (mut polls, link, ends) = queues(1, 8);
        let mut events = mio::Events::with_capacity(4);
        let mut batch = ends[0].empty_batch();
        batch.push(message(0, 0));
        assert!(ends[0].push(&mut batch));
        ends[0].set_starved(true);
        assert!(ends[0].may_sleep());
        let taken = link.deliveries.try_recv().unwrap();
        polls[0]
            .poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the take woke the starved shard");
        link.deliveries.recycle(taken);
    }

    #[test]
    fn recv_or_wakes_for_the_other_queue_its_close_or_the_deadline() {
        let (_poll, link, _ends) = queues(1, 4);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let deliveries = &link.deliveries;
        let soon = || Instant::now().checked_add(Duration::from_millis(5));
        assert!(matches!(
            deliveries.recv_or(&rx, true, soon()),
            Woken::Timeout
        ));
        tx.send(7u8).unwrap();
        let far = Instant::now().checked_add(Duration::from_secs(60));
        assert!(matches!(
            deliveries.recv_or(&rx, true, far),
            Woken::Other(7)
        ));
        drop(tx);
        assert!(matches!(
            deliveries.recv_or(&rx, true, None),
            Woken::OtherClosed
        ));
        // A closed queue no longer counted: only the deadline wakes.
        assert!(matches!(
            deliveries.recv_or(&rx, false, soon()),
            Woken::Timeout
        ));
    }

    #[test]
    fn the_worker_input_closes_when_every_shard_lets_go() {
        let (_poll, link, mut ends) = queues(2, 4);
        let mut batch = ends[0].empty_batch();
        batch.push(message(0, 0));
        assert!(ends[0].push(&mut batch));
        ends[0].close_input();
        ends[1].close_input();
        assert!(!ends[1].push(&mut vec![message(1, 0)]), "closed");
        assert_eq!(link.deliveries.recv().map(|b| b.len()), Some(1));
        assert!(link.deliveries.recv().is_none());
        // Dropping the replier closes the request lanes.
        drop(link.replier);
        assert!(ends[0].requests_closed());
    }
}
