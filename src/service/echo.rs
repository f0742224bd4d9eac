//! The echo service as a worker on the seam: sends every message back on its channel.

use super::{Input, WorkerLink};

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
    while let Some(mut batch) = deliveries.recv() {
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
        refused = refused.saturating_add(replier.flush() as u64);
    }
    refused.saturating_add(replier.flush() as u64)
}
