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
