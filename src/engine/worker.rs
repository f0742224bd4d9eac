//! Workers (PROTOCOL.md §12): services fed by bounded lock-free queues from the shards. A shard
//! never blocks on a worker: a full queue refuses the message and the shard counts it.
//!
//! Packets are never handed across cores one at a time: a shard hands the worker every message
//! of one loop turn as one batch of [`Delivery`]s, and a worker answers through a [`Replier`],
//! which gathers the replies per shard and queues each batch with one operation, waking the
//! shard only when it sleeps. Emptied batches go back to where they were filled, and a reply's
//! buffer goes back to its shard's endpoint pool, so in steady state the hand-over allocates
//! nothing.
//!
//! Capacities count messages, not batches: a queue of capacity N holds at most N messages.

use crate::channel::ChannelHandle;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use mio::Waker;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::time::Duration;

/// Messages a batch is created to hold; it grows past this only when a turn delivers more.
const BATCH: usize = 64;

/// Messages of reliable channels a shard holds back from a full worker queue, at most; their
/// channels are paused meanwhile, so this bounds only what was already on its way.
pub(super) const HOLD_LIMIT: usize = 4096;

/// Emptied batches kept for reuse per queue; beyond this an emptied batch is freed.
const SPARE_BATCHES: usize = 64;

/// An application message a shard hands to the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The shard that owns the channel; replies go back to it.
    pub shard: usize,
    /// The channel it came on.
    pub channel: ChannelHandle,
    /// Its message number on that channel.
    pub message_number: u64,
    /// Its bytes. Sending them back as a reply returns the buffer to the shard's pool; a worker
    /// that keeps or drops them costs the shard an allocation later.
    pub data: Vec<u8>,
}

/// A message a worker sends on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) channel: ChannelHandle,
    pub(super) data: Vec<u8>,
}

/// Why a reply was not queued.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The shard's reply queue is full; the caller may retry or drop.
    #[error("the shard's reply queue is full")]
    Full,
    /// The shard has stopped, or no such shard.
    #[error("the shard has stopped")]
    Stopped,
}

/// Why a batch was not (wholly) queued.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Refusal {
    /// The queue holds its capacity in messages.
    Full,
    /// The other side is gone.
    Gone,
}

/// The shared state of one batch queue: emptied batches going back to be filled again, and
/// the number of messages queued, which bounds the queue in messages. The queue's channel ends
/// live with its two sides, so dropping one side closes it.
struct BatchQueue<T> {
    spares: (Sender<Vec<T>>, Receiver<Vec<T>>),
    queued: AtomicUsize,
    capacity: usize,
}

impl<T> BatchQueue<T> {
    /// The shared state and the channel of batches; every batch holds at least one message,
    /// so `capacity` batches always fit.
    #[allow(clippy::type_complexity)]
    fn new(capacity: usize) -> (Arc<BatchQueue<T>>, Sender<Vec<T>>, Receiver<Vec<T>>) {
        let capacity = capacity.max(1);
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let queue = Arc::new(BatchQueue {
            spares: crossbeam_channel::bounded(SPARE_BATCHES),
            queued: AtomicUsize::new(0),
            capacity,
        });
        (queue, tx, rx)
    }

    /// An empty batch, reused when one came back.
    fn empty_batch(&self) -> Vec<T> {
        self.spares
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH))
    }

    /// Queues as much of `batch` as the capacity allows, with one reservation and one queue
    /// operation; what did not fit stays in `batch`, in order.
    fn push(&self, batch: &mut Vec<T>, sender: &Sender<Vec<T>>) -> Result<(), Refusal> {
        let wanted = batch.len();
        if wanted == 0 {
            return Ok(());
        }
        let before = self.queued.fetch_add(wanted, Ordering::AcqRel);
        let room = self.capacity.saturating_sub(before).min(wanted);
        if room < wanted {
            self.queued
                .fetch_sub(wanted.saturating_sub(room), Ordering::AcqRel);
        }
        if room == 0 {
            return Err(Refusal::Full);
        }
        let mut accepted = self.empty_batch();
        if room == wanted {
            std::mem::swap(&mut accepted, batch);
        } else {
            accepted.extend(batch.drain(..room));
        }
        match sender.try_send(accepted) {
            Ok(()) if batch.is_empty() => Ok(()),
            Ok(()) => Err(Refusal::Full),
            Err(error) => {
                let refusal = match error {
                    TrySendError::Full(_) => Refusal::Full,
                    TrySendError::Disconnected(_) => Refusal::Gone,
                };
                let mut back = error.into_inner();
                self.queued.fetch_sub(back.len(), Ordering::AcqRel);
                // The refused messages go back in front of the rest, in order.
                back.append(batch);
                std::mem::swap(&mut back, batch);
                self.give_back(back);
                Err(refusal)
            }
        }
    }

    /// Notes a batch taken off the queue.
    fn taken(&self, batch: &[T]) {
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
    }

    /// Keeps an emptied batch for the filling side; frees it when enough are kept.
    fn give_back(&self, mut batch: Vec<T>) {
        batch.clear();
        if batch.capacity() > 0 {
            let _ = self.spares.0.try_send(batch);
        }
    }
}

/// The worker's input: batches of messages from every shard. It ends once every shard has
/// stopped and the queue is drained.
pub struct Deliveries {
    queue: Arc<BatchQueue<Delivery>>,
    rx: Receiver<Vec<Delivery>>,
}

impl Deliveries {
    /// The next batch (all from one shard, in arrival order), waiting for one; `None` once
    /// every shard has stopped and nothing is left.
    pub fn recv(&self) -> Option<Vec<Delivery>> {
        let batch = self.rx.recv().ok()?;
        self.queue.taken(&batch);
        Some(batch)
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`; `Err(true)` once every shard has
    /// stopped and nothing is left, `Err(false)` on a timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<Delivery>, bool> {
        match self.rx.recv_timeout(timeout) {
            Ok(batch) => {
                self.queue.taken(&batch);
                Ok(batch)
            }
            Err(RecvTimeoutError::Timeout) => Err(false),
            Err(RecvTimeoutError::Disconnected) => Err(true),
        }
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&self) -> Option<Vec<Delivery>> {
        let batch = self.rx.try_recv().ok()?;
        self.queue.taken(&batch);
        Some(batch)
    }

    /// Every batch until the shards stop.
    pub fn iter(&self) -> impl Iterator<Item = Vec<Delivery>> + '_ {
        std::iter::from_fn(|| self.recv())
    }

    /// Gives an emptied (or partly emptied) batch back to the shards to fill again, so the
    /// hand-over allocates nothing; messages still in it are dropped.
    pub fn recycle(&self, batch: Vec<Delivery>) {
        self.queue.give_back(batch);
    }

    /// Messages queued and not yet taken.
    pub fn len(&self) -> usize {
        self.queue.queued.load(Ordering::Acquire)
    }

    /// True when no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most messages the queue holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }
}

/// One shard's reply queue, as a worker sees it.
struct ReplyLane {
    queue: Arc<BatchQueue<Reply>>,
    tx: Sender<Vec<Reply>>,
    /// Set by the shard while it blocks in poll: only then does a reply batch wake it.
    sleeping: Arc<AtomicBool>,
}

/// Sends replies to the shards, gathered into one batch per shard; one per worker thread
/// (cloning gives a replier with nothing pending). [`queue`](Self::queue) gathers and
/// [`flush`](Self::flush) hands the batches over; [`send`](Self::send) does both for one
/// message. Dropping a replier flushes it. The shards' reply queues close when every
/// `Replier` is dropped, which is how a worker says it has finished.
pub struct Replier {
    lanes: Arc<[ReplyLane]>,
    wakers: Arc<[Waker]>,
    pending: Vec<Vec<Reply>>,
}

impl Clone for Replier {
    fn clone(&self) -> Self {
        Replier {
            lanes: Arc::clone(&self.lanes),
            wakers: Arc::clone(&self.wakers),
            pending: (0..self.lanes.len()).map(|_| Vec::new()).collect(),
        }
    }
}

impl Replier {
    /// Adds a reply to `shard`'s pending batch (taking a recycled one when it has none);
    /// returns how many replies the batch now holds.
    fn gather(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        data: Vec<u8>,
    ) -> Result<usize, ReplyError> {
        let lane = self.lanes.get(shard).ok_or(ReplyError::Stopped)?;
        let batch = &mut self.pending[shard];
        if batch.capacity() == 0 {
            *batch = lane.queue.empty_batch();
        }
        batch.push(Reply { channel, data });
        Ok(batch.len())
    }

    /// Adds a reply to `shard`'s batch; a full batch is handed over at once. Never blocks.
    /// `Err(Full)` reports that an automatic hand-over was refused and those replies dropped.
    pub fn queue(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        data: Vec<u8>,
    ) -> Result<(), ReplyError> {
        if self.gather(shard, channel, data)? >= BATCH {
            return match self.flush_shard(shard) {
                0 => Ok(()),
                _ => Err(ReplyError::Full),
            };
        }
        Ok(())
    }

    /// Hands every gathered batch to its shard, one queue operation and at most one wake-up
    /// per shard; returns how many replies were refused (full queue or stopped shard) and
    /// dropped.
    pub fn flush(&mut self) -> usize {
        (0..self.pending.len())
            .map(|shard| self.flush_shard(shard))
            .sum()
    }

    /// Queues one reply on `shard` and hands it over at once, with anything gathered for that
    /// shard before it; never blocks.
    pub fn send(
        &mut self,
        shard: usize,
        channel: ChannelHandle,
        data: Vec<u8>,
    ) -> Result<(), ReplyError> {
        self.gather(shard, channel, data)?;
        match self.hand_over(shard) {
            (_, None) => Ok(()),
            (_, Some(Refusal::Full)) => Err(ReplyError::Full),
            (_, Some(Refusal::Gone)) => Err(ReplyError::Stopped),
        }
    }

    fn flush_shard(&mut self, shard: usize) -> usize {
        self.hand_over(shard).0
    }

    /// Hands `shard`'s gathered batch over; returns how many replies were refused and why.
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
            // call). The fence orders the queue write before reading the flag, against the
            // shard's flag write before its last look at the queue.
            fence(Ordering::SeqCst);
            if lane.sleeping.load(Ordering::SeqCst) {
                if let Some(waker) = self.wakers.get(shard) {
                    let _ = waker.wake();
                }
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

/// What a worker gets from [`super::Engine::start_with_worker`]: its input queue and the way
/// back. The input closes once every shard has stopped.
pub struct WorkerLink {
    /// Messages from every shard, in batches.
    pub deliveries: Deliveries,
    /// Replies to the shards.
    pub replier: Replier,
}

/// A shard's end of the worker queues.
pub(super) struct ShardWorker {
    index: usize,
    /// None once the shard lets go of the worker's input (on the way out).
    deliver: Option<Sender<Vec<Delivery>>>,
    deliver_queue: Arc<BatchQueue<Delivery>>,
    /// This turn's deliveries, behind those held from earlier turns; handed over at the end
    /// of the turn.
    outbox: Vec<Delivery>,
    /// Where a refused batch is sorted, kept to reuse its memory.
    refused: Vec<Delivery>,
    replies: Receiver<Vec<Reply>>,
    reply_queue: Arc<BatchQueue<Reply>>,
    sleeping: Arc<AtomicBool>,
}

/// Builds the queues between `shards` shards and one worker, each holding at most `capacity`
/// messages per direction (the reply queues: per shard).
pub(super) fn worker_queues(
    shards: usize,
    capacity: usize,
    wakers: Arc<[Waker]>,
) -> (WorkerLink, Vec<ShardWorker>) {
    let (deliver_queue, deliver_tx, deliver_rx) = BatchQueue::<Delivery>::new(capacity);
    let mut lanes = Vec::with_capacity(shards);
    let mut ends = Vec::with_capacity(shards);
    for index in 0..shards {
        let (reply_queue, reply_tx, reply_rx) = BatchQueue::<Reply>::new(capacity);
        let sleeping = Arc::new(AtomicBool::new(false));
        lanes.push(ReplyLane {
            queue: Arc::clone(&reply_queue),
            tx: reply_tx,
            sleeping: Arc::clone(&sleeping),
        });
        ends.push(ShardWorker {
            index,
            deliver: Some(deliver_tx.clone()),
            deliver_queue: Arc::clone(&deliver_queue),
            outbox: Vec::new(),
            refused: Vec::new(),
            replies: reply_rx,
            reply_queue,
            sleeping,
        });
    }
    let link = WorkerLink {
        deliveries: Deliveries {
            rx: deliver_rx,
            queue: deliver_queue,
        },
        replier: Replier {
            pending: (0..shards).map(|_| Vec::new()).collect(),
            lanes: lanes.into(),
            wakers,
        },
    };
    (link, ends)
}

impl ShardWorker {
    /// Adds a message to this turn's batch.
    pub(super) fn deliver(&mut self, channel: ChannelHandle, message_number: u64, data: Vec<u8>) {
        if self.outbox.capacity() == 0 {
            self.outbox = self.deliver_queue.empty_batch();
        }
        self.outbox.push(Delivery {
            shard: self.index,
            channel,
            message_number,
            data,
        });
    }

    /// Hands this turn's batch, behind any messages held from earlier turns, to the worker in
    /// one queue operation; returns how many went over. Of what the queue refused, messages
    /// `hold` picks (those of reliable channels) wait for the next turn, up to [`HOLD_LIMIT`];
    /// the others are dropped, their buffers passed to `refused` (PROTOCOL.md §12: a full
    /// queue refuses and the shard counts).
    pub(super) fn hand_over(
        &mut self,
        mut hold: impl FnMut(&Delivery) -> bool,
        mut refused: impl FnMut(Vec<u8>),
    ) -> usize {
        let wanted = self.outbox.len();
        if wanted == 0 {
            return 0;
        }
        if let Some(sender) = &self.deliver {
            // A refusal leaves the messages in the outbox; they are sorted out below.
            let _ = self.deliver_queue.push(&mut self.outbox, sender);
        } else {
            // The worker's input is closed: nothing waits any more.
            for delivery in self.outbox.drain(..) {
                refused(delivery.data);
            }
            return 0;
        }
        let left = self.outbox.len();
        if left > 0 {
            std::mem::swap(&mut self.outbox, &mut self.refused);
            for delivery in self.refused.drain(..) {
                if self.outbox.len() < HOLD_LIMIT && hold(&delivery) {
                    self.outbox.push(delivery);
                } else {
                    refused(delivery.data);
                }
            }
        }
        wanted.saturating_sub(left)
    }

    /// Messages held back from a full queue, waiting for the next turn.
    pub(super) fn held(&self) -> usize {
        self.outbox.len()
    }

    /// The most messages the worker's input queue holds.
    pub(super) fn capacity(&self) -> usize {
        self.deliver_queue.capacity
    }

    /// Messages waiting in the worker's input queue.
    pub(super) fn queue_depth(&self) -> usize {
        self.deliver_queue.queued.load(Ordering::Relaxed)
    }

    /// Lets go of the worker's input: once every shard has, the worker's queue closes.
    pub(super) fn close_input(&mut self) {
        self.deliver = None;
    }

    /// The next batch of replies, if one waits.
    pub(super) fn try_replies(&self) -> Option<Vec<Reply>> {
        let batch = self.replies.try_recv().ok()?;
        self.reply_queue.taken(&batch);
        Some(batch)
    }

    /// The next batch of replies, waiting up to `timeout`; `None` on a timeout or once every
    /// replier is gone.
    pub(super) fn replies_within(&self, timeout: Duration) -> Option<Vec<Reply>> {
        let batch = self.replies.recv_timeout(timeout).ok()?;
        self.reply_queue.taken(&batch);
        Some(batch)
    }

    /// True once every replier is gone and no reply waits.
    pub(super) fn replies_closed(&self) -> bool {
        matches!(self.replies.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Gives an emptied reply batch back to the workers.
    pub(super) fn recycle_replies(&self, batch: Vec<Reply>) {
        self.reply_queue.give_back(batch);
    }

    /// Called before the shard blocks: from now on replies wake it. Returns false when a reply
    /// batch already waits or messages are held for the worker, so the shard must not block.
    pub(super) fn may_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.replies.is_empty() && self.outbox.is_empty() {
            return true;
        }
        self.sleeping.store(false, Ordering::Relaxed);
        false
    }

    /// Called when the shard wakes: it polls again, so replies need not wake it.
    pub(super) fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

/// The echo service as a worker: sends every message back on its channel, one reply batch per
/// delivery batch. Returns when the shards have stopped and its queue is drained; counts
/// replies refused by full queues.
pub fn run_echo_worker(link: WorkerLink) -> u64 {
    crate::heap::set_thread_account(crate::heap::Account::Node);
    let WorkerLink {
        deliveries,
        mut replier,
    } = link;
    let mut refused = 0u64;
    while let Some(mut batch) = deliveries.recv() {
        for delivery in batch.drain(..) {
            if replier
                .queue(delivery.shard, delivery.channel, delivery.data)
                .is_err()
            {
                refused = refused.saturating_add(1);
            }
        }
        deliveries.recycle(batch);
        refused = refused.saturating_add(replier.flush() as u64);
    }
    refused.saturating_add(replier.flush() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::Hashcode;
    use mio::{Poll, Token};

    fn channel(n: u32) -> ChannelHandle {
        ChannelHandle(Hashcode(n))
    }

    fn queues(shards: usize, capacity: usize) -> (Vec<Poll>, WorkerLink, Vec<ShardWorker>) {
        let polls: Vec<Poll> = (0..shards).map(|_| Poll::new().unwrap()).collect();
        let wakers: Arc<[Waker]> = polls
            .iter()
            .map(|poll| Waker::new(poll.registry(), Token(1)).unwrap())
            .collect::<Vec<_>>()
            .into();
        let (link, ends) = worker_queues(shards, capacity, wakers);
        (polls, link, ends)
    }

    #[test]
    fn a_turn_goes_over_as_one_batch_and_a_full_queue_takes_what_fits() {
        let (_poll, link, mut ends) = queues(2, 3);
        for i in 0..5u8 {
            ends[1].deliver(channel(7), u64::from(i), vec![i]);
        }
        let mut refused = Vec::new();
        assert_eq!(ends[1].hand_over(|_| false, |data| refused.push(data)), 3);
        assert_eq!(
            refused,
            vec![vec![3], vec![4]],
            "the tail is refused, in order"
        );
        assert_eq!(link.deliveries.len(), 3);
        // Full: the other shard's turn is refused whole.
        ends[0].deliver(channel(8), 0, vec![9]);
        assert_eq!(ends[0].hand_over(|_| false, |_| {}), 0);
        let batch = link.deliveries.try_recv().expect("one batch");
        assert!(
            link.deliveries.try_recv().is_none(),
            "a single queue operation"
        );
        let numbers: Vec<_> = batch.iter().map(|d| (d.shard, d.message_number)).collect();
        assert_eq!(numbers, vec![(1, 0), (1, 1), (1, 2)]);
        assert!(link.deliveries.is_empty());
        link.deliveries.recycle(batch);
        ends[0].deliver(channel(8), 0, vec![9]);
        assert_eq!(
            ends[0].hand_over(|_| false, |_| {}),
            1,
            "room again once taken"
        );
    }

    #[test]
    fn held_messages_go_first_on_the_next_turn() {
        let (_poll, link, mut ends) = queues(1, 1);
        for i in 0..3u8 {
            ends[0].deliver(channel(1), u64::from(i), vec![i]);
        }
        let mut dropped = 0;
        // Message 2 is not worth holding; 1 is.
        assert_eq!(
            ends[0].hand_over(|d| d.message_number < 2, |_| dropped += 1),
            1
        );
        assert_eq!((ends[0].held(), dropped), (1, 1));
        assert!(!ends[0].may_sleep(), "held messages keep the shard polling");
        ends[0].awake();
        ends[0].deliver(channel(1), 3, vec![3]);
        assert_eq!(
            ends[0].hand_over(|_| true, |_| dropped += 1),
            0,
            "still full"
        );
        assert_eq!(ends[0].held(), 2);
        let first = link.deliveries.try_recv().unwrap();
        assert_eq!(first[0].message_number, 0);
        assert_eq!(ends[0].hand_over(|_| true, |_| dropped += 1), 1);
        let next = link.deliveries.try_recv().unwrap();
        assert_eq!(next[0].message_number, 1, "the held message goes first");
        assert_eq!(ends[0].held(), 1);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn replies_travel_per_shard_in_batches_and_a_full_lane_refuses() {
        let (_poll, mut link, ends) = queues(2, 2);
        link.replier.queue(0, channel(1), vec![1]).unwrap();
        link.replier.queue(1, channel(2), vec![2]).unwrap();
        link.replier.queue(0, channel(1), vec![3]).unwrap();
        assert!(
            ends[0].try_replies().is_none(),
            "nothing leaves before the flush"
        );
        assert_eq!(link.replier.flush(), 0);
        let batch = ends[0].try_replies().expect("shard 0's batch");
        let data: Vec<_> = batch.iter().map(|r| r.data.clone()).collect();
        assert_eq!(data, vec![vec![1], vec![3]]);
        assert!(ends[0].try_replies().is_none(), "one batch per flush");
        assert_eq!(ends[1].try_replies().map(|b| b.len()), Some(1));
        // Shard 0's lane holds two messages: a third is refused until it takes some.
        link.replier.send(0, channel(1), vec![4]).unwrap();
        link.replier.send(0, channel(1), vec![5]).unwrap();
        assert_eq!(
            link.replier.send(0, channel(1), vec![6]),
            Err(ReplyError::Full)
        );
        assert_eq!(
            link.replier.send(5, channel(1), vec![6]),
            Err(ReplyError::Stopped)
        );
        assert_eq!(ends[0].try_replies().map(|b| b.len()), Some(1));
        link.replier.send(0, channel(1), vec![6]).unwrap();
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
        assert!(ends[0].try_replies().is_some());
        assert!(ends[0].may_sleep());
        link.replier.send(0, channel(1), vec![2]).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "a sleeping shard is woken");
        ends[0].awake();
    }

    #[test]
    fn the_worker_input_closes_when_every_shard_lets_go() {
        let (_poll, link, mut ends) = queues(2, 4);
        ends[0].deliver(channel(1), 0, vec![1]);
        ends[0].hand_over(|_| false, |_| {});
        ends[0].close_input();
        ends[1].close_input();
        assert_eq!(link.deliveries.recv().map(|b| b.len()), Some(1));
        assert!(link.deliveries.recv().is_none());
        // Dropping the replier closes the reply lanes.
        drop(link.replier);
        assert!(ends[0].replies_closed());
    }
}
