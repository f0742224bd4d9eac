//! The echo service as a worker on the seam: sends every message back on its channel.

use super::{Deliveries, Input, Replier, WorkerLink};

/// Runs the echo service: every message goes back on its channel, one request batch per input
/// batch, its buffer reused for the reply. Returns when the shards have stopped and its queue
/// is drained; counts replies refused by full queues.
pub fn run_echo_worker(link: WorkerLink) -> u64 {
    // Node memory is read apart from a load harness in the same process.
    crate::heap::set_thread_account(crate::heap::Account::Node);
    let WorkerLink {
        deliveries,
        mut replier,
    } = link;
    let mut refused = 0u64;
    while let Some(batch) = deliveries.recv() {
        refused = refused.saturating_add(echo_batch(&mut replier, &deliveries, batch));
        // Every batch already waiting (one per shard turn) is answered before the flush, so
        // its replies reach each shard in one request batch: one queue operation and at most
        // one wake-up per shard for all of them. Bounded by what the queue holds.
        let mut more = deliveries.len();
        while more > 0 {
            let Some(batch) = deliveries.try_recv() else {
                break;
            };
            more = more.saturating_sub(batch.len().max(1));
            refused = refused.saturating_add(echo_batch(&mut replier, &deliveries, batch));
        }
        refused = refused.saturating_add(replier.flush() as u64);
    }
    refused.saturating_add(replier.flush() as u64)
}

/// Queues a reply for every message of `batch` and gives the batch back; returns the replies
/// refused.
fn echo_batch(replier: &mut Replier, deliveries: &Deliveries, mut batch: Vec<Input>) -> u64 {
    let mut refused = 0u64;
    for input in batch.drain(..) {
        if let Input::Message(delivery) = input
            && replier
                .queue(delivery.shard, delivery.channel, delivery.data)
                .is_err()
        {
            refused = refused.saturating_add(1);
        }
    }
    deliveries.recycle(batch);
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelHandle;
    use crate::handle::Hashcode;
    use crate::service::{Delivery, Request, worker_queues};
    use crate::wire::{Capabilities, PeerId};
    use mio::{Poll, Token, Waker};
    use std::sync::Arc;

    fn message(shard: usize, number: u8) -> Input {
        Input::Message(Delivery {
            shard,
            peer: PeerId([number; 16]),
            authenticated: true,
            channel: ChannelHandle(Hashcode(u32::from(number))),
            capabilities: Capabilities::NONE,
            message_number: u64::from(number),
            data: vec![number].into(),
        })
    }

    #[test]
    fn batches_waiting_together_are_answered_in_one_request_batch_per_shard() {
        let polls: Vec<Poll> = (0..2).map(|_| Poll::new().unwrap()).collect();
        let wakers: Arc<[Waker]> = polls
            .iter()
            .map(|poll| Waker::new(poll.registry(), Token(1)).unwrap())
            .collect::<Vec<_>>()
            .into();
        let (link, mut ends) = worker_queues(2, 64, wakers);
        // Three shard turns queued before the worker looks: two of shard 0, one of shard 1.
        for (shard, numbers) in [(0, [1, 2]), (1, [3, 4]), (0, [5, 6])] {
            let mut batch = ends[shard].empty_batch();
            batch.extend(numbers.iter().map(|&n| message(shard, n)));
            assert!(ends[shard].push(&mut batch));
        }
        for end in &mut ends {
            end.close_input();
        }
        assert_eq!(run_echo_worker(link), 0, "nothing refused");
        let replies = |shard: usize| {
            let mut batches = Vec::new();
            while let Some(batch) = ends[shard].try_requests() {
                let bytes: Vec<Vec<u8>> = batch
                    .iter()
                    .map(|request| match request {
                        Request::Send { data, .. } => data.to_vec(),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                batches.push(bytes);
            }
            batches
        };
        assert_eq!(
            replies(0),
            vec![vec![vec![1], vec![2], vec![5], vec![6]]],
            "shard 0's two turns answered in one batch, in order"
        );
        assert_eq!(replies(1), vec![vec![vec![3], vec![4]]]);
    }
}
