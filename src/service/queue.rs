//! Bounded batch queues between the shards and a worker (PROTOCOL.md §12): one queue operation
//! moves a whole batch, capacities count messages, and emptied batches go back to be filled
//! again, so the hand-over allocates nothing in steady state.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Messages a batch is created to hold; it grows past this only when a turn delivers more.
pub(crate) const BATCH: usize = 64;

/// Emptied batches kept for reuse per queue; beyond this an emptied batch is freed.
const SPARE_BATCHES: usize = 64;

/// Why a batch was not (wholly) queued.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The queue holds its capacity in messages.
    Full,
    /// The other side is gone.
    Gone,
}

/// The shared state of one batch queue: emptied batches going back to be filled again, and
/// the number of messages queued, which bounds the queue in messages. The queue's channel ends
/// live with its two sides, so dropping one side closes it.
pub(crate) struct BatchQueue<T> {
    spares: (Sender<Vec<T>>, Receiver<Vec<T>>),
    queued: AtomicUsize,
    capacity: usize,
}

impl<T> BatchQueue<T> {
    /// The shared state and the channel of batches; every batch holds at least one message,
    /// so `capacity` batches always fit.
    #[allow(clippy::type_complexity)]
    pub(crate) fn new(capacity: usize) -> (Arc<BatchQueue<T>>, Sender<Vec<T>>, Receiver<Vec<T>>) {
        let capacity = capacity.max(1);
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let queue = Arc::new(BatchQueue {
            spares: crossbeam_channel::bounded(SPARE_BATCHES),
            queued: AtomicUsize::new(0),
            capacity,
        });
        (queue, tx, rx)
    }

    /// The most messages the queue holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages queued and not yet taken.
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// An empty batch, reused when one came back.
    pub(crate) fn empty_batch(&self) -> Vec<T> {
        self.spares
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH))
    }

    /// Queues as much of `batch` as the capacity allows, with one reservation and one queue
    /// operation; what did not fit stays in `batch`, in order.
    pub(crate) fn push(&self, batch: &mut Vec<T>, sender: &Sender<Vec<T>>) -> Result<(), Refusal> {
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
    pub(crate) fn taken(&self, batch: &[T]) {
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
    }

    /// Keeps an emptied batch for the filling side; frees it when enough are kept.
    pub(crate) fn give_back(&self, mut batch: Vec<T>) {
        batch.clear();
        if batch.capacity() > 0 {
            let _ = self.spares.0.try_send(batch);
        }
    }
}
