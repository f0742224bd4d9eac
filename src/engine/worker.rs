//! Workers (PROTOCOL.md §12): services fed by bounded lock-free queues from the shards. A shard
//! never blocks on a worker: a full queue refuses the message and the shard counts it.
//!
//! A worker receives [`Delivery`]s from every shard on one queue and answers through a
//! [`Replier`], which queues the reply on the shard that owns the channel and wakes it.

use crate::channel::ChannelHandle;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;
use std::sync::Arc;

/// An application message a shard hands to the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The shard that owns the channel; replies go back to it.
    pub shard: usize,
    /// The channel it came on.
    pub channel: ChannelHandle,
    /// Its message number on that channel.
    pub message_number: u64,
    /// Its bytes.
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

/// Sends replies to the shards; cloned freely, one per worker thread. The shards' reply queues
/// close when every `Replier` is dropped, which is how a worker says it has finished.
#[derive(Clone)]
pub struct Replier {
    pub(super) queues: Arc<[Sender<Reply>]>,
    pub(super) wakers: Arc<[Waker]>,
}

impl Replier {
    /// Queues `data` to be sent on `channel` by `shard`, waking it; never blocks.
    pub fn send(
        &self,
        shard: usize,
        channel: ChannelHandle,
        data: Vec<u8>,
    ) -> Result<(), ReplyError> {
        let queue = self.queues.get(shard).ok_or(ReplyError::Stopped)?;
        match queue.try_send(Reply { channel, data }) {
            Ok(()) => {
                if let Some(waker) = self.wakers.get(shard) {
                    let _ = waker.wake();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(ReplyError::Full),
            Err(TrySendError::Disconnected(_)) => Err(ReplyError::Stopped),
        }
    }
}

/// What a worker gets from [`super::Engine::start_with_worker`]: its input queue and the way
/// back. The input closes once every shard has stopped.
pub struct WorkerLink {
    /// Messages from every shard.
    pub deliveries: Receiver<Delivery>,
    /// Replies to the shards.
    pub replier: Replier,
}

/// The echo service as a worker: sends every message back on its channel. Returns when the
/// shards have stopped and its queue is drained; counts replies refused by full queues.
pub fn run_echo_worker(link: WorkerLink) -> u64 {
    let WorkerLink {
        deliveries,
        replier,
    } = link;
    let mut refused = 0;
    for delivery in deliveries.iter() {
        if replier
            .send(delivery.shard, delivery.channel, delivery.data)
            .is_err()
        {
            refused += 1;
        }
    }
    refused
}
