//! A shard's side of the worker seam (PROTOCOL.md §12; the queues are `crate::service`'s): what
//! the shard hands to the worker each turn, what it refuses, and how much room it reports to
//! its endpoint, whose reliable channels' credit follows it.
//!
//! Each shard may fill its share of the worker's queue. Reliable channels deliver only within
//! the room the endpoint was told of, so their messages are always taken (at worst they wait a
//! turn in the outbox, behind the others). Other messages are refused once the share is full,
//! and, because identities cost an attacker nothing, once the share is half full a sender
//! already holding its fair share of the queue (the share divided among the peers holding any,
//! plus one share kept for a newcomer) is refused before it fills the rest: the heaviest is refused first, never first
//! come, forever served (issue 10). The shard learns what the worker took from a counter the
//! worker advances per batch; batches leave in order, so a record of who sent what, in runs,
//! tells whose messages left.

use crate::channel::Payload;
use crate::service::{Delivery, Input, Received, ShardLink};
use crate::wire::{Capabilities, PeerId};
use std::collections::{HashMap, VecDeque};

/// Refusal reasons, as `weft_messages_dropped_total` labels them.
pub(super) const FULL: &str = "worker_queue_full";
/// A sender past its fair share of a pressed queue.
pub(super) const SHARE: &str = "worker_queue_share";
/// The workers hold as many of the shard's receive buffers as `max_worker_buffers` allows.
pub(super) const HELD: &str = "worker_buffers_held";

/// What one hand-over did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct HandedOver {
    /// Inputs the worker's queue took.
    pub(super) delivered: usize,
    /// Messages of unreliable channels dropped because the queue took no more.
    pub(super) dropped: u64,
}

/// A shard's end of the worker's queues, with its accounting.
pub(super) struct WorkerGate {
    link: ShardLink,
    /// This turn's inputs, behind any left from the last one.
    outbox: Vec<Input>,
    /// The sender of each input in `outbox`, in the same order (`None`: an answer to the
    /// worker's own request).
    outbox_peers: Vec<Option<PeerId>>,
    /// Where leftovers are sorted, kept to reuse its memory.
    sorting: Vec<Input>,
    /// What this shard has in the worker's queue, oldest first, in runs of one sender.
    order: VecDeque<(Option<PeerId>, u32)>,
    /// Messages each peer has in the queue or the outbox. Keyed by what peers choose, so the
    /// seeded std hasher (STYLE.md 16); at most one entry per message held.
    held: HashMap<PeerId, u32>,
    /// Inputs handed over, ever.
    handed: u64,
    /// The worker's take count as last seen.
    seen_taken: u64,
    /// Most of this shard's receive buffers the worker side may hold (`max_worker_buffers`).
    bound: usize,
    /// Most dropped buffers waiting to come back (`max_returned_buffers`).
    returns_bound: usize,
}

impl WorkerGate {
    /// `returns`: the most buffers and bytes of them the worker side may have dropped and not
    /// yet seen taken back (`max_returned_buffers`, `max_returned_buffer_bytes`).
    pub(super) fn new(link: ShardLink, bound: usize, returns: (usize, usize)) -> WorkerGate {
        let (buffers, bytes) = returns;
        link.ledger()
            .keep_returns(buffers, bytes, crate::channel::pool::KEPT_CAPACITY);
        WorkerGate {
            link,
            outbox: Vec::new(),
            outbox_peers: Vec::new(),
            sorting: Vec::new(),
            order: VecDeque::new(),
            held: HashMap::new(),
            handed: 0,
            seen_taken: 0,
            bound,
            returns_bound: buffers,
        }
    }

    /// Lends a delivered message's buffer to the worker side, counted until it lets go.
    pub(super) fn lend(&self, bytes: Payload) -> Received {
        self.link.ledger().lend(bytes)
    }

    /// Hands `keep` each buffer the worker side dropped since the last call. Bounded by the
    /// return queue's size, though the workers return more while it runs.
    pub(super) fn take_back(&self, mut keep: impl FnMut(Vec<u8>)) {
        let ledger = self.link.ledger();
        let mut left = self.returns_bound;
        while left > 0
            && let Some(buf) = ledger.take_returned()
        {
            keep(buf);
            left = left.saturating_sub(1);
        }
    }

    /// This shard's receive buffers the worker side holds now (queued or taken).
    pub(super) fn buffers_held(&self) -> usize {
        self.link.ledger().held()
    }

    fn buffer_room(&self) -> usize {
        self.bound.saturating_sub(self.buffers_held())
    }

    pub(super) fn link(&self) -> &ShardLink {
        &self.link
    }

    pub(super) fn link_mut(&mut self) -> &mut ShardLink {
        &mut self.link
    }

    /// Takes note of what the worker took since the last look: those senders hold less.
    /// Bounded by the runs in the queue.
    pub(super) fn settle(&mut self) {
        let taken = self.link.taken();
        let mut left = taken.saturating_sub(self.seen_taken);
        self.seen_taken = taken;
        while left > 0 {
            let Some(front) = self.order.front_mut() else {
                break;
            };
            let count = u64::from(front.1).min(left);
            left = left.saturating_sub(count);
            // `count` ≤ `front.1`, a u32.
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            front.1 = front.1.saturating_sub(count);
            let (sender, rest) = *front;
            if rest == 0 {
                self.order.pop_front();
            }
            if let Some(peer) = sender {
                self.release(peer, count);
            }
        }
    }

    fn release(&mut self, peer: PeerId, count: u32) {
        if let Some(held) = self.held.get_mut(&peer) {
            *held = held.saturating_sub(count);
            if *held == 0 {
                self.held.remove(&peer);
            }
        }
    }

    /// Inputs of this shard in the worker's queue or waiting in the outbox.
    fn used(&self) -> usize {
        let queued = self.handed.saturating_sub(self.seen_taken);
        usize::try_from(queued)
            .unwrap_or(usize::MAX)
            .saturating_add(self.outbox.len())
    }

    /// Room left in this shard's share of the queue, this turn's batch counted.
    pub(super) fn queue_room(&self) -> usize {
        self.link.share().saturating_sub(self.used())
    }

    /// Room left in this shard's share of the queue and of the buffers the workers may hold:
    /// what its endpoint may deliver on reliable channels.
    pub(super) fn free(&self) -> usize {
        self.queue_room().min(self.buffer_room())
    }

    fn put(&mut self, input: Input, sender: Option<PeerId>) {
        if self.outbox.capacity() == 0 {
            self.outbox = self.link.empty_batch();
        }
        self.outbox.push(input);
        self.outbox_peers.push(sender);
    }

    /// Offers a message for this turn's batch. A reliable channel's message is always taken
    /// (its endpoint delivered it within the room it was told of); another is refused when the
    /// share is full or its sender holds its fair share already: the message comes back, with
    /// the reason.
    pub(super) fn offer(&mut self, delivery: Delivery) -> Result<(), (&'static str, Delivery)> {
        let peer = delivery.peer;
        if !delivery.capabilities.contains(Capabilities::RESEND) {
            // Its own buffer is counted already: past the bound, the workers hold too many.
            if self.buffers_held() > self.bound {
                return Err((HELD, delivery));
            }
            let share = self.link.share();
            let used = self.used();
            if used >= share {
                return Err((FULL, delivery));
            }
            // Fair shares bite only on a pressed queue (half full): a busy node with many
            // honest peers, each a little ahead of the worker, must not refuse them one by one
            // while the queue has room (`weft bench --peers 100` lost ~70 % of its echoes so).
            let pressed = used >= share / 2;
            let mine = self.held.get(&peer).copied().unwrap_or(0);
            let holders = self.held.len().saturating_add(usize::from(mine == 0));
            let fair = share
                .checked_div(holders.saturating_add(1))
                .unwrap_or(0)
                .max(1);
            if pressed && usize::try_from(mine).unwrap_or(usize::MAX) >= fair {
                return Err((SHARE, delivery));
            }
        }
        let held = self.held.entry(peer).or_insert(0);
        *held = held.saturating_add(1);
        self.put(Input::Message(delivery), Some(peer));
        Ok(())
    }

    /// Adds an answer to the worker's own request; never refused here (the worker bounds how
    /// many it asks for).
    pub(super) fn notify(&mut self, input: Input) {
        self.put(input, None);
    }

    /// Hands the outbox to the worker in one queue operation. Of what the queue refused,
    /// reliable channels' messages and answers wait for the next turn (at most the share's
    /// worth of reliable messages: the endpoint delivers no more than the room); other
    /// messages are dropped, their buffers passed to `refused`.
    pub(super) fn hand_over(&mut self, mut refused: impl FnMut(Payload)) -> HandedOver {
        let wanted = self.outbox.len();
        if wanted == 0 {
            return HandedOver::default();
        }
        if !self.link.push(&mut self.outbox) {
            // The worker's input is closed: nothing waits any more.
            let dropped = self.discard(refused);
            self.held.clear();
            return HandedOver {
                delivered: 0,
                dropped,
            };
        }
        let left = self.outbox.len();
        let accepted = wanted.saturating_sub(left);
        self.handed = self.handed.saturating_add(accepted as u64);
        for sender in self.outbox_peers.drain(..accepted) {
            match self.order.back_mut() {
                Some((last, count)) if *last == sender && *count < u32::MAX => {
                    *count = count.saturating_add(1);
                }
                _ => self.order.push_back((sender, 1)),
            }
        }
        let mut dropped = 0u64;
        if left > 0 {
            std::mem::swap(&mut self.outbox, &mut self.sorting);
            // `outbox_peers` lines up with the leftovers; kept ones move down in place.
            let mut kept = 0;
            for (index, input) in self.sorting.drain(..).enumerate() {
                let sender = self.outbox_peers.get(index).copied().flatten();
                let keep = match &input {
                    Input::Message(delivery) => {
                        delivery.capabilities.contains(Capabilities::RESEND)
                    }
                    _ => true,
                };
                if keep {
                    self.outbox.push(input);
                    if let Some(slot) = self.outbox_peers.get_mut(kept) {
                        *slot = sender;
                    }
                    kept = kept.saturating_add(1);
                    continue;
                }
                if let Input::Message(delivery) = input {
                    refused(delivery.data.into_payload());
                }
                if let Some(held) = sender.and_then(|peer| self.held.get_mut(&peer)) {
                    *held = held.saturating_sub(1);
                }
                dropped = dropped.saturating_add(1);
            }
            self.outbox_peers.truncate(kept);
            self.held.retain(|_, held| *held > 0);
        }
        HandedOver {
            delivered: accepted,
            dropped,
        }
    }

    /// Inputs waiting in the outbox for the next turn.
    pub(super) fn waiting(&self) -> usize {
        self.outbox.len()
    }

    /// Messages in the outbox, dropped on the way out; their buffers go to `refused`.
    pub(super) fn discard(&mut self, mut refused: impl FnMut(Payload)) -> u64 {
        let mut dropped = 0u64;
        for input in self.outbox.drain(..) {
            if let Input::Message(delivery) = input {
                dropped = dropped.saturating_add(1);
                refused(delivery.data.into_payload());
            }
        }
        self.outbox_peers.clear();
        dropped
    }

    /// Called before the shard blocks. False when it must not: inputs wait in the outbox, a
    /// request waits, or the worker took something since the shard last looked while its
    /// share was full. A full share asks the worker to wake the shard at its next take, so
    /// reliable channels waiting for room resume at once.
    pub(super) fn may_sleep(&self) -> bool {
        if !self.outbox.is_empty() {
            return false;
        }
        // Starved of queue room, the worker's next take wakes the shard; of buffers, the next
        // buffer it lets go of.
        let queue_starved = self.queue_room() == 0;
        let buffers_starved = self.buffer_room() == 0;
        self.link.set_starved(queue_starved);
        self.link.ledger().set_starved(buffers_starved);
        if !self.link.may_sleep() {
            return false;
        }
        let taken = queue_starved && self.link.taken() != self.seen_taken;
        let released = buffers_starved && self.buffer_room() > 0;
        if taken || released {
            self.link.awake();
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelHandle;
    use crate::handle::Hashcode;
    use crate::service::{WorkerLink, worker_queues};
    use mio::{Poll, Token, Waker};
    use std::sync::Arc;

    fn gate(capacity: usize) -> (Poll, WorkerLink, WorkerGate) {
        gate_with(capacity, 1 << 20, (0, 0))
    }

    /// A gate with a buffer bound and return-queue bounds.
    fn gate_with(
        capacity: usize,
        bound: usize,
        returns: (usize, usize),
    ) -> (Poll, WorkerLink, WorkerGate) {
        let poll = Poll::new().unwrap();
        let wakers: Arc<[Waker]> = vec![Waker::new(poll.registry(), Token(1)).unwrap()].into();
        let (link, mut ends) = worker_queues(1, capacity, wakers);
        (poll, link, WorkerGate::new(ends.remove(0), bound, returns))
    }

    fn message(peer: u8, number: u64, capabilities: Capabilities) -> Delivery {
        Delivery {
            shard: 0,
            peer: PeerId([peer; 16]),
            authenticated: true,
            channel: ChannelHandle(Hashcode(u32::from(peer))),
            capabilities,
            message_number: number,
            data: vec![peer].into(),
        }
    }

    /// Offers `count` unreliable messages from `peer`; returns the refusal reasons.
    fn flood(gate: &mut WorkerGate, peer: u8, count: u64) -> Vec<&'static str> {
        (0..count)
            .filter_map(|n| {
                gate.offer(message(peer, n, Capabilities::NONE))
                    .err()
                    .map(|e| e.0)
            })
            .collect()
    }

    #[test]
    fn a_flooding_peer_is_refused_at_its_share_and_a_newcomer_still_gets_in() {
        let (_poll, link, mut gate) = gate(12);
        // Alone, a sender gets half the queue: the other half is kept for a newcomer.
        let refusals = flood(&mut gate, 1, 100);
        assert_eq!(refusals.len(), 94);
        assert!(refusals.iter().all(|&r| r == SHARE));
        assert_eq!(gate.hand_over(|_| {}).delivered, 6);
        // The worker has not taken anything: a newcomer still gets its share (a third now).
        assert_eq!(flood(&mut gate, 2, 10).len(), 6, "4 of 10 taken");
        // And the flooder, holding more than a third, is refused first.
        assert_eq!(flood(&mut gate, 1, 1), vec![SHARE]);
        assert_eq!(gate.hand_over(|_| {}).delivered, 4);
        // Once the worker takes the flooder's batch, it may send again.
        let batch = link.deliveries.try_recv().unwrap();
        assert_eq!(batch.len(), 6);
        link.deliveries.recycle(batch);
        gate.settle();
        assert!(flood(&mut gate, 1, 1).is_empty());
    }

    #[test]
    fn reliable_messages_are_always_taken_and_the_room_follows_them() {
        let (_poll, link, mut gate) = gate(4);
        assert_eq!(gate.free(), 4);
        for n in 0..3 {
            gate.offer(message(1, n, Capabilities::RESEND)).unwrap();
        }
        assert_eq!(gate.free(), 1);
        // Unreliable: one fits the share, the next is refused as full.
        assert_eq!(flood(&mut gate, 2, 2), vec![FULL]);
        assert_eq!(gate.free(), 0);
        assert_eq!(gate.hand_over(|_| {}).delivered, 4);
        assert!(!gate.may_sleep() || gate.free() == 0);
        let batch = link.deliveries.try_recv().unwrap();
        link.deliveries.recycle(batch);
        gate.settle();
        assert_eq!(gate.free(), 4, "the worker took them all");
    }

    #[test]
    fn buffers_the_worker_holds_bound_the_room_and_drop_unreliable_past_it() {
        let (_poll, link, mut gate) = gate_with(64, 3, (0, 0));
        let offer = |gate: &mut WorkerGate, n: u64, capabilities| {
            let mut delivery = message(1, n, capabilities);
            delivery.data = gate.lend(vec![n as u8].into());
            gate.offer(delivery)
                .map_err(|(reason, d)| (reason, d.data.into_vec()))
        };
        assert_eq!(gate.free(), 3, "the bound, below the queue's share");
        offer(&mut gate, 0, Capabilities::RESEND).unwrap();
        offer(&mut gate, 1, Capabilities::NONE).unwrap();
        offer(&mut gate, 2, Capabilities::NONE).unwrap();
        assert_eq!(gate.buffers_held(), 3);
        assert_eq!(gate.free(), 0, "reliable channels get no more room");
        assert_eq!(
            offer(&mut gate, 3, Capabilities::NONE),
            Err((HELD, vec![3])),
            "unreliable: dropped, its buffer back"
        );
        assert_eq!(gate.buffers_held(), 3, "the refused one is let go");
        assert_eq!(gate.hand_over(|_| {}).delivered, 3);
        // The worker takes them and keeps them: the queue has room, the bound does not.
        let mut batch = link.deliveries.try_recv().unwrap();
        gate.settle();
        assert_eq!(gate.free(), 0);
        assert!(gate.may_sleep(), "nothing to do but wait for a buffer");
        // Letting go of one (a reply sends it back) gives one message of room.
        let Some(Input::Message(first)) = batch.pop() else {
            panic!("a message")
        };
        link.replier
            .clone()
            .queue(0, first.channel, first.data)
            .unwrap();
        assert_eq!((gate.buffers_held(), gate.free()), (2, 1));
        drop(batch);
        assert_eq!((gate.buffers_held(), gate.free()), (0, 3));
    }

    #[test]
    fn the_worker_gets_the_very_buffer_the_endpoint_delivered() {
        let (_poll, link, mut gate) = gate(8);
        let mut bytes = Vec::with_capacity(1452);
        bytes.extend_from_slice(b"one datagram's message");
        let at = bytes.as_ptr();
        let mut delivery = message(1, 0, Capabilities::RESEND);
        delivery.data = gate.lend(bytes.into());
        gate.offer(delivery).unwrap();
        gate.hand_over(|_| {});
        let batch = link.deliveries.try_recv().unwrap();
        let Input::Message(got) = &batch[0] else {
            panic!("a message")
        };
        assert_eq!(got.data.as_ptr(), at, "no copy on the seam");
        assert_eq!(&got.data[..], b"one datagram's message");
    }

    #[test]
    fn a_message_the_worker_drops_comes_back_to_the_shards_pool_and_is_reused() {
        let (_poll, link, mut gate) = gate_with(64, 64, (4, 1 << 20));
        let mut pool = crate::channel::pool::BufferPool::new();
        let mut bulk = pool.take(64 * 1024);
        bulk.resize(64 * 1024, 7);
        let at = bulk.as_ptr();
        let mut delivery = message(1, 0, Capabilities::RESEND);
        delivery.data = gate.lend(bulk.into());
        gate.offer(delivery).unwrap();
        gate.hand_over(|_| {});
        let batch = link.deliveries.try_recv().unwrap();
        assert_eq!(gate.buffers_held(), 1);
        drop(batch);
        assert_eq!(
            gate.buffers_held(),
            0,
            "let go: the count means what it meant"
        );
        gate.take_back(|buf| pool.give(buf));
        let next = pool.take(64 * 1024);
        assert_eq!(
            next.as_ptr(),
            at,
            "the next bulk message reuses the dropped buffer"
        );
        assert!(next.is_empty());
        // A buffer the worker keeps is its own: nothing comes back.
        let mut delivery = message(1, 1, Capabilities::RESEND);
        delivery.data = gate.lend(next.into());
        let kept = delivery.data.into_vec();
        let mut back = 0;
        gate.take_back(|_| back += 1);
        assert_eq!((back, gate.buffers_held(), kept.as_ptr()), (0, 0, at));
    }

    #[test]
    fn what_the_queue_refuses_drops_unreliable_and_keeps_reliable_for_the_next_turn() {
        let (_poll, link, mut gate) = gate(2);
        gate.offer(message(1, 0, Capabilities::RESEND)).unwrap();
        gate.offer(message(1, 1, Capabilities::RESEND)).unwrap();
        // Over the share: only a reliable message can get here (the room was reported stale).
        gate.offer(message(1, 2, Capabilities::RESEND)).unwrap();
        let mut dropped = Vec::new();
        let done = gate.hand_over(|data| dropped.push(data));
        assert_eq!((done.delivered, done.dropped), (2, 0));
        assert_eq!(gate.waiting(), 1, "the third waits");
        assert!(!gate.may_sleep(), "an input waits: no sleep");
        let batch = link.deliveries.try_recv().unwrap();
        link.deliveries.recycle(batch);
        gate.settle();
        assert_eq!(gate.hand_over(|_| {}).delivered, 1);
        let next = link.deliveries.try_recv().unwrap();
        match &next[0] {
            Input::Message(d) => assert_eq!(d.message_number, 2),
            other => panic!("{other:?}"),
        }
    }
}
