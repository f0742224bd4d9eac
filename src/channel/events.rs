//! What the endpoint hands its driver: datagrams to send, events, channel handles, and the
//! errors of its application calls.

use crate::handle::Hashcode;
use crate::wire::{Capabilities, ChannelId, CloseReason, PeerId};
use std::fmt;
use std::net::SocketAddr;

/// A datagram the driver must send: its bytes are the first `len` bytes of the buffer passed to
/// [`Endpoint::poll_transmit`](crate::channel::Endpoint::poll_transmit).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// How many bytes of the caller's buffer it fills.
    pub len: usize,
}

/// Names a channel across time; a handle that outlived its channel is refused, never
/// redirected to the slot's next tenant (PROTOCOL.md §8).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelHandle(pub Hashcode);

/// Something the application should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed: the peer's packets are encrypted from now on (PROTOCOL.md §5).
    SessionEstablished {
        /// The peer, proven by the handshake.
        peer: PeerId,
        /// Where its handshake came from.
        from: SocketAddr,
        /// The handshake kind (1 IK, 2 XX, 3 IKpsk2).
        kind: u8,
        /// True on the side that sent the INIT.
        initiator: bool,
    },
    /// A handshake we started gave up; opens waiting for it fail by their own timeout, and
    /// PINGs queued behind it are not sent.
    SessionFailed {
        /// The peer, when it was known.
        peer: Option<PeerId>,
        /// Where the handshake went.
        address: SocketAddr,
        /// Why, as a metric label (`timeout`, `peer_id_mismatch`, …).
        reason: &'static str,
    },
    /// A PONG answered one of our PINGs.
    Pong {
        /// The peer that answered.
        peer: PeerId,
        /// Where the answer came from.
        from: SocketAddr,
        /// The token of the PING it answers.
        token: [u8; 8],
    },
    /// A channel's id is complete: for the initiator on CHANNEL_ACKNOWLEDGE, for the responder
    /// on FINALIZE or a verifying CHANNEL_COOKIE.
    ChannelOpened {
        /// The channel.
        channel: ChannelHandle,
        /// The peer at the other end.
        peer: PeerId,
        /// The full id, c1 ‖ c2.
        id: ChannelId,
        /// The reliability mode.
        capabilities: Capabilities,
        /// True on the side that opened it.
        initiator: bool,
    },
    /// An open we started failed before the channel existed.
    OpenFailed {
        /// The channel handle `open_channel` returned.
        channel: ChannelHandle,
        /// Why.
        reason: CloseReason,
    },
    /// A channel closed; its handle is now stale.
    ChannelClosed {
        /// The channel.
        channel: ChannelHandle,
        /// Why.
        reason: CloseReason,
        /// True when the peer closed it.
        by_peer: bool,
    },
    /// An ordered channel gave up waiting for messages `first..=last` (PROTOCOL.md §7: the
    /// hold timeout of Streaming 1 and 2); they will never be delivered.
    Skipped {
        /// The channel.
        channel: ChannelHandle,
        /// First message number skipped.
        first: u64,
        /// Last message number skipped.
        last: u64,
    },
    /// Part of a big message arrived (PROTOCOL.md §7.5).
    Progress {
        /// The channel.
        channel: ChannelHandle,
        /// The message's number.
        message_number: u64,
        /// Bytes received so far.
        received: u64,
        /// The message's total length.
        total: u64,
    },
    /// An application message arrived.
    Message {
        /// The channel it came on.
        channel: ChannelHandle,
        /// The peer that sent it (PROTOCOL.md §12: a worker answers by it).
        peer: PeerId,
        /// Its message number on that channel.
        message_number: u64,
        /// Its bytes, in a buffer from the endpoint's pool or, for a message that was the whole
        /// of one DATA in a datagram the backend lent, in the receive memory itself
        /// ([`Payload`](crate::channel::Payload)): give it back with
        /// [`Endpoint::recycle`](crate::channel::Endpoint::recycle) to keep the hot path
        /// allocation-free; dropping it is allowed, it just costs an allocation later (or, for
        /// a lent piece, holds its receive slab until then).
        data: crate::channel::Payload,
    },
}

/// Why `open_channel` refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// `c1` must not be 0: 0 is the default channel.
    ZeroChannelId,
    /// This node already has an open or opening channel with this `c1` towards the peer.
    ChannelIdInUse(u16),
    /// The mode is not implemented by this node yet.
    Unsupported(Capabilities),
    /// Plaintext is off and no session kind is available.
    PlaintextRefused,
    /// A peer, channel or id limit is reached.
    LimitReached(&'static str),
    /// The local identity named is not one this endpoint holds.
    UnknownIdentity,
    /// A local identity other than the endpoint's first opens only to a peer named by its id.
    PeerIdNeeded,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::ZeroChannelId => write!(f, "c1 must not be 0 (0 is the default channel)"),
            OpenError::ChannelIdInUse(c1) => write!(
                f,
                "c1 {c1:#06x} is already in use towards this peer; pick another or pass None"
            ),
            OpenError::Unsupported(caps) => write!(
                f,
                "channel mode {:#05b} is not implemented by this node",
                caps.bits()
            ),
            OpenError::PlaintextRefused => {
                write!(
                    f,
                    "plaintext is not allowed and no encrypted session exists"
                )
            }
            OpenError::LimitReached(what) => write!(f, "limit reached: {what}"),
            OpenError::UnknownIdentity => write!(
                f,
                "no such local identity; add it with Endpoint::add_identity first"
            ),
            OpenError::PeerIdNeeded => write!(
                f,
                "a local identity other than the first needs the peer's id, not a bare address"
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// Why `send` refused; nothing is ever dropped silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The channel is closed or the handle is stale.
    UnknownChannel,
    /// The message is larger than this channel can carry.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The largest this channel accepts.
        max: usize,
    },
    /// The channel's send buffer is full; try again after the queue drains.
    QueueFull,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownChannel => write!(f, "the channel is closed or unknown"),
            SendError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds this channel's limit of {max}"
                )
            }
            SendError::QueueFull => write!(f, "the channel's send queue is full"),
        }
    }
}

impl std::error::Error for SendError {}
