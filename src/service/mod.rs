//! The service seam (PROTOCOL.md §12): what a worker receives from the shards and what it may
//! ask of them. The overlay, the consensus service and the echo service are workers: threads
//! fed by bounded lock-free queues, that import this module and the layers below it, never the
//! engine, its sockets or its threads.
//!
//! A worker receives [`Input`]s in batches from [`Deliveries`]: each message with the peer that
//! sent it, its channel, mode and number ([`Delivery`]), and the answers to what it asked. It
//! asks through a [`Replier`]: send on a channel, open a channel to a peer id or an address,
//! close one, or learn a peer's address, session kind and RTT (answered by the shard that owns
//! the peer). Requests gather per shard and go over in one queue operation per batch; emptied
//! batches and message buffers go back to where they came from, so in steady state the
//! hand-over allocates nothing.
//!
//! A shard never blocks on a worker: a full queue refuses and the shard counts. What arrives on
//! reliable channels never meets a full queue, nor more buffers held by the workers than the
//! shard's bound ([`Received`]), because their delivery and credit follow the room (`Endpoint::set_delivery_capacity`, `channel::reliability::fair_share`); other
//! messages beyond their sender's fair share of a pressed queue are refused, the heaviest
//! sender first.
#![deny(clippy::arithmetic_side_effects)]

pub mod echo;
mod held;
pub mod host;
mod link;
mod queue;

pub use crate::channel::PeerInfo;
pub use held::Received;
pub use link::{Deliveries, Replier, Woken, WorkerLink};
pub(crate) use link::{ShardLink, worker_queues};

use crate::channel::{ChannelHandle, OpenError, Payload};
use crate::session::PeerRecord;
use crate::wire::{Capabilities, CloseReason, PeerId};
use std::net::SocketAddr;

/// An application message a shard hands to the worker: who sent it, where, and how to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The shard that owns the channel; replies go back to it.
    pub shard: usize,
    /// The peer that sent it, proven by its session (or claimed, on a kind-0 channel); its
    /// static keys, as that session proved them, come with [`Input::PeerInfo`].
    pub peer: PeerId,
    /// True when `peer` is proven: the peer has an encrypted session, and a channel opened
    /// before the session is closed when the session binds, so only a plaintext (kind-0) peer
    /// on an `allow_plaintext` node delivers with `false`.
    pub authenticated: bool,
    /// The channel it came on.
    pub channel: ChannelHandle,
    /// The channel's mode (PROTOCOL.md §7).
    pub capabilities: Capabilities,
    /// Its message number on that channel.
    pub message_number: u64,
    /// Its bytes: for a message that is the whole of one sealed DATA, the receive memory the
    /// kernel wrote it into (no copy at all); otherwise the pooled buffer the shard's endpoint
    /// copied it into once. It counts against the shard's bound on buffers the workers hold
    /// (`max_worker_buffers`) until the worker lets go of it. Sending it back as a reply
    /// returns a pooled buffer to the shard's pool (a slab piece is copied into one there); a
    /// worker that keeps a slab piece pins its receive slab, which past `spare_receive_slabs`
    /// makes the shard copy again.
    pub data: Received,
}

/// Why an open a worker asked for did not give a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenFailure {
    /// The shard's endpoint refused it at once.
    Refused(OpenError),
    /// The open started and failed (timeout, refusal by the peer, …).
    Failed(CloseReason),
}

/// What a worker receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An application message.
    Message(Delivery),
    /// A channel the worker asked for ([`Replier::open`]) is open.
    Opened {
        /// The token the worker gave.
        token: u64,
        /// The shard that owns the channel.
        shard: usize,
        /// The channel.
        channel: ChannelHandle,
        /// The peer at the other end, proven by its session.
        peer: PeerId,
        /// The channel's mode.
        capabilities: Capabilities,
    },
    /// A channel the worker asked for could not be opened.
    OpenFailed {
        /// The token the worker gave.
        token: u64,
        /// The shard that tried.
        shard: usize,
        /// Why.
        reason: OpenFailure,
    },
    /// A channel that was open has closed; its handle is stale. Always sent for a channel the
    /// worker opened; for one a peer opened, only while the shard's share of the queue has room.
    Closed {
        /// The shard that owned it.
        shard: usize,
        /// The channel.
        channel: ChannelHandle,
        /// Why.
        reason: CloseReason,
        /// True when the peer closed it.
        by_peer: bool,
    },
    /// The answer to [`Replier::peer_info`].
    PeerInfo {
        /// The token the worker gave.
        token: u64,
        /// The shard that owns the peer.
        shard: usize,
        /// The peer asked about.
        peer: PeerId,
        /// What its shard knows, `None` when it holds no state for it.
        info: Option<PeerInfo>,
    },
}

impl Input {
    /// The shard it came from.
    pub fn shard(&self) -> usize {
        match self {
            Input::Message(delivery) => delivery.shard,
            Input::Opened { shard, .. }
            | Input::OpenFailed { shard, .. }
            | Input::Closed { shard, .. }
            | Input::PeerInfo { shard, .. } => *shard,
        }
    }
}

/// What a worker asks of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Send a message on a channel.
    Send {
        /// The channel.
        channel: ChannelHandle,
        /// The message; a pooled buffer goes to the channel's send queue as it is (then to the
        /// shard's pool), a lent piece is copied into a pooled one.
        data: Payload,
    },
    /// Open a channel.
    Open {
        /// Names the answer.
        token: u64,
        /// Where the node is.
        to: SocketAddr,
        /// Its peer id, when known.
        peer: Option<PeerId>,
        /// The mode.
        capabilities: Capabilities,
        /// A first message for the channel, sent at once as early data (PROTOCOL.md §6 step 4:
        /// it leaves with the CHANNEL_COOKIE as soon as the responder's ACKNOWLEDGE gives the
        /// id, without waiting for [`Input::Opened`] to reach the worker and its answer to come
        /// back). At most the endpoint's `max_early_bytes`; a longer one is refused and counted.
        early: Option<Vec<u8>>,
        /// The peer's signed record, when the worker holds one (a DHT contact's key): the
        /// shard hands it to its endpoint first (bounded, `MAX_TAUGHT_RECORDS` per shard), so
        /// the handshake is IK, one round trip fewer than XX. Its peer id must be `peer`'s.
        record: Option<Box<PeerRecord>>,
    },
    /// Close a channel.
    Close {
        /// The channel.
        channel: ChannelHandle,
        /// Why, as the peer is told.
        reason: CloseReason,
    },
    /// Tell what the shard knows of a peer.
    PeerInfo {
        /// Names the answer.
        token: u64,
        /// The peer.
        peer: PeerId,
    },
}

/// Why a request was not queued.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The shard's request queue is full; the caller may retry or drop.
    #[error("the shard's request queue is full")]
    Full,
    /// The shard has stopped, or no such shard.
    #[error("the shard has stopped")]
    Stopped,
}

/// The shard that owns `peer` among `shards`: `u32::from_be_bytes(pid[..4]) % N`, the answer the
/// engine's steering program gives for its packets (PROTOCOL.md §12).
pub fn owner_of_peer(peer: PeerId, shards: usize) -> usize {
    let word = [peer.0[0], peer.0[1], peer.0[2], peer.0[3]];
    (u32::from_be_bytes(word) as usize)
        .checked_rem(shards.max(1))
        .unwrap_or(0)
}
